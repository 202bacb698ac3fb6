"""Socket lookups and their release: bpf_sk_lookup_tcp/udp, bpf_skc_lookup_tcp, bpf_sk_release.

A program's test run happens in a network namespace pybpf does not populate:
no socket is open, listening or bound, so every lookup finds nothing and
returns NULL, whatever the tuple.  The kernel's ``__bpf_skc_lookup``
(net/core/filter.c) also answers NULL, before looking, for a tuple length
that is neither ``sizeof(tuple->ipv4)`` nor ``sizeof(tuple->ipv6)``, for
nonzero flags and for a netns id out of range; here every path ends there.
bpf_sk_release then only ever sees sockets the program could not have
obtained, and returns 0 as ``bpf_sk_release`` does.
"""

from __future__ import annotations

from pybpf.runtime.helpers import Arg, Ret, define
from pybpf.verifier import protos as P

# ctx, the tuple (read only) and its length, the netns id, the flags
_LOOKUP_ARGS = [Arg.PTR_TO_CTX, P.PTR_TO_RDONLY_MEM, Arg.CONST_SIZE_OR_ZERO, Arg.ANYTHING,
                Arg.ANYTHING]  # fmt: skip


@define("sk_lookup_tcp", _LOOKUP_ARGS, Ret.PTR_TO_SOCKET_OR_NULL, pkt_access=True, acquire=True)
def sk_lookup_tcp(env, r1, r2, r3, r4, r5):
    return 0  # no TCP socket exists in a test run


@define("sk_lookup_udp", _LOOKUP_ARGS, Ret.PTR_TO_SOCKET_OR_NULL, pkt_access=True, acquire=True)
def sk_lookup_udp(env, r1, r2, r3, r4, r5):
    return 0  # no UDP socket exists in a test run


@define("skc_lookup_tcp", _LOOKUP_ARGS, Ret.PTR_TO_SOCK_COMMON_OR_NULL, pkt_access=True,
        acquire=True)  # fmt: skip
def skc_lookup_tcp(env, r1, r2, r3, r4, r5):
    return 0  # nor a request or timewait one


@define("sk_release", [Arg.PTR_TO_BTF_ID_SOCK_COMMON | P.ArgFlag.OBJ_RELEASE], Ret.INTEGER)
def sk_release(env, r1, r2, r3, r4, r5):
    return 0
