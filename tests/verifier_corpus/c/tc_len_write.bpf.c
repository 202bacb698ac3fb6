/* unsafe: skb->len is read only. */
#include "common.h"

SEC("tc")
int tc_len_write(struct __sk_buff *ctx)
{
    ctx->len = OPAQUE(0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
