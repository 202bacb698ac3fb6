/* refused: bpf_probe_read_kernel from a non-GPL program. */
#include "common.h"
#include <linux/ptrace.h>

SEC("kprobe/do_nanosleep")
int kprobe_non_gpl(struct pt_regs *ctx)
{
    __u64 v = 0;

    bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx->rdi);
    return v & 1;
}

char LICENSE[] SEC("license") = "Proprietary";
