"""pybpf's verifier against the kernel's, over tests/verifier_corpus/.

The kernel's verdicts are recorded kernel facts (``kernel_facts/verifier_corpus.json``,
written by ``python -m pybpf.testing.verifier_diff --record`` or by this file's
``--record-kernel``) and need no bpf(2): pybpf must agree with them on >= 98% of the
programs (same verdict, and for a rejection the same pc), accept nothing the kernel
refuses for memory safety, and every remaining disagreement must be named in
docs/verifier-agreement.md with its reason.  When bpf(2) works, the running kernel is
asked too: a verdict that differs from its recording is drift, reported (the drift test
is an xfail naming the cases), never a failure.
"""

from __future__ import annotations

import errno
import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.testing import kernel_facts as kf
from pybpf.testing import verifier_diff as vd

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "verifier-agreement.md"
CASES = vd.load_corpus()
# CPU seconds per program before a load is a timeout: a guard against a hanging verifier,
# far above the ~50 s of the 1,000,000-instruction case (loop_insn_limit); a timeout is
# reported as a timeout, never counted as a verdict
HANG_GUARD = vd.HANG_GUARD

LOG = """\
0: R1=ctx() R10=fp0
0: (61) r2 = *(u32 *)(r1 +0)          ; R1=ctx() R2=pkt(r=0)
1: (71) r0 = *(u8 *)(r2 +0)
invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)
R2 offset is outside of the packet
processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""


# --- the corpus itself ----------------------------------------------------------------------


def test_corpus_size_and_balance():
    assert len(CASES) >= 320
    assert sum(c.kind == "c" for c in CASES) >= 40
    missing = [c.name for c in CASES if c.recorded is None]
    assert missing == [], "run python -m pybpf.testing.verifier_diff --record (root)"
    accepted = sum(c.recorded.ok for c in CASES)
    assert 0.35 * len(CASES) < accepted < 0.65 * len(CASES)
    assert {c.prog_type for c in CASES} >= {1, 2, 3, 5, 6, 8}


def test_every_c_program_is_a_case():
    c_dir = ROOT / "tests" / "verifier_corpus" / "c"
    sources = {p.name.removesuffix(".bpf.c") for p in c_dir.glob("*.bpf.c")}
    objects = {p.name.removesuffix(".bpf.o") for p in c_dir.glob("*.bpf.o")}
    cases = {c.source.removesuffix(".bpf.o") for c in CASES if c.kind == "c"}
    assert sources == objects == cases


def test_recorded_rejections_have_a_reason():
    for case in CASES:
        if not case.recorded.ok:
            assert case.recorded.lines, case.name
            assert case.recorded.errno in (
                errno.EACCES,
                errno.EINVAL,
                errno.E2BIG,
                errno.EFAULT,
                errno.ENOTSUP,
                524,
            ), case.name


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")
def test_c_objects_are_built_from_their_sources():
    version = subprocess.run(["clang", "--version"], capture_output=True, text=True).stdout
    if "version 14." not in version:
        pytest.skip("the committed objects were built by clang 14")
    build = ROOT / "tests" / "verifier_corpus" / "c" / "build.py"
    proc = subprocess.run([sys.executable, str(build), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the harness ----------------------------------------------------------------------------


def test_kernel_log_parsing():
    verdict = vd.parse_kernel_log(LOG, errno.EACCES)
    assert (verdict.ok, verdict.pc, verdict.errno) == (False, 1, errno.EACCES)
    assert verdict.lines == ("invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)",
                             "R2 offset is outside of the packet")  # fmt: skip
    glued = vd.parse_kernel_log("0: (85) call 12\nexpected prog array map for tail call"
                                "processed 3 insns (limit 1000000)\n", errno.EINVAL)  # fmt: skip
    assert glued.pc == 0 and glued.lines == ("expected prog array map for tail call",)
    early = vd.parse_kernel_log("jump out of range from insn 1 to 7\nprocessed 0 insns\n", 22)
    assert early.pc == 1


def test_verdict_text_round_trips(tmp_path):
    rejected = vd.Verdict(False, 0, errno.EACCES, ("R0 !read_ok", "x#1 y"))
    early = vd.Verdict(False, None, 524, ("direct value access needs one entry",))
    for verdict in (vd.Verdict(True), rejected, early):
        assert vd.verdict_from_text(verdict.text()) == verdict
    assert rejected.text() == "reject 0 EACCES\nR0 !read_ok\nx#1 y"
    (tmp_path / "x.vc").write_text("# demo\n=== a\ntype xdp\n-- asm\nr0 = 0\nexit\n\n"
                                   "=== b\ntype xdp\n-- asm\nexit\n")  # fmt: skip
    facts = kf.FactFile(tmp_path / "facts.json")
    facts.put("b", rejected.text(), kf.Stamp("6.18", "0123456789ab"))
    facts.save()
    a, b = vd.load_corpus(tmp_path, facts=facts.path)
    assert (a.recorded, a.recorded_on) == (None, None)
    assert b.recorded == rejected and b.recorded_on == kf.Stamp("6.18", "0123456789ab")
    assert vd.load_corpus(tmp_path, facts=None)[1].recorded is None


def test_malformed_corpus_files_are_refused(tmp_path):
    for text in ("r0 = 0\n", "=== a\ntype nope\n-- asm\nexit\n", "=== a\ntype xdp\n",
                 "=== a\ntype xdp\nmap m hash key=x\n-- asm\nexit\n",
                 "=== a\ntype xdp\n-- asm\nld_pseudo r1, 1, 3\nexit\n",
                 "=== a\ntype xdp\n-- asm\nexit\n-- kernel\naccept\n"):  # fmt: skip
        path = tmp_path / "bad.vc"
        path.write_text(text)
        with pytest.raises(vd.CorpusError):
            vd.parse_file(path)
    for text in ("maybe", "reject x EACCES", "accept\nwhy", {"errno": "EPERM"}):
        with pytest.raises(vd.CorpusError):
            vd.verdict_from_text(text)


def test_a_slow_load_is_a_timeout_not_a_hang():
    loop = next(c for c in CASES if c.name == "loop_insn_limit")
    verdict = vd.pybpf_verdict(loop, timeout=1e-6)
    assert (verdict.ok, verdict.pc, verdict.errno, verdict.timed_out) == \
        (False, None, errno.ETIME, True)
    # a timeout is no verdict: not an agreement even with a kernel that names no pc, and
    # counted apart from the verdicts
    assert not vd.agree(vd.Verdict(False, None, errno.E2BIG), verdict)
    summary = vd.Summary([vd.Row(loop, loop.recorded, verdict),
                          vd.Row(loop, vd.Verdict(True), vd.Verdict(True))])  # fmt: skip
    assert [r.kind for r in summary.rows] == ["timeout", "agree"]
    assert (summary.verdicts, summary.percent, summary.disagreements) == (1, 100.0, [])
    assert [r.case.name for r in summary.timeouts] == ["loop_insn_limit"]


def test_a_missing_corpus_or_case_is_an_error(tmp_path):
    with pytest.raises(vd.CorpusError, match=r"no \*\.vc files"):
        vd.load_corpus(tmp_path)
    with pytest.raises(vd.CorpusError, match="no case named nope"):
        vd.load_corpus(names=["nope"])


def test_agreement_and_danger_are_judged():
    reject = vd.Verdict(False, 3, errno.EACCES, ("R0 invalid mem access 'scalar'",))
    policy = vd.Verdict(False, 3, errno.EINVAL, ("At program exit the register R0 has smin=2",))
    assert vd.agree(reject, reject) and not vd.agree(reject, vd.Verdict(False, 4))
    assert vd.dangerous(reject, vd.Verdict(True)) and not vd.dangerous(policy, vd.Verdict(True))
    assert not vd.dangerous(vd.Verdict(True), reject)


# --- pybpf against the recorded kernel --------------------------------------------------------


def _documented() -> set[str]:
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    return set(re.findall(r"^\s*[-*] `([A-Za-z0-9_.-]+)`", text, re.M))


def test_pybpf_agrees_with_the_recorded_kernel():
    summary = vd.compare(CASES, timeout=HANG_GUARD)
    report = "\n".join(summary.lines(verbose=True)[-60:])
    assert [r.case.name for r in summary.dangerous] == [], report
    assert summary.percent >= 98.0, report
    undocumented = [r.case.name for r in summary.disagreements
                    if r.case.name not in _documented()]  # fmt: skip
    assert undocumented == [], f"not in {DOC.name}: {undocumented}"
    hung = [r.case.name for r in summary.timeouts]
    assert hung == [], f"pybpf gave no verdict within {HANG_GUARD:g} CPU seconds (a timeout)"


def test_documented_disagreements_exist():
    names = {c.name for c in CASES}
    assert _documented() <= names


# --- the recordings against the running kernel --------------------------------------------------


def test_recordings_match_the_running_kernel(kernel_facts):
    """Each recorded verdict, asked of the running kernel too (when bpf(2) works): a live
    verdict that differs is drift, and this test an xfail naming the drifted cases."""
    for case in CASES:
        recorded = kernel_facts.fact(case.name, functools.partial(vd.live_text, case))
        vd.verdict_from_text(recorded, case.name)  # a verdict, or CorpusError
