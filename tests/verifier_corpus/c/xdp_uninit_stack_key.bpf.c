/* privileged: the key on the stack is never written. */
#include "common.h"
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u64);
} counts SEC(".maps");

SEC("xdp")
int xdp_uninit_stack_key(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 key;
    __u64 *val;

    val = bpf_map_lookup_elem(&counts, &key);
    return val ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
