"""``pybpf-conformance-plugin``: the bpf_conformance runner's plugin protocol.

The runner starts the plugin once per test::

    pybpf-conformance-plugin [MEMORY] [OPTIONS] < PROGRAM

MEMORY (optional first argument) and PROGRAM (standard input) are base16
text: hex bytes separated by whitespace.  OPTIONS are ``--engine NAME`` and
``--budget N``; the runner passes its ``--plugin_options`` as one argument
(and MEMORY as an empty one when the test has none), which the plugin splits.
The program runs with r1 = the memory's address and r2 = its length; r0 is
printed in hex (no prefix) on standard output and the exit status is 0.

The program is not verified, so it runs under an instruction budget:
``--budget N``, else ``$PYBPF_BUDGET``, else
:data:`~pybpf.vm.budget.DEFAULT_BUDGET`; a program that loops forever ends
with a budget error in seconds.  On any error the plugin prints exactly one
line on standard error (never a traceback) and exits with status 1 (2 for
bad arguments, 130 when interrupted).  Helper 5 returns its first argument,
as the suite expects.  ``--elf`` (programs as ELF objects) is refused until
the object loader exists.
"""

from __future__ import annotations

import argparse
import sys

from pybpf.cli import add_budget_option
from pybpf.errors import BudgetExceeded, PybpfError
from pybpf.isa import decode
from pybpf.runtime.engines import ENGINES
from pybpf.vm import conformance_helpers
from pybpf.vm.budget import (
    BUDGET_ENV,
    budget_from_env,
    exhausted_hint,
)

PROG = "pybpf-conformance-plugin"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as argparse does, without usage noise
        sys.stderr.write(f"{PROG}: {message}\n")
        raise SystemExit(2)


def _runner_argv(argv: list[str]) -> list[str]:
    """``argv`` as argparse wants it: the runner's option string split, empty arguments dropped.

    bpf_conformance passes MEMORY (possibly empty) and then ``--plugin_options``
    as a single argument (possibly empty, possibly ``"--engine jit"``).
    MEMORY never starts with a dash, so an argument that does is options.
    """
    out: list[str] = []
    for arg in argv:
        if arg.lstrip().startswith("-"):
            out.extend(arg.split())
        elif arg.strip():
            out.append(arg)
    return out


def _base16(text: str, what: str) -> bytes:
    try:
        return bytes(int(token, 16) for token in text.split())
    except ValueError:
        raise PybpfError(f"{what} is not base16 text") from None


def _one_line(text: str) -> str:
    return " ".join(text.split()) + "\n"


def main(argv: list[str] | None = None, stdin=None, stdout=None, stderr=None) -> int:
    """Run one program; returns the exit status (see the module docstring)."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    parser = _Parser(prog=PROG, add_help=True)
    parser.add_argument("memory", nargs="?", default="", help="input memory as base16 text")
    parser.add_argument("--engine", default="interp", choices=sorted(ENGINES))
    add_budget_option(parser)
    parser.add_argument("--elf", action="store_true", help="program is an ELF object (refused)")
    args = parser.parse_args(_runner_argv(sys.argv[1:] if argv is None else argv))
    try:
        r0 = _run(args, stdin)
    except BudgetExceeded as err:
        stderr.write(_one_line(f"{err} {exhausted_hint(f'--budget or ${BUDGET_ENV}')}"))
        return 1
    except PybpfError as err:
        stderr.write(_one_line(str(err)))
        return 1
    except KeyboardInterrupt:
        stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as err:  # a bug in pybpf: still one line and status 1, no traceback
        stderr.write(_one_line(f"{PROG}: internal error: {type(err).__name__}: {err}"))
        return 1
    stdout.write(f"{r0:x}\n")
    return 0


def _run(args: argparse.Namespace, stdin) -> int:
    if args.elf:
        raise PybpfError("--elf is not supported: pass raw bytecode")
    budget = args.budget if args.budget is not None else budget_from_env()
    memory = _base16(args.memory, "memory")
    program = _base16(stdin.read(), "program")
    return ENGINES[args.engine](decode(program), memory, conformance_helpers(), budget=budget)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
