"""The persistent kernel model: what survives a command, and what a crash cannot break."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from pybpf.errors import KernelError
from pybpf.kernel import state, store
from pybpf.loader import load_object
from pybpf.runtime.maps.base import MapAttr, MapType
from pybpf.runtime.testrun import test_run as run_test

HELLO = Path(__file__).resolve().parent / "fixtures" / "hello.bpf.o"


@pytest.fixture
def root(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("PYBPF_STATE_DIR", str(tmp_path / "state"))
    return state.state_dir()


def _load_hello(root: Path) -> int:
    with state.session(root) as kernel:
        coll = load_object(HELLO, kernel)
        state.pin(kernel, "/sys/fs/bpf/hello", coll.program("hello"))
        return coll.program("hello").id


def test_pinned_program_and_its_maps_survive_commands(root: Path):
    ident = _load_hello(root)
    for _ in range(3):
        with state.session(root) as kernel:
            prog = state.pinned(kernel, "/sys/fs/bpf/hello")
            assert (prog.id, prog.name, prog.tag) == (ident, "hello", "490c48c1179970a8")
            assert run_test(prog, data_in=bytes(64)).retval == 2
    with state.session(root) as kernel:
        lines = kernel.trace.read()
        assert [x.rsplit(": ", 1)[1] for x in lines] == [f"Hello World {n}" for n in range(3)]
        bss = next(m for m in kernel.maps.values() if m.name == "hello.bss")
        assert bss.lookup(bytes(4)) == (3).to_bytes(4, "little")
        assert next(m for m in kernel.maps.values() if m.name == "hello.rodata").frozen
    with state.session(root) as kernel:
        assert kernel.trace.read() == []  # a pipe: read once


def test_unpinned_objects_die_with_the_command_and_ids_still_grow(root: Path):
    with state.session(root) as kernel:
        m = kernel.map_create(MapAttr(MapType.HASH, 4, 4, 8, name="scratch"))
        first = m.id
    with state.session(root) as kernel:
        assert not kernel.maps
        again = kernel.map_create(MapAttr(MapType.HASH, 4, 4, 8, name="scratch"))
        assert again.id == first + 1
        state.pin(kernel, "/sys/fs/bpf/scratch", again)
    with state.session(root) as kernel:
        assert [m.name for m in kernel.maps.values()] == ["scratch"]


def test_removing_the_pin_file_unloads(root: Path):
    _load_hello(root)
    (root / "bpffs" / "hello").unlink()  # rm /sys/fs/bpf/hello
    with state.session(root) as kernel:
        assert not kernel.progs and not kernel.maps


def test_a_failing_command_changes_nothing(root: Path):
    _load_hello(root)
    with pytest.raises(RuntimeError), state.session(root) as kernel:
        m = kernel.map_create(MapAttr(MapType.HASH, 4, 4, 8, name="scratch"))
        state.pin(kernel, "/sys/fs/bpf/scratch", m)
        state.unpin(kernel, "/sys/fs/bpf/hello")
        raise RuntimeError("killed mid-command")
    with state.session(root) as kernel:
        assert sorted(state.pins(kernel)) == ["/sys/fs/bpf/hello"]
        assert "scratch" not in [m.name for m in kernel.maps.values()]
    assert not (root / "bpffs" / "scratch").exists()


def test_queue_and_hash_contents_persist(root: Path):
    with state.session(root) as kernel:
        q = kernel.map_create(MapAttr(MapType.QUEUE, 0, 4, 4, name="q"))
        for v in (1, 2, 3):
            q.update(None, v.to_bytes(4, "little"))
        h = kernel.map_create(MapAttr(MapType.HASH, 4, 8, 16, name="h"))
        h.update(b"abcd", bytes(range(8)))
        state.pin(kernel, "/sys/fs/bpf/q", q)
        state.pin(kernel, "/sys/fs/bpf/h", h)
    with state.session(root) as kernel:
        q = state.pinned(kernel, "/sys/fs/bpf/q")
        assert q.lookup_and_delete(None) == (1).to_bytes(4, "little")
        assert state.pinned(kernel, "/sys/fs/bpf/h").lookup(b"abcd") == bytes(range(8))
    with state.session(root) as kernel:
        assert state.pinned(kernel, "/sys/fs/bpf/q").lookup(None) == (2).to_bytes(4, "little")


def test_pin_errors(root: Path):
    with state.session(root) as kernel:
        m = kernel.map_create(MapAttr(MapType.ARRAY, 4, 4, 1, name="a"))
        state.pin(kernel, "/sys/fs/bpf/a", m)
        for path, err in (("/sys/fs/bpf/a", errno.EEXIST), ("/tmp/a", errno.EINVAL),
                          ("/sys/fs/bpf/../../etc/x", errno.EINVAL),
                          ("/sys/fs/bpf/nodir/a", errno.ENOENT)):  # fmt: skip
            with pytest.raises(KernelError) as info:
                state.pin(kernel, path, m)
            assert info.value.errno == err
        with pytest.raises(KernelError):
            state.pinned(kernel, "/sys/fs/bpf/missing")


def test_corrupt_state_is_reported(root: Path):
    (root / "state.db").write_text("{not a database" * 100)
    with pytest.raises(KernelError) as info, state.session(root):
        pass
    assert info.value.errno == errno.EIO and "pybpf state repair" in str(info.value)


def test_the_store_is_sqlite_in_wal_mode(root: Path):
    import sqlite3

    _load_hello(root)
    db = sqlite3.connect(root / "state.db")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA user_version").fetchone() == (store.SCHEMA_VERSION,)
    assert db.execute("SELECT path, kind FROM pins").fetchall() == [("/sys/fs/bpf/hello", "prog")]
    db.close()


# --- the state directory is private; every state problem is one line with a way out ---------
def _cli(*argv: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from pybpf.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


def _foreign(path: Path) -> None:
    path.mkdir(mode=0o700)
    if os.getuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    os.chown(path, 65534, 65534)


def _world_writable(path: Path) -> None:
    path.mkdir()
    path.chmod(0o777)


def _a_file(path: Path) -> None:
    path.write_text("")


# (environment: PYBPF_STATE_DIR, XDG_RUNTIME_DIR, TMPDIR as {tmp}-relative; what to plant
# at the state directory; what the one error line must say)
DIR_CASES = {
    "missing-parent": ({"PYBPF_STATE_DIR": "{tmp}/nonexistent/x"}, None,
                       ["cannot create the state directory {tmp}/nonexistent/x",
                        "No such file or directory", "set PYBPF_STATE_DIR"]),
    "unwritable-xdg": ({"XDG_RUNTIME_DIR": "/sys"}, None,
                       ["cannot create the state directory /sys/pybpf",
                        "XDG_RUNTIME_DIR may be inherited"]),
    "foreign-owner": ({"PYBPF_STATE_DIR": "{tmp}/s"}, _foreign,
                      ["state directory {tmp}/s belongs to uid 65534", "set PYBPF_STATE_DIR"]),
    "world-writable": ({"PYBPF_STATE_DIR": "{tmp}/s"}, _world_writable,
                       ["state directory {tmp}/s is writable by others (mode 0777)",
                        "chmod 700 {tmp}/s"]),
    "not-a-directory": ({"PYBPF_STATE_DIR": "{tmp}/s"}, _a_file,
                        ["state directory {tmp}/s is not a directory"]),
    "shared-tmp-fallback": ({"TMPDIR": "{tmp}"}, _world_writable,
                            ["state directory {tmp}/pybpf-{uid} is writable by others"]),
}


@pytest.mark.parametrize("case", list(DIR_CASES))
def test_state_directory_must_be_private(case: str, tmp_path: Path, monkeypatch):
    env, plant, expected = DIR_CASES[case]
    for name in ("PYBPF_STATE_DIR", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    fill = {"tmp": str(tmp_path), "uid": os.getuid()}
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(**fill))
    monkeypatch.setattr("tempfile.tempdir", os.environ.get("TMPDIR", "/tmp"))
    if plant is not None:
        target = Path(env.get("PYBPF_STATE_DIR", "{tmp}/pybpf-{uid}").format(**fill))
        plant(target)
    status, out, err = _cli("prog", "list")
    assert status != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("Error: "), err
    for text in expected:
        assert text.format(**fill) in err, err


def test_a_new_state_directory_is_0700(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PYBPF_STATE_DIR", str(tmp_path / "fresh"))
    assert _cli("prog", "list")[0] == 0
    for path in (tmp_path / "fresh", tmp_path / "fresh" / "bpffs"):
        assert path.stat().st_mode & 0o777 == 0o700


# what to plant in a good state directory -> what the one error line must say
def _sql(statement: str):
    def plant(root: Path) -> None:
        import sqlite3

        _load_hello(root)
        db = sqlite3.connect(root / "state.db")
        db.execute(statement)
        db.commit()
        db.close()

    return plant


_DAMAGED = ["the state database {root}/state.db is damaged", "run 'pybpf state repair'"]
DAMAGE_CASES = {
    "record-is-a-list": (_sql("UPDATE progs SET record = '[]'"), _DAMAGED),
    "record-is-empty": (_sql("UPDATE maps SET record = '{}'"), _DAMAGED),
    "bad-hex": (_sql("UPDATE progs SET record = json_set(record, '$.insns', 'zz')"), _DAMAGED),
    "not-json": (_sql("UPDATE progs SET record = '{not json'"), _DAMAGED),
    "not-a-database": (lambda root: (root / "state.db").write_bytes(b"junk" * 1024), _DAMAGED),
    "map-memory-truncated": (lambda root: (_load_hello(root), os.truncate(
        next((root / "maps").iterdir()), 1)), ["the memory of map", "is 1 bytes, not",
                                                "run 'pybpf state repair'"]),
    "holders-is-a-file": (lambda root: (root / "holders").rmdir() or
                          (root / "holders").write_text(""),
                          ["state directory {root}/holders is not a directory",
                           "remove {root}/holders (pybpf makes it again)"]),
    "newer-schema": (_sql("PRAGMA user_version = 99"),
                     ["{root}/state.db has schema 99, made by a newer pybpf"]),
    "lock-is-a-directory": (lambda root: (root / "lock").mkdir(),  # writers take the lock
                            ["cannot open the state lock {root}/lock", "rm -r {root}/lock"],
                            ("map", "create", "/sys/fs/bpf/m", "type", "hash", "key", "4",
                             "value", "4", "entries", "1", "name", "m")),
}


@pytest.mark.parametrize("case", list(DAMAGE_CASES))
def test_damaged_state_is_one_line_with_a_way_out(case: str, root: Path):
    plant, expected, *command = DAMAGE_CASES[case]
    plant(root)
    status, _, err = _cli(*(command[0] if command else ("prog", "list")))
    assert status != 0 and err.count("\n") == 1 and err.startswith("Error: "), err
    for text in expected:
        assert text.format(root=root) in err, err


def test_prog_show_reports_the_loading_user(root: Path):
    assert _cli("prog", "load", str(HELLO), "/sys/fs/bpf/hello")[0] == 0
    status, out, _ = _cli("-j", "prog", "show", "pinned", "/sys/fs/bpf/hello")
    assert status == 0 and json.loads(out)["uid"] == os.getuid()


# --- the store: pins from Python, check and repair, killed commands -------------------------
def test_pins_made_from_python_are_the_command_lines(root: Path):
    with state.session(root) as kernel:
        coll = load_object(HELLO, kernel)
        coll.pin("hello", "/sys/fs/bpf/from_python")
        coll.close()  # the pin keeps the program (and its maps) alive
    status, out, _ = _cli("-j", "prog", "show", "pinned", "/sys/fs/bpf/from_python")
    assert status == 0 and json.loads(out)["name"] == "hello"
    assert _cli("-j", "map", "pin", "name", "hello.bss", "/sys/fs/bpf/bss")[0] == 0
    with state.session(root) as kernel:
        assert kernel.obj_get("/sys/fs/bpf/bss").name == "hello.bss"
        kernel.unpin("/sys/fs/bpf/from_python")
    assert _cli("prog", "show", "pinned", "/sys/fs/bpf/from_python")[0] != 0


def _plant_stale_pin(root: Path) -> None:
    """What a map create killed after writing its pin file and before committing leaves."""
    with state.session(root, write=False) as kernel:
        next_id = kernel._next_map_id
    (root / "bpffs" / "pa").write_text(json.dumps({"type": "map", "id": next_id}))


def test_a_killed_commands_pin_never_names_another_object(root: Path):
    _plant_stale_pin(root)
    assert _cli("map", "create", "/sys/fs/bpf/other", "type", "hash", "key", "4", "value",
                "4", "entries", "4", "name", "secret")[0] == 0  # it gets the stale pin's id
    status, _, err = _cli("map", "update", "pinned", "/sys/fs/bpf/pa", "key", "0", "0", "0",
                          "0", "value", "1", "0", "0", "0")  # fmt: skip
    assert status != 0 and "No such file or directory" in err
    assert _cli("-j", "map", "dump", "name", "secret")[1] == "[]\n"
    assert not (root / "bpffs" / "pa").exists()  # the writing command removed it


def _damage(statement: str):
    def damage(root: Path) -> None:
        import sqlite3

        db = sqlite3.connect(root / "state.db")
        db.execute(statement)
        db.commit()
        db.close()

    return damage


# damage done to a state holding two pinned programs -> what check must say; repair keeps
# the intact program (at /sys/fs/bpf/b, id 2) every time
REPAIR_CASES = {
    "malformed-record": (_damage("UPDATE progs SET record = '[]' WHERE id = 1"),
                         "is damaged (ValueError: a record is list"),
    "bad-hex": (_damage("UPDATE progs SET record = json_set(record, '$.insns', 'zz') "
                        "WHERE id = 1"), "prog 1: ValueError: non-hexadecimal"),
    "pin-to-nothing": (_damage("INSERT INTO pins VALUES ('/sys/fs/bpf/z', 'map', 99)"),
                       "pin /sys/fs/bpf/z: names map 99, which does not exist"),
    "stale-pin-file": (lambda root: (root / "bpffs" / "y").write_text("{}"),
                       "pin file /sys/fs/bpf/y: no pin in the database"),
    "leaked-object": (_damage("DELETE FROM pins WHERE path = '/sys/fs/bpf/a'"),
                      "pin file /sys/fs/bpf/a: no pin in the database"),
    "not-a-database": (lambda root: (root / "state.db").write_bytes(b"junk" * 4096), "damaged"),
}


@pytest.mark.parametrize("case", list(REPAIR_CASES))
def test_state_check_finds_and_repair_recovers(case: str, root: Path):
    damage, problem = REPAIR_CASES[case]
    for name in ("a", "b"):
        assert _cli("prog", "load", str(HELLO), f"/sys/fs/bpf/{name}")[0] == 0
    status, out, _ = _cli("state", "check")
    assert status == 0 and out.startswith("state OK: 2 programs, 4 maps, 2 pins")
    damage(root)
    status, out, _ = _cli("state", "check")
    assert status == 1 and problem in out and "'pybpf state repair'" in out
    assert _cli("state", "repair")[0] == 0
    assert _cli("state", "check")[:2] == (0, _cli("state", "check")[1])
    assert _cli("state", "check")[1].startswith("state OK")
    if case != "not-a-database":  # nothing of it could be read: a fresh state
        status, out, _ = _cli("-j", "prog", "show", "pinned", "/sys/fs/bpf/b")
        assert status == 0 and json.loads(out)["id"] == 2


def test_commands_killed_at_random_points_leave_a_consistent_state(root: Path):
    """40 commands (map creates, pins, updates, loads, attaches, rm), a third SIGKILLed:
    state check is clean, every pin names the object it was made for, and every
    acknowledged update is there (``python -m pybpf.testing.state_crash`` runs more)."""
    from pybpf.testing import state_crash

    outcome = state_crash.run(root, commands=40, obj=str(HELLO))
    assert outcome.problems == []
    assert outcome.acknowledged >= 1  # (how many kills land mid-command depends on speed)


# --- map memory: sparse shared files, live across processes ---------------------------------
BIG_MAPS = {  # map create arguments -> (files, apparent bytes of the first file)
    "array-10M": (["type", "array", "key", "4", "value", "8", "entries", "10000000"],
                  1, 80_000_000),
    "array-4GB": (["type", "array", "key", "4", "value", "8", "entries", "500000000"],
                  1, 4_000_000_000),  # beyond the in-memory allocation limit: sparse
    "prog-array-1e9": (["type", "prog_array", "key", "4", "value", "4", "entries",
                        "1000000000"], 0, 0),
}


@pytest.mark.parametrize("case", list(BIG_MAPS))
def test_big_maps_cost_nothing_until_touched(case: str, root: Path):
    args, files, size = BIG_MAPS[case]
    assert _cli("map", "create", "/sys/fs/bpf/big", *args, "name", "big")[0] == 0
    blocks = sorted((root / "maps").iterdir())
    assert len(blocks) == files
    for block in blocks:  # sparse: the apparent size, almost nothing allocated
        assert block.stat().st_size == size and block.stat().st_blocks * 512 < 1 << 20
    import sqlite3

    db = sqlite3.connect(root / "state.db")
    assert db.execute("SELECT count(*) FROM map_data").fetchone() == (0,)
    db.close()
    status, out, _ = _cli("-j", "map", "show", "pinned", "/sys/fs/bpf/big")
    assert status == 0 and json.loads(out)["max_entries"] == int(args[-1])
    if files:  # one element written: one page of the file
        assert _cli("map", "update", "pinned", "/sys/fs/bpf/big", "key", "255", "255", "0",
                    "0", "value", "7", *["0"] * 7)[0] == 0  # fmt: skip
        status, out, _ = _cli("-j", "map", "lookup", "pinned", "/sys/fs/bpf/big", "key",
                              "255", "255", "0", "0")  # fmt: skip
        assert status == 0 and json.loads(out)["value"][0] == "0x07"
        assert all(block.stat().st_blocks * 512 < 1 << 20 for block in blocks)


def test_two_processes_share_an_array_map_live(root: Path):
    import subprocess
    import sys

    assert _cli("prog", "load", str(HELLO), "/sys/fs/bpf/hello")[0] == 0
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    packet = root.parent / "packet"
    packet.write_bytes(bytes(64))
    with state.session(root, write=False) as watcher:  # a loader holding the map
        bss = next(m for m in watcher.maps.values() if m.name == "hello.bss")
        for count in (2, 4):  # another process runs the program: the counter grows here
            subprocess.run([sys.executable, "-m", "pybpf.cli.main", "prog", "run", "pinned",
                            "/sys/fs/bpf/hello", "data_in", str(packet), "repeat", "2"],
                           env=env, check=True, capture_output=True)  # fmt: skip
            assert bss.lookup(bytes(4)) == count.to_bytes(4, "little")
        bss.update(bytes(4), (100).to_bytes(4, "little"))  # and what it writes, they see
    status, out, _ = _cli("-j", "map", "lookup", "name", "hello.bss", "key", "0", "0", "0", "0")
    assert status == 0 and json.loads(out)["value"] == ["0x64", "0x00", "0x00", "0x00"]


# --- locking: nothing waits for a running program --------------------------------------------
DURING_A_RUN = [  # commands another process runs while a program runs (reads and writes)
    ("prog", "list"), ("-j", "map", "dump", "name", "hello.bss"), ("state", "check"),
    ("map", "update", "pinned", "/sys/fs/bpf/h", "key", "1", "0", "0", "0", "value", "7", "0",
     "0", "0"),
    ("map", "pin", "name", "h", "/sys/fs/bpf/h2"),
    ("map", "update", "pinned", "/sys/fs/bpf/h2", "key", "2", "0", "0", "0", "value", "9", "0",
     "0", "0"),
]
RUNS = 1_000_000  # long enough for the commands below to run while it does


def test_nothing_waits_for_a_running_program(root: Path):
    """A loader process watches the counter grow live while another runs the program;
    reads, pins and map updates complete meanwhile, and the run's effects merge with
    theirs when it ends."""
    import subprocess
    import sys
    import time

    assert _cli("prog", "load", str(HELLO), "/sys/fs/bpf/hello")[0] == 0
    assert _cli("map", "create", "/sys/fs/bpf/h", "type", "hash", "key", "4", "value", "4",
                "entries", "8", "name", "h")[0] == 0  # fmt: skip
    packet = root.parent / "packet"
    packet.write_bytes(bytes(64))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    with state.session(root, write=False) as watcher:
        bss = next(m for m in watcher.maps.values() if m.name == "hello.bss")
        runner = subprocess.Popen([sys.executable, "-m", "pybpf.cli.main", "prog", "run",
                                   "pinned", "/sys/fs/bpf/hello", "data_in", str(packet),
                                   "repeat", str(RUNS)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            seen = [0]
            while runner.poll() is None and seen[-1] == 0:  # until the program is running
                time.sleep(0.02)
                seen.append(int.from_bytes(bss.lookup(bytes(4)), "little"))
            for argv in DURING_A_RUN:
                status, _, err = _cli(*argv)
                assert status == 0 and not err, (argv, err)
                seen.append(int.from_bytes(bss.lookup(bytes(4)), "little"))
            assert runner.poll() is None  # all of that while the program still ran
            assert runner.wait(timeout=600) == 0
        finally:
            runner.kill()
            runner.wait()
        final = int.from_bytes(bss.lookup(bytes(4)), "little")
    assert 0 < seen[-1] < final == RUNS and seen == sorted(seen)  # it grew, live
    status, out, _ = _cli("-j", "map", "dump", "name", "h")
    assert status == 0 and {bytes(int(b, 16) for b in e["key"])[0]: int(e["value"][0], 16)
                            for e in json.loads(out)} == {1: 7, 2: 9}  # fmt: skip
    assert _cli("state", "check")[0] == 0
    lines = _cli("prog", "tracelog")[1].splitlines()
    assert len(lines) == state.TRACE_KEPT and lines[-1].endswith(f"Hello World {RUNS - 1}")


def test_a_feed_a_watcher_and_a_pinner_share_the_state(root: Path):
    """net feed runs XDP over packets while this process watches the counters through its
    own mapping and a third pins, lists and unpins (``python -m pybpf.testing.state_live``
    runs it with a million packets and reports the lock waits)."""
    from pybpf.testing import state_live

    obj = Path(__file__).resolve().parent / "fixtures" / "xdp_parser.bpf.o"
    live = state_live.run(root, str(obj), packets=3000, interval=0.02)
    assert live.feed_status == 0 and live.final == 3000
    assert live.seen == sorted(live.seen) and all(n <= 3000 for n in live.seen)
    assert _cli("state", "check")[0] == 0


# --- holders: a process holding an object keeps it alive, as an open fd does ----------------
_HOLDER = """
import sys
from pybpf.kernel import state
with state.session(write=False) as kernel:
    kernel.hold(kernel.obj_get("/sys/fs/bpf/h"))
    print("held", flush=True)
    sys.stdin.readline()  # until told to let go
"""


def _map_ids() -> list[int]:
    status, out, _ = _cli("-j", "map", "show")
    assert status == 0
    return [m["id"] for m in json.loads(out)]


def _unpin_by_rm(root: Path, name: str) -> None:
    (root / "bpffs" / name).unlink()  # rm /sys/fs/bpf/NAME
    assert _cli("map", "create", "/sys/fs/bpf/other", "type", "array", "key", "4", "value",
                "4", "entries", "1", "name", "other")[0] == 0  # a writing command  # fmt: skip
    (root / "bpffs" / "other").unlink()


@pytest.mark.parametrize("end", ["exits", "is-killed"])
def test_a_held_map_outlives_its_pin_until_its_holder_ends(end: str, root: Path):
    import signal
    import subprocess
    import sys

    assert _cli("map", "create", "/sys/fs/bpf/h", "type", "hash", "key", "4", "value", "4",
                "entries", "4", "name", "h")[0] == 0  # fmt: skip
    (ident,) = _map_ids()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        _unpin_by_rm(root, "h")
        assert _map_ids() == [ident]  # unpinned, but held: still there (map show id N)
        assert _cli("state", "check")[0] == 0
    finally:
        if end == "exits":
            holder.communicate("\n")
        else:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
    if end == "is-killed":  # its lock went with it: the next writing command frees the map
        status, out, _ = _cli("state", "check")
        assert status == 0 and f"freed by the next writing command: map {ident}" in out
        assert _map_ids() == []  # readers already see it gone
        assert _cli("map", "create", "/sys/fs/bpf/x", "type", "hash", "key", "4", "value",
                    "4", "entries", "1", "name", "x")[0] == 0  # fmt: skip
        (root / "bpffs" / "x").unlink()
    assert ident not in _map_ids()
    assert not list((root / "holders").iterdir())


@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_atomic_adds_from_two_processes_lose_nothing(engine: str, root: Path):
    """xdp_parser counts with __sync_fetch_and_add into an array: two processes running it
    at once over the shared map memory lose no count, on either engine."""
    import subprocess
    import sys

    obj = Path(__file__).resolve().parent / "fixtures" / "xdp_parser.bpf.o"
    assert _cli("--engine", engine, "prog", "load", str(obj), "/sys/fs/bpf/x", "pinmaps",
                "/sys/fs/bpf/xm")[0] == 0  # fmt: skip
    packet = root.parent / "packet"
    packet.write_bytes(bytes(64))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    runs = [subprocess.Popen([sys.executable, "-m", "pybpf.cli.main", "prog", "run", "pinned",
                              "/sys/fs/bpf/x", "data_in", str(packet), "repeat", "20000"],
                             env=env, stdout=subprocess.DEVNULL) for _ in range(2)]  # fmt: skip
    assert [p.wait() for p in runs] == [0, 0]
    status, out, _ = _cli("-j", "map", "dump", "pinned", "/sys/fs/bpf/xm/stats")
    assert status == 0 and sum(e["formatted"]["value"] for e in json.loads(out)) == 40000


def test_a_writer_whose_snapshot_went_stale_restores_again(root: Path, monkeypatch):
    """Writers restore before taking the lock; one that another writer overtook meanwhile
    restores again under the lock, so ids never collide and nothing is lost."""
    opened = state._open
    calls = []

    def overtaken(*args, **kwargs):
        out = opened(*args, **kwargs)
        if not calls:  # between this restore and the lock, another writer commits
            calls.append(1)
            with state.session(root) as other:
                m = other.map_create(MapAttr(MapType.ARRAY, 4, 4, 4, name="theirs"))
                m.update(bytes(4), b"\x07\x00\x00\x00")
                state.pin(other, "/sys/fs/bpf/theirs", m)
        return out

    monkeypatch.setattr(state, "_open", overtaken)
    with state.session(root) as kernel:
        state.pin(kernel, "/sys/fs/bpf/mine",
                  kernel.map_create(MapAttr(MapType.ARRAY, 4, 4, 4, name="mine")))
    with state.session(root, write=False) as kernel:
        theirs, mine = (state.pinned(kernel, f"/sys/fs/bpf/{n}") for n in ("theirs", "mine"))
        assert (theirs.name, mine.name) == ("theirs", "mine") and theirs.id != mine.id
        assert theirs.lookup(bytes(4)) == b"\x07\x00\x00\x00"


def test_listing_commands_leave_map_elements_unread(root: Path):
    """prog list / map show / net show read attributes only: a hash map's elements (here
    made unreadable on purpose) are not loaded, so a big one costs them nothing."""
    import sqlite3

    assert _cli("map", "create", "/sys/fs/bpf/h", "type", "hash", "key", "4", "value", "4",
                "entries", "4", "name", "h")[0] == 0  # fmt: skip
    db = sqlite3.connect(root / "state.db")
    db.execute("INSERT OR REPLACE INTO map_data VALUES (1, 'x', CAST('{not json' AS BLOB))")
    db.commit()
    db.close()
    for argv in (("prog", "list"), ("map", "show"), ("net", "show")):
        assert _cli(*argv)[0] == 0, argv
    status, _, err = _cli("map", "dump", "pinned", "/sys/fs/bpf/h")
    assert status != 0 and "run 'pybpf state repair'" in err


def _refuse(*args, **kwargs):
    raise AssertionError("the verifier or the JIT ran")


def test_listing_restored_programs_neither_verifies_nor_compiles(root: Path, monkeypatch):
    """What the verifier made of a program is kept with it: listing, showing and dumping it
    run neither the verifier nor an engine's compiler, and show what the load showed."""
    from pybpf.runtime import engines, verification

    assert _cli("--engine", "jit", "prog", "load", str(HELLO), "/sys/fs/bpf/hello")[0] == 0
    before = {argv: _cli(*argv) for argv in (("prog", "list"), ("-j", "prog", "show"),
                                            ("prog", "dump", "xlated", "id", "1"))}  # fmt: skip
    monkeypatch.setattr(verification, "verify_program", _refuse)
    monkeypatch.setattr(engines, "build", _refuse)
    for argv, shown in before.items():
        assert _cli(*argv) == shown, argv
    assert json.loads(before[("-j", "prog", "show")][1])[0]["jited"] is True


def test_a_state_from_before_verdicts_were_kept_verifies_once_and_keeps_them(root: Path):
    """A program record without the kept verdict (a state an older pybpf wrote) is verified
    when restored, as it was, and the next writing command keeps its verdict."""
    import sqlite3

    from pybpf.runtime.program import KeptVerdict

    _load_hello(root)
    db = sqlite3.connect(root / "state.db")
    (record,) = db.execute("SELECT record FROM progs").fetchone()
    old = {k: v for k, v in json.loads(record).items() if k not in ("shown", "bytes_jited")}
    db.execute("UPDATE progs SET record = ?", (json.dumps(old),))
    db.commit()
    with state.session(root) as kernel:
        prog = state.pinned(kernel, "/sys/fs/bpf/hello")
        assert prog.verdict is not None and not isinstance(prog.verdict, KeptVerdict)
        assert run_test(prog, data_in=bytes(64)).retval == 2
    (record,) = db.execute("SELECT record FROM progs").fetchone()
    db.close()
    assert json.loads(record)["shown"]["insns"] and "bytes_jited" in json.loads(record)
