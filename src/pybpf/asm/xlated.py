"""Dialect (c): bpftool's ``prog dump xlated`` listing (the kernel's print_bpf_insn text).

Each instruction prints as ``%4u: (%02x) <text>``: its pc (an lddw's second
slot has no line), its opcode byte, then the kernel's C-like text —
``(b7) r2 = 15``, ``(61) r3 = *(u32 *)(r6 +0)``, ``(15) if r1 == 0x0 goto pc+3``
(jump immediates in unsigned hex), ``(18) r1 = 0x2a``, ``(85) call bpf_map_lookup_elem#1``,
``(db) r1 = atomic64_fetch_add((u64 *)(r10 -8), r1)``.

ld_imm64 operands follow bpftool's ``print_imm``: ``map[id:N]`` (src 1),
``map[id:N][0]+OFF`` (src 2), ``subprog[+N]`` (src 4), ``map[idx:N]+OFF``
(src 6), ``0x..`` (src 0).  Calls follow the kernel: ``call bpf_<helper>#<id>``,
``call unknown#<imm>`` for ids outside the helper table, ``call pc+N`` for a
bpf-to-bpf call, ``call kernel-function#<btf id>`` for a kfunc.

Deviations (the kernel prints these ambiguously or not at all; pybpf keeps
the listing lossless):

* ``map[idx:N]`` for src 5 and ``btf_id[N]`` for src 3 (bpftool: ``0x..``);
  lddw's second imm is printed only for src 2 and 6 (the kernel requires 0
  elsewhere).
* ``call kernel-function#ID, OFF`` when a kfunc's module index ``off`` is set.
* ``(8d) callx rN`` (the kernel has no callx text and prints ``call ...#imm``).
* ``call pc+N`` prints ``imm`` (bpftool prints ``off``, where the kernel moved it).
* Instructions the opcode table rejects print ``BUG_%02x``, except the kernel's own
  in rewritten images: r11 (BPF_REG_AX) prints as ``r11``, the per-CPU mov as
  ``rD = &(void __percpu *)(rS)``.
* The ``helper_name`` callback, when given, is asked first for every call
  (the kernel tries its helper table first), so a caller can reproduce
  rewritten immediates such as ``bpf_trace_printk#-108416``.

:func:`assemble` parses such a listing back: the ``N:`` index and ``(xx)``
opcode prefixes are optional (a given opcode must match the instruction),
``;`` starts a comment (bpftool's source lines), lines ending in ``:`` that
are not a bare label (``int hello(struct xdp_md * ctx):``) are skipped, and
``opcodes`` hex lines are checked against the preceding instruction.  A call's
name resolves through :mod:`pybpf.isa.helper_ids` (its ``#N`` then ignored);
``call <other>#N`` is helper call N.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from pybpf.asm import clike as C
from pybpf.asm import text as T
from pybpf.errors import AsmError
from pybpf.isa import AtomicOp, Instruction, Kind, OpSpec, Pseudo, encode, try_lookup
from pybpf.isa.helper_ids import helper_id
from pybpf.isa.helper_ids import helper_name as _helper

Callback = Callable[[Instruction], "str | None"]


def _mem(base: int, off: int) -> str:
    return f"(r{base} {off:+d})"


def format_insn(insn: Instruction, *, helper_name: Callback | None = None,
                imm: Callback | None = None) -> str:  # fmt: skip
    """print_bpf_insn's text, ``(%02x) `` prefix included, without a newline.

    ``helper_name(insn)`` may return the text after ``call `` for a call
    (``bpf_trace_printk#-108416``); ``imm(insn)`` the text after ``rN = `` for an
    ld_imm64 (``map[id:20][0]+0``).  Returning None selects the default.
    """
    if insn.code == 0xBF and insn.off == PERCPU_OFF:
        return f"(bf) r{insn.dst_reg} = &(void __percpu *)(r{insn.src_reg})"
    spec = try_lookup(insn)
    if spec is None and AX in (insn.dst_reg, insn.src_reg):
        return _with_ax(insn, helper_name, imm)
    if spec is None:
        return f"BUG_{insn.code:02x}"
    return f"({insn.code:02x}) {_body(spec, insn, helper_name, imm)}"


AX = 11  # BPF_REG_AX: the kernel's own scratch register in rewritten programs
PERCPU_OFF = -1  # BPF_ADDR_PERCPU: a mov that turns a per-CPU offset into an address


def _with_ax(insn: Instruction, helper_name: Callback | None, imm: Callback | None) -> str:
    """An instruction using r11 (BPF_REG_AX), which only the kernel's rewrites emit:
    printed as the same instruction on a free register, renamed."""
    free = next(r for r in range(10) if r not in (insn.dst_reg, insn.src_reg))
    stand_in = replace(insn, dst_reg=free if insn.dst_reg == AX else insn.dst_reg,
                       src_reg=free if insn.src_reg == AX else insn.src_reg)  # fmt: skip
    if try_lookup(stand_in) is None:
        return f"BUG_{insn.code:02x}"
    text = format_insn(stand_in, helper_name=helper_name, imm=imm)
    return re.sub(rf"\b([rw]){free}\b", rf"\g<1>{AX}", text)


def _body(spec: OpSpec, insn: Instruction, helper_name: Callback | None,
          imm_cb: Callback | None) -> str:  # fmt: skip
    common = C.format_common(spec, insn)
    if common is not None:
        return common
    kind, d, s, off, imm = spec.kind, insn.dst_reg, insn.src_reg, insn.off, insn.imm
    size = C.SIZES.get(spec.width, "")
    if kind is Kind.LDDW:
        return f"r{d} = {(imm_cb and imm_cb(insn)) or _pseudo_text(insn)}"
    if kind is Kind.LD_IND:
        return f"r0 = *({size} *)skb[r{s} + {imm}]"
    if kind in (Kind.LDX, Kind.LDXSX):
        return f"r{d} = *({'s' + size[1:] if spec.signed else size} *){_mem(s, off)}"
    if kind is Kind.ST:
        return f"*({size} *){_mem(d, off)} = {imm}"
    if kind is Kind.STX:
        return f"*({size} *){_mem(d, off)} = r{s}"
    if kind is Kind.ATOMIC:
        mem, bits = f"({size} *){_mem(d, off)}", "64" if spec.width == 8 else ""
        named = C.atomic_base(spec)
        if named is None:
            if spec.op == AtomicOp.CMPXCHG:
                return f"r0 = atomic{bits}_cmpxchg({mem}, r0, r{s})"
            return f"r{s} = atomic{bits}_xchg({mem}, r{s})"
        if C.is_fetch(spec):
            return f"r{s} = atomic{bits}_fetch_{named[0]}({mem}, r{s})"
        return f"lock *({size} *){_mem(d, off)} {named[1]} r{s}"
    if kind is Kind.LOAD_ACQ:
        return f"r{d} = load_acquire(({size} *){_mem(s, off)})"
    if kind is Kind.STORE_REL:
        return f"store_release(({size} *){_mem(d, off)}, r{s})"
    if kind is Kind.JA:
        return f"gotol pc{imm:+d}" if spec.width == 32 else f"goto pc{off:+d}"
    if kind is Kind.JCOND:
        return f"may_goto pc{off:+d}"
    if kind is Kind.JUMP:
        w32 = spec.width == 32
        rhs = C.reg(s, w32) if "src_reg" in spec.uses else f"{imm & 0xFFFFFFFF:#x}"
        return f"if {C.reg(d, w32)} {C.JMP_OPS[spec.op]} {rhs} goto pc{off:+d}"
    if kind is Kind.CALLX:
        return f"callx r{d}"
    return f"call {(helper_name and helper_name(insn)) or _call_text(spec, insn)}"


def _pseudo_text(insn: Instruction) -> str:
    s, imm, imm2 = insn.src_reg, insn.imm, insn.imm2
    texts = {
        Pseudo.MAP_FD: f"map[id:{imm}]", Pseudo.MAP_VALUE: f"map[id:{imm}][0]+{imm2}",
        Pseudo.BTF_ID: f"btf_id[{imm}]", Pseudo.FUNC: f"subprog[{imm:+d}]",
        Pseudo.MAP_IDX: f"map[idx:{imm}]", Pseudo.MAP_IDX_VALUE: f"map[idx:{imm}]+{imm2}",
    }  # fmt: skip
    return texts.get(s, f"{insn.imm64:#x}")


def _call_text(spec: OpSpec, insn: Instruction) -> str:
    if spec.kind is Kind.CALL_LOCAL:
        return f"pc{insn.imm:+d}"
    if spec.kind is Kind.KFUNC:
        return f"kernel-function#{insn.imm}" + (f", {insn.off}" if insn.off else "")
    name = _helper(insn.imm)
    return f"{'bpf_' + name if name is not None else 'unknown'}#{insn.imm}"


def disassemble(insns: Iterable[Instruction], *, helper_name: Callback | None = None,
                imm: Callback | None = None, opcodes: bool = False,
                notes: Mapping[int, Sequence[str]] | None = None) -> str:  # fmt: skip
    """bpftool's plain listing: ``%4u: `` + :func:`format_insn`, one line each.

    With ``opcodes``, each instruction is followed by bpftool's hex line: seven
    spaces and the instruction's bytes (an lddw's 16 on one line).  ``notes``
    maps a pc to lines printed above its instruction, as bpftool prints a
    function's signature (``int hello(struct xdp_md * ctx):``) and its source
    lines (``; counter++;``) from BTF.
    """
    out, pc = [], 0
    for insn in insns:
        out.extend(line + "\n" for line in (notes or {}).get(pc, ()))
        out.append(f"{pc:4d}: {format_insn(insn, helper_name=helper_name, imm=imm)}\n")
        if opcodes:
            out.append("       " + " ".join(f"{b:02x}" for b in encode([insn])) + "\n")
        pc += insn.slots
    return "".join(out)


# --- parsing ------------------------------------------------------------------------------

_CALL = re.compile(
    r"pc(?P<pc>[+-]\w+)(?:#.*)?$"
    r"|kernel-function#(?P<kfunc>[-+]?\w+)(?:\s*,\s*(?P<koff>[-+]?\w+))?$"
    r"|(?P<name>[^\s#]+)#(?P<id>[-+]?\w+)$"
)


def _call(cur: C.Cursor, word: C.Tok) -> C.Parsed:
    rest = cur.rest()
    m = _CALL.match(rest.text) if rest is not None else None
    if m is None:
        raise cur.error("expected pc+N, NAME#ID or kernel-function#ID after call", rest)
    assert rest is not None

    def num(group: str, parse: Callable[[str, T.Line], int]) -> int:
        try:
            return parse(m.group(group), cur.line)
        except AsmError as err:
            raise AsmError(err.reason, line=cur.line.number, column=rest.col + m.start(group),
                           text=cur.line.raw) from None  # fmt: skip

    if m.group("pc") is not None:
        return C.Parsed(C.need(cur, rest, Kind.CALL_LOCAL), {"imm": num("pc", T.imm32)})
    if m.group("kfunc") is not None:
        fields = {"imm": num("kfunc", T.imm32)}
        if m.group("koff") is not None:
            fields["off"] = num("koff", T.off16)
        return C.Parsed(C.need(cur, rest, Kind.KFUNC), fields)
    number = helper_id(m.group("name"))
    return C.Parsed(C.need(cur, rest, Kind.CALL),
                    {"imm": num("id", T.imm32) if number is None else number})  # fmt: skip


def _operand(cur: C.Cursor, name: C.Tok, dst: int, w32: bool, dst_tok: C.Tok) -> C.Parsed:
    """bpftool's ld_imm64 operands (see the module docstring)."""
    if w32:
        raise cur.error("ld_imm64 needs a 64-bit register rN", dst_tok)
    fields, label, src = {"dst_reg": dst}, None, None
    if name.text not in ("map", "subprog", "btf_id"):
        raise cur.error(f"unknown operand {name.text!r}", name)
    cur.expect("[")
    if name.text == "subprog":
        src, (fields["imm"], label) = Pseudo.FUNC, C.target(cur, T.imm32)
    elif name.text == "btf_id":
        src, fields["imm"] = Pseudo.BTF_ID, cur.number(T.imm32)
    else:
        which = cur.take("'id' or 'idx'")
        if which.text not in ("id", "idx"):
            raise cur.error(f"expected 'id' or 'idx', found {which.text!r}", which)
        cur.expect(":")
        fields["imm"] = cur.number(T.imm32)
        by_id = which.text == "id"
        src = Pseudo.MAP_FD if by_id else Pseudo.MAP_IDX
        if by_id and cur.at("]") and cur.peek(1) is not None and cur.peek(1).text == "[":
            cur.expect("]")
            cur.expect("[")
            cur.int_in(0, 0, "map value index")
            cur.expect("]")
            cur.expect("+")
            src, fields["imm2"] = Pseudo.MAP_VALUE, cur.number(T.imm32)
            return C.Parsed(C.need(cur, name, Kind.LDDW, x=True), {**fields, "src_reg": src})
        if not by_id and cur.at("]") and cur.peek(1) is not None and cur.peek(1).text == "+":
            cur.expect("]")
            cur.expect("+")
            src, fields["imm2"] = Pseudo.MAP_IDX_VALUE, cur.number(T.imm32)
            return C.Parsed(C.need(cur, name, Kind.LDDW, x=True), {**fields, "src_reg": src})
    cur.expect("]")
    return C.Parsed(C.need(cur, name, Kind.LDDW, x=True), {**fields, "src_reg": src}, label)


HOOKS = C.Hooks(keywords={"call": _call}, named=_operand, hex_is_lddw=True)
_PREFIX = re.compile(r"\s*(?:\d+:\s*)?(?:\((?P<code>[0-9a-fA-F]{2})\)\s*)?")
_HEX_LINE = re.compile(r"[0-9a-fA-F]{2}(?:\s+[0-9a-fA-F]{2})*$")
_LABEL = re.compile(r"([A-Za-z_.$][\w.$]*)\s*:$")


def assemble(text: str) -> list[Instruction]:
    """Parse an xlated listing back to instructions; AsmError on any problem."""
    pending: list[T.Pending] = []
    labels: dict[str, int] = {}
    checks: list[tuple[int, bytes, T.Line]] = []
    pc = 0
    for line in T.lines(text, ";"):
        if _HEX_LINE.match(line.text):
            if not pending:
                raise line.error("opcode bytes before any instruction")
            checks.append((len(pending) - 1, bytes.fromhex(line.text.replace(" ", "")), line))
            continue
        if label := _LABEL.match(line.text):
            if label.group(1) in labels:
                raise line.error(f"duplicate label {label.group(1)!r}", label.group(1))
            labels[label.group(1)] = pc
            continue
        if line.text.endswith(":"):  # bpftool's function header: int f(struct xdp_md * ctx):
            continue
        start = line.raw.find(line.text)
        prefix = _PREFIX.match(line.raw, start)
        assert prefix is not None
        end = start + len(line.text)
        cur = C.Cursor(line, C.tokenize(line, prefix.end(), end), end + 1)
        item = C.parse_statement(cur, HOOKS).pending(line)
        code = prefix.group("code")
        if code is not None and int(code, 16) != item.insn.code:
            raise AsmError(f"opcode ({code}) does not match the instruction "
                           f"({item.insn.code:02x})", line=line.number,
                           column=prefix.start("code"), text=line.raw)  # fmt: skip
        pending.append(item)
        pc += item.insn.slots
    insns = T.resolve(pending, labels)
    for index, data, line in checks:
        if encode([insns[index]]) != data:
            raise line.error("opcode bytes do not match the instruction above")
    return insns
