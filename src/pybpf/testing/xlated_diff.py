"""pybpf's shown xlated image against the kernel's, for the verifier selftests both accept.

Usage::

    python -m pybpf.testing.xlated_diff [FILE...] [-k WORD] [-v]   # compare, print figures
    python -m pybpf.testing.xlated_diff --record      # (root, libbpf 1.5) re-record the kernel
    python -m pybpf.testing.xlated_diff --write-known # rewrite tests/selftests/xlated_known.json

Each runnable selftest program is loaded as ``test_loader.c`` loads it, by pybpf
and by the running kernel; where both accept it, the two xlated images
(``Program.shown``, the kernel's ``xlated_prog_insns``) are printed as bpftool
prints them, with the calls named as bpftool names them (helpers and kernel
functions and kfuncs through /proc/kallsyms, bpf-to-bpf calls by offset) and map ids
and subprogram addresses masked, and compared line by line.  It prints how many
programs agree, and with ``-v`` the first differing line of each other one.  The
kernel's images are recorded as kernel facts (``tests/kernel_facts/xlated_kernel.json``,
keys ``selftests/FILE/PROG``); programs not recorded yet are asked of the live kernel
(the selftests' libbpf, see :mod:`pybpf.testing.selftests_kernel`).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pybpf.asm import xlated as dialect
from pybpf.errors import PybpfError
from pybpf.isa import Instruction, decode, slot_offsets
from pybpf.isa.helper_ids import helper_name
from pybpf.testing import kernel_facts as kf
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


KERNEL_SPACE = 0xFFFF800000000000


def percpu_next(at: dict[int, Instruction], pc: int) -> bool:
    """The instruction after ``pc`` (``at``: pc -> instruction) turns a per-CPU offset into
    an address."""
    nxt = at.get(pc + 1)
    return nxt is not None and nxt.code == 0xBF and nxt.off == -1


def lines(insns: Sequence[Instruction], call_name: Callable[[int, Instruction], str]) -> list[str]:
    """The masked listing of ``insns``; ``call_name(pc, insn)`` names a helper call."""
    out = []
    at = dict(zip(slot_offsets(insns), insns, strict=True))
    for pc, insn in at.items():
        if insn.code == 0x85 and insn.src_reg in (0, 2):  # a helper or a kfunc: its name
            text = f"(85) call {call_name(pc, insn)}"
        elif insn.code == 0x18 and insn.src_reg in (1, 2, 4):
            masked = {1: "map[id:M]", 2: f"map[id:M][0]+{insn.imm2}", 4: "subprog"}
            text = f"(18) r{insn.dst_reg} = {masked[insn.src_reg]}"
        elif insn.code == 0x18 and insn.imm64 >= KERNEL_SPACE:  # a kernel data address
            text = f"(18) r{insn.dst_reg} = ADDR"
        elif insn.code == 0xB7 and percpu_next(at, pc):  # a per-CPU variable's address
            text = f"(b7) r{insn.dst_reg} = ADDR"
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
        if insn.src_reg == 2:  # fixup_kfunc_call: imm is the kfunc's address, as a helper's
            return kallsyms().get(base + insn.imm, f"{insn.imm:#x}")
        return _function(base, insn.imm)

    return lines(insns, name)


def pybpf_lines(prog) -> list[str]:
    """``prog.shown``, masked as :func:`kernel_lines` masks the kernel's."""
    view = prog.shown

    def name(pc: int, insn: Instruction) -> str:
        if pc in view.symbols:
            return view.symbols[pc]
        if insn.src_reg == 2:
            return f"unknown#{insn.imm}"
        if helper_name(insn.imm) == "tail_call":
            return "bpf_tail_call"
        return helper_symbol(insn.imm, int(prog.prog_type)) or f"unknown#{insn.imm}"

    return lines(view.insns, name)


#: program types whose helpers :func:`helper_functions` asks the kernel about
PROBED_TYPES = (1, 2, 3, 5, 6, 7, 8, 9, 13, 14, 16, 17, 18)


def helper_functions() -> dict[str, str]:
    """``"TYPE/HELPER" -> function`` for every helper a one-call program of each of
    :data:`PROBED_TYPES` loads with (R1 the context, R2-R5 zero) and the kernel leaves a
    call: the kernel function its image calls, as bpftool names it through kallsyms."""
    from pybpf.asm import llvm
    from pybpf.errors import KernelError
    from pybpf.kernel import linux

    if linux.available() is not None:
        raise KernelError(f"bpf(2) is not available: {linux.available()}")
    base, out = _call_base(), {}
    for prog_type in PROBED_TYPES:
        for helper in range(1, FUNC_MAX_ID):
            if helper_name(helper) is None:
                continue
            text = f"r2 = 0\nr3 = 0\nr4 = 0\nr5 = 0\ncall {helper}\nr0 = 0\nexit"
            try:
                with linux.prog_load(llvm.assemble(text), prog_type=prog_type,
                                     license="GPL") as prog:  # fmt: skip
                    image = decode(prog.xlated(), validate=False)
            except KernelError:
                continue
            calls = [i for i in image if i.code == 0x85 and i.src_reg == 0]
            if calls:  # none: inlined
                out[f"{prog_type}/{helper}"] = _function(base, calls[0].imm)
    return out


def _function(base: int, imm: int) -> str:
    if 0 <= imm < FUNC_MAX_ID and helper_name(imm) is not None:
        return f"bpf_{helper_name(imm)}"
    return kallsyms().get(base + imm, f"{imm:#x}")


_REPO = Path(__file__).resolve().parents[3]
#: The kernel's answers, beside the fixtures' dumps (tests/test_xlated_kernel.py).
FACTS = _REPO / "tests" / "kernel_facts" / "xlated_kernel.json"
#: The selftests whose shown image differs from the kernel's today, with the first difference.
KNOWN = _REPO / "tests" / "selftests" / "xlated_known.json"


def fact_key(case: st.Case) -> str:
    return f"selftests/{case.key}"


def kernel_answer(path: Path, case: st.Case, aux: Sequence[str]) -> dict:
    """The kernel's xlated image of ``case`` (masked lines and bytes_xlated), or its refusal."""
    from pybpf.testing.selftests_kernel import kernel_case

    k = kernel_case(str(path), case.prog, load={case.prog, *aux}, flags=case.flags,
                    log_level=0, run=False, xlated=True)  # fmt: skip
    if not k.ok:
        return {"refused": True}
    return {"bytes_xlated": len(k.xlated), "xlated": kernel_lines(k.xlated)}


def pybpf_answer(path: Path, case: st.Case, aux: Sequence[str]) -> dict:
    """The same from pybpf (``Program.shown``)."""
    from pybpf.loader import load_object
    from pybpf.runtime.kernel import Kernel

    try:
        coll = load_object(path, Kernel(verify=True), autoload={case.prog, *aux},
                           prog_flags={case.prog: case.flags})  # fmt: skip
    except PybpfError:
        return {"refused": True}
    with coll:
        prog = coll.program(case.prog)
        return {"bytes_xlated": prog.bytes_xlated, "xlated": pybpf_lines(prog)}


def difference(ours: dict, theirs: dict) -> str | None:
    """None when both accept and show the same image (or one refuses: not compared), else
    the first difference."""
    if ours.get("refused") or theirs.get("refused") or ours == theirs:
        return None
    a, b = ours["xlated"], theirs["xlated"]
    for x, y in zip(a, b, strict=False):
        if x != y:
            return f"pybpf {x.strip()!r}, kernel {y.strip()!r}"
    if len(a) != len(b):
        return f"pybpf {len(a)} instructions shown, kernel {len(b)}"
    return f"bytes_xlated: pybpf {ours['bytes_xlated']}, kernel {theirs['bytes_xlated']}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pybpf.testing.xlated_diff",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="object stems (default: all)")
    parser.add_argument("-k", dest="keyword", default="", help="only cases matching WORD")
    parser.add_argument("-v", action="store_true", help="print each difference")
    parser.add_argument("--record", action="store_true",
                        help="record the live kernel's images as kernel facts")
    parser.add_argument("--write-known", action="store_true",
                        help="rewrite the known differences (over all files)")
    args = parser.parse_args(argv)
    from pybpf.testing.selftests_kernel import available

    facts = kf.FactFile.load(FACTS)
    live = None if available() is not None else kf.live_stamp()
    if args.record and live is None:
        print(f"xlated_diff: cannot record: {available() or 'bpf(2) unavailable'}",
              file=sys.stderr)  # fmt: skip
        return 2
    same = differ = skipped = 0
    known: dict[str, str] = {}
    for path in st.objects(names=args.files):
        cases = st.load_cases(path)
        aux = st.aux_names(cases)
        for case in st.runnable(cases, args.keyword):
            recorded = facts.get(fact_key(case))
            if args.record or recorded is None:
                if live is None:
                    skipped += 1
                    continue
                theirs = kernel_answer(path, case, aux)
                facts.put(fact_key(case), theirs, live)
            else:
                theirs = recorded[0]
            ours = pybpf_answer(path, case, aux)
            if ours.get("refused") or theirs.get("refused"):
                skipped += 1
                continue
            why = difference(ours, theirs)
            if why is None:
                same += 1
                continue
            differ += 1
            known[case.key] = why
            if args.v:
                print(f"{case.key}: {why}")
    facts.save()
    if args.write_known:
        KNOWN.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{same} of {same + differ} programs both accept show the kernel's xlated image "
          f"({skipped} not compared: refused by one side or not recorded)")
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
