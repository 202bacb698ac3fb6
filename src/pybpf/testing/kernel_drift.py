"""Every recorded kernel fact the running kernel answers differently, in one run.

Usage (from a checkout, as root, where bpf(2) works)::

    python -m pybpf.testing.kernel_drift             # the tests that ask kernel facts
    python -m pybpf.testing.kernel_drift --json      # the same as JSON
    python -m pybpf.testing.kernel_drift -k verifier # only some tests (pytest's -k)

It runs the tests marked ``kernel`` (those using recorded kernel facts) with the live
comparison on, and lists each drifted fact: the recorded and the live answer, the kernels
they came from, and the project's decision about it (``tests/kernel_facts/decisions.json``:
pybpf follows the recording or the newer kernel).  Exit status: 0 without drift, 1 with
drift (listed), 2 when the live kernel or the tests cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pybpf.runtime import model
from pybpf.testing import kernel_facts

TESTS = Path(__file__).resolve().parents[3] / "tests"


def run(tests: Path, select: str | None) -> dict:
    """The drift document the test plugin writes, after running the kernel tests."""
    with tempfile.TemporaryDirectory(prefix="pybpf-drift-") as tmp:
        out = Path(tmp) / "drift.json"
        cmd = [sys.executable, "-m", "pytest", str(tests), "-q", "-m", "kernel",
               "-p", "no:cacheprovider", "--kernel-drift-json", str(out)]
        if select:
            cmd += ["-k", select]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if not out.exists():
            raise RuntimeError(f"the tests did not run: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        doc = json.loads(out.read_text(encoding="utf-8"))
        doc["summary"] = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        return doc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pybpf.testing.kernel_drift",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=Path, default=TESTS, help="the tests directory")
    parser.add_argument("-k", dest="select", help="only the tests pytest's -k selects")
    parser.add_argument("--json", action="store_true", help="print the drift as JSON")
    args = parser.parse_args(argv)
    stamp = kernel_facts.live_stamp()
    if stamp is None:
        print("kernel_drift: bpf(2) cannot load programs here (run as root on Linux)",
              file=sys.stderr)
        return 2
    if not args.tests.is_dir():
        print(f"kernel_drift: no tests at {args.tests} (run from a checkout)", file=sys.stderr)
        return 2
    try:
        doc = run(args.tests, args.select)
    except RuntimeError as err:
        print(f"kernel_drift: {err}", file=sys.stderr)
        return 2
    drifts = list({d["fact"]: d for d in doc["drifts"]}.values())  # tests may share facts
    doc["drifts"] = drifts
    if args.json:
        print(json.dumps(doc, indent=1))
        return 1 if drifts else 0
    print(model.describe())
    print(f"live: {stamp}; tests: {doc['summary']}")
    print(f"{len(drifts)} recorded facts drift on the live kernel")
    by_why: dict[tuple, list[dict]] = {}
    for drift in drifts:
        by_why.setdefault((drift["follow"], drift["why"]), []).append(drift)
    for (follow, why), group in sorted(by_why.items(), key=lambda kv: str(kv[0])):
        head = f"follow the {follow} kernel: {why}" if follow else "no decision yet"
        print(f"\n{len(group)} facts, {head}")
        for drift in group:
            where, recorded, live = kernel_facts.first_difference(drift["recorded"], drift["live"])
            print(f"  {drift['fact']}{where}: recorded {_short(recorded)} "
                  f"({drift['recorded_on']}), live {_short(live)}")
    decisions = kernel_facts.load_decisions(args.tests / "kernel_facts" / kernel_facts.DECISIONS)
    quiet = [d for d in decisions if (d.follow, d.why) not in by_why]
    for decision in quiet:
        print(f"\nno drift here, decided to follow the {decision.follow} kernel "
              f"({', '.join(decision.patterns)}): {decision.why}")
    return 1 if drifts else 0


def _short(value: object, limit: int = 90) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
