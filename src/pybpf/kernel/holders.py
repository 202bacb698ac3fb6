"""Processes holding objects: the fds of the kernel model (``holders/`` in the state directory).

In the kernel an object lives while a pin, an attachment or an open fd refers to
it; a process that dies closes its fds.  Here a process holding an object (a
running ``prog run`` or ``net feed``, a Python session that called
``kernel.hold(obj)``) creates the file ``holders/<pid>-<nonce>-<kind>-<id>`` and
keeps a shared ``flock`` on it while it holds.  Whoever computes what is alive
tests each file with a non-blocking exclusive lock: refused means the holder
lives; granted means it is gone (exited or killed: the kernel dropped its lock),
and the file is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from pathlib import Path

DIR = "holders"


class Holds:
    """The objects this process holds in one session (released by :meth:`release`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[tuple[str, int], tuple[Path, int]] = {}
        self._nonce = f"{os.getpid()}-{secrets.token_hex(4)}"

    def hold(self, kind: str, ident: int) -> None:
        """Keep (kind, ident) alive until :meth:`release` or this process ends."""
        if (kind, ident) in self._files:
            return
        name = f"{self._nonce}-{kind}-{ident}"
        path, hidden = self.root / DIR / name, self.root / DIR / f".{name}"
        fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
        os.rename(hidden, path)  # visible only once locked: never mistaken for a dead one
        self._files[(kind, ident)] = (path, fd)

    def held(self) -> set[tuple[str, int]]:
        return set(self._files)

    def release(self) -> None:
        """Stop holding everything (the file first, then the lock)."""
        for path, fd in self._files.values():
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(fd)
        self._files.clear()


def live(root: Path, *, remove_dead: bool = False) -> set[tuple[str, int]]:
    """What live holders hold; ``remove_dead`` removes the files of holders that are gone."""
    out: set[tuple[str, int]] = set()
    for file in (root / DIR).iterdir():
        parts = file.name.rsplit("-", 2)
        named = len(parts) == 3 and parts[1] in ("prog", "map") and parts[2].isdigit()
        if file.name.startswith(".") or not named:
            continue
        try:
            fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # released meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            out.add((parts[1], int(parts[2])))  # its holder lives
        else:
            if remove_dead:
                with contextlib.suppress(OSError):
                    file.unlink()
        finally:
            os.close(fd)
    return out


__all__ = ["DIR", "Holds", "live"]
