"""Every helper's prototype as Linux 6.18 declares it, and what pybpf's verifier checks of it.

:data:`KERNEL_PROTOS` maps each ``enum bpf_func_id`` number (1..211) to the
:class:`~pybpf.verifier.protos.HelperProto` of the helper's
``struct bpf_func_proto``: argument and return kinds, ``gpl_only``,
``pkt_access``, ``might_sleep``, ``allow_fastcall``, the BTF types of
ARG_PTR_TO_BTF_ID arguments and of R0, read from the ``*_proto``
definitions (net/core/filter.c, kernel/bpf/helpers.c,
kernel/trace/bpf_trace.c, kernel/bpf/stackmap.c, kernel/bpf/ringbuf.c,
kernel/bpf/cgroup.c, kernel/bpf/bpf_*_storage.c, net/core/bpf_sk_storage.c,
net/core/sock_map.c, kernel/bpf/bpf_lsm.c, kernel/bpf/syscall.c, ...), plus
the facts kernel/bpf/verifier.c keys on the helper's id:
``is_acquire_function`` (``acquire``), ``is_ptr_cast_function``
(``ptr_cast``), the callback-calling helpers (``callback``) and
net/core/filter.c's ``bpf_helper_changes_pkt_data`` (``changes_pkt_data``).
It does not depend on which helpers pybpf's runtime implements; the
runtime's own declarations (:mod:`pybpf.runtime.helpers`) must equal these.

The kernel declares some helpers several times, one proto object per
family of program types.  :func:`kernel_symbols` names the objects a
table entry stands for (they declare the same); those that declare another
prototype (bpf_get_stackid in perf_event programs is not GPL-only,
bpf_sk_storage_get in cgroup_sock programs takes the context...) are in
:data:`VARIANT_PROTOS`, by name, and :func:`proto_named` finds any of them.
Where they differ, the table holds the tc / kprobe one.

:func:`for_verifier` is the verifier's view of a prototype: the kernel's,
with the arguments pybpf's verifier cannot check yet marked
(:attr:`ArgType.unchecked <pybpf.verifier.protos.ArgType>`), so that a
program passing them a register that type-checks is refused with
"pybpf verifier does not support argument type ARG_X of helper bpf_Y yet"
rather than accepted where the kernel might refuse it.  What cannot be
checked yet:

* ARG_PTR_TO_BTF_ID, and a BTF pointer given to ARG_PTR_TO_BTF_ID_SOCK_COMMON:
  registers carry no BTF type, so the kernel's ``btf_struct_ids_match``
  cannot be made;
* ARG_PTR_TO_PERCPU_BTF_ID (no ksyms), ARG_PTR_TO_TIMER and
  ARG_KPTR_XCHG_DEST (they need the map's BTF: bpf_timer and kptr
  fields), ARG_PTR_TO_DYNPTR (no dynptr stack slots);
* ARG_PTR_TO_FUNC of a callback other than bpf_loop's,
  bpf_for_each_map_elem's and bpf_user_ringbuf_drain's (the walk explores
  only those);
* ARG_CONST_MAP_PTR of the helpers in :data:`MAP_UNCHECKED` (a timer's map, a
  dynptr ring buffer);
* a BTF-typed socket (PTR_TO_BTF_ID) given to a ``PTR_TO_BTF_ID_SOCK_COMMON``
  argument (pointer-cast helpers give R0 the argument's reference, as the kernel);
* a helper that ``might_sleep``, in a program not known to be sleepable
  (the refusal comes with its first argument that is type-checked):
  pybpf's verifier does not check the program's BPF_F_SLEEPABLE.
"""

from __future__ import annotations

from dataclasses import replace

from pybpf.isa.helper_ids import HELPER_NAMES
from pybpf.verifier import protos as P
from pybpf.verifier.protos import (
    FIND_VMA_CALLBACK,
    LOOP_CALLBACK,
    MAP_ELEM_CALLBACK,
    TAIL_CALL,
    TIMER_CALLBACK,
    USER_RINGBUF_CALLBACK,
    Arg,
    ArgFlag,
    ArgType,
    HelperProto,
    Ret,
    fixed_size_mem,
)
from pybpf.verifier.types import Base

__all__ = ["KERNEL_PROTOS", "MAP_UNCHECKED", "VARIANT_PROTOS", "for_verifier",
           "kernel_symbols", "mark_unchecked", "proto_named"]

# --- the argument kinds, as the table below spells them ------------------------------------------
CTX = Arg.PTR_TO_CTX
CTX_OR_NULL = P.PTR_TO_CTX_OR_NULL
ANY = Arg.ANYTHING
MAP = Arg.CONST_MAP_PTR
KEY = Arg.PTR_TO_MAP_KEY
VALUE = Arg.PTR_TO_MAP_VALUE
VALUE_OR_NULL = P.PTR_TO_MAP_VALUE_OR_NULL
UNINIT_VALUE = Arg.PTR_TO_MAP_VALUE | ArgFlag.MEM_UNINIT | ArgFlag.MEM_WRITE
SIZE = Arg.CONST_SIZE
SIZE0 = Arg.CONST_SIZE_OR_ZERO
ALLOC_SIZE0 = Arg.CONST_ALLOC_SIZE_OR_ZERO
RO = P.PTR_TO_RDONLY_MEM  # ARG_PTR_TO_MEM | MEM_RDONLY: the helper reads
RO_OR_NULL = P.PTR_TO_RDONLY_MEM | ArgFlag.MAYBE_NULL
WO = Arg.PTR_TO_MEM | ArgFlag.MEM_WRITE  # the helper writes initialised memory
WO_OR_NULL = P.PTR_TO_MEM_OR_NULL | ArgFlag.MEM_WRITE
UNINIT = P.PTR_TO_UNINIT_MEM  # the helper fills it: MEM_UNINIT | MEM_WRITE
STACK_OR_NULL = P.PTR_TO_STACK_OR_NULL
FUNC = Arg.PTR_TO_FUNC
CONST_STR = Arg.PTR_TO_CONST_STR
SPIN_LOCK = Arg.PTR_TO_SPIN_LOCK
RINGBUF_MEM = Arg.PTR_TO_RINGBUF_MEM
SOCK_COMMON = Arg.PTR_TO_SOCK_COMMON
BTF_SOCK_COMMON = Arg.PTR_TO_BTF_ID_SOCK_COMMON
BTF = Arg.PTR_TO_BTF_ID
BTF_OR_NULL = Arg.PTR_TO_BTF_ID | ArgFlag.MAYBE_NULL
PERCPU_BTF = Arg.PTR_TO_PERCPU_BTF_ID
TIMER = Arg.PTR_TO_TIMER
KPTR_DEST = Arg.KPTR_XCHG_DEST
DYNPTR = Arg.PTR_TO_DYNPTR
RELEASE = ArgFlag.OBJ_RELEASE
# the dynptr a helper initialises: ARG_PTR_TO_DYNPTR | DYNPTR_TYPE_x | MEM_UNINIT | MEM_WRITE
NEW_LOCAL_DYNPTR = DYNPTR | ArgFlag.DYNPTR_LOCAL | ArgFlag.MEM_UNINIT | ArgFlag.MEM_WRITE
NEW_RINGBUF_DYNPTR = DYNPTR | ArgFlag.DYNPTR_RINGBUF | ArgFlag.MEM_UNINIT | ArgFlag.MEM_WRITE
RINGBUF_DYNPTR = DYNPTR | ArgFlag.DYNPTR_RINGBUF
# ARG_PTR_TO_FIXED_SIZE_MEM | MEM_UNINIT | MEM_WRITE | MEM_ALIGNED, arg_size = sizeof(u64)
U64_OUT = fixed_size_mem(8, ArgFlag.MEM_UNINIT | ArgFlag.MEM_WRITE | ArgFlag.MEM_ALIGNED)
IPHDR, IPV6HDR, TCPHDR = 20, 40, 20  # sizeof(struct iphdr), ipv6hdr, tcphdr
TASK = "task_struct"  # btf_tracing_ids[BTF_TRACING_TYPE_TASK]


def _p(ident: int, *args: ArgType | Arg, ret: Ret = Ret.INTEGER, btf: dict[int, str] | None = None,
       **facts) -> HelperProto:  # fmt: skip
    """Helper ``ident``'s prototype; ``btf`` maps argument indexes (0 = R1) to argN_btf_id."""
    return HelperProto(f"bpf_{HELPER_NAMES[ident]}", args, ret,
                       arg_btf=tuple(sorted((btf or {}).items())), **facts)  # fmt: skip


_PROTOS = (
    _p(1, MAP, KEY, ret=Ret.PTR_TO_MAP_VALUE_OR_NULL, pkt_access=True),
    _p(2, MAP, KEY, VALUE, ANY, pkt_access=True),
    _p(3, MAP, KEY, pkt_access=True),
    _p(4, UNINIT, SIZE0, ANY, gpl_only=True),  # bpf_probe_read_compat_proto
    _p(5),
    _p(6, RO, SIZE, gpl_only=True),
    _p(7),
    _p(8, allow_fastcall=True),
    _p(9, CTX, ANY, RO, SIZE, ANY, changes_pkt_data=True),
    _p(10, CTX, ANY, ANY, ANY, ANY, changes_pkt_data=True),
    _p(11, CTX, ANY, ANY, ANY, ANY, changes_pkt_data=True),
    TAIL_CALL,  # 12
    _p(13, CTX, ANY, ANY, changes_pkt_data=True),
    _p(14),
    _p(15),
    _p(16, UNINIT, SIZE),
    _p(17, CTX),  # tc, lwt; elsewhere bpf_get_cgroup_classid_curr_proto (VARIANT_PROTOS)
    _p(18, CTX, ANY, ANY, changes_pkt_data=True),
    _p(19, CTX, changes_pkt_data=True),
    _p(20, CTX, UNINIT, SIZE, ANY),
    _p(21, CTX, RO, SIZE, ANY),
    _p(22, MAP, ANY, gpl_only=True),
    _p(23, ANY, ANY),  # bpf_redirect_proto, bpf_xdp_redirect_proto
    _p(24, CTX),
    _p(25, CTX, MAP, ANY, RO, SIZE0, gpl_only=True),  # and the skb, xdp, tp, raw_tp variants
    _p(26, CTX, ANY, UNINIT, SIZE),
    _p(27, CTX, MAP, ANY, gpl_only=True),  # kprobe, tp, raw_tp; perf_event: VARIANT_PROTOS
    _p(28, RO_OR_NULL, SIZE0, RO_OR_NULL, SIZE0, ANY, pkt_access=True),
    _p(29, CTX, UNINIT, SIZE),
    _p(30, CTX, RO, SIZE),
    _p(31, CTX, ANY, ANY, changes_pkt_data=True),
    _p(32, CTX, ANY),
    _p(33, CTX, MAP, ANY),
    _p(34, CTX),
    _p(35, gpl_only=True),
    _p(36, ANY, RO, SIZE, gpl_only=True),
    _p(37, MAP, ANY),
    _p(38, CTX, ANY, ANY, changes_pkt_data=True),
    _p(39, CTX, ANY, changes_pkt_data=True),
    _p(40, CTX, ANY),
    _p(41, CTX),
    _p(42),
    _p(43, CTX, ANY, ANY, changes_pkt_data=True),
    _p(44, CTX, ANY, changes_pkt_data=True),
    _p(45, UNINIT, SIZE0, ANY, gpl_only=True),  # bpf_probe_read_compat_str_proto
    _p(46, CTX),  # skb programs; sock_addr, sock, sock_ops have their own
    _p(47, CTX),
    _p(48, CTX, ANY),
    _p(49, CTX, ANY, ANY, RO, SIZE),  # bpf_sock_ops_setsockopt_proto
    _p(50, CTX, ANY, ANY, ANY, changes_pkt_data=True),
    _p(51, MAP, ANY, ANY),  # bpf_xdp_redirect_map_proto
    _p(52, CTX, MAP, ANY, ANY),
    _p(53, CTX, MAP, KEY, ANY, pkt_access=True),
    _p(54, CTX, ANY, changes_pkt_data=True),
    _p(55, MAP, ANY, UNINIT, SIZE, gpl_only=True),
    _p(56, CTX, UNINIT, SIZE, gpl_only=True),
    _p(57, CTX, ANY, ANY, UNINIT, SIZE),  # bpf_sock_ops_getsockopt_proto
    _p(58, CTX, ANY, gpl_only=True),
    _p(59, CTX, ANY),
    _p(60, CTX, MAP, ANY, ANY),
    _p(61, CTX, ANY),
    _p(62, CTX, ANY),
    _p(63, CTX, ANY, ANY, ANY, changes_pkt_data=True),
    _p(64, CTX, RO, SIZE),
    _p(65, CTX, ANY, changes_pkt_data=True),
    _p(66, CTX, ANY, UNINIT, SIZE, ANY),
    _p(67, CTX, UNINIT, SIZE0, ANY, gpl_only=True),
    _p(68, CTX, ANY, UNINIT, SIZE, ANY),
    _p(69, CTX, WO, SIZE, ANY, gpl_only=True),  # bpf_skb_fib_lookup_proto, bpf_xdp_fib_lookup_proto
    _p(70, CTX, MAP, KEY, ANY, pkt_access=True),
    _p(71, CTX, MAP, KEY, ANY),
    _p(72, CTX, MAP, KEY, ANY),
    _p(73, CTX, ANY, RO, SIZE, changes_pkt_data=True),  # lwt_in and lwt_xmit variants
    _p(74, CTX, ANY, RO, SIZE, changes_pkt_data=True),
    _p(75, CTX, ANY, ANY, changes_pkt_data=True),
    _p(76, CTX, ANY, RO, SIZE, changes_pkt_data=True),
    _p(77, CTX, gpl_only=True),  # drivers/media/rc/bpf-lirc.c
    _p(78, CTX, ANY, ANY, ANY, gpl_only=True),
    _p(79, CTX),
    _p(80),
    _p(81, MAP, ANY, ret=Ret.PTR_TO_MAP_VALUE),
    _p(82, CTX, MAP, KEY, ANY),  # sk_select_reuseport_proto
    _p(83, CTX, ANY),
    # skb (cgroup_skb), tc and xdp variants
    _p(84, CTX, RO, SIZE0, ANY, ANY, ret=Ret.PTR_TO_SOCKET_OR_NULL, pkt_access=True, acquire=True),
    _p(85, CTX, RO, SIZE0, ANY, ANY, ret=Ret.PTR_TO_SOCKET_OR_NULL, pkt_access=True, acquire=True),
    _p(86, BTF_SOCK_COMMON | RELEASE),
    _p(87, MAP, VALUE, ANY, pkt_access=True),
    _p(88, MAP, UNINIT_VALUE),
    _p(89, MAP, UNINIT_VALUE),
    _p(90, CTX, ANY, ANY, ANY, changes_pkt_data=True),
    _p(91, CTX, ANY, ANY, ANY, changes_pkt_data=True),
    _p(92, CTX, ANY, ANY, gpl_only=True),
    _p(93, SPIN_LOCK, ret=Ret.VOID),  # arg1_btf_id BPF_PTR_POISON: the map value's lock
    _p(94, SPIN_LOCK, ret=Ret.VOID),
    _p(95, SOCK_COMMON, ret=Ret.PTR_TO_SOCKET_OR_NULL, ptr_cast=True),
    _p(96, SOCK_COMMON, ret=Ret.PTR_TO_TCP_SOCK_OR_NULL, ptr_cast=True),
    _p(97, CTX),
    _p(98, SOCK_COMMON, ret=Ret.PTR_TO_SOCKET_OR_NULL),
    _p(99, CTX, RO, SIZE0, ANY, ANY, ret=Ret.PTR_TO_SOCK_COMMON_OR_NULL, pkt_access=True,
       acquire=True),
    _p(100, BTF_SOCK_COMMON, RO, SIZE, RO, SIZE, gpl_only=True, pkt_access=True),
    _p(101, CTX, WO, SIZE, ANY),
    _p(102, CTX, UNINIT, SIZE),
    _p(103, CTX, UNINIT, SIZE),
    _p(104, CTX, RO, SIZE),
    _p(105, RO, SIZE, ANY, U64_OUT),
    _p(106, RO, SIZE, ANY, U64_OUT),
    _p(107, MAP, BTF_SOCK_COMMON, VALUE_OR_NULL, ANY, ret=Ret.PTR_TO_MAP_VALUE_OR_NULL),
    _p(108, MAP, BTF_SOCK_COMMON),
    _p(109, ANY),
    _p(110, BTF_SOCK_COMMON, RO, SIZE, RO, SIZE, gpl_only=True, pkt_access=True),
    _p(111, BTF, MAP, ANY, RO, SIZE0, gpl_only=True, btf={0: "sk_buff"}),
    _p(112, UNINIT, SIZE0, ANY, gpl_only=True),
    _p(113, UNINIT, SIZE0, ANY, gpl_only=True),
    _p(114, UNINIT, SIZE0, ANY, gpl_only=True),
    _p(115, UNINIT, SIZE0, ANY, gpl_only=True),
    _p(116, BTF, ANY, btf={0: "tcp_sock"}),  # net/ipv4/bpf_tcp_ca.c
    _p(117, ANY),
    _p(118),
    _p(119, CTX, WO_OR_NULL, SIZE0, ANY, gpl_only=True),
    _p(120, ANY, ANY, UNINIT, SIZE),
    _p(121, BTF, MAP, ANY, RO, SIZE0, gpl_only=True, btf={0: "xdp_buff"}),
    _p(122, CTX_OR_NULL),  # skb programs; sock_addr, sock, sock_ops, sk_msg, sockopt have their own
    _p(123, ANY),
    _p(124, CTX, BTF_SOCK_COMMON, ANY),
    _p(125),
    _p(126, BTF, RO, SIZE, RO_OR_NULL, SIZE0, gpl_only=True, btf={0: "seq_file"}),
    _p(127, BTF, RO, SIZE0, gpl_only=True, btf={0: "seq_file"}),
    _p(128, BTF_SOCK_COMMON),
    _p(129, BTF_SOCK_COMMON, ANY),
    _p(130, MAP, RO, SIZE0, ANY),
    _p(131, MAP, ALLOC_SIZE0, ANY, ret=Ret.PTR_TO_RINGBUF_MEM_OR_NULL, acquire=True),
    _p(132, RINGBUF_MEM | RELEASE, ANY, ret=Ret.VOID),
    _p(133, RINGBUF_MEM | RELEASE, ANY, ret=Ret.VOID),
    _p(134, MAP, ANY),
    _p(135, CTX, ANY),
    _p(136, BTF_SOCK_COMMON, ret=Ret.PTR_TO_BTF_ID_OR_NULL, ptr_cast=True, ret_btf="tcp6_sock"),
    _p(137, BTF_SOCK_COMMON, ret=Ret.PTR_TO_BTF_ID_OR_NULL, ptr_cast=True, ret_btf="tcp_sock"),
    _p(138, BTF_SOCK_COMMON, ret=Ret.PTR_TO_BTF_ID_OR_NULL, ptr_cast=True,
       ret_btf="tcp_timewait_sock"),
    _p(139, BTF_SOCK_COMMON, ret=Ret.PTR_TO_BTF_ID_OR_NULL, ptr_cast=True,
       ret_btf="tcp_request_sock"),
    _p(140, BTF_SOCK_COMMON, ret=Ret.PTR_TO_BTF_ID_OR_NULL, ptr_cast=True, ret_btf="udp6_sock"),
    _p(141, BTF, UNINIT, SIZE0, ANY, btf={0: TASK}),  # sleepable programs: might_sleep too
    _p(142, CTX, WO, SIZE, ANY),  # bpf_sock_ops_load_hdr_opt_proto
    _p(143, CTX, RO, SIZE, ANY, changes_pkt_data=True),  # bpf_sock_ops_store_hdr_opt_proto
    _p(144, CTX, ANY, ANY),  # bpf_sock_ops_reserve_hdr_opt_proto
    _p(145, MAP, BTF_OR_NULL, VALUE_OR_NULL, ANY, ret=Ret.PTR_TO_MAP_VALUE_OR_NULL,
       btf={1: "inode"}),
    _p(146, MAP, BTF_OR_NULL, btf={1: "inode"}),
    _p(147, BTF, WO, SIZE0, btf={0: "path"}),
    _p(148, UNINIT, SIZE0, ANY, might_sleep=True),
    _p(149, WO, SIZE, RO, SIZE, ANY),
    _p(150, BTF, RO, SIZE0, ANY, gpl_only=True, btf={0: "seq_file"}),
    _p(151, CTX),
    _p(152, ANY, RO_OR_NULL, SIZE0, ANY),
    _p(153, PERCPU_BTF, ANY, ret=Ret.PTR_TO_RDONLY_MEM_OR_BTF_ID_OR_NULL),
    _p(154, PERCPU_BTF, ret=Ret.PTR_TO_RDONLY_MEM_OR_BTF_ID),
    _p(155, ANY, ANY),
    _p(156, MAP, BTF_OR_NULL, VALUE_OR_NULL, ANY, ret=Ret.PTR_TO_MAP_VALUE_OR_NULL,
       btf={1: TASK}),  # and the _recur variant
    _p(157, MAP, BTF_OR_NULL, btf={1: TASK}),
    _p(158, ret=Ret.PTR_TO_BTF_ID_TRUSTED, gpl_only=True, ret_btf=TASK),
    _p(159, BTF, ANY, btf={0: "linux_binprm"}),
    _p(160),
    _p(161, BTF, UNINIT, SIZE, might_sleep=True, btf={0: "inode"}),
    _p(162, BTF, ret=Ret.PTR_TO_BTF_ID_OR_NULL, btf={0: "file"}, ret_btf="socket"),
    # bpf_skb_check_mtu_proto, bpf_xdp_check_mtu_proto: mtu_len is a u32 the helper updates
    _p(163, CTX, ANY, fixed_size_mem(4, ArgFlag.MEM_WRITE | ArgFlag.MEM_ALIGNED), ANY, ANY,
       gpl_only=True),
    _p(164, MAP, FUNC, STACK_OR_NULL, ANY, callback=MAP_ELEM_CALLBACK),
    _p(165, WO_OR_NULL, SIZE0, CONST_STR, RO_OR_NULL, SIZE0, gpl_only=True),
    _p(166, ANY, RO, SIZE, might_sleep=True),
    _p(167, RO, SIZE, ANY, ANY, might_sleep=True),  # kernel/bpf/btf.c
    _p(168, ANY, might_sleep=True),
    _p(169, TIMER, MAP, ANY, gpl_only=True),
    _p(170, TIMER, FUNC, gpl_only=True, callback=TIMER_CALLBACK),
    _p(171, TIMER, ANY, ANY, gpl_only=True),
    _p(172, TIMER, gpl_only=True),
    _p(173, CTX, gpl_only=True),  # bpf_get_func_ip_proto_kprobe
    _p(174, CTX),  # bpf_get_attach_cookie_proto_trace (and _pe)
    _p(175, BTF, ret=Ret.PTR_TO_BTF_ID, gpl_only=True, btf={0: TASK}, ret_btf="pt_regs"),
    _p(176, UNINIT, SIZE0, gpl_only=True),
    _p(177, RO, SIZE, RO_OR_NULL, SIZE0, gpl_only=True),
    # not a pointer cast for the verifier: R0 holds no reference
    _p(178, BTF_SOCK_COMMON, ret=Ret.PTR_TO_BTF_ID_OR_NULL, ret_btf="unix_sock"),
    _p(179, RO, SIZE0, ANY, U64_OUT),
    _p(180, BTF, ANY, FUNC, STACK_OR_NULL, ANY, btf={0: TASK}, callback=FIND_VMA_CALLBACK),
    _p(181, ANY, FUNC, STACK_OR_NULL, ANY, callback=LOOP_CALLBACK),
    _p(182, RO, SIZE, CONST_STR),
    _p(183, CTX, ANY, U64_OUT),
    _p(184, CTX, U64_OUT),
    _p(185, CTX),
    _p(186),
    _p(187, ANY),
    _p(188, CTX),
    _p(189, CTX, ANY, UNINIT, SIZE),
    _p(190, CTX, ANY, RO, SIZE),
    _p(191, UNINIT, SIZE0, ANY, BTF, ANY, gpl_only=True, might_sleep=True, btf={3: TASK}),
    _p(192, CTX, ANY, ANY),
    _p(193, BTF, UNINIT, SIZE, might_sleep=True, btf={0: "file"}),
    # arg2_btf_id and ret_btf_id are BPF_PTR_POISON: the type of the map's kptr field
    _p(194, KPTR_DEST, BTF_OR_NULL | RELEASE, ret=Ret.PTR_TO_BTF_ID_OR_NULL, acquire=True),
    _p(195, MAP, KEY, ANY, ret=Ret.PTR_TO_MAP_VALUE_OR_NULL, pkt_access=True),
    _p(196, SOCK_COMMON, ret=Ret.PTR_TO_BTF_ID_OR_NULL, ptr_cast=True, ret_btf="mptcp_sock"),
    _p(197, UNINIT, SIZE0, ANY, NEW_LOCAL_DYNPTR),
    _p(198, MAP, ANY, ANY, NEW_RINGBUF_DYNPTR),
    _p(199, RINGBUF_DYNPTR | RELEASE, ANY, ret=Ret.VOID),
    _p(200, RINGBUF_DYNPTR | RELEASE, ANY, ret=Ret.VOID),
    _p(201, UNINIT, SIZE0, DYNPTR | ArgFlag.MEM_RDONLY, ANY, ANY),
    _p(202, DYNPTR | ArgFlag.MEM_RDONLY, ANY, RO, SIZE0, ANY),
    _p(203, DYNPTR | ArgFlag.MEM_RDONLY, ANY, ALLOC_SIZE0, ret=Ret.PTR_TO_DYNPTR_MEM_OR_NULL),
    _p(204, fixed_size_mem(IPHDR, ArgFlag.MEM_RDONLY), RO, SIZE0, gpl_only=True, pkt_access=True),
    _p(205, fixed_size_mem(IPV6HDR, ArgFlag.MEM_RDONLY), RO, SIZE0, gpl_only=True,
       pkt_access=True),
    _p(206, fixed_size_mem(IPHDR, ArgFlag.MEM_RDONLY), fixed_size_mem(TCPHDR, ArgFlag.MEM_RDONLY),
       gpl_only=True, pkt_access=True),
    _p(207, fixed_size_mem(IPV6HDR, ArgFlag.MEM_RDONLY),
       fixed_size_mem(TCPHDR, ArgFlag.MEM_RDONLY), gpl_only=True, pkt_access=True),
    _p(208),
    _p(209, MAP, FUNC, STACK_OR_NULL, ANY, callback=USER_RINGBUF_CALLBACK),
    _p(210, MAP, BTF_OR_NULL, VALUE_OR_NULL, ANY, ret=Ret.PTR_TO_MAP_VALUE_OR_NULL,
       btf={1: "cgroup"}),
    _p(211, MAP, BTF_OR_NULL, btf={1: "cgroup"}),
)  # fmt: skip

KERNEL_PROTOS: dict[int, HelperProto] = dict(enumerate(_PROTOS, start=1))
"""Helper id -> the kernel's prototype, for every id of ``enum bpf_func_id``."""

# --- the kernel's proto objects, by name -------------------------------------------------------
_SYMBOLS: dict[str, tuple[str, ...]] = {
    "bpf_probe_read": ("bpf_probe_read_compat_proto",),
    "bpf_probe_read_str": ("bpf_probe_read_compat_str_proto",),
    "bpf_redirect": ("bpf_redirect_proto", "bpf_xdp_redirect_proto"),
    "bpf_redirect_map": ("bpf_xdp_redirect_map_proto",),
    "bpf_perf_event_output": ("bpf_perf_event_output_proto", "bpf_skb_event_output_proto",
                              "bpf_xdp_event_output_proto", "bpf_perf_event_output_proto_tp",
                              "bpf_perf_event_output_proto_raw_tp", "bpf_event_output_data_proto"),
    "bpf_skb_load_bytes": ("bpf_skb_load_bytes_proto", "bpf_flow_dissector_load_bytes_proto",
                           "sk_reuseport_load_bytes_proto"),
    "bpf_skb_load_bytes_relative": ("bpf_skb_load_bytes_relative_proto",
                                    "sk_reuseport_load_bytes_relative_proto"),
    "bpf_get_stack": ("bpf_get_stack_proto", "bpf_get_stack_proto_tp", "bpf_get_stack_proto_pe",
                      "bpf_get_stack_proto_raw_tp"),
    "bpf_get_func_ip": ("bpf_get_func_ip_proto_kprobe", "bpf_get_func_ip_proto_tracing"),
    "bpf_get_attach_cookie": ("bpf_get_attach_cookie_proto_trace",
                              "bpf_get_attach_cookie_proto_pe",
                              "bpf_get_attach_cookie_proto_tracing"),
    "bpf_get_stackid": ("bpf_get_stackid_proto", "bpf_get_stackid_proto_tp",
                        "bpf_get_stackid_proto_raw_tp"),
    "bpf_get_socket_cookie": ("bpf_get_socket_cookie_proto", "bpf_get_socket_cookie_sock_proto",
                              "bpf_get_socket_cookie_sock_addr_proto",
                              "bpf_get_socket_cookie_sock_ops_proto"),
    "bpf_get_netns_cookie": ("bpf_get_netns_cookie_proto", "bpf_get_netns_cookie_sock_proto",
                             "bpf_get_netns_cookie_sock_addr_proto",
                             "bpf_get_netns_cookie_sock_ops_proto",
                             "bpf_get_netns_cookie_sk_msg_proto",
                             "bpf_get_netns_cookie_sockopt_proto"),
    "bpf_setsockopt": ("bpf_sock_ops_setsockopt_proto", "bpf_sock_addr_setsockopt_proto"),
    "bpf_getsockopt": ("bpf_sock_ops_getsockopt_proto", "bpf_sock_addr_getsockopt_proto"),
    "bpf_skb_pull_data": ("bpf_skb_pull_data_proto", "sk_skb_pull_data_proto"),
    "bpf_skb_change_tail": ("bpf_skb_change_tail_proto", "sk_skb_change_tail_proto"),
    "bpf_skb_change_head": ("bpf_skb_change_head_proto", "sk_skb_change_head_proto"),
    "bpf_skb_adjust_room": ("bpf_skb_adjust_room_proto", "sk_skb_adjust_room_proto"),
    "bpf_fib_lookup": ("bpf_skb_fib_lookup_proto", "bpf_xdp_fib_lookup_proto"),
    "bpf_lwt_push_encap": ("bpf_lwt_in_push_encap_proto", "bpf_lwt_xmit_push_encap_proto"),
    "bpf_rc_repeat": ("rc_repeat_proto",),
    "bpf_rc_keydown": ("rc_keydown_proto",),
    "bpf_rc_pointer_rel": ("rc_pointer_rel_proto",),
    "bpf_sk_select_reuseport": ("sk_select_reuseport_proto",),
    "bpf_sk_lookup_tcp": ("bpf_sk_lookup_tcp_proto", "bpf_tc_sk_lookup_tcp_proto",
                          "bpf_xdp_sk_lookup_tcp_proto"),
    "bpf_sk_lookup_udp": ("bpf_sk_lookup_udp_proto", "bpf_tc_sk_lookup_udp_proto",
                          "bpf_xdp_sk_lookup_udp_proto"),
    "bpf_skc_lookup_tcp": ("bpf_skc_lookup_tcp_proto", "bpf_tc_skc_lookup_tcp_proto",
                           "bpf_xdp_skc_lookup_tcp_proto"),
    "bpf_load_hdr_opt": ("bpf_sock_ops_load_hdr_opt_proto",),
    "bpf_store_hdr_opt": ("bpf_sock_ops_store_hdr_opt_proto",),
    "bpf_reserve_hdr_opt": ("bpf_sock_ops_reserve_hdr_opt_proto",),
    "bpf_check_mtu": ("bpf_skb_check_mtu_proto", "bpf_xdp_check_mtu_proto"),
    "bpf_task_storage_get": ("bpf_task_storage_get_proto", "bpf_task_storage_get_recur_proto"),
    "bpf_task_storage_delete": ("bpf_task_storage_delete_proto",
                                "bpf_task_storage_delete_recur_proto"),
}  # fmt: skip


def kernel_symbols(name: str) -> tuple[str, ...]:
    """The kernel's proto objects the table's ``name`` (``bpf_x``) stands for: ``bpf_x_proto``,
    or the per-program-type copies that declare the same."""
    return _SYMBOLS.get(name, (f"{name}_proto",))


VARIANT_PROTOS: dict[str, HelperProto] = {
    # bpf_base_func_proto's: not inlined, so no bpf_fastcall
    "bpf_get_raw_smp_processor_id_proto": replace(KERNEL_PROTOS[8], allow_fastcall=False),
    # base and cgroup types: the current task's cgroup, no argument (tc and lwt: the skb's)
    "bpf_get_cgroup_classid_curr_proto": _p(17),
    "bpf_get_stackid_proto_pe": replace(KERNEL_PROTOS[27], gpl_only=False),
    "bpf_get_socket_ptr_cookie_proto": _p(46, BTF_SOCK_COMMON | ArgFlag.MAYBE_NULL),
    "bpf_sk_setsockopt_proto": _p(49, BTF_SOCK_COMMON, ANY, ANY, RO, SIZE),
    "bpf_sk_getsockopt_proto": _p(57, BTF_SOCK_COMMON, ANY, ANY, UNINIT, SIZE),
    # cgroup_sock_addr: no packet to pass
    "bpf_sock_addr_sk_lookup_tcp_proto": replace(KERNEL_PROTOS[84], pkt_access=False),
    "bpf_sock_addr_sk_lookup_udp_proto": replace(KERNEL_PROTOS[85], pkt_access=False),
    "bpf_sock_addr_skc_lookup_tcp_proto": replace(KERNEL_PROTOS[99], pkt_access=False),
    "bpf_sk_storage_get_cg_sock_proto": _p(107, MAP, CTX, VALUE_OR_NULL, ANY,
                                           ret=Ret.PTR_TO_MAP_VALUE_OR_NULL),
    "bpf_sk_storage_get_tracing_proto": _p(107, MAP, BTF_OR_NULL, VALUE_OR_NULL, ANY,
                                           ret=Ret.PTR_TO_MAP_VALUE_OR_NULL,
                                           btf={1: "sock_common"}),
    "bpf_sk_storage_delete_tracing_proto": _p(108, MAP, BTF_OR_NULL, btf={1: "sock_common"}),
    # sk_lookup: the socket to select, or NULL
    "bpf_sk_lookup_assign_proto": _p(124, CTX, Arg.PTR_TO_SOCKET | ArgFlag.MAYBE_NULL, ANY),
    # fentry/fexit of XDP functions: the xdp_buff by BTF
    "bpf_xdp_get_buff_len_trace_proto": _p(188, BTF, btf={0: "xdp_buff"}),
}  # fmt: skip
"""The kernel's per-program-type proto objects that declare another prototype than the
table's, by name (a program type names the ones it gets: ``ProgTypeSpec.proto_variants``)."""

_BY_SYMBOL: dict[str, HelperProto] = {
    **{s: p for p in KERNEL_PROTOS.values() for s in kernel_symbols(p.name)},
    **VARIANT_PROTOS,
}


def proto_named(symbol: str) -> HelperProto | None:
    """The prototype the kernel's ``struct bpf_func_proto symbol`` declares, or None if unknown."""
    return _BY_SYMBOL.get(symbol)


# --- what the verifier cannot check yet --------------------------------------------------------
MAP_UNCHECKED: frozenset[int] = frozenset({
    169, 198,  # timer_init: the timer's own map; ringbuf_reserve_dynptr
})  # fmt: skip
"""Helpers whose ARG_CONST_MAP_PTR the verifier does not check against the map types they
take (every other helper's map argument is checked with :mod:`.mapcompat`'s table)."""

_NOT_TRACKED = {  # argument kinds pybpf's verifier has no state for, and why
    Arg.PTR_TO_PERCPU_BTF_ID: "ksyms are not resolved",
    Arg.PTR_TO_TIMER: "bpf_timer fields are not located",
    Arg.KPTR_XCHG_DEST: "kptr fields are not located",
    Arg.PTR_TO_DYNPTR: "dynptrs are not tracked",
}
_WALKED_CALLBACKS = (LOOP_CALLBACK, MAP_ELEM_CALLBACK, USER_RINGBUF_CALLBACK)


def _unchecked(proto: HelperProto, ident: int, arg: ArgType,
               sleepable: bool) -> tuple[str, frozenset[Base]]:  # fmt: skip
    """(why, register types concerned) when the verifier cannot check ``arg`` yet."""
    why = None
    bases: frozenset[Base] = frozenset()
    if proto.might_sleep and not sleepable:
        return (f"pybpf verifier does not support helper {proto.name} yet (it might sleep, and "
                f"sleepable programs are not modelled)"), bases  # fmt: skip
    if arg.base in _NOT_TRACKED:
        why = _NOT_TRACKED[arg.base]
    elif arg.base is Arg.PTR_TO_FUNC and proto.callback not in _WALKED_CALLBACKS:
        why = "its callback is not explored"
    elif arg.base is Arg.CONST_MAP_PTR and ident in MAP_UNCHECKED:
        why = "the map type is not checked"
    if why is None:
        return "", bases
    return (f"pybpf verifier does not support argument type ARG_{arg.base.name} of helper "
            f"{proto.name} yet ({why})"), bases  # fmt: skip


def mark_unchecked(proto: HelperProto, ident: int, arg: ArgType) -> ArgType:
    """``arg`` of ``proto`` marked with what the verifier cannot check of it yet, for an
    argument type the verifier resolves at the call (resolve_map_arg_type: a sockmap's
    value is a socket)."""
    why, bases = _unchecked(proto, ident, arg, True)
    return replace(arg, unchecked=why, unchecked_bases=bases) if why else arg


def _type_checked(arg: ArgType) -> bool:
    """Whether every call has the verifier look ``arg``'s register up (``accepts``)."""
    return not (arg.base in (Arg.ANYTHING, Arg.DONTCARE, Arg.CONST_ALLOC_SIZE_OR_ZERO)
                or arg.base.is_size or arg.has(ArgFlag.MAYBE_NULL))  # fmt: skip


def for_verifier(ident: int, proto: HelperProto, *, sleepable: bool = False) -> HelperProto | None:
    """``proto`` with the arguments the verifier cannot check yet marked (``ArgType.unchecked``).

    The marks take no part in comparisons: the result equals ``proto``; a
    prototype with nothing unchecked is returned as is.  ``sleepable``: the
    program is loaded with BPF_F_SLEEPABLE, so helpers that might sleep are
    as any other (the kernel's other sleepable-context checks concern
    kfuncs, which pybpf's verifier refuses).  None when a call could not be
    refused through its arguments although it must be (a helper that might
    sleep and takes only scalars, in a program not known to be sleepable):
    the verifier is better without it.
    """
    marked = []
    for arg in proto.args:
        why, bases = _unchecked(proto, ident, arg, sleepable)
        marked.append(replace(arg, unchecked=why, unchecked_bases=bases) if why else arg)
    refuse_call = proto.might_sleep and not sleepable
    if all(a is b for a, b in zip(marked, proto.args, strict=True)):
        return None if refuse_call else proto
    if refuse_call and not any(_type_checked(a) for a in marked):
        return None
    return replace(proto, args=tuple(marked))
