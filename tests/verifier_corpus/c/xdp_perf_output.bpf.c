/* safe: bpf_perf_event_output of a stack record. */
#include "common.h"
struct {
    __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
    __uint(key_size, 4);
    __uint(value_size, 4);
} perf SEC(".maps");

SEC("xdp")
int xdp_perf_output(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u64 rec = data_end - data;

    bpf_perf_event_output(ctx, &perf, BPF_F_CURRENT_CPU, &rec, sizeof(rec));
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
