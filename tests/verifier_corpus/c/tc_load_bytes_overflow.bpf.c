/* unsafe: bpf_skb_load_bytes of 32 bytes into 16. */
#include "common.h"

SEC("tc")
int tc_load_bytes_overflow(struct __sk_buff *ctx)
{
    __u8 buf[16];

    if (bpf_skb_load_bytes(ctx, 0, buf, OPAQUE(32)))
        return 0;
    return buf[12];
}

char LICENSE[] SEC("license") = "GPL";
