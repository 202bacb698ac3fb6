/* safe: walks up to 10 TCP options, every byte checked against data_end. */
#include "common.h"
#include <linux/tcp.h>

SEC("xdp")
int xdp_tcp_options_ok(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct tcphdr *tcp = data + sizeof(struct ethhdr) + sizeof(struct iphdr);
    __u8 *opt;
    __u32 mss = 0;

    if ((void *)(tcp + 1) > data_end)
        return XDP_PASS;
    opt = (__u8 *)(tcp + 1);
    for (int i = 0; i < 10; i++) {
        if ((void *)(opt + 1) > data_end)
            break;
        if (*opt == 0)
            break;
        if (*opt == 1) {
            opt++;
            continue;
        }
        if ((void *)(opt + 2) > data_end)
            break;
        if (*opt == 2 && (void *)(opt + 4) <= data_end)
            mss = (opt[2] << 8) | opt[3];
        if (opt[1] < 2)
            break;
        opt += opt[1] & 0x3f;
    }
    return mss > 1460 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
