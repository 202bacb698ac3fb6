"""Three processes on one state: a feed, a watcher, and a pinner (a benchmark and a test).

``python -m pybpf.testing.state_live OBJECT [--packets N] [--map stats]`` loads the
XDP program of OBJECT (pinned, its maps pinned under ``/sys/fs/bpf/live_maps``),
attaches it to eth0 and starts ``pybpf net feed dev eth0 packets N``.  Meanwhile
this process reads the array map every 100 ms through its own mapping of the
map's memory (the watcher), and a child process pins, unpins and lists in a
loop, timing how long each wait for the writers' lock lasts (the pinner).  It
reports the counts the watcher saw, the final sum against N, and the longest
lock wait.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MAPS = "/sys/fs/bpf/live_maps"


@dataclass
class Live:
    """What a run saw."""

    packets: int
    seen: list[int] = field(default_factory=list)  # the watcher's sums, every 100 ms
    final: int = 0
    feed_status: int = 0
    pinner_rounds: int = 0
    longest_lock_wait: float = 0.0


def _cli(env: dict, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pybpf.cli.main", *argv], env=env,
                          capture_output=True, text=True, check=check)  # fmt: skip


def run(root: Path, obj: str, *, packets: int, map_name: str = "stats",
        interval: float = 0.1) -> Live:  # fmt: skip
    """Run the three processes against the state directory ``root``."""
    from pybpf.kernel import state

    env = dict(os.environ, PYBPF_STATE_DIR=str(root))
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    _cli(env, "prog", "load", obj, "/sys/fs/bpf/live", "pinmaps", MAPS)
    _cli(env, "net", "attach", "xdp", "pinned", "/sys/fs/bpf/live", "dev", "eth0")
    live = Live(packets=packets)
    stop = root / "stop"
    pinner = subprocess.Popen([sys.executable, "-c", _PINNER, str(root), str(stop)], env=env,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    feed = subprocess.Popen([sys.executable, "-m", "pybpf.cli.main", "net", "feed", "dev",
                             "eth0", "packets", str(packets)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        with state.session(root, write=False) as kernel:
            counters = kernel.pins[f"{MAPS}/{map_name}"]
            while feed.poll() is None:
                live.seen.append(_sum(counters))
                time.sleep(interval)
            live.feed_status = feed.wait()
            live.final = _sum(counters)
    finally:
        feed.kill()
        stop.touch()
        out, _ = pinner.communicate(timeout=120)
    rounds, longest = out.split()
    live.pinner_rounds, live.longest_lock_wait = int(rounds), float(longest)
    return live


def _sum(m) -> int:
    total = 0
    for index in range(m.max_entries):
        value = m.lookup(index.to_bytes(4, "little"))
        total += sum(int.from_bytes(value[i:i + 8], "little") for i in range(0, len(value), 8))
    return total


# the pinner: pin, list, unpin in a loop; prints its rounds and the longest lock wait
_PINNER = """
import fcntl, os, subprocess, sys, time
root, stop = sys.argv[1], sys.argv[2]
cli = [sys.executable, "-m", "pybpf.cli.main"]
rounds, longest = 0, 0.0
while not os.path.exists(stop):
    with open(os.path.join(root, "lock"), "a+") as lock:
        start = time.monotonic()
        fcntl.flock(lock, fcntl.LOCK_EX)
        longest = max(longest, time.monotonic() - start)
    for argv in (["map", "pin", "pinned", "/sys/fs/bpf/live_maps/stats", "/sys/fs/bpf/extra"],
                 ["prog", "list"]):
        subprocess.run(cli + argv, capture_output=True)
    if os.path.exists(os.path.join(root, "bpffs", "extra")):
        os.unlink(os.path.join(root, "bpffs", "extra"))
    rounds += 1
print(rounds, longest)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("object", help="a .bpf.o whose XDP program counts into an array")
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--map", default="stats", help="the array of counters to watch")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp()) / "state"
    os.environ["PYBPF_STATE_DIR"] = str(root)
    from pybpf.kernel import state

    state.state_dir()
    start = time.monotonic()
    live = run(root, str(Path(args.object).resolve()), packets=args.packets, map_name=args.map)
    grew = sum(b > a for a, b in zip(live.seen, live.seen[1:], strict=False))
    print(f"{live.packets} packets in {time.monotonic() - start:.1f}s (feed exit "
          f"{live.feed_status}); the watcher read {len(live.seen)} times, saw the count grow "
          f"{grew} times, last {live.seen[-1] if live.seen else 0}; final count {live.final}; "
          f"the pinner made {live.pinner_rounds} rounds, longest lock wait "
          f"{live.longest_lock_wait * 1000:.1f} ms")  # fmt: skip
    ok = live.final == live.packets and live.feed_status == 0
    print("ok" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
