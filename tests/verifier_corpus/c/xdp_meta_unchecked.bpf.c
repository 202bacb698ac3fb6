/* unsafe: metadata written without checking it against data. */
#include "common.h"

SEC("xdp")
int xdp_meta_unchecked(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 *meta;

    if (bpf_xdp_adjust_meta(ctx, -4))
        return XDP_PASS;
    meta = (void *)(long)ctx->data_meta;
    *meta = 42;
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
