"""The object loader end to end: the seeds' hello.bpf.o, listings with source lines."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

from pybpf.asm import llvm, xlated
from pybpf.cli import hello
from pybpf.elf.reader import read_object
from pybpf.errors import KernelError, ObjectError
from pybpf.isa import decode
from pybpf.loader import ObjectSpec, load_object
from pybpf.loader.listing import objdump_notes, xlated_notes
from pybpf.loader.spec import MapSpec
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps.base import MapType
from pybpf.runtime.progtypes import ProgType

HERE = Path(__file__).resolve().parent
HELLO = HERE / "fixtures" / "hello.bpf.o"


def test_the_shipped_example_is_the_fixture():
    assert hello.example_bytes() == HELLO.read_bytes()
    assert (HERE.parent / "src/pybpf/examples/hello.bpf.c").read_bytes() == (
        HERE / "fixtures" / "hello.bpf.c").read_bytes()  # fmt: skip


def test_hello_object_loads_as_the_seed_shows():
    kernel = Kernel()
    with load_object(HELLO, kernel) as coll:
        prog = coll.program("hello")
        assert prog.prog_type == ProgType.XDP and prog.name == "hello"
        assert prog.tag == "490c48c1179970a8" and prog.tag_with("sha1") == "d35b94b4c0c10efb"
        assert prog.bytes_xlated == 96
        assert sorted(coll.maps) == ["hello.bss", "hello.rodata"]
        assert prog.map_ids == [coll.map("hello.bss").id, coll.map("hello.rodata").id]
        assert coll.map("hello.bss").map_flags == 0x400
        assert coll.map("hello.rodata").map_flags == 0x480 and coll.map("hello.rodata").frozen
        for n in range(3):
            assert coll.run("hello", bytes(64)).retval == 2
            (line,) = kernel.trace.read()
            assert line.endswith(f"bpf_trace_printk: Hello World {n}")
        assert coll.map("hello.bss")[bytes(4)] == (3).to_bytes(4, "little")
    assert not kernel.progs and not kernel.maps  # closing the collection unloads it


def _seed_lines(golden: str) -> list[str]:
    text = (HERE / "golden" / golden).read_text()
    return [" ".join(x.split()) for x in text.splitlines() if x and not x.startswith("#")]


def test_objdump_listing_with_source_is_the_seeds():
    data = HELLO.read_bytes()
    spec = ObjectSpec.from_bytes(data, "hello.bpf.o")
    (prog,) = spec.programs
    raw = read_object(data, "hello.bpf.o").section("xdp").data
    listing = llvm.objdump_listing(decode(raw), notes=objdump_notes(prog))
    expected = _seed_lines("hello_objdump.txt")[1:]  # after "0000000000000000 <hello>:"
    assert [" ".join(x.split()) for x in listing.splitlines()] == expected


def test_xlated_listing_with_source_is_the_seeds():
    spec = ObjectSpec.from_file(HELLO)
    with load_object(spec, Kernel()) as coll:
        prog = coll.program("hello")
        listing = xlated.disassemble(prog.xlated, notes=xlated_notes(spec, spec.programs[0]))
    seed = _seed_lines("hello_xlated.txt")
    ours = [" ".join(x.split()) for x in listing.splitlines()]
    # map ids and the helper's address suffix are the machine's own
    normalise = [re.sub(r"map\[id:\d+\]", "map[id:N]", re.sub(r"#-?\d+$", "", x)) for x in ours]
    assert normalise == [re.sub(r"map\[id:\d+\]", "map[id:N]", re.sub(r"#-?\d+$", "", x))
                         for x in seed]  # fmt: skip


@pytest.mark.parametrize("cut", [0, 4, 63, 64, 500, 1000])
def test_truncated_objects_are_refused_by_name(cut: int):
    with pytest.raises(ObjectError):
        load_object(HELLO.read_bytes()[:cut], Kernel())


def test_a_failed_load_leaves_nothing_behind():
    spec = ObjectSpec.from_file(HELLO)
    kernel = Kernel()
    with pytest.raises(ObjectError, match="initial data is 5 bytes"):
        load_object(spec, kernel, rodata={"hello.rodata": b"short"})  # wrong size
    assert not kernel.maps and not kernel.progs


def test_pinned_program_outlives_its_collection():
    kernel = Kernel()
    with load_object(HELLO, kernel) as coll:
        coll.pin("hello", "/sys/fs/bpf/hello")
        with pytest.raises(KernelError) as info:
            coll.pin("hello", "/sys/fs/bpf/hello")
        assert info.value.errno == errno.EEXIST
    prog = kernel.obj_get("/sys/fs/bpf/hello")
    assert prog.name == "hello" and prog.id in kernel.progs
    assert sorted(m.name for m in kernel.maps.values()) == ["hello.bss", "hello.rodata"]
    kernel.unpin("/sys/fs/bpf/hello")
    with pytest.raises(KernelError) as info:
        kernel.obj_get("/sys/fs/bpf/hello")
    assert info.value.errno == errno.ENOENT


@pytest.mark.parametrize("ncpus", [1, 3])
def test_a_perf_event_array_without_max_entries_gets_one_slot_per_cpu(ncpus: int):
    """libbpf's map_set_def_max_entries: max_entries 0 means the number of possible CPUs."""
    events = MapSpec("events", MapType.PERF_EVENT_ARRAY, 4, 4, 0, section=".maps")
    ring = MapSpec("rb", MapType.RINGBUF, 0, 0, 5000, section=".maps")  # rounded up to pages
    coll = load_object(ObjectSpec("o", (), (events, ring)), Kernel(ncpus=ncpus))
    try:
        assert coll.maps["events"].max_entries == ncpus
        assert coll.maps["rb"].max_entries == 8192
    finally:
        coll.close()
