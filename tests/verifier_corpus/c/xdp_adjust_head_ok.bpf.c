/* safe: data and data_end re-read after bpf_xdp_adjust_head. */
#include "common.h"

SEC("xdp")
int xdp_adjust_head_ok(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u8 *p;

    if (bpf_xdp_adjust_head(ctx, 14))
        return XDP_DROP;
    data = (void *)(long)ctx->data;
    data_end = (void *)(long)ctx->data_end;
    p = data;
    if ((void *)(p + 1) > data_end)
        return XDP_DROP;
    return p[0] ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
