"""Extract the ``struct bpf_func_proto`` declarations pybpf's helpers follow from a kernel tree.

Usage: ``python tests/verifier_protos_extract.py LINUX_SRC > tests/golden/helper_protos.json``

Only the fields are read (gpl_only, pkt_access, might_sleep, allow_fastcall,
ret_type, argN_type, argN_size), as text; ``tests/test_verifier_protos.py``
compares every :class:`pybpf.verifier.protos.HelperProto` with them.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

FILES = ("kernel/bpf/helpers.c", "kernel/bpf/ringbuf.c", "kernel/bpf/bpf_iter.c",
         "kernel/bpf/stackmap.c", "kernel/trace/bpf_trace.c", "net/core/filter.c")  # fmt: skip

# pybpf helper name -> the kernel proto objects it stands for (all must agree)
VARIANTS: dict[str, tuple[str, ...]] = {
    "bpf_probe_read": ("bpf_probe_read_compat_proto",),
    "bpf_probe_read_str": ("bpf_probe_read_compat_str_proto",),
    "bpf_redirect": ("bpf_redirect_proto", "bpf_xdp_redirect_proto"),
    "bpf_redirect_map": ("bpf_xdp_redirect_map_proto",),
    "bpf_perf_event_output": ("bpf_perf_event_output_proto", "bpf_skb_event_output_proto",
                              "bpf_xdp_event_output_proto", "bpf_perf_event_output_proto_tp",
                              "bpf_perf_event_output_proto_raw_tp", "bpf_event_output_data_proto"),
    "bpf_get_func_ip": ("bpf_get_func_ip_proto_kprobe",),
    "bpf_get_attach_cookie": ("bpf_get_attach_cookie_proto_trace",
                              "bpf_get_attach_cookie_proto_pe"),
}  # fmt: skip

_BLOCK = re.compile(r"struct bpf_func_proto (\w+)\s*=\s*\{(.*?)\n\};", re.S)
_FIELD = re.compile(r"\.(\w+)\s*=\s*([^,\n]+),")


def protos(root: Path) -> dict[str, dict]:
    out = {}
    for rel in FILES:
        for name, body in _BLOCK.findall((root / rel).read_text()):
            fields = dict(_FIELD.findall(body))
            fields.pop("func", None)
            out[name] = {"file": rel, **{k: v.strip() for k, v in fields.items()}}
    return out


def main(root: Path, names: list[str]) -> dict:
    found = protos(root)
    table = {}
    for name in names:
        for symbol in VARIANTS.get(name, (f"{name}_proto",)):
            table[symbol] = found[symbol]
    return table


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from pybpf.runtime.helpers import HELPERS

    names = sorted(h.name for h in HELPERS.values())
    print(json.dumps(main(Path(sys.argv[1]), names), indent=1, sort_keys=True))
