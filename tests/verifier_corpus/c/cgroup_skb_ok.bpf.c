/* safe: cgroup_skb returns 1 (allow). */
#include "common.h"

SEC("cgroup_skb/ingress")
int cgroup_skb_ok(struct __sk_buff *ctx)
{
    return ctx->len > 10;
}

char LICENSE[] SEC("license") = "GPL";
