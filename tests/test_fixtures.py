"""The C fixtures through pybpf: the same runs and maps as the kernel's, from the same JSON.

Every case of tests/fixtures/expected/*.json (written from the running kernel by
``python tests/fixtures/build.py --expect``) is loaded into a fresh simulated kernel with
:func:`pybpf.loader.load_object` (``set_before_load`` through its ``rodata`` argument),
its inputs run with :func:`pybpf.runtime.testrun.test_run`, and the programs' answers
and the maps afterwards must equal what Linux answered, compared by
``expect.differences`` (``?`` nibbles in expectations are not compared).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from pybpf.runtime.kernel import Kernel
from pybpf.runtime.testrun import test_run as run_test

try:
    from pybpf.loader import load_object
except ImportError as err:  # the ELF loader is not there yet
    load_object = None
    LOADER_MISSING = f"pybpf.loader.load_object is not importable yet ({err})"
else:
    LOADER_MISSING = None

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"pybpf_fixtures_{name}", FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


expect = _module("expect")
# Differences from the kernel found when this file was written, for the loader and runtime
# to fix; strict, so a fixed gap fails here until its entry is removed.
KNOWN_GAPS: dict[str, str] = {}


def _case_params(gaps: dict[str, str]) -> list:
    params = []
    for path in sorted((FIXTURES / "expected").glob("*.json")):
        for i, case in enumerate(expect.load_expected(path.stem)["cases"]):
            ident = f"{path.stem}-{case['name']}"
            marks = [pytest.mark.xfail(strict=True, reason=gaps[ident])] if ident in gaps else []
            params.append(pytest.param(path.stem, i, id=ident, marks=marks))
    return params


CASES = _case_params(KNOWN_GAPS)

pytestmark = pytest.mark.skipif(LOADER_MISSING is not None, reason=str(LOADER_MISSING))


def _find_map(coll, name: str, expected: dict):
    """The live map of an expected map: by the kernel's name, or by the object's name."""
    if expected["kernel_name"] in coll.maps:
        return coll.maps[expected["kernel_name"]]
    for key, live in coll.maps.items():
        spec = getattr(live, "spec", None)
        if key == name or expect.elf_map_name(key) == name or getattr(spec, "section", "") == name:
            return live
    raise KeyError(f"no map {name!r} ({expected['kernel_name']!r}) in {sorted(coll.maps)}")


def _rodata(coll_spec, set_before_load: dict[str, str]) -> dict[str, bytes]:
    """load_object's ``rodata`` argument: the spec's map name of each section."""
    out = {}
    for section, data in set_before_load.items():
        names = [m.name for m in coll_spec.maps
                 if m.section == section or expect.elf_map_name(m.name) == section]  # fmt: skip
        assert len(names) == 1, f"section {section}: maps {names}"
        out[names[0]] = bytes.fromhex(data)
    return out


def _map_contents(coll, live) -> dict:
    kind = live.map_type.name.lower()
    doc = {"type": kind, "key_size": live.key_size, "value_size": live.value_size,
           "max_entries": live.max_entries, "flags": live.map_flags,
           "frozen": bool(live.frozen)}  # fmt: skip
    if kind == "ringbuf":
        doc["records"] = [r.hex() for r in live.consume()]
    elif kind == "prog_array":
        names = {id(prog): name for name, prog in coll.programs.items()}
        doc["entries"] = [
            {"key": i.to_bytes(4, "little").hex(), "program": names.get(id(prog), "?")}
            for i in range(live.max_entries)
            if (prog := live.program_at(i)) is not None
        ]
    else:
        doc["entries"] = sorted(({"key": k.hex(), "value": v.hex()} for k, v in live.items()),
                                key=lambda e: e["key"])  # fmt: skip
    return doc


def observe(obj: Path, case: dict) -> dict:
    """What pybpf answers to a case: the shape of :func:`expect.observe`'s answer."""
    from pybpf.loader import ObjectSpec

    spec = ObjectSpec.from_file(obj)
    with load_object(spec, Kernel(), rodata=_rodata(spec, case["set_before_load"])) as coll:
        runs = []
        for run in case["runs"]:
            prog = coll.programs[run["program"]]
            out = dict(run)
            if "data_in" in run:
                result = run_test(prog, data_in=bytes.fromhex(run["data_in"]))
                out["retval"] = result.retval
                out["data_out"] = result.data_out.hex()
            else:
                ctx = bytes.fromhex(run["ctx_in"]) if "ctx_in" in run else None
                out["retval"] = run_test(prog, ctx_in=ctx).retval
            runs.append(out)
        maps = {}
        for name, expected in case["maps"].items():
            live = _find_map(coll, name, expected)
            maps[name] = {"kernel_name": expected["kernel_name"], **_map_contents(coll, live)}
    return {"name": case["name"], "set_before_load": case["set_before_load"], "runs": runs,
            "maps": maps}  # fmt: skip


def _without_flags(case: dict) -> dict:
    maps = {name: {k: v for k, v in m.items() if k != "flags"} for name, m in case["maps"].items()}
    return {**case, "maps": maps}


@pytest.mark.parametrize(("name", "index"), CASES)
def test_pybpf_agrees_with_the_kernel(name, index):
    """Runs and maps (map_flags apart: see test_map_flags_agree)."""
    doc = expect.load_expected(name)
    case = doc["cases"][index]
    observed = observe(FIXTURES / doc["object"], case)
    assert expect.differences(_without_flags(case), _without_flags(observed)) == []


def test_map_flags_agree():
    """Every map of every fixture is created with the flags libbpf gave it."""
    from pybpf.loader import ObjectSpec

    problems = []
    for path in sorted((FIXTURES / "expected").glob("*.json")):
        doc = expect.load_expected(path.stem)
        spec = ObjectSpec.from_file(FIXTURES / doc["object"])
        case = doc["cases"][0]
        with load_object(spec, Kernel(), rodata=_rodata(spec, case["set_before_load"])) as coll:
            for name, expected in case["maps"].items():
                got = _find_map(coll, name, expected).map_flags
                if got != expected["flags"]:
                    problems.append(f"{path.stem} {name}: {got}, libbpf {expected['flags']}")
    assert problems == []


def test_every_fixture_is_covered():
    names = {p.name.removesuffix(".bpf.c") for p in FIXTURES.glob("*.bpf.c")}
    assert names == {p.stem for p in (FIXTURES / "expected").glob("*.json")}
