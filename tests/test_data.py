"""pybpf's own data-driven cases (tests/data/*.data) on every engine, and their coverage."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DATA
from pybpf.isa import SPECS, decode, lookup
from pybpf.runtime.engines import ENGINES
from pybpf.testing.datafile import Outcome, load, run_file
from pybpf.vm import conformance_helpers

FILES = sorted(DATA.glob("*.data"))

# Instructions the .data runner cannot exercise (no packet, no kfunc table);
# tests/test_interpreter.py covers each of them.
COVERED_ELSEWHERE = {"ldabsb", "ldabsh", "ldabsw", "ldindb", "ldindh", "ldindw", "call_kfunc"}


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_data_file(path: Path, engine: str):
    helpers = conformance_helpers()
    verdict = run_file(path, lambda insns, memory: ENGINES[engine](insns, memory, helpers))
    assert verdict.outcome is Outcome.PASS, verdict.detail


def test_every_instruction_is_covered():
    used = {lookup(insn).name for path in FILES for insn in decode(load(path).program)}
    missing = {spec.name for spec in SPECS} - used - COVERED_ELSEWHERE
    assert not missing, sorted(missing)
    assert len(FILES) >= 50
