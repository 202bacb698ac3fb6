"""asm -> bytes -> disasm -> asm is the identity, for every conformance and data program."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DATA, conformance_files
from pybpf.asm import llvm, ubpf
from pybpf.isa import decode, encode
from pybpf.testing.datafile import load

PROGRAMS = conformance_files("tests") + sorted(DATA.glob("*.data"))
DIALECTS = {"ubpf": ubpf, "llvm": llvm}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_roundtrip(path: Path, dialect: str):
    module = DIALECTS[dialect]
    code = load(path).program
    insns = decode(code)
    text = module.disassemble(insns)
    again = module.assemble(text)
    assert encode(again) == code
    assert module.disassemble(again) == text
