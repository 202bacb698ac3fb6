/* safe: a socket filter returning skb->len. */
#include "common.h"

SEC("socket")
int socket_len_ok(struct __sk_buff *ctx)
{
    return ctx->len;
}

char LICENSE[] SEC("license") = "GPL";
