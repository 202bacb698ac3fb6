/* unsafe: a noinline function reads the packet it was given unchecked. */
#include "common.h"
static __attribute__((noinline)) int first_byte(__u8 *p)
{
    return OPAQUE(p)[0];
}

SEC("xdp")
int xdp_subprog_unchecked(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    return first_byte(data) ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
