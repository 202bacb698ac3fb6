"""Recorded kernel facts: what a kernel answered, stamped with the kernel that answered it.

The tests compare pybpf with facts recorded from a real kernel and committed with the
code, not with whatever kernel the test machine runs: the same ``uname -r`` has shipped
verifiers that answer differently.  A fact is a JSON value under a key in a fact file
(``tests/kernel_facts/NAME.json``); each fact names the kernel it came from by a
:class:`Stamp` (the release and a fingerprint of the kernel's behaviour, see
:func:`fingerprint`).

Where bpf(2) works, each fact is also asked of the live kernel.  A live answer that
differs from the recording is a :class:`Drift`: reported (by the test plugin and by
``python -m pybpf.testing.kernel_drift``), never a failure, and annotated with the
project's :class:`Decision` about it when one is written down
(``tests/kernel_facts/decisions.json``): follow the recording, or follow the newer kernel.

A fact file::

    {"kernels": {"<fingerprint>": {"release": "6.18.44", "recorded": "2026-12-07"}},
     "facts": {"<key>": {"kernel": "<fingerprint>", "value": <JSON>}}}
"""

from __future__ import annotations

import datetime
import errno as errno_mod
import fnmatch
import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pybpf.errors import KernelError, PybpfError

#: Recordings made before facts carried stamps: Linux 6.18.44 as first recorded (a build
#: that allows bpf_xdp_adjust_meta in XDP programs, as mainline 6.18 does).
LEGACY = "pre-stamp"


class FactError(PybpfError):
    """A fact file that cannot be read, or a fact that was never recorded."""


@dataclass(frozen=True)
class Stamp:
    """The kernel a fact came from: ``uname -r`` and a fingerprint of its behaviour."""

    release: str
    fingerprint: str

    def __str__(self) -> str:
        return f"Linux {self.release} ({self.fingerprint})"


# --- values -----------------------------------------------------------------------------


def canonical(value: Any) -> Any:
    """``value`` as JSON keeps it: bytes as ``{"hex": ...}``, tuples as lists, str keys."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    raise TypeError(f"a kernel fact must be JSON-like, not {type(value).__name__}")


def outcome(probe: Callable[[], Any]) -> Any:
    """What ``probe`` answers, or the kernel's refusal as ``{"errno": NAME}``."""
    try:
        return canonical(probe())
    except KernelError as err:
        return {"errno": errno_mod.errorcode.get(err.errno or 0, str(err.errno))}


# --- the fact file -------------------------------------------------------------------------


@dataclass
class FactFile:
    """One file of recorded facts (see the module docstring for its shape)."""

    path: Path
    kernels: dict[str, dict[str, str]] = field(default_factory=dict)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    dirty: bool = False

    @classmethod
    def load(cls, path: str | Path) -> FactFile:
        path = Path(path)
        if not path.exists():
            return cls(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            kernels, facts = doc["kernels"], doc["facts"]
            if not isinstance(kernels, dict) or not isinstance(facts, dict):
                raise TypeError("kernels and facts must be objects")
            for key, entry in facts.items():
                if entry.get("kernel") not in kernels or "value" not in entry:
                    raise ValueError(f"fact {key!r} lacks a known kernel or a value")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise FactError(f"{path}: not a kernel fact file: {err}") from None
        return cls(path, kernels, facts)

    def get(self, key: str) -> tuple[Any, Stamp] | None:
        entry = self.facts.get(key)
        if entry is None:
            return None
        fp = entry["kernel"]
        return entry["value"], Stamp(self.kernels[fp]["release"], fp)

    def put(self, key: str, value: Any, stamp: Stamp) -> None:
        if self.facts.get(key) == {"kernel": stamp.fingerprint, "value": value}:
            return
        self.kernels.setdefault(stamp.fingerprint, {
            "release": stamp.release, "recorded": datetime.date.today().isoformat()})
        self.facts[key] = {"kernel": stamp.fingerprint, "value": value}
        self.dirty = True

    def save(self) -> None:
        """Write the file (atomically: a killed recording leaves the old file whole)."""
        if not self.dirty:
            return
        used = {e["kernel"] for e in self.facts.values()}
        kernels = {fp: k for fp, k in sorted(self.kernels.items()) if fp in used}
        # one fact per line: a re-recording shows in a diff as the facts that changed
        facts = ",\n".join(f"  {json.dumps(k)}: {json.dumps(e, sort_keys=True)}"
                           for k, e in sorted(self.facts.items()))
        head = json.dumps(kernels, sort_keys=True)
        text = f'{{"kernels": {head},\n "facts": {{\n{facts}\n }}}}\n'
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)
        self.dirty = False


# --- decisions and drift -----------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What pybpf does where kernels differ: ``follow`` is "recorded" or "live"."""

    patterns: tuple[str, ...]  # fnmatch patterns over "file/key"
    follow: str
    why: str

    def covers(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)


DECISIONS = "decisions.json"  # the decisions, filed beside the fact files they cover


@functools.cache
def _decisions_in(folder: Path) -> tuple[Decision, ...]:
    return tuple(load_decisions(folder / DECISIONS))


def load_decisions(path: str | Path) -> list[Decision]:
    path = Path(path)
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["decisions"]
        out = [Decision(tuple([r["facts"]] if isinstance(r["facts"], str) else r["facts"]),
                        r["follow"], r["why"]) for r in rows]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FactError(f"{path}: not a decisions file: {err}") from None
    if bad := [d.patterns for d in out if d.follow not in ("recorded", "live")]:
        raise FactError(f"{path}: follow must be 'recorded' or 'live' ({bad})")
    return out


def decision_for(decisions: list[Decision], name: str) -> Decision | None:
    return next((d for d in decisions if d.covers(name)), None)


@dataclass(frozen=True)
class Drift:
    """A fact the live kernel answers differently from its recording."""

    name: str  # "file/key"
    recorded: Any
    recorded_on: Stamp
    live: Any
    live_on: Stamp
    decision: Decision | None = None

    def line(self) -> str:
        where, recorded, live = first_difference(self.recorded, self.live)
        text = (f"{self.name}{where}: recorded {_short(recorded)} on {self.recorded_on}, "
                f"live {_short(live)} on {self.live_on}")
        if self.decision:
            text += f" [pybpf follows the {self.decision.follow} kernel]"
        return text

    def as_json(self) -> dict[str, Any]:
        return {"fact": self.name, "recorded": self.recorded, "live": self.live,
                "recorded_on": str(self.recorded_on), "live_on": str(self.live_on),
                "follow": self.decision.follow if self.decision else None,
                "why": self.decision.why if self.decision else None}


def first_difference(a: Any, b: Any, where: str = "") -> tuple[str, Any, Any]:
    """Where two JSON values first differ (``[2]["log"]``-style) and the two parts there."""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return first_difference(x, y, f"{where}[{i}]")
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        for k in a:
            if a[k] != b[k]:
                return first_difference(a[k], b[k], f"{where}[{k!r}]")
    return where, a, b


def _short(value: Any, limit: int = 100) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Oracle:
    """Facts of one file, answered from the recording and checked against a live kernel.

    ``live`` is the live kernel's stamp (None: no bpf(2), only the recording counts);
    ``record`` re-records every fact asked (as :func:`outcome` gives it), except facts
    whose decision is to follow the recording.
    """

    def __init__(self, file: FactFile, *, live: Stamp | None, record: bool = False,
                 decisions: list[Decision] = ()) -> None:  # fmt: skip
        if record and live is None:
            raise FactError("recording kernel facts needs bpf(2) (root on Linux)")
        self.file, self.live, self.record = file, live, record
        self.decisions = list(decisions)
        self.drifts: list[Drift] = []

    @classmethod
    def beside(cls, file: FactFile, *, record: bool = False) -> Oracle:
        """An oracle over ``file`` with the live kernel's stamp and the decisions filed
        beside it (:data:`DECISIONS`, read once per process)."""
        return cls(file, live=live_stamp(), record=record,
                   decisions=list(_decisions_in(file.path.parent.resolve())))

    def name(self, key: str) -> str:
        return f"{self.file.path.stem}/{key}"

    def fact(self, key: str, probe: Callable[[], Any]) -> Any:
        """The recorded answer to ``probe`` under ``key`` (see the class docstring)."""
        recorded = self.file.get(key)
        decision = decision_for(self.decisions, self.name(key))
        keep = decision is not None and decision.follow == "recorded"
        if self.record and self.live is not None and not (keep and recorded is not None):
            value = outcome(probe)
            self.file.put(key, value, self.live)
            return value
        if recorded is None:
            raise FactError(f"{self.name(key)} was never recorded: run the test as root with "
                            "--record-kernel on the kernel pybpf models")
        value, stamp = recorded
        if self.live is not None:
            live = outcome(probe)
            if live != value:
                self.drifts.append(Drift(self.name(key), value, stamp, live, self.live, decision))
        return value

    def offline_when(self, why_not: str | None) -> Oracle:
        """This oracle, answering from the recording alone when ``why_not`` says why the
        probes cannot ask the live side (bpftool missing, say); recording then fails."""
        if why_not is not None and self.live is not None:
            if self.record:
                raise FactError(f"cannot record {self.file.path.stem} facts here: {why_not}")
            self.live = None
        return self

    def check(self, key: str, ours: Any, probe: Callable[[], Any]) -> None:
        """Assert that pybpf's answer ``ours`` is the kernel's recorded answer to ``probe``."""
        mine = canonical(ours)
        theirs = self.fact(key, probe)
        if mine != theirs:
            stamp = self.file.get(key)
            on = f" on {stamp[1]}" if stamp else ""
            raise AssertionError(f"{self.name(key)}: pybpf {_short(mine)}, "
                                 f"the kernel{on} {_short(theirs)}")


# --- the fingerprint ---------------------------------------------------------------------

#: Program types whose helper sets the fingerprint covers (enum bpf_prog_type).
_FP_TYPES = (1, 2, 3, 5, 6, 7, 8, 17)
_FP_HELPERS = range(1, 212)
_FP_PROGRAMS = {
    # sign-extending moves of a signed range: how precisely the verifier tracks them
    "movsx": "call 7\nr0 &= 255\nr0 += -128\nr0 = (s16)r0\nr1 = (s32)r0\nr0 = 0\nexit",
    # 8193 pending branches: the errno of "The sequence of ... jumps is too complex."
    "jumps": "call 7\nr6 = r0\nr0 = 0\nif r6 == 0 goto +3\nr6 -= 1\nr0 += 1\ngoto -4\nexit",
    # a kprobe with 520 bytes of combined stack: fits only with a private stack
    "priv_stack": "*(u64 *)(r10 - 256) = r1\ncall local +2\nr0 = 0\nexit\n"
                  "*(u64 *)(r10 - 264) = r1\nr0 = 0\nexit",
}


def probe() -> dict[str, Any]:
    """The facts the fingerprint hashes: helper sets per program type, sentinel logs.

    Raises :class:`KernelError` (or ``KernelUnavailable``) without bpf(2).
    """
    from pybpf.asm import llvm
    from pybpf.kernel import linux

    if (why := linux.available()) is not None:
        raise KernelError(f"bpf(2) is not available: {why}")
    helpers: dict[str, list[int]] = {}
    for prog_type in _FP_TYPES:
        have = []
        for helper in _FP_HELPERS:
            insns = llvm.assemble(f"call {helper}\nr0 = 0\nexit")
            try:
                linux.prog_load(insns, prog_type=prog_type, license="GPL", log_level=1).close()
                have.append(helper)
            except KernelError as err:
                if "unknown func" not in err.log and "cannot use helper" not in err.log:
                    have.append(helper)
        helpers[str(prog_type)] = have
    logs = {}
    for name, text in _FP_PROGRAMS.items():
        prog_type = 2 if name == "priv_stack" else 6
        try:
            with linux.prog_load(llvm.assemble(text), prog_type=prog_type, license="GPL",
                                 log_level=2) as prog:  # fmt: skip
                log, err = prog.log, 0
        except KernelError as error:
            log, err = error.log, error.errno or 0
        lines = [ln for ln in log.splitlines() if not ln.startswith("verification time")]
        logs[name] = [err, lines]
    return {"helpers": helpers, "programs": logs}


def fingerprint(facts: dict[str, Any]) -> str:
    """Twelve hex digits of the SHA-256 of the probed facts."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]


@functools.cache
def live_stamp() -> Stamp | None:
    """The running kernel's stamp, or None when bpf(2) cannot load programs here."""
    try:
        facts = probe()
    except (KernelError, OSError):
        return None
    return Stamp(os.uname().release, fingerprint(facts))
