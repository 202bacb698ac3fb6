"""The Linux kernel's verifier selftests as pybpf's acceptance test.

The 95 ``tools/testing/selftests/bpf/progs/verifier_*.c`` files of the kernel tree (the
copy in ``../shared/kernel-selftests``) carry their expectations as BTF decl tags
(``__success``, ``__failure``, ``__msg``, ``__retval``, ``__flag``, ``__log_level``,
``__auxiliary``...), which the kernel's ``test_loader.c`` reads.  This runner reads
them the same way from the compiled objects and loads every test program as
``test_loader.c`` does in its privileged mode: the program and the object's
auxiliary programs, the others left out; its flags (``BPF_F_TEST_RND_HI32 |
BPF_F_TEST_REG_INVARIANTS`` unless the program clears them, then its ``__flag``
values) as program flags; its log level; a test run on 64 zero bytes where it has a
``__retval``.  Each program is loaded into a fresh pybpf kernel and compared with the
kernel's answer recorded in ``tests/kernel_facts/selftests.json`` (stamped with the
kernel it came from): the verdict, the error line of a refusal, whether the log
matches the ``__msg`` patterns (in order, ``{{...}}`` a regular expression) and the
retval.

    python -m pybpf.testing.selftests build     # compile the sources into tests/selftests/objects
    python -m pybpf.testing.selftests [-k WORD] [-v] [--jobs N]
    python -m pybpf.testing.selftests --record      # re-record the kernel (root, libbpf 1.5)

The kernel side needs root and the selftests' own libbpf (see
:mod:`pybpf.testing.selftests_kernel`); without them the recording is the kernel.
"""

from __future__ import annotations

import argparse
import errno as errno_mod
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pybpf.elf.model import STB_GLOBAL, STT_FUNC
from pybpf.errors import KernelError, PybpfError, VerifierError
from pybpf.testing import kernel_facts as kf
from pybpf.testing.verifier_diff import parse_kernel_log
from pybpf.uapi import ProgFlag

_REPO = Path(__file__).resolve().parents[3]
SHARED = _REPO.parent / "shared" / "kernel-selftests"
OBJECTS = _REPO / "tests" / "selftests" / "objects"
FACTS = _REPO / "tests" / "kernel_facts" / "selftests.json"
#: The disagreements known today, by case: what tests/test_selftests.py holds pybpf to.
KNOWN = _REPO / "tests" / "selftests" / "known.json"
#: The source tree's path inside ``SHARED`` and the selftests' directory in it.
TREE = "linux"
PROGS_DIR = "linux/tools/testing/selftests/bpf"

#: test_loader.c's constants: the test run's input size and the "any value" retval.
TEST_DATA_LEN = 64
SYSCALL = 31  # BPF_PROG_TYPE_SYSCALL, which test_loader.c test-runs without data
POINTER_VALUE = 0xBADCAFE
#: testing_prog_flags(): what every test program is loaded with unless it says otherwise.
DEFAULT_FLAGS = ProgFlag.TEST_RND_HI32 | ProgFlag.TEST_REG_INVARIANTS
#: CPU seconds pybpf may spend on one program before it counts as no verdict.
HANG_GUARD = 30.0

_TAG = "comment:"


class SelftestError(PybpfError):
    """The selftests cannot be built, read or compared (missing sources, a bad object)."""


# --- the annotations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One test program of one object and what its annotations expect (privileged mode)."""

    file: str  # object stem, e.g. verifier_and
    prog: str
    section: str
    description: str = ""
    expect_failure: bool = False
    msgs: tuple[str, ...] = ()  # __msg patterns, in source order
    retval: int | None = None  # __retval, None when the program is not run
    flags: int = int(DEFAULT_FLAGS)
    log_level: int = 0
    auxiliary: bool = False
    priv: bool = True  # run in privileged mode (False: an unprivileged-only test)
    arch_ok: bool = True  # __arch_* allows x86-64 (or names none)
    xlated: tuple[str, ...] = ()  # __xlated patterns

    @property
    def key(self) -> str:
        return f"{self.file}/{self.prog}"


_FLAG_NAMES = {f"BPF_F_{f.name}": int(f) for f in ProgFlag}


def _ordered(tags: list[str]) -> list[str]:
    """The tags in source order: counter-carrying ones (``name=N=text``) by their counter."""

    def counter(tag: str) -> int:
        found = re.match(r"[a-z_]+=(\d+)=", tag)
        return int(found.group(1)) if found else -1

    return sorted(tags, key=counter)


def _strip_counter(value: str) -> str:
    return re.sub(r"^\d+=", "", value, count=1)


def _int(text: str) -> int:
    if text == "_INT_MIN" or text == "INT_MIN":
        return -(1 << 31)
    if text == "POINTER_VALUE":
        return POINTER_VALUE
    if text == "TEST_DATA_LEN":
        return TEST_DATA_LEN
    return int(text, 16) if text.startswith("0x") else int(text)


def cases_of(data: bytes, file: str) -> list[Case]:
    """The cases of one object's bytes: its programs (entry points, in libbpf's order)
    and their annotations.  Read from the ELF and BTF alone, so that an object pybpf
    cannot load still has its cases."""
    from pybpf.btf import Btf
    from pybpf.elf import read_object

    elf = read_object(data, file)
    section = elf.section(".BTF")
    if section is None:
        raise SelftestError(f"{file}: the object has no BTF, so no annotations")
    btf = Btf.parse(section.data)
    programs = sorted((s.section, s.value, s.name, elf.section_name(s.section))
                      for s in elf.symbols
                      if s.type == STT_FUNC and s.bind == STB_GLOBAL
                      and s.section < len(elf.sections) and elf.sections[s.section].executable
                      and elf.section_name(s.section) != ".text")  # fmt: skip
    by_target: dict[int, list[str]] = {}
    for t in btf:
        if t.kind == "decl_tag" and t.component_idx == -1 and t.name.startswith(_TAG):
            by_target.setdefault(t.type, []).append(t.name[len(_TAG):])
    out = []
    for _, _, name, sec_name in programs:
        func = btf.find(name, "func")
        if func is None:
            raise SelftestError(f"{file}: no BTF FUNC for program {name!r}")
        out.append(_case(file, name, sec_name.lstrip("?"), _ordered(by_target.get(func, []))))
    return out


def _case(file: str, prog: str, section: str, tags: list[str]) -> Case:
    kw: dict = {"flags": int(DEFAULT_FLAGS)}
    msgs, xlated, modes, arches = [], [], set(), set()
    for tag in tags:
        name, _, value = tag.partition("=")
        if name == "test_description":
            kw["description"] = value
        elif name in ("test_expect_failure", "test_expect_success"):
            kw["expect_failure"] = name == "test_expect_failure"
            modes.add("priv")
        elif name in ("test_expect_failure_unpriv", "test_expect_success_unpriv",
                      "test_expect_msg_unpriv", "test_retval_unpriv", "test_auxiliary_unpriv",
                      "test_expect_xlated_unpriv", "test_jited_unpriv"):  # fmt: skip
            modes.add("unpriv")
            if name == "test_auxiliary_unpriv":
                kw["auxiliary"] = True
        elif name == "test_auxiliary":
            kw["auxiliary"] = True
            modes.add("priv")
        elif name == "test_expect_msg":
            msgs.append(_strip_counter(value))
            modes.add("priv")
        elif name == "test_expect_xlated":
            xlated.append(_strip_counter(value))
            modes.add("priv")
        elif name == "test_retval":
            kw["retval"] = _int(value)
            modes.add("priv")
        elif name == "test_log_level":
            kw["log_level"] = _int(value)
        elif name == "test_prog_flags":
            clear = value.startswith("!")
            value = value.lstrip("!")
            bit = _FLAG_NAMES.get(value)
            bit = _int(value) if bit is None else bit
            kw["flags"] = kw["flags"] & ~bit if clear else kw["flags"] | bit
        elif name == "test_arch":
            arches.add(value)
    return Case(file, prog, section, msgs=tuple(msgs), xlated=tuple(xlated),
                priv="priv" in modes or not modes,
                arch_ok=not arches or "X86_64" in arches, **kw)  # fmt: skip


# --- matching a log -------------------------------------------------------------------------------


def pattern_regex(pattern: str) -> re.Pattern:
    """A ``__msg`` pattern as a regular expression: verbatim text, ``{{...}}`` a regex."""
    parts = re.split(r"\{\{(.*?)\}\}", pattern)
    text = "".join(p if i % 2 else re.escape(p) for i, p in enumerate(parts))
    return re.compile(text, re.MULTILINE)


def msgs_match(log: str, patterns: Sequence[str]) -> bool:
    """test_loader's validate_msgs: every pattern found, each after the previous match."""
    pos = 0
    for pattern in patterns:
        found = pattern_regex(pattern).search(log, pos)
        if found is None:
            return False
        pos = found.end()
    return True


# --- one program's outcome ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one side made of one case.

    ``stage`` is ``ok`` (loaded), ``verifier`` (the verifier refused: ``errno`` and
    ``error``, the error line), ``load`` (refused before any verdict: an object or a
    program or map type that cannot be loaded) or ``timeout`` (pybpf only).
    """

    stage: str
    errno: int = 0
    error: str = ""
    msgs: bool | None = None  # the log matches the case's __msg patterns (None: it has none)
    retval: int | None = None
    run_error: str = ""

    @property
    def ok(self) -> bool:
        return self.stage == "ok"

    @property
    def verdict(self) -> bool:
        return self.stage in ("ok", "verifier")

    def as_fact(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in ("", None, 0) or k == "stage"}

    @classmethod
    def from_fact(cls, value: dict) -> Outcome:
        return cls(**value)


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def aux_names(cases: Iterable[Case]) -> tuple[str, ...]:
    return tuple(c.prog for c in cases if c.auxiliary and c.priv)


def pybpf_outcome(path: Path, case: Case, aux: Sequence[str]) -> Outcome:
    """Load ``case`` from the object at ``path`` into a fresh pybpf kernel (see the module)."""
    from pybpf.loader import load_object
    from pybpf.runtime.kernel import Kernel
    from pybpf.runtime.testrun import test_run

    load = {case.prog, *aux}
    try:
        coll = load_object(path, Kernel(verify=True), autoload=load,
                           prog_flags={case.prog: case.flags},
                           log_level=case.log_level or 1)  # fmt: skip
    except VerifierError as err:
        log = err.log or err.reason
        return Outcome("verifier", err.errno, _error_line(err.reason),
                       msgs_match(log, case.msgs) if case.msgs else None)  # fmt: skip
    except PybpfError as err:
        return Outcome("load", getattr(err, "errno", 0) or errno_mod.EINVAL, str(err))
    with coll:
        prog = coll.program(case.prog)
        log = (prog.verdict.log if prog.verdict is not None else "") if case.log_level else ""
        result = Outcome("ok", msgs=msgs_match(log, case.msgs) if case.msgs else None)
        if case.retval is None or case.expect_failure:
            return result
        # test_loader.c runs BPF_PROG_TYPE_SYSCALL programs with empty options
        io = {} if prog.prog_type == SYSCALL else {"data_in": bytes(TEST_DATA_LEN),
                                                    "data_size_out": TEST_DATA_LEN * 4}
        try:
            run = test_run(prog, **io)
        except PybpfError as err:
            return Outcome("ok", msgs=result.msgs, run_error=f"{type(err).__name__}: {err}")
        return Outcome("ok", msgs=result.msgs, retval=_s32(run.retval))


def _error_line(reason: str) -> str:
    lines = [s.strip() for s in reason.splitlines() if s.strip()]
    return lines[0] if lines else ""


def kernel_outcome(path: Path, case: Case, aux: Sequence[str]) -> Outcome:
    """Load ``case`` into the running kernel through libbpf, as test_loader.c does."""
    from pybpf.testing.selftests_kernel import kernel_case

    run = case.retval is not None and not case.expect_failure
    k = kernel_case(str(path), case.prog, load={case.prog, *aux}, flags=case.flags,
                    log_level=case.log_level, run=run)  # fmt: skip
    msgs = msgs_match(k.log, case.msgs) if case.msgs else None
    if case.retval == POINTER_VALUE:  # a pointer: any value (and a new one every load)
        k = replace(k, retval=None)
    if k.ok:
        if not case.log_level:
            msgs = None if not case.msgs else False  # no log to match at level 0
        return Outcome("ok", msgs=msgs, retval=k.retval,
                       run_error=f"errno {k.run_errno}" if k.run_errno else "")  # fmt: skip
    if k.errno == errno_mod.EPERM or not k.log.strip():
        # refused before the verifier ran (a program or map type this kernel does not allow)
        return Outcome("load", k.errno, (k.log.strip().splitlines() or [""])[-1], msgs)
    verdict = parse_kernel_log(k.log, k.errno)
    return Outcome("verifier", k.errno, verdict.lines[0] if verdict.lines else "", msgs)


def guarded(fn, timeout: float):
    """``fn()`` with a CPU-time hang guard (SIGPROF) when this is a main thread on Unix."""
    if timeout <= 0 or not hasattr(signal, "setitimer"):
        return fn()

    class _Expired(BaseException):  # not an Exception: no handler on the way may take it
        pass

    def expire(signum, frame):
        raise _Expired

    previous = signal.signal(signal.SIGPROF, expire)
    try:
        signal.setitimer(signal.ITIMER_PROF, timeout)
        try:
            return fn()
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except _Expired:
        return Outcome("timeout", errno_mod.ETIME, f"no verdict within {timeout:g} CPU seconds")
    finally:
        signal.signal(signal.SIGPROF, previous)


# --- comparing --------------------------------------------------------------------------------


@dataclass
class Row:
    case: Case
    kernel: Outcome
    ours: Outcome

    @property
    def verdict_kind(self) -> str:
        """:attr:`kind`, or ``retval`` where both accept and the test runs differ."""
        kind = self.kind
        if kind == "agree" and self.kernel.ok and self.kernel.retval is not None \
                and self.case.retval != POINTER_VALUE \
                and self.ours.retval != self.kernel.retval:  # fmt: skip
            return "retval"  # (a pointer's value is any value, as test_loader.c has it)
        return kind

    @property
    def kind(self) -> str:
        """What the two made of the case (see :data:`KINDS`)."""
        k, o = self.kernel, self.ours
        if not k.verdict:
            return "kernel-cannot-load"
        if o.stage == "timeout":
            return "timeout"
        if o.stage == "load":
            return "pybpf-cannot-load"
        if k.ok != o.ok:
            return "unsafe-accept" if o.ok else "false-refusal"
        return "agree"


KINDS = {
    "agree": "same verdict",
    "unsafe-accept": "the kernel refuses, pybpf accepts",
    "false-refusal": "the kernel accepts, pybpf refuses",
    "pybpf-cannot-load": "pybpf cannot load the object or program at all",
    "timeout": "pybpf gave no verdict in time",
    "kernel-cannot-load": "the kernel refuses before its verifier runs (not a verdict)",
    "retval": "both accept; the test runs return different values",
}


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(r.kind == kind for r in self.rows)

    def figures(self) -> list[tuple[str, int, int]]:
        """(what, numerator, denominator) for every figure the module reports."""
        rows = self.rows
        both = [r for r in rows if r.kind in ("agree", "unsafe-accept", "false-refusal")]
        refusals = [r for r in both if not r.kernel.ok and not r.ours.ok]
        msgs = [r for r in both if r.kernel.msgs is True]
        retvals = [r for r in both if r.kernel.ok and r.ours.ok and r.kernel.retval is not None
                   and r.case.retval != POINTER_VALUE]
        return [
            ("verifier-level agreement", self.count("agree"), len(both)),
            ("the kernel refuses, pybpf accepts", self.count("unsafe-accept"), len(both)),
            ("the kernel accepts, pybpf refuses", self.count("false-refusal"), len(both)),
            ("pybpf cannot load at all", sum(r.ours.stage == "load" for r in rows), len(rows)),
            ("pybpf timeouts", self.count("timeout"), len(rows)),
            ("same error line where both refuse",
             sum(r.kernel.error == r.ours.error for r in refusals), len(refusals)),
            ("__msg matched where the kernel's log matches",
             sum(r.ours.msgs is True for r in msgs), len(msgs)),
            ("__retval equal where both accept (POINTER_VALUE: any)",
             sum(r.ours.retval == r.kernel.retval for r in retvals), len(retvals)),
        ]  # fmt: skip

    def markdown(self) -> list[str]:
        """Every disagreement, by kind: the case, then the kernel's and pybpf's outcome."""
        out = []
        for kind, what in KINDS.items():
            rows = [r for r in self.rows if r.verdict_kind == kind and kind != "agree"]
            if not rows:
                continue
            out += ["", f"### {what} ({len(rows)})", ""]
            out += [f"- `{r.case.key}`: kernel {describe(r.kernel)}; pybpf {describe(r.ours)}"
                    for r in rows]  # fmt: skip
        return out

    def lines(self, verbose: bool = False) -> list[str]:
        out = []
        by_file: dict[str, Counter] = {}
        for r in self.rows:
            by_file.setdefault(r.case.file, Counter())[r.kind] += 1
        for file, counts in sorted(by_file.items()):
            bad = {k: n for k, n in counts.items() if k != "agree"}
            if bad or verbose:
                detail = ", ".join(f"{k} {n}" for k, n in sorted(bad.items()))
                out.append(f"{file}: {counts['agree']}/{sum(counts.values())} agree"
                           + (f"; {detail}" if detail else ""))  # fmt: skip
        if verbose:
            out.append("")
            for r in self.rows:
                if r.kind != "agree" or (not r.kernel.ok and r.kernel.error != r.ours.error):
                    out.append(f"  {r.kind:18} {r.case.key}: kernel {describe(r.kernel)}; "
                               f"pybpf {describe(r.ours)}")  # fmt: skip
        out.append("")
        out.append(f"{len(self.rows)} programs")
        for what, n, d in self.figures():
            pct = f"{100 * n / d:.1f}%" if d else "-"
            out.append(f"  {what}: {n}/{d} ({pct})")
        return out


def describe(o: Outcome) -> str:
    if o.ok:
        return "accept" + (f" retval {o.retval}" if o.retval is not None else "")
    return f"{o.stage} {errno_mod.errorcode.get(o.errno, o.errno)} {o.error[:120]!r}"


# --- running ------------------------------------------------------------------------------------


def objects(root: Path = OBJECTS, names: Iterable[str] = ()) -> list[Path]:
    wanted = set(names)
    found = sorted(root.glob("verifier_*.bpf.o"))
    if not found:
        raise SelftestError(f"no verifier_*.bpf.o in {root}: build them with "
                            "`python -m pybpf.testing.selftests build`")  # fmt: skip
    return [p for p in found if not wanted or p.name.removesuffix(".bpf.o") in wanted]


def load_cases(path: Path) -> list[Case]:
    """The cases of the object at ``path`` (SelftestError when it cannot be opened)."""
    try:
        return cases_of(path.read_bytes(), path.name.removesuffix(".bpf.o"))
    except (OSError, PybpfError) as err:
        raise SelftestError(f"{path.name}: {err}") from None


def _run_file(path: Path, keyword: str, timeout: float) -> list[tuple[Case, Outcome]]:
    """pybpf's outcome for every test case of one object (a worker's unit of work)."""
    try:
        cases = load_cases(path)
    except SelftestError:
        return []  # reported by the caller, which opens the object again
    aux = aux_names(cases)
    out = []
    for case in runnable(cases, keyword):
        out.append((case, guarded(functools.partial(pybpf_outcome, path, case, aux), timeout)))
    return out


def runnable(cases: Iterable[Case], keyword: str = "") -> list[Case]:
    """The cases test_loader runs in privileged mode on x86-64 (matching ``keyword``)."""
    return [c for c in cases if c.priv and not c.auxiliary and c.arch_ok
            and (not keyword or keyword in c.key or keyword in c.description)]  # fmt: skip


def run(paths: Sequence[Path], *, facts: kf.FactFile, keyword: str = "", jobs: int = 1,
        timeout: float = HANG_GUARD) -> tuple[Report, list[str]]:  # fmt: skip
    """Compare pybpf with the recording on the objects ``paths``; (report, problems)."""
    problems: list[str] = []
    report = Report()
    work = functools.partial(_run_file, keyword=keyword, timeout=timeout)
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            results = list(pool.map(work, paths))
    else:
        results = [work(p) for p in paths]
    for path, result in zip(paths, results, strict=True):
        if not result:
            try:
                cases = runnable(load_cases(path), keyword)
            except SelftestError as err:
                problems.append(str(err))
                continue
            result = [(c, Outcome("load", errno_mod.EINVAL, "object cannot be opened"))
                      for c in cases]  # fmt: skip
        for case, ours in result:
            recorded = facts.get(case.key)
            if recorded is None:
                problems.append(f"{case.key}: no recorded kernel outcome (run --record as root)")
                continue
            report.rows.append(Row(case, Outcome.from_fact(recorded[0]), ours))
    return report, problems


def record(paths: Sequence[Path], facts: kf.FactFile, keyword: str = "") -> int:
    """Record the running kernel's outcome of every case; the number recorded."""
    stamp = kf.live_stamp()
    if stamp is None:
        raise SelftestError("recording needs bpf(2) (root on Linux)")
    n = 0
    for path in paths:
        cases = load_cases(path)
        aux = aux_names(cases)
        for case in runnable(cases, keyword):
            facts.put(case.key, kernel_outcome(path, case, aux).as_fact(), stamp)
            n += 1
    facts.save()
    return n


# --- building -----------------------------------------------------------------------------------


def build(out: Path = OBJECTS, shared: Path = SHARED, clang: str = "clang-19") -> list[str]:
    """Compile the selftests sources as the selftests Makefile does; the failures.

    Flags are test_progs' (``-g -O2 --target=bpf -mcpu=v3 -D__TARGET_ARCH_x86``...);
    ``vmlinux.h`` comes from the running kernel's BTF (bpftool).  Debug paths are
    made relative to the tree and DWARF is stripped (the objects keep .BTF and
    .BTF.ext, which is all a loader reads), so an object names no build machine.
    """
    src = shared / PROGS_DIR
    if not (src / "progs").is_dir():
        raise SelftestError(f"no selftests sources in {shared} (../shared/kernel-selftests)")
    tools = {tool: shutil.which(tool) for tool in (clang, "bpftool", "llvm-strip-19")}
    for tool, where in tools.items():
        if where is None:
            raise SelftestError(f"{tool} not found (apt-get install clang-19 llvm-19 bpftool)")
    clang, bpftool, strip = tools[clang], tools["bpftool"], tools["llvm-strip-19"]
    out.mkdir(parents=True, exist_ok=True)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        inc = Path(tmp) / "include"
        (inc / "bpf").mkdir(parents=True)
        for header in (shared / TREE / "tools" / "lib" / "bpf").glob("*.h"):
            shutil.copy(header, inc / "bpf")
        with open(inc / "vmlinux.h", "w") as f:
            subprocess.run([bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux",
                            "format", "c"], stdout=f, check=True)  # fmt: skip
        resource = subprocess.run([clang, "-print-resource-dir"], capture_output=True, text=True,
                                  check=True).stdout.strip()  # fmt: skip
        flags = [
            "-g", "-Wall", "-D__TARGET_ARCH_x86", "-mlittle-endian", f"-I{inc}", f"-I{src}",
            f"-I{shared / TREE / 'tools/include/uapi'}", "-std=gnu11", "-fno-strict-aliasing",
            "-Wno-compare-distinct-pointer-types", "-idirafter", f"{resource}/include",
            "-idirafter", "/usr/include/x86_64-linux-gnu", "-idirafter", "/usr/include",
            "-O2", "--target=bpf", "-mcpu=v3",
            f"-fdebug-prefix-map={shared / TREE}={TREE}", f"-fdebug-prefix-map={inc}=include",
        ]  # fmt: skip
        for c in sorted((src / "progs").glob("verifier_*.c")):
            obj = out / (c.stem + ".bpf.o")
            done = subprocess.run([clang, *flags, "-c", str(c), "-o", str(obj)],
                                  capture_output=True, text=True)  # fmt: skip
            if done.returncode:
                failures.append(f"{c.name}: {done.stderr.strip().splitlines()[-1:]}")
                continue
            subprocess.run([strip, "-g", str(obj)], check=True)
    return failures


# --- command line ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pybpf.testing.selftests",
                                     description="pybpf's verifier on the kernel's selftests")
    parser.add_argument("files", nargs="*",
                        help="only these objects (verifier_and ...); `build` compiles them all")
    parser.add_argument("-k", dest="keyword", default="", help="only cases whose name has this")
    parser.add_argument("--objects", default=str(OBJECTS), help="the compiled objects")
    parser.add_argument("--facts", default=str(FACTS), help="the recorded kernel outcomes")
    parser.add_argument("--record", action="store_true",
                        help="record the running kernel's outcomes (root, libbpf 1.5)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=HANG_GUARD,
                        help=f"CPU seconds pybpf may take on one program ({HANG_GUARD:g})")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every disagreement")
    parser.add_argument("--json", help="write every row to this file")
    parser.add_argument("--markdown", action="store_true",
                        help="list every disagreement by kind, as docs/verifier-agreement.md does")
    parser.add_argument("--write-known", action="store_true",
                        help=f"write today's disagreements to {KNOWN.relative_to(_REPO)}")
    args = parser.parse_args(argv)
    try:
        if args.files == ["build"]:
            failures = build(Path(args.objects))
            for f in failures:
                print(f"failed: {f}")
            print(f"built into {args.objects}; {len(failures)} failed")
            return 1 if failures else 0
        paths = objects(Path(args.objects), [f.removesuffix(".bpf.o") for f in args.files])
        facts = kf.FactFile.load(args.facts)
        if args.record:
            n = record(paths, facts, args.keyword)
            print(f"recorded {n} cases in {args.facts} from {kf.live_stamp()}")
            return 0
        report, problems = run(paths, facts=facts, keyword=args.keyword, jobs=args.jobs,
                               timeout=args.timeout)  # fmt: skip
    except (PybpfError, KernelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"problem: {p}")
    if args.markdown:
        print("\n".join(report.markdown()))
        return 0
    print("\n".join(report.lines(args.verbose)))
    if args.write_known:
        known = {r.case.key: r.verdict_kind for r in report.rows
                 if r.verdict_kind not in ("agree", "unsafe-accept")}  # fmt: skip
        KNOWN.write_text(json.dumps(known, indent=0, sort_keys=True) + "\n")
    if args.json:
        rows = [{"case": r.case.key, "kind": r.kind, "kernel": r.kernel.as_fact(),
                 "pybpf": r.ours.as_fact()} for r in report.rows]  # fmt: skip
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if not problems and not report.count("unsafe-accept") else 1


if __name__ == "__main__":  # pragma: no cover
    try:
        sys.exit(main())
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
