/* safe: tc sets skb->mark and tc_index. */
#include "common.h"

SEC("tc")
int tc_mark_ok(struct __sk_buff *ctx)
{
    ctx->mark = ctx->len;
    ctx->tc_index = 3;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
