/* unsafe: the index check allows 16 in a 16-slot value. */
#include "common.h"
struct slots { __u64 v[16]; };
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct slots);
} table SEC(".maps");

SEC("xdp")
int xdp_index_off_by_one(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 zero = 0;
    struct slots *s;
    __u8 *p = data;
    __u32 i;

    if ((void *)(p + 1) > data_end)
        return XDP_DROP;
    s = bpf_map_lookup_elem(&table, &zero);
    if (!s)
        return XDP_DROP;
    i = *p;
    if (i > 16)
        return XDP_DROP;
    s->v[i] += 1;
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
