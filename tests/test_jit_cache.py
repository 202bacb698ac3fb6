"""The JIT's compile cache: hits, misses, keys, damaged entries, concurrent writers, bounds."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from pathlib import Path

import pytest

from pybpf.errors import JitError
from pybpf.isa import Instruction
from pybpf.jit import cache as jc
from pybpf.jit.engine import ENGINE_VERSION
from pybpf.jit.native import auto_opt_level
from pybpf.vm.memory import Memory, Region

# r0 = 7; r0 += r1 (r1 = 0 for a run without memory); exit
PROG = (Instruction(0xB7, 0, 0, 0, 7), Instruction(0x0F, 0, 1, 0, 0), Instruction(0x95))
OTHER = (Instruction(0xB7, 0, 0, 0, 9), Instruction(0x95))


def _key(insns=PROG, **over) -> str:
    args = {"checked": True, "opt_level": 1, "tools": "tools"} | over
    return jc.cache_key(insns, **args)


@pytest.fixture
def cache(tmp_path: Path) -> jc.CompileCache:
    return jc.CompileCache(tmp_path)


def test_key_names_every_input():
    base = _key()
    assert len(base) == 64 and base == _key()
    variants = [
        _key(OTHER), _key(checked=False), _key(opt_level=2), _key(tools="other llvm"),
        _key(engine_version=ENGINE_VERSION + 1),
    ]  # fmt: skip
    assert len({base, *variants}) == len(variants) + 1


def test_key_includes_resolved_addresses():
    lddw = Instruction(0x18, 1, 1, 0, 5, imm2=0)  # ld_imm64 r1 = map[id:5] (MAP_FD)
    prog = (lddw, Instruction(0xB7, 0, 0, 0, 0), Instruction(0x95))
    one = _key(prog, resolve_imm64=lambda insn, pc: 0x1000)
    two = _key(prog, resolve_imm64=lambda insn, pc: 0x2000)
    assert one != two  # the generated code embeds the address


def test_toolchain_names_llvmlite_host_and_generator():
    text = jc.toolchain()
    assert "llvmlite " in text and "x86_64" in text and jc.generator_digest() in text


def test_miss_then_hit(cache):
    key = _key()
    assert cache.get(key) is None and cache.misses == 1
    assert cache.put(key, b"object bytes")
    assert cache.get(key) == b"object bytes" and cache.hits == 1
    assert cache.get(_key(OTHER)) is None


@pytest.mark.parametrize("damage", ["truncate", "flip_payload", "foreign_key", "bad_magic",
                                    "empty"])  # fmt: skip
def test_damaged_entry_is_a_miss_and_removed(cache, damage):
    key = _key()
    cache.put(key, b"x" * 100)
    path = cache.root / f"{key}.o"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-10]
    elif damage == "flip_payload":
        data[-1] ^= 0xFF
    elif damage == "foreign_key":
        start = len(jc.MAGIC)
        data[start : start + 32] = hashlib.sha256(b"another key").digest()
    elif damage == "bad_magic":
        data[:4] = b"JUNK"
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    assert cache.get(key) is None
    assert not path.exists()


def test_bad_key_is_refused(cache):
    with pytest.raises(JitError):
        cache.get("../../etc/passwd")


def test_unwritable_directory_only_misses(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = jc.CompileCache(blocker)
    assert cache.put(_key(), b"data") is False
    assert cache.get(_key()) is None


def test_bounded_size_evicts_least_recently_used(tmp_path):
    cache = jc.CompileCache(tmp_path, max_bytes=3000)
    keys = [hashlib.sha256(bytes([i])).hexdigest() for i in range(6)]
    for i, key in enumerate(keys):
        cache.put(key, bytes(900))
        os.utime(cache.root / f"{key}.o", ns=(i * 10**9, i * 10**9))
    cache.trim()
    assert cache.size() <= 3000
    assert cache.get(keys[-1]) is not None  # the newest stays
    assert cache.get(keys[0]) is None  # the oldest went first


def test_trim_removes_abandoned_temporary_files(cache):
    cache.put(_key(), b"data")
    old, fresh = cache.root / ".tmp-old.o", cache.root / ".tmp-new.o"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(old, (0, 0))
    cache.trim()
    assert not old.exists() and fresh.exists() and cache.get(_key()) == b"data"


def _writer(root: str, seed: int, rounds: int) -> None:
    cache = jc.CompileCache(root)
    for i in range(rounds):
        key = hashlib.sha256(f"shared {i % 3}".encode()).hexdigest()
        cache.put(key, f"payload {i % 3}".encode() * (100 + seed))
        got = cache.get(key)
        assert got is None or got.startswith(f"payload {i % 3}".encode())


def test_concurrent_writers_leave_whole_entries(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), n, 60)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    cache = jc.CompileCache(tmp_path)
    for i in range(3):
        data = cache.get(hashlib.sha256(f"shared {i}".encode()).hexdigest())
        assert data is not None and data.startswith(f"payload {i}".encode())
        assert len(data) in {len(f"payload {i}") * (100 + n) for n in range(4)}
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".tmp-")]


def test_build_compiles_once_and_reuses(cache):
    first = jc.build(PROG, cache=cache, checked=True)
    try:
        assert first.run().r0 == 7
        assert cache.misses == 1 and len(cache.entries()) == 1
    finally:
        first.close()
    second = jc.build(PROG, cache=cache, checked=True)
    try:
        assert second.run().r0 == 7 and cache.hits == 1
        assert second.object_code == first.object_code
    finally:
        second.close()
    other = jc.build(PROG, cache=cache, checked=False)  # another mode: another entry
    other.close()
    assert len(cache.entries()) == 2


def test_build_recompiles_when_the_entry_is_not_an_object(cache):
    key = jc.cache_key(PROG, checked=True, opt_level=auto_opt_level(len(PROG)))  # build's default
    cache.put(key, b"\x7fELF but not an object LLVM can map" * 4)
    prog = jc.build(PROG, cache=cache, checked=True)
    try:
        assert prog.run().r0 == 7
    finally:
        prog.close()
    assert cache.get(key)[:4] == b"\x7fELF" and len(cache.get(key)) > 200  # rewritten


def test_environment_selects_or_disables(monkeypatch, tmp_path):
    monkeypatch.setenv("PYBPF_CACHE_DIR", str(tmp_path / "c"))
    assert jc.default_cache().root == tmp_path / "c" / "jit"
    monkeypatch.setenv("PYBPF_CACHE_DIR", "off")
    assert jc.default_cache() is None
    monkeypatch.delenv("PYBPF_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jc.default_root() == tmp_path / "xdg" / "pybpf"


def _value_program(cache, memory, region, **kw):
    lddw = Instruction(0x18, 1, 2, 0, 1, imm2=0)  # r1 = map value address (MAP_VALUE)
    prog = (lddw, Instruction(0x61, 0, 1, 4, 0), Instruction(0x95))  # r0 = *(u32 *)(r1 + 4)
    return jc.build(prog, cache=cache, checked=False, memory=memory,
                    resolve_imm64=lambda insn, pc: region.base, **kw)  # fmt: skip


def test_map_addresses_are_relocated_on_a_hit(cache):
    memory = Memory()
    regions = [memory.add(Region(f"value{i}", bytearray(8))) for i in range(2)]
    for i, region in enumerate(regions):
        region.view[4:8] = (1000 + i).to_bytes(4, "little")
    assert regions[0].base != regions[1].base
    for i, region in enumerate(regions):
        jp = _value_program(cache, memory, region)
        try:
            assert jp.run().r0 == 1000 + i  # reads this region, not the first one's
        finally:
            jp.close()
    assert (cache.misses, cache.hits, len(cache.entries())) == (1, 1, 1)
    stored = cache.get(cache.entries()[0].stem)
    # the stand-in (plus the load's offset, which O2 folds in), not an address
    assert jc.placeholder(0).to_bytes(8, "little")[4:] in stored
    assert not any(r.base.to_bytes(8, "little") in stored for r in regions)


def test_code_that_relocation_cannot_reproduce_is_not_stored(cache, monkeypatch):
    memory = Memory()
    region = memory.add(Region("value", bytearray(8)))
    monkeypatch.setattr(jc, "relocate", lambda data, values: data)  # a relocation that fails
    jp = _value_program(cache, memory, region)
    jp.close()
    assert cache.entries() == []


def test_relocate_patches_offsets_and_skips_lookalikes():
    ph = jc.placeholder(1)
    data = (b"\x90" + (ph + 8).to_bytes(8, "little") + (ph - 16).to_bytes(8, "little")
            + (jc.placeholder(5)).to_bytes(8, "little"))  # fmt: skip
    out = jc.relocate(data, [0x1000, 0x7F00_0000_2000])
    assert out[1:9] == (0x7F00_0000_2008).to_bytes(8, "little")
    assert out[9:17] == (0x7F00_0000_1FF0).to_bytes(8, "little")
    assert out[17:] == data[17:]  # slot 5 does not exist: left alone
