/* unsafe: one check of 16 bytes, a loop over 32. */
#include "common.h"

SEC("xdp")
int xdp_loop_sum_overrun(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u8 *p = data;
    __u32 sum = 0;

    if (data + 16 > data_end)
        return XDP_DROP;
#pragma clang loop unroll(disable)
    for (int i = 0; i < 32; i++)
        sum += p[i];
    return sum & 1 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
