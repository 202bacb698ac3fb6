/* unsafe: the common header of a tracepoint is not readable. */
#include "common.h"
struct tp_openat {
    __u64 common;
    __s32 nr;
    __s32 pad;
    __s64 dfd;
};

SEC("tracepoint/syscalls/sys_enter_openat")
int tp_common_read(struct tp_openat *ctx)
{
    return ctx->common == 7;
}

char LICENSE[] SEC("license") = "GPL";
