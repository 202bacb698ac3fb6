"""Dialect (a): the C-like syntax of llvm-objdump (as in ``llvm-objdump -d prog.o``).

Every form llvm-objdump 14 prints correctly is printed exactly as it does, in
its default mode: ``r2 = 15``, ``r3 = *(u32 *)(r6 + 0)``, ``*(u32 *)(r6 + 0) = r1``
(``rN`` also for sub-word loads and stores), ``r6 = 0 ll``, ``call 6``,
``if r1 > 5 goto +2``, ``lock *(u64 *)(r10 - 8) += r1``, ``exit``.  Immediates are
signed decimal (jump immediates too), offsets ``+N``/``-N``.

Forms LLVM 14 cannot print, or misprints, use modern LLVM's (18+) syntax:
``r1 %= r2``, ``r1 s/= r2``, ``r1 s%= r2``, ``r1 = (s8)r2``, ``r1 = bswap16 r1``,
``if r1 & r2 goto +1``, ``*(u32 *)(r10 - 8) = 5``, ``r1 = *(s32 *)(r2 + 0)``,
``gotol +5``, ``may_goto +3``, ``callx r2``, ``r0 = load_acquire((u64 *)(r1 + 0))``,
``store_release((u64 *)(r1 + 0), r2)`` (``wN`` for 1/2/4-byte load_acquire and
store_release, as LLVM 20 prints them), and 32-bit atomics in LLVM's alu32
spelling: ``lock *(u32 *)(r10 - 8) += w1``,
``w1 = atomic_fetch_add((u32 *)(r10 - 8), w1)``, ``w1 = xchg32_32(r10 - 8, w1)``,
``w0 = cmpxchg32_32(r10 - 8, w0, w1)``.

pybpf's own notation, where llvm's text loses information:

* ``call local +N`` / ``call local -N``: bpf-to-bpf call (src_reg 1); llvm
  prints ``call N`` for helpers and local calls alike.
* ``call kfunc ID`` and ``call kfunc ID, OFF``: kfunc call (src_reg 2) by BTF
  id, OFF being the module BTF index (``off``) when non-zero.
* ``callx rN``: the register is ``dst_reg`` (llvm 14 reads it from ``imm``).
* ``ld_pseudo rN, SRC, IMM[, IMM2]``: ld_imm64 with a pseudo source; llvm
  prints ``ld_pseudo\\trN, SRC, IMM`` (a TAB, and without the second half's
  imm).  IMM2 is printed when non-zero.
* ``r0 = *(u16 *)skb[r1 + 4]`` / ``skb[r1 - 4]``: LD_IND with its immediate;
  ``skb[r1]`` only when it is 0 (llvm 14 never prints the immediate).

The parser (:func:`assemble`) accepts all of the above plus: hex numbers
(``if w0 <= 0xf2ed647b goto +1``, ``r1 = 0x123 ll``), ``wN`` wherever llvm
prints either ``rN`` or ``wN`` (data registers of 1/2/4-byte loads, stores and
atomics), a trailing branch annotation (``goto +3 <prog+0x20>``), labels
(``name:`` on its own line or before an instruction; ``goto name``,
``if r1 > 5 goto name``, ``gotol name``, ``call local name``) and the
bpftool/kernel forms of :mod:`pybpf.asm.clike`'s shared grammar
(``goto pc+3``, ``(r10 -8)``, ``atomic64_fetch_add(...)``).  ``#`` and ``;``
start comments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from pybpf.asm import clike as C
from pybpf.asm import text as T
from pybpf.errors import AsmError
from pybpf.isa import AtomicOp, Instruction, Kind, OpSpec, Pseudo, encode, jump_target, try_lookup
from pybpf.isa.helper_ids import helper_id

UNKNOWN = "<unknown>"


def _mem(base: int, off: int) -> str:
    return f"(r{base} {'-' if off < 0 else '+'} {abs(off)})"


def format_insn(insn: Instruction) -> str:
    """One instruction's text, or ``<unknown>`` when the ISA table rejects it."""
    spec = try_lookup(insn)
    if spec is None:
        return UNKNOWN
    common = C.format_common(spec, insn)
    if common is not None:
        return common
    kind, d, s, off, imm = spec.kind, insn.dst_reg, insn.src_reg, insn.off, insn.imm
    size = C.SIZES.get(spec.width, "")
    w = spec.width < 8  # sub-64-bit memory access
    if kind is Kind.LDDW:
        if s == Pseudo.IMM64:
            value = insn.imm64
            return f"r{d} = {value - (1 << 64) if value >> 63 else value} ll"
        return f"ld_pseudo r{d}, {s}, {imm}" + (f", {insn.imm2}" if insn.imm2 else "")
    if kind is Kind.LD_IND:
        index = f"r{s}" if imm == 0 else f"r{s} {'-' if imm < 0 else '+'} {abs(imm)}"
        return f"r0 = *({size} *)skb[{index}]"
    if kind in (Kind.LDX, Kind.LDXSX):
        sign = "s" + size[1:] if spec.signed else size
        return f"r{d} = *({sign} *){_mem(s, off)}"
    if kind is Kind.ST:
        return f"*({size} *){_mem(d, off)} = {imm}"
    if kind is Kind.STX:
        return f"*({size} *){_mem(d, off)} = r{s}"
    if kind is Kind.ATOMIC:
        return _atomic(spec, insn, size)
    if kind is Kind.LOAD_ACQ:
        return f"{C.reg(d, w)} = load_acquire(({size} *){_mem(s, off)})"
    if kind is Kind.STORE_REL:
        return f"store_release(({size} *){_mem(d, off)}, {C.reg(s, w)})"
    if kind is Kind.JA:
        return f"gotol {imm:+d}" if spec.width == 32 else f"goto {off:+d}"
    if kind is Kind.JCOND:
        return f"may_goto {off:+d}"
    if kind is Kind.JUMP:
        w32 = spec.width == 32
        rhs = C.reg(s, w32) if "src_reg" in spec.uses else str(imm)
        return f"if {C.reg(d, w32)} {C.JMP_OPS[spec.op]} {rhs} goto {off:+d}"
    if kind is Kind.CALL:
        return f"call {imm}"
    if kind is Kind.CALL_LOCAL:
        return f"call local {imm:+d}"
    if kind is Kind.KFUNC:
        return f"call kfunc {imm}" + (f", {off}" if off else "")
    if kind is Kind.CALLX:
        return f"callx r{d}"
    raise AssertionError(f"unhandled kind {kind}")  # pragma: no cover


def _atomic(spec: OpSpec, insn: Instruction, size: str) -> str:
    w = spec.width == 4  # LLVM's alu32 spelling of 32-bit atomics
    base, off, src = insn.dst_reg, insn.off, C.reg(insn.src_reg, w)
    named = C.atomic_base(spec)
    if named is not None:
        name, op = named
        if C.is_fetch(spec):
            return f"{src} = atomic_fetch_{name}(({size} *){_mem(base, off)}, {src})"
        return f"lock *({size} *){_mem(base, off)} {op} {src}"
    bits = "32_32" if w else "_64"
    addr = f"r{base} {'-' if off < 0 else '+'} {abs(off)}"
    if spec.op == AtomicOp.CMPXCHG:
        r0 = C.reg(0, w)
        return f"{r0} = cmpxchg{bits}({addr}, {r0}, {src})"
    return f"{src} = xchg{bits}({addr}, {src})"


def disassemble(insns: Iterable[Instruction]) -> str:
    """One instruction per line (``\\n``-terminated), jump targets as offsets."""
    return "".join(format_insn(insn) + "\n" for insn in insns)


_ANNOTATED = (Kind.JA, Kind.JCOND, Kind.JUMP)


def objdump_listing(insns: Iterable[Instruction], *, symbol: str | None = None,
                    notes: Mapping[int, Sequence[str]] | None = None) -> str:  # fmt: skip
    """The body lines of ``llvm-objdump -d``: ``%8d:\\t<bytes>\\t<text>``, one per line.

    The address column counts 8-byte slots; an lddw shows its 16 bytes on one
    line.  A run of all-zero slots is one ``\\t\\t...`` line, as llvm-objdump
    prints it.  With ``symbol``, jumps get llvm's target annotation
    ``<symbol+0xBYTES>`` (``<symbol>`` at offset 0; negative targets wrap to
    64 bits), as for a function ``symbol`` at address 0.  ``notes`` maps a pc
    to lines printed above it (``llvm-objdump -S``'s ``; source`` lines).
    """
    out, pc, zeros = [], 0, False
    for insn in insns:
        out.extend((notes or {}).get(pc, ()))
        raw = encode([insn])
        if not any(raw):
            if not zeros:
                out.append("\t\t...")
            zeros, pc = True, pc + insn.slots
            continue
        zeros, text = False, format_insn(insn)
        spec = try_lookup(insn)
        if symbol is not None and spec is not None and spec.kind in _ANNOTATED:
            address = jump_target(spec, insn, pc) * 8 % (1 << 64)  # type: ignore[operator]
            text += f" <{symbol}+{address:#x}>" if address else f" <{symbol}>"
        out.append(f"{pc:8d}:\t{' '.join(f'{b:02x}' for b in raw)}\t{text}")
        pc += insn.slots
    return "".join(line + "\n" for line in out)


# --- parsing ------------------------------------------------------------------------------


def _call(cur: C.Cursor, word: C.Tok) -> C.Parsed:
    mode = cur.peek()
    if mode is not None and mode.text == "local":
        cur.take()
        value, label = C.target(cur, T.imm32)
        return C.Parsed(C.need(cur, mode, Kind.CALL_LOCAL), {"imm": value}, label)
    if mode is not None and mode.text == "kfunc":
        cur.take()
        fields = {"imm": cur.number(T.imm32)}
        if cur.accept(","):
            fields["off"] = cur.number(T.off16)
        return C.Parsed(C.need(cur, mode, Kind.KFUNC), fields)
    if mode is not None and mode.kind == "id":  # a helper by name: call bpf_trace_printk
        cur.take()
        number = helper_id(mode.text)
        if number is None:
            raise cur.error(f"unknown helper {mode.text!r}", mode)
        return C.Parsed(C.need(cur, mode, Kind.CALL), {"imm": number})
    return C.Parsed(C.need(cur, word, Kind.CALL), {"imm": cur.number(T.imm32)})


def _ld_pseudo(cur: C.Cursor, word: C.Tok) -> C.Parsed:
    fields = {"dst_reg": cur.reg("r")[0]}
    cur.expect(",")
    fields["src_reg"] = cur.int_in(1, max(Pseudo), "pseudo source")
    cur.expect(",")
    fields["imm"] = cur.number(T.imm32)
    fields["imm2"] = cur.number(T.imm32) if cur.accept(",") else 0
    return C.Parsed(C.need(cur, word, Kind.LDDW, x=True), fields)


HOOKS = C.Hooks(keywords={"call": _call, "ld_pseudo": _ld_pseudo})
_ANNOTATION = re.compile(r"\s*<[^<>]*>\s*$")  # llvm's " <prog+0x20>" after a jump target
_LABEL = re.compile(r"\s*([A-Za-z_.$][\w.$]*)\s*:")


def assemble(text: str) -> list[Instruction]:
    """Assemble llvm-syntax text; AsmError (with line and column) on any problem."""
    pending: list[T.Pending] = []
    labels: dict[str, int] = {}
    pc = 0
    for line in T.lines(text, "#;"):
        start = line.raw.find(line.text)
        end = start + len(line.text)
        note = _ANNOTATION.search(line.raw, start, end)
        if note is not None and note.end() >= end:
            end = note.start()
        label = _LABEL.match(line.raw, start, end)
        if label is not None and not re.fullmatch(r"[rw]\d+", label.group(1)):
            name = label.group(1)
            if name in labels:
                raise AsmError(f"duplicate label {name!r}", line=line.number,
                               column=label.start(1) + 1, text=line.raw)  # fmt: skip
            labels[name] = pc
            start = label.end()
        toks = C.tokenize(line, start, end)
        if not toks:
            continue
        cur = C.Cursor(line, toks, end + 1)
        item = C.parse_statement(cur, HOOKS).pending(line)
        pending.append(item)
        pc += item.insn.slots
    return T.resolve(pending, labels)

