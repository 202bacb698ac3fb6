"""Test cases in the ``.data`` format of bpf_conformance and uBPF, and their runner.

A file is a sequence of sections, each opened by a ``-- name`` line::

    # comment
    -- asm            uBPF assembly (pybpf.asm.ubpf)
    -- raw            instructions as 64-bit words (0x...) or as hex bytes
    -- mem            input memory as hex bytes (r1 = its address, r2 = its length)
    -- result         expected r0 (0x hex or decimal), all 64 bits compared
    -- error          expected error text (a substring of the engine's message)
    -- c / -- no register offset    ignored (documentation in the suite)

When both ``asm`` and ``raw`` are present, ``raw`` is the program (as in
bpf_conformance) and the assembly must encode to the same bytes.  A file that
cannot be parsed or assembled is an ERROR, never a PASS; an expected error
matches only an error raised while running, never a broken test file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from pybpf.asm import ubpf
from pybpf.errors import PybpfError
from pybpf.isa import Instruction, decode, encode

_SECTIONS = ("asm", "raw", "mem", "result", "error", "c", "no register offset")


class DataFileError(PybpfError):
    """A ``.data`` file that is not a valid test case; ``line`` is 1-based."""

    def __init__(self, message: str, *, path: str, line: int = 0) -> None:
        self.path, self.line = path, line
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


@dataclass(frozen=True)
class Case:
    """One parsed test case."""

    name: str
    program: bytes
    memory: bytes
    result: int | None
    error: str | None
    asm: str | None


def parse(text: str, name: str = "<data>") -> Case:
    """Parse a ``.data`` file; raises DataFileError (or AsmError/IsaError inside one)."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if line.startswith("--"):
            current = line[2:].strip()
            if current not in _SECTIONS:
                raise DataFileError(f"unknown directive {line.strip()!r}", path=name, line=number)
            if current in sections:
                raise DataFileError(f"section {current!r} appears twice", path=name, line=number)
            sections[current] = []
            continue
        if current is None:
            if line.strip():
                raise DataFileError("text before the first section", path=name, line=number)
            continue
        sections[current].append(line)
    asm = "\n".join(sections["asm"]) + "\n" if "asm" in sections else None
    if "raw" in sections:
        program = _raw(" ".join(sections["raw"]), name)
        if asm is not None and _assemble(asm, name) != program:
            raise DataFileError("-- asm and -- raw disagree", path=name)
    elif asm is not None:
        program = _assemble(asm, name)
    else:
        raise DataFileError("no -- asm or -- raw section", path=name)
    if not program:
        raise DataFileError("the program has no instructions", path=name)
    memory = _hex_bytes(" ".join(sections.get("mem", [])), name)
    result_text = " ".join(sections.get("result", [])).strip()
    error_text = None  # an empty -- error section expects any error
    if "error" in sections:
        error_text = " ".join(s.strip() for s in sections["error"] if s.strip())
    if not result_text and error_text is None:
        raise DataFileError("no -- result or -- error section", path=name)
    result = None
    if result_text:
        try:
            result = int(result_text, 16 if result_text.lower().startswith("0x") else 10)
        except ValueError:
            raise DataFileError(f"bad result {result_text!r}", path=name) from None
    return Case(name, program, memory, result, error_text, asm)


def load(path: str | Path) -> Case:
    """Parse the ``.data`` file at ``path``."""
    path = Path(path)
    return parse(path.read_text(encoding="utf-8", errors="replace"), path.name)


def _assemble(asm: str, name: str) -> bytes:
    try:
        return encode(ubpf.assemble(asm))
    except PybpfError as err:
        raise DataFileError(f"assembly failed: {err}", path=name) from err


def _raw(text: str, name: str) -> bytes:
    tokens = text.split()
    if tokens and all(re.fullmatch(r"[0-9a-fA-F]{2}", t) for t in tokens):
        return bytes(int(t, 16) for t in tokens)
    out = bytearray()
    for token in tokens:
        try:
            value = int(token, 16 if token.lower().startswith("0x") else 10)
        except ValueError:
            raise DataFileError(f"bad raw word {token!r}", path=name) from None
        if not 0 <= value < 1 << 64:
            raise DataFileError(f"raw word {token} exceeds 64 bits", path=name)
        out += value.to_bytes(8, "little")
    return bytes(out)


def _hex_bytes(text: str, name: str) -> bytes:
    try:
        return bytes(int(t, 16) for t in text.split())
    except ValueError:
        raise DataFileError(f"bad memory byte in {text!r}", path=name) from None


class Outcome(Enum):
    """How a case ended."""

    PASS = "pass"
    FAIL = "fail"  # ran, but r0 or the error differs from the expectation
    ERROR = "error"  # the case could not be run (bad file, invalid bytecode)


@dataclass(frozen=True)
class Verdict:
    """A case's outcome with a one-line explanation."""

    outcome: Outcome
    detail: str = ""


Engine = Callable[[list[Instruction], bytes], int]


def run_case(case: Case, engine: Engine) -> Verdict:
    """Decode and run ``case`` on ``engine(insns, memory) -> r0`` and judge it."""
    try:
        insns = decode(case.program)
    except PybpfError as err:
        return Verdict(Outcome.ERROR, f"invalid bytecode: {err}")
    try:
        r0 = engine(insns, case.memory)
    except PybpfError as err:
        if case.error is not None and case.error in str(err):
            return Verdict(Outcome.PASS)
        return Verdict(Outcome.FAIL, f"{type(err).__name__}: {err}")
    if case.error is not None:
        return Verdict(Outcome.FAIL, f"expected error {case.error!r}, got r0={r0:#x}")
    if r0 != case.result:
        return Verdict(Outcome.FAIL, f"r0={r0:#x}, expected {case.result:#x}")
    return Verdict(Outcome.PASS)


def run_file(path: str | Path, engine: Engine) -> Verdict:
    """Load and run one file; a broken file is an ERROR verdict, not an exception."""
    try:
        case = load(path)
    except PybpfError as err:
        return Verdict(Outcome.ERROR, str(err))
    return run_case(case, engine)
