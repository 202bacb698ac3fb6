"""Hostile programs: the runs that must end by themselves, with a value or one clean error.

Four kinds of seeded random programs, none of them verified:

* ``wild``: loads, stores and atomics at random addresses and offsets (from
  r1 = the input memory, r10 = the stack, or a random 64-bit constant);
* ``garbage``: random 8-byte words (mostly refused by the decoder, some run);
* ``helper``: calls of unknown helper ids (``call N``, kfuncs, ``callx``);
* ``loop``: infinite loops, which only the instruction budget ends:
  ``ja -1``, backward conditional jumps whose condition always holds, loops
  with ALU work, stack and input-memory traffic, atomics, signed division,
  helper calls (``call 5``, ``callx``) and bpf-to-bpf calls; and a may_goto
  loop, which ends by itself after 2**23 iterations (r0 = 7).

:func:`programs` makes them; :func:`run_path` runs one the way a user would:
the conformance plugin exactly as bpf_conformance starts it (MEMORY and the
runner's option string as two arguments, the program as base16 on standard
input), or ``pybpf run``.  Used by tests/test_bounded_runs.py (a few
programs) and, as a script, for the full check with timings::

    .venv/bin/python tests/hostile.py [--count 150] [--jobs 2] [--seed 1] \
        [--kinds wild,garbage,helper,loop] [--paths plugin,plugin-jit,run-interp,run-jit]

which prints each path's outcome counts and its slowest run and exits 1 when
any run hangs (60 s guard), takes 10 s or more, prints a traceback, or ends
with anything but a value on standard output or exactly one line on standard
error.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pybpf.asm import ubpf
from pybpf.isa import Instruction, encode

KINDS = ("wild", "garbage", "helper", "loop")
HANG_GUARD = 60.0  # seconds: a run still going then has hung
TIME_LIMIT = 10.0  # seconds: every run must have ended by itself before this


def _executable(name: str, module: str) -> list[str]:
    """The installed console script beside this Python, else ``python -m module``."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


PLUGIN = _executable("pybpf-conformance-plugin", "pybpf.cli.conformance_plugin")
PYBPF = _executable("pybpf", "pybpf.cli.main")
PATHS = {
    "plugin": PLUGIN,  # its default engine: interp
    "plugin-jit": PLUGIN,
    "run-interp": [*PYBPF, "run", "--hex", "--engine", "interp"],
    "run-jit": [*PYBPF, "run", "--hex", "--engine", "jit"],
}
PLUGIN_OPTIONS = {"plugin": "", "plugin-jit": "--engine jit"}


@dataclass(frozen=True)
class Program:
    """One hostile program: its bytes and the input memory it runs with."""

    name: str
    kind: str
    code: bytes
    memory: bytes


@dataclass(frozen=True)
class Outcome:
    """How a run ended: ``value`` (r0 printed), ``error`` (one clean line) or ``bad``."""

    kind: str
    detail: str
    seconds: float


# --- the programs -------------------------------------------------------------------------


def _asm(text: str) -> bytes:
    return encode(ubpf.assemble(text))


_SIZES = ("b", "h", "w", "dw")
_ALU = ("add", "sub", "mul", "or", "and", "xor", "lsh", "rsh", "arsh")


def _wild(rng: random.Random) -> str:
    lines = [f"lddw %r0, {rng.getrandbits(64):#x}"]
    for _ in range(rng.randint(1, 6)):
        base = rng.choice(("%r1", "%r10", "%r0", "%r2"))
        off = rng.choice((0, 8, -8, rng.randint(-0x8000, 0x7FFF)))
        size = rng.choice(_SIZES)
        mem = f"[{base}{off:+d}]"
        op = rng.randrange(4)
        if op == 0:
            lines.append(f"ldx{size} %r3, {mem}")
        elif op == 1:
            lines.append(f"stx{size} {mem}, %r3")
        elif op == 2:
            lines.append(f"st{size} {mem}, {rng.randint(-1000, 1000)}")
        else:
            width = rng.choice(("", "32"))
            lines.append(f"lock {rng.choice(('add', 'or', 'xor', 'fetch add'))}{width} {mem}, %r3")
    return "\n".join([*lines, "mov %r0, 1", "exit"])


def _garbage(rng: random.Random) -> bytes:
    words = [rng.getrandbits(64).to_bytes(8, "little") for _ in range(rng.randint(1, 24))]
    if rng.random() < 0.5:  # a plausible exit now and then, so more of them decode and run
        words.append(bytes.fromhex("9500000000000000"))
    return b"".join(words)


def _helper(rng: random.Random) -> bytes:
    ident = rng.choice((rng.randint(6, 300), rng.randint(-(2**31), 2**31 - 1), 0, 1, 12))
    form = rng.randrange(3)
    if form == 0:  # call N (12 is bpf_tail_call, which the plugin has no resolver for)
        return _asm(f"mov %r1, 1\ncall {ident}\nexit") if ident != 5 else _asm("call 6\nexit")
    if form == 1:  # a kfunc: call with src_reg 2
        return encode([Instruction(0x85, 0, 2, 0, ident), Instruction(0x95)])
    # callx: the register holds a helper id (uBPF's convention)
    return encode([Instruction(0xB7, 6, 0, 0, ident if ident != 5 else 99),
                   Instruction(0x8D, 6), Instruction(0x95)])  # fmt: skip


_LOOPS = (
    "ja",
    "cond",
    "alu",
    "stack",
    "memory",
    "atomic",
    "sdiv",
    "call5",
    "callx",
    "local",
    "may_goto",
)


def _loop(rng: random.Random, shape: str) -> bytes:
    pad = "\n".join(f"{rng.choice(_ALU)} %r{rng.randint(2, 5)}, {rng.randint(1, 31)}"
                    for _ in range(rng.randint(0, 4)))  # fmt: skip
    if shape == "ja":
        return _asm(f"mov %r0, {rng.randint(0, 9)}\nl:\n{pad}\nja l\nexit")
    if shape == "cond":  # r0 is never changed in the loop, so the condition always holds
        k = rng.randint(1, 1000)
        jump = rng.choice((f"jne %r0, {k + 1}, l", f"jeq %r0, {k}, l", f"jge %r0, {k}, l",
                           f"jsle %r0, {k}, l", f"jset %r0, {k}, l", f"jlt %r0, {k + 1}, l"))
        return _asm(f"mov %r0, {k}\nl:\n{pad}\n{jump}\nexit")  # fmt: skip
    if shape == "alu":
        return _asm(f"mov %r6, 0\nl:\nadd %r6, 1\nxor %r7, %r6\nmul %r7, 3\n{pad}\nja l\nexit")
    if shape == "stack":
        return _asm("l:\nstxdw [%r10-8], %r6\nldxdw %r6, [%r10-8]\nadd %r6, 1\n"
                    "stxw [%r10-16], %r6\nja l\nexit")  # fmt: skip
    if shape == "memory":  # r1 = the input memory (8 bytes in these programs)
        return _asm("l:\nldxdw %r0, [%r1]\nadd %r0, 1\nstxdw [%r1], %r0\nja l\nexit")
    if shape == "atomic":
        return _asm("mov %r2, 1\nstdw [%r10-8], 0\nl:\nlock add [%r10-8], %r2\n"
                    "lock fetch xor [%r10-8], %r2\nja l\nexit")  # fmt: skip
    if shape == "sdiv":
        return _asm("mov %r0, -77\nl:\nsdiv %r0, 3\nsmod %r0, 7\nja l\nexit")
    if shape == "call5":
        return _asm(f"l:\n{pad}\nmov %r1, {rng.randint(0, 99)}\ncall 5\nja l\nexit")
    if shape == "callx":  # callx of helper 5 (uBPF's convention)
        return encode([Instruction(0xB7, 6, 0, 0, 5), Instruction(0x8D, 6),
                       Instruction(0x05, 0, 0, -2), Instruction(0x95)])  # fmt: skip
    if shape == "local":
        return _asm(f"l:\ncall local f\nja l\nexit\nf:\n{pad}\nexit")
    # may_goto falls through 2^23 times before it jumps; the budget ends the loop first
    return _asm("l:\nmay_goto out\nja l\nout:\nmov %r0, 7\nexit")


def programs(count: int = 150, seed: int = 1) -> list[Program]:
    """``count`` programs, the four kinds in turn (loops cycle through every shape)."""
    rng = random.Random(seed)
    out: list[Program] = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        memory = bytes(rng.getrandbits(8) for _ in range(rng.choice((0, 8, 8, 64))))
        if kind == "wild":
            code = _asm(_wild(rng))
        elif kind == "garbage":
            code = _garbage(rng)
        elif kind == "helper":
            code = _helper(rng)
        else:
            shape = _LOOPS[(i // len(KINDS)) % len(_LOOPS)]
            code, kind = _loop(rng, shape), f"loop-{shape}"
            memory = bytes(8)
        out.append(Program(f"{i:03d}-{kind}", kind.split("-")[0], code, memory))
    return out


def base16(data: bytes) -> str:
    """The runner's base16: bytes as two hex digits separated by spaces."""
    return " ".join(f"{b:02x}" for b in data)


# --- running ------------------------------------------------------------------------------


def run_path(path: str, program: Program, *, env: dict[str, str] | None = None,
             guard: float = HANG_GUARD) -> Outcome:  # fmt: skip
    """Run ``program`` through ``path`` (a key of PATHS) in a fresh process."""
    env = {**os.environ, **(env or {})}
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        if path.startswith("plugin"):
            # bpf_conformance: argv[1] = memory (empty when none), argv[2] = the options string
            argv = [*PATHS[path], base16(program.memory), PLUGIN_OPTIONS[path]]
            stdin = base16(program.code) + "\n"
        else:
            prog = Path(tmp, "prog.hex")
            prog.write_text(base16(program.code))
            argv = [*PATHS[path], str(prog)]
            if program.memory:
                argv += ["--mem", base16(program.memory)]
            stdin = ""
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                  timeout=guard, env=env)  # fmt: skip
        except subprocess.TimeoutExpired:
            return Outcome("bad", f"hung: still running after {guard:g} s",
                           time.monotonic() - start)  # fmt: skip
    return classify(path, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def classify(path: str, status: int, out: str, err: str, seconds: float) -> Outcome:
    """A value, one clean error line, or ``bad`` (with what was wrong)."""
    if "Traceback" in err or "Traceback" in out:
        return Outcome("bad", "traceback: " + err.strip().splitlines()[-1], seconds)
    if status == 0:
        lines = out.splitlines()
        ok = (len(lines) == 1 and _is_hex(lines[0]) if path.startswith("plugin")
              else bool(lines) and lines[0].startswith("r0 = "))  # fmt: skip
        if ok and not err:
            return Outcome("value", "", seconds)
        return Outcome("bad", f"status 0 with output {out!r} {err!r}", seconds)
    if err.count("\n") == 1 and err.endswith("\n") and not out:
        return Outcome("error", error_class(err), seconds)
    return Outcome("bad", f"status {status}, stdout {out!r}, stderr {err!r}", seconds)


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def error_class(message: str) -> str:
    """A short name for an error line (for the distribution)."""
    for needle, name in (("instruction budget", "budget"), ("invalid load", "memory"),
                         ("invalid store", "memory"), ("unknown helper", "unknown-helper"),
                         ("unknown kfunc", "unknown-helper"), ("tail-call", "unknown-helper"),
                         ("call depth", "call-depth"), ("fell off", "fell-off"),
                         ("opcode", "decode"), ("reserved field", "decode"),
                         ("invalid register", "decode"),
                         ("truncated", "decode"), ("jump", "decode"), ("lddw", "decode"),
                         ("not a function", "bad-call")):  # fmt: skip
        if needle in message.lower():
            return name
    return "other: " + message.strip()[:60]


def main(argv: list[str] | None = None) -> int:
    """Run the full check and print the distribution; 1 when a run misbehaved."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (load on the machine)")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--kinds", default=",".join(KINDS), help="run only these kinds")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    progs = [p for p in programs(args.count, args.seed) if p.kind in kinds]
    paths = args.paths.split(",")
    jobs = [(path, prog) for prog in progs for path in paths]
    print(f"{len(progs)} programs ({dict(Counter(p.kind for p in progs))}) x {len(paths)} paths, "
          f"{args.jobs} at a time")  # fmt: skip
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda job: (job, run_path(*job)), jobs))
    failed = 0
    for path in paths:
        mine = [(prog, out) for (p, prog), out in results if p == path]
        slowest = max(mine, key=lambda r: r[1].seconds)
        counts = Counter(out.kind if out.kind != "error" else f"error:{out.detail}"
                         for _, out in mine)  # fmt: skip
        print(f"\n{path}: max {slowest[1].seconds:.2f} s ({slowest[0].name}), "
              f"mean {sum(o.seconds for _, o in mine) / len(mine):.2f} s")  # fmt: skip
        for name, n in sorted(counts.items()):
            print(f"  {n:4d}  {name}")
        times = sorted(o.seconds for _, o in mine)
        quantiles = (f"p{q} {times[min(len(times) - 1, len(times) * q // 100)]:.2f}"
                     for q in (50, 90, 99))  # fmt: skip
        print("  seconds: " + ", ".join(quantiles))
        for prog, out in mine:
            if out.kind == "bad" or out.seconds >= TIME_LIMIT:
                failed += 1
                print(f"  FAIL {prog.name}: {out.kind} {out.detail} ({out.seconds:.2f} s)")
    loops = [(prog, out) for (p, prog), out in results if prog.kind == "loop"]
    by_shape: dict[str, float] = {}
    for (path, prog), out in results:
        if prog.kind == "loop":
            key = f"{path} {prog.name.split('-', 2)[2]}"
            by_shape[key] = max(by_shape.get(key, 0.0), out.seconds)
    print("\nslowest loop per path and shape (s):")
    for key in sorted(by_shape):
        print(f"  {key:24} {by_shape[key]:6.2f}")
    print(f"\n{len(results)} runs ({len(loops)} of loops) in {time.monotonic() - started:.0f} s; "
          f"{failed} failed")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
