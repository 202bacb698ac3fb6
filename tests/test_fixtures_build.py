"""The C fixtures rebuild byte for byte, from any checkout location.

tests/fixtures/build.py compiles every tests/fixtures/*.bpf.c with clang into the
committed *.bpf.o; these tests rebuild them (skipped, with the reason, without clang,
its BPF headers, or with another clang than the one that wrote the objects) and check,
without clang, that every source has its object and its kernel expectations, made from
that very object.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"pybpf_fixtures_{name}", FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build = _module("build")
SOURCES = build.sources()
NAMES = [src.name.removesuffix(".bpf.c") for src in SOURCES]


def require_clang() -> None:
    reason = build.missing() or build.producer_mismatch()
    if reason:
        pytest.skip(f"cannot rebuild the fixtures: {reason}")


def test_the_fixtures_are_there():
    assert set(NAMES) >= {"hello", "xdp_parser", "hash_counter", "globals", "subprog",
                          "tail_call", "ringbuf", "core_reader"}  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_object_and_expectations_match_the_source(name):
    obj = FIXTURES / f"{name}.bpf.o"
    expected = FIXTURES / "expected" / f"{name}.json"
    assert obj.is_file(), f"{obj.name} missing: python tests/fixtures/build.py"
    assert expected.is_file(), f"{expected.name} missing: python tests/fixtures/build.py --expect"
    doc = json.loads(expected.read_text())
    assert doc["object"] == obj.name
    assert doc["object_sha256"] == hashlib.sha256(obj.read_bytes()).hexdigest(), (
        f"{expected.name} was generated from another {obj.name}: "
        "python tests/fixtures/build.py --expect (as root)"
    )
    assert doc["cases"] and all(case["runs"] for case in doc["cases"])


def test_rebuild_is_identical():
    require_clang()
    assert build.check() == []


def test_rebuild_elsewhere_is_identical(tmp_path):
    """No path of the checkout ends up in the objects: a copy elsewhere rebuilds the same."""
    require_clang()
    copy = tmp_path / "some" / "other" / "checkout"
    copy.mkdir(parents=True)
    for path in [*SOURCES, *FIXTURES.glob("*.bpf.o"), FIXTURES / "build.py"]:
        shutil.copy(path, copy / path.name)
    proc = subprocess.run([sys.executable, str(copy / "build.py"), "--check"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert str(FIXTURES) not in "".join(p.read_bytes().decode("latin-1")
                                        for p in FIXTURES.glob("*.bpf.o"))  # fmt: skip
