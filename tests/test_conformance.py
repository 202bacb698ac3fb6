"""The public bpf_conformance suite, in process and through the plugin, on every engine."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import conformance_files, conformance_params, require_conformance
from pybpf.cli import conformance_plugin
from pybpf.errors import ReservedFieldError
from pybpf.isa import decode
from pybpf.runtime.engines import ENGINES
from pybpf.testing.datafile import Outcome, load, run_file
from pybpf.vm import conformance_helpers

TESTS = conformance_files("tests")
NEGATIVE = conformance_files("negative")


def _engine(name: str):
    helpers = conformance_helpers()
    return lambda insns, memory: ENGINES[name](insns, memory, helpers)


def test_suite_is_complete():
    require_conformance()
    assert len(TESTS) == 313
    assert len(NEGATIVE) == 60


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("path", conformance_params("tests"))
def test_conformance_in_process(path: Path, engine: str):
    verdict = run_file(path, _engine(engine))
    assert verdict.outcome is Outcome.PASS, verdict.detail


@pytest.mark.parametrize("path", conformance_params("negative"))
def test_negative_never_passes(path: Path):
    verdict = run_file(path, _engine("interp"))
    assert verdict.outcome is not Outcome.PASS


_FIELD = {"offset": "off", "src": "src_reg", "dst": "dst_reg", "imm": "imm"}
UNUSED = [p for p in NEGATIVE if p.stem.startswith("unused-")]
UNUSED_PARAMS = [
    p for p in conformance_params("negative") if p.id.startswith(("unused-", "absent"))
]


@pytest.mark.parametrize("path", UNUSED_PARAMS)
def test_unused_field_rejected_naming_field(path: Path):
    field = _FIELD[path.stem.rsplit("-", 1)[1]]
    with pytest.raises(ReservedFieldError) as info:
        decode(load(path).program)
    assert info.value.field == field
    assert info.value.pc == 0
    assert field in str(info.value)


def test_unused_negatives_count():
    require_conformance()
    assert len(UNUSED) == 45


def _plugin_argv(path: Path) -> tuple[list[str], str]:
    case = load(path)
    argv = [" ".join(f"{b:02x}" for b in case.memory)] if case.memory else []
    return argv, "  ".join(f"{b:02x}" for b in case.program)


def test_plugin_in_process_all():
    """The plugin's main() on every test: r0 in hex, exit 0."""
    require_conformance()
    failures = []
    for path in TESTS:
        argv, stdin = _plugin_argv(path)
        out, err = io.StringIO(), io.StringIO()
        status = conformance_plugin.main(argv, io.StringIO(stdin), out, err)
        expected = load(path).result
        if status != 0 or int(out.getvalue(), 16) != expected:
            failures.append((path.name, status, out.getvalue(), err.getvalue()))
    assert not failures


def _run_plugin(path: Path) -> tuple[str, bool, str]:
    argv, stdin = _plugin_argv(path)
    proc = subprocess.run(
        [sys.executable, "-m", "pybpf.cli.conformance_plugin", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    expected = load(path).result
    ok = proc.returncode == 0 and int(proc.stdout.strip(), 16) == expected
    return path.name, ok, proc.stdout + proc.stderr


def test_plugin_process_all():
    """Every test through a real plugin process, as the bpf_conformance runner runs it."""
    require_conformance()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(_run_plugin, TESTS))
    failed = [(name, out) for name, ok, out in results if not ok]
    assert not failed
    assert len(results) == 313


def test_plugin_error_is_one_line():
    out, err = io.StringIO(), io.StringIO()
    status = conformance_plugin.main([], io.StringIO("07 00 01 00 01 00 00 00"), out, err)
    assert status == 1
    assert out.getvalue() == ""
    assert err.getvalue().count("\n") == 1 and "off" in err.getvalue()


def test_plugin_rejects_bad_base16():
    err = io.StringIO()
    assert conformance_plugin.main(["zz"], io.StringIO("95 00"), io.StringIO(), err) == 1
    assert "base16" in err.getvalue()
