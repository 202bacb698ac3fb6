"""The real bpftool, as the tests that record what it prints ask it (not a test module)."""

from __future__ import annotations

import subprocess


def version() -> str:
    """``bpftool version`` in a line: which bpftool (and libbpf) printed a recording."""
    out = subprocess.run(["bpftool", "version"], check=True, text=True, capture_output=True,
                         timeout=60).stdout  # fmt: skip
    return ", ".join(out.splitlines())
