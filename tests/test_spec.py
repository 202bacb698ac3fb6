"""ObjectSpec: objects opened as libbpf's bpf_object__open opens them (seed 002's hello first)."""

from __future__ import annotations

import contextlib
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.elf import read_object
from pybpf.errors import BtfError, ObjectError
from pybpf.isa import LDDW, CallKind, Pseudo, encode, slot_offsets
from pybpf.loader.spec import MapSpec, ObjectSpec, internal_map_name, object_name
from pybpf.runtime.maps.base import MapFlag, MapType
from pybpf.runtime.progtypes import ProgType

FIXTURES = Path(__file__).parent / "fixtures" / "elf"
HELLO = (FIXTURES / "hello.bpf.o").read_bytes()
MULTI = (FIXTURES / "multi.bpf.o").read_bytes()

# llvm-objdump -S hello.bpf.o in seed 002 (before relocation)
SEED_HELLO = bytes.fromhex(
    "1806000000000000 0000000000000000 6163000000000000 1801000000000000"
    "0000000000000000 b70200000f000000 8500000006000000 6161000000000000"
    "0701000001000000 6316000000000000 b700000002000000 9500000000000000"
)


def _hello() -> ObjectSpec:
    return ObjectSpec.from_bytes(HELLO, "hello.bpf.o")


def _multi() -> ObjectSpec:
    return ObjectSpec.from_bytes(MULTI, "multi.bpf.o")


def _at_pc(insns, pc):
    return dict(zip(slot_offsets(insns), insns, strict=True))[pc]


# --- seed 002: hello -------------------------------------------------------------


def test_hello_program():
    spec = _hello()
    (prog,) = spec.programs
    assert (prog.name, prog.section, prog.prog_type) == ("hello", "xdp", ProgType.XDP)
    assert prog.slots == 12 and prog.license == "Dual BSD/GPL" and prog.subprograms == ()
    # the seed's bytes, except the two ld_imm64 now naming their maps by index
    raw = bytearray(encode(prog.insns))
    assert raw[1] == 0x66 and raw[3 * 8 + 1] == 0x61
    assert struct.unpack_from("<i", raw, 3 * 8 + 4)[0] == 1
    raw[1], raw[3 * 8 + 1] = 0x06, 0x01
    struct.pack_into("<i", raw, 3 * 8 + 4, 0)
    assert bytes(raw) == SEED_HELLO


def test_hello_relocations_are_map_value_references():
    spec = _hello()
    insns = spec.programs[0].insns
    for pc, map_name in ((0, "hello.bss"), (3, "hello.rodata")):
        insn = _at_pc(insns, pc)
        assert insn.code == LDDW and insn.src_reg == Pseudo.MAP_IDX_VALUE
        assert spec.maps[insn.imm].name == map_name and insn.imm2 == 0
    assert sum(i.code == LDDW and i.src_reg != 0 for i in insns) == 2


def test_hello_maps():
    bss, rodata = _hello().maps
    assert bss == MapSpec("hello.bss", MapType.ARRAY, 4, 4, 1, MapFlag.MMAPABLE,
                          initial=bytes(4), btf_value_type_id=bss.btf_value_type_id,
                          section=".bss")  # fmt: skip
    assert bss.map_flags == 0x400 and not bss.freeze and bss.btf_value_type_id
    assert (rodata.name, rodata.value_size, rodata.initial) == (
        "hello.rodata", 15, b"Hello World %d\0")  # fmt: skip
    assert rodata.freeze
    # libbpf 1.1 (this machine's bpftool): RDONLY_PROG | MMAPABLE; newer libbpf drops
    # MMAPABLE when .rodata holds no global variable (seed 002 shows 0x80)
    assert rodata.map_flags == 0x480


def test_hello_license_btf_and_line_info():
    spec = _hello()
    assert spec.license == "Dual BSD/GPL" and spec.version is None
    prog = spec.programs[0]
    ((insn, type_id),) = prog.func_info
    assert insn == 0 and spec.btf.type(type_id).name == "hello"
    assert spec.btf.type(spec.btf.type(type_id).type).kind == "func_proto"
    srcs = [(li.insn_index, li.src) for li in prog.line_info]
    # the seed's source (and bpftool's listing) has a trailing space after counter++;
    assert srcs == [(0, 'bpf_printk("Hello World %d", counter);'), (7, "counter++; "),
                    (10, "return XDP_PASS;")]  # fmt: skip
    assert prog.core_relos == ()


def test_object_and_internal_map_names():
    assert object_name("hello.bpf.o") == "hello"
    assert object_name("/some/dir/a_very_long_object_name.bpf.o") == "a_very_long_obj"
    assert internal_map_name("hello", ".bss") == "hello.bss"
    assert internal_map_name("my_object_name", ".rodata") == "my_objec.rodata"
    assert internal_map_name("my_object_name", ".bss") == "my_objec.bss"
    assert internal_map_name("my_object_name", ".kconfig") == "my_obje.kconfig"
    assert internal_map_name("my_object_name", ".rodata.abracadabra") == ".rodata.abracad"
    assert internal_map_name("x-y", ".data") == "x_y.data"
    spec = ObjectSpec.from_file(FIXTURES / "a_very_long_object_name.bpf.o")
    assert [m.name for m in spec.maps] == ["a_very_l.bss", "a_very_l.rodata"]


def test_determinism_and_digest():
    a, b = _hello(), ObjectSpec.from_file(FIXTURES / "hello.bpf.o")
    assert a == b and a.digest() == b.digest()
    assert _multi() == _multi() and _multi().digest() == _multi().digest()
    assert a.digest() != ObjectSpec.from_bytes(HELLO, "other.bpf.o").digest()
    assert a.digest() != _multi().digest()


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")
def test_fresh_compile_matches_fixture(tmp_path):
    arch = subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
    src = tmp_path / "hello.bpf.c"
    shutil.copy(FIXTURES / "hello.bpf.c", src)
    out = tmp_path / "hello.bpf.o"
    proc = subprocess.run(["clang", "-target", "bpf", f"-I/usr/include/{arch}-linux-gnu", "-g",
                           "-O2", "-c", str(src), "-o", str(out)], capture_output=True)  # fmt: skip
    if proc.returncode:
        pytest.skip(f"clang cannot build BPF here: {proc.stderr.decode()[-200:]}")
    fresh, fixture = ObjectSpec.from_file(out), _hello()
    assert [p.insns for p in fresh.programs] == [p.insns for p in fixture.programs]
    assert fresh.maps == fixture.maps and fresh.license == fixture.license


# --- programs, subprograms, maps --------------------------------------------------


def test_several_programs_per_section_and_unknown_sections():
    spec = _multi()
    assert [(p.name, p.section) for p in spec.programs] == [
        ("xdp_first", "xdp"), ("xdp_second", "xdp"),
        ("on_write", "tracepoint/syscalls/sys_enter_write"), ("odd_section", "nosuchtype/foo"),
    ]  # fmt: skip
    types = [p.prog_type for p in spec.programs]
    assert types == [ProgType.XDP, ProgType.XDP, ProgType.TRACEPOINT, None]
    assert spec.program("odd_section").expected_attach_type is None
    with pytest.raises(ObjectError, match="no program 'nope'"):
        spec.program("nope")


def _call_targets(prog):
    """pc of each bpf-to-bpf call or function reference -> target pc."""
    out = {}
    for pc, insn in zip(slot_offsets(prog.insns), prog.insns, strict=True):
        call = insn.code == 0x85 and insn.src_reg == CallKind.LOCAL
        if call or (insn.code == LDDW and insn.src_reg == Pseudo.FUNC):
            out[pc] = pc + insn.imm + 1
    return out


def test_static_subprograms_are_appended_and_calls_fixed():
    spec = _multi()
    first = spec.program("xdp_first")
    subs = dict(first.subprograms)
    assert list(subs) == ["twice", "add_one"]  # first-call order, transitively
    assert set(_call_targets(first).values()) == {subs["twice"], subs["add_one"]}
    assert first.slots == subs["add_one"] + 3  # add_one is the last function appended
    # every program gets its own copies, at its own offsets
    second = dict(spec.program("xdp_second").subprograms)
    assert list(second) == ["loop_cb", "add_one", "global_helper"]
    on_write = dict(spec.program("on_write").subprograms)
    assert list(on_write) == ["add_one"]
    # func_info follows the appended functions
    names = [spec.btf.type(t).name for _, t in first.func_info]
    assert names == ["xdp_first", "twice", "add_one"]
    assert [i for i, _ in first.func_info] == [0, subs["twice"], subs["add_one"]]


def test_bpf_loop_callback_is_a_pseudo_func_reference():
    prog = _multi().program("xdp_second")
    subs = dict(prog.subprograms)
    refs = {pc: t for pc, t in _call_targets(prog).items()
            if _at_pc(prog.insns, pc).code == LDDW}  # fmt: skip
    assert list(refs.values()) == [subs["loop_cb"]]


def test_btf_defined_maps_and_global_data():
    spec = _multi()
    assert [m.name for m in spec.maps] == ["counts", "outer", "multi.data", "multi.rodata",
                                           ".data.extra", "multi.bss", ".rodata.str1.1"]
    counts = spec.map("counts")
    assert (counts.map_type, counts.key_size, counts.value_size, counts.max_entries) == (
        MapType.HASH, 4, 8, 64)  # fmt: skip
    assert counts.initial is None and not counts.freeze and counts.btf_value_type_id
    outer = spec.map("outer")
    assert outer.map_type == MapType.ARRAY_OF_MAPS and outer.value_size == 4
    assert outer.inner.name == "outer.inner" and outer.inner.max_entries == 4
    flags = {m.name: (m.map_flags, m.freeze) for m in spec.maps[2:]}
    assert flags == {
        "multi.data": (0x400, False),
        "multi.rodata": (0x480, True),  # a global const volatile: mmapable
        ".data.extra": (0x400, False),
        "multi.bss": (0x400, False),  # libbpf 1.1: mmapable even with only a static
        ".rodata.str1.1": (0x480, True),  # no DATASEC in BTF: mmapable all the same
    }
    assert spec.map(".rodata.str1.1").initial == b"literal\n\0"
    assert spec.map("multi.data").initial == (7).to_bytes(8, "little")


def test_map_references_by_index():
    spec = _multi()
    prog = spec.program("xdp_first")
    refs = [(i.src_reg, spec.maps[i.imm].name, i.imm2) for i in prog.insns
            if i.code == LDDW and i.src_reg in (Pseudo.MAP_IDX, Pseudo.MAP_IDX_VALUE)]
    assert (Pseudo.MAP_IDX, "counts", 0) in refs
    assert (Pseudo.MAP_IDX_VALUE, "multi.rodata", 0) in refs  # limit
    assert (Pseudo.MAP_IDX_VALUE, "multi.rodata", 4) in refs  # "first %d" after limit
    write = spec.program("on_write")
    assert any(i.src_reg == Pseudo.MAP_IDX and spec.maps[i.imm].name == "outer"
               for i in write.insns if i.code == LDDW)  # fmt: skip


def test_core_relocations_recorded():
    spec = ObjectSpec.from_file(FIXTURES / "core.bpf.o")
    (prog,) = spec.programs
    assert prog.prog_type == ProgType.KPROBE
    assert [(r.access, r.kind_name) for r in prog.core_relos] == [
        ("0:1", "field_byte_offset"), ("0:0", "field_exists")]  # fmt: skip
    assert spec.btf.type(prog.core_relos[0].type_id).name == "task_struct"
    pcs = set(slot_offsets(prog.insns))
    assert all(r.insn_index in pcs for r in prog.core_relos)


def test_legacy_maps_section_is_refused():
    with pytest.raises(ObjectError, match="legacy map definitions in 'maps' section are not "
                                          r"supported by libbpf v1\.0\+") as info:  # fmt: skip
        ObjectSpec.from_file(FIXTURES / "legacy.bpf.o")
    assert info.value.section == "maps"


# --- malformed objects ------------------------------------------------------------


def _rel_entry_offset(data: bytes, section: str, n: int) -> int:
    obj = read_object(data, "x.o")
    return obj.section(section).offset + 16 * n


def _patch(data: bytes, offset: int, fmt: str, *values) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("offset", 4, "invalid offset"),
        ("offset", 0x1000, "invalid offset"),
        ("offset", 16, r"expects an ld_imm64 or a call, found code 0x61"),
        ("symbol", 999, "symbol #999 not found"),
        ("type", 3, "unsupported relocation type R_BPF_64_ABS32"),
        ("type", 77, "unsupported relocation type relocation type 77"),
    ],
)
def test_corrupted_relocations(field, value, fragment):
    at = _rel_entry_offset(HELLO, ".relxdp", 0)
    offset, info = struct.unpack_from("<QQ", HELLO, at)
    sym, rtype = info >> 32, info & 0xFFFFFFFF
    new = {"offset": (value, sym, rtype), "symbol": (offset, value, rtype),
           "type": (offset, sym, value)}[field]  # fmt: skip
    data = _patch(HELLO, at, "<QQ", new[0], new[1] << 32 | new[2])
    with pytest.raises(ObjectError, match=fragment) as info:
        ObjectSpec.from_bytes(data, "hello.bpf.o")
    assert info.value.section == ".relxdp"


def test_relocation_against_undefined_symbol():
    obj = read_object(HELLO, "x.o")
    counter = next(s for s in obj.symbols if s.name == "counter")
    at = obj.sections[obj.symtab].offset + 24 * counter.index
    data = _patch(HELLO, at + 6, "<H", 0)  # st_shndx = SHN_UNDEF, still an OBJECT
    with pytest.raises(ObjectError, match="special section 0x0") as info:
        ObjectSpec.from_bytes(data, "hello.bpf.o")
    assert info.value.symbol == "counter"


def test_relocation_against_a_section_that_is_not_data():
    obj = read_object(HELLO, "x.o")
    counter = next(s for s in obj.symbols if s.name == "counter")
    at = obj.sections[obj.symtab].offset + 24 * counter.index
    data = _patch(HELLO, at + 6, "<H", obj.section("license").index)
    with pytest.raises(ObjectError, match="section 'license', which holds neither maps"):
        ObjectSpec.from_bytes(data, "hello.bpf.o")


def test_program_crossing_its_section():
    obj = read_object(HELLO, "x.o")
    hello = next(s for s in obj.symbols if s.name == "hello")
    at = obj.sections[obj.symtab].offset + 24 * hello.index
    with pytest.raises(ObjectError, match="crosses the section's end") as info:
        ObjectSpec.from_bytes(_patch(HELLO, at + 16, "<Q", 8 * 64), "hello.bpf.o")
    assert (info.value.section, info.value.symbol) == ("xdp", "hello")
    with pytest.raises(ObjectError, match="corrupted program: offset 0, size 12"):
        ObjectSpec.from_bytes(_patch(HELLO, at + 16, "<Q", 12), "hello.bpf.o")


def test_relocation_for_a_missing_program_section():
    rel = read_object(HELLO, "x.o").section(".relxdp")
    (shoff,) = struct.unpack_from("<Q", HELLO, 40)
    with pytest.raises(ObjectError, match="section #200, which does not exist"):
        ObjectSpec.from_bytes(_patch(HELLO, shoff + 64 * rel.index + 44, "<I", 200), "h.o")


def test_static_entry_point_is_refused_like_libbpf():
    obj = read_object(HELLO, "x.o")
    hello = next(s for s in obj.symbols if s.name == "hello")
    at = obj.sections[obj.symtab].offset + 24 * hello.index
    data = _patch(HELLO, at + 4, "<B", 0x02)  # STB_LOCAL, STT_FUNC
    with pytest.raises(ObjectError, match="program is static and not supported"):
        ObjectSpec.from_bytes(data, "hello.bpf.o")


def test_corrupt_btf():
    btf = read_object(HELLO, "x.o").section(".BTF")
    with pytest.raises(BtfError, match="bad BTF magic"):
        ObjectSpec.from_bytes(_patch(HELLO, btf.offset, "<H", 0x1234), "hello.bpf.o")
    ext = read_object(HELLO, "x.o").section(".BTF.ext")
    with pytest.raises(BtfError):
        ObjectSpec.from_bytes(_patch(HELLO, ext.offset + 4, "<I", 4), "hello.bpf.o")


def test_missing_file():
    with pytest.raises(ObjectError, match="cannot read"):
        ObjectSpec.from_file(FIXTURES / "no-such.bpf.o")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from([HELLO, MULTI]),
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1,
                   max_size=6),
)
def test_fuzz_spec_raises_only_object_errors(base, edits):
    data = bytearray(base)
    for pos, byte in edits:
        data[pos % len(data)] = byte
    with contextlib.suppress(ObjectError):
        ObjectSpec.from_bytes(bytes(data), "fuzz.bpf.o")


def test_huge_bss_is_refused_without_allocating_it():
    bss = read_object(HELLO, "x.o").section(".bss")
    (shoff,) = struct.unpack_from("<Q", HELLO, 40)
    data = _patch(HELLO, shoff + 64 * bss.index + 32, "<Q", 1 << 40)  # sh_size
    with pytest.raises(ObjectError, match="global data section of 1099511627776 bytes"):
        ObjectSpec.from_bytes(data, "hello.bpf.o")
