"""The start time of ``pybpf prog list`` against Python's own (a benchmark, not a test).

Run ``python -m pybpf.testing.cli_start [OBJECT] [--progs N] [--repeat R]``.  In a fresh
state directory it times, best of ``R`` runs each, ``python -c pass`` and
``python -m pybpf.cli.main prog list`` with no program and with ``N`` pinned copies of
``OBJECT`` (default: the test fixture ``tests/fixtures/xdp_parser.bpf.o``, loaded with
``prog load OBJECT /sys/fs/bpf/pK``), and prints each time with its ratio to
``python -c pass``.  The target (issue "fast on the paths users take"): ``prog list``
with 20 programs pinned within 4x the start of ``python -c pass``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_OBJECT = "tests/fixtures/xdp_parser.bpf.o"


def best_time(argv: list[str], env: dict[str, str], repeat: int) -> float:
    """The best wall time of ``repeat`` runs of ``argv`` (its output discarded)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cli_start", description=__doc__.splitlines()[0])
    p.add_argument("object", nargs="?", default=DEFAULT_OBJECT, help="the object to pin")
    p.add_argument("--progs", type=int, default=20, help="programs pinned (default 20)")
    p.add_argument("--repeat", type=int, default=5, help="runs per figure (the best counts)")
    args = p.parse_args(argv)
    if not Path(args.object).is_file():
        p.error(f"no object {args.object} (run from the repository, or name one)")
    pybpf = [sys.executable, "-m", "pybpf.cli.main"]
    with tempfile.TemporaryDirectory(prefix="pybpf-cli-start-") as state:
        env = dict(os.environ, PYBPF_STATE_DIR=state)
        base = best_time([sys.executable, "-c", "pass"], env, args.repeat)
        rows = [("python -c pass", base)]
        rows.append(("prog list, 0 programs", best_time([*pybpf, "prog", "list"], env,
                                                         args.repeat)))  # fmt: skip
        for k in range(args.progs):
            subprocess.run([*pybpf, "prog", "load", args.object, f"/sys/fs/bpf/p{k}"],
                           env=env, check=True)  # fmt: skip
        rows.append((f"prog list, {args.progs} programs",
                     best_time([*pybpf, "prog", "list"], env, args.repeat)))  # fmt: skip
    for what, seconds in rows:
        print(f"{what:<26} {seconds * 1000:8.1f} ms  {seconds / base:6.1f}x python -c pass")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
