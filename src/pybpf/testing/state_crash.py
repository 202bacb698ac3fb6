"""Killed commands against the state store (a stress run, and the crash test's engine).

``python -m pybpf.testing.state_crash [--commands N] [--seed S] [--object hello.bpf.o]``
runs N ``pybpf`` commands, one process each, in a fresh state directory (or
``$PYBPF_STATE_DIR``): map creates, map pins, map updates, program loads, XDP
attaches and detaches, and ``rm`` of pin files between commands.  Every third
command is SIGKILLed after a random delay.  Then it asks ``pybpf state check``
and verifies from the state itself that every pin names the object its command
made (each map has a unique name) and every update a command acknowledged (exit
status 0) is present.  It prints the problems, or ``ok``, and exits 1 or 0.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pybpf.errors import PybpfError

BPFFS = "/sys/fs/bpf/"


@dataclass
class Outcome:
    """What a run did and found."""

    commands: int = 0
    killed: int = 0
    acknowledged: int = 0
    problems: list[str] = field(default_factory=list)


def _command(i: int, rng: random.Random, made: dict[str, str], progs: list[str],
             obj: str) -> tuple[str, list[str], str | None]:  # fmt: skip
    """The i-th command: (kind, argv, the pin it targets)."""
    ops = ["create"] * 3 + ["update"] * 5 + ["pin"] if made else ["create"]
    ops += ["load", "attach", "detach"] if obj and made else []
    op = rng.choice(ops)
    if op == "create":
        path = f"{BPFFS}m{i}"
        made[path] = f"m{i}"
        return op, ["map", "create", path, "type", "hash", "key", "4", "value", "4",
                    "entries", "256", "name", f"m{i}"], path  # fmt: skip
    if op == "update":
        path = rng.choice(sorted(made))
        return op, ["map", "update", "pinned", path, "key", *_u32(i), "value", *_u32(i)], path
    if op == "pin":
        source = rng.choice(sorted(made))
        path = f"{BPFFS}a{i}"
        made[path] = made[source]
        return op, ["map", "pin", "pinned", source, path], path
    if op == "load":
        path = f"{BPFFS}p{i}"
        progs.append(path)
        return op, ["prog", "load", obj, path], path
    if op == "attach" and progs:
        return op, ["net", "attach", "xdp", "pinned", rng.choice(progs), "dev", "eth0",
                    "overwrite"], None  # fmt: skip
    return "detach", ["net", "detach", "xdp", "dev", "eth0"], None


def _u32(n: int) -> list[str]:
    return [str(b) for b in n.to_bytes(4, "little")]


def run(root: Path, *, commands: int, seed: int = 15, obj: str = "",
        kill_within: float = 0.8) -> Outcome:  # fmt: skip
    """Run the workload against the state directory ``root``; see the module docstring."""
    env = dict(os.environ, PYBPF_STATE_DIR=str(root))
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    rng = random.Random(seed)
    made: dict[str, str] = {}  # pin path -> the name of the map its command created
    progs: list[str] = []
    acked: dict[tuple[str, int], int] = {}  # (pin, key) -> value, acknowledged updates
    out = Outcome(commands=commands)
    for i in range(commands):
        op, argv, path = _command(i, rng, made, progs, obj)
        proc = subprocess.Popen([sys.executable, "-m", "pybpf.cli.main", *argv], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i % 3 == 1:
            time.sleep(rng.uniform(0.0, kill_within))
            proc.send_signal(signal.SIGKILL)
            out.killed += proc.poll() is None or proc.returncode == -signal.SIGKILL
        if proc.wait() == 0 and op == "update":
            acked[(path, i)] = i
        if made and rng.random() < 0.1:  # rm /sys/fs/bpf/X
            victim = rng.choice(sorted(made))
            (root / "bpffs" / victim[len(BPFFS):]).unlink(missing_ok=True)
            acked = {k: v for k, v in acked.items() if k[0] != victim}
    out.acknowledged = len(acked)
    out.problems = _verify(root, env, made, acked)
    return out


def _verify(root: Path, env: dict, made: dict[str, str], acked: dict) -> list[str]:
    from pybpf.kernel import state

    check = subprocess.run([sys.executable, "-m", "pybpf.cli.main", "state", "check"],
                           env=env, capture_output=True, text=True)  # fmt: skip
    problems = [] if check.returncode == 0 else check.stdout.splitlines()
    with state.session(root, write=False) as kernel:
        for path, obj in sorted(kernel.pins.items()):
            if path in made and getattr(obj, "name", None) != made[path]:
                problems.append(f"{path} names {obj.name}, made for {made[path]}")
        for (path, key), value in sorted(acked.items()):
            obj = kernel.pins.get(path)
            if obj is None:
                continue  # its map was never made (its create was killed) or was unpinned
            try:
                got = obj.lookup(key.to_bytes(4, "little"))
            except PybpfError as err:  # reported, not raised
                problems.append(f"{path}: acknowledged key {key} lost ({err})")
                continue
            if got != value.to_bytes(4, "little"):
                problems.append(f"{path}: key {key} holds {got.hex()}, acknowledged {value}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--object", default="", help="a .bpf.o with an XDP program to load")
    args = parser.parse_args(argv)
    root = Path(os.environ.get("PYBPF_STATE_DIR") or tempfile.mkdtemp()) / "state"
    from pybpf.kernel import state

    os.environ["PYBPF_STATE_DIR"] = str(root)
    state.state_dir()
    start = time.monotonic()
    out = run(root, commands=args.commands, seed=args.seed, obj=args.object)
    print(f"{out.commands} commands, {out.killed} killed, {out.acknowledged} acknowledged "
          f"updates checked, {time.monotonic() - start:.1f}s, state in {root}")
    for problem in out.problems:
        print(problem)
    print("ok" if not out.problems else f"{len(out.problems)} problems")
    return 1 if out.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
