"""bpf_skb_pull_data: make the first bytes of an sk_buff direct-accessible (tc programs).

pybpf's sk_buff keeps its whole packet linear, so there is nothing to pull:
as the kernel's ``skb_ensure_writable`` the call succeeds (0) when the
packet holds ``len`` bytes (0 meaning the linear part) and is ``-ENOMEM``
when it is shorter.  The helper changes packet data as far as the verifier
is concerned: every packet pointer the program held is invalid after it.
"""

from __future__ import annotations

import errno

from pybpf.errors import HelperError
from pybpf.runtime.helpers import Arg, Ret, define
from pybpf.runtime.helpers._common import M64, u32


@define("skb_pull_data", [Arg.PTR_TO_CTX, Arg.ANYTHING], Ret.INTEGER, changes_pkt_data=True)
def skb_pull_data(env, ctx, length, r3=0, r4=0, r5=0):
    """bpf_skb_pull_data(skb, len): 0, or -ENOMEM when the packet is shorter than ``len``."""
    skb = env.ctx
    if skb is None or not hasattr(skb, "len"):
        raise HelperError("skb helper called without an sk_buff context")
    length = u32(length)
    if length > skb.len:
        return -errno.ENOMEM & M64
    return 0
