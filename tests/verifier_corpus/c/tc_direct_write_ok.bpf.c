/* safe: direct packet write after a check. */
#include "common.h"

SEC("tc")
int tc_direct_write_ok(struct __sk_buff *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;

    if ((void *)(eth + 1) > data_end)
        return 0;
    eth->h_dest[0] = 0xff;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
