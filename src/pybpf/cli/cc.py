"""``pybpf cc``: compile eBPF C the way the seeds do (``clang -target bpf -g -O2``).

clang is not a Python package: when it is missing the command says how to
install it instead of failing obscurely.  The include path of the machine's
multiarch headers (``/usr/include/<arch>-linux-gnu``, where ``asm/types.h``
lives) is added as the seeds' Makefile adds it.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from pybpf.errors import PybpfError

INSTALL_HINT = (
    "clang is not installed: on Debian or Ubuntu run `apt-get install clang libbpf-dev` "
    "(libbpf-dev provides <bpf/bpf_helpers.h>), on Fedora `dnf install clang libbpf-devel`"
)


class CompileError(PybpfError):
    """clang is missing or refused the source; the message carries clang's diagnostics."""


def compile_c(source: str, output: str | None = None, *, extra: list[str] | None = None) -> Path:
    """Compile ``source`` to an eBPF object; returns its path (``X.bpf.o`` for ``X.bpf.c``)."""
    clang = shutil.which(os.environ.get("CLANG", "clang"))
    if clang is None:
        raise CompileError(INSTALL_HINT)
    src = Path(source)
    if not src.is_file():
        raise CompileError(f"{source}: no such file")
    out = Path(output) if output else src.with_suffix(".o")
    multiarch = f"/usr/include/{platform.machine()}-linux-gnu"
    cmd = [clang, "-target", "bpf", "-g", "-O2", "-c", str(src), "-o", str(out)]
    if Path(multiarch).is_dir():
        cmd[1:1] = ["-I", multiarch]
    proc = subprocess.run([*cmd, *(extra or [])], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise CompileError(f"clang failed ({proc.returncode}):\n{proc.stderr.strip()}")
    return out
