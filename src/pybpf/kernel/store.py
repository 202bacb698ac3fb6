"""The state store's metadata: one SQLite database in the state directory.

``state.db`` (the standard library's ``sqlite3``, write-ahead log) holds what
the kernel's object tables hold: maps (attributes, the objects their slots
name, and the contents of maps whose memory is not a mapped file), programs
(their image, listing notes, whether the verifier passed them, the engine),
pins, XDP attachments, BTF blobs, the next ids and the unread trace pipe.

A command reads everything in one read transaction (a consistent snapshot
that never waits for a writer: WAL readers do not block) and writes its
changes in one ``BEGIN IMMEDIATE`` transaction, so a pin and the object it
names are created or removed together, and a command killed at any point
leaves the database as it was before or after it.  Ids come from counters
committed with the objects: an id a committed row names is never handed out
again.

The schema is versioned with ``PRAGMA user_version``; a database made by a
newer pybpf, or one SQLite finds damaged, is a :class:`~pybpf.errors.StateError`
naming the command that recovers (``pybpf state repair``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pybpf.errors import StateError

DB_NAME = "state.db"
SCHEMA_VERSION = 1
REPAIR = "pybpf state repair"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS maps (id INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS map_data (id INTEGER PRIMARY KEY, digest TEXT NOT NULL,
                                     data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS progs (id INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pins (path TEXT PRIMARY KEY,
                                 kind TEXT NOT NULL CHECK (kind IN ('prog', 'map')),
                                 id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS attachments (ifindex INTEGER PRIMARY KEY, prog_id INTEGER NOT NULL,
                                        mode TEXT);
CREATE TABLE IF NOT EXISTS btf (id INTEGER PRIMARY KEY, blob TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trace (seq INTEGER PRIMARY KEY, line TEXT NOT NULL);
"""
GENERATION = "generation"  # the meta row counting commits
TABLES = ("meta", "maps", "map_data", "progs", "pins", "attachments", "btf", "trace")


@dataclass
class Snapshot:
    """Everything the database holds, as plain data (what one command reads or writes)."""

    meta: dict[str, object] = field(default_factory=dict)
    maps: dict[int, dict] = field(default_factory=dict)
    map_data: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # id -> digest, data
    progs: dict[int, dict] = field(default_factory=dict)
    pins: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (kind, id)
    attachments: dict[int, tuple[int, str | None]] = field(default_factory=dict)
    btf: dict[int, str] = field(default_factory=dict)
    trace: list[str] = field(default_factory=list)
    generation: int = field(default=0, compare=False)  # commits so far (see Store.generation)


def damaged(path: Path, why: object) -> StateError:
    """The error for a database that cannot be read as pybpf's state."""
    return StateError(f"the state database {path} is damaged ({why}); run '{REPAIR}' to keep "
                      f"what is intact", errno=errno.EIO)  # fmt: skip


class Store:
    """An open ``state.db``; use as a context manager (closes the connection)."""

    def __init__(self, root: Path) -> None:
        self.path = root / DB_NAME
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as err:
            raise StateError(f"cannot open the state database {self.path}: {err}; check the "
                             f"state directory's permissions", errno=errno.EIO) from None
        try:
            self._prepare()
        except BaseException:
            self.db.close()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                raise StateError(f"the state database {self.path} is busy: {err}",
                                 errno=errno.EBUSY) from None  # fmt: skip
            raise damaged(self.path, err) from None
        except sqlite3.DatabaseError as err:
            raise damaged(self.path, err) from None

    def _prepare(self) -> None:
        with self._errors():
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(f"the state database {self.path} has schema {version}, made "
                                 f"by a newer pybpf (this one knows {SCHEMA_VERSION}); use that "
                                 f"pybpf, or set PYBPF_STATE_DIR to another directory",
                                 errno=errno.EPROTO)  # fmt: skip
            if version < SCHEMA_VERSION:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise

    # --- reading ---------------------------------------------------------------------
    def read(self) -> Snapshot:
        """Every row, in one read transaction (StateError when a row is malformed)."""
        with self._errors():
            self.db.execute("BEGIN")
            try:
                rows = {t: self.db.execute(f"SELECT * FROM {t}").fetchall()  # noqa: S608
                        for t in TABLES}  # (names from TABLES)
            finally:
                self.db.execute("COMMIT")
        try:
            meta = {k: json.loads(v) for k, v in rows["meta"]}
            generation = int(meta.pop(GENERATION, 0))
            return Snapshot(
                meta=meta, generation=generation,
                maps={int(i): _record(r) for i, r in rows["maps"]},
                map_data={int(i): (str(d), bytes(b)) for i, d, b in rows["map_data"]},
                progs={int(i): _record(r) for i, r in rows["progs"]},
                pins={str(p): (str(k), int(i)) for p, k, i in rows["pins"]},
                attachments={int(i): (int(p), m) for i, p, m in rows["attachments"]},
                btf={int(i): str(b) for i, b in rows["btf"]},
                trace=[str(line) for _, line in sorted(rows["trace"])],
            )  # fmt: skip
        except (ValueError, TypeError) as err:
            raise damaged(self.path, f"{type(err).__name__}: {err}") from None

    def generation(self) -> int:
        """How many commits the database has seen: equal to a snapshot's ``generation``
        exactly when nobody committed since that snapshot was read."""
        with self._errors():
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (GENERATION,))
            found = row.fetchone()
        try:
            return int(json.loads(found[0])) if found else 0
        except (ValueError, TypeError) as err:
            raise damaged(self.path, f"generation: {err}") from None

    def take_trace(self) -> list[str]:
        """Read and remove the unread trace lines, in one transaction (a pipe read)."""
        with self._errors():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                lines = [str(r[0]) for r in
                         self.db.execute("SELECT line FROM trace ORDER BY seq").fetchall()]
                self.db.execute("DELETE FROM trace")
                self.db.execute("INSERT INTO meta VALUES (?, '1') ON CONFLICT (key) DO UPDATE "
                                "SET value = CAST(value AS INTEGER) + 1", (GENERATION,))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return lines

    # --- writing ---------------------------------------------------------------------
    def write(self, old: Snapshot, new: Snapshot) -> None:
        """Turn ``old`` (what was read) into ``new`` in one transaction."""
        with self._errors():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self._write(old, new)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def _write(self, old: Snapshot, new: Snapshot) -> None:
        ex = self.db.execute
        for table, before, after in (("maps", old.maps, new.maps),
                                     ("progs", old.progs, new.progs)):  # fmt: skip
            for ident in before.keys() - after.keys():
                ex(f"DELETE FROM {table} WHERE id=?", (ident,))  # noqa: S608
            for ident, record in after.items():
                if before.get(ident) != record:
                    ex(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)",  # noqa: S608
                       (ident, json.dumps(record)))  # fmt: skip
        for ident in old.map_data.keys() - new.map_data.keys():
            ex("DELETE FROM map_data WHERE id=?", (ident,))
        for ident, (digest, data) in new.map_data.items():
            if old.map_data.get(ident, ("",))[0] != digest:
                ex("INSERT OR REPLACE INTO map_data VALUES (?, ?, ?)", (ident, digest, data))
        for path in old.pins.keys() - new.pins.keys():
            ex("DELETE FROM pins WHERE path=?", (path,))
        for path, (kind, ident) in new.pins.items():
            if old.pins.get(path) != (kind, ident):
                ex("INSERT OR REPLACE INTO pins VALUES (?, ?, ?)", (path, kind, ident))
        ex("INSERT INTO meta VALUES (?, '1') ON CONFLICT (key) DO UPDATE SET value = "
           "CAST(value AS INTEGER) + 1", (GENERATION,))  # every commit counts
        if old.meta != new.meta:
            ex("DELETE FROM meta WHERE key != ?", (GENERATION,))
            ex_many = self.db.executemany
            ex_many("INSERT INTO meta VALUES (?, ?)",
                    [(k, json.dumps(v)) for k, v in new.meta.items()])  # fmt: skip
        if old.attachments != new.attachments:
            ex("DELETE FROM attachments")
            self.db.executemany("INSERT INTO attachments VALUES (?, ?, ?)",
                                [(i, p, m) for i, (p, m) in new.attachments.items()])
        if old.btf != new.btf:
            ex("DELETE FROM btf")
            self.db.executemany("INSERT INTO btf VALUES (?, ?)", list(new.btf.items()))
        if old.trace != new.trace:
            ex("DELETE FROM trace")
            self.db.executemany("INSERT INTO trace VALUES (?, ?)", list(enumerate(new.trace)))


def _record(text: str) -> dict:
    record = json.loads(text)
    if not isinstance(record, dict):
        raise ValueError(f"a record is {type(record).__name__}, not an object")
    return record


__all__ = ["DB_NAME", "REPAIR", "SCHEMA_VERSION", "Snapshot", "Store", "damaged"]
