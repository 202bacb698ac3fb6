"""``prog dump jited`` and the jited fields of ``prog show``, as bpftool 7.1 prints them.

A program runs natively when its engine holds an object file (the JIT's
:attr:`~pybpf.jit.engine.JitProgram.object_code`); its **image** is the
code of the object's functions, the program's entry first.  Layout
(bpftool's prog_dump and disasm_print_insn, LLVM disassembler build):

    int hello(struct xdp_md * ctx):        <- BTF func info of the function, if any
    bpf_prog_<tag>_<name>:                  <- the symbol
    ; bpf_printk("Hello World %d", counter);  <- BTF line info ('linum': [file:...])
       0:\tpushq\t%r15                       <- %4x offset, the instruction
    \t41 57                                  <- 'opcodes': its bytes, each followed by a space
    (a blank line ends each function)

``-j`` gives ``[{"proto", "name", "insns": [{"src", "pc": "0x0", "operation",
"operands": [...], "opcodes": [...]}]}]``.  The kernel's image is one
function per bpf subprogram; pybpf's is one function for the whole program
(bpf-to-bpf calls stay inside it) plus any function the code generator adds.

Where the source lines go: the kernel reports the native address of each
line info record (jited_line_info).  An engine that knows where the code of
each bpf pc starts says so with ``pc_offsets`` (pc -> offset in the entry
function), and each record goes there.  Without it, a record is placed
before the first native instruction known to serve a pc it covers
(:func:`pybpf.jit.disasm.source_offsets`): the record of pc 0 first, others
at the trampoline calls (helpers, slow memory paths) of their pcs; records
whose pcs generate no such call are not shown.
"""

from __future__ import annotations

import re

from pybpf.jit import disasm

ENTRY_SYMBOL = "bpf_entry"
NO_IMAGE = "error retrieving jit dump: no instructions returned or kernel.kptr_restrict set?"
_OPERAND_SPLIT = re.compile(r"[ \t,()]+")


def functions(prog) -> list[disasm.Function]:
    """The native functions of ``prog`` (entry first), or [] when it is not jited."""
    code = getattr(getattr(prog, "engine", None), "object_code", None)
    if not code:
        return []
    funcs = disasm.functions(code)
    return sorted(funcs, key=lambda f: f.name != ENTRY_SYMBOL)


def image(prog) -> bytes:
    """The jited image (what bpf_prog_info's jited_prog_insns holds); b"" if not jited."""
    return b"".join(f.code for f in functions(prog))


def bytes_jited(prog) -> int:
    """jited_prog_len: the image's size in bytes (0 when the program is not jited); a
    restored program not run yet tells the size its state kept instead of compiling."""
    kept = getattr(prog, "kept_bytes_jited", None)
    if kept is not None:
        return kept
    return disasm.code_size(getattr(getattr(prog, "engine", None), "object_code", None))


def symbol(prog, func: disasm.Function) -> str:
    """The kernel symbol of a function: ``bpf_prog_<tag>_<name>``."""
    name = prog.name if func.name == ENTRY_SYMBOL else func.name
    return f"bpf_prog_{prog.tag}_{name}"


def _notes(prog) -> dict[int, list[str]]:
    return getattr(prog, "notes", {}) or {}


def _proto(prog) -> str:
    for line in _notes(prog).get(0, ()):
        if line.endswith(":") and not line.startswith("; "):
            return line[:-1]
    return ""


def _sources(prog) -> dict[int, str]:
    """pc -> the source line of its line info record (without the '; ')."""
    out = {}
    for pc, lines in _notes(prog).items():
        for line in lines:
            if line.startswith("; "):
                out[pc] = line[2:]
    return out


def _records(prog, func: disasm.Function, lines: list[disasm.Line]) -> dict[int, int]:
    """Native offset -> pc of the line info record printed before that instruction."""
    if func.name != ENTRY_SYMBOL:
        return {}
    exact = getattr(prog.engine, "pc_offsets", None)
    if exact:  # the engine knows where each pc's code starts (as jited_line_info)
        starts = {line.offset for line in lines}
        out: dict[int, int] = {}
        for pc in sorted(_sources(prog)):
            offset = exact.get(pc)
            if offset in starts and offset not in out:
                out[offset] = pc
        return out
    count = sum(insn.slots for insn in prog.xlated)
    return disasm.source_offsets(lines, count, list(_sources(prog)))


def _linum_fields(where: str) -> dict:
    fields = dict(part.split(":", 1) for part in where.strip("[]").split() if ":" in part)
    out: dict = {}
    if fields.get("file"):
        out["file"] = fields["file"]
    for key in ("line_num", "line_col"):
        if fields.get(key, "0").isdigit() and int(fields[key]):
            out[key] = int(fields[key])
    return out


def dump_plain(prog, *, opcodes: bool = False, linum: bool = False) -> str:
    """The text of ``prog dump jited`` for one program ("" when it is not jited)."""
    sources, where = _sources(prog), getattr(prog, "linum", {}) or {}
    out = []
    for i, func in enumerate(functions(prog)):
        if i == 0 and _proto(prog):
            out.append(f"{_proto(prog)}:\n")
        out.append(f"{symbol(prog, func)}:\n")
        lines = disasm.disassemble(func.code, 0, opcodes=opcodes)
        records = _records(prog, func, lines)
        for line in lines:
            if line.offset in records:
                pc = records[line.offset]
                extra = f" {where[pc]}" if linum and pc in where else ""
                out.append(f"; {sources[pc]}{extra}\n")
            out.append(f"{line.offset:4x}:\t{line.text}")
            if opcodes:
                out.append("\n\t" + "".join(f"{b:02x} " for b in line.opcodes))
            out.append("\n")
        out.append("\n")
    return "".join(out)


def _insn_json(line: disasm.Line, opcodes: bool) -> dict:
    item: dict = {"pc": f"{line.offset:#x}", "operation": line.mnemonic}
    # bpftool cuts the operand text at blanks, commas and parentheses
    operands = [t for t in _OPERAND_SPLIT.split(line.operands) if t]
    item["operands"] = operands or [None]
    if opcodes:
        item["opcodes"] = [f"0x{b:02x}" for b in line.opcodes]
    return item


def dump_json(prog, *, opcodes: bool = False, linum: bool = False) -> list[dict]:
    """The ``-j`` form of ``prog dump jited`` for one program: one object per function."""
    sources, where = _sources(prog), getattr(prog, "linum", {}) or {}
    out = []
    for i, func in enumerate(functions(prog)):
        obj: dict = {}
        if i == 0 and _proto(prog):
            obj["proto"] = _proto(prog)
        obj["name"] = symbol(prog, func)
        lines = disasm.disassemble(func.code, 0, opcodes=opcodes)
        records = _records(prog, func, lines)
        insns = []
        for line in lines:
            item: dict = {}
            if line.offset in records:
                pc = records[line.offset]
                item["src"] = sources[pc]
                if linum and pc in where:
                    item.update(_linum_fields(where[pc]))
            insns.append(item | _insn_json(line, opcodes))
        obj["insns"] = insns
        out.append(obj)
    return out


__all__ = ["NO_IMAGE", "bytes_jited", "dump_json", "dump_plain", "functions", "image", "symbol"]
