"""Differential fuzz: the JIT and the interpreter agree on random programs.

A CI-sized run of :mod:`pybpf.testing.jit_diff` (``python -m
pybpf.testing.jit_diff --count 10000`` is the full one): verifier-style random
programs compared on r0, every register and stack slot (written to the packet by
the epilogue) in checked and direct modes, and random streams of valid
instructions compared on r0, memory, the executed count or the exact error.
"""

from __future__ import annotations

import pytest

from pybpf.testing import jit_diff

COUNT = 150


@pytest.mark.parametrize("family", ["verified", "raw"])
def test_engines_agree_on_random_programs(family):
    make = jit_diff.verified_case if family == "verified" else jit_diff.raw_case
    disagree = []
    errors = 0
    for seed in range(1, COUNT + 1):
        case = make(seed)
        errors += case.interp.error is not None
        if not case.agree:
            disagree.append(jit_diff.describe(case))
    assert not disagree, "\n\n".join(disagree[:3])
    if family == "verified":  # these programs never fail: a failure is a generator bug
        assert errors == 0
    else:  # the raw family must exercise the error paths, not only clean exits
        assert COUNT // 5 < errors < COUNT


def test_a_disagreement_is_reported(monkeypatch):
    case = jit_diff.raw_case(3)
    broken = jit_diff.Case(case.family, case.seed, case.insns, case.checked, case.interp,
                           jit_diff.Result(12345, b"", None, None))  # fmt: skip
    assert not broken.agree and "seed 3" in jit_diff.describe(broken)
    monkeypatch.setattr(jit_diff, "raw_case", lambda seed: broken)
    assert jit_diff.main(["--count", "2", "--family", "raw"]) == 1
    assert jit_diff.main(["--count", "4"]) == 1
    monkeypatch.undo()
    assert jit_diff.main(["--count", "6"]) == 0
