/* safe: a per-protocol counter, lookup checked for NULL. */
#include "common.h"
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u64);
} counts SEC(".maps");

SEC("xdp")
int xdp_counter_ok(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    __u32 key;
    __u64 *val, one = 1;

    if ((void *)(eth + 1) > data_end)
        return XDP_DROP;
    key = eth->h_proto;
    val = bpf_map_lookup_elem(&counts, &key);
    if (val)
        __sync_fetch_and_add(val, 1);
    else
        bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
