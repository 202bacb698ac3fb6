/* refused: cgroup_skb returns 2. */
#include "common.h"

SEC("cgroup_skb/ingress")
int cgroup_skb_bad_return(struct __sk_buff *ctx)
{
    return OPAQUE(2);
}

char LICENSE[] SEC("license") = "GPL";
