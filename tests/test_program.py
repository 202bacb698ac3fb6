"""Loading programs into the simulated kernel: identity, relocation, refusals, hello."""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest

from pybpf.asm import ubpf
from pybpf.errors import KernelError
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps.base import MapAttr, MapFlag, MapType
from pybpf.runtime.progtypes import ProgType
from pybpf.runtime.testrun import test_run as run_test

BSS_FD, RODATA_FD = 3, 4

# hello.bpf.c as clang compiles it, with its two ld_imm64 relocated by the loader
HELLO = f"""
    lddw %r6, map_value({BSS_FD}, 0)
    ldxw %r3, [%r6+0]
    lddw %r1, map_value({RODATA_FD}, 0)
    mov %r2, 15
    call 6
    ldxw %r1, [%r6+0]
    add %r1, 1
    stxw [%r6+0], %r1
    mov %r0, 2
    exit
"""


def hello_kernel(**kw) -> tuple[Kernel, object, object, object]:
    """The maps libbpf creates for hello.bpf.o, and the program assembled by hand."""
    kernel = Kernel(**kw)
    bss = kernel.map_create(MapAttr(MapType.ARRAY, 4, 4, 1, MapFlag.MMAPABLE, "hello.bss"))
    ro_flags = MapFlag.MMAPABLE | MapFlag.RDONLY_PROG
    rodata = kernel.map_create(MapAttr(MapType.ARRAY, 4, 15, 1, ro_flags, "hello.rodata"))
    rodata.update(bytes(4), b"Hello World %d\0")
    rodata.freeze()
    fds = {BSS_FD: bss, RODATA_FD: rodata}
    prog = kernel.prog_load(ubpf.assemble(HELLO), ProgType.XDP, name="hello",
                            license="Dual BSD/GPL", maps=fds)  # fmt: skip
    return kernel, prog, bss, rodata


def test_hello_runs_as_xdp_and_counts():
    kernel, prog, bss, _rodata = hello_kernel()
    packet = bytes(64)
    for _ in range(3):
        result = run_test(prog, data_in=packet)
        assert result.retval == 2  # XDP_PASS
        assert result.data_out == packet
    lines = kernel.trace.read()
    assert [line.split("bpf_trace_printk: ")[1] for line in lines] == [
        "Hello World 0", "Hello World 1", "Hello World 2",
    ]  # fmt: skip
    assert bss.lookup(bytes(4)) == (3).to_bytes(4, "little")


def test_hello_identity_as_the_seed_shows():
    _kernel, prog, bss, rodata = hello_kernel()
    assert prog.tag == "490c48c1179970a8"  # SHA-256, Linux 6.18
    assert prog.tag_with("sha1") == "d35b94b4c0c10efb"  # SHA-1, kernels before 6.18 (the seeds)
    assert Kernel(tag_algorithm="sha1").tag_algorithm == "sha1"
    assert prog.bytes_xlated == 96
    assert prog.map_ids == [bss.id, rodata.id]
    assert prog.gpl_compatible and prog.name == "hello" and prog.id == 1
    assert (bss.map_flags, rodata.map_flags) == (0x400, 0x480)
    assert rodata.frozen


def test_xlated_image_names_maps_by_id():
    _kernel, prog, bss, rodata = hello_kernel()
    lddw = [i for i in prog.xlated if i.code == 0x18]
    assert [(i.src_reg, i.imm, i.imm2) for i in lddw] == [(2, bss.id, 0), (2, rodata.id, 0)]


def test_ids_grow_and_are_not_reused():
    kernel, prog, *_ = hello_kernel()
    again = kernel.prog_load(prog.insns, ProgType.XDP, name="hello", maps={
        BSS_FD: kernel.maps[1], RODATA_FD: kernel.maps[2]})  # fmt: skip
    assert again.id == 2
    kernel.prog_free(prog)
    third = kernel.prog_load([*ubpf.assemble("mov %r0, 1\nexit")], ProgType.XDP)
    assert third.id == 3 and 1 not in kernel.progs


@pytest.mark.parametrize(
    "kwargs, err",
    [
        (dict(name="a_name_longer_than_15"), errno.EINVAL),
        (dict(name="bad-name"), errno.EINVAL),
        (dict(maps={}), errno.EBADF),  # map fd 3 unknown
        (dict(prog_type=999), errno.EINVAL),
    ],
)
def test_load_refusals(kwargs, err):
    kernel, prog, bss, rodata = hello_kernel()
    args = dict(name="hello", maps={BSS_FD: bss, RODATA_FD: rodata}, prog_type=ProgType.XDP)
    args.update(kwargs)
    prog_type = args.pop("prog_type")
    with pytest.raises(KernelError) as info:
        kernel.prog_load(prog.insns, prog_type, **args)
    assert info.value.errno == err


def test_gpl_only_helper_refused_to_non_gpl_program():
    kernel = Kernel()
    insns = ubpf.assemble("stdw [%r10-8], 0\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 8\n"
                          "call 6\nmov %r0, 0\nexit")  # bpf_trace_printk(fmt on the stack, 8)
    with pytest.raises(KernelError) as info:
        kernel.prog_load(insns, ProgType.XDP, license="Proprietary")
    assert info.value.errno == errno.EINVAL and "GPL" in str(info.value)
    kernel.prog_load(insns, ProgType.XDP, license="GPL")


def test_direct_value_access_needs_a_one_entry_array():
    kernel = Kernel()
    big = kernel.map_create(MapAttr(MapType.ARRAY, 4, 8, 4, 0, "big"))
    insns = ubpf.assemble("lddw %r1, map_value(3, 0)\nmov %r0, 0\nexit")
    with pytest.raises(KernelError):
        kernel.prog_load(insns, ProgType.XDP, maps={3: big})


def test_unknown_helper_refused_at_load():
    kernel = Kernel()
    with pytest.raises(KernelError) as info:
        kernel.prog_load(ubpf.assemble("call 9999\nexit"), ProgType.XDP)
    assert info.value.errno == errno.EINVAL and "9999" in str(info.value)


TAIL_CHAIN = """
        mov %r6, %r1
        ldxw %r2, [%r6+0]          # xdp_md->data
        ldxw %r3, [%r6+4]          # xdp_md->data_end
        mov %r4, %r2
        add %r4, 4
        jgt %r4, %r3, out
        ldxw %r5, [%r2]
        add %r5, 1
        stxw [%r2], %r5
        mov %r1, %r6
        lddw %r2, map_fd(3)
        mov %r3, {next}
        call 12                    # bpf_tail_call: returns only when it fails
    out:
        mov %r0, 2
        exit
"""


def _tail_chain_kernel(length: int):
    """Programs 0..length-1: each adds 1 to a counter in the packet and tail-calls the next."""
    kernel = Kernel()
    table = kernel.map_create(MapAttr(MapType.PROG_ARRAY, 4, 4, 64, 0, "jmp_table"))
    src = TAIL_CHAIN
    progs = [kernel.prog_load(ubpf.assemble(src.format(next=i + 1)), ProgType.XDP,
                              maps={3: table}) for i in range(length)]  # fmt: skip
    for i, prog in enumerate(progs):
        table.set(i, prog)
    return progs


def test_tail_calls_chain_and_stop_after_33():
    progs = _tail_chain_kernel(40)
    result = run_test(progs[0], data_in=bytes(64))
    assert result.retval == 2
    # the first program and 33 tail calls ran (MAX_TAIL_CALL_CNT), then the call fell through
    assert int.from_bytes(result.data_out[:4], "little") == 1 + 33


def test_tail_call_to_an_empty_slot_falls_through():
    progs = _tail_chain_kernel(3)
    result = run_test(progs[0], data_in=bytes(64))
    assert int.from_bytes(result.data_out[:4], "little") == 3


def kernel_tail_chain(length: int) -> tuple[int, bytes]:
    """(retval, data_out) of the same chain in the live kernel (a probe for kernel_facts)."""
    from pybpf.kernel import linux

    with linux.map_create(MapType.PROG_ARRAY, 4, 4, 64) as table:
        progs = []
        try:
            for i in range(length):
                insns = [replace(x, imm=table.fd) if x.code == 0x18 and x.src_reg == 1 else x
                         for x in ubpf.assemble(TAIL_CHAIN.format(next=i + 1))]  # fmt: skip
                progs.append(linux.prog_load(insns, linux.XDP))
            for i, prog in enumerate(progs):
                table.update(i.to_bytes(4, "little"), prog.fd.to_bytes(4, "little"))
            theirs = progs[0].test_run(bytes(64))
        finally:
            for prog in progs:
                prog.close()
    return theirs.retval, theirs.data_out


@pytest.mark.parametrize("length", [3, 40])
def test_tail_call_chain_agrees_with_the_kernel(kernel_facts, length: int):
    ours = run_test(_tail_chain_kernel(length)[0], data_in=bytes(64))
    kernel_facts.check(f"tail_chain/{length}", (ours.retval, ours.data_out),
                       lambda: kernel_tail_chain(length))
