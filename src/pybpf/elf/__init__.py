"""ELF relocatable objects for eBPF: read bytes into plain values.

Only :mod:`pybpf.elf.reader` touches pyelftools; the rest of pybpf sees
:class:`ElfObject` and its parts.
"""

from pybpf.elf.model import (
    ElfObject,
    ElfRelocation,
    ElfRelocations,
    ElfSection,
    ElfSymbol,
)
from pybpf.elf.reader import read_object

__all__ = ["ElfObject", "ElfRelocation", "ElfRelocations", "ElfSection", "ElfSymbol",
           "read_object"]  # fmt: skip
