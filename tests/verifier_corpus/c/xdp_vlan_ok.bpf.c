/* safe: skips up to two VLAN tags, each checked, then reads the inner protocol. */
#include "common.h"

struct vlan_hdr {
    __be16 tci;
    __be16 proto;
};

SEC("xdp")
int xdp_vlan_ok(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct vlan_hdr *vh = (void *)(eth + 1);
    __be16 proto;

    if ((void *)(eth + 1) > data_end)
        return XDP_DROP;
    proto = eth->h_proto;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
            break;
        if ((void *)(vh + 1) > data_end)
            return XDP_DROP;
        proto = vh->proto;
        vh++;
    }
    return proto == bpf_htons(ETH_P_IP) ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
