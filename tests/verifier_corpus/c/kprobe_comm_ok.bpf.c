/* safe: bpf_get_current_comm into a 16-byte buffer. */
#include "common.h"
#include <linux/ptrace.h>

SEC("kprobe/do_nanosleep")
int kprobe_comm_ok(struct pt_regs *ctx)
{
    char comm[16];

    bpf_get_current_comm(comm, sizeof(comm));
    return comm[0];
}

char LICENSE[] SEC("license") = "GPL";
