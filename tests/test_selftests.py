"""The kernel's verifier selftests: pybpf against the kernel's recorded outcome, per object.

Every test program of the 95 ``verifier_*.c`` objects (built by ``python -m
pybpf.testing.selftests build``, committed in ``tests/selftests/objects``) is loaded
as the kernel's ``test_loader.c`` loads it and compared with the kernel's outcome
recorded in ``kernel_facts/selftests.json``.  Where libbpf 1.5 and bpf(2) are
available the live kernel answers too, and a different answer is drift.

Never allowed: a program the kernel refuses that pybpf accepts.  The other
disagreements known today are listed in ``selftests/known.json`` (written by
``python -m pybpf.testing.selftests --write-known``); a case whose outcome changes
either way fails, so the list only shrinks on purpose (except a known timeout that
a faster machine finishes in agreement with the kernel).
"""

from __future__ import annotations

import functools
import json

import pytest

from pybpf.testing import selftests as st

OBJECTS = st.objects()
KNOWN: dict[str, str] = json.loads(st.KNOWN.read_text())


def _kernel(path, case, aux) -> dict:
    return st.kernel_outcome(path, case, aux).as_fact()


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name.removesuffix(".bpf.o"))
def test_selftests_object(kernel_facts, path):
    from pybpf.testing.selftests_kernel import available

    oracle = kernel_facts.offline_when(available())
    cases = st.load_cases(path)
    aux = st.aux_names(cases)
    wrong = []
    for case in st.runnable(cases):
        kernel = st.Outcome.from_fact(oracle.fact(case.key,
                                                  functools.partial(_kernel, path, case, aux)))
        ours = st.guarded(functools.partial(st.pybpf_outcome, path, case, aux), st.HANG_GUARD)
        row = st.Row(case, kernel, ours)
        kind, known = row.verdict_kind, KNOWN.get(case.key, "agree")
        if known == "timeout" and kind == "agree":
            continue  # the hang guard counts CPU seconds: a faster CPU may finish in time
        if kind == "unsafe-accept" or kind != known:
            wrong.append(f"{case.key}: {kind} (known: {known}); kernel {st.describe(kernel)}; "
                         f"pybpf {st.describe(ours)}")
    assert not wrong, "\n".join(wrong)


def test_known_names_only_cases_that_exist():
    keys = {c.key for p in OBJECTS for c in st.runnable(st.load_cases(p))}
    assert set(KNOWN) <= keys
    assert "unsafe-accept" not in KNOWN.values()
