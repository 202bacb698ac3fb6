"""Shared test fixtures: where the shared conformance data lives."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

# No wall-clock limits in tests: hypothesis's default 200 ms deadline per example fails
# on a loaded machine, and says nothing about pybpf.
settings.register_profile("pybpf", deadline=None)
settings.load_profile("pybpf")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance" / "bpf_conformance"
DATA = Path(__file__).resolve().parent / "data"


def conformance_files(kind: str) -> list[Path]:
    """The suite's files of ``kind`` ('tests' or 'negative'), empty when absent."""
    folder = CONFORMANCE / kind
    return sorted(folder.glob("*.data")) if folder.is_dir() else []


def conformance_params(kind: str) -> list:
    """pytest params of the suite's files, or one param skipped with the reason."""
    files = conformance_files(kind)
    if files:
        return [pytest.param(p, id=p.stem) for p in files]
    reason = f"conformance suite not found at {CONFORMANCE} (a fresh clone has no ../shared)"
    return [pytest.param(None, id="absent", marks=pytest.mark.skip(reason=reason))]


def require_conformance() -> None:
    """Skip (with the reason) when ../shared is not beside this checkout."""
    if not (CONFORMANCE / "tests").is_dir():
        pytest.skip(
            f"conformance suite not found at {CONFORMANCE} (a fresh clone has no ../shared)"
        )


def pytest_configure(config) -> None:
    """The JIT's compile cache goes to a directory of this test session, not ~/.cache."""
    import os
    import tempfile

    if "PYBPF_CACHE_DIR" not in os.environ:
        os.environ["PYBPF_CACHE_DIR"] = tempfile.mkdtemp(prefix="pybpf-test-cache-")


pytest_plugins = ["pybpf.testing.kernel_plugin"]
