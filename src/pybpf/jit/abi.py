"""The contract between generated code and the runner that calls it.

``bpf_entry(ptr ctx) -> i64`` takes one argument, the run context: an array
of 64-bit words whose indices are :class:`Slot`, and returns a
:class:`Status`.  Whatever must reach Python goes through one trampoline,
``i64 tramp(ptr ctx, i64 id, i64 a1..a5)``, whose ``id`` packs a
:class:`Callout` kind, the pc and a 32-bit value (:func:`callout_id`);
:class:`Fault` lists the errors generated code raises through it.
:mod:`pybpf.jit.ir` writes code to this contract and
:mod:`pybpf.jit.engine` serves it.
"""

from __future__ import annotations

from enum import IntEnum

M32 = (1 << 32) - 1

ENTRY = "bpf_entry"


class Slot(IntEnum):
    """Word indices of the run context."""

    R0 = 0  # out: r0 at exit (or at a tail call)
    R1 = 1  # in: r1..r5 at 1..5
    R10 = 6  # in: the frame top; before a helper callout, the current r10
    START = 7  # in: the pc to start at
    STACK_TOP = 8  # in: one past the engine's stack (frame 0's r10)
    HOT_BASE = 9  # in: the hot region's address
    HOT_SIZE = 10  # in: its size (0: no hot region)
    HOT_WSIZE = 11  # in: its size when writable, else 0
    TRAMPOLINE = 12  # in: address of the callout trampoline
    BUDGET = 13  # in: instruction budget (counting mode)
    ABORT = 14  # out: set by the trampoline when an exception was recorded
    AUX = 15  # callx helper id in; LD_ABS out-of-bounds flag out
    EXECUTED = 16  # out: instructions executed (counting mode)
    CUSTOM_BASE = 17  # in (direct mode): a region whose accesses must reach Python (context)
    CUSTOM_SIZE = 18  # in (direct mode): its size (0: none)
    CTX_IMAGE = 19  # in: the context's converted image (0: none), see ctx_image_layout


SLOTS = 20


class Status(IntEnum):
    """What ``bpf_entry`` returns."""

    EXIT = 0  # r0 is in Slot.R0
    TAIL_CALL = 1  # the trampoline accepted a tail call; continue in its target
    ABORT = 2  # the trampoline recorded an exception


class Callout(IntEnum):
    """Kinds of trampoline calls (bits 56..63 of the id)."""

    HELPER = 1  # value: helper id (signed 32 bits)
    KFUNC = 2  # value: BTF id
    HELPER_X = 3  # callx of a helper: the id is in Slot.AUX
    LD_ABS = 4  # a1: offset, a2: size; Slot.AUX = 1 when out of bounds
    LOAD = 5  # a1: address, a2: size
    STORE = 6  # a1: address, a2: size, a3: value
    ATOMIC = 7  # a1: address, a2: size, a3: op, a4: value, a5: r0 (cmpxchg)
    TAIL_CALL = 8  # a1..a3: r1..r3; returns 1 when a target was found
    RAISE = 9  # value: a Fault


class Fault(IntEnum):
    """Errors the generated code raises through :attr:`Callout.RAISE`."""

    FELL_OFF = 0
    CALL_DEPTH = 1
    BUDGET = 2
    TAIL_IN_SUBPROG = 3
    BAD_CALL_TARGET = 4


IMAGE_WIDTHS = (1, 2, 4, 8)
"""Load widths a context image answers; width ``IMAGE_WIDTHS[k]`` is size class ``k``."""


def ctx_image_layout(size: int) -> tuple[int, int]:
    """(offset of the flag bytes, total bytes) of the converted image of a ``size``-byte context.

    The image of a context region (``Slot.CUSTOM_BASE/SIZE``, image address in
    ``Slot.CTX_IMAGE``) answers loads natively: for size class ``k`` and
    context offset ``off``, the 64-bit word at ``8 * (k * size + off)`` is
    the value a ``IMAGE_WIDTHS[k]``-byte load at ``off`` returns, valid when
    bit ``k`` of the flag byte at ``flags + off`` is set.  A load whose flag
    bit is clear goes through :attr:`Callout.LOAD` (the runtime converts or
    refuses it); stores always do.
    """
    flags = 8 * len(IMAGE_WIDTHS) * size
    return flags, flags + size


def callout_id(kind: Callout, pc: int, value: int = 0) -> int:
    """The id a callout passes: kind, pc and a 32-bit value in one word."""
    return (int(kind) << 56) | ((pc & 0xFFFFFF) << 32) | (value & M32)


def split_callout(ident: int) -> tuple[int, int, int]:
    """(kind, pc, value) of a callout id; ``value`` is sign-extended from 32 bits."""
    value = ident & M32
    return ident >> 56, (ident >> 32) & 0xFFFFFF, value - (1 << 32) if value >> 31 else value
