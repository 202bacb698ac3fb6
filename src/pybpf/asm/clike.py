"""The C-like instruction syntax shared by llvm-objdump and the kernel's verifier log.

Both dialects write instructions as C statements (``r1 += 5``,
``r0 = *(u32 *)(r1 + 4)``, ``if w1 > w2 goto +3``); they differ in spacing,
number bases, jump targets, calls and ld_imm64 operands.  This module holds
what they share: the operator strings (derived from the opcode table's
``Kind``/``op``), the formatting of the forms both print identically, a
tokenizer with column positions, and one statement parser that accepts the
union of both dialects.  The dialect-specific parts (calls, whether a bare hex
constant means ld_imm64) come in as a :class:`Hooks` value.

Contract of :func:`parse_statement`: it consumes the whole token stream of one
statement and returns a :class:`Parsed` (spec + fields + optional label), or
raises :class:`~pybpf.errors.AsmError` pointing at the offending token; it
never raises anything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pybpf.asm import text as T
from pybpf.errors import AsmError
from pybpf.isa import SPECS, Alu, AtomicOp, Instruction, Jmp, Kind, OpSpec, Size
from pybpf.isa.opcodes import SIZE_BYTES, SIZE_NAME
from pybpf.isa.table import ATOMIC_NAMES

ALU_OPS: dict[int, str] = {
    Alu.ADD: "+=", Alu.SUB: "-=", Alu.MUL: "*=", Alu.DIV: "/=", Alu.OR: "|=", Alu.AND: "&=",
    Alu.LSH: "<<=", Alu.RSH: ">>=", Alu.MOD: "%=", Alu.XOR: "^=", Alu.MOV: "=",
    Alu.ARSH: "s>>=",
}  # fmt: skip
SIGNED_ALU_OPS: dict[int, str] = {Alu.DIV: "s/=", Alu.MOD: "s%="}
JMP_OPS: dict[int, str] = {
    Jmp.JEQ: "==", Jmp.JGT: ">", Jmp.JGE: ">=", Jmp.JSET: "&", Jmp.JNE: "!=", Jmp.JSGT: "s>",
    Jmp.JSGE: "s>=", Jmp.JLT: "<", Jmp.JLE: "<=", Jmp.JSLT: "s<", Jmp.JSLE: "s<=",
}  # fmt: skip
END_NAMES = ("le", "be", "bswap")  # OpSpec.op of Kind.END indexes this
SIZES: dict[int, str] = {SIZE_BYTES[s]: SIZE_NAME[s] for s in Size}  # bytes -> "u32"
_FETCH = int(AtomicOp.FETCH)


def reg(number: int, w32: bool = False) -> str:
    """``rN``, or ``wN`` for a 32-bit view."""
    return f"{'w' if w32 else 'r'}{number}"


def atomic_base(spec: OpSpec) -> tuple[str, str] | None:
    """For add/or/and/xor atomics: (name, ALU operator); None for xchg/cmpxchg."""
    base = spec.op & ~_FETCH
    if base in ATOMIC_NAMES:
        return ATOMIC_NAMES[AtomicOp(base)], ALU_OPS[base]
    return None


def is_fetch(spec: OpSpec) -> bool:
    """True for atomics that return the old value (fetch forms, xchg, cmpxchg)."""
    return bool(spec.op & _FETCH)


def format_common(spec: OpSpec, insn: Instruction) -> str | None:
    """Text of the forms both dialects print identically, else None."""
    kind, w32 = spec.kind, spec.width == 32
    d, s = insn.dst_reg, insn.src_reg
    if kind is Kind.ALU:
        op = (SIGNED_ALU_OPS if spec.signed else ALU_OPS)[spec.op]
        rhs = reg(s, w32) if "src_reg" in spec.uses else str(insn.imm)
        return f"{reg(d, w32)} {op} {rhs}"
    if kind is Kind.NEG:
        return f"{reg(d, w32)} = -{reg(d, w32)}"
    if kind is Kind.MOVSX:
        return f"{reg(d, w32)} = (s{spec.op}){reg(s, w32)}"
    if kind is Kind.END:  # always rN, even for class ALU (both llvm and the kernel)
        return f"r{d} = {END_NAMES[spec.op]}{spec.width} r{d}"
    if kind is Kind.LD_ABS:
        return f"r0 = *({SIZES[spec.width]} *)skb[{insn.imm}]"
    if kind is Kind.EXIT:
        return "exit"
    return None


# --- spec index -------------------------------------------------------------------------


def _key(kind: Kind, op: int, width: int, signed: bool, x: bool) -> tuple:
    return (kind, int(op), width, signed, x)


_INDEX: dict[tuple, OpSpec] = {
    _key(s.kind, s.op, s.width, s.signed, "src_reg" in s.uses): s for s in SPECS
}


def find_spec(kind: Kind, op: int = 0, width: int = 64, signed: bool = False,
              x: bool = False) -> OpSpec | None:  # fmt: skip
    """The spec with these properties (``x``: it reads src_reg), or None."""
    return _INDEX.get(_key(kind, op, width, signed, x))


# --- tokens -------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<num>0[xX][0-9a-fA-F]+|\d+)"
    r"|(?P<op>s>>=|s<=|s>=|s/=|s%=|s<|s>|<<=|>>=|==|!=|<=|>=|\+=|-=|\*=|/=|\|=|&=|%=|\^="
    r"|[-+*/%&|^<>=()\[\],:#])"
    r"|(?P<id>[A-Za-z_.$][\w.$]*))"
)
_REG = re.compile(r"([rw])(\d+)$")


@dataclass(frozen=True)
class Tok:
    """One token: its kind (num/op/id), text and 1-based column in the raw line."""

    kind: str
    text: str
    col: int


def tokenize(line: T.Line, start: int, end: int) -> list[Tok]:
    """Tokens of ``line.raw[start:end]``; AsmError on a character no token starts with."""
    out, pos, raw = [], start, line.raw[:end]
    while pos < end:
        if raw[pos:].strip() == "":
            break
        m = _TOKEN.match(raw, pos)
        if not m or m.end() == pos:
            bad = len(raw[pos:]) - len(raw[pos:].lstrip()) + pos
            raise AsmError(f"unexpected character {raw[bad]!r}", line=line.number,
                           column=bad + 1, text=line.raw)  # fmt: skip
        kind = m.lastgroup or "op"
        out.append(Tok(kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    return out


class Cursor:
    """A position in one statement's tokens, with typed accessors raising AsmError."""

    def __init__(self, line: T.Line, toks: list[Tok], end_col: int) -> None:
        self.line, self.toks, self.i, self.end_col = line, toks, 0, end_col

    def error(self, message: str, tok: Tok | None = None) -> AsmError:
        column = tok.col if tok else self.end_col
        return AsmError(message, line=self.line.number, column=column, text=self.line.raw)

    def peek(self, k: int = 0) -> Tok | None:
        return self.toks[self.i + k] if self.i + k < len(self.toks) else None

    def at(self, *texts: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.text in texts

    def take(self, what: str = "operand") -> Tok:
        tok = self.peek()
        if tok is None:
            raise self.error(f"missing {what}")
        self.i += 1
        return tok

    def accept(self, text: str) -> Tok | None:
        if self.at(text):
            return self.take()
        return None

    def expect(self, text: str) -> Tok:
        tok = self.peek()
        if tok is None:
            raise self.error(f"missing {text!r}")
        if tok.text != text:
            raise self.error(f"expected {text!r}, found {tok.text!r}", tok)
        self.i += 1
        return tok

    def done(self) -> None:
        tok = self.peek()
        if tok is not None:
            raise self.error(f"unexpected {tok.text!r}", tok)

    def rest(self) -> Tok | None:
        """Consume every remaining token; return one whose text is the raw remainder."""
        tok = self.peek()
        if tok is None:
            return None
        last = self.toks[-1]
        self.i = len(self.toks)
        return Tok("rest", self.line.raw[tok.col - 1 : last.col - 1 + len(last.text)], tok.col)

    def is_reg(self, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok is not None and tok.kind == "id" and bool(_REG.match(tok.text))

    def reg(self, prefixes: str = "r") -> tuple[int, bool, Tok]:
        """A register (``rN``/``wN`` as allowed): (number, is_w, token)."""
        tok = self.take("register")
        m = _REG.match(tok.text) if tok.kind == "id" else None
        if not m or m.group(1) not in prefixes:
            want = " or ".join(f"{p}N" for p in prefixes)
            raise self.error(f"expected register {want}, found {tok.text!r}", tok)
        number = int(m.group(2))
        if number > 10:
            raise self.error(f"invalid register {tok.text!r} (r0-r10)", tok)
        return number, m.group(1) == "w", tok

    def number(self, parse: Callable[[str, T.Line], int], prefix: str = "") -> int:
        """A number with an optional sign, parsed by text.imm32/imm64/off16 or alike.

        ``prefix`` ("-" after a binary minus) is prepended to the literal.
        """
        sign = self.accept("-") or self.accept("+")
        tok = self.take("number")
        if tok.kind != "num":
            raise self.error(f"expected a number, found {tok.text!r}", tok)
        literal = prefix + (sign.text if sign else "") + tok.text
        try:
            return parse(literal, self.line)
        except AsmError as err:  # re-point at the number, which text.py cannot locate
            raise self.error(err.reason, sign or tok) from None

    def offset(self, parse: Callable[[str, T.Line], int]) -> int:
        """``+ N`` / ``- N`` (llvm), ``+N`` / ``-N`` / ``+ -N`` (kernel) as one signed value."""
        tok = self.peek()
        if tok is None or tok.text not in ("+", "-"):
            raise self.error("expected '+ offset' or '- offset'", tok)
        self.take()
        return self.number(parse, "-" if tok.text == "-" else "")

    def int_in(self, lo: int, hi: int, what: str) -> int:
        return self.number(lambda t, line: T.parse_int(t, line, lo, hi, what))


# --- statements -------------------------------------------------------------------------

_FIELD_ARGS = {"dst_reg": "dst", "src_reg": "src", "off": "off", "imm": "imm", "imm2": "imm2"}


@dataclass
class Parsed:
    """A parsed statement: its spec, the fields it sets, and a label to resolve."""

    spec: OpSpec
    fields: dict[str, int] = field(default_factory=dict)
    label: str | None = None

    def pending(self, line: T.Line) -> T.Pending:
        """The statement as a :class:`text.Pending` (fields checked by ``text.build``)."""
        fields = dict(self.fields)
        if self.spec.disc:
            fields.setdefault(self.spec.disc[0], self.spec.disc[1])
        insn = T.build(line, self.spec.code, **{_FIELD_ARGS[k]: v for k, v in fields.items()})
        return T.Pending(insn, line, self.label)


Statement = Callable[["Cursor", Tok], Parsed]
Named = Callable[["Cursor", Tok, int, bool, Tok], Parsed]


@dataclass(frozen=True)
class Hooks:
    """Dialect-specific parsing.

    ``keywords``: statements that start with a dialect's own word (``call``...),
    each called with the cursor after the word and the word's token.
    ``named``: ``rN = name...`` forms other than load_acquire and atomics, called
    with (cursor after the name, name token, dst, dst is wN, dst token).
    ``hex_is_lddw``: ``rN = 0x..`` is an ld_imm64 (the kernel prints mov-imm in
    decimal, ld_imm64 in hex).
    """

    keywords: dict[str, Statement]
    named: Named | None = None
    hex_is_lddw: bool = False


def need(cur: Cursor, tok: Tok | None, kind: Kind, op: int = 0, width: int = 64,
         signed: bool = False, x: bool = False) -> OpSpec:  # fmt: skip
    """:func:`find_spec`, or an AsmError at ``tok`` when the ISA has no such instruction."""
    spec = find_spec(kind, op, width, signed, x)
    if spec is None:
        raise cur.error(f"no {kind.value} instruction of this size or width", tok)
    return spec


def target(cur: Cursor, parse: Callable[[str, T.Line], int] = T.off16) -> tuple[int, str | None]:
    """A jump target: ``+N``/``-N`` (llvm), ``pc+N`` (kernel) or a label name.

    ``parse`` checks the number's range: off16 for ``off``, imm32 for ``imm`` targets.
    """
    tok = cur.peek()
    if tok is not None and tok.kind == "id" and tok.text != "pc":
        cur.take()
        return 0, tok.text
    cur.accept("pc")
    if not cur.at("+", "-"):
        raise cur.error("expected a signed offset (+N or -N) or a label", cur.peek())
    return cur.number(parse), None


def _size(cur: Cursor, signed_ok: bool = False) -> tuple[int, bool, Tok]:
    """``(uN *)`` / ``(sN *)`` after its '(': (bytes, signed, token)."""
    tok = cur.take("access size")
    signed = signed_ok and tok.text in ("s8", "s16", "s32")
    nbytes = {name: n for n, name in SIZES.items()}.get("u" + tok.text[1:] if signed else tok.text)
    if nbytes is None:
        raise cur.error(f"invalid access size {tok.text!r}", tok)
    cur.expect("*")
    cur.expect(")")
    return nbytes, signed, tok


def _addr(cur: Cursor) -> tuple[int, int]:
    """``rN + off`` (no parentheses: llvm's xchg/cmpxchg operand)."""
    return cur.reg("r")[0], cur.offset(T.off16)


def _mem(cur: Cursor) -> tuple[int, int]:
    """``(rN + off)`` / ``(rN -8)``: (base register, offset)."""
    cur.expect("(")
    base = _addr(cur)
    cur.expect(")")
    return base


def _typed_mem(cur: Cursor) -> tuple[int, Tok, int, int]:
    """``(uN *)(rN + off)`` after the first '(': (bytes, size token, base, off)."""
    nbytes, _, tok = _size(cur)
    return (nbytes, tok, *_mem(cur))


def _data(nbytes: int) -> str:
    """Register prefixes a load/store data register may use: ``wN`` below 8 bytes."""
    return "rw" if nbytes < 8 else "r"


def _jump(cur: Cursor, word: Tok) -> Parsed:
    value, label = target(cur, T.imm32 if word.text == "gotol" else T.off16)
    if word.text == "gotol":
        return Parsed(need(cur, word, Kind.JA, width=32), {"imm": value}, label)
    kind = Kind.JCOND if word.text == "may_goto" else Kind.JA
    return Parsed(next(s for s in SPECS if s.kind is kind and s.width == 64), {"off": value}, label)


def _if(cur: Cursor, word: Tok) -> Parsed:
    dst, w32, _ = cur.reg("rw")
    op_tok = cur.take("comparison")
    op = {text: op for op, text in JMP_OPS.items()}.get(op_tok.text)
    if op is None:
        raise cur.error(f"unknown comparison {op_tok.text!r}", op_tok)
    fields, x = {"dst_reg": dst}, cur.is_reg()
    if x:
        fields["src_reg"] = cur.reg("w" if w32 else "r")[0]
    else:
        fields["imm"] = cur.number(T.imm32)
    spec = need(cur, op_tok, Kind.JUMP, op, 32 if w32 else 64, x=x)
    cur.expect("goto")
    fields["off"], label = target(cur)
    return Parsed(spec, fields, label)


def _lock(cur: Cursor, word: Tok) -> Parsed:
    cur.expect("*")
    cur.expect("(")
    nbytes, size_tok, base, off = _typed_mem(cur)
    op_tok = cur.take("operator")
    op = {ALU_OPS[op]: op for op in ATOMIC_NAMES}.get(op_tok.text)
    if op is None:
        raise cur.error(f"invalid atomic operator {op_tok.text!r}", op_tok)
    src = cur.reg(_data(nbytes))[0]
    spec = need(cur, size_tok, Kind.ATOMIC, op, nbytes, x=True)
    return Parsed(spec, {"dst_reg": base, "src_reg": src, "off": off})


def _store(cur: Cursor, word: Tok) -> Parsed:
    cur.expect("(")
    nbytes, size_tok, base, off = _typed_mem(cur)
    cur.expect("=")
    fields = {"dst_reg": base, "off": off}
    if cur.is_reg():
        fields["src_reg"] = cur.reg(_data(nbytes))[0]
        return Parsed(need(cur, size_tok, Kind.STX, 0, nbytes, x=True), fields)
    fields["imm"] = cur.number(T.imm32)
    return Parsed(need(cur, size_tok, Kind.ST, 0, nbytes), fields)


def _store_release(cur: Cursor, word: Tok) -> Parsed:
    cur.expect("(")
    cur.expect("(")
    nbytes, size_tok, base, off = _typed_mem(cur)
    cur.expect(",")
    src = cur.reg(_data(nbytes))[0]
    cur.expect(")")
    spec = need(cur, size_tok, Kind.STORE_REL, AtomicOp.STORE_REL, nbytes, x=True)
    return Parsed(spec, {"dst_reg": base, "src_reg": src, "off": off})


_KEYWORDS: dict[str, Statement] = {
    "exit": lambda cur, word: Parsed(need(cur, word, Kind.EXIT)),
    "goto": _jump, "gotol": _jump, "may_goto": _jump, "if": _if,
    "callx": lambda cur, word: Parsed(need(cur, word, Kind.CALLX), {"dst_reg": cur.reg("r")[0]}),
    "lock": _lock, "*": _store, "store_release": _store_release,
}  # fmt: skip


def parse_statement(cur: Cursor, hooks: Hooks) -> Parsed:
    """Parse one whole statement (see the module docstring)."""
    first = cur.peek()
    if first is None:
        raise cur.error("missing instruction")
    handler = hooks.keywords.get(first.text) or _KEYWORDS.get(first.text)
    if handler is not None:
        cur.take()
        result = handler(cur, first)
    elif cur.is_reg():
        result = _assign(cur, hooks)
    else:
        raise cur.error(f"unknown instruction {first.text!r}", first)
    cur.done()
    return result


def _assign(cur: Cursor, hooks: Hooks) -> Parsed:
    dst, w32, dst_tok = cur.reg("rw")
    op_tok = cur.take("operator")
    width, rhs, nxt = (32 if w32 else 64), cur.peek(), cur.peek(1)
    if op_tok.text != "=" or rhs is None or cur.is_reg():
        return _alu(cur, dst, width, op_tok)
    if rhs.text == "-" and cur.is_reg(1):
        cur.take()
        tok = cur.reg("w" if w32 else "r")[2]
        if tok.text != dst_tok.text:
            raise cur.error("negation must use the destination register", tok)
        return Parsed(need(cur, dst_tok, Kind.NEG, Alu.NEG, width), {"dst_reg": dst})
    if rhs.text == "(":
        return _movsx(cur, dst, w32)
    if rhs.text == "*":
        cur.take()
        return _load(cur, dst, w32, dst_tok)
    if rhs.kind == "id":
        return _named(cur, dst, w32, dst_tok, hooks)
    value = nxt if rhs.text in ("+", "-") else rhs
    after = cur.peek(2 if value is nxt else 1)
    hex_value = value is not None and value.text[:2].lower() == "0x"
    if (after is not None and after.text == "ll") or (hooks.hex_is_lddw and hex_value):
        if w32:
            raise cur.error("ld_imm64 needs a 64-bit register rN", dst_tok)
        insn = Instruction.lddw(dst, cur.number(T.imm64))
        cur.accept("ll")
        return Parsed(need(cur, dst_tok, Kind.LDDW, x=True),
                      {"dst_reg": dst, "imm": insn.imm, "imm2": insn.imm2})  # fmt: skip
    return _alu(cur, dst, width, op_tok)


def _alu(cur: Cursor, dst: int, width: int, op_tok: Tok) -> Parsed:
    table = {text: (op, False) for op, text in ALU_OPS.items()}
    table.update({text: (op, True) for op, text in SIGNED_ALU_OPS.items()})
    if op_tok.text not in table:
        raise cur.error(f"unknown operator {op_tok.text!r}", op_tok)
    op, signed = table[op_tok.text]
    fields, x = {"dst_reg": dst}, cur.is_reg()
    if x:
        fields["src_reg"] = cur.reg("w" if width == 32 else "r")[0]
    else:
        fields["imm"] = cur.number(T.imm32)
    return Parsed(need(cur, op_tok, Kind.ALU, op, width, signed, x), fields)


def _movsx(cur: Cursor, dst: int, w32: bool) -> Parsed:
    cur.expect("(")
    cast = cur.take("cast")
    bits = {"s8": 8, "s16": 16, "s32": 32}.get(cast.text, 0)
    spec = need(cur, cast, Kind.MOVSX, bits, 32 if w32 else 64, True, True)
    cur.expect(")")
    return Parsed(spec, {"dst_reg": dst, "src_reg": cur.reg("w" if w32 else "r")[0]})


def _load(cur: Cursor, dst: int, w32: bool, dst_tok: Tok) -> Parsed:
    cur.expect("(")
    nbytes, signed, size_tok = _size(cur, signed_ok=True)
    if w32 and (nbytes == 8 or signed or cur.at("skb")):
        raise cur.error("this load needs a 64-bit register rN", dst_tok)
    if not cur.accept("skb"):
        base, off = _mem(cur)
        spec = need(cur, size_tok, Kind.LDXSX if signed else Kind.LDX, 0, nbytes, signed, True)
        return Parsed(spec, {"dst_reg": dst, "src_reg": base, "off": off})
    if dst != 0:
        raise cur.error("packet loads (skb[...]) always load into r0", dst_tok)
    cur.expect("[")
    if cur.is_reg():
        fields = {"src_reg": cur.reg("r")[0]}
        fields["imm"] = cur.offset(T.imm32) if cur.at("+", "-") else 0
        kind = Kind.LD_IND
    else:
        fields, kind = {"imm": cur.number(T.imm32)}, Kind.LD_ABS
    cur.expect("]")
    if signed:
        raise cur.error("packet loads cannot sign-extend", size_tok)
    return Parsed(need(cur, size_tok, kind, 0, nbytes, x=kind is Kind.LD_IND), fields)


_ATOMIC_CALL = re.compile(
    r"atomic(?:64)?_(?:fetch_(?P<alu>\w+)|(?P<k>xchg|cmpxchg))$"
    r"|(?P<bare>xchg|cmpxchg)(?:32)?_(?P<bits>32|64)$"
)


def _named(cur: Cursor, dst: int, w32: bool, dst_tok: Tok, hooks: Hooks) -> Parsed:
    """``rN = name(...)``: load_acquire, an atomic with a result, or a pseudo ld_imm64."""
    name = cur.take()
    if name.text == "load_acquire":
        cur.expect("(")
        cur.expect("(")
        nbytes, size_tok, base, off = _typed_mem(cur)
        cur.expect(")")
        if w32 and nbytes == 8:
            raise cur.error("a 64-bit load needs rN", dst_tok)
        spec = need(cur, size_tok, Kind.LOAD_ACQ, AtomicOp.LOAD_ACQ, nbytes, x=True)
        return Parsed(spec, {"dst_reg": dst, "src_reg": base, "off": off})
    end = re.fullmatch(r"(le|be|bswap)(16|32|64)", name.text)
    if end is not None:  # r1 = be16 r1: always rN, also for class ALU's le/be
        tok = cur.reg("r")[2]
        if w32 or tok.text != dst_tok.text:
            raise cur.error("a byte swap converts one rN register in place", tok)
        spec = need(cur, name, Kind.END, END_NAMES.index(end.group(1)), int(end.group(2)))
        return Parsed(spec, {"dst_reg": dst})
    m = _ATOMIC_CALL.match(name.text)
    if m is None:
        if hooks.named is None:
            raise cur.error(f"unknown operand {name.text!r}", name)
        return hooks.named(cur, name, dst, w32, dst_tok)
    ops: dict[str, int] = {n: op | AtomicOp.FETCH for op, n in ATOMIC_NAMES.items()}
    ops.update(xchg=AtomicOp.XCHG, cmpxchg=AtomicOp.CMPXCHG)
    op = ops.get(m.group("alu") or m.group("k") or m.group("bare"))
    if op is None:
        raise cur.error(f"unknown atomic operation {name.text!r}", name)
    cur.expect("(")
    if m.group("bare"):  # llvm: xchg_64(r10 - 8, r1), the size in the name
        nbytes, (base, off) = int(m.group("bits")) // 8, _addr(cur)
    else:
        cur.expect("(")
        nbytes, _, base, off = _typed_mem(cur)
    if w32 and nbytes == 8:
        raise cur.error("a 64-bit atomic needs rN", dst_tok)
    if op == AtomicOp.CMPXCHG:
        cur.expect(",")
        tok = cur.reg(_data(nbytes))[2]
        for bad in (t for t in (dst_tok, tok) if t.text[1:] != "0"):
            raise cur.error("cmpxchg compares with and returns r0", bad)
    cur.expect(",")
    src, _, src_tok = cur.reg(_data(nbytes))
    cur.expect(")")
    if op != AtomicOp.CMPXCHG and src != dst:
        raise cur.error("the result register must be the source register", src_tok)
    spec = need(cur, name, Kind.ATOMIC, op, nbytes, x=True)
    return Parsed(spec, {"dst_reg": base, "src_reg": src, "off": off})
