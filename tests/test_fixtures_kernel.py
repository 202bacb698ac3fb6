"""The kernel oracle: the running Linux still does what tests/fixtures/expected/ says.

Each case of each expected JSON is loaded with ``bpftool prog loadall`` (pins under
/sys/fs/bpf/pybpf-test-*, removed afterwards), its inputs run with ``bpftool prog run``
and its maps dumped (see tests/fixtures/expect.py); the answers must equal the
expectations, which the same code wrote (``python tests/fixtures/build.py --expect``).
Skipped, with the reason, when not root, without bpftool or without a bpf filesystem.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"

pytestmark = pytest.mark.kernel


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


@pytest.fixture(scope="module", autouse=True)
def kernel():
    reason = expect.missing()
    if reason:
        pytest.skip(reason)


def test_every_fixture_has_expectations():
    names = {p.name.removesuffix(".bpf.c") for p in FIXTURES.glob("*.bpf.c")}
    assert names == set(expect.CASES)
    assert names == {p.stem for p in (FIXTURES / "expected").glob("*.json")}


@pytest.mark.parametrize(("name", "index"), CASES)
def test_kernel_agrees(name, index):
    doc = expect.load_expected(name)
    case = doc["cases"][index]
    observed = expect.observe(FIXTURES / doc["object"], case, tag=f"-{index}")
    assert expect.differences(case, observed) == []


def test_pins_are_removed():
    doc = expect.load_expected("hello")
    expect.observe(FIXTURES / doc["object"], doc["cases"][0])
    mine = f"-{os.getpid()}"
    left = [p.name for p in expect.BPFFS.iterdir() if p.name.startswith("pybpf-test-")]
    assert [name for name in left if name.endswith((mine, f"{mine}-maps"))] == []


def test_a_wrong_expectation_is_reported():
    doc = expect.load_expected("xdp_parser")
    case = doc["cases"][0]
    observed = expect.observe(FIXTURES / doc["object"], case)
    observed["runs"][1]["retval"] = 2
    observed["maps"]["stats"]["entries"][0]["value"] = "00" * 8
    problems = expect.differences(case, observed)
    assert problems == ["/maps/stats/entries[0]/value: expected '0200000000000000', got "
                        "'0000000000000000'", "/runs[1]/retval: expected 1, got 2"]  # fmt: skip
