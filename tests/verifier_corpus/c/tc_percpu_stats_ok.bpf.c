/* safe: per-CPU byte and packet counters in an array, indexed by a checked protocol. */
#include "common.h"

struct stats {
    __u64 packets;
    __u64 bytes;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, struct stats);
} stats SEC(".maps");

SEC("tc")
int tc_percpu_stats_ok(struct __sk_buff *ctx)
{
    __u32 key = ctx->protocol == bpf_htons(ETH_P_IP) ? 1 : ctx->protocol == bpf_htons(ETH_P_IPV6) ? 2 : 0;
    struct stats *s = bpf_map_lookup_elem(&stats, &key);

    if (!s)
        return 0;
    s->packets++;
    s->bytes += ctx->len;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
