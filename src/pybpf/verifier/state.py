"""The abstract state of one verification path (``struct bpf_verifier_state``).

A :class:`Reg` is one register's abstract value (``struct bpf_reg_state``):
a type from :mod:`.types`, a fixed offset ``off`` and, in ``var``, a
:class:`~pybpf.verifier.scalar.Scalar` — the value itself for a scalar, the
variable part of the offset for a pointer.  Registers are immutable values:
an operation builds a new one with :meth:`Reg.but`, so states share them
freely and a copy of a state only copies lists.

A :class:`Frame` is one function's registers and stack; the stack maps a
slot index (``spi``: bytes ``[-8*(spi+1), -8*spi)`` from the frame pointer)
to a :class:`Slot`, eight byte types (``?`` invalid, ``m`` misc, ``0``
zero, ``r`` spilled register) plus the spilled register.  A :class:`State`
is the frames of the current call chain, the acquired references and the
bookkeeping the pruning needs.

:func:`format_reg`, :func:`format_state` print them as the kernel's log
does (``R1=ctx() R10=fp0 fp-8=0000????``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from pybpf.verifier.scalar import Scalar
from pybpf.verifier.types import Base, Flag, type_str

MAX_REGS = 11
FP = 10
STACK_SIZE = 512
INVALID, MISC, ZERO, SPILL = "?", "m", "0", "r"
ITER = "i"  # STACK_ITER: an open-coded iterator's slot (see iters.py)
_ZERO = Scalar.const(0)

PKT_TYPES = (Base.PTR_TO_PACKET, Base.PTR_TO_PACKET_META)


class Reg:
    """One register's abstract value; never mutated once built (use :meth:`but`).

    ``map`` is the map object (for map pointers and values), ``size`` the
    memory size of PTR_TO_MEM, ``rng`` the proven packet range, ``ref`` the
    acquired reference this pointer holds (0: none), ``id`` the identity
    shared by copies (null checks, packet ranges, linked scalars),
    ``frame`` the frame a stack pointer points into, ``sub`` the subprogram
    a PTR_TO_FUNC names.
    """

    __slots__ = ("_hash", "base", "flags", "frame", "id", "map", "off", "ref", "rng", "size", "sub",
                 "var")
    _FIELDS = ("base", "flags", "frame", "id", "map", "off", "ref", "rng", "size", "sub", "var")

    def __init__(self, base: Base = Base.NOT_INIT, flags: Flag = Flag.NONE, off: int = 0,
                 var: Scalar = _ZERO, id: int = 0, ref: int = 0, rng: int = 0,
                 map: object = None, size: int = 0, frame: int = 0, sub: int = 0) -> None:
        self.base, self.flags, self.off, self.var = base, flags, off, var
        self.id, self.ref, self.rng, self.map = id, ref, rng, map
        self.size, self.frame, self.sub = size, frame, sub
        self._hash = None

    def but(self, **changes) -> Reg:
        """A copy with some fields changed."""
        r = Reg.__new__(Reg)
        for name in Reg._FIELDS:
            setattr(r, name, changes.get(name, getattr(self, name)))
        r._hash = None
        return r

    def key(self) -> tuple:
        return (self.base, self.flags, self.off, self.var, self.id, self.ref, self.rng,
                id(self.map), self.size, self.frame, self.sub)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        return isinstance(other, Reg) and hash(self) == hash(other) and self.key() == other.key()

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self.key())
        return self._hash

    @property
    def is_scalar(self) -> bool:
        return self.base is Base.SCALAR

    @property
    def is_ptr(self) -> bool:
        return self.base not in (Base.NOT_INIT, Base.SCALAR)

    @property
    def maybe_null(self) -> bool:
        return bool(self.flags & Flag.MAYBE_NULL)

    def is_const(self, value: int | None = None) -> bool:
        """A scalar with a known value (equal to ``value`` when given)."""
        if self.base is not Base.SCALAR or self.var.var_off.mask:
            return False
        return value is None or self.var.value == value & ((1 << 64) - 1)

    def type_name(self) -> str:
        return type_str(self.base, self.flags)


NOT_INIT = Reg()
UNKNOWN = Reg(Base.SCALAR, var=Scalar.unknown())


def scalar(value: Scalar, id: int = 0) -> Reg:
    return Reg(Base.SCALAR, var=value, id=id)


@lru_cache(maxsize=4096)
def const(value: int) -> Reg:
    """A known scalar (Regs never change, so one object serves every use of a value)."""
    return Reg(Base.SCALAR, var=Scalar.const(value))


def assign_scalar_id_before_mov(src: Reg, new_id) -> Reg:
    """The scalar ``src`` as a copy of it (a move, a spill) leaves it: with an id the
    copy shares, a fresh one (``new_id()``) unless it has one; an id already carrying
    a constant add (``rX += K``) is dropped first, as one register cannot hold two."""
    if src.id and src.off:
        src = src.but(id=0, off=0)
    if not src.id and not src.var.is_const():
        src = src.but(id=new_id())
    return src


@dataclass(frozen=True)
class Slot:
    """Eight stack bytes: their types (``?``/``m``/``0``/``r`` per byte) and a spilled register."""

    types: str
    spilled: Reg | None = None


EMPTY_SLOT = Slot(INVALID * 8)


@dataclass
class Frame:
    """One function's registers and stack (``struct bpf_func_state``)."""

    regs: list[Reg]
    stack: dict[int, Slot] = field(default_factory=dict)
    frameno: int = 0
    callsite: int = -1  # the pc of the call that made this frame (-1: main)
    subprog: int = 0
    depth: int = 0  # deepest stack byte touched
    callback: object = None  # the helper's Callback when this frame is a callback
    callback_depth: int = 0  # callback visits queued from this frame on this path (bpf_loop)

    def copy(self) -> Frame:
        return Frame(list(self.regs), dict(self.stack), self.frameno, self.callsite,
                     self.subprog, self.depth, self.callback, self.callback_depth)

    def slot(self, spi: int) -> Slot:
        return self.stack.get(spi, EMPTY_SLOT)


@dataclass
class State:
    """A path's state: frames (innermost last), references and lock, and path bookkeeping."""

    frames: list[Frame]
    refs: list[tuple[int, int]] = field(default_factory=list)  # (id, alloc pc)
    lock: tuple[int, int] | int = 0  # the held spin lock: (map id, value id); 0: none
    parent: object = None  # the explored-state node this path continues (pruning)
    path: tuple | None = None  # the pcs walked, newest first, as nested (pc, rest) pairs
    may_goto_depth: int = 0
    callback_depth: int = 0

    @property
    def cur(self) -> Frame:
        return self.frames[-1]

    @property
    def regs(self) -> list[Reg]:
        return self.frames[-1].regs

    def copy(self) -> State:
        return State([f.copy() for f in self.frames], list(self.refs), self.lock, self.parent,
                     self.path, self.may_goto_depth, self.callback_depth)


def path_pcs(st: State) -> tuple[int, ...]:
    """The pcs of the path that led to ``st``, oldest first."""
    out = []
    node = st.path
    while node is not None:
        out.append(node[0])
        node = node[1]
    return tuple(reversed(out))


def initial_state() -> State:
    """The state at insn 0: R1 is the context, R10 the frame pointer, all else NOT_INIT."""
    regs = [NOT_INIT] * MAX_REGS
    regs[1] = Reg(Base.PTR_TO_CTX)
    regs[FP] = Reg(Base.PTR_TO_STACK, frame=0)
    return State([Frame(regs)])


# --- the log's text ------------------------------------------------------------------------------


def _map_items(m: object) -> list[str]:
    items = []
    name = getattr(m, "name", "")
    if name:
        items.append(f"map={name}")
    items.append(f"ks={getattr(m, 'key_size', 0)}")
    items.append(f"vs={getattr(m, 'value_size', 0)}")
    return items


def format_reg(r: Reg) -> str:
    """A register as ``print_verifier_state`` prints it after ``R1=``."""
    if r.base is Base.SCALAR:
        return r.var.format(id=r.id, delta=r.off or None)
    if r.base is Base.PTR_TO_STACK and r.var.is_const() and not r.var.value:
        return f"fp{r.off}"
    items: list[str] = []
    if r.id:
        items.append(f"id={r.id}")
    if r.ref:
        items.append(f"ref_obj_id={r.ref}")
    if r.base is not Base.PTR_TO_STACK and r.off:
        items.append(f"off={r.off}")
    if r.base in PKT_TYPES:
        items.append(f"r={r.rng}" if r.rng >= 0 else f"r={r.rng & ((1 << 64) - 1):#x}")
    map_types = (Base.CONST_PTR_TO_MAP, Base.PTR_TO_MAP_VALUE, Base.PTR_TO_MAP_KEY)
    if r.base in map_types and r.map is not None:
        items += _map_items(r.map)
    if r.base is Base.PTR_TO_MEM and r.size:
        items.append(f"sz={r.size}")
    if not r.var.is_const() or r.var.value:
        items += r.var.range_fields()
    if r.base is Base.PTR_TO_STACK:
        items.insert(0, f"off={r.off}")
    name = r.type_name()
    if r.base is Base.PTR_TO_BTF_ID and r.map is not None:  # the struct's name follows "ptr_"
        name += getattr(r.map, "name", "")
    return f"{name}({','.join(items)})"


def format_slot(spi: int, s: Slot) -> str | None:
    """A stack slot as ``fp-8=...``, or None for an all-invalid slot.

    ``types[j]`` is the byte at ``fp - 8*spi - j - 1`` (the kernel's
    ``slot_type`` order), printed in that order as the kernel does.
    """
    if s.types == EMPTY_SLOT.types:
        return None
    if s.types[0] == ITER:  # only the main slot, which holds the reference, is printed
        r = s.spilled
        if r is None or not r.ref:
            return None
        kind = getattr(r.map, "name", "").removeprefix("bpf_iter_")
        return (f"fp{-8 * (spi + 1)}=iter_{kind}(ref_id={r.ref},"
                f"state={'active' if r.rng == 1 else 'drained'},depth={r.size})")
    if s.spilled is not None and s.types[7] == SPILL:
        return f"fp{-8 * (spi + 1)}={format_reg(s.spilled)}"
    return f"fp{-8 * (spi + 1)}={s.types}"


def format_frame(f: Frame, regs: tuple[int, ...] | None = None,
                 slots: tuple[int, ...] | None = None) -> str:  # fmt: skip
    """``R1=ctx() R10=fp0 fp-8=mmmmmmmm`` for the registers and slots asked (all when None)."""
    out = []
    for i in range(MAX_REGS) if regs is None else sorted(set(regs)):
        r = f.regs[i]
        if r.base is not Base.NOT_INIT:
            out.append(f"R{i}={format_reg(r)}")
    for spi in sorted(f.stack) if slots is None else sorted(set(slots)):
        text = format_slot(spi, f.slot(spi))
        if text:
            out.append(text)
    return " ".join(out)


def format_frame_line(f: Frame, regs: tuple[int, ...] | None = None,
                      slots: tuple[int, ...] | None = None) -> str:  # fmt: skip
    """:func:`format_frame` with the ``frameN: `` prefix the kernel gives frames above 0."""
    text = format_frame(f, regs, slots)
    return f"frame{f.frameno}: {text}" if f.frameno else text


def format_state(st: State) -> str:
    """The whole state as the kernel's full state line prints it."""
    text = format_frame(st.cur)
    if len(st.frames) > 1:
        return f"frame{st.cur.frameno}: {text}"
    return text
