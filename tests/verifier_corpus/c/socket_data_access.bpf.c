/* unsafe: socket filters may not read skb->data. */
#include "common.h"

SEC("socket")
int socket_data_access(struct __sk_buff *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;

    if (data + 1 > data_end)
        return 0;
    return *(__u8 *)data;
}

char LICENSE[] SEC("license") = "GPL";
