"""What every bpftool-like command shares: options, argument parsing, output, errors.

Errors are bpftool's: ``Error: <message>`` on standard error (or
``{"error": "<message>"}`` on standard output with ``-j``) and exit status
255, as bpftool's ``return -1`` from main.  :class:`CommandError` carries
the message; any :class:`~pybpf.errors.PybpfError` is reported the same way.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from pybpf.errors import PybpfError

EXIT_ERROR = 255  # bpftool returns -1 from main


class CommandError(PybpfError):
    """A bad argument or a refused command: bpftool's ``Error: ...``.

    ``status`` is the exit status: 255 for bpftool's ``return -1``, ``256 - errno``
    where bpftool returns a failed command's ``-errno``.
    """

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        self.status = status
        super().__init__(message)


@dataclass
class Ctx:
    """A command's context: options, output streams and the kernel of the session."""

    json: bool = False
    pretty: bool = False
    debug: bool = False
    log_level: int | None = None  # --log-level N: the verifier log's level (pybpf's option)
    bpffs: bool = False  # -f: show where objects are pinned
    engine: str | None = None  # --engine interp|jit: what loads and test runs use (pybpf's)
    tag_algo: str | None = None  # --tag-algo sha1|sha256: how tags are computed (pybpf's)
    kernel: Any = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def emit_json(self, value: object) -> None:
        """Print ``value`` as bpftool's json_writer does: compact, or its ``-p`` layout."""
        if self.pretty:
            from pybpf.btf import render_plain  # BTF-typed values only

            self.out.write(render_plain(value) + "\n")
        else:
            self.out.write(json.dumps(value, separators=(",", ":")) + "\n")


Command = Callable[[Ctx, list[str]], int]


def match(word: str, choices: Sequence[str], what: str) -> str:
    """bpftool's keyword matching: an exact name or a unique prefix."""
    if word in choices:
        return word
    hits = [c for c in choices if c.startswith(word)]
    if len(hits) == 1:
        return hits[0]
    raise CommandError(f"unknown {what} '{word}'" if not hits else
                       f"ambiguous {what} '{word}': {', '.join(hits)}")  # fmt: skip


def take(args: list[str], what: str) -> str:
    """Pop the next argument, or ``Error: missing <what>``."""
    if not args:
        raise CommandError(f"missing {what}")
    return args.pop(0)


def number(text: str, what: str) -> int:
    """An integer argument (decimal or 0x hex), or ``Error: can't parse <what>``."""
    try:
        return int(text, 0)
    except ValueError:
        raise CommandError(f"can't parse {what} '{text}'") from None


def no_more(args: list[str]) -> None:
    """bpftool refuses trailing words."""
    if args:
        raise CommandError(f"extra arguments: {' '.join(args)}")
