"""``pybpf map ...``: bpftool's map commands on the persistent kernel model."""

from __future__ import annotations

import functools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import real_bpftool
from pybpf.cli.main import main
from pybpf.kernel import state
from pybpf.loader import load_object

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "tests" / "fixtures" / "hello.bpf.o"
SEED_DUMP = [{"value": {".rodata": [{"hello.____fmt": "Hello World %d"}]}}]


@pytest.fixture
def root(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("PYBPF_STATE_DIR", str(tmp_path / "state"))
    return state.state_dir()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def load_hello(capsys) -> None:
    """``prog load hello.bpf.o /sys/fs/bpf/hello``, through prog.py when it can."""
    try:
        from pybpf.cli.bpftool import prog

        has_load = "load" in getattr(prog, "COMMANDS", {})
    except ImportError:
        has_load = False
    if has_load:
        status, _, err = run(capsys, "prog", "load", str(HELLO), "/sys/fs/bpf/hello")
        assert status == 0, err
        with state.session(write=False) as kernel:
            if all(getattr(m, "btf_id", 0) for m in kernel.maps.values()):
                return
        state_file = state.state_dir() / "state.json"  # BTF not recorded (yet): add it
        os.unlink(state.state_dir() / "bpffs" / "hello")
        state_file.unlink(missing_ok=True)
    with state.session() as kernel:  # what prog load does, with the BTF the maps need
        coll = load_object(HELLO, kernel)
        btf_id = 1
        kernel.btf_blobs = {str(btf_id): coll.spec.btf.raw.hex()}
        for m in coll.maps.values():
            m.btf_id = btf_id
        state.pin(kernel, "/sys/fs/bpf/hello", coll.program("hello"))


# --- the seed's session ---------------------------------------------------------------------------
def test_map_list_shows_the_global_data_maps(root, capsys):
    load_hello(capsys)
    status, out, _ = run(capsys, "map", "list")
    assert status == 0
    masked = re.sub(r"\d+: ", "N: ", re.sub(r"btf_id \d+", "btf_id N", out))
    assert masked == (
        "N: array  name hello.bss  flags 0x400\n"
        "\tkey 4B  value 4B  max_entries 1  memlock 8192B\n"
        "\tbtf_id N\n"
        "N: array  name hello.rodata  flags 0x480\n"
        "\tkey 4B  value 15B  max_entries 1  memlock 8192B\n"
        "\tbtf_id N  frozen\n"
    )


def test_map_dump_rodata_is_the_seeds_output(root, capsys):
    load_hello(capsys)
    status, out, _ = run(capsys, "map", "dump", "name", "hello.rodata")
    assert status == 0
    assert json.loads(out) == SEED_DUMP
    assert out == (  # bpftool's json_writer layout, byte for byte
        '[{\n        "value": {\n            ".rodata": [{\n'
        '                    "hello.____fmt": "Hello World %d"\n                }\n'
        "            ]\n        }\n    }\n]\n"
    )
    status, out, _ = run(capsys, "-j", "map", "dump", "name", "hello.rodata")
    doc = json.loads(out)
    assert doc[0]["formatted"] == SEED_DUMP[0]
    assert doc[0]["key"] == ["0x00"] * 4
    assert bytes(int(b, 16) for b in doc[0]["value"]) == b"Hello World %d\0"


def test_map_show_json_keys_and_btf_lookup(root, capsys):
    load_hello(capsys)
    status, out, _ = run(capsys, "-j", "map", "show", "name", "hello.rodata")
    doc = json.loads(out)
    assert list(doc) == ["id", "type", "name", "flags", "bytes_key", "bytes_value",
                         "max_entries", "bytes_memlock", "frozen", "btf_id"]
    assert (doc["flags"], doc["frozen"], doc["bytes_memlock"]) == (0x480, 1, 8192)
    status, out, _ = run(capsys, "map", "lookup", "name", "hello.bss", "key", "0", "0", "0", "0")
    assert status == 0 and json.loads(out) == {"value": {".bss": [{"counter": 0}]}}
    status, _, err = run(capsys, "map", "update", "name", "hello.rodata", "key", "0", "0", "0",
                         "0", "value", *["0"] * 15)
    assert (status, err) == (255, "Error: update failed: Operation not permitted\n")


# --- element commands -----------------------------------------------------------------------------
def create(capsys, path: str, kind: str, key: int, value: int, entries: int, name: str,
           *extra: str) -> None:
    status, _, err = run(capsys, "map", "create", path, "type", kind, "key", str(key), "value",
                         str(value), "entries", str(entries), "name", name, *extra)
    assert status == 0, err


def test_hash_update_lookup_delete_getnext_with_errnos(root, capsys):
    m = "/sys/fs/bpf/h"
    create(capsys, m, "hash", 4, 4, 8, "h")
    pin = ["pinned", m]
    assert run(capsys, "map", "update", *pin, "key", "1", "0", "0", "0", "value", "1", "0", "0",
               "0")[0] == 0
    assert run(capsys, "map", "update", *pin, "key", "1", "0", "0", "0", "value", "2", "0", "0",
               "0", "noexist") == (239, "", "Error: update failed: File exists\n")
    assert run(capsys, "map", "update", *pin, "key", "2", "0", "0", "0", "value", "2", "0", "0",
               "0", "exist") == (254, "", "Error: update failed: No such file or directory\n")
    assert run(capsys, "map", "update", *pin, "key", "hex", "02", "00", "00", "00", "value",
               "0x10", "0", "0", "0")[0] == 0
    assert run(capsys, "map", "lookup", *pin, "key", "1", "0", "0", "0") == (
        0, "key: 01 00 00 00  value: 01 00 00 00\n", "")
    assert run(capsys, "-j", "map", "lookup", *pin, "key", "1", "0", "0", "0")[1] == (
        '{"key":["0x01","0x00","0x00","0x00"],"value":["0x01","0x00","0x00","0x00"]}\n')
    assert run(capsys, "map", "lookup", *pin, "key", "9", "0", "0", "0") == (
        254, "key:\n09 00 00 00\n\nNot found\n", "")
    assert run(capsys, "-j", "map", "lookup", *pin, "key", "9", "0", "0", "0")[:2] == (254,
                                                                                    "null\n")
    assert run(capsys, "map", "getnext", *pin) == (0, "key: None\nnext key:\n01 00 00 00\n", "")
    assert run(capsys, "map", "getnext", *pin, "key", "1", "0", "0", "0")[1] == (
        "key:\n01 00 00 00\nnext key:\n02 00 00 00\n")
    assert run(capsys, "map", "getnext", *pin, "key", "2", "0", "0", "0") == (
        254, "", "Error: can't get next key: No such file or directory\n")
    assert run(capsys, "map", "dump", *pin)[1] == (
        "key: 01 00 00 00  value: 01 00 00 00\nkey: 02 00 00 00  value: 10 00 00 00\n"
        "Found 2 elements\n")
    assert run(capsys, "map", "delete", *pin, "key", "9", "0", "0", "0") == (
        254, "", "Error: delete failed: No such file or directory\n")
    assert run(capsys, "-j", "map", "delete", *pin, "key", "1", "0", "0", "0") == (0, "null\n", "")
    assert run(capsys, "map", "dump", *pin)[1].endswith("Found 1 element\n")


def test_data_syntax_errors_are_bpftools(root, capsys):
    create(capsys, "/sys/fs/bpf/a", "array", 4, 4, 2, "a")
    pin = ["map", "update", "pinned", "/sys/fs/bpf/a"]
    cases = {
        ("key", "1", "0", "0"): "Error: key expected 4 bytes got 3\n",
        ("key", "1", "0", "0", "value", "1", "0", "0", "0"): "Error: error parsing byte: value\n",
        ("key", "1", "0", "0", "0", "0", "value"): "Error: expected key or value, got: 0\n",
        ("key", "1", "0", "0", "zz"): "Error: error parsing byte: zz\n",
        ("key", "1", "0", "0", "0"): "Error: did not find value\n",
        ("value", "1", "0", "0", "0"): "Error: did not find key\n",
        ("key", "1", "0", "0", "0", "key", "1"): "Error: duplicate key\n",
        ("key", "1", "0", "0", "0", "value", "1", "0", "0", "0", "any", "exist"):
            "Error: flags specified multiple times: exist\n",
        ("key", "hex", "1g", "0", "0", "0"): "Error: error parsing byte: 1g\n",
    }
    for args, message in cases.items():
        assert run(capsys, *pin, *args) == (255, "", message), args
    assert run(capsys, *pin, "key", "5", "0", "0", "0", "value", "1", "0", "0", "0") == (
        249, "", "Error: update failed: Argument list too long\n")
    assert run(capsys, *pin, "key", "1", "0", "0", "0", "value", "1", "0", "0", "0",
               "noexist") == (239, "", "Error: update failed: File exists\n")
    assert run(capsys, "map", "delete", "pinned", "/sys/fs/bpf/a", "key", "0", "0", "0",
               "0") == (234, "", "Error: delete failed: Invalid argument\n")
    # 300 is 0x2c as an unsigned char, as strtoul and bpftool's cast make it
    assert run(capsys, *pin, "key", "1", "0", "0", "0", "value", "300", "010", "0x7f", "-1")[0] == 0
    assert run(capsys, "map", "lookup", "pinned", "/sys/fs/bpf/a", "key", "1", "0", "0",
               "0")[1] == "key: 01 00 00 00  value: 2c 08 7f ff\n"
    assert run(capsys, "-j", "map", "lookup", "pinned", "/sys/fs/bpf/a", "key", "x")[1] == (
        '{"error":"error parsing byte: x"}\n')


def test_handles_and_argument_errors(root, capsys):
    create(capsys, "/sys/fs/bpf/a", "array", 4, 4, 2, "a")
    assert run(capsys, "map", "lookup", "id", "999", "key", "0", "0", "0", "0") == (
        255, "", "Error: get map by id (999): No such file or directory\n")
    assert run(capsys, "map", "lookup", "pinned", "/sys/fs/bpf/nope", "key", "0")[2] == (
        "Error: bpf obj get (/sys/fs/bpf/nope): No such file or directory\n")
    assert run(capsys, "map", "lookup", "bogus", "3", "key", "1")[2] == (
        "Error: expected 'id', 'name' or 'pinned', got: 'bogus'?\n")
    assert run(capsys, "map", "show", "id", "abc")[2] == "Error: can't parse abc as ID\n"
    assert run(capsys, "map", "show", "id")[2] == "Error: what is 'id'?\n"
    assert run(capsys, "map", "freeze", "pinned", "/sys/fs/bpf/a", "x")[2] == (
        "Error: what is 'x'?\n")
    assert run(capsys, "map", "create", "/sys/fs/bpf/x", "type", "hash", "key", "4")[2] == (
        "Error: 'create' needs at least 7 arguments, 5 found\n")
    base = ["map", "create", "/sys/fs/bpf/x", "type", "hash", "key", "4", "value", "4",
            "entries", "8"]
    assert run(capsys, *base)[2] == "Error: map name not specified\n"
    assert run(capsys, *base, "name", "x", "bogus", "1")[2] == "Error: unknown arg bogus\n"
    assert run(capsys, "map", "create", "/sys/fs/bpf/x", "type", "hashy", "key", "4", "value",
               "4", "entries", "8", "name", "x")[2] == "Error: unrecognized map type: hashy\n"
    assert run(capsys, "map", "create", "/sys/fs/bpf/x", "type", "hash", "key", "0", "value",
               "4", "entries", "8", "name", "x") == (
        255, "", "Error: map create failed: Invalid argument\n")
    assert run(capsys, "map", "create", "/sys/fs/bpf/a", "type", "hash", "key", "4", "value",
               "4", "entries", "8", "name", "x") == (
        239, "", "Error: can't pin the object (/sys/fs/bpf/a): File exists\n")
    assert run(capsys, "map", "pin", "pinned", "/sys/fs/bpf/a", "/sys/fs/bpf/a2")[0] == 0
    assert run(capsys, "map", "pin", "name", "a", "/sys/fs/bpf/a2")[0] == 239
    status, out, err = run(capsys, "map", "frobnicate")
    assert status == 255 and err.startswith("Error: ") and "Traceback" not in err
    status, out, _ = run(capsys, "map", "help")
    assert status == 0 and "map create     FILE type TYPE" in out


def test_freeze_queue_and_stack(root, capsys):
    create(capsys, "/sys/fs/bpf/q", "queue", 0, 4, 2, "q")
    q = ["pinned", "/sys/fs/bpf/q"]
    assert run(capsys, "map", "push", *q, "value", "1", "0", "0", "0")[0] == 0
    assert run(capsys, "map", "enqueue", *q, "value", "2", "0", "0", "0")[0] == 0
    assert run(capsys, "map", "push", *q, "value", "3", "0", "0", "0") == (
        249, "", "Error: update failed: Argument list too long\n")
    assert run(capsys, "map", "push", *q, "key", "1", "value", "3")[2] == (
        "Error: unnecessary key\n")
    assert run(capsys, "map", "peek", *q) == (0, "value: 01 00 00 00\n", "")
    assert run(capsys, "-j", "map", "peek", *q)[1] == (
        '{"key":[],"value":["0x01","0x00","0x00","0x00"]}\n')
    assert run(capsys, "map", "dump", *q) == (234, "Found 0 elements\n", "")
    assert run(capsys, "map", "pop", *q) == (0, "value: 01 00 00 00\n", "")
    assert run(capsys, "-j", "map", "dequeue", *q)[1] == (
        '{"key":[],"value":["0x02","0x00","0x00","0x00"]}\n')
    assert run(capsys, "map", "pop", *q) == (254, "Error: empty map\n", "")
    assert run(capsys, "-j", "map", "pop", *q) == (254, "null\n", "")
    create(capsys, "/sys/fs/bpf/s", "stack", 0, 4, 4, "s")
    for v in ("1", "2", "3"):
        run(capsys, "map", "push", "pinned", "/sys/fs/bpf/s", "value", v, "0", "0", "0")
    assert run(capsys, "map", "pop", "pinned", "/sys/fs/bpf/s")[1] == "value: 03 00 00 00\n"
    create(capsys, "/sys/fs/bpf/f", "hash", 4, 4, 4, "f")
    f = ["pinned", "/sys/fs/bpf/f"]
    assert run(capsys, "-j", "map", "freeze", *f) == (0, "null\n", "")
    assert run(capsys, "map", "freeze", *f) == (
        255, "", "Error: failed to freeze map: Operation not permitted\n")
    assert run(capsys, "map", "update", *f, "key", "1", "0", "0", "0", "value", "1", "0", "0",
               "0") == (255, "", "Error: update failed: Operation not permitted\n")
    _status, out, _ = run(capsys, "map", "show", *f)
    assert out.endswith("\n\tfrozen\n")


def test_percpu_values_are_per_cpu(root, capsys):
    create(capsys, "/sys/fs/bpf/pa", "percpu_array", 4, 4, 2, "pa")
    p = ["pinned", "/sys/fs/bpf/pa"]
    assert run(capsys, "map", "update", *p, "key", "0", "0", "0", "0", "value", "7", "0", "0",
               "0")[0] == 0
    _, out, _ = run(capsys, "-j", "map", "lookup", *p, "key", "0", "0", "0", "0")
    doc = json.loads(out)
    assert {v["cpu"] for v in doc["values"]} == set(range(len(doc["values"])))
    assert all(v["value"] == ["0x07", "0x00", "0x00", "0x00"] for v in doc["values"])
    _, out, _ = run(capsys, "map", "dump", *p)
    assert out.startswith("key:\n00 00 00 00\nvalue (CPU 00): 07 00 00 00\n")


def test_memlock_follows_the_kernels_formulas(root, capsys):
    from pybpf.cli.bpftool.memlock import map_memlock as memlock
    from pybpf.runtime.kernel import Kernel
    from pybpf.runtime.maps.base import MapAttr, MapType

    k = Kernel(ncpus=2)
    cases = [  # measured with bpftool 7.1 on Linux 6.18, 2 possible CPUs
        (MapAttr(MapType.ARRAY, 4, 4, 1), 320), (MapAttr(MapType.ARRAY, 4, 15, 1), 328),
        (MapAttr(MapType.ARRAY, 4, 32, 10), 632), (MapAttr(MapType.ARRAY, 4, 4, 1, 0x400), 8192),
        (MapAttr(MapType.ARRAY, 4, 4, 5000, 0x400), 45056),
        (MapAttr(MapType.PERCPU_ARRAY, 4, 4, 3), 384), (MapAttr(MapType.HASH, 9, 1, 500), 45248),
        (MapAttr(MapType.HASH, 4, 4, 1), 1120), (MapAttr(MapType.HASH, 4, 4, 100, 1), 2944),
        (MapAttr(MapType.PERCPU_HASH, 4, 4, 100), 10944),
        (MapAttr(MapType.LRU_HASH, 4, 4, 100), 9344),
        (MapAttr(MapType.LRU_PERCPU_HASH, 4, 4, 100), 10944),
        (MapAttr(MapType.QUEUE, 0, 4, 10), 356), (MapAttr(MapType.STACK, 0, 8, 10), 400),
        (MapAttr(MapType.PROG_ARRAY, 4, 4, 4), 344), (MapAttr(MapType.HASH, 4, 4, 8), 1680),
    ]
    for attr, expected in cases:
        assert memlock(k.map_create(attr), 2) == expected, attr


def test_state_persists_across_commands(root, capsys):
    create(capsys, "/sys/fs/bpf/c", "hash", 4, 8, 16, "c")
    for i in range(5):
        run(capsys, "map", "update", "name", "c", "key", str(i), "0", "0", "0", "value",
            *[str(i)] * 8)
    _, out, _ = run(capsys, "-j", "map", "dump", "name", "c")
    assert len(json.loads(out)) == 5
    os.unlink(state.state_dir() / "bpffs" / "c")  # rm /sys/fs/bpf/c frees it
    assert run(capsys, "-j", "map", "show")[1] == "[]\n"


# --- processes: killed mid-update, and concurrent ------------------------------------------
def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "pybpf.cli.main", *argv]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _values(root: Path) -> dict[int, int]:
    with state.session(root, write=False) as kernel:  # the state always reads
        (m,) = [m for m in kernel.maps.values() if m.name == "k"]
        return {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in m.items()}


def test_commands_killed_mid_update_leave_before_or_after(root, capsys):
    create(capsys, "/sys/fs/bpf/k", "hash", 4, 8, 64, "k")
    rng = random.Random(7)
    env = _env()
    for i in range(24):
        key, value = rng.randrange(8), i + 1
        before = _values(root)
        argv = _cli("map", "update", "pinned", "/sys/fs/bpf/k", "key", *map(str, key.to_bytes(
            4, "little")), "value", *map(str, value.to_bytes(8, "little")))
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if i % 3:
            time.sleep(rng.uniform(0.0, 0.6))
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = _values(root)  # the state reads: never half written
        assert now.get(key) in (before.get(key), value)
        assert {k: v for k, v in now.items() if k != key} == \
            {k: v for k, v in before.items() if k != key}
    assert run(capsys, "map", "dump", "pinned", "/sys/fs/bpf/k")[0] == 0


def test_concurrent_updates_lose_nothing(root, capsys):
    create(capsys, "/sys/fs/bpf/k", "hash", 4, 8, 64, "k")
    env = _env()
    procs, times = 4, 6
    script = (
        "import sys\n"
        "from pybpf.cli.main import main\n"
        "key, times = int(sys.argv[1]), int(sys.argv[2])\n"
        "kb = [str(b) for b in key.to_bytes(4, 'little')]\n"
        "for i in range(1, times + 1):\n"
        "    v = [str(b) for b in i.to_bytes(8, 'little')]\n"
        "    assert main(['map', 'update', 'pinned', '/sys/fs/bpf/k', 'key', *kb,"
        " 'value', *v]) == 0\n"
    )
    children = [subprocess.Popen([sys.executable, "-c", script, str(k), str(times)], env=env)
                for k in range(procs)]
    assert [c.wait() for c in children] == [0] * procs
    assert _values(root) == {k: times for k in range(procs)}


# --- the real bpftool -----------------------------------------------------------------------------
# What bpftool printed for the same maps on the kernel, recorded (ids masked) in
# kernel_facts/bpftool_map.json with the bpftool that printed it: pybpf must print the recording.
# Where bpftool runs (root), it is asked too: a live bpftool that prints otherwise is drift.
REAL_MAPS = {"h": ("hash", 4, 8, 16), "a": ("array", 4, 4, 4), "q": ("queue", 0, 4, 4)}
REAL_UPDATE = ["key", "1", "0", "0", "0", "value", *["2"] * 8]  # into h
REAL_COMMANDS = (("-j", "map", "show"), ("-j", "map", "dump"), ("map", "show"), ("map", "dump"))


def _bpftool_usable() -> str | None:
    if shutil.which("bpftool") is None:
        return "bpftool is not installed"
    if os.geteuid() != 0:
        return "bpftool needs root (bpf(2))"
    if subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True).returncode != 0:
        return "bpftool cannot list the kernel's maps here"
    return None


def _bpftool(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["bpftool", *argv], check=check, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def _printed(cmd: tuple[str, ...], status: int, out: str) -> dict:
    """``cmd``'s exit status and output as recorded: JSON parsed, the map's id masked."""
    if cmd[0] != "-j":
        return {"exit": status, "out": _mask(out)}
    doc = json.loads(out)
    if cmd[-1] == "show":
        doc = {k: "N" if k == "id" else v for k, v in doc.items()}
    return {"exit": status, "out": doc}


def bpftool_prints() -> dict[str, object]:
    """``NAME/COMMAND`` -> what bpftool prints for REAL_MAPS (a probe: root and bpftool)."""
    real = f"/sys/fs/bpf/pybpf_maptest_{os.getpid()}"
    printed = {}
    try:
        for name, (kind, k, v, n) in REAL_MAPS.items():
            _bpftool("map", "create", f"{real}_{name}", "type", kind, "key", str(k), "value",
                     str(v), "entries", str(n), "name", name)  # fmt: skip
        _bpftool("map", "update", "pinned", f"{real}_h", *REAL_UPDATE)
        for name in REAL_MAPS:
            for cmd in REAL_COMMANDS:
                proc = _bpftool(*cmd, "pinned", f"{real}_{name}", check=False)
                printed[f"{name}/{' '.join(cmd)}"] = _printed(cmd, proc.returncode, proc.stdout)
    finally:
        for name in REAL_MAPS:
            Path(f"{real}_{name}").unlink(missing_ok=True)
    return printed


def _printed_by(prints, key: str):
    return prints()[key]


def test_same_layout_as_bpftool(root, capsys, kernel_facts):
    facts = kernel_facts.offline_when(_bpftool_usable())
    facts.fact("bpftool version", real_bpftool.version)  # another bpftool: drift, not failure
    prints = functools.cache(bpftool_prints)  # one real session for every fact
    for name, (kind, k, v, n) in REAL_MAPS.items():
        create(capsys, f"/sys/fs/bpf/{name}", kind, k, v, n, name)
    run(capsys, "map", "update", "pinned", "/sys/fs/bpf/h", *REAL_UPDATE)
    for name in REAL_MAPS:
        for cmd in REAL_COMMANDS:
            status, out, _ = run(capsys, *cmd, "pinned", f"/sys/fs/bpf/{name}")
            ours = _printed(cmd, status, out)
            key = f"{name}/{' '.join(cmd)}"
            facts.check(key, ours, functools.partial(_printed_by, prints, key))


def _mask(text: str) -> str:
    return re.sub(r"^\d+:", "N:", text, flags=re.M)
