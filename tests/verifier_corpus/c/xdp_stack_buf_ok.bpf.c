/* safe: a stack buffer indexed by a masked packet byte. */
#include "common.h"

SEC("xdp")
int xdp_stack_buf_ok(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u8 buf[64] = {};
    __u8 *p = data;

    if ((void *)(p + 2) > data_end)
        return XDP_DROP;
    buf[p[0] & 63] = p[1];
    return buf[OPAQUE(5)] ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
