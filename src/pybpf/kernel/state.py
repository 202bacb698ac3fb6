"""The persistent kernel model: pybpf's objects outlive a command the way the kernel's do.

Every ``pybpf`` command is a process, like every ``bpftool`` command.  The
kernel keeps what is pinned in bpffs or attached to a device and frees the
rest when its last fd closes (seed 001); pybpf does the same with a state
directory:

* ``$PYBPF_STATE_DIR`` (default ``$XDG_RUNTIME_DIR/pybpf``, else
  ``/tmp/pybpf-<uid>``: like bpffs, it does not survive a reboot), created 0700
  and refused when another user owns it or may write to it;
* ``state.db``: the objects, ids, pins, attachments, BTF blobs and the unread
  trace pipe, in SQLite (:mod:`pybpf.kernel.store`), with the contents of maps
  that are not arrays;
* ``maps/<id>.<n>``: the values of array maps, sparse files every process maps
  and shares live (:mod:`pybpf.kernel.mapfiles`);
* ``bpffs/``: the virtual ``/sys/fs/bpf``; the pin ``/sys/fs/bpf/X`` is the
  file ``bpffs/X`` (holding ``{"type": "prog"|"map", "id": N}`` for people to
  read) together with its row in ``state.db``.  Removing the file unpins, as
  ``rm /sys/fs/bpf/X`` does; a file without a row (left by a killed command)
  is no pin and the next writing command removes it;
* ``holders/``: processes holding objects as open fds do (:mod:`pybpf.kernel.holders`);
* ``lock``: held (``flock``) by commands that change the state, so writers
  run one after the other; reading commands take no lock (the database gives
  them the last committed state) and never wait for a running program.

:func:`session` reads the state, rebuilds a :class:`~pybpf.runtime.kernel.Kernel`
with the same ids and pins, yields it, then keeps what pins, attachments and
live holders reach (programs keep their maps alive, prog arrays and maps of maps their
entries) and commits the difference in one transaction: a command killed at
any point leaves the previous state or the new one, never a mix.  Pins made
from Python in a session (``Collection.pin``, ``kernel.obj_pin``) are the
same pins the command line sees.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pybpf.errors import JitError, KernelError, StateError
from pybpf.isa import decode, encode
from pybpf.kernel import holders, mapfiles
from pybpf.kernel.store import Snapshot, Store, damaged
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps.base import Map, MapAttr, MapType
from pybpf.runtime.program import Program
from pybpf.runtime.progtypes import ProgType
from pybpf.verifier.fixups import View

BPFFS = "/sys/fs/bpf"
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
    for sub in ("bpffs", mapfiles.DIR, holders.DIR):
        _private_dir(path / sub, f"remove {path / sub} (pybpf makes it again)")
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


# --- the session -----------------------------------------------------------------------
class StateKernel(Kernel):
    """A kernel whose pins are the state directory's (BPF_OBJ_PIN / BPF_OBJ_GET) and whose
    array maps keep their values in the state directory's shared files."""

    state_root: Path
    restoring = False  # map_create opens a restored map's files instead of making new ones

    def map_create(self, attr: MapAttr) -> Map:
        files = mapfiles.MapFiles(self.state_root, self._next_map_id, fresh=not self.restoring)
        self.space.shared_memory = files
        try:
            m = super().map_create(attr)
        finally:
            self.space.shared_memory = None
        m.mapped = files.blocks  # its contents are these files, not rows
        return m

    def hold(self, obj: Map | Program) -> None:
        """Keep ``obj`` (and what it uses) alive while this session lasts, as an open fd
        does: another process unpinning or detaching it does not free it meanwhile."""
        self.holds.hold(_kind(obj), obj.id)

    def obj_pin(self, path: str, obj: object) -> None:
        pin(self, path, obj)

    def obj_get(self, path: str) -> object:
        return pinned(self, path)

    def unpin(self, path: str) -> None:
        unpin(self, path)


@contextlib.contextmanager
def session(root: Path | None = None, *, write: bool = True, merge: bool = False,
            contents: bool = True, tag_algorithm: str | None = None,
            salvage: bool = False) -> Iterator[Kernel]:
    """A kernel holding the persisted objects; its changes committed on a clean exit when
    ``write`` (a writing session holds the lock from the end of its restore to its commit;
    a reading one takes none).

    ``merge`` (with ``write``) is for commands whose only lasting effects are what running
    programs do (``prog run``, ``net feed``): they run without the lock, then take it only
    to merge those effects into the state as it is by then (:func:`_merge`), so pins,
    loads and other writers never wait for a running program.
    ``contents`` False (a reading session only: ``prog list``, ``map show``) leaves the
    maps kept in the database empty instead of loading their elements.
    ``tag_algorithm`` is how the kernel computes program tags (default: SHA-256, as 6.18).
    ``salvage`` (state repair) drops the objects that do not restore, listing them in
    ``kernel.dropped``, instead of refusing the whole state.
    """
    root = root or state_dir()
    locked = write and not merge
    if write and not contents:
        raise ValueError("a writing session needs the maps' contents")
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(Store(root))
        lock = stack.enter_context(_open_lock(root)) if locked else None
        # restored without the lock (the slow part: mapping maps, loading programs); a
        # writer then takes the lock and restores again only if someone committed meanwhile
        kernel, before = _open(root, store, tag_algorithm, salvage, retry=True,
                               contents=contents)  # fmt: skip
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if store.generation() != before.generation:
                kernel.holds.release()
                kernel, before = _open(root, store, tag_algorithm, salvage, retry=False)
        stack.callback(_release, kernel, root, store, locked)
        if merge:
            kernel.trace.lines.clear()  # what this command's programs print, merged after
        yield kernel
        if locked:
            _commit(kernel, root, store, before)
        elif write:
            with _open_lock(root) as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                now = store.read()
                store.write(now, _merge(kernel, before, now))


def _release(kernel: StateKernel, root: Path, store: Store, locked: bool) -> None:
    """End the session's holds; free what only they kept alive (the fds' close)."""
    held = kernel.holds.held()
    kernel.holds.release()
    if not held:
        return
    if locked:  # this session's own commit (under the lock) already counted them
        _collect(root, store)
        return
    with _open_lock(root) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _collect(root, store)


def _collect(root: Path, store: Store) -> None:
    """Remove from the database what no pin, attachment or live holder reaches."""
    now = store.read()
    live_pins = _live_pins(root, now.pins)
    roots = [*live_pins.values(), *holders.live(root, remove_dead=True)]
    progs, maps = _reachable(now.maps, now.progs, roots, [p for p, _ in now.attachments.values()])
    after = Snapshot(meta=now.meta, maps={i: r for i, r in now.maps.items() if i in maps},
                     map_data={i: d for i, d in now.map_data.items() if i in maps},
                     progs={i: r for i, r in now.progs.items() if i in progs},
                     pins=live_pins, attachments=now.attachments, btf=now.btf,
                     trace=now.trace)  # fmt: skip
    if after != now:
        store.write(now, after)
        mapfiles.remove_dead(root, _map_ids(after.maps.values()))


def _open(root: Path, store: Store, tag_algorithm: str | None, salvage: bool, *,
          retry: bool, contents: bool = True) -> tuple[StateKernel, Snapshot]:  # fmt: skip
    """Read the state and restore it into a new kernel.  Without the lock (``retry``) a
    writer may commit and remove a map's files between the read and the restore: read
    again then."""
    for attempt in range(3 if retry else 1):
        kernel = StateKernel(tag_algorithm=tag_algorithm)
        kernel.state_root = root
        kernel.dropped = [] if salvage else None
        kernel.holds = holders.Holds(root)
        before = store.read()
        try:
            _restore(kernel, root, before, contents=contents)
            return kernel, before
        except StateError as err:
            if err.errno != errno.ENOENT or attempt == (2 if retry else 0):
                raise
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, KernelError) as err:
            raise damaged(store.path, f"{type(err).__name__}: {err}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def take_trace(root: Path | None = None) -> list[str]:
    """Read the trace pipe (its unread lines, removed) without restoring any object: what
    ``prog tracelog follow`` polls, holding the writers' lock only for that."""
    root = root or state_dir()
    with _open_lock(root) as lock, Store(root) as store:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return store.take_trace()


def _open_lock(root: Path):
    path = root / "lock"
    try:
        return open(path, "a+")
    except OSError as err:
        what = "remove it (rm -r " if os.path.isdir(path) else "remove it (rm "
        raise StateError(f"cannot open the state lock {path}: {err.strerror}; {what}{path})",
                         errno=err.errno) from None  # fmt: skip


# --- pins ------------------------------------------------------------------------------
def pin_file(root: Path, path: str) -> Path:
    """The file of pin ``path`` (``/sys/fs/bpf/X`` -> ``root/bpffs/X``); EINVAL outside bpffs."""
    norm = os.path.normpath(path)
    if not norm.startswith(BPFFS + "/") or ".." in Path(norm).parts:
        raise KernelError(f"{path}: not a path under {BPFFS}", errno=errno.EINVAL)
    return root / "bpffs" / norm[len(BPFFS) + 1 :]


def _norm(path: str) -> str:
    return os.path.normpath(path)


def pins(kernel: Kernel) -> dict[str, dict]:
    """Every pin: its /sys/fs/bpf path -> {"type": "prog"|"map", "id"}, by path."""
    return {path: {"type": _kind(obj), "id": obj.id} for path, obj in sorted(kernel.pins.items())}


def _kind(obj: object) -> str:
    return "prog" if isinstance(obj, Program) else "map"


def pin(kernel: Kernel, path: str, obj: Map | Program) -> None:
    """BPF_OBJ_PIN into the virtual bpffs (EEXIST when the path exists); committed with
    the session."""
    file = pin_file(kernel.state_root, path)
    if _norm(path) in kernel.pins or file.is_dir():
        raise KernelError(f"{path}: File exists", errno=errno.EEXIST)
    if not file.parent.is_dir():
        raise KernelError(f"{file.parent}: No such file or directory", errno=errno.ENOENT)
    kernel.pins[_norm(path)] = obj


def unpin(kernel: Kernel, path: str) -> None:
    """Remove a pin (ENOENT when there is none)."""
    pin_file(kernel.state_root, path)
    if kernel.pins.pop(_norm(path), None) is None:
        raise KernelError(f"{path}: No such file or directory", errno=errno.ENOENT)


def pinned(kernel: Kernel, path: str) -> Map | Program:
    """BPF_OBJ_GET: the object pinned at ``path``."""
    file = pin_file(kernel.state_root, path)
    obj = kernel.pins.get(_norm(path))
    if obj is not None:
        return obj
    if file.is_dir():  # bpf_obj_get on a bpffs directory: not an object (EACCES)
        raise KernelError(f"{path}: Permission denied", errno=errno.EACCES)
    raise KernelError(f"{path}: No such file or directory", errno=errno.ENOENT)


def _live_pins(root: Path, rows: dict[str, tuple[str, int]]) -> dict[str, tuple[str, int]]:
    """The pin rows whose file is still there (``rm`` of the file unpins)."""
    return {p: r for p, r in rows.items() if pin_file(root, p).is_file()}


# --- saving ----------------------------------------------------------------------------
def _commit(kernel: Kernel, root: Path, store: Store, before: Snapshot) -> None:
    after = _snapshot(kernel, before)
    made = [p for p, r in after.pins.items() if before.pins.get(p) != r or
            not pin_file(root, p).is_file()]  # fmt: skip
    for path in made:  # a file without its row is no pin: written first, committed after
        kind, ident = after.pins[path]
        try:
            _atomic_write(pin_file(root, path), json.dumps({"type": kind, "id": ident}))
        except OSError as err:
            raise StateError(f"cannot write the pin {path}: {err.strerror}",
                             errno=err.errno) from None  # fmt: skip
    store.write(before, after)
    _remove_stale_pin_files(root, after.pins)
    mapfiles.remove_dead(root, _map_ids(after.maps.values()))


def _map_ids(records) -> set[int]:
    """The ids of these map records and of their inner-map templates."""
    out: set[int] = set()
    for record in records:
        while record:
            out.add(record["id"])
            record = record.get("inner")
    return out


def _remove_stale_pin_files(root: Path, rows: dict[str, tuple[str, int]]) -> None:
    """Remove files under bpffs/ that name no committed pin (an unpin, a killed command)."""
    base = root / "bpffs"
    for file in base.rglob("*"):
        stale = f"{BPFFS}/{file.relative_to(base)}" not in rows
        if stale and (file.is_file() or file.is_symlink()):
            with contextlib.suppress(OSError):
                file.unlink()


def _snapshot(kernel: Kernel, before: Snapshot) -> Snapshot:
    """What the database should hold after this command: what pins, attachments and live
    holders reach."""
    maps = {i: _map_record(m) for i, m in kernel.maps.items()}
    progs = {i: _prog_record(p) for i, p in kernel.progs.items()}
    pin_rows = {path: (_kind(obj), obj.id) for path, obj in kernel.pins.items()}
    attachments = {k: v for k, v in kernel.attachments.items() if v in kernel.progs}
    roots = [*pin_rows.values(), *holders.live(kernel.state_root, remove_dead=True)]
    live_progs, live_maps = _reachable(maps, progs, roots, attachments.values())
    after = Snapshot()
    after.maps = {i: r for i, r in maps.items() if i in live_maps}
    after.progs = {i: r for i, r in progs.items() if i in live_progs}
    after.pins = {p: r for p, r in pin_rows.items() if r[1] in (live_progs if r[0] == "prog"
                                                                 else live_maps)}  # fmt: skip
    for ident in after.maps:
        data = _map_data(kernel.maps[ident])
        if data is not None:
            after.map_data[ident] = (hashlib.sha256(data).hexdigest(), data)
    after.attachments = {k: (v, kernel.xdp_modes.get(k)) for k, v in attachments.items()}
    used = {r.get("btf_id", 0) for r in [*after.progs.values(), *after.maps.values()]}
    after.btf = {int(k): v for k, v in getattr(kernel, "btf_blobs", {}).items() if int(k) in used}
    after.trace = list(kernel.trace.lines)[-TRACE_KEPT:]
    after.meta = {
        "next_map_id": kernel._next_map_id, "next_prog_id": kernel._next_prog_id,
        "next_btf_id": getattr(kernel, "_next_btf_id", 1), "devices": kernel.devices,
    }  # fmt: skip
    return after


def _merge(kernel: Kernel, before: Snapshot, now: Snapshot) -> Snapshot:
    """``now`` plus what this session's programs did since ``before``: run statistics
    added, the engine of a program this session prepared one for, each changed key of a
    map kept in the database written (or deleted) into its current contents, the trace
    lines appended.  Objects that died meanwhile are skipped; array maps need nothing
    (their files are shared live)."""
    out = Snapshot(meta=now.meta, maps=now.maps, map_data=dict(now.map_data),
                   progs=dict(now.progs), pins=now.pins, attachments=now.attachments,
                   btf=now.btf, trace=(now.trace + list(kernel.trace.lines))[-TRACE_KEPT:])
    for ident, prog in kernel.progs.items():
        if ident in now.progs and ident in before.progs:
            record = dict(now.progs[ident])
            for key, value in (("run_count", prog.run_count), ("run_time_ns", prog.run_time_ns)):
                record[key] = record.get(key, 0) + value - before.progs[ident].get(key, 0)
            if prog.engine_prepared:  # the engine it ran on (the interpreter if a JIT refused)
                record["engine"] = getattr(prog, "engine_name", record.get("engine"))
                record["bytes_jited"] = _bytes_jited(prog)
            out.progs[ident] = record
    for ident, m in kernel.maps.items():
        data = _map_data(m)
        old = before.map_data.get(ident)
        if ident not in now.maps or data is None or old is None or old[1] == data:
            continue
        then, mine = json.loads(old[1]), json.loads(data)
        if "entries" not in mine:  # a queue or stack: its new contents as this command left it
            merged = data
        else:
            current = dict(map(tuple, json.loads(now.map_data.get(ident, (0, b"{}"))[1])
                               .get("entries", [])))  # fmt: skip
            was, became = dict(map(tuple, then["entries"])), dict(map(tuple, mine["entries"]))
            for key in was.keys() - became.keys():
                current.pop(key, None)
            current.update({k: v for k, v in became.items() if was.get(k) != v})
            merged = json.dumps({"entries": sorted(current.items())}).encode()
        out.map_data[ident] = (hashlib.sha256(merged).hexdigest(), merged)
    return out


def _slots(m: Map) -> dict[int, Map | Program]:
    return dict(m.occupied()) if hasattr(m, "occupied") else {
        i: m.object_at(i) for i in range(m.max_entries) if m.object_at(i) is not None}


def _map_record(m: Map) -> dict:
    """A map's attributes and the objects its slots name (its contents are _map_data)."""
    a = m.attr
    record = {
        "id": m.id, "type": int(a.map_type), "key_size": a.key_size,
        "value_size": a.value_size, "max_entries": a.max_entries, "flags": a.map_flags,
        "name": a.name, "map_extra": a.map_extra, "frozen": m.frozen,
        "btf_id": getattr(m, "btf_id", 0), "btf_key_type_id": a.btf_key_type_id,
        "btf_value_type_id": a.btf_value_type_id,
        "inner": _map_record(a.inner_map) if a.inner_map is not None else None,
    }  # fmt: skip
    if getattr(m, "mapped", 0):
        record["blocks"] = m.mapped
    if m.map_type in _FD_MAPS:
        record["slots"] = {str(i): [_kind(o), o.id] for i, o in sorted(_slots(m).items())}
    return record


def _map_data(m: Map) -> bytes | None:
    """The contents of ``m`` to keep in the database (None: nothing to keep, or they live
    in the map's files)."""
    if getattr(m, "mapped", False):
        return None
    if m.map_type in (MapType.QUEUE, MapType.STACK):
        return json.dumps({"values": [v.hex() for v in m.snapshot()]}).encode()
    if m.map_type in _FD_MAPS or m.map_type in _UNSAVED:
        return None
    return json.dumps({"entries": [[k.hex(), v.hex()] for k, v in m.items()]}).encode()


def _prog_record(p: Program) -> dict:
    return {
        "id": p.id, "type": int(p.prog_type), "name": p.name, "license": p.license,
        "insns": encode(p.xlated).hex(), "loaded_at": p.loaded_at, "uid": p.uid,
        "expected_attach_type": p.expected_attach_type, "map_ids": p.map_ids,
        "notes": {str(k): v for k, v in getattr(p, "notes", {}).items()},
        "linum": {str(k): v for k, v in getattr(p, "linum", {}).items()},
        "btf_id": getattr(p, "btf_id", 0), "run_count": p.run_count,
        "run_time_ns": p.run_time_ns, "engine": getattr(p, "engine_name", "interp"),
        "verified": p.verdict is not None,
        "shown": _shown_record(p) if p.verdict is not None else None,
        "bytes_jited": _bytes_jited(p),
        "func_info": _function_starts(p) if getattr(p, "has_func_info", False) else None,
    }  # fmt: skip


def _bytes_jited(p: Program) -> int:
    """The size of the program's jited image, kept so that listing it compiles nothing."""
    from pybpf.jit import disasm

    kept = p.kept_bytes_jited
    return kept if kept is not None else disasm.code_size(getattr(p.engine, "object_code", None))


def _shown_record(p: Program) -> dict:
    """What the verifier made of the program, as ``prog dump xlated`` shows it: kept so
    that restoring the program does not run the verifier again."""
    view = p.shown
    return {"insns": encode(view.insns).hex(),
            "symbols": {str(k): v for k, v in view.symbols.items()},
            "pc_map": {str(k): v for k, v in view.pc_map.items()}}  # fmt: skip


def _shown_view(r: dict) -> View | None:
    """The kept shown image of a program record (None: a record made before they were
    kept, or of a program never verified: the load verifies it as it did)."""
    shown = r.get("shown") if r.get("verified") else None
    if not shown:
        return None
    return View(tuple(decode(bytes.fromhex(shown["insns"]))),
                {int(k): v for k, v in shown["symbols"].items()},
                {int(k): v for k, v in shown["pc_map"].items()})  # fmt: skip


def _function_starts(p: Program) -> list[int]:
    """The functions of the saved (rewritten) image, as BTF func_info would list them."""
    from pybpf.verifier import cfg

    return [sub.start for sub in cfg.analyze(p.xlated, btf=True).subprogs]


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- restoring -------------------------------------------------------------------------
def _restore(kernel: Kernel, root: Path, snap: Snapshot, *, contents: bool = True) -> None:
    kernel.btf_blobs = {str(k): v for k, v in snap.btf.items()}
    kernel._next_btf_id = int(snap.meta.get("next_btf_id", 1))
    kernel.devices = dict(snap.meta.get("devices", DEFAULT_DEVICES))
    kernel.attachments = {k: v for k, (v, _) in snap.attachments.items()}
    kernel.xdp_modes = {k: m for k, (_, m) in snap.attachments.items() if m is not None}
    _set_netdevs(kernel)
    # a pin removed since (rm /sys/fs/bpf/X) frees what only it kept alive
    live_pins = _live_pins(root, snap.pins)
    roots = [*live_pins.values(), *holders.live(root)]  # held objects outlive their pins
    live_progs, live_maps = _reachable(snap.maps, snap.progs, roots,
                                       kernel.attachments.values())  # fmt: skip
    maps = {}
    kernel.restoring = True
    for ident in sorted(live_maps):
        with _salvaging(kernel, f"map {ident}"):
            data = snap.map_data.get(ident) if contents else None
            maps[ident] = _restore_map(kernel, snap.maps[ident], data)
    kernel.restoring = False
    for ident in sorted(live_progs):
        with _salvaging(kernel, f"prog {ident}"):
            _restore_prog(kernel, snap.progs[ident], maps)
    for ident in sorted(maps):  # slots last: they name programs and maps
        for index, (kind, target_id) in snap.maps[ident].get("slots", {}).items():
            table = kernel.progs if kind in ("prog", "Program") else kernel.maps
            if target_id in table:
                maps[ident].set(int(index), table[target_id])
    kernel._next_map_id = max(kernel._next_map_id, int(snap.meta.get("next_map_id", 1)))
    kernel._next_prog_id = max(kernel._next_prog_id, int(snap.meta.get("next_prog_id", 1)))
    kernel.attachments = {k: v for k, v in kernel.attachments.items() if v in kernel.progs}
    kernel.trace.lines.extend(snap.trace)
    for path, (kind, ident) in live_pins.items():
        table = kernel.progs if kind == "prog" else kernel.maps
        if ident in table:
            kernel.pins[path] = table[ident]


@contextlib.contextmanager
def _salvaging(kernel: Kernel, what: str) -> Iterator[None]:
    """Restore one object; in a repair (``kernel.dropped`` is a list) a record that does
    not restore is dropped and named there instead of failing the whole session."""
    dropped = getattr(kernel, "dropped", None)
    if dropped is None:
        yield
        return
    try:
        yield
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, KernelError) as err:
        dropped.append(f"{what}: {type(err).__name__}: {err}")


def _set_netdevs(kernel: Kernel) -> None:
    """Every virtual device has one rx queue (what XDP test runs check ifindexes against)."""
    kernel.netdevs = {ifindex: 1 for ifindex in kernel.devices.values()}


def _reachable(maps_by_id: dict[int, dict], progs_by_id: dict[int, dict], pinned_objects,
               attached) -> tuple[set[int], set[int]]:  # fmt: skip
    """Ids of the program and map records that pins and attachments reach."""
    todo = [(kind, ident) for kind, ident in pinned_objects]
    todo += [("prog", v) for v in attached]
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
                todo.append(("prog" if obj_kind in ("prog", "Program") else "map", obj_id))
    return progs, maps


def _with_id(kernel: Kernel, counter: str, ident: int, create):
    setattr(kernel, counter, ident)
    obj = create()
    setattr(kernel, counter, ident + 1)
    return obj


def _restore_map(kernel: Kernel, r: dict, data: tuple[str, bytes] | None = None) -> Map:
    inner = _restore_map(kernel, r["inner"]) if r.get("inner") else None
    attr = MapAttr(MapType(r["type"]), r["key_size"], r["value_size"], r["max_entries"],
                   r["flags"], r["name"], r["map_extra"], inner, r["btf_key_type_id"],
                   r["btf_value_type_id"])  # fmt: skip
    m = _with_id(kernel, "_next_map_id", r["id"], lambda: kernel.map_create(attr))
    m.btf_id = r.get("btf_id", 0)
    contents = json.loads(data[1]) if data is not None and not m.mapped else {}
    for key, value in contents.get("entries", []):
        m.update(bytes.fromhex(key), bytes.fromhex(value))
    if "values" in contents:
        m.restore([bytes.fromhex(v) for v in contents["values"]])
    m.frozen = r["frozen"]
    return m


def _interp_if_refused(prog: Program) -> None:
    """A lazily prepared engine this JIT refuses (code an earlier one took) is the
    interpreter instead, as a refusal at load time is: the program still runs."""
    make = prog._make_engine
    if make is None or getattr(prog, "engine_name", "interp") != "jit":
        return

    def engine():
        try:
            return make()
        except JitError:
            prog.engine_name = "interp"
            return prog.build_engine("interp")

    prog._make_engine = engine


def _restore_prog(kernel: Kernel, r: dict, maps: dict[int, Map]) -> Program:
    insns = decode(bytes.fromhex(r["insns"]))
    kept = _shown_view(r)  # verified when loaded: what the verifier made of it, kept

    def load(engine: str) -> Program:
        return _with_id(kernel, "_next_prog_id", r["id"], lambda: kernel.prog_load(
            insns, ProgType(r["type"]), name=r["name"], license=r["license"], maps=maps,
            expected_attach_type=r["expected_attach_type"], engine=engine,
            func_info=r.get("func_info"), verify=False if kept is not None else None,
            kept=kept, lazy_engine=kept is not None))  # fmt: skip

    try:
        prog = load(r.get("engine", "interp"))  # the engine it was loaded on
    except JitError:  # this JIT refuses code an earlier one took: the program still runs
        prog = load("interp")
    if kept is not None:  # the engine is prepared when the program first runs
        _interp_if_refused(prog)
        prog.kept_jited = r.get("bytes_jited")
    prog.loaded_at, prog.uid = r["loaded_at"], r["uid"]
    prog.notes = {int(k): v for k, v in r.get("notes", {}).items()}
    prog.linum = {int(k): v for k, v in r.get("linum", {}).items()}
    prog.btf_id = r.get("btf_id", 0)
    prog.run_count, prog.run_time_ns = r.get("run_count", 0), r.get("run_time_ns", 0)
    return prog


__all__ = ["StateKernel", "pin", "pin_file", "pinned", "pins", "session", "state_dir",
           "take_trace", "unpin"]
