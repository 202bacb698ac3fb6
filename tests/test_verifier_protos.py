"""Helper prototypes (pybpf.verifier.protos, pybpf.verifier.helper_protos) against Linux 6.18.

Two oracles.  The sources: ``golden/helper_protos.json`` holds the
``struct bpf_func_proto`` fields of every helper (all 211 ids, and the
per-program-type variants pybpf's program types see), extracted from the
6.18 tree by ``verifier_protos_extract.py``; each HelperProto must say the
same.  The entries with a ``source`` key were added for the helpers pybpf
does not implement: net/core/filter.c's from Linux 6.18.19, the others from
Debian's linux-source 6.12.118 with the prototype changes made since (upstream
802eef5afb18, ac44dcc788b9, 2eb7648558a7) applied by hand; those the
program types pybpf models can call were also checked against the running
6.18 kernel with the probes below.  The kernel: what a prototype decides is observable
when a call is refused — the GPL check, ``R3 type=scalar expected=fp, pkt,
...`` for a wrong argument, ``invalid zero-sized read`` for CONST_SIZE,
writes into read-only map memory for memory the helper fills, packet
pointers for helpers without pkt_access, and R0's type after the call.  Those
cases are built for every helper and argument the test can give valid values
to; what the kernel's log showed is recorded in ``kernel_facts/verifier_protos.json``
(the live kernel is asked too, for drift) and must be what each prototype decides.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pybpf.errors import KernelError, VerifierError
from pybpf.isa import Instruction
from pybpf.isa.helper_ids import HELPER_NAMES, helper_id, helper_name
from pybpf.kernel import linux
from pybpf.runtime.helpers import HELPERS
from pybpf.runtime.progtypes import PROG_TYPES, ProgType
from pybpf.verifier import helper_protos as HP
from pybpf.verifier import mapcompat
from pybpf.verifier import protos as P
from pybpf.verifier.protos import Arg, ArgFlag, ArgType, HelperProto, ProtoError, Ret
from pybpf.verifier.types import Base, Flag, type_str

GOLDEN = Path(__file__).resolve().parent / "golden" / "helper_protos.json"
KERNEL_PROTOS: dict[str, dict] = json.loads(GOLDEN.read_text())

_FLAG_NAMES = {ArgFlag.MAYBE_NULL: "PTR_MAYBE_NULL", ArgFlag.MEM_RDONLY: "MEM_RDONLY",
               ArgFlag.MEM_UNINIT: "MEM_UNINIT", ArgFlag.MEM_WRITE: "MEM_WRITE",
               ArgFlag.MEM_FIXED_SIZE: "MEM_FIXED_SIZE", ArgFlag.MEM_ALIGNED: "MEM_ALIGNED",
               ArgFlag.OBJ_RELEASE: "OBJ_RELEASE", ArgFlag.DYNPTR_LOCAL: "DYNPTR_TYPE_LOCAL",
               ArgFlag.DYNPTR_RINGBUF: "DYNPTR_TYPE_RINGBUF"}  # fmt: skip
# the kernel's named composites, spelled out
_COMPOSITE = {
    "ARG_PTR_TO_UNINIT_MEM": {"ARG_PTR_TO_MEM", "MEM_UNINIT", "MEM_WRITE"},
    "ARG_PTR_TO_FIXED_SIZE_MEM": {"ARG_PTR_TO_MEM", "MEM_FIXED_SIZE"},
    "ARG_PTR_TO_MEM_OR_NULL": {"ARG_PTR_TO_MEM", "PTR_MAYBE_NULL"},
    "ARG_PTR_TO_STACK_OR_NULL": {"ARG_PTR_TO_STACK", "PTR_MAYBE_NULL"},
    "ARG_PTR_TO_MAP_VALUE_OR_NULL": {"ARG_PTR_TO_MAP_VALUE", "PTR_MAYBE_NULL"},
    "ARG_PTR_TO_CTX_OR_NULL": {"ARG_PTR_TO_CTX", "PTR_MAYBE_NULL"},
    "ARG_PTR_TO_BTF_ID_OR_NULL": {"ARG_PTR_TO_BTF_ID", "PTR_MAYBE_NULL"},
    "ARG_PTR_TO_SOCKET_OR_NULL": {"ARG_PTR_TO_SOCKET", "PTR_MAYBE_NULL"},
}
_SIZEOF = {"sizeof(s64)": 8, "sizeof(u64)": 8, "sizeof(u32)": 4, "sizeof(int)": 4,
           "sizeof(struct iphdr)": 20, "sizeof(struct ipv6hdr)": 40, "sizeof(struct tcphdr)": 20}
# argN_btf_id / ret_btf_id -> the struct (include/linux/btf_ids.h, the BTF_ID_LIST declarations
# beside each proto); BPF_PTR_POISON: no fixed type (the map's kptr field, its spin lock)
_BTF_IDS = {
    "&btf_tracing_ids[BTF_TRACING_TYPE_TASK]": "task_struct",
    "&bpf_skb_output_btf_ids[0]": "sk_buff", "&bpf_xdp_output_btf_ids[0]": "xdp_buff",
    "&tcp_sock_id": "tcp_sock", "&btf_seq_file_ids[0]": "seq_file",
    "&bpf_inode_storage_btf_ids[0]": "inode", "&bpf_d_path_btf_ids[0]": "path",
    "&bpf_bprm_opts_set_btf_ids[0]": "linux_binprm", "&bpf_ima_inode_hash_btf_ids[0]": "inode",
    "&bpf_ima_file_hash_btf_ids[0]": "file", "&bpf_sock_from_file_btf_ids[0]": "socket",
    "&bpf_sock_from_file_btf_ids[1]": "file", "&bpf_task_pt_regs_ids[0]": "pt_regs",
    "&bpf_cgroup_btf_id[0]": "cgroup", "&btf_sock_ids[BTF_SOCK_TYPE_TCP6]": "tcp6_sock",
    "&btf_sock_ids[BTF_SOCK_TYPE_TCP]": "tcp_sock",
    "&btf_sock_ids[BTF_SOCK_TYPE_TCP_TW]": "tcp_timewait_sock",
    "&btf_sock_ids[BTF_SOCK_TYPE_TCP_REQ]": "tcp_request_sock",
    "&btf_sock_ids[BTF_SOCK_TYPE_UDP6]": "udp6_sock",
    "&btf_sock_ids[BTF_SOCK_TYPE_UNIX]": "unix_sock",
    "&btf_sock_ids[BTF_SOCK_TYPE_MPTCP]": "mptcp_sock",
    "&btf_sock_ids[BTF_SOCK_TYPE_SOCK_COMMON]": "sock_common",
    "&bpf_xdp_get_buff_len_bpf_ids[0]": "xdp_buff", "BPF_PTR_POISON": "",
}  # fmt: skip


def kernel_tokens(text: str) -> set[str]:
    out: set[str] = set()
    for token in (t.strip() for t in text.split("|")):
        out |= _COMPOSITE.get(token, {token})
    return out


def our_tokens(arg: ArgType) -> set[str]:
    return {f"ARG_{arg.base.name}"} | {n for f, n in _FLAG_NAMES.items() if arg.flags & f}


def _true(fields: dict, name: str) -> bool:
    return fields.get(name, "false") == "true"


# --- the sources -------------------------------------------------------------------------------
ALL = sorted(HELPERS.values(), key=lambda h: h.id)


def assert_is_the_kernels(proto: HelperProto, symbol: str) -> None:
    """``proto`` says what the recorded ``struct bpf_func_proto symbol`` declares."""
    fields = KERNEL_PROTOS[symbol]
    kernel_args = [fields.get(f"arg{i}_type") for i in range(1, 6)]
    while kernel_args and kernel_args[-1] is None:
        kernel_args.pop()
    assert len(proto.args) == len(kernel_args), symbol
    for i, (ours, theirs) in enumerate(zip(proto.args, kernel_args, strict=True), 1):
        assert our_tokens(ours) == kernel_tokens(theirs), f"{symbol} arg{i}"
        size = fields.get(f"arg{i}_size")
        assert ours.size == (_SIZEOF[size] if size else 0), f"{symbol} arg{i}_size"
    btf = {i - 1: _BTF_IDS[fields[f"arg{i}_btf_id"]] for i in range(1, 6)
           if f"arg{i}_btf_id" in fields}  # fmt: skip
    assert dict(proto.arg_btf) == {i: name for i, name in btf.items() if name}, symbol
    assert proto.ret_btf == _BTF_IDS[fields.get("ret_btf_id", "BPF_PTR_POISON")], symbol
    ret = fields.get("ret_type", "RET_INTEGER")  # RET_INTEGER is 0: a proto may leave it out
    assert kernel_tokens(proto.ret.value) == kernel_tokens(ret), symbol
    assert proto.gpl_only == _true(fields, "gpl_only"), symbol
    assert proto.pkt_access == _true(fields, "pkt_access"), symbol
    assert proto.might_sleep == _true(fields, "might_sleep"), symbol
    assert proto.allow_fastcall == _true(fields, "allow_fastcall"), symbol


@pytest.mark.parametrize("helper", ALL, ids=lambda h: h.name)
def test_prototype_is_the_kernels(helper):
    for symbol in HP.kernel_symbols(helper.name):
        assert_is_the_kernels(helper.proto, symbol)


@pytest.mark.parametrize("ident", sorted(HP.KERNEL_PROTOS), ids=lambda i: f"{i}")
def test_kernel_table_is_the_kernels(ident):
    """Every helper id, implemented or not: the verifier's table against the sources."""
    proto = HP.KERNEL_PROTOS[ident]
    assert proto.name == f"bpf_{helper_name(ident)}"
    for symbol in HP.kernel_symbols(proto.name):
        assert_is_the_kernels(proto, symbol)
        assert HP.proto_named(symbol) is proto


@pytest.mark.parametrize("symbol", sorted(HP.VARIANT_PROTOS))
def test_program_type_variants_are_the_kernels(symbol):
    proto = HP.VARIANT_PROTOS[symbol]
    assert_is_the_kernels(proto, symbol)
    assert proto != HP.KERNEL_PROTOS[helper_id(proto.name[4:])]  # else a kernel_symbols alias
    assert HP.proto_named(symbol) is proto


def test_every_helper_has_a_kernel_prototype_recorded():
    recorded = {s for p in HP.KERNEL_PROTOS.values() for s in HP.kernel_symbols(p.name)}
    assert recorded | set(HP.VARIANT_PROTOS) == set(KERNEL_PROTOS)
    assert set(HP.KERNEL_PROTOS) == set(range(1, len(HELPER_NAMES)))


def test_program_types_name_prototypes_the_table_knows():
    """A program type's per-type protos (ProgTypeSpec.proto_variants) must be in the table."""
    for spec in PROG_TYPES.values():
        for ident, symbol in getattr(spec, "proto_variants", {}).items():
            proto = HP.proto_named(symbol)
            assert proto is not None and proto.name == f"bpf_{helper_name(ident)}", symbol


def test_runtime_definitions_are_the_kernel_table():
    """The runtime declares its helpers itself; they must be the verifier package's table."""
    for ident, helper in HELPERS.items():
        assert helper.proto == HP.KERNEL_PROTOS[ident], helper.name
    assert HP.KERNEL_PROTOS[12] is P.TAIL_CALL and 12 not in HELPERS


def _ids(*names: str) -> set[int]:
    return {helper_id(n) for n in names}


def test_facts_the_verifier_keys_on_the_helper_id():
    """kernel/bpf/verifier.c's is_acquire_function, is_ptr_cast_function, callback-calling
    helpers and net/core/filter.c's bpf_helper_changes_pkt_data, as in 6.18."""
    table = HP.KERNEL_PROTOS
    assert {i for i, p in table.items() if p.acquire} == _ids(
        "sk_lookup_tcp", "sk_lookup_udp", "skc_lookup_tcp", "ringbuf_reserve", "kptr_xchg")
    assert {i for i, p in table.items() if p.ptr_cast} == _ids(
        "tcp_sock", "sk_fullsock", "skc_to_tcp_sock", "skc_to_tcp6_sock", "skc_to_udp6_sock",
        "skc_to_mptcp_sock", "skc_to_tcp_timewait_sock", "skc_to_tcp_request_sock")
    assert {i for i, p in table.items() if p.callback} == _ids(
        "for_each_map_elem", "find_vma", "loop", "user_ringbuf_drain", "timer_set_callback")
    assert {i for i, p in table.items() if p.callback and not p.callback.sync} == _ids(
        "timer_set_callback")
    assert {i for i, p in table.items() if p.changes_pkt_data} == _ids(
        "clone_redirect", "l3_csum_replace", "l4_csum_replace", "lwt_push_encap",
        "lwt_seg6_action", "lwt_seg6_adjust_srh", "lwt_seg6_store_bytes", "msg_pop_data",
        "msg_pull_data", "msg_push_data", "skb_adjust_room", "skb_change_head",
        "skb_change_proto", "skb_change_tail", "skb_pull_data", "skb_store_bytes",
        "skb_vlan_pop", "skb_vlan_push", "store_hdr_opt", "xdp_adjust_head", "xdp_adjust_meta",
        "xdp_adjust_tail", "tail_call")  # fmt: skip


# --- derived facts and validation ---------------------------------------------------------------
def _proto(name: str) -> HelperProto:
    return next(h.proto for h in HELPERS.values() if h.name == name)


def test_derived_facts():
    assert _proto("bpf_csum_diff").mem_size_pairs == ((0, 1), (2, 3))
    assert _proto("bpf_skb_load_bytes").size_arg_of(2) == 3
    assert _proto("bpf_strtol").mem_size_pairs == ((0, 1),)  # arg 4 has a fixed size
    assert _proto("bpf_strtol").args[3].size == 8
    reserve = _proto("bpf_ringbuf_reserve")
    assert (reserve.acquire, reserve.ret_size_arg, reserve.map_arg) == (True, 1, 0)
    assert reserve.ret.reg_type == (Base.PTR_TO_MEM, Flag.MAYBE_NULL | Flag.MEM_RINGBUF)
    assert _proto("bpf_ringbuf_submit").release_arg == 0
    assert _proto("bpf_ringbuf_output").release_arg is None
    assert _proto("bpf_loop").callback is P.LOOP_CALLBACK
    assert _proto("bpf_for_each_map_elem").callback.params[2] == (Base.PTR_TO_MAP_VALUE, Flag.NONE)
    assert {h.name for h in HELPERS.values() if h.proto.acquire} == {
        "bpf_ringbuf_reserve", "bpf_sk_lookup_tcp", "bpf_sk_lookup_udp", "bpf_skc_lookup_tcp"}
    assert {h.name for h in HELPERS.values() if h.proto.callback} == {"bpf_loop",
                                                                      "bpf_for_each_map_elem"}
    assert {h.name for h in HELPERS.values() if h.proto.changes_pkt_data} == {
        "bpf_skb_store_bytes", "bpf_l3_csum_replace", "bpf_l4_csum_replace",
        "bpf_xdp_adjust_head", "bpf_xdp_adjust_meta", "bpf_xdp_adjust_tail",
        "bpf_skb_pull_data"}  # fmt: skip


def test_prototypes_per_program_type():
    from pybpf.runtime.helpers import prototypes

    xdp = prototypes(PROG_TYPES[ProgType.XDP].helpers)
    assert xdp[12] is P.TAIL_CALL
    assert xdp[44].name == "bpf_xdp_adjust_head" and 26 not in xdp  # no skb_load_bytes
    assert set(xdp) <= set(PROG_TYPES[ProgType.XDP].helpers)
    assert all(isinstance(p, HelperProto) for p in xdp.values())


@pytest.mark.parametrize("prog_type", sorted(PROG_TYPES), ids=lambda t: t.name.lower())
def test_every_allowed_helper_has_a_prototype(prog_type):
    """Implemented or not; implemented ones keep the prototype they are defined with, unless
    the program type gets another; one that sleeps and takes only scalars (bpf_sys_close)
    only where the program is known to be sleepable."""
    from pybpf.runtime.helpers import prototypes

    allowed = PROG_TYPES[prog_type].helpers
    named = getattr(PROG_TYPES[prog_type], "proto_variants", {})
    # the type's own set stands for the type; a copy of it does not
    for given, kind, flags in ((allowed, None, 0), (allowed, prog_type, 1 << 4),
                               (set(allowed), None, 0)):  # fmt: skip
        protos = prototypes(given, kind, flags)
        missing = set(allowed) - set(protos)
        assert missing == (set() if flags else {168} & set(allowed))
        typed = given is allowed
        for ident, proto in protos.items():
            want = HP.proto_named(named[ident]) if typed and ident in named else \
                HELPERS[ident].proto if ident in HELPERS else HP.KERNEL_PROTOS[ident]  # fmt: skip
            assert proto == want
            if ident in HELPERS and proto == HELPERS[ident].proto:  # marked as the kernel's
                assert [a.unchecked for a in proto.args] == [
                    a.unchecked for a in HP.for_verifier(ident, HELPERS[ident].proto).args]


def test_program_type_variants_are_used_when_the_type_is_known(monkeypatch):
    from types import SimpleNamespace

    from pybpf.runtime.helpers import prototypes

    monkeypatch.setitem(PROG_TYPES, ProgType.KPROBE, SimpleNamespace(
        helpers=frozenset({17, 27, 25}), proto_variants={
            17: "bpf_get_cgroup_classid_curr_proto", 27: "bpf_get_stackid_proto_pe",
            25: "bpf_no_such_proto"}))  # fmt: skip
    known = prototypes({17, 27, 25}, ProgType.KPROBE)
    assert known[17].args == () and not known[27].gpl_only
    assert 25 not in known  # a prototype the table does not know: refused, not guessed
    unknown = prototypes({17, 27, 25})
    assert unknown[17].args == (ArgType(Arg.PTR_TO_CTX),)  # the stricter one
    assert unknown[27].gpl_only and unknown[25] is HELPERS[25].proto


# --- what the verifier cannot check yet ---------------------------------------------------------
def _unchecked(ident: int) -> dict[int, str]:
    proto = HP.for_verifier(ident, HP.KERNEL_PROTOS[ident])
    return {i: a.unchecked for i, a in enumerate(proto.args) if a.unchecked}


def test_unchecked_arguments_are_marked():
    """The argument kinds calls.py has no checks for, named in the refusal."""
    from pybpf.runtime.helpers import prototypes

    # BTF pointers name their struct: socket and BTF pointer arguments are checked
    assert _unchecked(86) == _unchecked(136) == _unchecked(175) == {}
    assert HP.for_verifier(169, HP.KERNEL_PROTOS[169]).args[0].unchecked_bases == frozenset()
    assert "ARG_PTR_TO_TIMER" in _unchecked(169)[0] and "ARG_PTR_TO_DYNPTR" in _unchecked(201)[2]
    assert _unchecked(148)[0] == ("pybpf verifier does not support helper bpf_copy_from_user yet "
                                  "(it might sleep, and sleepable programs are not modelled)")
    assert "its callback is not explored" in _unchecked(170)[1]
    for ident in (84, 85, 98, 99, 34, 40, 69, 163, 158, 120, 95, 96):  # fully checked
        assert HP.for_verifier(ident, HP.KERNEL_PROTOS[ident]) is HP.KERNEL_PROTOS[ident]
    for ident, helper in HELPERS.items():  # pybpf's own helpers: unchecked as the kernel's
        marked = HP.for_verifier(ident, helper.proto)
        assert marked is helper.proto
    assert not prototypes(PROG_TYPES[ProgType.SCHED_CLS].helpers)[86].args[0].unchecked_bases
    assert HP.for_verifier(168, HP.KERNEL_PROTOS[168]) is None  # sleeps, takes only a scalar


def test_accepts_refuses_an_unchecked_argument_it_would_match():
    from pybpf.verifier.check import Reject

    timer = HP.for_verifier(169, HP.KERNEL_PROTOS[169]).args[0]
    assert not P.accepts(timer, Base.SCALAR)  # a wrong type keeps the kernel's message
    with pytest.raises(Reject, match="ARG_PTR_TO_TIMER of helper bpf_timer_init"):
        P.accepts(timer, Base.PTR_TO_MAP_VALUE)
    assert P.accepts(HP.KERNEL_PROTOS[169].args[0], Base.PTR_TO_MAP_VALUE)  # unmarked: a match


def _mov(dst: int, imm: int) -> Instruction:
    return Instruction(0xB7, dst, 0, 0, imm)


def _call(ident: int) -> Instruction:
    return Instruction(0x85, 0, 0, 0, ident)


_EXIT = [_mov(0, 0), Instruction(0x95)]
_STACK = [Instruction(0x7A, 10, 0, off, 0) for off in range(-8, -48, -8)]  # fp-40..-1 zeroed
# sk_lookup_tcp(ctx, fp-40, 12, 0, 0): R0 a socket or NULL, holding a reference
_LOOKUP = [Instruction(0xBF, 6, 1), *_STACK, Instruction(0xBF, 1, 6), Instruction(0xBF, 2, 10),
           Instruction(0x07, 2, 0, 0, -40), _mov(3, 12), _mov(4, 0), _mov(5, 0), _call(84)]
_IF_NULL_EXIT = [Instruction(0x55, 0, 0, 2, 0), *_EXIT]  # if r0 != 0 goto +2; exit


def _verify(insns: list[Instruction], prog_type: int = ProgType.SCHED_CLS, *,
            array: bool = False, license: str = "GPL"):  # fmt: skip
    """Load through the runtime (prototypes() as the program type gives them), with an
    array map as fd 3 if ``array``; None or the verifier's reason."""
    from pybpf.runtime.kernel import Kernel
    from pybpf.runtime.maps.base import MapAttr, MapType

    kernel = Kernel(verify=True)
    maps = {3: kernel.map_create(MapAttr(MapType.ARRAY, 4, 8, 1, 0, "a"))} if array else {}
    try:
        kernel.prog_load(insns, prog_type, maps=maps, license=license)
    except VerifierError as err:
        return err.reason
    return None


def test_socket_lookups_and_release_are_checked():
    release = [*_LOOKUP, *_IF_NULL_EXIT, Instruction(0xBF, 1, 0), _call(86), *_EXIT]
    assert _verify(release) is None
    assert _verify(release, ProgType.XDP) is None
    leak = [*_LOOKUP, *_EXIT]
    assert _verify(leak).splitlines() == ["Unreleased reference id=2 alloc_insn=12",
                                          "BPF_EXIT instruction in main prog would lead to "
                                          "reference leak"]  # fmt: skip
    unchecked = [*_LOOKUP, Instruction(0xBF, 1, 0), _call(86), *_EXIT]
    assert _verify(unchecked) == ("R1 type=sock_or_null expected=sock_common, sock, tcp_sock, "
                                  "xdp_sock, ptr_, trusted_ptr_")  # fmt: skip
    twice = [*_LOOKUP, *_IF_NULL_EXIT, Instruction(0xBF, 6, 0), Instruction(0xBF, 1, 6),
             _call(86), Instruction(0xBF, 1, 6), _call(86), *_EXIT]
    assert _verify(twice).startswith("R1 type=scalar expected=sock_common")


def test_pointer_casts_and_map_arguments_are_checked():
    fullsock = [*_LOOKUP, *_IF_NULL_EXIT, Instruction(0xBF, 1, 0), _call(95), *_EXIT]
    # the result shares the looked-up socket's reference, which is still to be released
    assert _verify(fullsock).startswith("Unreleased reference id=2 alloc_insn=")
    assert _verify([_mov(1, 0), _call(95), *_EXIT]) == \
        "R1 type=scalar expected=sock_common, sock, tcp_sock, xdp_sock"  # fmt: skip
    task = [_call(158), Instruction(0xBF, 1, 0), _call(86), *_EXIT]
    assert _verify(task) == "R1 is of type task_struct but sock_common is expected"
    under = [Instruction(0x18, 2, 1, 0, 3, 0), _mov(3, 0), _call(33), *_EXIT]
    # skb_under_cgroup(ctx, array, 0): the kernel wants a cgroup array
    assert _verify(under, array=True) == "cannot pass map_type 2 into func bpf_skb_under_cgroup#33"
    copy = [Instruction(0xBF, 1, 10), Instruction(0x07, 1, 0, 0, -8), _mov(2, 8), _mov(3, 0),
            _call(148), *_EXIT]
    assert _verify(copy, ProgType.KPROBE).startswith(
        "pybpf verifier does not support helper bpf_copy_from_user yet")


def test_helpers_pybpf_does_not_implement_load_as_the_kernel_checks_them():
    assert _verify([Instruction(0xBF, 6, 1), _call(34), *_EXIT]) is None  # get_hash_recalc(ctx)
    assert _verify([_mov(1, 0), _call(34), *_EXIT]) == "R1 type=scalar expected=ctx"
    mtu = [Instruction(0x62, 10, 0, -4, 0), Instruction(0xBF, 3, 10),
           Instruction(0x07, 3, 0, 0, -4), _mov(2, 0), _mov(4, 0), _mov(5, 0), _call(163),
           *_EXIT]  # check_mtu(ctx, 0, &len, 0, 0)
    assert _verify(mtu) is None
    assert _verify(mtu, license="Proprietary") == (
        "cannot call GPL-restricted function from non-GPL compatible program")
    task = [_call(158), Instruction(0x55, 0, 0, 2, 0), *_EXIT, *_EXIT]  # trusted: never NULL
    assert _verify(task, ProgType.KPROBE) is None


# --- running a helper pybpf does not implement ------------------------------------------------
@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_calling_an_unimplemented_helper_stops_the_run(engine):
    from pybpf.runtime.helpers import UnimplementedHelperError
    from pybpf.runtime.kernel import Kernel
    from pybpf.runtime.testrun import test_run

    kernel = Kernel(verify=True)
    called = kernel.prog_load([_mov(0, 2), _call(80), Instruction(0x95)], ProgType.XDP,
                              engine=engine)  # fmt: skip
    with pytest.raises(UnimplementedHelperError, match=r"^pc 1: pybpf does not implement helper "
                       r"bpf_get_current_cgroup_id \(id 80\) yet$") as info:  # fmt: skip
        test_run(called, data_in=bytes(64))
    assert info.value.pc == 1
    skipped = kernel.prog_load([_mov(0, 2), Instruction(0x15, 0, 0, 1, 2), _call(80),
                                Instruction(0x95)], ProgType.XDP, engine=engine)  # fmt: skip
    assert test_run(skipped, data_in=bytes(64)).retval == 2


def test_helper_table_refuses_what_the_kernel_refuses_without_the_verifier():
    from pybpf.runtime.kernel import Kernel

    kernel = Kernel(verify=False)
    cases = {
        999: (ProgType.XDP, "GPL", "invalid func unknown#999"),
        49: (ProgType.XDP, "GPL", "program of this type is not allowed to use helper "
                                  "bpf_setsockopt#49"),
        158: (ProgType.XDP, "Proprietary", "cannot call GPL-restricted function from non-GPL "
                                           "compatible program (bpf_get_current_task_btf#158)"),
        27: (ProgType.KPROBE, "Proprietary", "cannot call GPL-restricted function from non-GPL "
                                             "compatible program (bpf_get_stackid#27)"),
    }  # fmt: skip
    for ident, (prog_type, license, message) in cases.items():
        with pytest.raises(KernelError, match=re.escape(message)):
            kernel.prog_load([_call(ident), *_EXIT], prog_type, license=license)
    # perf_event programs see bpf_get_stackid_proto_pe, which is not GPL-only
    if getattr(PROG_TYPES[ProgType.PERF_EVENT], "proto_variants", {}).get(27):
        kernel.prog_load([_call(27), *_EXIT], ProgType.PERF_EVENT, license="Proprietary")


def test_helper_defs_keep_their_declared_view():
    lookup = next(h for h in HELPERS.values() if h.name == "bpf_map_lookup_elem")
    assert lookup.args == (Arg.CONST_MAP_PTR, Arg.PTR_TO_MAP_KEY)
    assert lookup.ret is Ret.PTR_TO_MAP_VALUE_OR_NULL and lookup.proto.ret is lookup.ret
    comm = next(h for h in HELPERS.values() if h.name == "bpf_get_current_comm")
    assert comm.args[0] == P.PTR_TO_UNINIT_MEM and comm.args[0].is_raw_mem


@pytest.mark.parametrize("args, why", [
    ((Arg.PTR_TO_MEM,), "has no size"),
    ((Arg.CONST_SIZE,), "cannot come first"),
    ((Arg.ANYTHING, Arg.CONST_SIZE), "follows no memory"),
    ((P.PTR_TO_UNINIT_MEM, Arg.CONST_SIZE, P.PTR_TO_UNINIT_MEM, Arg.CONST_SIZE), "more than one"),
    ((P.fixed_size_mem(8), Arg.CONST_SIZE), "has no size"),
    ((Arg.PTR_TO_MEM | ArgFlag.MEM_FIXED_SIZE,), "has no size"),
    ((Arg.ANYTHING,) * 6, "at most 5"),
])  # fmt: skip
def test_misconfigured_prototypes_are_refused(args, why):
    with pytest.raises(ProtoError, match=why):
        HelperProto("bpf_bad", args)


def test_compatible_types_are_the_kernels_tables():
    assert P.expected_text(Arg.PTR_TO_MEM) == (
        "fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_")
    assert P.expected_text(Arg.CONST_MAP_PTR) == "map_ptr"
    assert P.expected_text(P.PTR_TO_STACK_OR_NULL) == "fp"
    assert P.accepts(P.PTR_TO_RDONLY_MEM, Base.PTR_TO_MAP_VALUE, Flag.MEM_RDONLY)
    assert not P.accepts(Arg.PTR_TO_MEM, Base.PTR_TO_MAP_VALUE, Flag.MEM_RDONLY)
    assert P.accepts(P.PTR_TO_MEM_OR_NULL, Base.PTR_TO_MAP_VALUE, Flag.MAYBE_NULL)
    assert not P.accepts(Arg.PTR_TO_MEM, Base.PTR_TO_MAP_VALUE, Flag.MAYBE_NULL)
    assert P.accepts(Arg.PTR_TO_RINGBUF_MEM | ArgFlag.OBJ_RELEASE, Base.PTR_TO_MEM,
                     Flag.MEM_RINGBUF)  # fmt: skip
    assert not P.accepts(Arg.PTR_TO_CTX, Base.PTR_TO_STACK)
    assert P.accepts(Arg.ANYTHING, Base.PTR_TO_STACK)
    assert not P.accepts(Arg.ANYTHING, Base.NOT_INIT)


# --- the running kernel --------------------------------------------------------------------------
_PREFERRED = (ProgType.XDP, ProgType.SCHED_CLS, ProgType.KPROBE, ProgType.SOCKET_FILTER,
              ProgType.TRACEPOINT, ProgType.PERF_EVENT)  # fmt: skip
# (map_type, key_size, value_size, max_entries) a helper's CONST_MAP_PTR needs
_MAPS = {
    "bpf_ringbuf_output": (27, 0, 0, 4096), "bpf_ringbuf_reserve": (27, 0, 0, 4096),
    "bpf_ringbuf_query": (27, 0, 0, 4096), "bpf_map_push_elem": (22, 0, 8, 4),
    "bpf_map_pop_elem": (22, 0, 8, 4), "bpf_map_peek_elem": (22, 0, 8, 4),
    "bpf_redirect_map": (14, 4, 4, 4), "bpf_perf_event_output": (4, 4, 4, 4),
    "bpf_map_lookup_percpu_elem": (6, 4, 8, 1),
}  # fmt: skip
_ARRAY = (2, 4, 8, 1)
_BUILDABLE = {Arg.CONST_MAP_PTR, Arg.PTR_TO_MAP_KEY, Arg.PTR_TO_MAP_VALUE, Arg.PTR_TO_MEM,
              Arg.CONST_SIZE, Arg.CONST_SIZE_OR_ZERO, Arg.CONST_ALLOC_SIZE_OR_ZERO,
              Arg.PTR_TO_CTX, Arg.ANYTHING, Arg.PTR_TO_STACK}  # fmt: skip
_SCALAR_KINDS = {Arg.CONST_SIZE, Arg.CONST_SIZE_OR_ZERO, Arg.CONST_ALLOC_SIZE_OR_ZERO}
_MEMLIKE = {Arg.PTR_TO_MEM, Arg.PTR_TO_MAP_KEY, Arg.PTR_TO_MAP_VALUE}
_PKT_DATA = {ProgType.XDP: 0, ProgType.SCHED_CLS: 76}  # offset of ->data in the context


def _prog_type(helper) -> int:
    return next(t for t in _PREFERRED if helper.id in PROG_TYPES[t].helpers)


def _mov(dst: int, imm: int) -> Instruction:
    return Instruction(0xB7, dst, 0, 0, imm)


def _stack_ptr(dst: int, off: int) -> list[Instruction]:
    return [Instruction(0xBF, dst, 10), Instruction(0x07, dst, 0, 0, off)]


def _map(maps: dict, spec: tuple[int, int, int, int]):
    if spec not in maps:
        maps[spec] = linux.map_create(*spec)
    return maps[spec]


def _value(helper, i: int, arg: ArgType, maps, *, size: int = 8,
           map_spec: tuple[int, int, int, int] | None = None) -> list[Instruction]:  # fmt: skip
    """Instructions putting a valid value for argument ``i`` into R(i+1)."""
    reg = i + 1
    if arg.base is Arg.CONST_MAP_PTR:
        kmap = _map(maps, map_spec or _MAPS.get(helper.name, _ARRAY))
        return [Instruction(0x18, reg, 1, 0, kmap.fd, 0)]
    if arg.base in (Arg.PTR_TO_MAP_KEY, Arg.PTR_TO_MAP_VALUE):
        return _stack_ptr(reg, -64)
    if arg.base is Arg.PTR_TO_MEM:
        return _stack_ptr(reg, -72 if arg.size else -64)
    if arg.base in _SCALAR_KINDS:
        return [_mov(reg, size)]
    if arg.base is Arg.PTR_TO_CTX:
        return [Instruction(0xBF, reg, 6)]
    return [_mov(reg, 0)]  # ANYTHING, PTR_TO_STACK_OR_NULL


def _program(helper, body: list[Instruction], *, init_stack: bool = True) -> list[Instruction]:
    head = [Instruction(0xBF, 6, 1)]
    if init_stack:
        head += [Instruction(0x7A, 10, 0, off, 0) for off in range(-8, -80, -8)]
    return [*head, *body, Instruction(0x85, 0, 0, 0, helper.id), _mov(0, 0), Instruction(0x95)]


def _load(helper, insns: list[Instruction], license: str = "GPL") -> tuple[bool, str]:
    try:
        prog = linux.prog_load(insns, prog_type=_prog_type(helper), license=license, log_level=2)
    except KernelError as err:
        return False, err.log
    log = prog.log
    prog.close()
    return True, log


def _buildable_prefix(proto: HelperProto) -> int:
    """How many leading arguments the test can give valid values."""
    n = 0
    for arg in proto.args:
        if arg.base not in _BUILDABLE or (arg.base is Arg.PTR_TO_STACK and not
                                          arg.has(ArgFlag.MAYBE_NULL)):  # fmt: skip
            break
        n += 1
    return n


def _cases():
    out = []
    for helper in sorted(HELPERS.values(), key=lambda h: h.id):
        proto = helper.proto
        out.append(pytest.param(helper, "gpl", 0, id=f"{helper.name}-gpl"))
        for i in range(min(_buildable_prefix(proto) + 1, proto.nargs)):
            if proto.args[i].base is not Arg.ANYTHING:
                out.append(pytest.param(helper, "wrong_type", i, id=f"{helper.name}-arg{i + 1}"))
        for mem, size in proto.mem_size_pairs:
            if size < _buildable_prefix(proto) + 1:
                out.append(pytest.param(helper, "zero_size", size,
                                        id=f"{helper.name}-zero{size + 1}"))  # fmt: skip
                out.append(pytest.param(helper, "rdonly", mem, id=f"{helper.name}-rdonly{mem + 1}"))
        for mem, arg in enumerate(proto.args[: _buildable_prefix(proto)]):
            if arg.size:
                out.append(pytest.param(helper, "rdonly", mem, id=f"{helper.name}-rdonly{mem + 1}"))
        if _buildable_prefix(proto) == proto.nargs:
            out.append(pytest.param(helper, "ret", 0, id=f"{helper.name}-ret"))
        if _prog_type(helper) in _PKT_DATA:
            for i, arg in enumerate(proto.args[: _buildable_prefix(proto)]):
                if arg.base in _MEMLIKE:
                    out.append(pytest.param(helper, "pkt", i, id=f"{helper.name}-pkt{i + 1}"))
    return out


@pytest.fixture(scope="module")
def maps():
    """The kernel maps the probes create, made on first use (never without bpf(2))."""
    made: dict = {}
    yield made
    for kmap in made.values():
        kmap.close()


def _rdonly_map(maps: dict):
    """An array map with BPF_F_RDONLY_PROG: its values are read-only to programs."""
    if "rdonly" not in maps:
        maps["rdonly"] = linux.map_create(2, 4, 64, 1, map_flags=1 << 7)
    return maps["rdonly"]


_R0 = re.compile(r"\bR0(?:_w)?=([a-z_]+)(\([^)]*\))?")
_GPL = "cannot call GPL-restricted function from non-GPL compatible program"


def _decided(helper, what: str, index: int):
    """What the prototype says the kernel observes in case ``what`` (see _observed)."""
    proto, args = helper.proto, helper.proto.args
    if what == "gpl":
        return proto.gpl_only
    if what == "wrong_type":
        got = Base.PTR_TO_STACK if args[index].base in _SCALAR_KINDS else Base.SCALAR
        return [False, P.type_mismatch(index + 1, args[index], got)]
    if what == "zero_size":
        return args[index].base is Arg.CONST_SIZE
    if what == "rdonly":
        return args[index].has(ArgFlag.MEM_WRITE)
    if what == "pkt":
        return not proto.pkt_access
    rt = proto.ret.reg_type
    return [type_str(*rt) if rt else "scalar", proto.acquire]


def _observed(helper, what: str, index: int, maps: dict):
    """What the live kernel's log shows for case ``what`` of ``helper`` (a probe).

    gpl: the GPL refusal is logged (license "Proprietary"); wrong_type: [loaded, the
    ``R<n> type=`` line] with a wrong argument; zero_size: ``invalid zero-sized read``
    with a size of 0; rdonly: ``write into map forbidden`` with memory of a
    BPF_F_RDONLY_PROG map; pkt: ``helper access to the packet is not allowed`` with a
    packet pointer; ret: [R0's type after a valid call, whether it has a ref_obj_id].
    """
    proto = helper.proto
    args = list(proto.args)
    if what == "gpl":
        _, log = _load(helper, _program(helper, []), license="Proprietary")
        return _GPL in log
    body = [ins for i in range(index) for ins in _value(helper, i, args[i], maps)]
    if what == "wrong_type":
        wrong = [Instruction(0xBF, index + 1, 10)] if args[index].base in _SCALAR_KINDS else [
            _mov(index + 1, 1)]  # fmt: skip
        ok, log = _load(helper, _program(helper, body + wrong))
        line = next((ln for ln in log.splitlines() if ln.startswith(f"R{index + 1} type=")), None)
        return [ok, line]
    if what == "zero_size":
        mem = index - 1
        body = [ins for i in range(mem) for ins in _value(helper, i, args[i], maps)]
        body += _value(helper, mem, args[mem], maps) + [_mov(index + 1, 0)]
        _, log = _load(helper, _program(helper, body))
        return f"R{index + 1} invalid zero-sized read" in log
    if what == "rdonly":  # memory of a BPF_F_RDONLY_PROG map: refused iff the helper writes
        last = index + (0 if args[index].size else 1)
        value = [Instruction(0x18, index + 1, 2, 0, _rdonly_map(maps).fd, 0)]  # map_value + 0
        body = [ins for i in range(last + 1)
                for ins in (value if i == index else _value(helper, i, args[i], maps))]  # fmt: skip
        _, log = _load(helper, _program(helper, body))
        return "write into map forbidden" in log
    if what == "pkt":  # a packet pointer: only helpers with pkt_access may take one
        field = _PKT_DATA[_prog_type(helper)]
        body += [Instruction(0x61, index + 1, 6, field)]  # r = ctx->data
        body += [ins for i in range(index + 1, proto.nargs)
                 for ins in _value(helper, i, args[i], maps)]  # fmt: skip
        _, log = _load(helper, _program(helper, body))
        return "helper access to the packet is not allowed" in log
    # what == "ret": a valid call; R0's type after it is the prototype's return
    body = [ins for i in range(proto.nargs) for ins in _value(helper, i, args[i], maps)]
    _, log = _load(helper, _program(helper, body))
    lines = log.splitlines()
    call = next((n for n, ln in enumerate(lines) if re.match(r"\d+: \(85\) call", ln)), None)
    match = (next((m for ln in lines[call:] if (m := _R0.search(ln))), None)
             if call is not None else None)
    if match is None:  # the call was refused: R0 never got a type
        return None
    return [match.group(1), "ref_obj_id=" in (match.group(2) or "")]


@pytest.mark.parametrize("helper, what, index", _cases())
def test_prototype_decides_what_the_kernel_refuses(kernel_facts, request, maps, helper, what,
                                                   index):  # fmt: skip
    kernel_facts.check(f"refuses/{request.node.callspec.id}", _decided(helper, what, index),
                       lambda: _observed(helper, what, index, maps))  # fmt: skip


# (map_type, key_size, value_size, max_entries) of each map type the kernel test creates
MAP_SPECS = {
    1: (1, 4, 8, 4), 2: (2, 4, 8, 1), 3: (3, 4, 4, 1), 4: (4, 4, 4, 4), 5: (5, 4, 8, 4),
    6: (6, 4, 8, 1), 7: (7, 4, 64, 4), 9: (9, 4, 8, 4), 10: (10, 4, 8, 4), 14: (14, 4, 4, 4),
    16: (16, 4, 4, 4), 22: (22, 0, 8, 4), 23: (23, 0, 8, 4), 25: (25, 4, 4, 4),
    27: (27, 0, 0, 4096), 30: (30, 0, 8, 4),
}  # fmt: skip
_ZERO_SIZED = "invalid zero-sized read"


def _map_cases():
    return [pytest.param(h, t, id=f"{h.name}-map{t}") for h in ALL
            if h.proto.map_arg is not None and _buildable_prefix(h.proto) == h.proto.nargs
            for t in MAP_SPECS]  # fmt: skip


def _map_refusal(helper, map_type: int, maps: dict) -> str | None:
    """The kernel's first map refusal for a call with a map of ``map_type`` (a probe):
    a zero-sized key or value read, ``cannot pass map_type ...`` or a forbidden write."""
    body = [ins for i, arg in enumerate(helper.proto.args)
            for ins in _value(helper, i, arg, maps, map_spec=MAP_SPECS[map_type])]  # fmt: skip
    _, log = _load(helper, _program(helper, body))
    for line in log.splitlines():
        if _ZERO_SIZED in line:
            return _ZERO_SIZED
        if line.startswith("cannot pass map_type") or line == "write into map forbidden":
            return line
    return None


@pytest.mark.parametrize("helper, map_type", _map_cases())
def test_map_type_compatibility_against_the_kernel(kernel_facts, maps, helper, map_type):
    proto = helper.proto
    spec = MAP_SPECS[map_type]
    sizes = {Arg.PTR_TO_MAP_KEY: spec[1], Arg.PTR_TO_MAP_VALUE: spec[2]}
    if any(sizes.get(arg.base) == 0 for arg in proto.args):
        expected = _ZERO_SIZED  # refused before the map is looked at
    else:
        expected = P.map_write_error(helper.id, map_type) or P.map_func_error(helper.id, map_type)
    kernel_facts.check(f"maps/{helper.name}/{map_type}", expected,
                       lambda: _map_refusal(helper, map_type, maps))  # fmt: skip


def test_map_compatibility_table():
    M = mapcompat  # the map type ids' one home in the verifier
    assert P.map_func_error(1, M.QUEUE) == "cannot pass map_type 22 into func bpf_map_lookup_elem#1"
    assert P.map_func_error(1, M.HASH) is None
    assert P.map_func_error(12, M.PROG_ARRAY) is None and P.map_func_error(12, M.ARRAY)
    assert P.map_func_error(164, M.RINGBUF).startswith("cannot pass")  # ringbuf: its own helpers
    assert P.map_func_error(164, M.QUEUE).startswith("cannot pass")
    assert P.map_func_error(164, M.LPM_TRIE) == "callback function not allowed for map"
    assert P.map_func_error(164, M.LRU_PERCPU_HASH) is None
    assert P.TAIL_CALL.args[1].base is Arg.CONST_MAP_PTR
    assert P.map_write_error(2, P.DEVMAP) == "write into map forbidden"
    assert P.map_write_error(2, P.HASH, P.BPF_F_RDONLY_PROG) == "write into map forbidden"
    assert P.map_write_error(1, P.HASH, P.BPF_F_RDONLY_PROG) is None
