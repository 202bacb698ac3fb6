"""Open-coded iterators on the stack: ``bpf_iter_<type>_new/next/destroy``.

An iterator (``struct bpf_iter_num``, ``struct bpf_iter_bits``...) lives in
stack slots the verifier types ``STACK_ITER`` (byte type ``i``), as
``mark_stack_slots_iter`` does: the slot at the lowest address holds the
iterator's state in its spilled register (the acquired reference, the
iterator's struct, ``active``/``drained`` and the loop depth), the others
hold nothing.  pybpf keeps that state in a :class:`~pybpf.verifier.state.Reg`:
``ref`` the reference, ``map`` the struct (:func:`~pybpf.verifier.types.btf_ref`),
``rng`` the state, ``size`` the depth.

:func:`process_iter_arg` is the kernel's function of that name (the
iterator argument of any kfunc), :func:`process_iter_next_call` the fork
at ``*_next()``: the current path continues with the iterator drained and
R0 NULL, a queued path with it active one level deeper and R0 not NULL,
its changed scalars widened as ``widen_imprecise_scalars`` does.
Pruning compares iterator slots by stacksafe's rule (:mod:`.prune`: the
depth is not compared, so a loop's states converge).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pybpf.verifier import memory, prune
from pybpf.verifier.state import EMPTY_SLOT, ITER, Reg, Slot, State, const
from pybpf.verifier.types import Base, Flag, btf_ref

if TYPE_CHECKING:
    from pybpf.verifier.check import Checker

ACTIVE, DRAINED = 1, 2  # enum bpf_iter_state
ITER_PREFIX = "bpf_iter_"


def _reject(msg: str, err: int = errno.EINVAL):
    from pybpf.verifier.check import Reject

    return Reject(msg, err)


def type_str(struct: str) -> str:
    """iter_type_str: ``num`` for ``struct bpf_iter_num``."""
    return struct.removeprefix(ITER_PREFIX)


def _first_spi(reg: Reg, nr_slots: int) -> int | None:
    """iter_get_spi: the slot of the iterator's lowest address; None when it does not fit."""
    if not reg.var.is_const():
        raise _reject("iter has to be at a constant offset")
    off = reg.off + reg.var.signed_value
    if off % 8:
        raise _reject(f"cannot pass in iter at an offset={off}")
    if off >= 0:
        return None
    spi = (-off - 1) // 8
    if spi + 1 < nr_slots:
        return None
    return spi


def _slots(spi: int, nr_slots: int) -> list[int]:
    return [spi - i for i in range(nr_slots)]


def iter_state(st: State, regno: int) -> Reg | None:
    """The state register of the iterator R<regno> points to, None when there is none."""
    reg = st.regs[regno]
    if reg.base is not Base.PTR_TO_STACK or not reg.var.is_const():
        return None
    off = reg.off + reg.var.signed_value
    if off >= 0 or off % 8:
        return None
    s = st.frames[reg.frame].slot((-off - 1) // 8)
    return s.spilled if s.types[0] == ITER else None


def process_iter_arg(env: Checker, st: State, regno: int, pc: int, struct: str, size: int,
                     new: bool, destroy: bool) -> int:  # fmt: skip
    """process_iter_arg: R<regno> points to an iterator ``struct`` of ``size`` bytes.

    ``new``: the slots must hold no iterator and become a fresh active one
    (a reference acquired at ``pc``); otherwise they must hold an initialized
    iterator of that type (``destroy``: which is released).  Returns the
    iterator's reference id (0 for ``new``).
    """
    reg = st.regs[regno]
    if reg.base is not Base.PTR_TO_STACK:
        raise _reject(f"arg#{regno - 1} expected pointer to an iterator on stack")
    nr_slots = size // 8
    frame = st.frames[reg.frame]
    spi = _first_spi(reg, nr_slots)
    name = type_str(struct)
    if new:
        if spi is not None and any(frame.slot(s).types[0] == ITER
                                   for s in _slots(spi, nr_slots)):  # fmt: skip
            raise _reject(f"expected uninitialized iter_{name} as arg #{regno - 1}")
        memory.helper_mem(env, regno, size, size, write=True, uninit_ok=True, zero_ok=False)
        spi = _first_spi(reg, nr_slots)
        assert spi is not None  # helper_mem refused an iterator beyond the stack
        rid = env.new_id()
        st.refs.append((rid, pc))
        ref = btf_ref(struct)
        for i, s in enumerate(_slots(spi, nr_slots)):
            frame.stack[s] = Slot(ITER * 8, Reg(Base.PTR_TO_STACK, ref=rid if i == 0 else 0,
                                                map=ref, rng=ACTIVE))  # fmt: skip
        return 0
    if spi is None or not _valid_init(frame, spi, nr_slots, struct):
        raise _reject(f"expected an initialized iter_{name} as arg #{regno - 1}")
    rid = frame.slot(spi).spilled.ref
    if destroy:
        st.refs[:] = [(i, a) for i, a in st.refs if i != rid]
        for s in _slots(spi, nr_slots):
            frame.stack[s] = EMPTY_SLOT
    return rid


def _valid_init(frame, spi: int, nr_slots: int, struct: str) -> bool:
    """is_iter_reg_valid_init: every slot an iterator slot, the first of type ``struct``
    holding the reference, the others none."""
    for i in range(nr_slots):
        s = frame.slot(spi - i)
        if s.types != ITER * 8 or s.spilled is None:
            return False
        if i == 0 and (s.spilled.map is not btf_ref(struct) or not s.spilled.ref):
            return False
        if i and s.spilled.ref:
            return False
    return True


def process_iter_next_call(env: Checker, st: State, pc: int, frame_no: int, spi: int) -> None:
    """process_iter_next_call: fork at ``*_next()`` (see the module docstring).

    Called after R0 is set (``_or_null``) with the iterator's (frame, slot);
    the current path takes the drained branch, the queued one the active branch.
    """
    frame = st.frames[frame_no]
    cur = frame.slot(spi).spilled
    if cur.rng == ACTIVE:
        queued = st.copy()
        qf = queued.frames[frame_no]
        qf.stack[spi] = Slot(ITER * 8, cur.but(size=cur.size + 1))
        r0 = queued.regs[0]
        queued.regs[0] = r0.but(flags=r0.flags & ~Flag.MAYBE_NULL)
        start = st.parent
        if start is not None and start.pc == pc:
            start = start.parent  # the checkpoint made for this visit
        prev = prune.prev_entry(start, pc)
        if prev is not None:
            prune.widen(prev, queued)
        env.push(queued, pc + 1, pc)
    frame.stack[spi] = Slot(ITER * 8, cur.but(rng=DRAINED))
    st.regs[0] = const(0)


def arg_slot(env: Checker, st: State, regno: int) -> tuple[int, int]:
    """(frame number, first slot) of the iterator R<regno> points to (already checked)."""
    reg = st.regs[regno]
    off = reg.off + reg.var.signed_value
    return reg.frame, (-off - 1) // 8
