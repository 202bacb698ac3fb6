"""Helper prototypes (pybpf.verifier.protos) against Linux 6.18.

Two oracles.  The sources: ``golden/helper_protos.json`` holds the
``struct bpf_func_proto`` fields of every helper pybpf defines, extracted
from the 6.18 tree by ``verifier_protos_extract.py``; each HelperProto must
say the same.  The running kernel: what a prototype decides is observable
when a call is refused — the GPL check, ``R3 type=scalar expected=fp, pkt,
...`` for a wrong argument, ``invalid zero-sized read`` for CONST_SIZE,
reads of uninitialised stack for memory the helper does not fill, and R0's
type after the call.  Those cases are built for every helper and argument
the test can give valid values to, and checked live when bpf(2) works.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pybpf.errors import KernelError
from pybpf.isa import Instruction
from pybpf.kernel import linux
from pybpf.runtime.helpers import HELPERS
from pybpf.runtime.progtypes import PROG_TYPES, ProgType
from pybpf.verifier import protos as P
from pybpf.verifier.protos import Arg, ArgFlag, ArgType, HelperProto, ProtoError, Ret
from pybpf.verifier.types import Base, Flag, type_str
from verifier_protos_extract import VARIANTS

GOLDEN = Path(__file__).resolve().parent / "golden" / "helper_protos.json"
KERNEL_PROTOS: dict[str, dict] = json.loads(GOLDEN.read_text())

_FLAG_NAMES = {ArgFlag.MAYBE_NULL: "PTR_MAYBE_NULL", ArgFlag.MEM_RDONLY: "MEM_RDONLY",
               ArgFlag.MEM_UNINIT: "MEM_UNINIT", ArgFlag.MEM_WRITE: "MEM_WRITE",
               ArgFlag.MEM_FIXED_SIZE: "MEM_FIXED_SIZE", ArgFlag.MEM_ALIGNED: "MEM_ALIGNED",
               ArgFlag.OBJ_RELEASE: "OBJ_RELEASE"}  # fmt: skip
# the kernel's named composites, spelled out
_COMPOSITE = {
    "ARG_PTR_TO_UNINIT_MEM": {"ARG_PTR_TO_MEM", "MEM_UNINIT", "MEM_WRITE"},
    "ARG_PTR_TO_FIXED_SIZE_MEM": {"ARG_PTR_TO_MEM", "MEM_FIXED_SIZE"},
    "ARG_PTR_TO_MEM_OR_NULL": {"ARG_PTR_TO_MEM", "PTR_MAYBE_NULL"},
    "ARG_PTR_TO_STACK_OR_NULL": {"ARG_PTR_TO_STACK", "PTR_MAYBE_NULL"},
    "ARG_PTR_TO_MAP_VALUE_OR_NULL": {"ARG_PTR_TO_MAP_VALUE", "PTR_MAYBE_NULL"},
    "ARG_PTR_TO_CTX_OR_NULL": {"ARG_PTR_TO_CTX", "PTR_MAYBE_NULL"},
}
_SIZEOF = {"sizeof(s64)": 8, "sizeof(u64)": 8, "sizeof(u32)": 4, "sizeof(int)": 4}


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


@pytest.mark.parametrize("helper", ALL, ids=lambda h: h.name)
def test_prototype_is_the_kernels(helper):
    proto = helper.proto
    for symbol in VARIANTS.get(helper.name, (f"{helper.name}_proto",)):
        fields = KERNEL_PROTOS[symbol]
        kernel_args = [fields.get(f"arg{i}_type") for i in range(1, 6)]
        while kernel_args and kernel_args[-1] is None:
            kernel_args.pop()
        assert len(proto.args) == len(kernel_args), symbol
        for i, (ours, theirs) in enumerate(zip(proto.args, kernel_args, strict=True), 1):
            assert our_tokens(ours) == kernel_tokens(theirs), f"{symbol} arg{i}"
            size = fields.get(f"arg{i}_size")
            assert ours.size == (_SIZEOF[size] if size else 0), f"{symbol} arg{i}_size"
        assert f"RET_{proto.ret.name}" == fields["ret_type"], symbol
        assert proto.gpl_only == _true(fields, "gpl_only"), symbol
        assert proto.pkt_access == _true(fields, "pkt_access"), symbol
        assert proto.might_sleep == _true(fields, "might_sleep"), symbol
        assert proto.allow_fastcall == _true(fields, "allow_fastcall"), symbol


def test_every_helper_has_a_kernel_prototype_recorded():
    symbols = {s for h in HELPERS.values() for s in VARIANTS.get(h.name, (f"{h.name}_proto",))}
    assert symbols == set(KERNEL_PROTOS)


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
    assert {h.name for h in HELPERS.values() if h.proto.acquire} == {"bpf_ringbuf_reserve"}
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
    if (reason := linux.available()) is not None:
        pytest.skip(reason)
    made: dict = {"rdonly": linux.map_create(2, 4, 64, 1, map_flags=1 << 7)}  # BPF_F_RDONLY_PROG
    yield made
    for kmap in made.values():
        kmap.close()


_R0 = re.compile(r"\bR0(?:_w)?=([a-z_]+)(\([^)]*\))?")


@pytest.mark.parametrize("helper, what, index", _cases())
def test_prototype_decides_what_the_kernel_refuses(maps, helper, what, index):
    proto = helper.proto
    if what == "gpl":
        ok, log = _load(helper, _program(helper, []), license="Proprietary")
        refused = "cannot call GPL-restricted function from non-GPL compatible program" in log
        assert refused == proto.gpl_only, log
        return
    args = list(proto.args)
    body = [ins for i in range(index) for ins in _value(helper, i, args[i], maps)]
    if what == "wrong_type":
        arg = args[index]
        wrong = [Instruction(0xBF, index + 1, 10)] if arg.base in _SCALAR_KINDS else [
            _mov(index + 1, 1)]  # fmt: skip
        ok, log = _load(helper, _program(helper, body + wrong))
        got = Base.PTR_TO_STACK if arg.base in _SCALAR_KINDS else Base.SCALAR
        assert not ok
        assert P.type_mismatch(index + 1, arg, got) in log, log
        return
    if what == "zero_size":
        mem = index - 1
        body = [ins for i in range(mem) for ins in _value(helper, i, args[i], maps)]
        body += _value(helper, mem, args[mem], maps) + [_mov(index + 1, 0)]
        ok, log = _load(helper, _program(helper, body))
        zero_refused = f"R{index + 1} invalid zero-sized read" in log
        assert zero_refused == (args[index].base is Arg.CONST_SIZE), log
        return
    if what == "rdonly":  # memory of a BPF_F_RDONLY_PROG map: refused iff the helper writes
        last = index + (0 if args[index].size else 1)
        value = [Instruction(0x18, index + 1, 2, 0, maps["rdonly"].fd, 0)]  # map_value + 0
        body = [ins for i in range(last + 1)
                for ins in (value if i == index else _value(helper, i, args[i], maps))]  # fmt: skip
        ok, log = _load(helper, _program(helper, body))
        write_refused = "write into map forbidden" in log
        assert write_refused == args[index].has(ArgFlag.MEM_WRITE), log
        return
    if what == "pkt":  # a packet pointer: only helpers with pkt_access may take one
        field = _PKT_DATA[_prog_type(helper)]
        body += [Instruction(0x61, index + 1, 6, field)]  # r = ctx->data
        body += [ins for i in range(index + 1, proto.nargs)
                 for ins in _value(helper, i, args[i], maps)]  # fmt: skip
        ok, log = _load(helper, _program(helper, body))
        refused = "helper access to the packet is not allowed" in log
        assert refused == (not proto.pkt_access), log
        return
    # what == "ret": a valid call; R0's type after it is the prototype's return
    body = [ins for i in range(proto.nargs) for ins in _value(helper, i, args[i], maps)]
    ok, log = _load(helper, _program(helper, body))
    lines = log.splitlines()
    call = next(n for n, ln in enumerate(lines) if re.match(r"\d+: \(85\) call", ln))
    match = next(m for ln in lines[call:] if (m := _R0.search(ln)))
    rt = proto.ret.reg_type
    assert match.group(1) == (type_str(*rt) if rt else "scalar"), log
    assert ("ref_obj_id=" in (match.group(2) or "")) == proto.acquire, log


# (map_type, key_size, value_size, max_entries) of each map type the kernel test creates
MAP_SPECS = {
    1: (1, 4, 8, 4), 2: (2, 4, 8, 1), 3: (3, 4, 4, 1), 4: (4, 4, 4, 4), 5: (5, 4, 8, 4),
    6: (6, 4, 8, 1), 7: (7, 4, 64, 4), 9: (9, 4, 8, 4), 10: (10, 4, 8, 4), 14: (14, 4, 4, 4),
    16: (16, 4, 4, 4), 22: (22, 0, 8, 4), 23: (23, 0, 8, 4), 25: (25, 4, 4, 4),
    27: (27, 0, 0, 4096), 30: (30, 0, 8, 4),
}  # fmt: skip


def _map_cases():
    return [pytest.param(h, t, id=f"{h.name}-map{t}") for h in ALL
            if h.proto.map_arg is not None and _buildable_prefix(h.proto) == h.proto.nargs
            for t in MAP_SPECS]  # fmt: skip


@pytest.mark.parametrize("helper, map_type", _map_cases())
def test_map_type_compatibility_against_the_kernel(maps, helper, map_type):
    proto = helper.proto
    body = [ins for i, arg in enumerate(proto.args)
            for ins in _value(helper, i, arg, maps, map_spec=MAP_SPECS[map_type])]  # fmt: skip
    _, log = _load(helper, _program(helper, body))
    spec = MAP_SPECS[map_type]
    sizes = {Arg.PTR_TO_MAP_KEY: spec[1], Arg.PTR_TO_MAP_VALUE: spec[2]}
    if any(sizes.get(arg.base) == 0 for arg in proto.args):
        assert "invalid zero-sized read" in log  # refused before the map is looked at
        return
    expected = P.map_write_error(helper.id, map_type) or P.map_func_error(helper.id, map_type)
    kernel = next((ln for ln in log.splitlines()
                   if ln.startswith("cannot pass map_type") or ln == "write into map forbidden"),
                  None)  # fmt: skip
    assert kernel == expected, log


def test_map_compatibility_table():
    assert P.map_func_error(1, P.QUEUE) == "cannot pass map_type 22 into func bpf_map_lookup_elem#1"
    assert P.map_func_error(1, P.HASH) is None
    assert P.map_func_error(12, P.PROG_ARRAY) is None and P.map_func_error(12, P.ARRAY)
    assert P.map_func_error(164, P.RINGBUF).startswith("cannot pass")  # ringbuf: its own helpers
    assert P.map_func_error(164, P.QUEUE).startswith("cannot pass")
    assert P.map_func_error(164, P.LPM_TRIE) == "callback function not allowed for map"
    assert P.map_func_error(164, P.LRU_PERCPU_HASH) is None
    assert P.TAIL_CALL.args[1].base is Arg.CONST_MAP_PTR
    assert P.map_write_error(2, P.DEVMAP) == "write into map forbidden"
    assert P.map_write_error(2, P.HASH, P.BPF_F_RDONLY_PROG) == "write into map forbidden"
    assert P.map_write_error(1, P.HASH, P.BPF_F_RDONLY_PROG) is None
