"""``pybpf state check`` and ``pybpf state repair``: the state store's fsck, on the command line.

``check`` prints ``state OK: ...`` and exits 0, or one line per inconsistency
and exits 1; ``repair`` prints what it moved aside, dropped and kept.
"""

from __future__ import annotations

import argparse
import sys

from pybpf.kernel import fsck, state


def cmd_state(args: argparse.Namespace) -> int:
    root = state.state_dir()
    if args.action == "check":
        report = fsck.check(root)
        for problem in report.problems:
            sys.stdout.write(f"{problem}\n")
        if not report.ok:
            sys.stdout.write(f"{len(report.problems)} problems; 'pybpf state repair' fixes "
                             f"them, keeping every intact object\n")  # fmt: skip
            return 1
        sys.stdout.write(f"state OK: {report.progs} programs, {report.maps} maps, "
                         f"{report.pins} pins in {root}\n")  # fmt: skip
        if report.unreachable:
            sys.stdout.write(f"unreachable, freed by the next writing command: "
                             f"{', '.join(report.unreachable)}\n")  # fmt: skip
        return 0
    for line in fsck.repair(root):
        sys.stdout.write(f"{line}\n")
    return 0


def add_parser(sub) -> None:
    """The ``state`` subcommand of ``pybpf``."""
    p = sub.add_parser("state", help="check or repair the state directory")
    p.add_argument("action", choices=("check", "repair"))
    p.set_defaults(func=cmd_state)
