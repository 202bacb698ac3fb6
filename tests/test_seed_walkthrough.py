"""The seeds' bpftool session, verbatim with pybpf in bpftool's place, one process per step.

Seeds 002 and 004 load hello.bpf.o, list and show it every way, dump its xlated
image and its maps, run it, read the trace pipe, attach it to eth0 and finally
remove its pin.  Each step here is a separate ``pybpf`` process sharing one
state directory, as each ``bpftool`` command is a separate process sharing the
kernel.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
HELLO = HERE / "fixtures" / "hello.bpf.o"


@pytest.fixture
def pybpf(tmp_path: Path):
    env = {**os.environ, "PYBPF_STATE_DIR": str(tmp_path / "state")}

    def run(*args: str, ok: bool = True) -> str:
        proc = subprocess.run([sys.executable, "-m", "pybpf.cli.main", *args], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert "Traceback" not in proc.stderr, proc.stderr
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc.stdout

    run.state = tmp_path / "state"
    return run


def _norm(line: str) -> str:
    line = re.sub(r"map\[id:\d+\]", "map[id:N]", line)
    return " ".join(re.sub(r"#-?\d+$", "", line.rstrip()).split())


def test_seed_walkthrough(pybpf, tmp_path: Path):
    assert pybpf("prog", "load", str(HELLO), "/sys/fs/bpf/hello") == ""

    listing = pybpf("prog", "list")
    # Linux 6.18's SHA-256 tag; the seeds, from an older kernel, show the SHA-1 one
    m = re.search(r"^(\d+): xdp  name hello  tag 490c48c1179970a8  gpl$", listing, re.M)
    assert m, listing
    ident = m.group(1)
    assert re.search(r"^\tloaded_at \S+  uid \d+$", listing, re.M)
    assert re.search(r"^\txlated 96B  .*map_ids \d+,\d+$", listing, re.M)

    shown = json.loads(pybpf("prog", "show", "id", ident, "--pretty"))
    assert list(shown)[:9] == ["id", "type", "name", "tag", "gpl_compatible", "loaded_at",
                               "uid", "orphaned", "bytes_xlated"]  # fmt: skip
    assert (shown["id"], shown["type"], shown["name"]) == (int(ident), "xdp", "hello")
    assert shown["tag"] == "490c48c1179970a8" and shown["bytes_xlated"] == 96
    seed_tag = json.loads(pybpf("--tag-algo", "sha1", "prog", "show", "id", ident, "-j"))["tag"]
    assert seed_tag == "d35b94b4c0c10efb"
    for how in (("name", "hello"), ("tag", "490c48c1179970a8"),
                ("pinned", "/sys/fs/bpf/hello")):  # fmt: skip
        assert pybpf("prog", "show", *how).splitlines()[0].startswith(f"{ident}: xdp  name hello")

    seed_xlated = [_norm(x) for x in (HERE / "golden" / "hello_xlated.txt").read_text()
                   .splitlines() if x and not x.startswith("#")]  # fmt: skip
    assert [_norm(x) for x in pybpf("prog", "dump", "xlated", "name", "hello").splitlines()
            if x.strip()] == seed_xlated  # fmt: skip

    maps = pybpf("map", "list")
    assert re.search(r"^\d+: array  name hello\.bss  flags 0x400$", maps, re.M), maps
    assert re.search(r"^\d+: array  name hello\.rodata  flags 0x480$", maps, re.M), maps
    rodata_block = re.search(r"name hello\.rodata.*?(?=^\d+:|\Z)", maps, re.S | re.M).group(0)
    assert "frozen" in rodata_block
    assert json.loads(pybpf("map", "dump", "name", "hello.rodata")) == [
        {"value": {".rodata": [{"hello.____fmt": "Hello World %d"}]}}
    ]

    packet = tmp_path / "packet"
    packet.write_bytes(bytes(64))
    for _ in range(3):  # bpftool says "duration (average)" only when repeat > 1
        out = pybpf("prog", "run", "name", "hello", "data_in", str(packet))
        # bpftool says "(average)" only when repeat > 1
        assert re.fullmatch(r"Return value: 2, duration: \d+ns\n", out), out
    trace = pybpf("prog", "tracelog")
    assert re.findall(r"bpf_trace_printk: (Hello World \d)", trace) == [
        "Hello World 0", "Hello World 1", "Hello World 2"]  # fmt: skip
    bss = json.loads(pybpf("map", "dump", "name", "hello.bss"))
    assert bss == [{"value": {".bss": [{"counter": 3}]}}]

    pybpf("net", "attach", "xdp", "id", ident, "dev", "eth0")
    assert "eth0" in pybpf("net", "show")
    fed = pybpf("-j", "net", "feed", "dev", "eth0", "packets", "5")
    assert "5" in fed and "PASS" in fed.upper()
    pybpf("net", "detach", "xdp", "dev", "eth0")

    (pybpf.state / "bpffs" / "hello").unlink()  # sudo rm /sys/fs/bpf/hello
    assert pybpf("prog", "show", "name", "hello", ok=False) == ""  # bpftool: nothing, exit 255
