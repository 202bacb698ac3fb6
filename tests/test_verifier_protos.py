"""Helper prototypes (pybpf.verifier.protos) against Linux 6.18.

Two oracles.  The sources: ``golden/helper_protos.json`` holds the
``struct bpf_func_proto`` fields of every helper pybpf defines, extracted
from the 6.18 tree by ``verifier_protos_extract.py``; each HelperProto must
say the same.  The kernel: what a prototype decides is observable
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
