/* safe: an unrolled loop over 8 checked bytes. */
#include "common.h"

SEC("xdp")
int xdp_loop_unrolled_ok(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u8 *p = data;
    __u32 sum = 0;

    if (data + 8 > data_end)
        return XDP_DROP;
#pragma unroll
    for (int i = 0; i < 8; i++)
        sum += p[i];
    return sum & 1 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
