/* safe: a bounded loop over 32 bytes, each checked. */
#include "common.h"

SEC("xdp")
int xdp_loop_sum_ok(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u8 *p = data;
    __u32 sum = 0;

    for (int i = 0; i < 32; i++) {
        if ((void *)(p + i + 1) > data_end)
            break;
        sum += p[i];
    }
    return sum & 1 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
