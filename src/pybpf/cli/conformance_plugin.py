"""``pybpf-conformance-plugin``: the bpf_conformance runner's plugin protocol.

The runner starts the plugin once per test::

    pybpf-conformance-plugin [MEMORY] [--engine NAME] < PROGRAM

MEMORY (optional first argument) and PROGRAM (standard input) are base16
text: hex bytes separated by whitespace.  The program runs with r1 = the
memory's address and r2 = its length; r0 is printed in hex (no prefix) on
standard output and the exit status is 0.  On any error the plugin prints one
line on standard error and exits with status 1 (2 for bad arguments).
Helper 5 returns its first argument, as the suite expects.  ``--elf``
(programs as ELF objects) is refused until the object loader exists.
"""

from __future__ import annotations

import argparse
import sys

from pybpf.errors import PybpfError
from pybpf.isa import decode
from pybpf.runtime.engines import ENGINES
from pybpf.vm import conformance_helpers


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as argparse does, without usage noise
        sys.stderr.write(f"pybpf-conformance-plugin: {message}\n")
        raise SystemExit(2)


def _base16(text: str, what: str) -> bytes:
    try:
        return bytes(int(token, 16) for token in text.split())
    except ValueError:
        raise PybpfError(f"{what} is not base16 text") from None


def main(argv: list[str] | None = None, stdin=None, stdout=None, stderr=None) -> int:
    """Run one program; returns the exit status (see the module docstring)."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    parser = _Parser(prog="pybpf-conformance-plugin", add_help=True)
    parser.add_argument("memory", nargs="?", default="", help="input memory as base16 text")
    parser.add_argument("--engine", default="interp", choices=sorted(ENGINES))
    parser.add_argument("--elf", action="store_true", help="program is an ELF object (refused)")
    args = parser.parse_args(argv)
    try:
        if args.elf:
            raise PybpfError("--elf is not supported: pass raw bytecode")
        memory = _base16(args.memory, "memory")
        program = _base16(stdin.read(), "program")
        r0 = ENGINES[args.engine](decode(program), memory, conformance_helpers())
    except PybpfError as err:
        stderr.write(" ".join(str(err).split()) + "\n")
        return 1
    stdout.write(f"{r0:x}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
