"""CO-RE relocations against the bundled target BTF, vmlinux and libbpf's own log."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

import real_bpftool
from pybpf.btf import Btf, BtfExt, BtfType, EnumValue, Member, Param, VarSecinfo, load_vmlinux
from pybpf.btf import types as btf_types
from pybpf.btf.core import (
    FIELD_BYTE_OFFSET,
    FIELD_BYTE_SIZE,
    FIELD_EXISTS,
    POISON_IMM,
    CoreResult,
    apply_to_insn,
    essential_name,
    patch_insn,
    resolve_core,
)
from pybpf.btf.ext import CoreRelo
from pybpf.btf.types import VOID
from pybpf.errors import CoreError
from pybpf.testing import kernel_facts as kf

FIX = Path(__file__).parent / "fixtures" / "btf"


def _load(name: str) -> tuple[Btf, BtfExt | None]:
    btf = Btf.parse((FIX / f"{name}.btf").read_bytes())
    ext_path = FIX / f"{name}.btf.ext"
    ext = BtfExt.parse(ext_path.read_bytes(), btf) if ext_path.exists() else None
    return btf, ext


@pytest.fixture(scope="module")
def local():
    return _load("core")


@pytest.fixture(scope="module")
def target():
    return _load("target")[0]


def _relos(ext: BtfExt) -> list[CoreRelo]:
    return [r for sec in ext.core_relos.values() for r in sec]


def _by_insn(ext: BtfExt) -> dict[int, CoreRelo]:
    return {r.insn_index: r for r in _relos(ext)}


def test_essential_names():
    assert essential_name("task_struct___old") == "task_struct"
    assert essential_name("task_struct___2") == "task_struct"
    assert essential_name("a___b___c") == "a___b"
    assert essential_name("____fmt") == "____fmt"
    assert essential_name("x____y") == "x____y"  # four underscores: no flavour
    assert essential_name("task_struct") == "task_struct"


def test_relocations_parsed(local):
    _btf, ext = local
    relos = _relos(ext)
    assert len(relos) == 32
    kinds = {r.kind for r in relos}
    assert kinds == set(range(12))  # clang 14 emits every kind but TYPE_MATCHES


# (insn index, expected value against target.btf, poisoned)
TARGET_EXPECTED = {
    2: (40, False),  # t->pid
    15: (80, False),  # t->parent
    22: (44, False),  # parent->tgid
    29: (1, False),  # field_exists tgid
    31: (16, False),  # field_size comm
    33: (0, False),  # field_exists task_struct___old->missing_field
    35: (1, False),  # type_exists task_struct___old (matches task_struct)
    37: (0, False),  # type_exists not_in_target
    45: (48, False),  # in_iowait byte offset (bitfield: u32 load at 48)
    50: (4, False),
    53: (62, False),  # lshift: 64 - (385 + 1 - 384)
    54: (0, False),
    56: (63, False),
    64: (48, False),  # exit_code: bits 386..394
    69: (4, False),
    72: (53, False),
    73: (1, False),
    75: (55, False),
    81: (104, False),  # type size
    83: (2, False),  # target type id
    86: (5, False),  # local type id
    89: (0, False),  # enumval_exists TASK_GONE
    92: (2048, False),  # enumval_value TASK_NEW
    95: (63, False),  # comm[3]
    97: (56, False),  # anon_b through the anonymous struct
    108: (96, False),  # small
    117: (40, False),  # task_struct___old->pid
    129: (0, False),
    131: (0, True),  # missing_field read: poisoned
    143: (120, False),  # trailing[5] (flexible array)
}


def test_core_against_bundled_target(local, target):
    btf, ext = local
    relos = _by_insn(ext)
    for insn, (value, poison) in TARGET_EXPECTED.items():
        r = resolve_core(btf, relos[insn], target)
        assert (r.value, r.poison) == (value, poison), (insn, relos[insn], r)
    exists = resolve_core(btf, relos[33], target)
    assert exists.exists is False and exists.value == 0 and not exists.poison
    assert resolve_core(btf, relos[2], target).target_type_id == target.find("task_struct")


def test_core_specs_are_formatted_as_libbpf(local, target):
    btf, ext = local
    r = resolve_core(btf, _by_insn(ext)[95], target)
    assert r.local_spec == "<byte_off> [5] struct task_struct.comm[3] (0:2:3 @ offset 11)"
    assert r.target_spec.endswith(".comm[3] (0:11:3 @ offset 63)")


def test_patching_rules():
    res = CoreResult(value=1264, exists=True, orig_value=0, validate=True)
    # ALU imm: r1 = 0 -> r1 = 1264
    assert apply_to_insn(0xB7, 1, 0, 0, 0, 0, res) == (0, 1264, 0)
    # LDX off
    assert apply_to_insn(0x61, 1, 6, 0, 0, 0, res) == (1264, 0, 0)
    # ld_imm64: low and high halves
    big = CoreResult(value=0x1_0000_0005, exists=True, orig_value=5, validate=True)
    assert apply_to_insn(0x18, 1, 0, 0, 5, 0, big) == (0, 5, 1)
    # validation: the instruction must hold the local value
    with pytest.raises(CoreError):
        apply_to_insn(0xB7, 1, 0, 0, 7, 0, res)
    # register-source ALU cannot be relocated
    with pytest.raises(CoreError):
        apply_to_insn(0xBF, 1, 2, 0, 0, 0, res)
    # poisoning: call 0xbad2310; apply_to_insn refuses (opcode changes)
    poison = CoreResult(value=0, exists=False, poison=True)
    p = patch_insn(0x61, 1, 6, 8, 0, 0, poison)
    assert (p.code, p.dst, p.src, p.off, p.imm) == (0x85, 0, 0, 0, POISON_IMM)
    assert POISON_IMM == 195896080
    with pytest.raises(CoreError):
        apply_to_insn(0x61, 1, 6, 8, 0, 0, poison)
    # memory size adjustment of an unsigned load: u32 -> u16
    shrink = CoreResult(value=96, exists=True, orig_value=48, orig_size=4, new_size=2)
    p = patch_insn(0x61, 1, 6, 48, 0, 0, shrink)
    assert (p.code, p.off) == (0x69, 96)
    # a signed field whose size changed poisons the load
    bad = CoreResult(value=56, exists=True, orig_value=44, orig_size=4, new_size=2,
                     fail_memsz_adjust=True)  # fmt: skip
    assert patch_insn(0x61, 1, 6, 44, 0, 0, bad).code == 0x85


def test_existence_relo_never_poisons(local):
    btf, ext = local
    empty = Btf.parse(_minimal_btf())
    for r in _relos(ext):
        res = resolve_core(btf, r, empty)
        if r.kind in (FIELD_EXISTS, 8, 10):
            assert res.value == 0 and not res.poison
        elif r.kind in (FIELD_BYTE_OFFSET, FIELD_BYTE_SIZE, 3, 4, 5, 11):
            assert res.poison
        elif r.kind == 6:
            assert res.value == r.type_id


def _minimal_btf() -> bytes:
    import struct

    strings = b"\0int\0"
    types = struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", (1 << 24) | 32)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def test_bad_access_string_is_core_error(local, target):
    btf, ext = local
    r = _by_insn(ext)[2]
    with pytest.raises(CoreError):
        resolve_core(btf, r._replace(access="0:99"), target)
    with pytest.raises(CoreError):
        resolve_core(btf, r._replace(access="x"), target)
    with pytest.raises(CoreError):
        resolve_core(btf, r._replace(access=""), target)


# --- vmlinux ----------------------------------------------------------------------

VM = load_vmlinux()
needs_vmlinux = pytest.mark.skipif(VM is None, reason="no /sys/kernel/btf/vmlinux")


@needs_vmlinux
def test_task_struct_pid_against_vmlinux(local):
    btf, ext = local
    relos = _by_insn(ext)
    tid = VM.find("task_struct", "struct")
    pid = next(m for m in VM.types[tid].members if m.name == "pid")
    off = resolve_core(btf, relos[2], VM)
    assert off.exists and off.value == pid.offset // 8
    assert resolve_core(btf, relos[29], VM).value == 1  # tgid exists
    assert resolve_core(btf, relos[81], VM).value == VM.size_of(tid)
    assert resolve_core(btf, relos[83], VM).value == tid


# --- libbpf, through bpftool ------------------------------------------------------
# What libbpf (in bpftool) computed for core.bpf.o's relocations against the kernel's BTF, and
# the types of that BTF the relocations read, recorded in kernel_facts/core.json with the
# bpftool that computed them: pybpf, resolving against the recorded types, must compute what
# libbpf did.  Where bpftool runs (root, bpffs, vmlinux BTF), it is asked too: drift, not failure.


def _bpftool_usable() -> str | None:
    if shutil.which("bpftool") is None:
        return "bpftool is not installed"
    if os.geteuid() != 0 or not Path("/sys/fs/bpf").is_dir():
        return "needs root and a mounted bpffs"
    if VM is None:
        return "no /sys/kernel/btf/vmlinux"
    return None


def libbpf_relocations() -> dict[str, list]:
    """relo index -> [new value, poisoned] from ``bpftool -d prog load``'s libbpf log."""
    pin = f"/sys/fs/bpf/pybpf_core_test_{os.getpid()}"
    try:
        proc = subprocess.run(["bpftool", "-d", "prog", "load", str(FIX / "core.bpf.o"), pin],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    finally:
        if os.path.exists(pin):
            os.unlink(pin)
    out: dict[str, list] = {}
    for line in proc.stderr.splitlines():
        m = re.search(r"relo #(\d+): patched insn #\d+ \(\S+\) (?:imm|off|imm64) \d+ -> (\d+)",
                      line)  # fmt: skip
        if m:
            out[m.group(1)] = [int(m.group(2)), False]
        m = re.search(r"relo #(\d+): substituting insn", line)
        if m:
            out[m.group(1)] = [0, True]
    return out


class _Reads(Sequence):
    """A BTF's types that note the ids read (iterating, as the name index does, reads none)."""

    def __init__(self, types: Sequence[BtfType]) -> None:
        self.types, self.ids = types, {0}

    def __len__(self) -> int:
        return len(self.types)

    def __getitem__(self, type_id):
        self.ids.add(type_id)
        return self.types[type_id]

    def __iter__(self):
        return iter(self.types)


def vmlinux_types(local: tuple[Btf, BtfExt]) -> dict:
    """The running kernel's BTF types that resolving core.bpf.o's relocations reads, by id."""
    btf, ext = local
    reads = _Reads(VM.types)
    for r in _relos(ext):
        resolve_core(btf, r, Btf(reads, VM._strings))
    return {"count": len(VM.types), "types": {i: _type_doc(VM.types[i]) for i in sorted(reads.ids)}}


_KINDS = {c.kind: c for c in vars(btf_types).values()
          if isinstance(c, type) and issubclass(c, BtfType)}  # fmt: skip
_ROWS = {"members": Member, "values": EnumValue, "params": Param, "vars": VarSecinfo}


def _type_doc(t: BtfType) -> dict:
    return {"kind": t.kind, **{f.name: getattr(t, f.name) for f in dataclasses.fields(t)}}


def _btf_type(doc: dict) -> BtfType:
    fields = {k: tuple(_ROWS[k](*row) for row in v) if k in _ROWS else v
              for k, v in doc.items() if k != "kind"}  # fmt: skip
    return _KINDS[doc["kind"]](**fields)


class _Recorded(Sequence):
    """The recorded types at their ids; reading any other id is an error (never a guess)."""

    def __init__(self, doc: dict) -> None:
        self.count = doc["count"]
        self.types = {int(i): _btf_type(t) for i, t in doc["types"].items()}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, type_id):
        if type_id not in self.types:
            raise kf.FactError(f"vmlinux type [{type_id}] was not recorded: re-record "
                               "kernel_facts/core.json with --record-kernel")  # fmt: skip
        return self.types[type_id]

    def __iter__(self):
        return (self.types.get(i, VOID) for i in range(self.count))  # gaps have no name


def test_core_agrees_with_libbpf_on_vmlinux(local, kernel_facts):
    facts = kernel_facts.offline_when(_bpftool_usable())
    facts.fact("bpftool version", real_bpftool.version)  # another libbpf: drift, not failure
    recorded = facts.fact("vmlinux types", functools.partial(vmlinux_types, local))
    vmlinux = Btf(_Recorded(recorded), Btf.parse(_minimal_btf())._strings)  # types hold names
    expected = facts.fact("libbpf relocations", libbpf_relocations)
    btf, ext = local
    relos = _relos(ext)
    assert len(expected) == len(relos)
    for i, r in enumerate(relos):
        res = resolve_core(btf, r, vmlinux)
        value, poison = expected[str(i)]
        assert res.poison == poison, (i, r)
        if not poison:
            assert res.value == value, (i, r, res)


@pytest.mark.parametrize("prog", ["single_field_roundtrip", "multibyte_field_roundtrip"])
def test_a_failed_relocation_is_named_as_libbpf_names_it(prog):
    """The kernel's verifier_bitfield_write selftests, loaded without their target BTF:
    the poisoned call is refused, and the loader (libbpf's fixup_verifier_log) names the
    relocation instead, in the refusal and in the log; the first line is the kernel's
    recorded error line."""
    from pybpf.errors import VerifierError
    from pybpf.loader import load_object
    from pybpf.runtime.kernel import Kernel
    from pybpf.testing import selftests as st

    path = st.OBJECTS / "verifier_bitfield_write.bpf.o"
    facts = kf.FactFile.load(st.FACTS)
    recorded = facts.get(f"verifier_bitfield_write/{prog}")[0]["error"]
    with pytest.raises(VerifierError) as info:
        load_object(path, Kernel(verify=True), autoload={prog}, log_level=1)
    err = info.value
    first, second = err.reason.split("\n")
    assert first == recorded == f"{err.pc}: <invalid CO-RE relocation>"
    assert re.fullmatch(r"failed to resolve CO-RE relocation <(rshift|lshift)_u64> \[\d+\] "
                        r"struct core_reloc_bitfields\.\w+ \(0:\d+ @ offset [\d.]+\)", second)
    assert err.reason in err.log and "unknown#195896080\n" not in err.log.split(first)[1]
