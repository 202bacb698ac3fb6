"""The verifier on the command line: refusals with the report, logs with -d / --log-level.

Each step is its own ``python -m pybpf.cli.main`` process sharing one state
directory, as a user's shell session would be.  The kernel's log of the refused
program (what ``bpftool prog load`` printed) is recorded in
``kernel_facts/verifier_cli.json``; where bpftool can load programs it is asked again,
for drift.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
HELLO = str(TESTS / "fixtures" / "hello.bpf.o")
UNCHECKED = str(TESTS / "verifier_corpus" / "c" / "xdp_eth_no_check.bpf.o")


def _prog_load_log(obj: str) -> list[str] | str:
    """The verifier log ``bpftool prog load`` prints for a refused object (a probe)."""
    pin = f"/sys/fs/bpf/pybpf_cli_{os.getpid()}"
    try:
        done = subprocess.run(["bpftool", "prog", "load", obj, pin], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    finally:
        if os.path.exists(pin):
            os.unlink(pin)
    if done.returncode == 0:
        return "loaded"
    if "-- BEGIN PROG LOAD LOG --\n" not in done.stderr:
        return f"no log: {done.stderr.strip()}"
    return _log(done.stderr).splitlines()


def _log(stderr: str) -> str:
    return stderr.split("-- BEGIN PROG LOAD LOG --\n")[1].split("-- END PROG LOAD LOG --")[0]


def _bpftool_loads() -> bool:
    return shutil.which("bpftool") is not None and os.geteuid() == 0 and os.path.ismount(
        "/sys/fs/bpf")  # fmt: skip


@pytest.fixture
def pybpf(tmp_path):
    env = {**os.environ, "PYBPF_STATE_DIR": str(tmp_path / "state")}

    def go(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pybpf.cli.main", *args], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    return go


def test_unsafe_program_is_refused_with_report_and_log(pybpf, kernel_facts):
    done = pybpf("prog", "load", UNCHECKED, "/sys/fs/bpf/bad")
    assert done.returncode == 255 and done.stdout == ""
    err = done.stderr
    # the report for people: the kernel's message, the C line, the path, a hint
    assert err.startswith("error: invalid access to packet, off=12 size=1, R1(id=0,off=12,r=0)")
    assert "xdp_eth_no_check.bpf.c:11" in err
    assert "return eth->h_proto == bpf_htons(ETH_P_IP) ? XDP_PASS : XDP_DROP;" in err
    assert "  path: 0 -> 1" in err and "  hint: compare `data + N` with `data_end`" in err
    # then what libbpf prints: the level-1 log it asks for after a failed load
    assert "libbpf: prog 'xdp_eth_no_check': BPF program load failed: Permission denied" in err
    log = _log(err)
    assert log.splitlines()[:5] == [  # line for line what Linux 6.18 logs, source lines included
        "0: R1=ctx() R10=fp0",
        "; void *data = (void *)(long)ctx->data; @ xdp_eth_no_check.bpf.c:7",
        "0: (61) r1 = *(u32 *)(r1 +0)          ; R1=pkt(r=0)",
        "; return eth->h_proto == bpf_htons(ETH_P_IP) ? XDP_PASS : XDP_DROP; "
        "@ xdp_eth_no_check.bpf.c:11",
        "1: (71) r2 = *(u8 *)(r1 +12)",
    ]
    assert log.splitlines()[-1].startswith("processed 2 insns (limit 1000000)")
    kernel_facts.offline_when(None if _bpftool_loads() else "bpftool cannot load programs")
    kernel_facts.check("refused_log/xdp_eth_no_check", log.splitlines(),
                       lambda: _prog_load_log(UNCHECKED))  # every line, as the kernel logged it
    assert err.rstrip().endswith("Error: failed to load object file")
    # nothing was left behind: no program, no map, no pin
    assert pybpf("prog", "list").stdout == ""
    assert pybpf("map", "list").stdout == ""
    assert pybpf("prog", "show", "pinned", "/sys/fs/bpf/bad").returncode == 255


@pytest.mark.parametrize("option, lines", [(("--log-level", "1"), 1), (("-d",), 30)])
def test_log_levels_on_success(pybpf, option, lines):
    done = pybpf(*option, "prog", "load", HELLO, "/sys/fs/bpf/hello")
    assert done.returncode == 0, done.stderr
    log = done.stderr.split("-- BEGIN PROG LOAD LOG --\n")[1].split("-- END PROG LOAD LOG --")[0]
    # level 1 keeps only the statistics of a successful load (the kernel pops each
    # verified path's lines); level 2 shows every instruction with the state after it
    assert len(log.splitlines()) == lines
    assert log.splitlines()[-1] == ("processed 10 insns (limit 1000000) max_states_per_insn 0 "
                                    "total_states 0 peak_states 0 mark_read 0")  # fmt: skip
    if lines > 1:
        assert log.splitlines()[:4] == [  # as Linux 6.18 (map addresses aside)
            "func#0 @0",
            "Live regs before insn:",
            "      0: .......... (18) r6 = map[id:1][0]+0",
            "      2: ......6... (61) r3 = *(u32 *)(r6 +0)",
        ]
        assert "      6: .12...6... (85) call bpf_trace_printk#6" in log
        assert "; counter++;  @ hello.bpf.c:9" in log  # the source line, trailing space kept
        # the size argument is relied upon: its precision is tracked back (as Linux 6.18
        # logs it), and the state after the call follows on a line of its own
        assert ("6: (85) call bpf_trace_printk#6\n"
                "mark_precise: frame0: last_idx 6 first_idx 0 subseq_idx -1 \n"
                "mark_precise: frame0: regs=r2 stack= before 5: (b7) r2 = 15\n"
                "7: R0=scalar()\n") in log


def test_no_log_without_asking(pybpf):
    done = pybpf("prog", "load", HELLO, "/sys/fs/bpf/hello")
    assert done.returncode == 0 and done.stderr == ""


def test_bad_log_level_is_refused(pybpf):
    done = pybpf("--log-level", "7", "prog", "load", HELLO, "/sys/fs/bpf/hello")
    assert done.returncode == 255 and "--log-level takes 0, 1 or 2" in done.stderr


def test_a_program_with_callbacks_survives_the_next_command(pybpf):
    # the state reloads saved programs in every process: a bpf_loop callback needs the
    # BTF func_info the first load had, or every later command would be refused
    sub = str(TESTS / "fixtures" / "subprog.bpf.o")
    assert pybpf("prog", "loadall", sub, "/sys/fs/bpf/sp").returncode == 0
    listed = pybpf("prog", "list")
    assert listed.returncode == 0 and "name subprog_loop" in listed.stdout, listed.stderr
    assert pybpf("prog", "show", "name", "subprog_loop").returncode == 0
