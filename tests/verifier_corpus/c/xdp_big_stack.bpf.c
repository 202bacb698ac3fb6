/* unsafe: two frames of 320 bytes exceed the combined 512. */
#include "common.h"
static __attribute__((noinline)) int deep(int x)
{
    volatile __u8 buf[320];

    buf[OPAQUE(x) & 255] = 1;
    return buf[7];
}

SEC("xdp")
int xdp_big_stack(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    volatile __u8 buf[320];

    buf[0] = data_end - data;
    return deep(buf[0]) + buf[OPAQUE(3)];
}

char LICENSE[] SEC("license") = "GPL";
