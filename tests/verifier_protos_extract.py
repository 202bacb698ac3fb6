"""Extract the ``struct bpf_func_proto`` declarations of every helper from a kernel tree.

Usage: ``python tests/verifier_protos_extract.py LINUX_SRC > tests/golden/helper_protos.json``

Only the fields are read (gpl_only, pkt_access, might_sleep, allow_fastcall,
ret_type, argN_type, argN_size, argN_btf_id, ret_btf_id...), as text, for the
proto objects :data:`pybpf.verifier.helper_protos.KERNEL_PROTOS` stands for
(:func:`~pybpf.verifier.helper_protos.kernel_symbols`) and those of
:data:`~pybpf.verifier.helper_protos.VARIANT_PROTOS`;
``tests/test_verifier_protos.py`` compares every
:class:`pybpf.verifier.protos.HelperProto` with them.  A field's value runs
to the end of its line; the last one of a declaration may lack its comma.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

FILES = ("kernel/bpf/helpers.c", "kernel/bpf/ringbuf.c", "kernel/bpf/bpf_iter.c",
         "kernel/bpf/stackmap.c", "kernel/trace/bpf_trace.c", "net/core/filter.c",
         "kernel/bpf/core.c", "kernel/bpf/cgroup.c", "kernel/bpf/syscall.c", "kernel/bpf/btf.c",
         "kernel/bpf/task_iter.c", "kernel/bpf/bpf_lsm.c", "kernel/bpf/bpf_task_storage.c",
         "kernel/bpf/bpf_inode_storage.c", "kernel/bpf/bpf_cgrp_storage.c",
         "net/core/bpf_sk_storage.c", "net/core/sock_map.c", "net/ipv4/bpf_tcp_ca.c",
         "drivers/media/rc/bpf-lirc.c")  # fmt: skip

_BLOCK = re.compile(r"struct bpf_func_proto (\w+)\s*=\s*\{(.*?)\n\};", re.S)
_FIELD = re.compile(r"^\s*\.(\w+)\s*=\s*([^,\n]+?)\s*,?\s*(?:/\*.*)?$", re.M)


def protos(root: Path) -> dict[str, dict]:
    out = {}
    for rel in FILES:
        for name, body in _BLOCK.findall((root / rel).read_text()):
            fields = dict(_FIELD.findall(body))
            fields.pop("func", None)
            out[name] = {"file": rel, **{k: v.strip() for k, v in fields.items()}}
    return out


def main(root: Path) -> dict:
    from pybpf.verifier.helper_protos import KERNEL_PROTOS, VARIANT_PROTOS, kernel_symbols

    found = protos(root)
    wanted = {s for p in KERNEL_PROTOS.values() for s in kernel_symbols(p.name)}
    return {symbol: found[symbol] for symbol in sorted(wanted | set(VARIANT_PROTOS))}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    print(json.dumps(main(Path(sys.argv[1])), indent=1, sort_keys=True))
