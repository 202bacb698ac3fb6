"""``pybpf``: the command line.

    pybpf asm PROG.s [-d ubpf|llvm|xlated] [-o PROG.bin | --hex]
    pybpf disasm PROG.bin [-d llvm|ubpf|xlated|objdump] [--hex]
    pybpf run PROG [--mem HEX | --mem-file F] [--budget N] [--engine interp|jit]
                   [--trace] [--trace-python]
    pybpf [--engine interp|jit] prog load|run ...   bpftool's commands (prog, map, ...)
    pybpf cc PROG.bpf.c [-o OBJ]   compile C with clang -target bpf -g -O2
    pybpf hello [OBJ]        the seeds' hello program: load, listings, three runs
    pybpf bench              interpreter throughput
    pybpf state check|repair the state directory's consistency, and its recovery

Programs are raw bytecode (8 bytes per instruction) or, with ``--hex``, base16
text; ``run`` also takes assembly text (``.s``/``.asm``, any dialect).  ``run``
stops a program after ``--budget`` instructions (default ``$PYBPF_BUDGET``,
else :data:`~pybpf.vm.budget.DEFAULT_BUDGET`), so an infinite loop ends in
seconds.  Every error is one line on standard error (``pybpf COMMAND: ...``)
and exit status 1 (2 for usage); no command prints a Python traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pybpf import __version__
from pybpf.cli import add_budget_option
from pybpf.errors import BudgetExceeded, PybpfError

if TYPE_CHECKING:
    from pybpf.isa import Instruction

# Every subcommand imports what it uses when it runs (``pybpf prog list`` must not pay for
# the assembler, the JIT or the loader): module level keeps to what the parser needs.


class UsageError(PybpfError):
    """Bad command-line input (a missing file, unreadable hex...)."""


def _read(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from None


def _hex(text: str, what: str) -> bytes:
    try:
        return bytes(int(t, 16) for t in text.replace(",", " ").split())
    except ValueError:
        raise UsageError(f"{what} is not hex bytes") from None


def _program(path: str, hex_input: bool, dialect: str | None) -> list[Instruction]:
    from pybpf import asm
    from pybpf.isa import decode

    data = _read(path)
    if hex_input:
        return decode(_hex(data.decode("ascii", "replace"), path))
    if dialect or path.endswith((".s", ".asm", ".S")):
        return asm.assemble(data.decode("utf-8", "replace"), dialect)
    return decode(data)


def cmd_asm(args: argparse.Namespace) -> int:
    from pybpf import asm
    from pybpf.isa import encode

    insns = asm.assemble(_read(args.file).decode("utf-8", "replace"), args.dialect)
    code = encode(insns)
    if args.hex:
        sys.stdout.write(" ".join(f"{b:02x}" for b in code) + "\n")
    elif args.output:
        tmp = Path(args.output + ".tmp")
        tmp.write_bytes(code)
        tmp.replace(args.output)  # never a half-written output file
    else:
        sys.stdout.buffer.write(code)
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    from pybpf import asm
    from pybpf.isa import decode

    insns = decode(_read(args.file) if not args.hex else _hex(_read(args.file).decode(), args.file))
    sys.stdout.write(asm.disassemble(insns, args.dialect))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pybpf.cli.trace import RegisterTrace
    from pybpf.jit import conformance as jit_conformance
    from pybpf.runtime import engines
    from pybpf.vm import Interpreter, conformance_helpers
    from pybpf.vm.budget import budget_from_env

    budget = args.budget if args.budget is not None else budget_from_env()
    insns = _program(args.file, args.hex, args.dialect)
    memory = _hex(args.mem, "--mem") if args.mem else b""
    if args.mem_file:
        memory = _read(args.mem_file)
    if args.engine == "jit" and (args.trace or args.trace_python):
        raise UsageError("--trace and --trace-python need --engine interp")
    tracer = RegisterTrace(insns, sys.stdout) if args.trace else None
    helpers = conformance_helpers()
    if args.engine == "jit":  # helper 5 compiled in: a loop calling it is not a Python one
        vm = engines.build("jit", insns, helpers=helpers, budget=budget,
                           native_calls=jit_conformance.native_calls(helpers))  # fmt: skip
    else:
        vm = Interpreter(insns, helpers=helpers, budget=budget, tracer=tracer)
    if args.trace_python:
        sys.stdout.write(vm.source)
    try:
        result = vm.run(memory=memory)
    finally:
        vm.close()
    if tracer is not None:
        tracer.finish(result.r0)
    print(f"r0 = {result.r0:#x} ({result.r0})")
    print(f"executed {result.executed} instructions")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pybpf``."""
    from pybpf import asm
    from pybpf.cli import state as state_cli
    from pybpf.runtime.engines import NAMES as ENGINE_NAMES
    from pybpf.runtime.tag import ALGORITHMS as TAG_ALGORITHMS

    parser = argparse.ArgumentParser(prog="pybpf", description="eBPF in Python, in user space")
    parser.add_argument("-V", "--version", action="version", version=f"pybpf {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("asm", help="assemble text into bytecode")
    p.add_argument("file", help="assembly file, or - for standard input")
    p.add_argument("-d", "--dialect", choices=sorted(asm.DIALECTS), help="default: detected")
    p.add_argument("-o", "--output", help="write bytecode here (default: standard output)")
    p.add_argument("--hex", action="store_true", help="print base16 text instead of bytes")
    p.set_defaults(func=cmd_asm)

    p = sub.add_parser("disasm", help="disassemble bytecode")
    p.add_argument("file", help="bytecode file, or - for standard input")
    p.add_argument("-d", "--dialect", default="llvm", choices=sorted(asm.LISTINGS))
    p.add_argument("--hex", action="store_true", help="input is base16 text")
    p.set_defaults(func=cmd_disasm)

    p = sub.add_parser("run", help="run a program in the interpreter or the JIT")
    p.add_argument("file", help="bytecode, base16 (--hex) or assembly (.s) file")
    p.add_argument("-d", "--dialect", choices=sorted(asm.DIALECTS), help="input is assembly")
    p.add_argument("--hex", action="store_true", help="input is base16 text")
    p.add_argument("--mem", help="input memory as hex bytes (r1 = address, r2 = length)")
    p.add_argument("--mem-file", help="input memory from a file")
    add_budget_option(p)
    p.add_argument("--trace", action="store_true",
                   help="print each executed instruction and the registers it changed")
    p.add_argument("--trace-python", action="store_true", help="print the generated Python")
    p.add_argument("--engine", choices=ENGINE_NAMES, default="interp",
                   help="interp (default) or jit: native code through LLVM (checked mode)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("cc", help="compile eBPF C with clang -target bpf -g -O2")
    p.add_argument("file", help="a .bpf.c source")
    p.add_argument("-o", "--output", help="the object (default: the source with .o)")
    p.set_defaults(func=_cc)

    p = sub.add_parser("hello", help="the seed's hello program: load, list, run three times")
    p.add_argument("object", nargs="?", help="an object to use instead of hello.bpf.o")
    p.add_argument("--tag-algo", choices=TAG_ALGORITHMS, default=None,
                   help="program tags as Linux 6.18 (sha256, the default) or older kernels")
    p.set_defaults(func=_hello)

    state_cli.add_parser(sub)

    p = sub.add_parser("bench", help="interpreter throughput on loop-heavy programs")
    p.add_argument("--repeat", type=int, default=3)
    p.set_defaults(func=_bench)
    return parser


def _cc(args: argparse.Namespace) -> int:
    from pybpf.cli import cc

    print(cc.compile_c(args.file, args.output))
    return 0


def _hello(args: argparse.Namespace) -> int:
    from pybpf.cli import hello

    return hello.main(args.object, tag_algorithm=args.tag_algo)


def _bench(args: argparse.Namespace) -> int:
    from pybpf.testing import bench

    return bench.main(["--repeat", str(args.repeat)])


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pybpf``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    from pybpf.cli.bpftool.dispatch import dispatch, is_bpftool_command

    if is_bpftool_command(argv):
        return dispatch(argv)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PybpfError as err:
        message = " ".join(str(err).split())
        if isinstance(err, BudgetExceeded) and args.command == "run":
            from pybpf.vm.budget import exhausted_hint

            message += " " + exhausted_hint("--budget")
        sys.stderr.write(f"pybpf {args.command}: {message}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
