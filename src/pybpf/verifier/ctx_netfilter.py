"""The netfilter program type: ``struct bpf_nf_ctx`` (net/netfilter/nf_bpf_link.c).

Two pointers, read whole and never written (``nf_is_valid_access``):
``state``, a trusted BTF pointer to ``struct nf_hook_state``, and ``skb``,
one to ``struct sk_buff``.  pybpf's registers carry no BTF type, so what a
program does with them past the load (dereferences, kfunc arguments) is
refused by the memory and call checks rather than modelled.  The type must
be loaded for BPF_NETFILTER; R0 is [0, 1] (NF_DROP, NF_ACCEPT); helpers are
bpf_base_func_proto's alone.  The kernel's test run (``bpf_prog_test_run_nf``)
is not modelled.
"""

from __future__ import annotations

from pybpf.verifier.ctx_base import (
    UNMODELLED,
    CtxAccess,
    HelperSet,
    ProgTypeOps,
    field_at,
    layout,
    ptr,
    zero_one,
)
from pybpf.verifier.types import Base, Flag

NETFILTER = 32
BPF_NETFILTER = 45

BPF_NF_CTX = layout(ptr("state"), ptr("skb"))
BPF_NF_CTX_SIZE = 16
_BTF = {"state": "nf_hook_state", "skb": "sk_buff"}


def _netfilter(off: int, size: int, write: bool, attach: int, ldsx: bool):
    if write or off < 0 or off >= BPF_NF_CTX_SIZE or off % size or size != 8:
        return None
    name = field_at(BPF_NF_CTX, off)
    return CtxAccess(Base.PTR_TO_BTF_ID, Flag.PTR_TRUSTED, field=name, btf=_BTF[name])


TYPES = (
    ProgTypeOps(NETFILTER, "netfilter", _netfilter, BPF_NF_CTX_SIZE,
                HelperSet("base", drop="perf_event_output"),
                attach_types=frozenset({BPF_NETFILTER}), ret=zero_one, test_run=UNMODELLED,
                sweep_attach=(BPF_NETFILTER,)),
)
