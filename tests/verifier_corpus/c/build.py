#!/usr/bin/env python3
"""Build the corpus's C programs (``*.bpf.c`` here) into the committed ``*.bpf.o``.

    python tests/verifier_corpus/c/build.py           # rebuild every object next to its source
    python tests/verifier_corpus/c/build.py --check   # rebuild in a temp dir, compare bytes

The command is the C fixtures' (tests/fixtures/build.py): ``clang -target bpf -g -O2``
run in this directory on the bare file name with the debug compilation directory ".",
so the objects do not depend on where the checkout lives; two builds must give the
same bytes.  clang 14 wrote the committed objects (another version gives other bytes,
and may compile an unsafe variant into a different program).
"""

from __future__ import annotations

import argparse
import filecmp
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def sources() -> list[Path]:
    """Every C program of the corpus, sorted by name."""
    return sorted(HERE.glob("*.bpf.c"))


def clang_command(src: Path, out: Path) -> list[str]:
    """The compile command for ``src`` (run with cwd = this directory)."""
    include = Path("/usr/include") / f"{platform.machine()}-linux-gnu"
    return [
        "clang", "-target", "bpf", f"-I{include}", "-g", "-O2", "-Wno-unused-value",
        f"-fdebug-prefix-map={HERE}=.", "-fdebug-compilation-dir=.",
        "-c", src.name, "-o", str(out),
    ]  # fmt: skip


def build_into(dest: Path) -> None:
    """Compile every source into ``dest``; RuntimeError with clang's message on failure."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in sources():
        out = dest / src.with_suffix(".o").name
        proc = subprocess.run(clang_command(src, out), cwd=HERE, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"clang failed on {src.name}:\n{proc.stderr}")


def differences(left: Path, right: Path) -> list[str]:
    """Objects that differ or are missing between two directories."""
    problems = []
    for src in sources():
        name = src.with_suffix(".o").name
        a, b = left / name, right / name
        if not a.exists() or not b.exists():
            problems.append(f"{name}: missing")
        elif not filecmp.cmp(a, b, shallow=False):
            problems.append(f"{name}: differs")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed objects")
    args = parser.parse_args(argv)
    if shutil.which("clang") is None:
        print("clang is not installed", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pybpf-corpus-") as tmp:
        first, second = Path(tmp, "a"), Path(tmp, "b")
        build_into(first)
        if args.check:
            problems = differences(first, HERE)
            print("\n".join(problems) or f"{len(sources())} objects match their sources")
            return 1 if problems else 0
        build_into(second)
        problems = differences(first, second)
        if problems:
            print("two builds differ: " + "; ".join(problems), file=sys.stderr)
            return 1
        for src in sources():
            shutil.copyfile(first / src.with_suffix(".o").name, HERE / src.with_suffix(".o").name)
    print(f"built {len(sources())} objects")
    return 0


if __name__ == "__main__":
    sys.exit(main())
