"""``pybpf state check`` and ``pybpf state repair``: the state store's fsck.

:func:`check` lists every inconsistency between the database, the pin files
and the map data files without changing anything: SQLite's own integrity
check, pins naming a missing object or one of the other kind, programs using
a missing map, slots naming a missing object, ids at or beyond the next id
counters, objects no pin or attachment keeps alive, pin files without a pin.

:func:`repair` keeps every object it can prove intact: it copies each row it
can read and decode out of the database (a damaged one is moved aside to
``state.db.damaged``), drops what names something missing (a pin, a slot, an
attachment, a program whose maps are gone) and lets one writing session
commit the result, which also removes what nothing reaches and stale pin files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from pybpf.errors import StateError
from pybpf.kernel import holders, mapfiles, state
from pybpf.kernel.store import DB_NAME, TABLES, Snapshot, Store


@dataclass
class Report:
    """What :func:`check` found: ``problems`` (one line each) and what the state holds."""

    problems: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)  # freed by the next writing command
    progs: int = 0
    maps: int = 0
    pins: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check(root: Path) -> Report:
    """Every inconsistency of the state in ``root`` (a read: takes no lock)."""
    report = Report()
    try:
        with Store(root) as store:
            integrity = store.db.execute("PRAGMA integrity_check").fetchall()
            if integrity != [("ok",)]:
                report.problems += [f"database: {row[0]}" for row in integrity]
                return report
            snap = store.read()
    except StateError as err:
        report.problems.append(str(err))
        return report
    report.progs, report.maps, report.pins = len(snap.progs), len(snap.maps), len(snap.pins)
    report.problems += _consistency(root, snap)
    live = {p: r for p, r in snap.pins.items() if state.pin_file(root, p).is_file()}
    progs, maps = state._reachable(snap.maps, snap.progs, [*live.values(), *holders.live(root)],
                                   [p for p, _ in snap.attachments.values()])  # fmt: skip
    report.unreachable = [f"{kind} {ident}" for kind, records, reached in
                          (("prog", snap.progs, progs), ("map", snap.maps, maps))
                          for ident in sorted(records.keys() - reached)]  # fmt: skip
    try:  # every record must restore (a program must load again)
        with state.session(root, write=False, salvage=True) as kernel:
            report.problems += [f"{what} (it does not restore)" for what in kernel.dropped]
    except StateError as err:
        report.problems.append(str(err))
    return report


def _consistency(root: Path, snap: Snapshot) -> list[str]:
    problems = []
    tables = {"prog": snap.progs, "map": snap.maps}
    next_ids = {"prog": int(snap.meta.get("next_prog_id", 1)),
                "map": int(snap.meta.get("next_map_id", 1))}  # fmt: skip
    for kind, records in tables.items():
        for ident, record in records.items():
            if record.get("id") != ident:
                problems.append(f"{kind} {ident}: its record says id {record.get('id')}")
            if ident >= next_ids[kind]:
                problems.append(f"{kind} {ident}: at or beyond the next id {next_ids[kind]}")
    for path, (kind, ident) in sorted(snap.pins.items()):
        if ident not in tables.get(kind, {}):
            problems.append(f"pin {path}: names {kind} {ident}, which does not exist")
    for ident, record in snap.progs.items():
        missing = [m for m in record.get("map_ids", []) if m not in snap.maps]
        if missing:
            problems.append(f"prog {ident}: uses missing maps {missing}")
    for ident, record in snap.maps.items():
        for index, (kind, target) in record.get("slots", {}).items():
            if target not in tables.get("prog" if kind in ("prog", "Program") else "map", {}):
                problems.append(f"map {ident}: slot {index} names missing {kind} {target}")
    for ident, record in snap.maps.items():
        for block in range(record.get("blocks", 0)):
            if not mapfiles.block_path(root, ident, block).is_file():
                problems.append(f"map {ident}: its memory file {block} is missing")
    for ident in snap.map_data.keys() - snap.maps.keys():
        problems.append(f"map data {ident}: no such map")
    for ifindex, (prog, _) in snap.attachments.items():
        if prog not in snap.progs:
            problems.append(f"attachment on ifindex {ifindex}: missing prog {prog}")
    base = root / "bpffs"
    for file in sorted(base.rglob("*")):
        path = f"{state.BPFFS}/{file.relative_to(base)}"
        if file.is_file() and path not in snap.pins:
            problems.append(f"pin file {path}: no pin in the database (left by a killed command)")
    return problems


def repair(root: Path) -> list[str]:
    """Make the state consistent, keeping what is intact; returns what was done."""
    done = []
    db_path = root / DB_NAME
    rows, lost = _salvage(db_path)
    if lost:
        aside = db_path.with_name(DB_NAME + ".damaged")
        with state._open_lock(root) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{db_path}{suffix}", f"{aside}{suffix}")
            with Store(root) as store:  # a fresh one, holding what could be read
                _insert(store, rows)
        done.append(f"moved the damaged database to {aside}")
        done += lost
    with state.session(root, salvage=True) as kernel:  # the commit drops what is not intact
        done += [f"dropped {what}" for what in kernel.dropped]
        names = sorted(f"{k} {o.id}" for k, t in (("prog", kernel.progs), ("map", kernel.maps))
                       for o in t.values())  # fmt: skip
    done.append(f"kept {len(names)} objects" + (f": {', '.join(names)}" if names else ""))
    return done


def _salvage(path: Path) -> tuple[dict[str, list], list[str]]:
    """Every readable row of every table, and what was lost (empty: the database is sound)."""
    rows: dict[str, list] = {}
    if not path.exists():
        return rows, []
    lost = []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        if db.execute("PRAGMA integrity_check").fetchall() != [("ok",)]:
            lost.append("the database failed SQLite's integrity check")
    except sqlite3.DatabaseError as err:
        return rows, [f"unreadable database: {err}"]
    try:
        for table in TABLES:
            try:
                got = db.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
            except sqlite3.DatabaseError as err:
                lost.append(f"table {table}: {err}")
                continue
            good = [row for row in got if _decodes(table, row)]
            if len(good) != len(got):
                lost.append(f"table {table}: dropped {len(got) - len(good)} malformed rows")
            rows[table] = good
    finally:
        db.close()
    return rows, lost


def _decodes(table: str, row: tuple) -> bool:
    """Whether a row reads back (a record is a JSON object of its own id)."""
    try:
        if table in ("maps", "progs"):
            record = json.loads(row[1])
            return isinstance(record, dict) and record.get("id") == row[0]
        if table == "meta":
            json.loads(row[1])
        return True
    except (ValueError, TypeError):
        return False


def _insert(store: Store, rows: dict[str, list]) -> None:
    store.db.execute("BEGIN IMMEDIATE")
    for table, got in rows.items():
        for row in got:
            marks = ", ".join("?" * len(row))
            store.db.execute(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", row)  # noqa: S608
    store.db.execute("COMMIT")


__all__ = ["Report", "check", "repair"]
