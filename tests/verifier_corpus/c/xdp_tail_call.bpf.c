/* safe: a tail call through a prog array. */
#include "common.h"
struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u32);
} jumps SEC(".maps");

SEC("xdp")
int xdp_tail_call(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    bpf_tail_call(ctx, &jumps, 0);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
