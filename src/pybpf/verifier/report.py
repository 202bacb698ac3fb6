"""The explanation for people printed above the kernel's verifier log.

The kernel's log says what failed in its own terms; the report adds where
(the C source line, from BTF line info), how the verifier got there (the
path through the branches) and what usually fixes it (a one-line hint)::

    error: invalid access to packet, off=14 size=1, R2(id=0,off=14,r=0)
      at pc 7 in hello.bpf.c:12
         12 |     if (eth->h_proto != bpf_htons(ETH_P_IP))
      path: 0 -> 3 -> 5 (jump taken at 4) -> 7
      hint: compare `data + N` with `data_end` before reading N bytes of the packet

Hints come from one table, :data:`HINTS`: a pattern over the kernel's
message (Linux 6.18 ``kernel/bpf/verifier.c`` wording), the hint, and an
example message in the kernel's words that the tests match.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pybpf.errors import VerifierError
from pybpf.isa import Instruction, slot_offsets
from pybpf.isa.opcodes import CLASS_MASK, OP_MASK, Class, Jmp

MAX_PATH_STOPS = 16  # longer paths keep their start and their end


@dataclass(frozen=True)
class Hint:
    """One row of the hint table: ``pattern`` searched in the kernel's message."""

    pattern: re.Pattern[str]
    hint: str
    example: str  # a message in the kernel's wording that this row answers


def _h(pattern: str, hint: str, example: str) -> Hint:
    return Hint(re.compile(pattern), hint, example)


_STACK_FIX = "move large buffers to a per-CPU array map"

# First match wins: specific rows come before the general ones they overlap.
HINTS: tuple[Hint, ...] = (
    # --- registers and pointers --------------------------------------------
    _h(r"^R(\d+) !read_ok", "R\\1 is read before it is written; after a helper call "
       "only R0 and R6-R9 keep values (R1-R5 are clobbered)", "R2 !read_ok"),
    _h(r"^R\d+ invalid mem access '\w*_or_null'", "check the pointer against NULL "
       "(if (!p) return ...) before dereferencing it", "R0 invalid mem access 'map_value_or_null'"),
    _h(r"^R\d+ invalid mem access 'scalar'", "this register holds a number, not a pointer; "
       "only ctx, stack, map value and packet pointers can be dereferenced",
       "R1 invalid mem access 'scalar'"),
    _h(r"^R\d+ invalid mem access", "this kind of pointer cannot be read or written directly",
       "R1 invalid mem access 'map_ptr'"),
    _h(r"^R\d+ pointer arithmetic on \w*_or_null", "check the pointer against NULL before "
       "adding to it",
       "R0 pointer arithmetic on map_value_or_null prohibited, null-check it first"),
    _h(r"^R\d+ pointer arithmetic on \w+ prohibited", "this kind of pointer cannot be moved; "
       "load or copy what it points to instead", "R1 pointer arithmetic on map_ptr prohibited"),
    _h(r"^math between \w+ pointer and register with unbounded min value",
       "bound the value on both sides (if (i < 0 || i >= N) return ...) before adding it "
       "to a pointer", "math between map_value pointer and register with unbounded min value "
       "is not allowed"),
    _h(r"^R\d+ (subtraction from stack pointer|pointer arithmetic with|bitwise operator|"
       r"32-bit pointer arithmetic|pointer \+= pointer|tried to subtract pointer)",
       "only add or subtract a scalar to a pointer, in 64-bit arithmetic",
       "R1 pointer arithmetic with *= operator prohibited"),
    _h(r"^value -?\d+ makes \w+ pointer be out of bounds", "the offset moves the pointer "
       "outside its object; bound it first",
       "value -2147483648 makes fp pointer be out of bounds"),
    _h(r"^cannot return stack pointer to the caller", "a function's stack is gone once it "
       "returns: return a value, not its address", "cannot return stack pointer to the caller"),
    _h(r"^(dereference of modified ctx ptr|variable ctx access)", "read the context through "
       "r1 at constant offsets, without arithmetic on the pointer",
       "dereference of modified ctx ptr R1 off=4 disallowed"),
    _h(r"^BPF_ATOMIC stores into R\d+ \w+ is not allowed", "atomic operations work on the "
       "stack and map values only", "BPF_ATOMIC stores into R1 ctx is not allowed"),
    _h(r"^R\d+ type=\S+ expected=(.*)", "this helper argument needs a different kind of "
       "value (expected: \\1)", "R1 type=scalar expected=ctx"),
    _h(r"^frame pointer is read only", "R10 (the frame pointer) cannot be written; copy it "
       "to another register and change that", "frame pointer is read only"),
    _h(r"^R\d+ leaks addr into (map|mem|ctx)", "a pointer may not be stored where user "
       "space can read it; store a number", "R1 leaks addr into map"),
    _h(r"^R0 leaks addr as return value", "return a number, not a pointer",
       "R0 leaks addr as return value"),
    # --- memory ------------------------------------------------------------
    _h(r"^invalid access to packet", "compare `data + N` with `data_end` before reading N "
       "bytes of the packet", "invalid access to packet, off=14 size=1, R2(id=0,off=14,r=0)"),
    _h(r"^R\d+ offset is outside of the packet", "compare `data + N` with `data_end` "
       "before reading N bytes of the packet", "R2 offset is outside of the packet"),
    _h(r"^cannot write into packet", "this program type may only read the packet",
       "cannot write into packet"),
    _h(r"^BPF_LD_\[ABS\|IND\] instructions not allowed", "LD_ABS and LD_IND are for socket "
       "filters and tc programs; use direct packet access",
       "BPF_LD_[ABS|IND] instructions not allowed for this program type"),
    _h(r"^div by zero", "dividing by the constant 0 is refused; use a non-zero constant",
       "div by zero"),
    _h(r"^invalid access to map value", "keep offset + size within the map's value_size "
       "(bound the offset before the access)",
       "invalid access to map value, value_size=8 off=8 size=4"),
    _h(r"^R\d+ (min|max) value is outside of the allowed memory range", "bound the offset "
       "on both sides before the access (an unsigned compare bounds both)",
       "R1 min value is outside of the allowed memory range"),
    _h(r"^R\d+ min value is negative", "bound the index from below too, or make it unsigned",
       "R2 min value is negative, either use unsigned index or do a if (index >=0) check."),
    _h(r"^R\d+ unbounded memory access", "compare the offset with a constant before the "
       "access", "R2 unbounded memory access, make sure to bounds check any such access"),
    _h(r"^invalid indirect read from stack", "initialize the whole stack buffer (= {} or "
       "__builtin_memset) before passing it to a helper",
       "invalid indirect read from stack R2 off -8+0 size 8"),
    _h(r"^invalid read from stack", "the stack slot is read before anything was written to "
       "it; initialize the variable", "invalid read from stack off -8+0 size 8"),
    _h(r"^invalid size of register (spill|fill)", "read and write a spilled register "
       "with the size it was stored with", "invalid size of register fill"),
    _h(r"^(R\d+ )?invalid zero-sized read", "the size may be 0: bound it from below "
       "(size > 0) before the call", "R2 invalid zero-sized read: u64=[0,0]"),
    _h(r"^invalid variable-offset (read from|write to|indirect access to) stack",
       "use a constant stack offset here (or a map value for indexed data)",
       "invalid variable-offset write to stack R2 var_off=(0x0; 0xf) off=-8 size=1"),
    _h(r"^misaligned", "align the access to its size (or use a smaller load)",
       "misaligned stack access off 0+0+-7 size 8"),
    _h(r"^invalid.* stack( R\d+)? off=", "stack accesses must stay in the 512-byte frame: "
       f"offsets from r10 between -512 and -1; {_STACK_FIX}",
       "invalid write to stack R1 off=-520 size=8"),
    _h(r"^invalid bpf_context access", "this context field cannot be accessed like this by "
       "this program type (field, size, or a write to a read-only field)",
       "invalid bpf_context access off=76 size=4"),
    # --- helpers and references ---------------------------------------------
    _h(r"^unknown func ", "this helper does not exist or this program type may not call it",
       "unknown func bpf_trace_printk#6"),
    _h(r"^invalid func unknown#", "no helper has this number", "invalid func unknown#9999"),
    _h(r"^program of this type cannot use helper", "this program type may not call this "
       "helper; use another program type or helper",
       "program of this type cannot use helper bpf_probe_read#4"),
    _h(r"^cannot call GPL-restricted function", "declare a GPL-compatible license "
       '(char LICENSE[] SEC("license") = "GPL";)',
       "cannot call GPL-restricted function from non-GPL compatible program"),
    _h(r"^cannot pass map_type \d+ into func", "this helper does not take this kind of map",
       "cannot pass map_type 2 into func bpf_perf_event_output#25"),
    _h(r"^expected prog array map for tail call", "bpf_tail_call needs a "
       "BPF_MAP_TYPE_PROG_ARRAY map", "expected prog array map for tail call"),
    _h(r"^R\d+ does not point to a readonly map", "pass a frozen read-only map (such as "
       ".rodata) here", "R3 does not point to a readonly map'"),
    _h(r"^R\d+ is not a known constant", "this argument must be a constant the verifier "
       "knows", "R2 is not a known constant'"),
    _h(r"^R\d+ must have zero offset when passed to release func", "release the pointer "
       "exactly as it was returned, without an offset",
       "R1 must have zero offset when passed to release func or trusted arg to kfunc"),
    _h(r"^no direct value access support for this map type", "direct value loads need an "
       "array map of one element", "no direct value access support for this map type"),
    _h(r"^kernel btf_id \d+ is not a function", "the kfunc's BTF id names no function of "
       "this kernel; rebuild against its BTF", "kernel btf_id 12345 is not a function"),
    _h(r"^missing btf func_info", "callbacks and global functions need BTF func info: load "
       "the object with its BTF (compile with -g)", "missing btf func_info"),
    _h(r"^Unreleased reference", "release what was acquired (ringbuf submit/discard, "
       "sk_release...) on every path, including error paths",
       "Unreleased reference id=2 alloc_insn=7"),
    _h(r"^function calls are not allowed while holding a lock", "call bpf_spin_unlock "
       "before calling functions", "function calls are not allowed while holding a lock"),
    _h(r"^At program exit the register R0 ", "return a value this program type allows "
       "(e.g. XDP_PASS, 0 or 1)",
       "At program exit the register R0 has smin=2 smax=2 should have been in [0, 1]"),
    # --- loops and complexity -----------------------------------------------
    _h(r"^back-edge from insn", "loops need CAP_BPF; load as root or unroll the loop",
       "back-edge from insn 2 to 1"),
    _h(r"^infinite loop detected", "the loop reaches the same state again: make its "
       "variable move toward the exit condition", "infinite loop detected at insn 1"),
    _h(r"^The sequence of \d+ jumps is too complex", "too many branches are pending at "
       "once; simplify the control flow or split the program",
       "The sequence of 8193 jumps is too complex."),
    _h(r"^BPF program is too large", "verification explored 1,000,000 instructions: lower "
       "loop bounds, use bpf_loop(), or split the program",
       "BPF program is too large. Processed 1000001 insn"),
    # --- structure -------------------------------------------------------------
    _h(r"^jump out of range", "a jump leaves its function or the program",
       "jump out of range from insn 1 to 7"),
    _h(r"^unreachable insn", "no path reaches this instruction; remove the dead code",
       "unreachable insn 2"),
    _h(r"^last insn is not an exit or jmp", "every function must end with exit or a jump, "
       "never fall through into the next", "last insn is not an exit or jmp"),
    _h(r"^jump into the middle of ldimm64", "a jump lands in the second half of a 16-byte "
       "ld_imm64", "jump into the middle of ldimm64 insn 2"),
    _h(r"^(invalid|unrecognized) bpf_ld_imm64 insn", "an ld_imm64 needs both 8-byte halves "
       "and a known source (0-6); the second half's other fields must be 0",
       "invalid bpf_ld_imm64 insn"),
    _h(r"^unknown opcode", "this is not an instruction Linux knows", "unknown opcode 8d"),
    _h(r"^BPF_\w+ uses reserved fields", "an instruction sets a field its opcode does not "
       "use; it must be 0", "BPF_LDX uses reserved fields"),
    _h(r"^call to invalid destination", "a bpf-to-bpf call targets a pc outside the program",
       "call to invalid destination"),
    _h(r"^too many subprograms", "at most 256 functions per program",
       "too many subprograms"),
    _h(r"^combined stack size of \d+ calls", "the functions on one call chain use more "
       f"than 512 bytes of stack together; {_STACK_FIX}",
       "combined stack size of 2 calls is 528. Too large"),
    _h(r"^the call stack of \d+ frames is too deep", "bpf-to-bpf calls nest at most 8 "
       "deep", "the call stack of 8 frames is too deep !"),
    _h(r"^tail_calls are not allowed when call stack", "a function that tail calls may sit "
       "under at most 256 bytes of callers' stack",
       "tail_calls are not allowed when call stack of previous frames is 256 bytes. Too large"),
    _h(r"^(tail_call|LD_ABS) is not allowed in subprogs without BTF", "load with BTF "
       "(compile with -g) or keep it in the main function",
       "tail_call is not allowed in subprogs without BTF"),
)  # fmt: skip


def hint_for(reason: str) -> str | None:
    """The hint of the first :data:`HINTS` row whose pattern matches ``reason``."""
    for row in HINTS:
        found = row.pattern.search(reason)
        if found:
            return found.expand(row.hint)
    return None


# --- where: line info -------------------------------------------------------------


def source_text(info: Any) -> str:
    """The source line a line-info record carries (``text`` or BTF's ``line_text``)."""
    return getattr(info, "text", None) or getattr(info, "line_text", None) or ""


def find_line(line_info: Mapping[int, Any] | None, pc: int) -> Any | None:
    """The line-info record covering ``pc``: the last one at or before it (find_linfo)."""
    if not line_info:
        return None
    before = [p for p in line_info if p <= pc]
    return line_info[max(before)] if before else None


def _source_line(info: Any, source: str | Mapping[str, str] | None) -> str:
    text = source_text(info)
    if text or source is None:
        return text
    if isinstance(source, Mapping):
        file = getattr(info, "file", "")
        source = source.get(file) or next(
            (v for k, v in source.items() if k.rsplit("/", 1)[-1] == file.rsplit("/", 1)[-1]),
            None,
        )
        if source is None:
            return ""
    lines = source.splitlines()
    line = getattr(info, "line", 0)
    return lines[line - 1] if 0 < line <= len(lines) else ""


# --- how: the path ------------------------------------------------------------------


def _arrival(prev: int, insn: Instruction | None, pc: int) -> str | None:
    """How control went from ``prev`` (holding ``insn``) to ``pc``; None when it fell through."""
    if insn is None or pc == prev + insn.slots:
        return None
    cls, op = insn.code & CLASS_MASK, insn.code & OP_MASK
    if cls not in (Class.JMP, Class.JMP32):
        return f"from {prev}"
    if op == Jmp.CALL:
        return f"call at {prev}"
    if op == Jmp.EXIT:
        return f"return from {prev}"
    if op == Jmp.JA:
        return f"goto at {prev}"
    return f"jump taken at {prev}"


def format_path(insns: Sequence[Instruction], path: Sequence[int], end: int | None = None) -> str:
    """The path as its stops: the start, each arrival by a jump, call or return
    (annotated), each fall-through past a conditional jump, and the end.

    ``end`` (the failing pc) is appended when the path does not end there.
    A stop repeated back to back (a loop) is written once with its count
    (``1 (jump taken at 2) x49``); of more than :data:`MAX_PATH_STOPS`
    stops, the first and last ones are kept around ``...``.
    """
    pcs = list(path)
    if end is not None and (not pcs or pcs[-1] != end):
        pcs.append(end)
    if not pcs:
        return ""
    at = dict(zip(slot_offsets(insns), insns, strict=True))
    runs: list[list] = [[str(pcs[0]), 1]]  # [stop, times in a row]
    seen: dict[tuple[int, int], str | None] = {}
    last = len(pcs) - 1
    for i in range(1, len(pcs)):  # a path may be a million steps long
        step = (pcs[i - 1], pcs[i])
        if step not in seen:
            seen[step] = _stop(at.get(step[0]), *step)
        stop = seen[step] if i < last else (seen[step] or str(step[1]))
        if stop is None:
            continue
        if stop == runs[-1][0]:
            runs[-1][1] += 1
        else:
            runs.append([stop, 1])
    stops = [stop if times == 1 else f"{stop} x{times}" for stop, times in runs]
    if len(stops) > MAX_PATH_STOPS:
        head = MAX_PATH_STOPS // 2 - 1
        stops = [*stops[:head], "...", *stops[head - MAX_PATH_STOPS + 1 :]]
    return " -> ".join(stops)


def _stop(insn: Instruction | None, prev: int, pc: int) -> str | None:
    """The stop for arriving at ``pc`` from ``prev``, or None when it is not one."""
    how = _arrival(prev, insn, pc)
    if how is not None:
        return f"{pc} ({how})"
    if insn is None or _conditional(insn):
        return str(pc)
    return None


def _conditional(insn: Instruction) -> bool:
    cls, op = insn.code & CLASS_MASK, insn.code & OP_MASK
    if cls == Class.JMP32:
        return op != Jmp.JA
    return cls == Class.JMP and op not in (Jmp.JA, Jmp.CALL, Jmp.EXIT)


# --- the report -----------------------------------------------------------------------


def build_report(
    insns: Sequence[Instruction],
    error: VerifierError,
    *,
    path: Sequence[int] = (),
    line_info: Mapping[int, Any] | None = None,
    source: str | Mapping[str, str] | None = None,
) -> str:
    """The report for people on a refusal: message, place, source line, path, hint.

    ``line_info`` maps a pc to a record with ``file``, ``line``, ``col`` and
    the source line as ``text`` (or ``line_text``, as
    :class:`pybpf.btf.ext.LineInfo` has it); ``source`` is the C source
    text (or file name -> text) used when a record carries no text.
    ``path`` is the pcs the verifier went through to the failing one.
    Lines without information are left out; the result ends with a newline.
    Inconsistent input (pcs beyond the program) gives a plainer report,
    never an exception.
    """
    lines = [f"error: {error.reason}"]
    pc = error.pc
    if pc is not None:
        info = find_line(line_info, pc)
        if info is not None:
            where = f"{getattr(info, 'file', '') or '?'}:{getattr(info, 'line', 0)}"
            lines.append(f"  at pc {pc} in {where}")
            text = _source_line(info, source).rstrip()
            if text:
                lines.append(f"  {getattr(info, 'line', 0):>5} | {text}")
        else:
            lines.append(f"  at pc {pc}")
        if any(p != pc for p in path):  # a path that is just the failing pc says nothing
            lines.append(f"  path: {format_path(insns, path, pc)}")
    hint = hint_for(error.reason)
    if hint:
        lines.append(f"  hint: {hint}")
    return "\n".join(lines) + "\n"
