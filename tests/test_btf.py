"""pybpf.btf: .BTF/.BTF.ext parsing, declarations, value formatting, maps, vmlinux.

What bpftool printed (``btf dump`` of the fixtures and of this machine's vmlinux, the
listing and map dump of hello.bpf.o loaded into the kernel) is recorded in
``kernel_facts/btf.json``; pybpf's renderings must equal it.  Where bpftool (and, for the
load, root and a bpf filesystem) is there, it is asked again: a different answer is
drift, reported but not failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.btf import Btf, BtfExt, format_value, load_vmlinux, map_def_from_btf
from pybpf.btf.dump import format_entry, map_dump_text
from pybpf.btf.maps import maps_in_btf
from pybpf.btf.types import Enum64, Int, Struct
from pybpf.errors import BtfError

FIX = Path(__file__).parent / "fixtures" / "btf"
SEED = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "002_ffa0df144d0b0091.txt"
HAVE_BPFTOOL = shutil.which("bpftool") is not None
HAVE_CLANG = shutil.which("clang") is not None and shutil.which("llvm-objcopy") is not None

SEED_RODATA_TEXT = """[{
        "value": {
            ".rodata": [{
                    "hello.____fmt": "Hello World %d"
                }
            ]
        }
    }
]
"""


def load(name: str) -> tuple[Btf, BtfExt | None]:
    btf = Btf.parse((FIX / f"{name}.btf").read_bytes())
    ext_path = FIX / f"{name}.btf.ext"
    ext = BtfExt.parse(ext_path.read_bytes(), btf) if ext_path.exists() else None
    return btf, ext


@pytest.fixture(scope="module")
def hello():
    return load("hello")


@pytest.fixture(scope="module")
def kinds():
    return load("kinds")


# --- the seed's hello ---------------------------------------------------------------


def test_hello_types(hello):
    btf, _ = hello
    assert btf.types[0].kind == "void"
    fid = btf.find("hello", "func")
    assert fid is not None
    assert btf.c_decl(fid) == "int hello(struct xdp_md * ctx)"
    assert btf.type_only(fid) == "int hello(struct xdp_md * ctx)"
    assert btf.c_decl(btf.find("LICENSE")) == "char LICENSE[13]"
    assert btf.c_decl(btf.find("hello.____fmt")) == "static const char hello.____fmt[15]"
    xdp = btf.find("xdp_md", "struct")
    assert btf.size_of(xdp) == 24 and btf.name_of(xdp) == "struct xdp_md"
    u32 = btf.find("__u32")
    assert btf.types[btf.resolve(u32)].name == "unsigned int"
    assert btf.size_of(btf.find("LICENSE")) == 13
    assert btf.find("hello", "struct") is None and btf.find("nope") is None


def test_hello_line_info_matches_seed(hello):
    btf, ext = hello
    assert ext.func_info == {"xdp": [(0, btf.find("hello", "func"))]}
    lines = ext.line_info["xdp"]
    assert [(li.insn_index, li.src) for li in lines] == [
        (0, 'bpf_printk("Hello World %d", counter);'),
        (7, "counter++; "),
        (10, "return XDP_PASS;"),
    ]
    assert [(li.line, li.col) for li in lines] == [(8, 5), (9, 12), (10, 5)]
    assert lines[0].file.endswith("hello.bpf.c")
    assert lines[0].line_text == '    bpf_printk("Hello World %d", counter);'
    # the seed's xlated listing prints exactly these source lines
    if SEED.exists():
        seed = SEED.read_text()
        for li in lines:
            assert f"; {li.src}\n" in seed
    assert ext.core_relos == {}


def test_hello_rodata_dump_matches_seed(hello):
    btf, _ = hello
    ro = btf.find(".rodata", "datasec")
    value = format_value(btf, ro, b"Hello World %d\0")
    assert json.dumps([{"value": value}]) == (
        '[{"value": {".rodata": [{"hello.____fmt": "Hello World %d"}]}}]'
    )
    text = map_dump_text(btf, 0, ro, [(b"\0\0\0\0", b"Hello World %d\0")])
    assert text == SEED_RODATA_TEXT
    if SEED.exists():
        assert SEED_RODATA_TEXT.rstrip("\n") in SEED.read_text()


def _bpftool(*args: str) -> str:
    return subprocess.run(["bpftool", *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout  # fmt: skip


def _can_load_progs() -> bool:
    return HAVE_BPFTOOL and os.geteuid() == 0 and Path("/sys/fs/bpf").is_dir()


def _asking(facts, live: bool = HAVE_BPFTOOL):
    """The oracle, answering from the recording alone where bpftool cannot be asked."""
    return facts.offline_when(None if live else "bpftool cannot be asked here")


@pytest.mark.parametrize("name", ["hello", "kinds", "core", "target"])
def test_raw_dump_equals_bpftool(kernel_facts, name):
    btf, _ = load(name)
    obj = str(FIX / f"{name}.bpf.o")
    _asking(kernel_facts).check(f"btf_dump/{name}", btf.dump_raw(),
                                lambda: _bpftool("btf", "dump", "file", obj))  # fmt: skip


def _hello_in_the_kernel() -> dict:
    """What bpftool shows of hello.bpf.o loaded into the live kernel (a probe): the first
    line of the xlated listing, and the .rodata map dumped as text and as JSON."""
    pin = f"/sys/fs/bpf/pybpf_btf_hello_{os.getpid()}"
    try:
        r = subprocess.run(["bpftool", "prog", "load", str(FIX / "hello.bpf.o"), pin],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        if r.returncode:
            return {"bpftool prog load failed": r.stderr.strip()}
        info = json.loads(_bpftool("-j", "prog", "show", "pinned", pin))
        xlated = _bpftool("prog", "dump", "xlated", "pinned", pin)
        ro_id = next(m for m in info["map_ids"]
                     if json.loads(_bpftool("-j", "map", "show", "id", str(m)))["name"]
                     .endswith(".rodata"))  # fmt: skip
        dumped_json = json.loads(_bpftool("-j", "map", "dump", "id", str(ro_id)))
        return {"xlated_head": xlated.splitlines()[0],
                "rodata_dump": _bpftool("map", "dump", "id", str(ro_id)),
                "rodata_formatted": dumped_json[0]["formatted"]}  # fmt: skip
    finally:
        if os.path.exists(pin):
            os.unlink(pin)


def test_hello_against_the_kernel(kernel_facts, hello):
    btf, _ = hello
    ro = btf.find(".rodata", "datasec")
    ours = {"xlated_head": btf.c_decl(btf.find("hello")) + ":",
            "rodata_dump": map_dump_text(btf, 0, ro, [(b"\0" * 4, b"Hello World %d\0")]),
            "rodata_formatted": {"value": format_value(btf, ro, b"Hello World %d\0")}}  # fmt: skip
    _asking(kernel_facts, _can_load_progs()).check("hello_loaded", ours, _hello_in_the_kernel)


# --- compiling from source -------------------------------------------------------------


@pytest.mark.skipif(not HAVE_CLANG, reason="clang/llvm-objcopy not installed")
@pytest.mark.parametrize("name", ["hello", "kinds"])
def test_compiled_source_matches_committed_blob(tmp_path, name):
    arch_inc = f"/usr/include/{os.uname().machine}-linux-gnu"
    obj = tmp_path / f"{name}.bpf.o"
    subprocess.run(["clang", "-target", "bpf", f"-I{arch_inc}", "-g", "-O2", "-c",
                    str(FIX / f"{name}.bpf.c"), "-o", str(obj)], check=True)  # fmt: skip
    subprocess.run(["llvm-objcopy", f"--dump-section=.BTF={tmp_path / 'x.btf'}",
                    f"--dump-section=.BTF.ext={tmp_path / 'x.ext'}", str(obj)],
                   check=True)  # fmt: skip
    fresh = Btf.parse((tmp_path / "x.btf").read_bytes())
    committed, cext = load(name)
    assert fresh.dump_raw() == committed.dump_raw()
    ext = BtfExt.parse((tmp_path / "x.ext").read_bytes(), fresh)
    assert ext.func_info == cext.func_info
    assert [(li.insn_index, li.src, li.line) for sec in ext.line_info.values() for li in sec] == [
        (li.insn_index, li.src, li.line) for sec in cext.line_info.values() for li in sec
    ]


# --- every kind --------------------------------------------------------------------------


def test_kinds_declarations(kinds):
    btf, ext = kinds
    val = btf.find("value", "struct")
    s = btf.types[val]
    assert isinstance(s, Struct) and s.size == 176
    decls = {m.name: btf.c_decl(m.type, m.name) for m in s.members}
    assert decls["name"] == "char name[16]"
    assert decls["matrix"] == "int matrix[2][3]"
    assert decls["cv"] == "const volatile int cv"
    assert decls["fp"] == "struct fwd_only * fp"
    assert decls["fu"] == "union fwd_union * fu"
    assert decls["cb"] == "callback_t cb"
    assert decls["rp"] == "char * restrict rp"
    assert decls["tagged"] == "int * tagged"
    cb = btf.find("callback_t")
    assert btf.c_decl(btf.types[cb].type, "cb") == "int (* cb)(void *, u64)"
    assert btf.c_decl(btf.find("helper_fn", "func")) == "int helper_fn(int a, int b)"
    assert btf.c_decl(btf.find("variadicish", "func")) == (
        "int variadicish(struct value * v, callback_t cb)"
    )
    bits = btf.types[btf.find("bits", "struct")]
    assert [(m.name, m.offset, m.bitfield_size) for m in bits.members] == [
        ("a", 0, 3), ("b", 3, 5), ("c", 8, 7), ("d", 15, 40), ("tail", 56, 0),
    ]  # fmt: skip
    tag = next(t for t in btf.types if t.kind == "decl_tag" and t.name == "member_tag")
    assert tag.component_idx == 14
    assert btf.types[btf.find("float")].size == 4
    assert btf.align_of(val) == 8  # libbpf: ints align to min(size, pointer size)
    assert ext.func_info["xdp"][0] == (0, btf.find("kinds_prog", "func"))
    assert {sec for sec in ext.func_info} == {"xdp", ".text"}


def test_kinds_maps(kinds):
    btf, _ = kinds
    maps = maps_in_btf(btf)
    assert set(maps) == {"inner1", "inner2", "outer", "values", "jumps", "sized"}
    v = maps["values"]
    assert (v["type"], v["key_size"], v["value_size"], v["max_entries"], v["map_flags"]) == (
        1, 4, 176, 1024, 1,
    )  # fmt: skip
    assert btf.name_of(v["key_type_id"]) == "u32"
    assert btf.name_of(v["value_type_id"]) == "struct value"
    sized = maps["sized"]
    assert (sized["key_size"], sized["value_size"], sized["pinning"]) == (4, 8, 1)
    assert sized["key_type_id"] == 0
    outer = maps["outer"]
    assert outer["type"] == 12 and outer["value_size"] == 4
    assert outer["inner"]["type"] == 2 and outer["inner"]["max_entries"] == 1
    assert outer["inner"]["key_size"] == 4 and outer["inner"]["value_size"] == 4
    jumps = maps["jumps"]
    assert jumps["type"] == 3 and jumps["inner"] is None
    assert btf.types[jumps["values_type_id"]].kind == "func_proto"
    var = btf.find("values", "var")
    assert map_def_from_btf(btf, var) == v
    with pytest.raises(BtfError):
        map_def_from_btf(btf, btf.find("zero_value", "var"))  # struct value: unknown fields


def _value_bytes() -> bytes:
    b = bytearray(176)
    struct.pack_into("<Q", b, 0, 7)
    b[8:16] = b"counter\0"
    struct.pack_into("<i", b, 24, 5)  # GREEN
    struct.pack_into("<q", b, 32, 1)  # BIG_SMALL
    b[40] = 1  # flag
    bits = 5 | (17 << 3) | (0x7F << 8) | (0x123456789 << 15)
    struct.pack_into("<Q", b, 48, bits & ((1 << 56) - 1))
    b[55] = ord("z")
    struct.pack_into("<d", b, 56, 2.5)
    struct.pack_into("<h", b, 64, -3)
    b[66:69] = b"\x01\x02\x03"
    for i in range(6):
        struct.pack_into("<i", b, 76 + 4 * i, i - 2)
    struct.pack_into("<i", b, 100, -9)
    struct.pack_into("<Q", b, 104, 0xFFFF888812345678)
    struct.pack_into("<Q", b, 144, 0x1234)
    return bytes(b)


def test_format_value_rules(kinds):
    btf, _ = kinds
    val = btf.find("value", "struct")
    v = format_value(btf, val, _value_bytes())
    assert v["count"] == 7
    assert v["name"] == "counter"
    assert v["color"] == "GREEN"
    assert v["big"] == "BIG_SMALL"
    assert v["flag"] is True
    assert v["bits"] == {"a": "0x5", "b": "0x11", "c": "0x7f", "d": "0x123456789", "tail": 122}
    assert v["num"]["d"] == 2.5 and v["num"]["i"] == 0
    assert v["in"][0] == {"s": -3, "arr": [1, 2, 3]}
    assert v["matrix"] == [[-2, -1, 0], [1, 2, 3]]
    assert v["cv"] == -9
    assert v["fp"] == 0xFFFF888812345678
    assert v["wide"] == "0x1234"
    json.dumps(v)
    plain = format_value(btf, val, _value_bytes(), plain=True)
    assert plain["fp"] == "0xffff888812345678" and plain["fu"] == "(nil)"
    # a char array without NUL, or with unprintable bytes, is a list of numbers
    arr = btf.find("greeting", "var")
    assert format_value(btf, arr, b"hi\0\0\0\0\0\0") == {"greeting": "hi"}
    assert format_value(btf, arr, b"abcdefgh") == {"greeting": [97, 98, 99, 100, 101, 102,
                                                                 103, 104]}  # fmt: skip
    assert format_value(btf, arr, b"a\x01\0\0\0\0\0\0")["greeting"][:2] == [97, 1]
    color = btf.find("color", "enum")
    assert format_value(btf, color, struct.pack("<i", -1)) == "BLUE"
    assert format_value(btf, color, struct.pack("<i", 9)) == 9
    with pytest.raises(BtfError):
        format_value(btf, val, b"\0" * 10)
    entry = format_entry(btf, btf.find("u32"), val, b"\1\0\0\0", _value_bytes())
    assert entry["key"] == 1 and entry["value"]["count"] == 7


def test_plain_render_arrays_as_bpftool():
    from pybpf.btf.dump import render_plain

    assert render_plain([{"key": 0, "value": [1, 2]}]) == (
        '[{\n        "key": 0,\n        "value": [1,2\n        ]\n    }\n]'
    )


# --- hand-made BTF: enum64, split BTF, malformed input ------------------------------------


def build_btf(types: bytes, strings: bytes, *, hdr_len: int = 24) -> bytes:
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, hdr_len, 0, len(types), len(types),
                      len(strings))  # fmt: skip
    return hdr + b"\0" * (hdr_len - 24) + types + strings


def t_hdr(name_off: int, kind: int, vlen: int, size_type: int, kflag: int = 0) -> bytes:
    return struct.pack("<III", name_off, (kflag << 31) | (kind << 24) | vlen, size_type)


STRS = b"\0int\0e64\0A\0B\0p\0"  # int=1 e64=5 A=9 B=11 p=13


def test_enum64_and_every_scalar():
    types = (
        t_hdr(1, 1, 0, 4) + struct.pack("<I", (1 << 24) | 32)  # [1] int
        + t_hdr(5, 19, 2, 8, kflag=1) + struct.pack("<III", 9, 0xFFFFFFFF, 0xFFFFFFFF)
        + struct.pack("<III", 11, 0, 1)  # [2] enum64 A=-1 B=1<<32
        + t_hdr(0, 2, 0, 1)  # [3] ptr to int
        + t_hdr(13, 14, 0, 3) + struct.pack("<I", 1)  # [4] var p
    )  # fmt: skip
    btf = Btf.parse(build_btf(types, STRS))
    e = btf.types[2]
    assert isinstance(e, Enum64) and e.signed
    assert [(v.name, v.value) for v in e.values] == [("A", -1), ("B", 1 << 32)]
    assert format_value(btf, 2, struct.pack("<q", -1)) == "A"
    assert format_value(btf, 2, struct.pack("<Q", 1 << 32)) == "B"
    assert format_value(btf, 2, struct.pack("<Q", 5)) == 5
    assert btf.dump_raw().splitlines()[1:4] == [
        "[2] ENUM64 'e64' encoding=SIGNED size=8 vlen=2",
        "\t'A' val=-1LL",
        "\t'B' val=4294967296LL",
    ]
    assert btf.c_decl(4) == "int * p"
    assert format_value(btf, 4, struct.pack("<Q", 0x10)) == {"p": 16}
    assert isinstance(btf.types[1], Int) and btf.types[1].signed


def test_split_btf():
    base = Btf.parse(build_btf(t_hdr(1, 1, 0, 4) + struct.pack("<I", (1 << 24) | 32), b"\0int\0"))
    # module: string offsets continue after the base's 5 bytes; ids after base's 2
    mod_strs = b"m\0"
    mod = Btf.parse(build_btf(t_hdr(0, 2, 0, 1) + t_hdr(5, 8, 0, 2), mod_strs), base=base)
    assert mod.types[2].kind == "ptr" and mod.types[3].name == "m"
    assert mod.c_decl(3, "x") == "m x" and mod.size_of(3) == 8
    assert mod.dump_raw().startswith("[2] PTR '(anon)' type_id=1\n[3] TYPEDEF 'm' type_id=2")


@pytest.mark.parametrize(
    ("blob", "words"),
    [
        (b"", "truncated"),
        (b"\xeb\x9f\x01\x00" + b"\0" * 20, "big-endian"),
        (b"\x12\x34\x01\x00" + b"\0" * 20, "magic"),
        (b"\x9f\xeb", "truncated"),
        (build_btf(b"", b"\0")[:20], "truncated"),
        (build_btf(t_hdr(0, 25, 0, 0), b"\0"), "unknown BTF kind 25"),
        (build_btf(t_hdr(0, 2, 0, 7), b"\0"), "out of range"),
        (build_btf(t_hdr(99, 2, 0, 0), b"\0"), "string offset 99"),
        (build_btf(t_hdr(0, 2, 0, 1), b"\0"), "loop"),
        (build_btf(t_hdr(0, 8, 0, 2) + t_hdr(0, 10, 0, 1), b"\0"), "loop"),
        (build_btf(t_hdr(0, 1, 0, 4), b"\0"), "truncated int"),
        (build_btf(t_hdr(0, 4, 3, 4), b"\0"), "members run past"),
        (build_btf(b"", b"x"), "NUL"),
    ],
)
def test_malformed_btf(blob, words):
    with pytest.raises(BtfError) as e:
        Btf.parse(blob)
    assert words in str(e.value)
    assert e.value.offset is not None or "loop" in words


def test_malformed_header_offsets():
    good = build_btf(t_hdr(1, 1, 0, 4) + struct.pack("<I", 32), b"\0int\0")
    bad = bytearray(good)
    struct.pack_into("<I", bad, 12, 1000)  # type_len
    with pytest.raises(BtfError, match="outside the data") as e:
        Btf.parse(bytes(bad))
    assert e.value.offset == 8
    with pytest.raises(BtfError):
        Btf.parse(good[:-1])


def test_btf_ext_malformed(hello):
    btf, _ = hello
    raw = (FIX / "hello.btf.ext").read_bytes()
    for cut in range(len(raw)):
        with pytest.raises(BtfError):
            BtfExt.parse(raw[:cut], btf)
    bad = bytearray(raw)
    struct.pack_into("<I", bad, 32, 3)  # func_info record size
    with pytest.raises(BtfError, match="record size"):
        BtfExt.parse(bytes(bad), btf)


# --- fuzz ----------------------------------------------------------------------------

SEED_BLOBS = [(FIX / f"{n}.btf").read_bytes() for n in ("hello", "kinds", "core", "target")]


def _exercise(btf: Btf) -> None:
    for i in range(len(btf.types)):
        for fn in (btf.size_of, btf.resolve, btf.name_of, btf.c_decl, btf.type_only):
            with contextlib.suppress(BtfError):
                fn(i)
        with contextlib.suppress(BtfError):
            format_value(btf, i, bytes(64))
    btf.dump_raw()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(SEED_BLOBS) - 1),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 4000)),
)
def test_fuzz_mutated_btf(which, edits, cut):
    blob = bytearray(SEED_BLOBS[which])
    for pos, val in edits:
        blob[pos % len(blob)] = val
    if cut is not None:
        blob = blob[:cut]
    try:
        btf = Btf.parse(bytes(blob))
    except BtfError:
        return
    _exercise(btf)


@settings(max_examples=200, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 500), st.integers(0, 255)), max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 500)))  # fmt: skip
def test_fuzz_mutated_btf_ext(edits, cut):
    btf = Btf.parse(SEED_BLOBS[1])
    blob = bytearray((FIX / "kinds.btf.ext").read_bytes())
    for pos, val in edits:
        blob[pos % len(blob)] = val
    if cut is not None:
        blob = blob[:cut]
    with contextlib.suppress(BtfError):
        BtfExt.parse(bytes(blob), btf)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    for blob in (data, build_btf(data, b"\0int\0")):
        with contextlib.suppress(BtfError):
            _exercise(Btf.parse(blob))


# --- vmlinux ---------------------------------------------------------------------------


VMLINUX = Path("/sys/kernel/btf/vmlinux")


@pytest.mark.skipif(not VMLINUX.exists(), reason="no vmlinux BTF")
def test_vmlinux():
    from pybpf.btf import vmlinux as vm_mod

    vm_mod._cache.clear()
    vm = load_vmlinux()
    assert vm is not None
    assert load_vmlinux() is vm  # cached
    tid = vm.find("task_struct", "struct")
    assert tid is not None
    names = {m.name for m in vm.types[tid].members}
    assert {"pid", "tgid", "comm"} <= names
    comm = next(m for m in vm.types[tid].members if m.name == "comm")
    assert vm.c_decl(comm.type, "comm") == "char comm[16]"
    assert vm.size_of(tid) > 1000
    assert load_vmlinux("/nonexistent/vmlinux") is None


def _digest(text: str) -> dict:
    """A dump too big to record whole: its SHA-256 and its number of lines."""
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "lines": text.count("\n")}


@pytest.mark.skipif(not VMLINUX.exists(), reason="no vmlinux BTF")
def test_vmlinux_raw_dump_equals_bpftool(kernel_facts):
    # the input is this machine's kernel: the recording is of the vmlinux with this digest
    key = f"vmlinux_dump/{hashlib.sha256(VMLINUX.read_bytes()).hexdigest()[:12]}"
    ours = _digest(load_vmlinux().dump_raw())
    probe = lambda: _digest(_bpftool("btf", "dump", "file", str(VMLINUX)))  # noqa: E731
    if kernel_facts.file.get(key) is None and not kernel_facts.record:
        if not HAVE_BPFTOOL:
            pytest.skip(f"{key} is not recorded (another kernel's vmlinux) and bpftool is absent")
        assert ours == probe(), f"{key} (not recorded): pybpf differs from bpftool"
        return
    _asking(kernel_facts).check(key, ours, probe)
