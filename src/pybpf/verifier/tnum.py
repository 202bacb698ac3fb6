"""Tristate numbers: what the verifier knows about each bit of a 64-bit value.

A :class:`Tnum` is a pair ``(value, mask)`` of u64: a bit set in ``mask`` is
unknown, any other bit is known to equal the same bit of ``value`` (the
invariant ``value & mask == 0`` always holds).  The concrete values a tnum
stands for are every ``value | x`` with ``x`` a subset of ``mask``.

Every operation over-approximates: if ``a`` contains ``x`` and ``b`` contains
``y`` then ``a.add(b)`` contains ``(x + y) mod 2**64``, and so on.  The
operations are the kernel's (``kernel/bpf/tnum.c``), so the results are bit for
bit the ones its verifier computes, which matters when a verdict depends on a
single bit.

The module-level ``t_*`` functions work on plain ``(value, mask)`` int pairs;
:mod:`pybpf.verifier.scalar` uses them on its hot path to avoid building
objects.  :class:`Tnum` is the public, immutable face over them.
"""

from __future__ import annotations

from dataclasses import dataclass

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1

# numbers up to this magnitude are printed in decimal by the kernel's log
# (UNUM_MAX_DECIMAL / SNUM_*_DECIMAL in kernel/bpf/log.c)
_UNUM_MAX_DECIMAL = (1 << 16) - 1


def t_range(lo: int, hi: int) -> tuple[int, int]:
    """The smallest tnum holding every u64 in ``[lo, hi]`` (``tnum_range``)."""
    bits = (lo ^ hi).bit_length()
    if bits > 63:
        return 0, U64
    delta = (1 << bits) - 1
    return lo & ~delta, delta


def t_add(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    """``tnum_add``: carries out of unknown bits make the bits they reach unknown."""
    sm = am + bm
    sv = av + bv
    chi = ((sm + sv) ^ sv) & U64
    mu = chi | am | bm
    return sv & ~mu & U64, mu


def t_sub(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    """``tnum_sub``: borrows through unknown bits make the bits they reach unknown."""
    dv = (av - bv) & U64
    chi = ((dv + am) ^ (dv - bm)) & U64
    mu = chi | am | bm
    return dv & ~mu, mu


def t_and(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    """``tnum_and``."""
    v = av & bv
    return v, (av | am) & (bv | bm) & ~v


def t_or(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    """``tnum_or``."""
    v = av | bv
    return v, (am | bm) & ~v


def t_xor(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    """``tnum_xor``."""
    mu = am | bm
    return (av ^ bv) & ~mu, mu


def t_union(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    """``tnum_union``: a tnum holding every member of both."""
    mu = (av ^ bv) | am | bm
    return av & bv & ~mu, mu


def t_mul(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    """``tnum_mul``: shift-and-add long multiplication over tnums."""
    accv = accm = 0
    while av or am:
        if accm == U64 or not (bv or bm):
            break  # nothing more can change: acc is unknown, or only zeros are left to add
        if av & 1:
            accv, accm = t_add(accv, accm, bv, bm)
        elif am & 1:
            sv, sm = t_add(accv, accm, bv, bm)
            accv, accm = t_union(accv, accm, sv, sm)
        av >>= 1
        am >>= 1
        bv = (bv << 1) & U64
        bm = (bm << 1) & U64
    return accv, accm


def t_intersect(av: int, am: int, bv: int, bm: int) -> tuple[int, int]:
    """``tnum_intersect``: both sets' knowledge combined (known-1 wins a conflict)."""
    mu = am & bm
    return (av | bv) & ~mu, mu


def t_arshift(v: int, m: int, shift: int, bits: int) -> tuple[int, int]:
    """``tnum_arshift`` in a ``bits``-wide (32 or 64) register."""
    if bits == 32:
        v &= U32
        m &= U32
        sv = v - (1 << 32) if v & 0x80000000 else v
        sm = m - (1 << 32) if m & 0x80000000 else m
        return (sv >> shift) & U32, (sm >> shift) & U32
    sv = v - (1 << 64) if v >> 63 else v
    sm = m - (1 << 64) if m >> 63 else m
    return (sv >> shift) & U64, (sm >> shift) & U64


def t_step(v: int, m: int, z: int) -> int:
    """``tnum_step``: the smallest member of ``(v; m)`` greater than ``z``.

    Returns the largest member when ``z`` is at or above it, and the smallest
    member when ``z`` is below it.
    """
    tmax = v | m
    if z >= tmax:
        return tmax
    if z < v:
        return v
    j = v | (z & m)
    if j > z:
        p = ~z & v & ~m & U64
        k = p.bit_length()
        q = (U64 << k) & U64
        return (q & z) | (~q & v & U64)
    p = z & ~v & ~m & U64
    k = p.bit_length()
    q = (U64 << k) & U64
    r = q & m & z
    s = q & ~m & U64
    u = ((r | s) + (1 << k)) & U64
    return (u & m) | v


def _swab(x: int, nbytes: int) -> int:
    return int.from_bytes(x.to_bytes(nbytes, "little"), "big")


def hex_or_dec(value: int) -> str:
    """An unsigned number as the kernel's log prints it: decimal up to 65535, else ``0x..``."""
    return str(value) if value <= _UNUM_MAX_DECIMAL else f"{value:#x}"


@dataclass(frozen=True, slots=True)
class Tnum:
    """A tristate number ``(value; mask)`` of u64 (``struct tnum``).

    Construct with in-range ints whose ``value & mask`` is 0; :meth:`const`,
    :meth:`unknown` and :meth:`range` are the usual ways in.
    """

    value: int
    mask: int

    # --- constructors ------------------------------------------------------

    @staticmethod
    def const(value: int) -> Tnum:
        """The tnum of exactly ``value`` (taken modulo 2**64)."""
        return Tnum(value & U64, 0)

    @staticmethod
    def unknown() -> Tnum:
        """The tnum of every u64."""
        return _UNKNOWN

    @staticmethod
    def range(lo: int, hi: int) -> Tnum:
        """The smallest tnum holding ``[lo, hi]`` (u64, ``lo <= hi``)."""
        return Tnum(*t_range(lo & U64, hi & U64))

    # --- arithmetic --------------------------------------------------------

    def add(self, other: Tnum) -> Tnum:
        return Tnum(*t_add(self.value, self.mask, other.value, other.mask))

    def sub(self, other: Tnum) -> Tnum:
        return Tnum(*t_sub(self.value, self.mask, other.value, other.mask))

    def neg(self) -> Tnum:
        return Tnum(*t_sub(0, 0, self.value, self.mask))

    def mul(self, other: Tnum) -> Tnum:
        return Tnum(*t_mul(self.value, self.mask, other.value, other.mask))

    def and_(self, other: Tnum) -> Tnum:
        return Tnum(*t_and(self.value, self.mask, other.value, other.mask))

    def or_(self, other: Tnum) -> Tnum:
        return Tnum(*t_or(self.value, self.mask, other.value, other.mask))

    def xor(self, other: Tnum) -> Tnum:
        return Tnum(*t_xor(self.value, self.mask, other.value, other.mask))

    def lshift(self, shift: int) -> Tnum:
        """Shift left by a known amount (0..63); bits leaving bit 63 are dropped."""
        return Tnum((self.value << shift) & U64, (self.mask << shift) & U64)

    def rshift(self, shift: int) -> Tnum:
        """Logical shift right by a known amount (0..63)."""
        return Tnum(self.value >> shift, self.mask >> shift)

    def arshift(self, shift: int, bits: int = 64) -> Tnum:
        """Arithmetic shift right of the low ``bits`` (32 or 64) bits, zero-extended."""
        return Tnum(*t_arshift(self.value, self.mask, shift, bits))

    # --- set operations ----------------------------------------------------

    def intersect(self, other: Tnum) -> Tnum:
        """What is known if a value belongs to both (``tnum_intersect``)."""
        return Tnum(*t_intersect(self.value, self.mask, other.value, other.mask))

    def union(self, other: Tnum) -> Tnum:
        """A tnum holding every member of both (``tnum_union``)."""
        return Tnum(*t_union(self.value, self.mask, other.value, other.mask))

    def overlap(self, other: Tnum) -> bool:
        """False when some bit is known in both and differs (no common member)."""
        mu = ~self.mask & ~other.mask
        return (self.value & mu) == (other.value & mu)

    def contains(self, other: Tnum) -> bool:
        """Every member of ``other`` is a member of ``self`` (``tnum_in(self, other)``)."""
        if other.mask & ~self.mask:
            return False
        return self.value == other.value & ~self.mask

    def member(self, x: int) -> bool:
        """``x`` (taken modulo 2**64) is one of the values this tnum stands for."""
        return (x & U64 & ~self.mask) == self.value

    # --- width -------------------------------------------------------------

    def cast(self, size: int) -> Tnum:
        """Keep the low ``size`` bytes (1, 2, 4 or 8)."""
        keep = (1 << (size * 8)) - 1
        return Tnum(self.value & keep, self.mask & keep)

    def subreg(self) -> Tnum:
        """The low 32 bits."""
        return Tnum(self.value & U32, self.mask & U32)

    def clear_subreg(self) -> Tnum:
        """The high 32 bits, with the low 32 known zero."""
        return Tnum(self.value & ~U32 & U64, self.mask & ~U32 & U64)

    def with_subreg(self, sub: Tnum) -> Tnum:
        """The high 32 bits of ``self`` with the low 32 bits of ``sub``."""
        hi = ~U32 & U64
        return Tnum((self.value & hi) | (sub.value & U32), (self.mask & hi) | (sub.mask & U32))

    def const_subreg(self, value: int) -> Tnum:
        """The high 32 bits of ``self`` with the low 32 bits known to be ``value``."""
        return self.with_subreg(Tnum(value & U32, 0))

    def bswap(self, bits: int) -> Tnum:
        """Byte-swap the low ``bits`` (16, 32 or 64) bits, dropping the rest."""
        n = bits // 8
        keep = (1 << bits) - 1
        return Tnum(_swab(self.value & keep, n), _swab(self.mask & keep, n))

    # --- queries -----------------------------------------------------------

    def is_const(self) -> bool:
        return self.mask == 0

    def is_unknown(self) -> bool:
        return self.mask == U64

    def subreg_is_const(self) -> bool:
        return not self.mask & U32

    def is_aligned(self, size: int) -> bool:
        """Every member is a multiple of ``size`` (a power of two; 0 means any)."""
        if not size:
            return True
        return not (self.value | self.mask) & (size - 1)

    def step(self, z: int) -> int:
        """The smallest member greater than ``z`` (``tnum_step``)."""
        return t_step(self.value, self.mask, z)

    def __str__(self) -> str:
        """As the kernel's log prints it (``tnum_strn``): ``5``, ``0x10000`` or ``(0x0; 0xff)``."""
        if self.mask == 0:
            return hex_or_dec(self.value)
        return f"({self.value:#x}; {self.mask:#x})"


_UNKNOWN = Tnum(0, U64)
