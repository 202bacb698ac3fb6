"""What an eBPF relocatable object holds, as plain frozen values.

:func:`pybpf.elf.reader.read_object` turns bytes into an :class:`ElfObject`;
everything above the ELF layer (the object spec, listings) reads these values
and never a parser's types.  Numbers are the ELF specification's (``SHT_*``,
``SHF_*``, ``STT_*``, ``STB_*``) and the BPF psABI's relocation types
(``R_BPF_*``, llvm/BinaryFormat/ELFRelocs/BPF.def), listed once here.
"""

from __future__ import annotations

from dataclasses import dataclass

EM_NONE = 0
EM_BPF = 247
ET_REL = 1

# section types (sh_type)
SHT_NULL = 0
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_RELA = 4
SHT_NOBITS = 8
SHT_REL = 9
SHT_LLVM_ADDRSIG = 0x6FFF4C03

# section flags (sh_flags)
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4

# symbol types and bindings (st_info)
STT_NOTYPE = 0
STT_OBJECT = 1
STT_FUNC = 2
STT_SECTION = 3
STT_FILE = 4
STB_LOCAL = 0
STB_GLOBAL = 1
STB_WEAK = 2
STV_DEFAULT = 0
STV_HIDDEN = 2

# special section indices (st_shndx)
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2

# relocation types of EM_BPF
R_BPF_NONE = 0
R_BPF_64_64 = 1  # ld_imm64 of a map or global data symbol
R_BPF_64_ABS64 = 2  # 64-bit data (DWARF, .BTF.ext in old LLVM)
R_BPF_64_ABS32 = 3  # 32-bit data (DWARF, .BTF)
R_BPF_64_NODYLD32 = 4  # .BTF.ext, never applied by a dynamic loader
R_BPF_64_32 = 10  # bpf-to-bpf call (imm in instructions)

RELOCATION_NAMES = {
    R_BPF_NONE: "R_BPF_NONE",
    R_BPF_64_64: "R_BPF_64_64",
    R_BPF_64_ABS64: "R_BPF_64_ABS64",
    R_BPF_64_ABS32: "R_BPF_64_ABS32",
    R_BPF_64_NODYLD32: "R_BPF_64_NODYLD32",
    R_BPF_64_32: "R_BPF_64_32",
}


@dataclass(frozen=True, slots=True)
class ElfSection:
    """One section header and its bytes (``data`` is empty for SHT_NOBITS; ``size`` is not)."""

    index: int
    name: str
    type: int
    flags: int
    data: bytes
    size: int
    link: int
    info: int
    entsize: int
    addralign: int = 0
    offset: int = 0  # of the data in the file

    @property
    def executable(self) -> bool:
        """SHF_EXECINSTR: the section holds instructions."""
        return bool(self.flags & SHF_EXECINSTR)


@dataclass(frozen=True, slots=True)
class ElfSymbol:
    """One symbol table entry; ``section`` is st_shndx (SHN_* values kept as numbers)."""

    index: int
    name: str
    value: int
    size: int
    type: int
    bind: int
    visibility: int
    section: int
    name_offset: int = 0


@dataclass(frozen=True, slots=True)
class ElfRelocation:
    """One Elf64_Rel entry: where (byte offset in the target section), against what, how."""

    offset: int
    symbol: int
    type: int

    @property
    def type_name(self) -> str:
        """The psABI's name of the relocation type (``R_BPF_64_64``) or its number."""
        return RELOCATION_NAMES.get(self.type, f"relocation type {self.type}")


@dataclass(frozen=True, slots=True)
class ElfRelocations:
    """The entries of one SHT_REL section (``section``) that apply to section ``target``."""

    section: int
    target: int
    entries: tuple[ElfRelocation, ...]


@dataclass(frozen=True, slots=True)
class ElfObject:
    """A parsed ET_REL object for EM_BPF: sections by index, the symbol table, relocations.

    ``sections[0]`` is the null section, so ``sections[i].index == i``.
    ``symtab`` is the index of the SHT_SYMTAB section (0 when there is none).
    """

    name: str
    machine: int
    sections: tuple[ElfSection, ...]
    symbols: tuple[ElfSymbol, ...]
    relocations: tuple[ElfRelocations, ...]
    symtab: int = 0

    def section(self, name: str) -> ElfSection | None:
        """The first section called ``name``, or None."""
        for sec in self.sections:
            if sec.name == name:
                return sec
        return None

    def section_name(self, index: int) -> str:
        """The name of section ``index``, or ``section #N`` when it does not exist."""
        if 0 < index < len(self.sections):
            return self.sections[index].name
        return f"section #{index}"
