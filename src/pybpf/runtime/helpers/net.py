"""Network helpers: XDP buffer adjustments, redirects, skb bytes and checksums.

Each follows its net/core/filter.c implementation in Linux 6.18, return
codes included.  The run's ``env.ctx`` is the :class:`~pybpf.runtime.context.XdpBuff`
or :class:`~pybpf.runtime.context.SkBuff` the test run built; helpers that
move packet bounds call its ``refresh()`` so the program's packet Region
(and the interpreter's fast path) follow.  Redirect helpers record their
target in ``ctx.redirect`` (the kernel's ``bpf_redirect_info``): a dict with
``ifindex`` / ``flags`` or ``map`` / ``key`` / ``target``.

Checksums are computed as x86-64 computes them (``csum_partial`` sums
little-endian 64-bit words with end-around carry, then folds to 32 bits), so
results match the kernel bit for bit, including 0 versus 0xffff.  Since
Linux 6.12 ``bpf_csum_diff`` returns the sum folded to 16 bits
(``csum_from32to16``), not the 32-bit partial sum.  An skb in a test run is
not CHECKSUM_COMPLETE, so BPF_F_RECOMPUTE_CSUM and the skb->csum updates of
the l4 helper have nothing to update.
"""

from __future__ import annotations

import errno

from pybpf.errors import HelperError
from pybpf.runtime.helpers import Arg, ArgFlag, Ret, define
from pybpf.verifier import protos as P

ENOTSUPP = 524
ETH_HLEN = 14
XDP_FRAME_SIZE = 40
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7
BPF_F_INGRESS = 1
BPF_F_BROADCAST, BPF_F_EXCLUDE_INGRESS = 1 << 3, 1 << 4
BPF_F_RECOMPUTE_CSUM, BPF_F_INVALIDATE_HASH = 1 << 0, 1 << 1
BPF_F_HDR_FIELD_MASK = 0xF
BPF_F_PSEUDO_HDR, BPF_F_MARK_MANGLED_0, BPF_F_MARK_ENFORCE, BPF_F_IPV6 = 16, 32, 64, 128
CSUM_MANGLED_0 = 0xFFFF
INT_MAX = 0x7FFFFFFF
M32, M64 = 0xFFFFFFFF, (1 << 64) - 1
# csum_diff reads either buffer, or none: ARG_PTR_TO_MEM | PTR_MAYBE_NULL | MEM_RDONLY
_RDONLY_OR_NULL = P.PTR_TO_RDONLY_MEM | ArgFlag.MAYBE_NULL
_DEVMAPS = (14, 25)  # BPF_MAP_TYPE_DEVMAP, DEVMAP_HASH


def _s32(value: int) -> int:
    value &= M32
    return value - (1 << 32) if value & 0x80000000 else value


def _ret(value: int) -> int:
    return value & M64


# --- checksums (x86-64 arithmetic) ----------------------------------------------------------------
def csum_partial(data: bytes, seed: int = 0) -> int:
    """x86-64 ``csum_partial``: the 32-bit partial sum of ``data`` plus ``seed``."""
    total = seed & M32
    padded = data + bytes(-len(data) % 8)
    for i in range(0, len(padded), 8):
        total += int.from_bytes(padded[i : i + 8], "little")
    t = 0 if total == 0 else (total - 1) % M64 + 1  # end-around-carry 64-bit sum
    return (((t + ((t >> 32) | (t << 32))) & M64) >> 32) & M32  # csum_finalize_sum


def csum_add(a: int, b: int) -> int:
    """32-bit one's complement addition (``csum_add``)."""
    res = (a + b) & M32
    return (res + (res < (b & M32))) & M32


def csum_sub(a: int, b: int) -> int:
    """``csum_sub``: a + ~b."""
    return csum_add(a, ~b & M32)


def csum_fold(csum: int) -> int:
    """``csum_fold``: the complemented 16-bit checksum of a 32-bit sum."""
    s = csum & M32
    s = (s + (((s >> 16) | (s << 16)) & M32)) & M32
    return ~(s >> 16) & 0xFFFF


def _csum16_add(csum: int, addend: int) -> int:
    res = (csum + addend) & 0xFFFF
    return (res + (res < (addend & 0xFFFF))) & 0xFFFF


@define("csum_diff", [_RDONLY_OR_NULL, Arg.CONST_SIZE_OR_ZERO, _RDONLY_OR_NULL,
                      Arg.CONST_SIZE_OR_ZERO, Arg.ANYTHING], Ret.INTEGER,
        pkt_access=True)  # fmt: skip
def csum_diff(env, from_ptr, from_size, to_ptr, to_size, seed):
    """bpf_csum_diff: the folded 16-bit sum of ``to`` minus ``from`` plus ``seed``."""
    from_size, to_size, ret = from_size & M32, to_size & M32, seed & M32
    src = env.memory.read(from_ptr, from_size) if from_size else b""
    dst = env.memory.read(to_ptr, to_size) if to_size else b""
    if from_size and to_size:
        ret = csum_sub(csum_partial(dst, ret), csum_partial(src, 0))
    elif to_size:
        ret = csum_partial(dst, ret)
    elif from_size:
        ret = ~csum_partial(src, ~ret & M32) & M32
    ret = (ret + (((ret >> 16) | (ret << 16)) & M32)) & M32  # csum_from32to16
    return ret >> 16


# --- XDP ------------------------------------------------------------------------------------------
def _xdp(env):
    xdp = env.ctx
    if xdp is None or not hasattr(xdp, "data_meta") or not hasattr(xdp, "frame_sz"):
        raise HelperError("XDP helper called without an xdp_buff context")
    return xdp


@define("xdp_adjust_head", [Arg.PTR_TO_CTX, Arg.ANYTHING], Ret.INTEGER, changes_pkt_data=True)
def xdp_adjust_head(env, ctx, offset, r3=0, r4=0, r5=0):
    """bpf_xdp_adjust_head: move data by ``offset`` (meta data moves along)."""
    xdp, offset = _xdp(env), _s32(offset)
    metalen = xdp.metalen
    data = xdp.data + offset
    if data < XDP_FRAME_SIZE + metalen or data > xdp.data_end - ETH_HLEN:
        return _ret(-errno.EINVAL)
    if metalen:
        xdp.frame[xdp.data_meta + offset : xdp.data_meta + offset + metalen] = \
            xdp.frame[xdp.data_meta : xdp.data_meta + metalen]  # fmt: skip
    xdp.data_meta += offset
    xdp.data = data
    xdp.refresh()
    return 0


@define("xdp_adjust_tail", [Arg.PTR_TO_CTX, Arg.ANYTHING], Ret.INTEGER, changes_pkt_data=True)
def xdp_adjust_tail(env, ctx, offset, r3=0, r4=0, r5=0):
    """bpf_xdp_adjust_tail: move data_end (or the last fragment's end) by ``offset``."""
    xdp, offset = _xdp(env), _s32(offset)
    if xdp.frags:
        return _frags_adjust_tail(xdp, offset)
    data_end = xdp.data_end + offset
    if data_end > xdp.hard_end or data_end < xdp.data + ETH_HLEN:
        return _ret(-errno.EINVAL)
    if offset > 0:
        xdp.frame[xdp.data_end : data_end] = bytes(offset)
    xdp.data_end = data_end
    xdp.refresh()
    return 0


def _frags_adjust_tail(xdp, offset: int) -> int:
    size = len(xdp.frags)
    if offset < 0:  # bpf_xdp_frags_shrink_tail
        shrink = -offset
        if shrink > (xdp.data_end - xdp.data) + size - ETH_HLEN:
            return _ret(-errno.EINVAL)
        cut = min(shrink, size)
        del xdp.frags[size - cut :]
        if not xdp.frags:
            xdp.data_end -= shrink - cut
            xdp.refresh()
        return 0
    last = size % xdp.frame_sz or xdp.frame_sz  # bpf_xdp_frags_increase_tail
    if offset > xdp.frame_sz - last:
        return _ret(-errno.EINVAL)
    xdp.frags += bytes(offset)
    return 0


@define("xdp_adjust_meta", [Arg.PTR_TO_CTX, Arg.ANYTHING], Ret.INTEGER, changes_pkt_data=True)
def xdp_adjust_meta(env, ctx, offset, r3=0, r4=0, r5=0):
    """bpf_xdp_adjust_meta: move data_meta by ``offset``."""
    xdp, offset = _xdp(env), _s32(offset)
    meta = xdp.data_meta + offset
    if xdp.data_meta > xdp.data:
        return _ret(-ENOTSUPP)
    if meta < XDP_FRAME_SIZE or meta > xdp.data:
        return _ret(-errno.EINVAL)
    metalen = xdp.data - meta
    if metalen % 4 or metalen > 255:
        return _ret(-errno.EACCES)
    xdp.data_meta = meta
    xdp.refresh()
    return 0


def _xdp_pointer(xdp, offset: int, length: int) -> int | None:
    """bpf_xdp_pointer's checks: -errno, or None when [offset, offset+len) is valid."""
    if offset > 0xFFFF or length > 0xFFFF:
        return -errno.EFAULT
    if offset + length > xdp.data_end - xdp.data + len(xdp.frags):
        return -errno.EINVAL
    return None


@define("xdp_load_bytes", [Arg.PTR_TO_CTX, Arg.ANYTHING, P.PTR_TO_UNINIT_MEM, Arg.CONST_SIZE],
        Ret.INTEGER)  # fmt: skip
def xdp_load_bytes(env, ctx, offset, buf, length, r5=0):
    """bpf_xdp_load_bytes: copy ``length`` bytes at data+``offset`` (fragments included)."""
    xdp, offset, length = _xdp(env), offset & M32, length & M32
    err = _xdp_pointer(xdp, offset, length)
    if err is not None:
        return _ret(err)
    whole = bytes(xdp.frame[xdp.data : xdp.data_end]) + bytes(xdp.frags)
    env.memory.write(buf, whole[offset : offset + length])
    return 0


@define("xdp_store_bytes", [Arg.PTR_TO_CTX, Arg.ANYTHING, P.PTR_TO_RDONLY_MEM, Arg.CONST_SIZE],
        Ret.INTEGER)  # fmt: skip
def xdp_store_bytes(env, ctx, offset, buf, length, r5=0):
    """bpf_xdp_store_bytes: copy ``length`` bytes to data+``offset`` (fragments included)."""
    xdp, offset, length = _xdp(env), offset & M32, length & M32
    err = _xdp_pointer(xdp, offset, length)
    if err is not None:
        return _ret(err)
    data = env.memory.read(buf, length)
    linear = xdp.data_end - xdp.data
    for i, byte in enumerate(data):
        at = offset + i
        if at < linear:
            xdp.frame[xdp.data + at] = byte
        else:
            xdp.frags[at - linear] = byte
    return 0


@define("xdp_get_buff_len", [Arg.PTR_TO_CTX], Ret.INTEGER)
def xdp_get_buff_len(env, ctx, r2=0, r3=0, r4=0, r5=0):
    """bpf_xdp_get_buff_len: linear length plus fragments."""
    xdp = _xdp(env)
    return xdp.data_end - xdp.data + len(xdp.frags)


# --- redirects ------------------------------------------------------------------------------------
@define("redirect", [Arg.ANYTHING, Arg.ANYTHING], Ret.INTEGER)
def redirect(env, ifindex, flags, r3=0, r4=0, r5=0):
    """bpf_redirect: XDP's (any flag aborts) or tc's (only BPF_F_INGRESS; else TC_ACT_SHOT)."""
    ctx, ifindex = env.ctx, ifindex & M32
    if hasattr(ctx, "frame_sz"):  # bpf_xdp_redirect
        if flags:
            return XDP_ABORTED
        ctx.redirect = {"ifindex": ifindex, "flags": 0}
        return XDP_REDIRECT
    if flags & ~BPF_F_INGRESS:
        return TC_ACT_SHOT
    if ctx is not None:
        ctx.redirect = {"ifindex": ifindex, "flags": flags}
    return TC_ACT_REDIRECT


@define("redirect_map", [Arg.CONST_MAP_PTR, Arg.ANYTHING, Arg.ANYTHING], Ret.INTEGER)
def redirect_map(env, map_ptr, key, flags, r4=0, r5=0):
    """bpf_redirect_map: ``m.target(key)``; the low two flag bits are the miss action."""
    m = env.kernel.map_from_pointer(map_ptr)
    if m is None or not hasattr(m, "target"):
        raise HelperError("bpf_redirect_map needs a devmap, cpumap or xskmap")
    action_mask = XDP_ABORTED | XDP_DROP | XDP_PASS | XDP_TX
    flag_mask = BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS if m.map_type in _DEVMAPS else 0
    if flags & ~(action_mask | flag_mask):
        return XDP_ABORTED
    target = m.target(key & M32)
    ctx = env.ctx
    if target is None and not flags & BPF_F_BROADCAST:
        if ctx is not None:
            ctx.redirect = None
        return flags & action_mask
    if ctx is not None:
        ctx.redirect = {"map": m, "key": key & M32, "target": target,
                        "flags": flags if flags & BPF_F_BROADCAST else 0}  # fmt: skip
    return XDP_REDIRECT


# --- skb bytes and checksums ----------------------------------------------------------------
def _skb(env):
    skb = env.ctx
    if skb is None or not hasattr(skb, "cb"):
        raise HelperError("skb helper called without an sk_buff context")
    return skb


@define("skb_load_bytes", [Arg.PTR_TO_CTX, Arg.ANYTHING, P.PTR_TO_UNINIT_MEM, Arg.CONST_SIZE],
        Ret.INTEGER)  # fmt: skip
def skb_load_bytes(env, ctx, offset, to, length, r5=0):
    """bpf_skb_load_bytes: bytes at skb->data + offset; zeroes ``to`` and -EFAULT if short."""
    skb, offset, length = _skb(env), offset & M32, length & M32
    if offset > INT_MAX or offset + length > skb.len:
        env.memory.write(to, bytes(length))
        return _ret(-errno.EFAULT)
    start = skb.data + offset
    env.memory.write(to, bytes(skb.frame[start : start + length]))
    return 0


@define("skb_store_bytes", [Arg.PTR_TO_CTX, Arg.ANYTHING, P.PTR_TO_RDONLY_MEM, Arg.CONST_SIZE,
                            Arg.ANYTHING], Ret.INTEGER, changes_pkt_data=True)  # fmt: skip
def skb_store_bytes(env, ctx, offset, src, length, flags):
    """bpf_skb_store_bytes: write at skb->data + offset (RECOMPUTE_CSUM: no skb->csum to fix)."""
    skb, offset, length = _skb(env), offset & M32, length & M32
    if flags & ~(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH):
        return _ret(-errno.EINVAL)
    if offset > INT_MAX or offset + length > skb.len:
        return _ret(-errno.EFAULT)
    data = env.memory.read(src, length)
    skb.frame[skb.data + offset : skb.data + offset + length] = data
    if flags & BPF_F_INVALIDATE_HASH:
        skb.hash = 0
    return 0


def _csum_field(skb, offset: int) -> int | None:
    """The checksum field's frame offset, or None (-EFAULT) when it is out of the packet."""
    if offset > 0xFFFF or offset & 1 or offset + 2 > skb.len:
        return None
    return skb.data + offset


def _get16(skb, at: int) -> int:
    return int.from_bytes(skb.frame[at : at + 2], "little")


def _put16(skb, at: int, value: int) -> None:
    skb.frame[at : at + 2] = (value & 0xFFFF).to_bytes(2, "little")


def _replace(skb, at: int, size: int, old: int, new: int) -> None:
    """csum_replace_by_diff / csum_replace2 / csum_replace4 on the field at ``at``."""
    field = _get16(skb, at)
    if size == 0:
        _put16(skb, at, csum_fold(csum_add(new & M32, ~field & M32)))
    elif size == 2:
        _put16(skb, at, ~_csum16_add(_csum16_add(~field & 0xFFFF, ~old & 0xFFFF), new & 0xFFFF))
    else:
        tmp = csum_sub(~field & M32, old & M32)  # csum_unfold widens the u16
        _put16(skb, at, csum_fold(csum_add(tmp, new & M32)))


@define("l3_csum_replace", [Arg.PTR_TO_CTX, Arg.ANYTHING, Arg.ANYTHING, Arg.ANYTHING,
                            Arg.ANYTHING], Ret.INTEGER, changes_pkt_data=True)  # fmt: skip
def l3_csum_replace(env, ctx, offset, old, new, flags):
    """bpf_l3_csum_replace: size in the low flag bits (0: ``new`` is a csum_diff)."""
    skb, offset = _skb(env), offset & M32
    if flags & ~BPF_F_HDR_FIELD_MASK:
        return _ret(-errno.EINVAL)
    at = _csum_field(skb, offset)
    if at is None:
        return _ret(-errno.EFAULT)
    size = flags & BPF_F_HDR_FIELD_MASK
    if size not in (0, 2, 4) or (size == 0 and old):
        return _ret(-errno.EINVAL)
    _replace(skb, at, size, old & (0xFFFF if size == 2 else M32),
             new & (0xFFFF if size == 2 else M32))  # fmt: skip
    return 0


@define("l4_csum_replace", [Arg.PTR_TO_CTX, Arg.ANYTHING, Arg.ANYTHING, Arg.ANYTHING,
                            Arg.ANYTHING], Ret.INTEGER, changes_pkt_data=True)  # fmt: skip
def l4_csum_replace(env, ctx, offset, old, new, flags):
    """bpf_l4_csum_replace: as l3, plus PSEUDO_HDR, MARK_MANGLED_0 / MARK_ENFORCE, IPV6."""
    skb, offset = _skb(env), offset & M32
    allowed = (BPF_F_MARK_MANGLED_0 | BPF_F_MARK_ENFORCE | BPF_F_PSEUDO_HDR
               | BPF_F_HDR_FIELD_MASK | BPF_F_IPV6)  # fmt: skip
    if flags & ~allowed:
        return _ret(-errno.EINVAL)
    at = _csum_field(skb, offset)
    if at is None:
        return _ret(-errno.EFAULT)
    mangled0, enforce = flags & BPF_F_MARK_MANGLED_0, flags & BPF_F_MARK_ENFORCE
    if mangled0 and not enforce and not _get16(skb, at):
        return 0
    size = flags & BPF_F_HDR_FIELD_MASK
    if size not in (0, 2, 4) or (size == 0 and old):
        return _ret(-errno.EINVAL)
    # inet_proto_csum_replace*: the skb is not CHECKSUM_PARTIAL, so the field is updated
    # the same way with or without the pseudo header (skb->csum is not COMPLETE here)
    _replace(skb, at, 4 if size == 2 else size, old & (0xFFFF if size == 2 else M32),
             new & (0xFFFF if size == 2 else M32))  # fmt: skip
    if mangled0 and not _get16(skb, at):
        _put16(skb, at, CSUM_MANGLED_0)
    return 0
