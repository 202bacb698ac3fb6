"""Program tags, as ``bpftool prog show`` prints them.

The kernel hashes the program's instructions with the immediates of map
references (ld_imm64 with a map fd or map value source) zeroed, so the tag
does not depend on which fds or maps a load happened to get, and shows the
first 8 bytes of the digest in hex.  Kernels before 6.18 use SHA-1
(kernel/bpf/core.c, bpf_prog_calc_tag); 6.18 switched to SHA-256 ("bpf: Update the
bpf_prog_calc_tag to use SHA256").  pybpf models 6.18, so SHA-256 is the default
(hello: 490c48c1179970a8, as bpftool shows it on 6.18); the seed documents, written
on an older kernel, show the SHA-1 tag of hello, d35b94b4c0c10efb, which
``PYBPF_TAG_ALGO=sha1`` (or ``pybpf --tag-algo sha1``) selects.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Sequence
from dataclasses import replace

from pybpf.errors import KernelError
from pybpf.isa import LDDW, Instruction, Pseudo, encode

_MAP_SOURCES = (Pseudo.MAP_FD, Pseudo.MAP_VALUE, Pseudo.MAP_IDX, Pseudo.MAP_IDX_VALUE)
ALGORITHMS = ("sha1", "sha256")
DEFAULT_ALGORITHM = "sha256"  # Linux 6.18
ENV = "PYBPF_TAG_ALGO"


def default_algorithm() -> str:
    """``$PYBPF_TAG_ALGO`` when set, else SHA-256 (KernelError when it names no algorithm)."""
    algorithm = os.environ.get(ENV) or DEFAULT_ALGORITHM
    if algorithm not in ALGORITHMS:
        raise KernelError(f"{ENV} must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}",
                          errno=errno.EINVAL)
    return algorithm


def prog_tag(insns: Sequence[Instruction], algorithm: str = DEFAULT_ALGORITHM) -> str:
    """The 16-hex-digit tag of ``insns`` under ``algorithm`` ('sha1' or 'sha256')."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"tag algorithm must be one of {ALGORITHMS}, not {algorithm!r}")
    masked = [
        replace(insn, imm=0, imm2=0) if insn.code == LDDW and insn.src_reg in _MAP_SOURCES else insn
        for insn in insns
    ]
    return hashlib.new(algorithm, encode(masked)).hexdigest()[:16]
