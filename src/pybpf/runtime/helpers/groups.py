"""Helper ids grouped as the kernel offers them to program types (Linux 6.18, root).

The program types (:mod:`pybpf.runtime.progtypes`) build their helper sets
from these groups plus their own per-type helpers:

* :data:`BASE` — ``bpf_base_func_proto`` (kernel/bpf/helpers.c): what every
  program type falls back to.  Its three tiers (no capability, CAP_BPF,
  CAP_PERFMON) are :data:`BASE_UNPRIV`, :data:`BASE_BPF`, :data:`BASE_PERFMON`;
  a root loader gets all of them.  Since Linux 6.16 the CAP_PERFMON tier
  also holds the tracing helpers that need no context (get_current_comm,
  get_current_uid_gid, probe_read_user/kernel, perf_event_output with
  ``bpf_event_output_data``, send_signal, find_vma...).
* :data:`TRACING` — ``bpf_tracing_func_proto`` (kernel/trace/bpf_trace.c):
  BASE plus the legacy probe_read / probe_read_str (x86-64 has
  ARCH_HAS_NON_OVERLAPPING_ADDRESS_SPACE).  probe_write_user needs
  CAP_SYS_ADMIN and a kernel not locked down; the reference machine
  refuses it, so it is left out.  :data:`TRACING_STACK` is what the kprobe,
  tracepoint, raw tracepoint and perf_event switches add on top
  (get_stackid, get_stack, get_attach_cookie; kprobes add get_func_ip —
  :data:`KPROBE_EXTRA`).
* :data:`NET` — ``bpf_sk_base_func_proto`` (net/core/filter.c): BASE plus the
  socket casts (skc_to_*) and ktime_get_coarse_ns, the base of the
  networking types; their per-type helpers (skb_load_bytes,
  xdp_adjust_head, redirect...) are the network program types' business.

The union BASE was read from the kernel sources and checked against the
running 6.18 kernel; the split into tiers follows the 6.10 sources for the
older helpers, and the helpers added to the base since (get_current_uid_gid
and the CAP_PERFMON tracing helpers) are placed by reading, not by a test
(root holds every capability, so it cannot tell the tiers apart).  The sets
were checked (``tests/test_helpers.py`` loads ``call N`` as several program
types and compares the helpers the verifier accepts).  tail_call (12) is in
BASE: the interpreter implements it rather than a helper function.
"""

from __future__ import annotations

from pybpf.isa.helper_ids import helper_ids

BASE_UNPRIV = helper_ids("""
    map_lookup_elem map_update_elem map_delete_elem map_push_elem map_pop_elem map_peek_elem
    map_lookup_percpu_elem get_prandom_u32 get_smp_processor_id get_numa_node_id tail_call
    ktime_get_ns ktime_get_boot_ns ktime_get_tai_ns ringbuf_output ringbuf_reserve
    ringbuf_submit ringbuf_discard ringbuf_query strncmp strtol strtoul get_current_pid_tgid
    get_ns_current_pid_tgid
""")
BASE_BPF = helper_ids("""
    spin_lock spin_unlock jiffies64 per_cpu_ptr this_cpu_ptr timer_init timer_set_callback
    timer_start timer_cancel kptr_xchg for_each_map_elem loop user_ringbuf_drain
    ringbuf_reserve_dynptr ringbuf_submit_dynptr ringbuf_discard_dynptr dynptr_from_mem
    dynptr_read dynptr_write dynptr_data cgrp_storage_get cgrp_storage_delete
    get_current_cgroup_id get_current_ancestor_cgroup_id current_task_under_cgroup
    task_storage_get task_storage_delete get_cgroup_classid
""")
BASE_PERFMON = helper_ids("""
    trace_printk get_current_task get_current_task_btf probe_read_user probe_read_kernel
    probe_read_user_str probe_read_kernel_str snprintf_btf snprintf task_pt_regs trace_vprintk
    get_current_comm get_current_uid_gid perf_event_output perf_event_read perf_event_read_value
    copy_from_user copy_from_user_task send_signal send_signal_thread get_task_stack
    get_branch_snapshot find_vma
""")
BASE: frozenset[int] = BASE_UNPRIV | BASE_BPF | BASE_PERFMON

TRACING: frozenset[int] = BASE | helper_ids("probe_read probe_read_str")
TRACING_STACK: frozenset[int] = helper_ids("get_stackid get_stack get_attach_cookie")
KPROBE_EXTRA: frozenset[int] = helper_ids("get_func_ip")

NET: frozenset[int] = BASE | helper_ids("""
    skc_to_tcp6_sock skc_to_tcp_sock skc_to_tcp_timewait_sock skc_to_tcp_request_sock
    skc_to_udp6_sock skc_to_unix_sock skc_to_mptcp_sock ktime_get_coarse_ns
""")

__all__ = ["BASE", "BASE_BPF", "BASE_PERFMON", "BASE_UNPRIV", "KPROBE_EXTRA", "NET", "TRACING",
           "TRACING_STACK"]  # fmt: skip
