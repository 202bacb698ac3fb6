"""The persistent kernel model: pybpf's objects outlive a command the way the kernel's do.

Every ``pybpf`` command is a process, like every ``bpftool`` command.  The
kernel keeps what is pinned in bpffs or attached to a device and frees the
rest when its last fd closes (seed 001); pybpf does the same with a state
directory:

* ``$PYBPF_STATE_DIR`` (default ``$XDG_RUNTIME_DIR/pybpf``, else
  ``/tmp/pybpf-<uid>``: like bpffs, it does not survive a reboot), created 0700
  and refused when another user owns it or may write to it;
* ``bpffs/``: the virtual ``/sys/fs/bpf``; the pin ``/sys/fs/bpf/X`` is the
  file ``bpffs/X``, holding ``{"type": "prog"|"map", "id": N}``.  Removing
  the file unpins, as ``rm /sys/fs/bpf/X`` does;
* ``state.json``: every live object (programs with their xlated image,
  listing notes and the engine they run on, maps with their attributes and contents, BTF blobs), the
  next ids, the virtual network devices (``lo`` and ``eth0`` to begin with)
  and their XDP attachments, and the unread trace pipe;
* ``lock``: held (``flock``) for a whole command, so concurrent commands run
  one after the other and never lose an update.

:func:`session` opens the state, rebuilds a :class:`~pybpf.runtime.kernel.Kernel`
with the same ids, yields it, then keeps what pins and attachments reach
(programs keep their maps alive, prog arrays and maps of maps their
entries) and writes it back atomically (a temporary file renamed over
``state.json``): a command killed at any point leaves the previous state or
the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pybpf.errors import JitError, KernelError, StateError
from pybpf.isa import decode, encode
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps.base import Map, MapAttr, MapType
from pybpf.runtime.program import Program
from pybpf.runtime.progtypes import ProgType

BPFFS = "/sys/fs/bpf"
VERSION = 1
_FD_MAPS = (MapType.PROG_ARRAY, MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)
_UNSAVED = (MapType.RINGBUF, MapType.PERF_EVENT_ARRAY, MapType.BLOOM_FILTER)
DEFAULT_DEVICES = {"lo": 1, "eth0": 2}  # virtual network devices: name -> ifindex
TRACE_KEPT = 10_000  # unread trace-pipe lines kept between commands (the oldest are dropped)


def state_dir() -> Path:
    """The state directory: created 0700 on demand, refused unless private to the user.

    ``$PYBPF_STATE_DIR``, else ``$XDG_RUNTIME_DIR/pybpf``, else
    ``<tmp>/pybpf-<uid>``.  Only the last component is created (its parent must
    exist); an existing directory must belong to the user and be writable by
    nobody else, as a shared directory such as /tmp lets another user plant one.
    """
    explicit = os.environ.get("PYBPF_STATE_DIR")
    if explicit:
        path, how = Path(explicit), "set PYBPF_STATE_DIR to a directory of yours"
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "pybpf"
        how = "set PYBPF_STATE_DIR to a directory of yours (XDG_RUNTIME_DIR may be inherited)"
    else:
        path = Path(tempfile.gettempdir()) / f"pybpf-{os.getuid()}"
        how = "set PYBPF_STATE_DIR to a directory of yours"
    _private_dir(path, how)
    _private_dir(path / "bpffs", how)
    return path


def _private_dir(path: Path, how: str) -> None:
    """Create ``path`` 0700 when missing; StateError unless it is a private directory."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise StateError(f"cannot create the state directory {path}: {err.strerror}; {how}",
                         errno=err.errno) from None  # fmt: skip
    try:
        st = os.stat(path)
    except OSError as err:
        raise StateError(f"state directory {path}: {err.strerror}; {how}",
                         errno=err.errno) from None  # fmt: skip
    if not stat.S_ISDIR(st.st_mode):
        raise StateError(f"state directory {path} is not a directory; {how}",
                         errno=errno.ENOTDIR)  # fmt: skip
    if st.st_uid != os.getuid():
        raise StateError(f"state directory {path} belongs to uid {st.st_uid}, not to you "
                         f"(uid {os.getuid()}); {how}", errno=errno.EACCES)  # fmt: skip
    if st.st_mode & 0o022:
        raise StateError(f"state directory {path} is writable by others (mode "
                         f"{stat.S_IMODE(st.st_mode):04o}); chmod 700 {path} or {how}",
                         errno=errno.EACCES)  # fmt: skip
    if not os.access(path, os.W_OK | os.X_OK):
        raise StateError(f"state directory {path} is not writable; {how}", errno=errno.EACCES)


def pin_file(root: Path, path: str) -> Path:
    """The file of pin ``path`` (``/sys/fs/bpf/X`` -> ``root/bpffs/X``); EINVAL outside bpffs."""
    norm = os.path.normpath(path)
    if not norm.startswith(BPFFS + "/") or ".." in Path(norm).parts:
        raise KernelError(f"{path}: not a path under {BPFFS}", errno=errno.EINVAL)
    return root / "bpffs" / norm[len(BPFFS) + 1 :]


# --- the session -----------------------------------------------------------------------
@contextlib.contextmanager
def session(root: Path | None = None, *, write: bool = True,
            tag_algorithm: str | None = None) -> Iterator[Kernel]:
    """A kernel holding the persisted objects; saved on a clean exit when ``write``.

    ``tag_algorithm`` is how the kernel computes program tags (default: SHA-256, as 6.18).
    """
    root = root or state_dir()
    with _open_lock(root) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kernel = Kernel(tag_algorithm=tag_algorithm)
        kernel.state_root = root
        _restore(kernel, root)
        yield kernel
        if write:
            _save(kernel, root)


def _open_lock(root: Path):
    path = root / "lock"
    try:
        return open(path, "a+")
    except OSError as err:
        what = "remove it (rm -r " if os.path.isdir(path) else "remove it (rm "
        raise StateError(f"cannot open the state lock {path}: {err.strerror}; {what}{path})",
                         errno=err.errno) from None  # fmt: skip


def pins(root: Path) -> dict[str, dict]:
    """Every pin: its /sys/fs/bpf path -> {"type", "id"} (unreadable files are skipped)."""
    out = {}
    base = root / "bpffs"
    for file in sorted(base.rglob("*")):
        if file.is_file():
            with contextlib.suppress(OSError, ValueError):
                record = json.loads(file.read_text())
                if isinstance(record, dict):  # anything else is not a pin
                    out[f"{BPFFS}/{file.relative_to(base)}"] = record
    return out


def pin(kernel: Kernel, path: str, obj: Map | Program) -> None:
    """BPF_OBJ_PIN into the virtual bpffs (EEXIST when the path exists)."""
    file = pin_file(kernel.state_root, path)
    if file.exists():
        raise KernelError(f"{path}: File exists", errno=errno.EEXIST)
    if not file.parent.is_dir():
        raise KernelError(f"{file.parent}: No such file or directory", errno=errno.ENOENT)
    record = {"type": "prog" if isinstance(obj, Program) else "map", "id": obj.id}
    _atomic_write(file, json.dumps(record))


def unpin(kernel: Kernel, path: str) -> None:
    """Remove a pin (ENOENT when there is none)."""
    file = pin_file(kernel.state_root, path)
    try:
        file.unlink()
    except FileNotFoundError:
        raise KernelError(f"{path}: No such file or directory", errno=errno.ENOENT) from None


def pinned(kernel: Kernel, path: str) -> Map | Program:
    """BPF_OBJ_GET: the object pinned at ``path``."""
    file = pin_file(kernel.state_root, path)
    try:
        record = json.loads(file.read_text())
        table = kernel.progs if record["type"] == "prog" else kernel.maps
        return table[int(record["id"])]
    except FileNotFoundError:
        raise KernelError(f"{path}: No such file or directory", errno=errno.ENOENT) from None
    except IsADirectoryError:  # bpf_obj_get on a bpffs directory: not an object (EACCES)
        raise KernelError(f"{path}: Permission denied", errno=errno.EACCES) from None
    except (ValueError, KeyError, TypeError):
        raise KernelError(f"{path}: not a pinned object", errno=errno.EINVAL) from None


# --- saving ----------------------------------------------------------------------------
def _slots(m: Map) -> dict[int, Map | Program]:
    return {i: m.object_at(i) for i in range(m.max_entries) if m.object_at(i) is not None}


def _save(kernel: Kernel, root: Path) -> None:
    state = {
        "version": VERSION,
        "next_map_id": kernel._next_map_id,
        "next_prog_id": kernel._next_prog_id,
        "maps": [_map_record(kernel.maps[i]) for i in sorted(kernel.maps)],
        "progs": [_prog_record(kernel.progs[i]) for i in sorted(kernel.progs)],
        "attachments": {
            str(k): v for k, v in kernel.attachments.items() if v in kernel.progs
        },
        "trace": list(kernel.trace.lines)[-TRACE_KEPT:],
        "xdp_modes": {
            str(k): v for k, v in kernel.xdp_modes.items() if k in kernel.attachments
        },
        "devices": kernel.devices,
        "btf": getattr(kernel, "btf_blobs", {}),
        "next_btf_id": getattr(kernel, "_next_btf_id", 1),
    }
    progs, maps = _reachable(state, root)  # what no pin or attachment reaches dies now
    state["progs"] = [r for r in state["progs"] if r["id"] in progs]
    state["maps"] = [r for r in state["maps"] if r["id"] in maps]
    used = {str(r.get("btf_id", 0)) for r in state["progs"] + state["maps"]}
    state["btf"] = {k: v for k, v in state["btf"].items() if k in used}
    _atomic_write(root / "state.json", json.dumps(state))


def _map_record(m: Map) -> dict:
    a = m.attr
    record = {
        "id": m.id, "type": int(a.map_type), "key_size": a.key_size,
        "value_size": a.value_size, "max_entries": a.max_entries, "flags": a.map_flags,
        "name": a.name, "map_extra": a.map_extra, "frozen": m.frozen,
        "btf_id": getattr(m, "btf_id", 0), "btf_key_type_id": a.btf_key_type_id,
        "btf_value_type_id": a.btf_value_type_id,
        "inner": _map_record(a.inner_map) if a.inner_map is not None else None,
    }  # fmt: skip
    if m.map_type in _FD_MAPS:
        record["slots"] = {str(i): [type(o).__name__, o.id] for i, o in _slots(m).items()}
    elif m.map_type in (MapType.QUEUE, MapType.STACK):
        record["values"] = [v.hex() for v in m.snapshot()]
    elif m.map_type not in _UNSAVED:
        record["entries"] = [[k.hex(), v.hex()] for k, v in m.items()]
    return record


def _prog_record(p: Program) -> dict:
    return {
        "id": p.id, "type": int(p.prog_type), "name": p.name, "license": p.license,
        "insns": encode(p.xlated).hex(), "loaded_at": p.loaded_at, "uid": p.uid,
        "expected_attach_type": p.expected_attach_type, "map_ids": p.map_ids,
        "notes": {str(k): v for k, v in getattr(p, "notes", {}).items()},
        "linum": {str(k): v for k, v in getattr(p, "linum", {}).items()},
        "btf_id": getattr(p, "btf_id", 0), "run_count": p.run_count,
        "run_time_ns": p.run_time_ns, "engine": getattr(p, "engine_name", "interp"),
        "func_info": _function_starts(p) if getattr(p, "has_func_info", False) else None,
    }  # fmt: skip


def _function_starts(p: Program) -> list[int]:
    """The functions of the saved (rewritten) image, as BTF func_info would list them."""
    from pybpf.verifier import cfg

    return [sub.start for sub in cfg.analyze(p.xlated, btf=True).subprogs]


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- restoring -------------------------------------------------------------------------
def _restore(kernel: Kernel, root: Path) -> None:
    kernel.devices = dict(DEFAULT_DEVICES)
    kernel.attachments = {}
    kernel.xdp_modes = {}
    _set_netdevs(kernel)
    path = root / "state.json"
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as err:
        raise _damaged(path, err) from None
    try:
        _restore_state(kernel, root, state)
    except StateError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, KernelError) as err:
        raise _damaged(path, err) from None


def _damaged(path: Path, err: Exception) -> StateError:
    why = err.strerror if isinstance(err, OSError) else f"{type(err).__name__}: {err}"
    return StateError(f"the state file {path} is damaged ({why}); remove it to start "
                      f"afresh (rm {path}), which unloads every object", errno=errno.EIO)


def _restore_state(kernel: Kernel, root: Path, state: dict) -> None:
    kernel.btf_blobs = state.get("btf", {})
    kernel._next_btf_id = state.get("next_btf_id", 1)
    # a pin removed since (rm /sys/fs/bpf/X) frees what only it kept alive
    live_progs, live_maps = _reachable(state, root)
    map_records = [r for r in state["maps"] if r["id"] in live_maps]
    maps = {r["id"]: _restore_map(kernel, r) for r in map_records}
    for record in state["progs"]:
        if record["id"] in live_progs:
            _restore_prog(kernel, record, maps)
    for record in map_records:  # slots last: they name programs and maps
        for index, (kind, ident) in record.get("slots", {}).items():
            target = kernel.progs.get(ident) if kind == "Program" else kernel.maps.get(ident)
            if target is not None:
                maps[record["id"]].set(int(index), target)
    kernel._next_map_id = max(kernel._next_map_id, state["next_map_id"])
    kernel._next_prog_id = max(kernel._next_prog_id, state["next_prog_id"])
    kernel.attachments = {int(k): v for k, v in state.get("attachments", {}).items()}
    kernel.trace.lines.extend(state.get("trace", []))
    kernel.devices = dict(state.get("devices", DEFAULT_DEVICES))
    kernel.xdp_modes = {int(k): v for k, v in state.get("xdp_modes", {}).items()}
    _set_netdevs(kernel)


def _set_netdevs(kernel: Kernel) -> None:
    """Every virtual device has one rx queue (what XDP test runs check ifindexes against)."""
    kernel.netdevs = {ifindex: 1 for ifindex in kernel.devices.values()}


def _reachable(state: dict, root: Path) -> tuple[set[int], set[int]]:
    """Ids of the program and map records that pins and attachments still reach."""
    progs_by_id = {r["id"]: r for r in state["progs"]}
    maps_by_id = {r["id"]: r for r in state["maps"]}
    todo = [(r.get("type"), r.get("id")) for r in pins(root).values()]
    todo += [("prog", v) for v in state.get("attachments", {}).values()]
    progs: set[int] = set()
    maps: set[int] = set()
    while todo:
        kind, ident = todo.pop()
        if kind == "prog" and ident in progs_by_id and ident not in progs:
            progs.add(ident)
            todo += [("map", m) for m in progs_by_id[ident]["map_ids"]]
        elif kind == "map" and ident in maps_by_id and ident not in maps:
            maps.add(ident)
            for obj_kind, obj_id in maps_by_id[ident].get("slots", {}).values():
                todo.append(("prog" if obj_kind == "Program" else "map", obj_id))
    return progs, maps


def _with_id(kernel: Kernel, counter: str, ident: int, create):
    setattr(kernel, counter, ident)
    obj = create()
    setattr(kernel, counter, ident + 1)
    return obj


def _restore_map(kernel: Kernel, r: dict) -> Map:
    inner = _restore_map(kernel, r["inner"]) if r.get("inner") else None
    attr = MapAttr(MapType(r["type"]), r["key_size"], r["value_size"], r["max_entries"],
                   r["flags"], r["name"], r["map_extra"], inner, r["btf_key_type_id"],
                   r["btf_value_type_id"])  # fmt: skip
    m = _with_id(kernel, "_next_map_id", r["id"], lambda: kernel.map_create(attr))
    m.btf_id = r.get("btf_id", 0)
    for key, value in r.get("entries", []):
        m.update(bytes.fromhex(key), bytes.fromhex(value))
    if "values" in r:
        m.restore([bytes.fromhex(v) for v in r["values"]])
    m.frozen = r["frozen"]
    return m


def _restore_prog(kernel: Kernel, r: dict, maps: dict[int, Map]) -> Program:
    insns = decode(bytes.fromhex(r["insns"]))

    def load(engine: str) -> Program:
        return _with_id(kernel, "_next_prog_id", r["id"], lambda: kernel.prog_load(
            insns, ProgType(r["type"]), name=r["name"], license=r["license"], maps=maps,
            expected_attach_type=r["expected_attach_type"], engine=engine,
            func_info=r.get("func_info")))  # fmt: skip

    try:
        prog = load(r.get("engine", "interp"))  # the engine it was loaded on
    except JitError:  # this JIT refuses code an earlier one took: the program still runs
        prog = load("interp")
    prog.loaded_at, prog.uid = r["loaded_at"], r["uid"]
    prog.notes = {int(k): v for k, v in r.get("notes", {}).items()}
    prog.linum = {int(k): v for k, v in r.get("linum", {}).items()}
    prog.btf_id = r.get("btf_id", 0)
    prog.run_count, prog.run_time_ns = r.get("run_count", 0), r.get("run_time_ns", 0)
    return prog


__all__ = ["pin", "pinned", "pins", "session", "state_dir", "unpin"]
