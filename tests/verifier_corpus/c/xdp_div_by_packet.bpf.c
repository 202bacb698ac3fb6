/* safe: division by a packet byte (zero divides to zero). */
#include "common.h"

SEC("xdp")
int xdp_div_by_packet(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u8 *p = data;

    if ((void *)(p + 2) > data_end)
        return XDP_DROP;
    return (p[0] / OPAQUE((__u32)p[1])) & 3;
}

char LICENSE[] SEC("license") = "GPL";
