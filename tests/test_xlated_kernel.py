"""``prog dump xlated`` and ``bytes_xlated`` against the kernel's: C fixtures and selftests.

Each fixture object is loaded by pybpf (in process) and its programs dumped as
``bpftool prog dump xlated`` prints them; the kernel's dumps of the same object
(``bpftool prog loadall``, then ``prog dump xlated`` and ``prog show`` of each pin)
are recorded as kernel facts (tests/kernel_facts/xlated_kernel.json), masked where a
load or a boot changes them: map ids, helper and kernel-function addresses, the tags
in the names bpftool gives subprograms.  Where bpf(2) and bpftool work the live kernel
is asked again: a different answer is drift, reported, not failed.

The verifier selftests' programs that both pybpf and the kernel accept are compared the
same way (:mod:`pybpf.testing.xlated_diff`, whose listing names calls as bpftool does
through /proc/kallsyms), against the kernel's images recorded under ``selftests/...``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pybpf.cli.bpftool import prog as progmod
from pybpf.loader import ObjectSpec, load_object
from pybpf.loader.listing import xlated_notes
from pybpf.runtime.kernel import Kernel
from pybpf.testing import selftests as st
from pybpf.testing import xlated_diff as xd

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OBJECTS = sorted(p.name.removesuffix(".bpf.o") for p in FIXTURES.glob("*.bpf.o"))
#: fixtures whose dump pybpf does not show as the kernel does yet, and why
KNOWN: dict[str, str] = {}


def mask(text: str) -> list[str]:
    """A dump's lines with what changes from load to load (or boot to boot) masked."""
    text = re.sub(r"map\[id:\d+\]", "map[id:M]", text)
    text = re.sub(r"(call [A-Za-z_][\w.]*)#-?\d+", r"\1#A", text)
    text = re.sub(r"#bpf_prog_[0-9a-f]{16}_", "#bpf_prog_T_", text)
    return text.splitlines()


def pybpf_dumps(name: str) -> dict[str, dict]:
    """Program name -> masked dump and bytes_xlated, as pybpf loads the fixture."""
    spec = ObjectSpec.from_file(str(FIXTURES / f"{name}.bpf.o"))
    coll = load_object(spec, Kernel())
    out = {}
    for prog_spec in spec.programs:
        prog = coll.programs.get(prog_spec.name)
        if prog is None:
            continue
        prog.notes = xlated_notes(spec, prog_spec)
        out[prog_spec.name] = {"xlated": mask(progmod.xlated_plain(prog)),
                               "bytes_xlated": prog.bytes_xlated}  # fmt: skip
    return out


def _bpftool(*args: str) -> str:
    return subprocess.run(["bpftool", *args], check=True, text=True, capture_output=True,
                          timeout=120).stdout  # fmt: skip


def kernel_dumps(name: str) -> dict[str, dict]:
    """The same, as the live kernel shows the object loaded by ``bpftool prog loadall``."""
    pins = Path(f"/sys/fs/bpf/pybpf-xlated-{os.getpid()}")
    _bpftool("prog", "loadall", str(FIXTURES / f"{name}.bpf.o"), str(pins))
    try:
        out = {}
        for pin in sorted(pins.iterdir()):
            show = json.loads(_bpftool("-j", "prog", "show", "pinned", str(pin)))
            out[show["name"]] = {"xlated": mask(_bpftool("prog", "dump", "xlated", "pinned",
                                                         str(pin))),
                                 "bytes_xlated": show["bytes_xlated"]}  # fmt: skip
        return out
    finally:
        shutil.rmtree(pins, ignore_errors=True)


def _bpftool_usable() -> str | None:
    if shutil.which("bpftool") is None:
        return "bpftool is not installed"
    if not Path("/sys/fs/bpf").is_dir():
        return "no bpf filesystem"
    return None


@pytest.mark.parametrize("name", OBJECTS)
def test_xlated_as_the_kernel_shows_it(kernel_facts, name):
    facts = kernel_facts.offline_when(_bpftool_usable())
    theirs = facts.fact(name, lambda: kernel_dumps(name))
    ours = pybpf_dumps(name)
    if name in KNOWN:
        assert ours != theirs, f"{name} now matches the kernel: remove it from KNOWN"
        pytest.xfail(KNOWN[name])
    for prog, dump in theirs.items():
        assert ours.get(prog) == dump, f"{name}/{prog}"
    assert set(ours) == set(theirs)


def test_mask_hides_ids_and_addresses():
    text = ("   0: (18) r1 = map[id:20]\n   2: (85) call __htab_map_lookup_elem#123456\n"
            "   3: (85) call pc+10#bpf_prog_6e10ec0dd4c7deaa_packet_len\n")
    assert mask(text) == ["   0: (18) r1 = map[id:M]", "   2: (85) call __htab_map_lookup_elem#A",
                          "   3: (85) call pc+10#bpf_prog_T_packet_len"]  # fmt: skip


# --- the verifier selftests -------------------------------------------------------------------
SELFTESTS = st.objects()
KNOWN_SELFTESTS: dict[str, str] = json.loads(xd.KNOWN.read_text())


@pytest.mark.parametrize("path", SELFTESTS, ids=lambda p: p.name.removesuffix(".bpf.o"))
def test_selftests_xlated(kernel_facts, path):
    """Every selftest program both accept shows the kernel's image, except the known ones
    (tests/selftests/xlated_known.json, by ``python -m pybpf.testing.xlated_diff
    --write-known``), which must still differ as recorded there."""
    from pybpf.testing.selftests_kernel import available

    facts = kernel_facts.offline_when(available())
    cases = st.load_cases(path)
    aux = st.aux_names(cases)
    wrong = []
    for case in st.runnable(cases):
        theirs = facts.fact(xd.fact_key(case), functools.partial(xd.kernel_answer, path, case,
                                                                 aux))  # fmt: skip
        if theirs.get("refused"):
            continue
        why = xd.difference(xd.pybpf_answer(path, case, aux), theirs)
        if why != KNOWN_SELFTESTS.get(case.key):
            wrong.append(f"{case.key}: {why or 'now the same'} "
                         f"(known: {KNOWN_SELFTESTS.get(case.key, 'the same')})")
    assert not wrong, "\n".join(wrong)


def test_known_selftests_exist():
    keys = {c.key for p in SELFTESTS for c in st.runnable(st.load_cases(p))}
    assert set(KNOWN_SELFTESTS) <= keys


def test_layout_snapshot_is_the_running_kernels():
    """The struct offsets of the snapshot are the running kernel's (vmlinux BTF); another
    kernel's are drift: reported, not failed (regenerate with ``python -m
    pybpf.testing.kernel_layouts --write`` on the kernel pybpf models)."""
    from pybpf.btf.vmlinux import load_vmlinux
    from pybpf.testing import kernel_layouts
    from pybpf.uapi.klayout import snapshot

    btf = load_vmlinux()
    if btf is None:
        pytest.skip("no vmlinux BTF on this machine: the snapshot alone counts")
    snap = snapshot()
    live = {k: tuple(v) for k, v in kernel_layouts.read(btf).items()}
    drift = sorted(k for k in live if live[k] != snap.fields.get(k))
    if drift:
        pytest.xfail(f"kernel drift: {drift[:5]} differ from the snapshot of Linux "
                     f"{snap.release} on Linux {os.uname().release}")
    assert set(live) == set(snap.fields)


def test_helper_calls_name_the_kernels_functions(kernel_facts):
    """Each helper call of each probed program type names the kernel function the kernel's
    image calls (``bpf_xdp_event_output``, ``bpf_get_cgroup_classid_curr``...), recorded
    from one-call programs (:func:`pybpf.testing.xlated_diff.helper_functions`)."""
    from pybpf.kernel import linux
    from pybpf.verifier.fixups import helper_symbol

    facts = kernel_facts.offline_when(linux.available())
    theirs = facts.fact("helper_functions", xd.helper_functions)
    ours = {key: helper_symbol(int(key.split("/")[1]), int(key.split("/")[0]))
            for key in theirs}  # fmt: skip
    assert {k: v for k, v in ours.items() if v != theirs[k]} == {}
    assert len(theirs) > 200
