"""The kernel oracle: what tests/fixtures/expected/ recorded, and whether the live Linux drifted.

Each case of each expected JSON holds the inputs of one load of a C fixture with what the
kernel answered (runs and maps, see tests/fixtures/expect.py), stamped with that kernel;
``tests/test_fixtures.py`` compares pybpf with it.  Here every recorded case must still be
the case ``expect.CASES`` defines (the recording is of today's inputs), and where bpftool
and bpf(2) work it is loaded again with ``bpftool prog loadall`` (pins under
/sys/fs/bpf/pybpf-test-*, removed afterwards), run and its maps dumped: a live answer
that differs from the recording is kernel drift (the test is reported as xfail naming
what differs), never a failure.  ``--record-kernel`` rewrites the expected JSON of the
selected fixtures from the live kernel (``python tests/fixtures/build.py --expect``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from pybpf.testing import kernel_facts as kf

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"pybpf_fixtures_{name}", FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


expect = _module("expect")
CASES = [
    pytest.param(path.stem, i, id=f"{path.stem}-{case['name']}")
    for path in sorted((FIXTURES / "expected").glob("*.json"))
    for i, case in enumerate(expect.load_expected(path.stem)["cases"])
]
_recorded: set[str] = set()


def _live(kernel_facts) -> bool:
    """Whether the live kernel can be asked (bpftool, root, a bpf filesystem, bpf(2))."""
    return expect.missing() is None and kernel_facts.live is not None


def _require_live() -> None:
    reason = expect.missing()
    if reason:
        pytest.skip(f"checks the oracle's own bpftool machinery: {reason}")


def test_every_fixture_has_expectations():
    names = {p.name.removesuffix(".bpf.c") for p in FIXTURES.glob("*.bpf.c")}
    assert names == set(expect.CASES)
    assert names == {p.stem for p in (FIXTURES / "expected").glob("*.json")}


@pytest.mark.parametrize(("name", "index"), CASES)
def test_kernel_agrees(kernel_facts, name, index):
    if kernel_facts.record and name not in _recorded:
        assert expect.main([name]) == 0  # re-record the fixture's cases from the live kernel
        _recorded.add(name)
    doc = expect.load_expected(name)
    case = doc["cases"][index]
    assert expect.recorded_inputs(case) == expect.inputs(expect.CASES[name][index]), (
        f"expected/{name}.json was recorded for other inputs: python tests/fixtures/build.py "
        "--expect (as root)")  # fmt: skip
    if not _live(kernel_facts):
        return  # the recording alone: what pybpf is compared with (tests/test_fixtures.py)
    observed = expect.observe(FIXTURES / doc["object"], case, tag=f"-{index}")
    recorded_on = expect.stamp(doc)
    for where, recorded, live, _ in expect.mismatches(case, observed):
        fact = f"expected/{name}/{case['name']}{where}"
        kernel_facts.drifts.append(kf.Drift(fact, recorded, recorded_on, live, kernel_facts.live,
                                            kf.decision_for(kernel_facts.decisions, fact)))


def test_pins_are_removed():
    _require_live()
    doc = expect.load_expected("hello")
    expect.observe(FIXTURES / doc["object"], doc["cases"][0])
    mine = f"-{os.getpid()}"
    left = [p.name for p in expect.BPFFS.iterdir() if p.name.startswith("pybpf-test-")]
    assert [name for name in left if name.endswith((mine, f"{mine}-maps"))] == []


def test_a_wrong_expectation_is_reported():
    doc = expect.load_expected("xdp_parser")
    case = doc["cases"][0]
    observed = json.loads(json.dumps(case))  # what a kernel answering otherwise would give
    observed["runs"][1]["retval"] = 2
    observed["maps"]["stats"]["entries"][0]["value"] = "00" * 8
    problems = expect.differences(case, observed)
    assert problems == ["/maps/stats/entries[0]/value: expected '0200000000000000', got "
                        "'0000000000000000'", "/runs[1]/retval: expected 1, got 2"]  # fmt: skip
    where = [(path, recorded, got) for path, recorded, got, _ in expect.mismatches(case, observed)]
    assert where == [("/maps/stats/entries[0]/value", "0200000000000000", "0000000000000000"),
                     ("/runs[1]/retval", 1, 2)]  # fmt: skip

