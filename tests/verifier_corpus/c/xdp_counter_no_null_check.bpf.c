/* unsafe: the lookup's result is used without a NULL check. */
#include "common.h"
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u64);
} counts SEC(".maps");

SEC("xdp")
int xdp_counter_no_null_check(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 key = OPAQUE(data_end - data);
    __u64 *val;

    val = bpf_map_lookup_elem(&counts, &key);
    *val += 1;
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
