"""Loading an object from the command line with the verifier's log, as bpftool and libbpf do.

``-d`` (bpftool's debug) asks the kernel for its full log (levels 1 and 2
with statistics); pybpf's ``--log-level 1|2`` picks a level.  A log asked
for is printed after a successful load between libbpf's ``-- BEGIN PROG LOAD
LOG --`` markers.  A refusal is printed as libbpf prints it — libbpf loads
again at level 1 to have a log — and above it pybpf's report for people:
the source line, the path that led there and a hint.  There is no log
buffer to size: the log is never truncated.
"""

from __future__ import annotations

import errno as errno_mod
import os

from pybpf.cli.bpftool.common import CommandError, Ctx
from pybpf.errors import PybpfError, VerifierError


def log_level(ctx: Ctx) -> int:
    """The verifier log level the command line asked for (0 when none)."""
    if ctx.log_level is not None:
        return ctx.log_level
    return 2 if ctx.debug else 0


def load_with_log(ctx: Ctx, spec, kernel):
    """``load_object(spec, kernel)`` with the log level asked for; prints logs and refusals."""
    from pybpf.loader import load_object

    level = log_level(ctx)
    try:
        coll = load_object(spec, kernel, log_level=level)
    except VerifierError as err:
        if not err.log:  # libbpf: retry at level 1 so the user sees why
            try:
                load_object(spec, kernel, log_level=1)
            except VerifierError as again:
                err = again
            except PybpfError:
                pass
        _print_refusal(ctx, spec, err)
        raise CommandError("failed to load object file") from None
    except PybpfError as err:
        raise CommandError(f"failed to load object file: {err}") from None
    if level:
        for name, prog in coll.programs.items():
            verdict = getattr(prog, "verdict", None)
            if verdict is not None and verdict.log:
                _print_log(ctx, name, verdict.log)
    return coll


def _print_log(ctx: Ctx, name: str, log: str) -> None:
    ctx.err.write(f"libbpf: prog '{name}': -- BEGIN PROG LOAD LOG --\n{log.rstrip()}\n"
                  "-- END PROG LOAD LOG --\n")  # fmt: skip


def _print_refusal(ctx: Ctx, spec, err: VerifierError) -> None:
    name = _failed_program(spec, err)
    if err.report:
        ctx.err.write(err.report.rstrip() + "\n\n")
    code = err.errno or errno_mod.EACCES
    ctx.err.write(f"libbpf: prog '{name}': BPF program load failed: {os.strerror(code)}\n")
    if err.log:
        _print_log(ctx, name, err.log)
    ctx.err.write(f"libbpf: prog '{name}': failed to load: -{code}\n")
    ctx.err.write(f"libbpf: failed to load object '{spec.name}'\n")


def _failed_program(spec, err: VerifierError) -> str:
    text = str(err)
    for prog in spec.programs:
        if f"program {prog.name!r}" in text:
            return prog.name
    return spec.programs[0].name if spec.programs else "?"
