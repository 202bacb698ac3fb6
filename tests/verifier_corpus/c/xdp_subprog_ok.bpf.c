/* safe: a noinline parser taking the checked header. */
#include "common.h"
static __attribute__((noinline)) int proto_action(__u16 proto)
{
    return proto == bpf_htons(ETH_P_IP) ? XDP_PASS : XDP_DROP;
}

SEC("xdp")
int xdp_subprog_ok(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;

    if ((void *)(eth + 1) > data_end)
        return XDP_DROP;
    return proto_action(eth->h_proto);
}

char LICENSE[] SEC("license") = "GPL";
