"""pybpf.elf: reading eBPF relocatable objects, and refusing everything else by name."""

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
from pybpf.elf.model import (
    EM_BPF,
    R_BPF_64_64,
    SHF_EXECINSTR,
    SHT_NOBITS,
    SHT_REL,
    STB_GLOBAL,
    STT_FUNC,
    STT_OBJECT,
)
from pybpf.errors import ObjectError

FIXTURES = Path(__file__).parent / "fixtures" / "elf"
HELLO = (FIXTURES / "hello.bpf.o").read_bytes()
MULTI = (FIXTURES / "multi.bpf.o").read_bytes()


def _patch(data: bytes, offset: int, fmt: str, *values) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def test_hello_sections_symbols_relocations():
    obj = read_object(HELLO, "hello.bpf.o")
    assert obj.machine == EM_BPF
    assert [s.index for s in obj.sections] == list(range(len(obj.sections)))
    xdp = obj.section("xdp")
    assert xdp.flags & SHF_EXECINSTR and xdp.size == 96 and len(xdp.data) == 96
    bss = obj.section(".bss")
    assert bss.type == SHT_NOBITS and bss.size == 4 and bss.data == b""
    assert obj.section(".rodata").data == b"Hello World %d\0"
    assert obj.section("license").data == b"Dual BSD/GPL\0"
    hello = next(s for s in obj.symbols if s.name == "hello")
    assert (hello.type, hello.bind, hello.section, hello.value, hello.size) == (
        STT_FUNC, STB_GLOBAL, xdp.index, 0, 96)  # fmt: skip
    counter = next(s for s in obj.symbols if s.name == "counter")
    assert counter.type == STT_OBJECT and counter.section == bss.index
    (rel,) = [r for r in obj.relocations if r.target == xdp.index]
    assert obj.sections[rel.section].type == SHT_REL
    assert [(e.offset, obj.symbols[e.symbol].name, e.type) for e in rel.entries] == [
        (0, "counter", R_BPF_64_64), (24, "", R_BPF_64_64)]  # fmt: skip
    assert rel.entries[0].type_name == "R_BPF_64_64"


def test_reading_is_deterministic():
    assert read_object(MULTI, "m") == read_object(bytearray(MULTI), "m")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "truncated"),
        (b"\x7fEL", "truncated"),
        (b"MZ\x90\x00" + bytes(60), "not an ELF file"),
        (HELLO[:4] + b"\x01" + HELLO[5:], r"ELFCLASS32 \(32-bit\), not ELFCLASS64"),
        (HELLO[:4] + b"\x07" + HELLO[5:], "invalid EI_CLASS 7"),
        (HELLO[:5] + b"\x02" + HELLO[6:], "big-endian"),
        (HELLO[:40], "truncated: 40 bytes, an ELF header needs 64"),
    ],
)
def test_identification_errors(data, fragment):
    with pytest.raises(ObjectError, match=fragment):
        read_object(data, "x.o")


def test_wrong_machine_names_it():
    host = (FIXTURES / "host.o").read_bytes()
    with pytest.raises(ObjectError, match=r"e_machine EM_X86_64 \(62\), not EM_BPF \(247\)"):
        read_object(host, "host.o")


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")
def test_wrong_machine_fresh_host_object(tmp_path):
    src = tmp_path / "f.c"
    src.write_text("int f(void) { return 1; }\n")
    subprocess.run(["cc", "-c", str(src), "-o", str(tmp_path / "f.o")], check=True)
    with pytest.raises(ObjectError, match="not EM_BPF"):
        read_object((tmp_path / "f.o").read_bytes(), "f.o")


def test_not_relocatable():
    with pytest.raises(ObjectError, match=r"ET_EXEC \(2\), not ET_REL"):
        read_object(_patch(HELLO, 16, "<H", 2), "x.o")


def test_em_none_is_accepted_like_libbpf():
    assert read_object(_patch(HELLO, 18, "<H", 0), "x.o").machine == 0


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "fragment"),
    [
        (40, "<Q", 1 << 40, "section header table at offset"),  # e_shoff
        (40, "<Q", 0, "no section header table"),
        (58, "<H", 40, "e_shentsize is 40"),
        (60, "<H", 900, "900 section headers"),  # e_shnum
        (62, "<H", 500, "section name table index 500 is out of range"),  # e_shstrndx
    ],
)
def test_header_errors(offset, fmt, value, fragment):
    with pytest.raises(ObjectError, match=fragment):
        read_object(_patch(HELLO, offset, fmt, value), "x.o")


def _shdr_offset(data: bytes, index: int) -> int:
    (shoff,) = struct.unpack_from("<Q", data, 40)
    return shoff + 64 * index


def test_section_data_past_the_end():
    obj = read_object(HELLO, "x.o")
    at = _shdr_offset(HELLO, obj.section("xdp").index)
    with pytest.raises(ObjectError, match=r"section #3 .* extends past the end"):
        read_object(_patch(HELLO, at + 32, "<Q", 1 << 20), "x.o")  # sh_size


def test_section_name_offset_out_of_range():
    at = _shdr_offset(HELLO, 3)
    with pytest.raises(ObjectError, match="section header #3: name offset 99999"):
        read_object(_patch(HELLO, at, "<I", 99999), "x.o")


def test_relocation_section_errors():
    obj = read_object(HELLO, "x.o")
    rel = obj.section(".relxdp")
    at = _shdr_offset(HELLO, rel.index)
    with pytest.raises(ObjectError, match="section #99, which does not exist"):
        read_object(_patch(HELLO, at + 44, "<I", 99), "x.o")  # sh_info
    with pytest.raises(ObjectError, match="relocation entries are 24 bytes"):
        read_object(_patch(HELLO, at + 56, "<Q", 24), "x.o")  # sh_entsize


def test_truncated_everywhere():
    cuts = sorted(set(range(0, 80)) | set(range(80, len(HELLO), 37)))
    for cut in cuts:
        with pytest.raises(ObjectError):
            read_object(HELLO[:cut], "cut.o")


def _mutated(draw_data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(draw_data)
    for pos, byte in edits:
        out[pos % len(out)] = byte
    return bytes(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from([HELLO, MULTI]),
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1,
                   max_size=8),
    header_bias=st.booleans(),
)
def test_fuzz_mutations_raise_only_object_errors(base, edits, header_bias):
    if header_bias:  # aim at the ELF header and the section header table
        (shoff,) = struct.unpack_from("<Q", base, 40)
        span = len(base) - shoff
        edits = [(p % 64 if i % 2 else shoff + p % span, b) for i, (p, b) in enumerate(edits)]
    data = _mutated(base, edits)
    with contextlib.suppress(ObjectError):
        read_object(data, "fuzz.o")
