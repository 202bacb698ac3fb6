/* safe: metadata reserved with bpf_xdp_adjust_meta, checked, written. */
#include "common.h"

SEC("xdp")
int xdp_meta_ok(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 *meta;

    if (bpf_xdp_adjust_meta(ctx, -4))
        return XDP_PASS;
    meta = (void *)(long)ctx->data_meta;
    data = (void *)(long)ctx->data;
    if ((void *)(meta + 1) > data)
        return XDP_PASS;
    *meta = 42;
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
