"""The kernel struct layouts the xlated view needs, read from vmlinux BTF.

Usage (from a checkout, on the kernel pybpf models)::

    python -m pybpf.testing.kernel_layouts           # compare the snapshot with this kernel
    python -m pybpf.testing.kernel_layouts --write   # rewrite the snapshot from this kernel

``convert_ctx_accesses`` and the map ``gen_lookup`` callbacks emit offsets of kernel
structs (``struct xdp_buff``, ``struct sk_buff``, ``struct bpf_array``...), which only
the kernel's build knows.  :data:`pybpf.uapi.klayout.FIELDS` names the members wanted;
this module reads their byte offsets and sizes from the running kernel's BTF
(/sys/kernel/btf/vmlinux) and writes them, stamped with ``uname -r``, to the snapshot
``pybpf/uapi/kernel_layouts.json`` that :mod:`pybpf.uapi.klayout` serves.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from pybpf.btf.model import Btf
from pybpf.btf.types import Member
from pybpf.btf.vmlinux import load_vmlinux
from pybpf.errors import BtfError
from pybpf.uapi import klayout


def _find_member(btf: Btf, struct_id: int, name: str) -> tuple[int, int, Member] | None:
    """``name`` in a struct or union, looking inside anonymous members: (bit offset,
    type id of the member, the member)."""
    t = btf.resolved(struct_id)
    for m in getattr(t, "members", ()):
        if m.name == name:
            return m.offset, m.type, m
        if not m.name:
            inner = _find_member(btf, m.type, name)
            if inner is not None:
                return m.offset + inner[0], inner[1], inner[2]
    return None


def field(btf: Btf, spec: str) -> tuple[int, int]:
    """(byte offset, byte size) of ``spec``, ``struct.member[.member...]``.

    A member that is a zero-length array (the kernel's ``__pkt_type_offset`` markers)
    has size 0.  BtfError when the struct or a member is missing.
    """
    struct, *path = spec.split(".")
    tid = btf.find(struct, "struct") or btf.find(struct, "union")
    if tid is None:
        raise BtfError(f"vmlinux BTF has no struct {struct}")
    bits, size = 0, 0
    for name in path:
        found = _find_member(btf, tid, name)
        if found is None:
            raise BtfError(f"vmlinux BTF: {spec}: no member {name}")
        off, tid, member = found
        if member.bitfield_size:
            raise BtfError(f"vmlinux BTF: {spec} is a bitfield")
        bits += off
        size = btf.size_of(tid)
    if bits % 8:
        raise BtfError(f"vmlinux BTF: {spec} is not byte aligned")
    return bits // 8, size


def bitfield(btf: Btf, spec: str) -> tuple[int, int]:
    """(bit offset, bit size) of the bitfield ``struct.member``."""
    struct, name = spec.split(".")
    tid = btf.find(struct, "struct")
    found = _find_member(btf, tid, name) if tid is not None else None
    if found is None or not found[2].bitfield_size:
        raise BtfError(f"vmlinux BTF: {spec} is not a bitfield")
    return found[0], found[2].bitfield_size


def read(btf: Btf) -> dict[str, list[int]]:
    """Every wanted field's [offset, size]."""
    return {spec: list(field(btf, spec)) for spec in klayout.FIELDS}


#: small programs whose xlated image holds each value: (text, program type, instruction)
_PROBES = {"cpu_number": ("call 8\nexit", 1, 0), "jiffies": ("call 118\nexit", 2, 0),
           "min_napi_id": ("r0 = *(u32 *)(r1 + 84)\nr0 = 1\nexit", 8, 1)}


def addresses() -> dict[str, int]:
    """The data addresses the running kernel inlines (empty without bpf(2))."""
    from pybpf.asm import llvm
    from pybpf.errors import KernelError
    from pybpf.isa import decode
    from pybpf.kernel import linux

    if linux.available() is not None:
        return {}
    out = {}
    for name, (text, prog_type, index) in _PROBES.items():
        try:
            with linux.prog_load(llvm.assemble(text), prog_type=prog_type,
                                 license="GPL") as prog:  # fmt: skip
                insn = decode(prog.xlated(), validate=False)[index]
        except KernelError:
            continue
        out[name] = insn.imm64 if insn.code == 0x18 else insn.imm & 0xFFFFFFFF
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pybpf.testing.kernel_layouts",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the snapshot")
    args = parser.parse_args(argv)
    btf = load_vmlinux()
    if btf is None:
        print("kernel_layouts: this kernel has no BTF to read", file=sys.stderr)
        return 2
    try:
        live = read(btf)
    except BtfError as err:
        print(f"kernel_layouts: {err}", file=sys.stderr)
        return 2
    release = os.uname().release
    if args.write:
        rows = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(live.items()))
        where = json.dumps(addresses(), sort_keys=True)
        bits = json.dumps({k: list(bitfield(btf, k)) for k in klayout.BITFIELDS}, sort_keys=True)
        text = (f'{{"release": {json.dumps(release)},\n "addresses": {where},\n'
                f' "bitfields": {bits},\n "fields": {{\n{rows}\n }}}}\n')
        klayout.SNAPSHOT.write_text(text, encoding="utf-8")
        print(f"wrote {len(live)} fields of Linux {release}")
        return 0
    snap = klayout.snapshot()
    differ: dict[str, tuple] = {k: (snap.fields.get(k), v) for k, v in live.items()
                                if snap.fields.get(k) != tuple(v)}  # fmt: skip
    for k, new in addresses().items():
        if snap.address(k) != new:
            differ[k] = (snap.address(k), new)
    for k, (old, new) in sorted(differ.items()):
        print(f"{k}: snapshot {old} (Linux {snap.release}), live {tuple(new)} (Linux {release})")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
