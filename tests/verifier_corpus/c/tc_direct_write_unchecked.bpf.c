/* unsafe: direct packet write past the checked header. */
#include "common.h"

SEC("tc")
int tc_direct_write_unchecked(struct __sk_buff *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;

    if ((void *)(eth + 1) > data_end)
        return 0;
    ((__u8 *)eth)[OPAQUE(14)] = 0xff;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
