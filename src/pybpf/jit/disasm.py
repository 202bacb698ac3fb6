"""Native code listings: the functions of a compiled object, disassembled.

This is the only module that imports capstone.  It reads the relocatable
ELF64 object :mod:`pybpf.jit.native` keeps for a compiled program
(:func:`functions`: every defined function symbol with its bytes), decodes
x86-64 machine code in AT&T syntax as LLVM's disassembler prints it for
``bpftool prog dump jited`` (:func:`disassemble`), and recovers what it can
of the bpf pc each native instruction belongs to (:func:`anchors`).

Contracts: malformed object bytes raise :class:`~pybpf.errors.JitError`,
never IndexError or struct.error; bytes capstone cannot decode become a
one-byte ``(bad)`` line and decoding continues, so a listing always covers
the whole function.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pybpf.errors import JitError
from pybpf.jit.abi import Callout, split_callout

if TYPE_CHECKING:
    from capstone import Cs

_ELF_MAGIC = b"\x7fELF"
_SHT_SYMTAB = 2
_STT_FUNC = 2
_SHN_LORESERVE = 0xFF00


@dataclass(frozen=True)
class Function:
    """A defined function of an object file: its name, offset in its section, bytes."""

    name: str
    section: str
    offset: int
    code: bytes


@dataclass(frozen=True)
class Line:
    """One decoded instruction: offset from the function start, size, text, bytes.

    ``opcodes`` holds the instruction's bytes when the listing asked for them
    (empty otherwise); ``operands`` is the operand text as the disassembler
    prints it (``""`` when there is none).
    """

    offset: int
    size: int
    mnemonic: str
    operands: str
    opcodes: bytes = b""
    immediates: tuple[int, ...] = ()

    @property
    def text(self) -> str:
        """The instruction as LLVM's disassembler prints it: mnemonic, tab, operands."""
        return f"{self.mnemonic}\t{self.operands}" if self.operands else self.mnemonic


# --- the object file ---------------------------------------------------------------------
def _unpack(fmt: str, data: bytes, offset: int) -> tuple:
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise JitError(f"object file truncated at offset {offset:#x}") from None


def _cstring(table: bytes, offset: int) -> str:
    if not 0 <= offset < len(table):
        raise JitError(f"object file: string offset {offset:#x} outside its table")
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else len(table)].decode("utf-8", "replace")


def _sections(data: bytes) -> list[tuple[str, int, int, int, int, int]]:
    """(name, type, offset, size, link, entsize) of every section."""
    if data[:4] != _ELF_MAGIC or len(data) < 64 or data[4] != 2 or data[5] != 1:
        raise JitError("not a little-endian ELF64 object file")
    shoff, = _unpack("<Q", data, 0x28)
    shentsize, shnum, shstrndx = _unpack("<HHH", data, 0x3A)
    if shentsize < 64 or shnum > 4096:
        raise JitError("object file: implausible section header table")
    raw = [_unpack("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    for _, _, _, _, off, size, *_ in raw:
        if off + size > len(data) and size:
            raise JitError("object file: a section lies outside the file")
    if shstrndx >= shnum:
        raise JitError("object file: no section name table")
    names = data[raw[shstrndx][4] : raw[shstrndx][4] + raw[shstrndx][5]]
    return [(_cstring(names, h[0]), h[1], h[4], h[5], h[6], h[9]) for h in raw]


def code_size(object_code: bytes | None) -> int:
    """The bytes of code of every function of ``object_code`` (0 for none)."""
    return sum(len(f.code) for f in functions(object_code)) if object_code else 0


def functions(object_code: bytes) -> list[Function]:
    """Every defined function (STT_FUNC with a size) of ``object_code``, by section offset.

    Raises JitError when the bytes are not an ELF64 object this module can read.
    """
    data = bytes(object_code)
    sections = _sections(data)
    out = []
    for _, kind, off, size, link, entsize in sections:
        if kind != _SHT_SYMTAB:
            continue
        if link >= len(sections) or entsize < 24:
            raise JitError("object file: malformed symbol table")
        strtab = data[sections[link][2] : sections[link][2] + sections[link][3]]
        for at in range(off, off + size - entsize + 1, entsize):
            name, info, _, shndx, value, sym_size = _unpack("<IBBHQQ", data, at)
            if info & 0xF != _STT_FUNC or not sym_size or not 0 < shndx < _SHN_LORESERVE:
                continue
            if shndx >= len(sections):
                raise JitError("object file: a symbol names a missing section")
            sec_name, _, sec_off, sec_size, _, _ = sections[shndx]
            if value + sym_size > sec_size:
                raise JitError("object file: a function lies outside its section")
            code = data[sec_off + value : sec_off + value + sym_size]
            out.append(Function(_cstring(strtab, name), sec_name, value, code))
    return sorted(out, key=lambda f: (f.section, f.offset))


# --- decoding ------------------------------------------------------------------------------
_ENGINES: list[Cs] = []


def _capstone() -> Cs:
    if not _ENGINES:
        from capstone import CS_ARCH_X86, CS_MODE_64, CS_OPT_SYNTAX_ATT, Cs  # only to decode

        md = Cs(CS_ARCH_X86, CS_MODE_64)
        md.syntax = CS_OPT_SYNTAX_ATT
        md.detail = True
        _ENGINES.append(md)
    return _ENGINES[0]


def _immediates(insn) -> tuple[int, ...]:
    try:
        return tuple(op.imm for op in insn.operands if op.type == 2)  # X86_OP_IMM
    except Exception:  # capstone without details for this instruction
        return ()


def disassemble(code: bytes, address: int = 0, *, opcodes: bool = False) -> list[Line]:
    """Decode all of ``code`` (x86-64, AT&T syntax), as if it were mapped at ``address``.

    Offsets in the result are relative to the start of ``code``; branch
    targets in the operand text are absolute (``address`` + offset).
    """
    code = bytes(code)
    md = _capstone()
    lines: list[Line] = []
    pos = 0
    while pos < len(code):
        for insn in md.disasm(code[pos:], address + pos):
            size = insn.size
            raw = code[pos : pos + size] if opcodes else b""
            lines.append(Line(pos, size, insn.mnemonic, insn.op_str, raw, _immediates(insn)))
            pos += size
        if pos < len(code):  # capstone stops at bytes it cannot decode
            lines.append(Line(pos, 1, "(bad)", "", code[pos : pos + 1] if opcodes else b""))
            pos += 1
    return lines


def anchors(lines: list[Line], count: int) -> dict[int, int]:
    """Native offset -> bpf pc for the instructions that name a pc.

    Generated code passes every trampoline call an id holding the bpf pc it
    serves (:func:`pybpf.jit.ir.callout_id`), loaded as a 64-bit immediate;
    those loads tie a native offset to a pc.  ``count`` is the number of bpf
    instruction slots (ids naming a pc beyond it are not callouts).  Only
    instructions with a callout are anchored: a partial map.
    """
    kinds = {int(k) for k in Callout}
    out: dict[int, int] = {}
    for line in lines:
        for imm in line.immediates:
            value = imm & ((1 << 64) - 1)
            kind, pc, _ = split_callout(value)
            if kind in kinds and pc < count:
                out[line.offset] = pc
    return out


def source_offsets(lines: list[Line], count: int, line_pcs: list[int]) -> dict[int, int]:
    """Where each source line goes: native offset -> the bpf pc of its line info record.

    The record at pc 0 (when there is one) goes before the first
    instruction; every other record goes before the first native
    instruction anchored (:func:`anchors`) to a pc it covers (the records
    are ``line_pcs``, each covering the pcs up to the next one).  Each
    record appears at most once, in native order, as bpftool prints them.
    """
    pcs = sorted(set(line_pcs))
    out: dict[int, int] = {}
    seen: set[int] = set()
    if pcs and pcs[0] == 0 and lines:
        out[lines[0].offset] = 0
        seen.add(0)
    for offset, pc in sorted(anchors(lines, count).items()):
        record = max((p for p in pcs if p <= pc), default=None)
        if record is None or record in seen:
            continue
        seen.add(record)
        out[offset] = record
    return out


__all__ = ["Function", "Line", "anchors", "disassemble", "functions", "source_offsets"]
