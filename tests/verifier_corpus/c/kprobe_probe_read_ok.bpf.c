/* safe: bpf_probe_read_kernel into the stack. */
#include "common.h"
#include <linux/ptrace.h>

SEC("kprobe/do_nanosleep")
int kprobe_probe_read_ok(struct pt_regs *ctx)
{
    __u64 v = 0;

    bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx->rdi);
    return v & 1;
}

char LICENSE[] SEC("license") = "GPL";
