/* unsafe: only the Ethernet header is checked before reading IPv4. */
#include "common.h"

SEC("xdp")
int xdp_ip_short_check(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = (void *)(eth + 1);

    if ((void *)(eth + 1) > data_end)
        return XDP_DROP;
    return ip->saddr & 1 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
