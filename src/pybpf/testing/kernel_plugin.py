"""The pytest side of recorded kernel facts: a ``kernel_facts`` fixture and a drift report.

A test asks ``kernel_facts.fact(key, probe)`` for what the kernel answers (``probe``
asks the live kernel through bpf(2)) and compares pybpf with the answer, which is
always the recording (:mod:`pybpf.testing.kernel_facts`).  Where bpf(2) works the
probe runs too; a live answer that differs from the recording is drift: a test that
otherwise passes is reported as xfail naming the fact, the recorded and the live answer,
and the session ends with a "kernel drift" section listing every drifted fact.  A test
that fails, fails, drift or not: pybpf must agree with the recording.

Options: ``--record-kernel`` re-records the facts the selected tests ask (root, on the
kernel pybpf models); ``--kernel-drift-json FILE`` writes the drifts as JSON (what
``python -m pybpf.testing.kernel_drift`` reads).  Every test using the fixture carries
the ``kernel`` marker.  The facts of ``tests/test_NAME.py`` live in
``tests/kernel_facts/NAME.json``; decisions about drift in
``tests/kernel_facts/decisions.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pybpf.testing import kernel_facts as kf

_files: dict[Path, kf.FactFile] = {}
_drifts: list[tuple[str, kf.Drift]] = []


def facts_dir(test_file: str | Path) -> Path:
    return Path(test_file).resolve().parent / "kernel_facts"


def fact_file(path: Path) -> kf.FactFile:
    """The session's one copy of the fact file at ``path`` (loaded once, saved at the end)."""
    if path not in _files:
        _files[path] = kf.FactFile.load(path)
    return _files[path]


def oracle(config: pytest.Config, test_file: str | Path, name: str | None = None) -> kf.Oracle:
    """An oracle over the facts of ``test_file`` (or of the file called ``name``)."""
    folder = facts_dir(test_file)
    stem = name or Path(test_file).stem.removeprefix("test_")
    record = bool(config.getoption("record_kernel", False))
    return kf.Oracle.beside(fact_file(folder / f"{stem}.json"), record=record)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pybpf kernel facts")
    group.addoption("--record-kernel", action="store_true", dest="record_kernel",
                    help="re-record the kernel facts the selected tests ask (needs bpf(2))")
    group.addoption("--kernel-drift-json", dest="kernel_drift_json", metavar="FILE",
                    help="write every drifted kernel fact to FILE as JSON")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kernel: compares pybpf with recorded kernel facts")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kernel_facts" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kernel)


@pytest.fixture
def kernel_facts(request: pytest.FixtureRequest) -> kf.Oracle:
    """The kernel's recorded answers for this test module (see the module docstring)."""
    found = oracle(request.config, request.path)
    request.node.stash[_DRIFTS] = found.drifts
    return found


_DRIFTS = pytest.StashKey[list]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    drifts = item.stash.get(_DRIFTS, [])
    if report.when != "call" or not drifts:
        return
    _drifts.extend((item.nodeid, d) for d in drifts)
    lines = [d.line() for d in drifts]
    if report.passed:
        more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
        report.outcome = "skipped"
        report.wasxfail = f"kernel drift: {lines[0]}{more}"
    else:
        report.sections.append(("kernel drift", "\n".join(lines)))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _drifts:
        return
    stamp = kf.live_stamp()
    terminalreporter.section("kernel drift")
    terminalreporter.write_line(f"{stamp} answers {len(_drifts)} recorded facts differently "
                                "(reported, not failed):")
    for nodeid, drift in _drifts:
        terminalreporter.write_line(f"  {drift.line()}  [{nodeid}]")
    decisions = {d.decision for _, d in _drifts if d.decision}
    for decision in sorted(decisions, key=lambda d: d.patterns):
        terminalreporter.write_line(f"decided ({', '.join(decision.patterns)}): follow the "
                                    f"{decision.follow} kernel: {decision.why}")
    if undecided := sum(d.decision is None for _, d in _drifts):
        terminalreporter.write_line(f"{undecided} drifted facts have no decision yet "
                                    "(tests/kernel_facts/decisions.json)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for file in _files.values():
        file.save()
    target = session.config.getoption("kernel_drift_json", None)
    if target:
        stamp = kf.live_stamp()
        doc = {"live": str(stamp) if stamp else None,
               "drifts": [dict(d.as_json(), test=nodeid) for nodeid, d in _drifts]}
        Path(target).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
