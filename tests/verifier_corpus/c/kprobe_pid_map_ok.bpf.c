/* safe: counts calls per pid in a hash. */
#include "common.h"
#include <linux/ptrace.h>
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u64);
} counts SEC(".maps");

SEC("kprobe/do_nanosleep")
int kprobe_pid_map_ok(struct pt_regs *ctx)
{
    __u32 pid = bpf_get_current_pid_tgid() >> 32;
    __u64 *val, one = 1;

    val = bpf_map_lookup_elem(&counts, &pid);
    if (val)
        __sync_fetch_and_add(val, 1);
    else
        bpf_map_update_elem(&counts, &pid, &one, BPF_ANY);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
