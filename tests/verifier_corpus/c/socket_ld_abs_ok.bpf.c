/* safe: legacy packet loads in a socket filter. */
#include "common.h"
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");

SEC("socket")
int socket_ld_abs_ok(struct __sk_buff *ctx)
{
    return load_half(ctx, 12) == ETH_P_IP ? -1 : 0;
}

char LICENSE[] SEC("license") = "GPL";
