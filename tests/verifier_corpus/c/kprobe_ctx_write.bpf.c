/* unsafe: pt_regs is read only. */
#include "common.h"
#include <linux/ptrace.h>

SEC("kprobe/do_nanosleep")
int kprobe_ctx_write(struct pt_regs *ctx)
{
    ctx->rdi = OPAQUE(0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
