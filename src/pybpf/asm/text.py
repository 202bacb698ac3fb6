"""Shared pieces of the assembly dialects: source lines, numbers, labels.

Every dialect parses line by line into :class:`Pending` instructions whose
pc-relative fields may still name a label; :func:`resolve` fixes them once
all labels are known.  Errors are :class:`~pybpf.errors.AsmError` with a
1-based line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pybpf.errors import AsmError, EncodeError
from pybpf.isa import Instruction, Kind, lookup
from pybpf.isa.table import OpSpec

_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|\d+)$")


@dataclass(frozen=True)
class Line:
    """One source line, comment stripped: its 1-based number and text."""

    number: int
    text: str
    raw: str

    def error(self, message: str, token: str | None = None) -> AsmError:
        """An AsmError pointing at ``token`` (its first occurrence) or the line start."""
        column = 1
        if token:
            at = self.raw.find(token)
            column = at + 1 if at >= 0 else 1
        else:
            column = len(self.raw) - len(self.raw.lstrip()) + 1
        return AsmError(message, line=self.number, column=column, text=self.raw)


def lines(text: str, comment_chars: str = "#;") -> list[Line]:
    """Non-blank lines of ``text`` with comments (from any of ``comment_chars``) removed."""
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        cut = len(raw)
        for ch in comment_chars:
            at = raw.find(ch)
            if at >= 0:
                cut = min(cut, at)
        body = raw[:cut].strip()
        if body:
            out.append(Line(number, body, raw))
    return out


def parse_int(token: str, line: Line, lo: int, hi: int, what: str) -> int:
    """An integer literal (decimal or 0x hex, optional sign) within [lo, hi]."""
    token = token.strip()
    if not _INT.match(token):
        raise line.error(f"invalid {what} {token!r}", token)
    digits = token.lstrip("+-")
    value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 10)
    value = -value if token.startswith("-") else value
    if not lo <= value <= hi:
        raise line.error(f"{what} {token} out of range [{lo}, {hi}]", token)
    return value


def imm32(token: str, line: Line) -> int:
    """A 32-bit immediate: decimal in the signed range, hex up to 0xffffffff."""
    if token.strip().lstrip("+-").lower().startswith("0x"):
        value = parse_int(token, line, -0x80000000, 0xFFFFFFFF, "immediate")
    else:
        value = parse_int(token, line, -0x80000000, 0x7FFFFFFF, "immediate")
    return value - (1 << 32) if value > 0x7FFFFFFF else value


def imm64(token: str, line: Line) -> int:
    """A 64-bit immediate, signed or unsigned, returned unsigned."""
    return parse_int(token, line, -(1 << 63), (1 << 64) - 1, "64-bit immediate") & ((1 << 64) - 1)


def off16(token: str, line: Line) -> int:
    """A 16-bit offset: signed decimal, or hex up to 0xffff."""
    if token.strip().lstrip("+-").lower().startswith("0x"):
        value = parse_int(token, line, -0x8000, 0xFFFF, "offset")
    else:
        value = parse_int(token, line, -0x8000, 0x7FFF, "offset")
    return value - (1 << 16) if value > 0x7FFF else value


def split_operands(text: str) -> list[str]:
    """Split on commas outside brackets and parentheses; strip each operand."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    tail = "".join(cur).strip()
    if tail or out:
        out.append(tail)
    return out


@dataclass(frozen=True)
class Pending:
    """An assembled instruction whose jump field may still name a label."""

    insn: Instruction
    line: Line
    label: str | None = None  # resolved into off (jumps) or imm (ja32, calls, pseudo func)


def build(line: Line, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0,
          imm2: int = 0) -> Instruction:  # fmt: skip
    """An Instruction, or an AsmError on this line if the fields are invalid."""
    try:
        insn = Instruction(code, dst, src, off, imm, imm2)
        lookup(insn)
    except Exception as err:  # EncodeError / IsaError: report at the line
        raise line.error(str(err)) from err
    return insn


def _target_field(spec: OpSpec, insn: Instruction) -> str:
    if spec.kind in (Kind.CALL_LOCAL, Kind.LDDW) or (spec.kind is Kind.JA and spec.width == 32):
        return "imm"
    return "off"


def resolve(pending: list[Pending], labels: dict[str, int]) -> list[Instruction]:
    """Replace label references by pc-relative offsets; labels map to pcs."""
    out, pc = [], 0
    for item in pending:
        insn = item.insn
        if item.label is not None:
            if item.label not in labels:
                raise item.line.error(f"unknown label {item.label!r}", item.label)
            field = _target_field(lookup(insn), insn)
            delta = labels[item.label] - pc - 1
            try:
                insn = replace(insn, **{field: delta})
            except EncodeError as err:
                raise item.line.error(
                    f"label {item.label!r} is too far: {err}", item.label
                ) from err
        out.append(insn)
        pc += insn.slots
    return out
