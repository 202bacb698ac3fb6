/* safe: bpf_skb_load_bytes into a stack buffer. */
#include "common.h"

SEC("tc")
int tc_load_bytes_ok(struct __sk_buff *ctx)
{
    __u8 buf[16];

    if (bpf_skb_load_bytes(ctx, 0, buf, sizeof(buf)))
        return 0;
    return buf[12];
}

char LICENSE[] SEC("license") = "GPL";
