"""pybpf's shown xlated image against the kernel's, for the verifier selftests both accept.

Usage (root, with the selftests' libbpf; see :mod:`pybpf.testing.selftests_kernel`)::

    python -m pybpf.testing.xlated_diff [FILE...] [-k WORD] [-v]

Each runnable selftest program is loaded as ``test_loader.c`` loads it, by pybpf
and by the running kernel; where both accept it, the two xlated images
(``Program.shown``, the kernel's ``xlated_prog_insns``) are printed as bpftool
prints them, with the calls named as bpftool names them (helpers and kernel
functions through /proc/kallsyms, bpf-to-bpf calls by offset) and map ids, kfunc
and subprogram addresses masked, and compared line by line.  It prints how many
programs agree, and with ``-v`` the first differing line of each other one.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pybpf.asm import xlated as dialect
from pybpf.errors import PybpfError
from pybpf.isa import Instruction, decode, slot_offsets
from pybpf.isa.helper_ids import helper_name
from pybpf.testing import selftests as st
from pybpf.verifier.fixups import helper_symbol

FUNC_MAX_ID = 212  # __BPF_FUNC_MAX_ID of 6.18: below it a call's imm is a helper id


@functools.cache
def kallsyms() -> dict[int, str]:
    """Address -> name of the running kernel's text symbols (empty without /proc)."""
    out: dict[int, str] = {}
    try:
        with open("/proc/kallsyms", encoding="utf-8") as f:
            for line in f:
                addr, kind, name = line.split()[:3]
                if kind in "tTwW":
                    out.setdefault(int(addr, 16), name)
    except OSError:
        pass
    return out


def _call_base() -> int:
    return next((a for a, n in kallsyms().items() if n == "__bpf_call_base"), 0)


def lines(insns: Sequence[Instruction], call_name: Callable[[int, Instruction], str]) -> list[str]:
    """The masked listing of ``insns``; ``call_name(pc, insn)`` names a helper call."""
    out = []
    for pc, insn in zip(slot_offsets(insns), insns, strict=True):
        if insn.code == 0x85 and insn.src_reg == 0:
            text = f"(85) call {call_name(pc, insn)}"
        elif insn.code == 0x85 and insn.src_reg == 2:
            text = "(85) call kfunc"
        elif insn.code == 0x18 and insn.src_reg in (1, 2, 4):
            masked = {1: "map[id:M]", 2: f"map[id:M][0]+{insn.imm2}", 4: "subprog"}
            text = f"(18) r{insn.dst_reg} = {masked[insn.src_reg]}"
        else:
            text = dialect.format_insn(insn)
        out.append(f"{pc:4d}: {text}")
    return out


def kernel_lines(image: bytes) -> list[str]:
    """The kernel's xlated_prog_insns, masked (bpf-to-bpf calls keep their offset in off)."""
    insns = [i if not (i.code == 0x85 and i.src_reg == 1) else
             Instruction(0x85, 0, 1, 0, i.off)
             for i in decode(image, validate=False)]  # fmt: skip
    base = _call_base()

    def name(pc: int, insn: Instruction) -> str:
        if 0 <= insn.imm < FUNC_MAX_ID and helper_name(insn.imm) is not None:
            return f"bpf_{helper_name(insn.imm)}"
        return kallsyms().get(base + insn.imm, f"{insn.imm:#x}")

    return lines(insns, name)


def pybpf_lines(prog) -> list[str]:
    """``prog.shown``, masked as :func:`kernel_lines` masks the kernel's."""
    view = prog.shown

    def name(pc: int, insn: Instruction) -> str:
        if pc in view.symbols:
            return view.symbols[pc]
        if helper_name(insn.imm) == "tail_call":
            return "bpf_tail_call"
        return helper_symbol(insn.imm, int(prog.prog_type)) or f"unknown#{insn.imm}"

    return lines(view.insns, name)


def compare(path: Path, case: st.Case, aux: Sequence[str]) -> tuple[str, str]:
    """("same" | "differ" | "skip", detail) for one case."""
    from pybpf.loader import load_object
    from pybpf.runtime.kernel import Kernel
    from pybpf.testing.selftests_kernel import kernel_case

    k = kernel_case(str(path), case.prog, load={case.prog, *aux}, flags=case.flags,
                    log_level=0, run=False, xlated=True)  # fmt: skip
    if not k.ok:
        return "skip", "the kernel refuses it"
    try:
        coll = load_object(path, Kernel(verify=True), autoload={case.prog, *aux},
                           prog_flags={case.prog: case.flags})  # fmt: skip
    except PybpfError as err:
        return "skip", f"pybpf refuses it: {err}"
    with coll:
        ours = pybpf_lines(coll.program(case.prog))
    theirs = kernel_lines(k.xlated)
    if ours == theirs:
        return "same", ""
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            return "differ", f"line {i}: pybpf {a.strip()!r}, kernel {b.strip()!r}"
    return "differ", f"pybpf {len(ours)} lines, kernel {len(theirs)}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pybpf.testing.xlated_diff",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="object stems (default: all)")
    parser.add_argument("-k", dest="keyword", default="", help="only cases matching WORD")
    parser.add_argument("-v", action="store_true", help="print each difference")
    args = parser.parse_args(argv)
    from pybpf.testing.selftests_kernel import available

    why = available()
    if why is not None:
        print(f"xlated_diff: the kernel side is unavailable: {why}", file=sys.stderr)
        return 2
    counts = {"same": 0, "differ": 0, "skip": 0}
    reasons: dict[str, int] = {}
    for path in st.objects(names=args.files):
        cases = st.load_cases(path)
        aux = st.aux_names(cases)
        for case in st.runnable(cases, args.keyword):
            verdict, detail = compare(path, case, aux)
            counts[verdict] += 1
            if verdict == "differ":
                key = re.sub(r"line \d+: ", "", detail)
                reasons[key] = reasons.get(key, 0) + 1
                if args.v:
                    print(f"{case.key}: {detail}")
    print(f"{counts['same']} of {counts['same'] + counts['differ']} programs both accept "
          f"show the kernel's xlated image ({counts['skip']} skipped: refused by one side)")
    return 0 if not counts["differ"] else 1


if __name__ == "__main__":
    sys.exit(main())
