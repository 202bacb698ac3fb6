"""The persistent kernel model: what survives a command, and what a crash cannot break."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from pybpf.errors import KernelError
from pybpf.kernel import state
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
    before = (root / "state.json").read_bytes()
    with pytest.raises(RuntimeError), state.session(root) as kernel:
        bss = next(m for m in kernel.maps.values() if m.name == "hello.bss")
        bss.update(bytes(4), (99).to_bytes(4, "little"))
        raise RuntimeError("killed mid-command")
    assert (root / "state.json").read_bytes() == before


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
    (root / "state.json").write_text("{not json")
    with pytest.raises(KernelError) as info, state.session(root):
        pass
    assert info.value.errno == errno.EIO


def test_state_file_is_one_atomic_json_document(root: Path):
    _load_hello(root)
    doc = json.loads((root / "state.json").read_text())
    assert doc["version"] == state.VERSION and doc["devices"] == {"lo": 1, "eth0": 2}
    assert not [f for f in os.listdir(root) if f.startswith(".state.json.")]


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
def _bad_hex(root: Path) -> None:
    _load_hello(root)
    doc = json.loads((root / "state.json").read_text())
    doc["progs"][0]["insns"] = "zz"
    (root / "state.json").write_text(json.dumps(doc))


_DAMAGED = ["the state file {root}/state.json is damaged", "rm {root}/state.json"]
DAMAGE_CASES = {
    "empty-object": (lambda root: (root / "state.json").write_text("{}"), _DAMAGED),
    "a-list": (lambda root: (root / "state.json").write_text("[]"), _DAMAGED),
    "bad-hex": (_bad_hex, _DAMAGED),
    "not-json": (lambda root: (root / "state.json").write_text("{not json"), _DAMAGED),
    "lock-is-a-directory": (lambda root: (root / "lock").mkdir(),
                            ["cannot open the state lock {root}/lock", "rm -r {root}/lock"]),
}


@pytest.mark.parametrize("case", list(DAMAGE_CASES))
def test_damaged_state_is_one_line_with_a_way_out(case: str, root: Path):
    plant, expected = DAMAGE_CASES[case]
    plant(root)
    status, _, err = _cli("prog", "list")
    assert status != 0 and err.count("\n") == 1 and err.startswith("Error: "), err
    for text in expected:
        assert text.format(root=root) in err, err


def test_prog_show_reports_the_loading_user(root: Path):
    assert _cli("prog", "load", str(HELLO), "/sys/fs/bpf/hello")[0] == 0
    status, out, _ = _cli("-j", "prog", "show", "pinned", "/sys/fs/bpf/hello")
    assert status == 0 and json.loads(out)["uid"] == os.getuid()
