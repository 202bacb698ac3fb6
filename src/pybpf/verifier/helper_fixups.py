"""do_misc_fixups' helper calls for the shown image: inlined lookups, map operations, names.

A map lookup becomes the map's ``map_gen_lookup`` (array, hash, LRU hash, array of
maps, xskmap: kernel/bpf/arraymap.c, hashtab.c, net/xdp/xskmap.c); the other map
helpers call the map's own operation (struct bpf_map_ops); bpf_get_smp_processor_id
and bpf_jiffies64 are inlined as x86-64 inlines them; the storage_get helpers get
their hidden GFP argument; every other helper call names the function of the proto
its program type's ``get_func_proto`` returns (what bpftool prints through kallsyms).
"""

from __future__ import annotations

from collections.abc import Callable

from pybpf.isa import Instruction
from pybpf.isa.helper_ids import helper_id, helper_name
from pybpf.uapi.klayout import Layouts
from pybpf.verifier import ctx as ctxrules
from pybpf.verifier import mapcompat as M
from pybpf.verifier.ctx_skb import (
    CGROUP_SKB,
    LWT_IN,
    LWT_OUT,
    LWT_XMIT,
    SCHED_ACT,
    SCHED_CLS,
    SOCKET_FILTER,
)
from pybpf.verifier.helper_protos import kernel_symbols
from pybpf.verifier.kinsn import (
    ADD,
    ALU64,
    CALL,
    JEQ,
    JGE,
    JMP32,
    JNE,
    LSH,
    MEM,
    MOV,
    MUL,
    SIZE,
    ST,
    XDP,
    Patch,
    X,
    _round8,
    alu64_imm,
    alu64_reg,
    call,
    ja,
    jmp_imm,
    ldx,
)


def _array_lookup(m, lay: Layouts) -> Patch | None:
    """array_map_gen_lookup (a privileged loader: no Spectre index masking)."""
    if getattr(m, "map_flags", 0) & INNER_MAP:
        return None
    elem = _round8(m.value_size)
    scale = alu64_imm(LSH, 0, elem.bit_length() - 1) if elem & (elem - 1) == 0 \
        else alu64_imm(MUL, 0, elem)  # fmt: skip
    out = [alu64_imm(ADD, 1, lay.off("bpf_array.value")), ldx(4, 0, 2, 0),
           jmp_imm(JGE, 0, m.max_entries, 3), scale, alu64_reg(ADD, 0, 1), ja(1),
           alu64_imm(MOV, 0, 0)]  # fmt: skip
    return [(i, None) for i in out]


def _htab_lookup(m, lay: Layouts) -> Patch:
    """htab_map_gen_lookup."""
    value = lay.off("htab_elem.key") + _round8(m.key_size)
    return [(call(LOOKUP), "__htab_map_lookup_elem"), (jmp_imm(JEQ, 0, 0, 1), None),
            (alu64_imm(ADD, 0, value), None)]


def _lru_lookup(m, lay: Layouts) -> Patch:
    """htab_lru_map_gen_lookup: the element's LRU ref bit is set on the way."""
    ref = lay.off("htab_elem.lru_node") + lay.off("bpf_lru_node.ref")
    value = lay.off("htab_elem.key") + _round8(m.key_size)
    return [(call(LOOKUP), "__htab_map_lookup_elem"), (jmp_imm(JEQ, 0, 0, 4), None),
            (ldx(1, 1, 0, ref), None), (jmp_imm(JNE, 1, 0, 1), None),
            (Instruction(ST | MEM | SIZE[1], 0, 0, ref, 1), None),
            (alu64_imm(ADD, 0, value), None)]


def _percpu_array_lookup(m, lay: Layouts) -> Patch | None:
    """percpu_array_map_gen_lookup: this CPU's copy of the slot's value."""
    if getattr(m, "map_flags", 0) & INNER_MAP:
        return None
    out = [alu64_imm(ADD, 1, lay.off("bpf_array.pptrs")), ldx(4, 0, 2, 0),
           jmp_imm(JGE, 0, m.max_entries, 5), alu64_imm(LSH, 0, 3), alu64_reg(ADD, 0, 1),
           ldx(8, 0, 0, 0), Instruction(ALU64 | MOV | X, 0, 0, PERCPU), ja(1),
           alu64_imm(MOV, 0, 0)]  # fmt: skip
    return [(i, None) for i in out]


def _percpu_htab_lookup(m, lay: Layouts) -> Patch:
    """htab_percpu_map_gen_lookup: this CPU's copy of the element's value."""
    value = lay.off("htab_elem.key") + _round8(m.key_size)
    return [(call(LOOKUP), "__htab_map_lookup_elem"), (jmp_imm(JEQ, 0, 0, 3), None),
            (alu64_imm(ADD, 0, value), None), (ldx(8, 0, 0, 0), None),
            (Instruction(ALU64 | MOV | X, 0, 0, PERCPU), None)]


def _array_of_maps_lookup(m, lay: Layouts) -> Patch:
    """array_of_map_gen_lookup: the array's slot, then the inner map it holds (or NULL)."""
    out = [alu64_imm(ADD, 1, lay.off("bpf_array.value")), ldx(4, 0, 2, 0),
           jmp_imm(JGE, 0, m.max_entries, 5), alu64_imm(LSH, 0, 3), alu64_reg(ADD, 0, 1),
           ldx(8, 0, 0, 0), jmp_imm(JEQ, 0, 0, 1), ja(1), alu64_imm(MOV, 0, 0)]  # fmt: skip
    return [(i, None) for i in out]


def _xsk_lookup(m, lay: Layouts) -> Patch:
    """xsk_map_gen_lookup: the socket in the map's slot."""
    out = [ldx(4, 0, 2, 0), jmp_imm(JGE, 0, m.max_entries, 5, JMP32), alu64_imm(LSH, 0, 3),
           alu64_imm(ADD, 1, lay.off("xsk_map.xsk_map")), alu64_reg(ADD, 0, 1),
           ldx(8, 0, 0, 0), ja(1), alu64_imm(MOV, 0, 0)]  # fmt: skip
    return [(i, None) for i in out]


INNER_MAP = 1 << 12  # BPF_F_INNER_MAP
LOOKUP = helper_id("map_lookup_elem") or 1
_GEN_LOOKUP: dict[int, Callable[[object, Layouts], Patch | None]] = {
    M.ARRAY: _array_lookup, M.HASH: _htab_lookup, M.LRU_HASH: _lru_lookup,
    M.ARRAY_OF_MAPS: _array_of_maps_lookup, M.XSKMAP: _xsk_lookup,
    M.PERCPU_ARRAY: _percpu_array_lookup, M.PERCPU_HASH: _percpu_htab_lookup,
}  # fmt: skip

# The map operations a map helper reaches (struct bpf_map_ops, kernel/bpf/*.c):
# map type -> (lookup, update, delete) function names.
_OPS: dict[int, tuple[str | None, str | None, str | None]] = {
    M.HASH: ("htab_map_lookup_elem", "htab_map_update_elem", "htab_map_delete_elem"),
    M.ARRAY: ("array_map_lookup_elem", "array_map_update_elem", "array_map_delete_elem"),
    M.PROG_ARRAY: ("fd_array_map_lookup_elem", None, "fd_array_map_delete_elem"),
    M.PERF_EVENT_ARRAY: ("fd_array_map_lookup_elem", None, "fd_array_map_delete_elem"),
    M.PERCPU_HASH: ("htab_percpu_map_lookup_elem", "htab_percpu_map_update_elem",
                    "htab_map_delete_elem"),
    M.PERCPU_ARRAY: ("percpu_array_map_lookup_elem", "array_map_update_elem",
                     "array_map_delete_elem"),
    M.LRU_HASH: ("htab_lru_map_lookup_elem", "htab_lru_map_update_elem",
                 "htab_lru_map_delete_elem"),
    M.LRU_PERCPU_HASH: ("htab_lru_percpu_map_lookup_elem", "htab_lru_percpu_map_update_elem",
                        "htab_lru_map_delete_elem"),
    M.LPM_TRIE: ("trie_lookup_elem", "trie_update_elem", "trie_delete_elem"),
    M.ARRAY_OF_MAPS: ("array_of_map_lookup_elem", None, "fd_array_map_delete_elem"),
    M.HASH_OF_MAPS: ("htab_of_map_lookup_elem", None, "htab_map_delete_elem"),
    M.QUEUE: ("queue_stack_map_lookup_elem", "queue_stack_map_update_elem",
              "queue_stack_map_delete_elem"),
    M.STACK: ("queue_stack_map_lookup_elem", "queue_stack_map_update_elem",
              "queue_stack_map_delete_elem"),
    M.RINGBUF: ("ringbuf_map_lookup_elem", "ringbuf_map_update_elem",
                "ringbuf_map_delete_elem"),
    M.DEVMAP: ("dev_map_lookup_elem", "dev_map_update_elem", "dev_map_delete_elem"),
    M.CPUMAP: ("cpu_map_lookup_elem", "cpu_map_update_elem", "cpu_map_delete_elem"),
    M.XSKMAP: ("xsk_map_lookup_elem", "xsk_map_update_elem", "xsk_map_delete_elem"),
    M.SOCKMAP: ("sock_map_lookup", "sock_map_update_elem", "sock_map_delete_elem"),
    M.SOCKHASH: ("sock_hash_lookup", "sock_map_update_elem", "sock_hash_delete_elem"),
    M.BLOOM_FILTER: ("bloom_map_lookup_elem", "bloom_map_update_elem", "bloom_map_delete_elem"),
}  # fmt: skip
_OTHER_OPS = {  # helper name -> {map type: function}
    "map_push_elem": {M.QUEUE: "queue_stack_map_push_elem", M.STACK: "queue_stack_map_push_elem",
                      M.BLOOM_FILTER: "bloom_map_push_elem"},
    "map_pop_elem": {M.QUEUE: "queue_map_pop_elem", M.STACK: "stack_map_pop_elem"},
    "map_peek_elem": {M.QUEUE: "queue_map_peek_elem", M.STACK: "stack_map_peek_elem",
                      M.BLOOM_FILTER: "bloom_map_peek_elem"},
    "redirect_map": {M.DEVMAP: "dev_map_redirect", M.DEVMAP_HASH: "dev_hash_map_redirect",
                     M.CPUMAP: "cpu_map_redirect", M.XSKMAP: "xsk_map_redirect"},
    "for_each_map_elem": {M.ARRAY: "bpf_for_each_array_elem",
                          M.PERCPU_ARRAY: "bpf_for_each_array_elem",
                          M.HASH: "bpf_for_each_hash_elem", M.LRU_HASH: "bpf_for_each_hash_elem",
                          M.PERCPU_HASH: "bpf_for_each_hash_elem",
                          M.LRU_PERCPU_HASH: "bpf_for_each_hash_elem"},
}  # fmt: skip
_OPS_INDEX = {"map_lookup_elem": 0, "map_update_elem": 1, "map_delete_elem": 2}

# Helper protos whose ``.func`` is not the proto's name without ``_proto`` (the kernel's
# bpf_func_proto definitions, kernel/bpf/helpers.c, kernel/trace/bpf_trace.c, net/core/filter.c)
_FUNCS = {
    "bpf_get_prandom_u32_proto": "bpf_user_rnd_u32",
    "bpf_get_raw_smp_processor_id_proto": "bpf_get_raw_cpu_id",
    "bpf_get_func_arg_proto": "get_func_arg", "bpf_get_func_ret_proto": "get_func_ret",
    "bpf_get_func_arg_cnt_proto": "get_func_arg_cnt",
    "bpf_get_attach_cookie_proto_kmulti": "bpf_get_attach_cookie_kprobe_multi",
    "bpf_get_attach_cookie_proto_umulti": "bpf_get_attach_cookie_uprobe_multi",
    "bpf_sk_storage_get_cg_sock_proto": "bpf_sk_storage_get",
    "bpf_skb_output_proto": "bpf_skb_event_output", "bpf_xdp_output_proto": "bpf_xdp_event_output",
    "bpf_xdp_get_buff_len_trace_proto": "bpf_xdp_get_buff_len",
    "rc_keydown_proto": "bpf_rc_keydown", "rc_pointer_rel_proto": "bpf_rc_pointer_rel",
    "rc_repeat_proto": "bpf_rc_repeat",
}  # fmt: skip


_SKB_OUT = {"perf_event_output": "bpf_skb_event_output_proto"}
_TC = {**_SKB_OUT, "fib_lookup": "bpf_skb_fib_lookup_proto",
       "check_mtu": "bpf_skb_check_mtu_proto", "sk_lookup_tcp": "bpf_tc_sk_lookup_tcp_proto",
       "sk_lookup_udp": "bpf_tc_sk_lookup_udp_proto",
       "skc_lookup_tcp": "bpf_tc_skc_lookup_tcp_proto"}  # fmt: skip
_RAW_TP = {"perf_event_output": "bpf_perf_event_output_proto_raw_tp",
           "get_stackid": "bpf_get_stackid_proto_raw_tp",
           "get_stack": "bpf_get_stack_proto_raw_tp",
           "get_attach_cookie": "bpf_get_attach_cookie_proto_tracing"}  # fmt: skip
_SKB_CLASSID = (SCHED_CLS, SCHED_ACT, LWT_IN, LWT_OUT, LWT_XMIT)  # the skb's, not current's
# The protos program types get that have the common prototype but another function
# (the verifier's tables list only the protos that differ in shape).
_SAME_SHAPE = {
    XDP: {"perf_event_output": "bpf_xdp_event_output_proto", "redirect": "bpf_xdp_redirect_proto",
          "redirect_map": "bpf_xdp_redirect_map_proto", "fib_lookup": "bpf_xdp_fib_lookup_proto",
          "check_mtu": "bpf_xdp_check_mtu_proto", "sk_lookup_tcp": "bpf_xdp_sk_lookup_tcp_proto",
          "sk_lookup_udp": "bpf_xdp_sk_lookup_udp_proto",
          "skc_lookup_tcp": "bpf_xdp_skc_lookup_tcp_proto"},
    SCHED_CLS: _TC, SCHED_ACT: _TC, SOCKET_FILTER: _SKB_OUT, CGROUP_SKB: _SKB_OUT,
    LWT_IN: _SKB_OUT, LWT_OUT: _SKB_OUT, LWT_XMIT: _SKB_OUT,
    2: {"get_func_ip": "bpf_get_func_ip_proto_kprobe",
        "get_attach_cookie": "bpf_get_attach_cookie_proto_trace"},
    5: {"perf_event_output": "bpf_perf_event_output_proto_tp",
        "get_stackid": "bpf_get_stackid_proto_tp", "get_stack": "bpf_get_stack_proto_tp",
        "get_attach_cookie": "bpf_get_attach_cookie_proto_trace"},
    7: {"get_attach_cookie": "bpf_get_attach_cookie_proto_pe"},
    17: _RAW_TP, 24: _RAW_TP,
}  # fmt: skip


def function_of(proto: str) -> str:
    """The kernel function a helper proto object calls (``bpf_x_proto_tp``: ``bpf_x_tp``)."""
    if proto in _FUNCS:
        return _FUNCS[proto]
    return proto.removesuffix("_proto") if proto.endswith("_proto") else \
        proto.replace("_proto_", "_")  # fmt: skip


def helper_symbol(func_id: int, prog_type: int) -> str | None:
    """The kernel function a helper call of ``prog_type`` reaches (None: unknown id):
    that of the proto the program type's ``get_func_proto`` returns for it."""
    name = helper_name(func_id)
    if name is None:
        return None
    type_ops = ctxrules.ops(prog_type)
    variants = {**_SAME_SHAPE.get(prog_type, {}),
                **(type_ops.helpers.variants if type_ops is not None else {})}
    if name == "get_cgroup_classid" and prog_type not in _SKB_CLASSID:
        return "bpf_get_cgroup_classid_curr"
    protos = kernel_symbols(f"bpf_{name}")  # a helper with one proto everywhere has it
    return function_of(variants.get(name, protos[0] if len(protos) == 1 else f"bpf_{name}_proto"))


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _cpu_id(address: int) -> list[Instruction]:
    """bpf_get_smp_processor_id inlined: this CPU's ``cpu_number`` (a per-CPU load)."""
    return [alu64_imm(MOV, 0, _s32(address)), Instruction(ALU64 | MOV | X, 0, 0, PERCPU),
            ldx(4, 0, 0, 0)]  # fmt: skip


def _jiffies(address: int) -> list[Instruction]:
    """bpf_jiffies64 inlined: a load of ``jiffies``."""
    return [Instruction(LDDW, 0, 0, 0, _s32(address), _s32(address >> 32)), ldx(8, 0, 0, 0)]


GFP_ATOMIC = 0x820  # __GFP_HIGH | __GFP_KSWAPD_RECLAIM
_STORAGE_GET = frozenset({"sk_storage_get", "inode_storage_get", "task_storage_get",
                          "cgrp_storage_get"})
PERCPU = -1  # BPF_ADDR_PERCPU
LDDW = 0x18
#: helpers do_misc_fixups inlines on x86-64: (the address they load, the instructions)
_INLINED = {"get_smp_processor_id": ("cpu_number", _cpu_id), "jiffies64": ("jiffies", _jiffies)}


def inlined_helper(name: str, lay: Layouts) -> bool:
    """do_misc_fixups inlines helper ``name`` (``bpf_<name>``) on this kernel."""
    inline = _INLINED.get(name)
    return inline is not None and lay.address(inline[0]) is not None


def call_patch(si: Instruction, m: object | None, prog_type: int,
               lay: Layouts) -> Patch | None:  # fmt: skip
    """A helper call (given map ``m``, None when unknown): inlined map lookup, the map's own
    operation, or the helper's function."""
    if si.code != CALL or si.src_reg != 0:
        return None
    name = helper_name(si.imm)
    if name is None:
        return None
    if m is not None:
        mtype = getattr(m, "map_type", None)
        mtype = int(mtype) if mtype is not None else None
        if name == "map_lookup_elem" and mtype in _GEN_LOOKUP:
            patch = _GEN_LOOKUP[mtype](m, lay)
            if patch is not None:
                return patch
        if name in _OPS_INDEX and mtype in _OPS:
            fn = _OPS[mtype][_OPS_INDEX[name]]
            if fn is not None:
                return [(si, fn)]
        if name in _OTHER_OPS and mtype in _OTHER_OPS[name]:
            return [(si, _OTHER_OPS[name][mtype])]
    if name in _STORAGE_GET:  # the hidden fifth argument: GFP_ATOMIC (not sleepable)
        return [(alu64_imm(MOV, 5, GFP_ATOMIC), None), (si, helper_symbol(si.imm, prog_type))]
    inline = _INLINED.get(name)
    if inline is not None:
        address = lay.address(inline[0])
        if address is not None:
            return [(i, None) for i in inline[1](address)]
    if name == "tail_call":  # bpf_insn_prepare_dump shows BPF_TAIL_CALL as this call again
        return [(si, None)]
    return [(si, helper_symbol(si.imm, prog_type))]


