/* unsafe: a variable header length used without a new check. */
#include "common.h"

SEC("xdp")
int xdp_ihl_unchecked(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct iphdr *ip = data + sizeof(struct ethhdr);
    __u8 *l4;

    if ((void *)(ip + 1) > data_end)
        return XDP_DROP;
    l4 = (__u8 *)ip + (ip->ihl & 0xf) * 4;
    return *l4 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
