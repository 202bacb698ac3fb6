/* unsafe: a packet pointer used after bpf_xdp_adjust_head. */
#include "common.h"

SEC("xdp")
int xdp_adjust_head_stale(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u8 *p = data;

    if ((void *)(p + 16) > data_end)
        return XDP_DROP;
    if (bpf_xdp_adjust_head(ctx, 14))
        return XDP_DROP;
    return p[0] ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
