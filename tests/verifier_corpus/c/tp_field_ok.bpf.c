/* safe: a tracepoint reads a field past the common header. */
#include "common.h"
struct tp_openat {
    __u64 common;
    __s32 nr;
    __s32 pad;
    __s64 dfd;
};

SEC("tracepoint/syscalls/sys_enter_openat")
int tp_field_ok(struct tp_openat *ctx)
{
    return ctx->dfd == -100;
}

char LICENSE[] SEC("license") = "GPL";
