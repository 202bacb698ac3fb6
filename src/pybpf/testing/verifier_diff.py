"""The verifier corpus and its oracle: pybpf's verdicts against the running kernel's.

Usage::

    python -m pybpf.testing.verifier_diff               # recorded kernel verdicts vs pybpf
    python -m pybpf.testing.verifier_diff --live        # the running kernel vs pybpf, and drift
    python -m pybpf.testing.verifier_diff --record      # re-record the kernel verdicts
    python -m pybpf.testing.verifier_diff -v NAME...    # only these cases, with both errors
    python -m pybpf.testing.verifier_diff --markdown    # disagreements, one line each
    python -m pybpf.testing.verifier_diff --timeout 300 # hang guard: CPU seconds per program

The corpus (``tests/verifier_corpus/``, its README describes the format) holds
``*.vc`` files of cases: a program (llvm assembly, or a compiled C object), its
program type, license and the maps it uses.  The kernel's verdicts are recorded
kernel facts (:mod:`pybpf.testing.kernel_facts`) in
``tests/kernel_facts/verifier_corpus.json``: under the case's name, ``accept``, or
``reject PC ERRNO`` and the error lines of the log, stamped with the kernel that
answered.  ``--record`` re-records them from the running kernel (except the facts
``tests/kernel_facts/decisions.json`` says to keep); ``--live`` compares pybpf with
the running kernel and lists every case whose live verdict differs from its
recording (drift: reported, never a disagreement of pybpf's).

A kernel verdict comes from ``BPF_PROG_LOAD`` at log level 1 with the declared
maps created for the load: the failing pc is the last ``N: (..)`` instruction
line printed before the error, the error lines are what follows it up to
``processed N insns``.  pybpf's verdict comes from ``Kernel.prog_load`` with
the verifier on: a :class:`~pybpf.errors.VerifierError` carries pc, reason and
errno; any other load error is a rejection, its pc read from a leading ``pc N:``.

Two verdicts *agree* when both accept, or both reject naming the same pc (when the
kernel refused the whole program before walking it, it names no pc, and any will do).  A
disagreement where the kernel rejects for a memory-safety reason (anything but
the policy reasons of :data:`POLICY_REASONS`) and pybpf accepts is *dangerous*.  A pybpf
load still running when the hang guard (``--timeout``, CPU seconds, so a loaded machine
does not trip it) runs out is a *timeout*: reported as one, never counted as a verdict.

Exit status: 0 when everything agrees, 1 on any disagreement or timeout, 2 when
``--live`` or ``--record`` cannot reach bpf(2).
"""

from __future__ import annotations

import argparse
import errno as errno_mod
import functools
import re
import signal
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pybpf.asm import llvm
from pybpf.errors import KernelError, KernelUnavailable, PybpfError, VerifierError
from pybpf.isa import LDDW, Instruction, Pseudo
from pybpf.runtime.maps.base import MapAttr, MapType
from pybpf.runtime.progtypes import ProgType
from pybpf.testing import kernel_facts as kf

__all__ = [
    "CORPUS", "FACTS", "HANG_GUARD", "Case", "CorpusError", "MapDecl", "Summary", "Verdict",
    "compare", "drifts", "kernel_verdict", "load_corpus", "main", "parse_file",
    "parse_kernel_log", "pybpf_verdict", "record", "verdict_from_text", "verifier_ready",
]  # fmt: skip

_TESTS = Path(__file__).resolve().parents[3] / "tests"
CORPUS = _TESTS / "verifier_corpus"
#: the recorded kernel verdicts: fact file of ``tests/test_verifier_corpus.py``
FACTS = _TESTS / "kernel_facts" / "verifier_corpus.json"
#: CPU seconds a pybpf load may take before it is a timeout (the 1,000,000-instruction
#: case takes about 50 on a 2026 x86-64 core): a guard against hangs, not a measure
HANG_GUARD = 300.0

#: names of ``type`` and ``map`` lines: the kernel's enum names, lower case
PROG_TYPES = {t.name.lower(): int(t) for t in ProgType if t}
MAP_TYPES = {t.name.lower(): int(t) for t in MapType if t}

#: kernel errors that are policy, not memory safety (a pybpf accept is wrong, not dangerous)
POLICY_REASONS = (
    "At program exit the register R0 has", "cannot call GPL-restricted function",
    "program of this type cannot use helper", "unknown func", "invalid func unknown",
    "infinite loop detected", "back-edge from insn", "BPF program is too large",
    "unreachable insn", "last insn is not an exit or jmp", "jump out of range",
    "The sequence of", "combined stack size", "call stack", "too many states",
    "loop detected", "R0 leaks addr", "leaks addr into", "missing btf func_info",
)  # fmt: skip

_INSN_LINE = re.compile(r"^(\d+): \([0-9a-f]{2}\)")
_PROCESSED = re.compile(r"^processed \d+ insns")
_STATE_LINE = re.compile(
    r"^(\d+: R\d|from \d+ to \d+:|; |\s*$|mark_precise|Func#|func#|"
    r"Live regs|Global function|Validating|\d+: \([0-9a-f]{2}\))"
)


class CorpusError(PybpfError):
    """A corpus file that cannot be parsed; ``line`` is 1-based (0: the whole file)."""

    def __init__(self, message: str, *, path: str, line: int = 0) -> None:
        self.path, self.line = path, line
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


@dataclass(frozen=True)
class MapDecl:
    """A map a case uses; ``ld_pseudo rN, 1, I`` names the I-th declared map."""

    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    frozen: bool = False  # BPF_MAP_FREEZE before the load (read-only const strings)


@dataclass(frozen=True)
class Verdict:
    """One verifier's answer: ``ok``, else the failing ``pc`` (None: unknown), errno, lines."""

    ok: bool
    pc: int | None = None
    errno: int = 0
    lines: tuple[str, ...] = ()
    log: str = field(default="", compare=False)
    timed_out: bool = False  # pybpf gave no verdict within the hang guard: no verdict at all

    @property
    def reason(self) -> str:
        """The first error line ('' for an accept)."""
        return self.lines[0] if self.lines else ""

    def text(self) -> str:
        """The recorded form: ``accept`` or ``reject PC ERRNO`` then the error lines."""
        if self.ok:
            return "accept"
        name = errno_mod.errorcode.get(self.errno, str(self.errno))
        head = f"reject {'-' if self.pc is None else self.pc} {name}"
        return "\n".join((head, *self.lines))


@dataclass(frozen=True)
class Case:
    """One corpus program and its recorded kernel verdict (None: not recorded yet)."""

    name: str
    path: Path
    prog_type: int
    insns: tuple[Instruction, ...]
    maps: tuple[MapDecl, ...] = ()
    license: str = "GPL"
    attach_type: int = 0
    recorded: Verdict | None = None  # from the fact file (see load_corpus)
    source: str = "asm"  # "asm" or the object file of a C program
    line_info: tuple = ()
    recorded_on: kf.Stamp | None = None  # the kernel that gave ``recorded``

    @property
    def kind(self) -> str:
        """``asm`` or ``c``."""
        return "asm" if self.source == "asm" else "c"


# --- parsing ----------------------------------------------------------------------------------


def _int(text: str, path: str, line: int) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise CorpusError(f"bad number {text!r}", path=path, line=line) from None


def _map_decl(words: list[str], path: str, line: int) -> MapDecl:
    if len(words) < 2 or words[1] not in MAP_TYPES:
        raise CorpusError(f"map needs NAME TYPE (one of {', '.join(MAP_TYPES)})",
                          path=path, line=line)  # fmt: skip
    attrs = {"key": 0, "value": 0, "entries": 1, "flags": 0, "frozen": 0}
    for word in words[2:]:
        key, eq, value = word.partition("=")
        if not eq or key not in attrs:
            raise CorpusError(f"bad map attribute {word!r}", path=path, line=line)
        attrs[key] = _int(value, path, line)
    return MapDecl(words[0], MAP_TYPES[words[1]], attrs["key"], attrs["value"],
                   attrs["entries"], attrs["flags"], bool(attrs["frozen"]))  # fmt: skip


def verdict_from_text(text: object, where: str = "verdict") -> Verdict:
    """The verdict :meth:`Verdict.text` wrote (CorpusError for anything else)."""
    lines = [s.strip() for s in text.splitlines() if s.strip()] if isinstance(text, str) else []
    head = lines[0].split() if lines else []
    if head == ["accept"] and len(lines) == 1:
        return Verdict(True)
    if len(head) != 3 or head[0] != "reject":
        raise CorpusError(f"not 'accept' or 'reject PC ERRNO' and lines: {text!r}", path=where)
    pc = None if head[1] == "-" else _int(head[1], where, 0)
    err = getattr(errno_mod, head[2], None)
    if not isinstance(err, int):
        err = _int(head[2], where, 0)
    return Verdict(False, pc, err, tuple(lines[1:]))


def parse_file(path: str | Path) -> list[Case]:
    """The cases of one ``.vc`` file (CorpusError, or AsmError inside one, when malformed)."""
    path = Path(path)
    name = str(path)
    cases: list[Case] = []
    block: list[tuple[int, str]] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if raw.startswith("==="):
            if block:
                cases.append(_parse_case(block, path))
            block = [(number, raw)]
        elif block:
            block.append((number, raw))
        elif raw.split("#", 1)[0].strip():
            raise CorpusError("text before the first '=== name'", path=name, line=number)
    if block:
        cases.append(_parse_case(block, path))
    return cases


def _parse_case(block: list[tuple[int, str]], path: Path) -> Case:
    name_path = str(path)
    first, header = block[0]
    case_name = header[3:].strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", case_name):
        raise CorpusError(f"bad case name {case_name!r}", path=name_path, line=first)
    keys: dict[str, str] = {}
    maps: list[MapDecl] = []
    sections: dict[str, list[str]] = {}
    current = None
    for number, raw in block[1:]:
        if raw.startswith("--"):
            current = raw[2:].strip()
            if current == "kernel":
                raise CorpusError("-- kernel: the kernel's verdicts are recorded kernel facts "
                                  f"({FACTS.name}), not part of the corpus", path=name_path,
                                  line=number)  # fmt: skip
            if current != "asm":
                raise CorpusError(f"unknown section {raw!r}", path=name_path, line=number)
            sections[current] = []
            continue
        if current is not None:
            sections[current].append(raw)
            continue
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        word, _, rest = text.partition(" ")
        if word == "map":
            maps.append(_map_decl(rest.split(), name_path, number))
        elif word in ("type", "license", "attach", "object"):
            keys[word] = rest.strip()
        else:
            raise CorpusError(f"unknown key {word!r}", path=name_path, line=number)
    license = keys.get("license", "GPL")
    attach = _int(keys.get("attach", "0"), name_path, first)
    if "object" in keys:
        return _c_case(case_name, path, path.parent / keys["object"], license)
    if keys.get("type") not in PROG_TYPES:
        raise CorpusError(f"type must be one of {', '.join(PROG_TYPES)}", path=name_path,
                          line=first)  # fmt: skip
    if "asm" not in sections:
        raise CorpusError("no -- asm section", path=name_path, line=first)
    insns = tuple(llvm.assemble("\n".join(sections["asm"]) + "\n"))
    for insn in insns:
        if insn.code == LDDW and insn.src_reg in (Pseudo.MAP_FD, Pseudo.MAP_VALUE) \
                and not 0 <= insn.imm < len(maps):  # fmt: skip
            raise CorpusError(f"map index {insn.imm} not declared", path=name_path, line=first)
    return Case(case_name, path, PROG_TYPES[keys["type"]], insns, tuple(maps), license, attach)


def _c_case(name: str, path: Path, obj: Path, license: str) -> Case:
    from pybpf.loader import ObjectSpec

    spec = ObjectSpec.from_file(obj)
    if len(spec.programs) != 1:
        raise CorpusError(f"{obj.name} must hold exactly one program", path=str(path))
    prog = spec.programs[0]
    if prog.prog_type is None:
        raise CorpusError(f"{obj.name}: no program type for {prog.section!r}", path=str(path))
    maps = []
    for m in spec.maps:
        if m.initial is not None or m.inner is not None:
            raise CorpusError(f"{obj.name}: global data and maps of maps are not supported",
                              path=str(path))  # fmt: skip
        # libbpf sizes a perf event array to the possible CPUs; verdicts do not depend on it
        entries = m.max_entries or (1 if m.map_type == MAP_TYPES["perf_event_array"] else 0)
        maps.append(MapDecl(m.name, m.map_type, m.key_size, m.value_size, entries, m.map_flags))
    by_fd = {Pseudo.MAP_IDX: Pseudo.MAP_FD, Pseudo.MAP_IDX_VALUE: Pseudo.MAP_VALUE}
    insns = tuple(replace(i, src_reg=by_fd[i.src_reg])
                  if i.code == LDDW and i.src_reg in by_fd else i for i in prog.insns)  # fmt: skip
    return Case(name, path, int(prog.prog_type), insns, tuple(maps), spec.license or license,
                prog.expected_attach_type or 0, None, obj.name, prog.line_info)  # fmt: skip


def load_corpus(root: str | Path = CORPUS, names: Iterable[str] = (),
                facts: str | Path | None = FACTS) -> list[Case]:  # fmt: skip
    """Every case under ``root`` (``*.vc`` files, recursively), optionally only ``names``,
    with its recorded kernel verdict from the fact file ``facts`` (None: no verdicts).

    CorpusError when there is no ``.vc`` file, a name appears twice, a wanted name
    is not in the corpus, or a recorded verdict is malformed.
    """
    wanted = set(names)
    paths = sorted(Path(root).rglob("*.vc"))
    if not paths:
        raise CorpusError("no *.vc files", path=str(root))
    cases = [c for p in paths for c in parse_file(p)]
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            raise CorpusError(f"case {case.name!r} appears twice", path=str(case.path))
        seen.add(case.name)
    unknown = sorted(wanted - seen)
    if unknown:
        raise CorpusError(f"no case named {', '.join(unknown)}", path=str(root))
    cases = [c for c in cases if not wanted or c.name in wanted]
    if facts is None:
        return cases
    file = kf.FactFile.load(facts)
    out = []
    for case in cases:
        got = file.get(case.name)
        if got is not None:
            verdict = verdict_from_text(got[0], f"{Path(facts).name}: {case.name}")
            case = replace(case, recorded=verdict, recorded_on=got[1])
        out.append(case)
    return out


# --- the two verifiers --------------------------------------------------------------------------


def parse_kernel_log(log: str, err: int) -> Verdict:
    """A refusal from the kernel's level-1 log: failing pc and error lines."""
    lines = re.sub(r"(?<=\S)(processed \d+ insns)", r"\n\1", log).splitlines()
    end = next((i for i in range(len(lines) - 1, -1, -1) if _PROCESSED.match(lines[i])),
               len(lines))  # fmt: skip
    pc, start = None, 0
    for i in range(end):
        m = _INSN_LINE.match(lines[i])
        if m:
            pc, start = int(m.group(1)), i + 1
    error = [s.strip() for s in lines[start:end] if not _STATE_LINE.match(s)]
    if pc is None:
        found = re.search(r"\binsn (\d+)\b", " ".join(error))
        pc = int(found.group(1)) if found else None
    return Verdict(False, pc, err, tuple(error), log)


def kernel_verdict(case: Case) -> Verdict:
    """Load ``case`` into the running kernel (KernelUnavailable when bpf(2) cannot be used)."""
    from pybpf.kernel import linux

    kmaps = []
    try:
        for m in case.maps:
            try:
                kmaps.append(linux.map_create(m.map_type, m.key_size, m.value_size,
                                              m.max_entries, m.map_flags))  # fmt: skip
            except KernelError as err:
                if isinstance(err, KernelUnavailable) or err.errno == errno_mod.EPERM:
                    raise
                raise CorpusError(f"case {case.name}: map {m.name}: {err}",
                                  path=str(case.path)) from None  # fmt: skip
            if m.frozen:
                kmaps[-1].freeze()
        insns = [replace(i, imm=kmaps[i.imm].fd)
                 if i.code == LDDW and i.src_reg in (Pseudo.MAP_FD, Pseudo.MAP_VALUE) else i
                 for i in case.insns]  # fmt: skip
        try:
            prog = linux.prog_load(insns, case.prog_type, license=case.license, log_level=1,
                                   expected_attach_type=case.attach_type)  # fmt: skip
        except KernelError as err:
            if isinstance(err, KernelUnavailable) or err.errno == errno_mod.EPERM:
                raise
            return parse_kernel_log(err.log, err.errno)
        prog.close()
        return Verdict(True, log=prog.log)
    finally:
        for m in kmaps:
            m.close()


def verifier_ready() -> bool:
    """True once :mod:`pybpf.verifier` provides ``verify`` (until then pybpf accepts all)."""
    import pybpf.verifier

    return hasattr(pybpf.verifier, "verify")


class _Timeout(BaseException):
    """The hang guard of one pybpf verdict ran out (a BaseException, as KeyboardInterrupt
    is, so that no ``except Exception`` on the way turns it into a verdict)."""


def pybpf_verdict(case: Case, *, timeout: float = 0) -> Verdict:
    """Load ``case`` into a fresh pybpf Kernel with the verifier on (when it exists).

    ``timeout`` (CPU seconds of this process, 0: none) is a hang guard where SIGPROF
    can interrupt the load (the main thread on Unix): CPU time, not wall-clock time, so
    that other work on the machine does not trip it.  A load still running then gives
    no verdict: a Verdict with ``timed_out`` set (errno ETIME, no pc), which never agrees
    with the kernel and which :class:`Summary` reports apart from the verdicts.
    """
    usable = (timeout > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())  # fmt: skip
    if not usable:
        return _pybpf_verdict(case)

    def expire(signum, frame):
        raise _Timeout

    previous = signal.signal(signal.SIGPROF, expire)
    try:
        try:
            signal.setitimer(signal.ITIMER_PROF, timeout)
            return _pybpf_verdict(case)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except _Timeout:
        return Verdict(False, None, errno_mod.ETIME,
                       (f"pybpf: no verdict within {timeout:g} CPU seconds",),
                       timed_out=True)  # fmt: skip
    finally:
        signal.signal(signal.SIGPROF, previous)


def _pybpf_verdict(case: Case) -> Verdict:
    from pybpf.runtime.kernel import Kernel

    kernel = Kernel(verify=verifier_ready())
    try:
        maps = {}
        for i, m in enumerate(case.maps):
            maps[i] = kernel.map_create(
                MapAttr(
                    MapType(m.map_type),
                    m.key_size,
                    m.value_size,
                    m.max_entries,
                    m.map_flags,
                    m.name[:15],
                )
            )
            if m.frozen:
                maps[i].freeze()
        line_info = {r.insn_index: r for r in case.line_info} if case.line_info else None
        prog = kernel.prog_load(case.insns, case.prog_type, license=case.license, maps=maps,
                                expected_attach_type=case.attach_type, log_level=1,
                                line_info=line_info)  # fmt: skip
    except VerifierError as err:
        lines = tuple(s for s in err.reason.splitlines() if s.strip())
        return Verdict(False, err.pc, err.errno, lines, err.log)
    except KernelError as err:  # refused before the verifier ran; the runtime names "pc N: "
        found = re.match(r"pc (\d+): ", str(err))
        return Verdict(False, int(found.group(1)) if found else None, err.errno, (str(err),),
                       err.log)  # fmt: skip
    except PybpfError as err:
        return Verdict(False, None, errno_mod.EINVAL, (f"{type(err).__name__}: {err}",))
    # the level-1 log of an accept: the "processed N insns" line, as the kernel's
    return Verdict(True, log=prog.verdict.log if prog.verdict is not None else "")


# --- comparing --------------------------------------------------------------------------------


def dangerous(kernel: Verdict, ours: Verdict) -> bool:
    """The kernel refuses for memory safety and pybpf accepts."""
    return (not kernel.ok and ours.ok
            and not any(p in line for line in kernel.lines for p in POLICY_REASONS))  # fmt: skip


def agree(kernel: Verdict, ours: Verdict) -> bool:
    """Same verdict, and for a rejection the same pc (any, when the kernel names none).

    A timeout is no verdict and agrees with nothing."""
    if ours.timed_out:
        return False
    return kernel.ok == ours.ok and (kernel.ok or kernel.pc is None or kernel.pc == ours.pc)


@dataclass
class Row:
    """One case compared: the kernel's verdict and pybpf's."""

    case: Case
    kernel: Verdict
    ours: Verdict

    @property
    def agree(self) -> bool:
        return agree(self.kernel, self.ours)

    @property
    def dangerous(self) -> bool:
        return dangerous(self.kernel, self.ours)

    @property
    def kind(self) -> str:
        """``agree``, ``pc`` (both reject, other pc), ``kernel-accepts``, ``kernel-rejects``
        or ``timeout`` (pybpf gave no verdict in time)."""
        if self.ours.timed_out:
            return "timeout"
        if self.agree:
            return "agree"
        if self.kernel.ok == self.ours.ok:
            return "pc"
        return "kernel-accepts" if self.kernel.ok else "kernel-rejects"


@dataclass
class Summary:
    """The rows of a comparison and its figures.

    The figures count verdicts: a case pybpf gave no verdict for (``timeouts``) is
    neither an agreement nor a disagreement, and is left out of ``percent``.
    """

    rows: list[Row]

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def timeouts(self) -> list[Row]:
        return [r for r in self.rows if r.ours.timed_out]

    @property
    def verdicts(self) -> int:
        """Cases pybpf gave a verdict for."""
        return self.total - len(self.timeouts)

    @property
    def agreed(self) -> int:
        return sum(r.agree for r in self.rows)

    @property
    def percent(self) -> float:
        return 100.0 * self.agreed / self.verdicts if self.verdicts else 0.0

    @property
    def disagreements(self) -> list[Row]:
        return [r for r in self.rows if not r.agree and not r.ours.timed_out]

    @property
    def dangerous(self) -> list[Row]:
        return [r for r in self.rows if r.dangerous]

    def count(self, kind: str) -> int:
        return sum(r.kind == kind for r in self.rows)

    def lines(self, verbose: bool = False) -> list[str]:
        """The printed report: one line per case, then disagreements and totals."""
        out = []
        for r in self.rows:
            mark = {"agree": "ok  ", "timeout": "TIME"}.get(r.kind,
                                                           "DANG" if r.dangerous else "DIFF")
            out.append(f"{mark} {r.case.name:40} kernel: {_short(r.kernel):28} "
                       f"pybpf: {_short(r.ours)}")  # fmt: skip
            if verbose and not r.agree:
                out += ["    kernel: " + s for s in r.kernel.text().splitlines()]
                out += ["    pybpf:  " + s for s in r.ours.text().splitlines()]
        acc = sum(r.kernel.ok for r in self.rows)
        out.append("")
        out.append(f"{self.total} programs ({acc} accepted by the kernel, {self.total - acc} "
                   f"rejected; {sum(r.case.kind == 'c' for r in self.rows)} from C)")  # fmt: skip
        out.append(f"agreement: {self.agreed}/{self.verdicts} = {self.percent:.1f}% "
                   f"(verdict and pc)")  # fmt: skip
        same = sum(r.kernel.ok == r.ours.ok for r in self.rows if not r.ours.timed_out)
        out.append(f"verdict only: {same}/{self.verdicts}; kernel-accepts/pybpf-rejects: "
                   f"{self.count('kernel-accepts')}; kernel-rejects/pybpf-accepts: "
                   f"{self.count('kernel-rejects')} (dangerous: {len(self.dangerous)}); "
                   f"other pc: {self.count('pc')}")  # fmt: skip
        if self.timeouts:
            out.append(f"pybpf timeouts (no verdict, not counted above): {len(self.timeouts)}: "
                       + ", ".join(r.case.name for r in self.timeouts))  # fmt: skip
        both = [r for r in self.rows if r.agree and not r.kernel.ok]
        lines = sum(bool(r.ours.lines) and r.ours.lines[0] in r.kernel.lines for r in both)
        out.append(f"agreeing rejections with the kernel's error line: {lines}/{len(both)}")
        return out


def _short(v: Verdict) -> str:
    if v.ok:
        return "accept"
    if v.timed_out:
        return "timeout (no verdict)"
    return f"reject pc {'-' if v.pc is None else v.pc} {v.reason[:60]}"


def compare(cases: Sequence[Case], *, live: bool = False, timeout: float = 0) -> Summary:
    """Each case's kernel verdict (recorded, or ``live``) against pybpf's.

    ``timeout`` bounds each pybpf load (see :func:`pybpf_verdict`).
    """
    rows = []
    for case in cases:
        kernel = kernel_verdict(case) if live or case.recorded is None else case.recorded
        rows.append(Row(case, kernel, pybpf_verdict(case, timeout=timeout)))
    return Summary(rows)


# --- recording ----------------------------------------------------------------------------------


def live_text(case: Case) -> str:
    """The running kernel's verdict on ``case`` as it is recorded (a kernel-facts probe)."""
    return kernel_verdict(case).text()


def record(cases: Sequence[Case], facts: str | Path = FACTS) -> list[Case]:
    """Re-record the kernel verdicts of ``cases`` into the fact file ``facts``.

    Each verdict is the running kernel's, stamped with it (:func:`kf.live_stamp`), except
    where ``decisions.json`` beside ``facts`` says pybpf follows the recorded kernel: that
    recording is kept.  Returns the cases whose recorded verdict changed.  FactError
    when bpf(2) cannot load programs here.
    """
    oracle = kf.Oracle.beside(kf.FactFile.load(facts), record=True)
    changed = []
    for case in cases:
        before = oracle.file.get(case.name)
        after = oracle.fact(case.name, functools.partial(live_text, case))
        if before is None or before[0] != after:
            changed.append(case)
    oracle.file.save()
    return changed


def _answer(text: str) -> str:
    return text


def drifts(cases: Sequence[Case], live: dict[str, Verdict] | None = None,
           facts: str | Path = FACTS) -> list[kf.Drift]:  # fmt: skip
    """The recorded verdicts of ``cases`` the running kernel answers differently.

    ``live`` holds verdicts already asked of the running kernel (the others are asked
    now).  Empty when bpf(2) cannot load programs here; a case never recorded is skipped.
    """
    oracle = kf.Oracle.beside(kf.FactFile.load(facts))
    if oracle.live is None:
        return []
    for case in cases:
        if case.name not in oracle.file.facts:
            continue
        have = (live or {}).get(case.name)
        probe = (functools.partial(_answer, have.text()) if have is not None
                 else functools.partial(live_text, case))  # fmt: skip
        oracle.fact(case.name, probe)
    return oracle.drifts


# --- command line -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m pybpf.testing.verifier_diff",
        description="pybpf's verifier against the kernel's",
    )
    parser.add_argument("names", nargs="*", help="only these cases")
    parser.add_argument("--corpus", default=str(CORPUS), help="corpus directory")
    parser.add_argument("--facts", default=str(FACTS),
                        help="the fact file of recorded kernel verdicts")  # fmt: skip
    parser.add_argument("--live", action="store_true",
                        help="ask the running kernel (and list where it drifts from the recording)")
    parser.add_argument("--record", action="store_true",
                        help="re-record the kernel verdicts from the running kernel")
    parser.add_argument("-v", "--verbose", action="store_true", help="print disagreements' lines")
    parser.add_argument("--timeout", type=float, default=HANG_GUARD,
                        help="hang guard: CPU seconds pybpf may spend on one program, after "
                             f"which it is a timeout, not a verdict (0: none; {HANG_GUARD:g})")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the disagreements as docs/verifier-agreement.md lists them",
    )
    args = parser.parse_args(argv)
    try:
        cases = load_corpus(args.corpus, args.names, args.facts)
        if args.record or args.live:
            from pybpf.kernel import linux

            reason = linux.available()
            if reason:
                print(f"bpf(2) unavailable: {reason}", file=sys.stderr)
                return 2
        if args.record:
            changed = record(cases, args.facts)
            for c in changed:
                print(f"changed: {c.name}")
            print(f"recorded {len(cases)} cases in {args.facts} ({len(changed)} changed) "
                  f"from {kf.live_stamp()}")  # fmt: skip
            return 0
        summary = compare(cases, live=args.live, timeout=args.timeout)
        drifted = drifts(cases, {r.case.name: r.kernel for r in summary.rows}, args.facts) \
            if args.live else []  # fmt: skip
    except PybpfError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not verifier_ready():
        print("note: pybpf.verifier has no verify() yet: pybpf accepts every program")
    if args.markdown:
        for r in summary.disagreements:
            print(f"- `{r.case.name}`: kernel {_short(r.kernel)}; pybpf {_short(r.ours)}. REASON")
        for r in summary.timeouts:
            print(f"- `{r.case.name}`: pybpf gave no verdict within {args.timeout:g} CPU seconds")
        return 0 if not summary.disagreements and not summary.timeouts else 1
    print("\n".join(summary.lines(args.verbose)))
    if drifted:
        print(f"\ndrift: {kf.live_stamp()} answers {len(drifted)} recorded verdicts "
              "differently (the recording stays what pybpf is held to):")  # fmt: skip
        for drift in drifted:
            print(f"  {drift.line()}")
    return 0 if not summary.disagreements and not summary.timeouts else 1


if __name__ == "__main__":  # pragma: no cover
    try:
        sys.exit(main())
    except BrokenPipeError:  # the reader (head, less) went away
        sys.stderr.close()
        sys.exit(1)
