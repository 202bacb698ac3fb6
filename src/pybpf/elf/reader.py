"""Read an eBPF relocatable object: the one module that touches pyelftools.

:func:`read_object` validates what libbpf's ``bpf_object__elf_init`` checks
(ELF magic, ELFCLASS64, ET_REL, e_machine EM_BPF — or EM_NONE, which old LLVM
wrote and libbpf still accepts) and, since pybpf runs on little-endian hosts
only, ELFDATA2LSB.  It returns plain frozen values (:mod:`pybpf.elf.model`).

The input is untrusted.  Every offset and size is checked against the file
before it is used, so the work is linear in the file's size whatever the
headers claim, and every foreign exception (pyelftools' ELFError and
ELFParseError, ``struct.error``, IndexError, UnicodeDecodeError...) becomes an
:class:`~pybpf.errors.ObjectError` saying what is wrong and where.
"""

from __future__ import annotations

import bisect
import io
import struct

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_E_MACHINE, ENUM_E_TYPE

from pybpf.elf.model import (
    EM_BPF,
    EM_NONE,
    ET_REL,
    SHT_NOBITS,
    SHT_NULL,
    SHT_REL,
    SHT_STRTAB,
    SHT_SYMTAB,
    ElfObject,
    ElfRelocation,
    ElfRelocations,
    ElfSection,
    ElfSymbol,
)
from pybpf.errors import ObjectError

EHDR_SIZE = 64
_MAGIC = b"\x7fELF"
_SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym
_REL = struct.Struct("<QQ")  # Elf64_Rel
MAX_NAME = 4096  # longer section or symbol names are refused, not scanned

_MACHINES = {v: k for k, v in ENUM_E_MACHINE.items() if isinstance(v, int) and k != "_default_"}
_TYPES = {v: k for k, v in ENUM_E_TYPE.items() if isinstance(v, int) and k != "_default_"}


def read_object(data: bytes | bytearray | memoryview, name: str = "object") -> ElfObject:
    """Parse ``data`` (the bytes of ``name``) into an :class:`ElfObject`; ObjectError if invalid."""
    data = bytes(data)
    _check_ident(data)
    try:
        return _Reader(data, name).read()
    except ObjectError:
        raise
    except (ELFError, ConstructError, struct.error, IndexError, KeyError, ValueError,
            UnicodeDecodeError, OverflowError, EOFError) as err:  # fmt: skip
        raise ObjectError(f"malformed ELF object: {type(err).__name__}: {err}") from None


def _check_ident(data: bytes) -> None:
    if data[:4] != _MAGIC:
        if _MAGIC.startswith(data):
            raise ObjectError(f"truncated: {len(data)} bytes, an ELF header needs {EHDR_SIZE}")
        raise ObjectError(f"not an ELF file (magic {data[:4]!r}, expected {_MAGIC!r})")
    if len(data) < 16:
        raise ObjectError(f"truncated: {len(data)} bytes, an ELF header needs {EHDR_SIZE}")
    if data[4] != 2:
        what = {1: "ELFCLASS32 (32-bit)"}.get(data[4], f"invalid EI_CLASS {data[4]}")
        raise ObjectError(f"{what}, not ELFCLASS64: eBPF objects are 64-bit")
    if data[5] != 1:
        what = {2: "ELFDATA2MSB (big-endian)"}.get(data[5], f"invalid EI_DATA {data[5]}")
        raise ObjectError(f"{what}, not ELFDATA2LSB: only little-endian objects are supported")
    if len(data) < EHDR_SIZE:
        raise ObjectError(f"truncated: {len(data)} bytes, an ELF header needs {EHDR_SIZE}")


def _cstring(table: bytes, nuls: list[int], offset: int, what: str) -> str:
    """The NUL-terminated string at ``offset`` of a string table (``nuls``: its NUL positions)."""
    if offset >= len(table):
        raise ObjectError(f"{what}: name offset {offset} is outside its string table "
                          f"({len(table)} bytes)")  # fmt: skip
    i = bisect.bisect_left(nuls, offset)
    if i == len(nuls):
        raise ObjectError(f"{what}: name at offset {offset} is not NUL-terminated")
    if nuls[i] - offset > MAX_NAME:
        raise ObjectError(f"{what}: name at offset {offset} is longer than {MAX_NAME} bytes")
    raw = table[offset : nuls[i]]
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ObjectError(f"{what}: name {raw!r} is not valid UTF-8") from None


def _nuls(table: bytes) -> list[int]:
    out, i = [], table.find(b"\0")
    while i >= 0:
        out.append(i)
        i = table.find(b"\0", i + 1)
    return out


class _Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name

    def read(self) -> ElfObject:
        elf = ELFFile(io.BytesIO(self.data))
        etype = ENUM_E_TYPE.get(elf["e_type"], elf["e_type"])
        if etype != ET_REL:
            label = _TYPES.get(etype, "unknown type")
            raise ObjectError(f"e_type {label} ({etype}), not ET_REL (1): "
                              "eBPF objects are relocatable files (clang -c)")  # fmt: skip
        machine = elf["e_machine"]
        machine = ENUM_E_MACHINE.get(machine, machine) if isinstance(machine, str) else machine
        if machine not in (EM_BPF, EM_NONE):  # libbpf accepts EM_NONE (old LLVM)
            label = _MACHINES.get(machine, "unknown machine")
            raise ObjectError(f"e_machine {label} ({machine}), not EM_BPF ({EM_BPF})")
        headers = self._section_headers(elf)
        sections = self._sections(elf, headers)
        symtab, symbols = self._symbols(sections)
        relocations = tuple(self._relocations(sec, len(sections))
                            for sec in sections if sec.type == SHT_REL)  # fmt: skip
        return ElfObject(self.name, machine, sections, symbols, relocations, symtab)

    # --- section headers ---------------------------------------------------------
    def _section_headers(self, elf: ELFFile) -> list[tuple]:
        shoff, shentsize = elf["e_shoff"], elf["e_shentsize"]
        if shoff == 0:
            raise ObjectError("no section header table (e_shoff is 0)")
        if shentsize != _SHDR.size:
            raise ObjectError(f"e_shentsize is {shentsize}, Elf64_Shdr is {_SHDR.size} bytes")
        if shoff + _SHDR.size > len(self.data):
            raise ObjectError(f"truncated: section header table at offset {shoff} is past "
                              f"the end of the file ({len(self.data)} bytes)")  # fmt: skip
        count = elf.num_sections()
        end = shoff + count * _SHDR.size
        if count == 0 or end > len(self.data):
            raise ObjectError(f"truncated: {count} section headers at offset {shoff} end at "
                              f"{end}, past the end of the file ({len(self.data)} bytes)")
        return [_SHDR.unpack_from(self.data, shoff + i * _SHDR.size) for i in range(count)]

    def _sections(self, elf: ELFFile, headers: list[tuple]) -> tuple[ElfSection, ...]:
        shstrndx = elf.get_shstrndx()
        if not 0 < shstrndx < len(headers):
            raise ObjectError(f"section name table index {shstrndx} is out of range "
                              f"(the file has {len(headers)} sections)")  # fmt: skip
        raw = [self._bytes(i, h) for i, h in enumerate(headers)]
        if headers[shstrndx][1] != SHT_STRTAB:
            raise ObjectError(f"section name table (section #{shstrndx}) is not SHT_STRTAB")
        table = raw[shstrndx]
        nuls = _nuls(table)
        out = []
        for i, (h, data) in enumerate(zip(headers, raw, strict=True)):
            sh_name, sh_type, flags, _addr, off, size, link, info, align, entsize = h
            name = "" if i == 0 else _cstring(table, nuls, sh_name, f"section header #{i}")
            out.append(ElfSection(i, name, sh_type, flags, data, size if sh_type != SHT_NULL
                                  else 0, link, info, entsize, align, off))  # fmt: skip
        return tuple(out)

    def _bytes(self, index: int, header: tuple) -> bytes:
        sh_type, offset, size = header[1], header[4], header[5]
        if index == 0 or sh_type in (SHT_NULL, SHT_NOBITS):
            return b""
        if offset + size > len(self.data):
            raise ObjectError(f"truncated: section #{index} ({size} bytes at offset {offset}) "
                              f"extends past the end of the file ({len(self.data)} bytes)")
        return self.data[offset : offset + size]

    # --- symbols -----------------------------------------------------------------
    def _symbols(self, sections: tuple[ElfSection, ...]) -> tuple[int, tuple[ElfSymbol, ...]]:
        tables = [s for s in sections if s.type == SHT_SYMTAB]
        if not tables:
            return 0, ()
        if len(tables) > 1:
            raise ObjectError("multiple symbol tables", section=tables[1].name)
        symtab = tables[0]
        if symtab.entsize != _SYM.size or len(symtab.data) % _SYM.size:
            raise ObjectError(f"symbol table entries are {symtab.entsize} bytes and the table "
                              f"{len(symtab.data)}, Elf64_Sym is {_SYM.size}",
                              section=symtab.name)  # fmt: skip
        if not 0 < symtab.link < len(sections) or sections[symtab.link].type != SHT_STRTAB:
            raise ObjectError(f"symbol string table index {symtab.link} is not a string table",
                              section=symtab.name)  # fmt: skip
        strtab = sections[symtab.link].data
        nuls = _nuls(strtab)
        out = []
        for i in range(len(symtab.data) // _SYM.size):
            st_name, info, other, shndx, value, size = _SYM.unpack_from(symtab.data, i * _SYM.size)
            name = _cstring(strtab, nuls, st_name, f"symbol #{i}") if st_name else ""
            out.append(ElfSymbol(i, name, value, size, info & 0xF, info >> 4, other & 0x3,
                                 shndx, st_name))  # fmt: skip
        return symtab.index, tuple(out)

    # --- relocations -------------------------------------------------------------
    @staticmethod
    def _relocations(sec: ElfSection, count: int) -> ElfRelocations:
        if sec.entsize != _REL.size or len(sec.data) % _REL.size:
            raise ObjectError(f"relocation entries are {sec.entsize} bytes and the section "
                              f"{len(sec.data)}, Elf64_Rel is {_REL.size}",
                              section=sec.name)  # fmt: skip
        if not 0 < sec.info < count:
            raise ObjectError(f"relocations apply to section #{sec.info}, which does not exist "
                              f"(the file has {count} sections)", section=sec.name)  # fmt: skip
        entries = tuple(
            ElfRelocation(offset, r_info >> 32, r_info & 0xFFFFFFFF)
            for offset, r_info in _REL.iter_unpack(sec.data)
        )
        return ElfRelocations(sec.index, sec.info, entries)
