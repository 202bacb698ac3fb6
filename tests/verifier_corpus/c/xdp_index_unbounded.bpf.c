/* unsafe: a packet byte indexes a 16-slot value unchecked. */
#include "common.h"
struct slots { __u64 v[16]; };
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct slots);
} table SEC(".maps");

SEC("xdp")
int xdp_index_unbounded(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 zero = 0;
    struct slots *s;
    __u8 *p = data;

    if ((void *)(p + 1) > data_end)
        return XDP_DROP;
    s = bpf_map_lookup_elem(&table, &zero);
    if (!s)
        return XDP_DROP;
    s->v[*p] += 1;
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
