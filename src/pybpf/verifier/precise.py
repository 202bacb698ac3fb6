"""Precision tracking: which scalars of an explored state the pruning must compare.

The kernel's ``mark_chain_precision``: a scalar whose value decided
something (a pointer offset, a helper's size, a branch the verifier
predicted, a return code) is *precise*.  The explored states (checkpoints,
:class:`~pybpf.verifier.prune.Node`) its value flowed through must keep
it: a later state is covered by an explored one only when the precise
scalars' ranges include the current ones, while an imprecise scalar of a
finished state covers any scalar (``regsafe``).

The dependency is found as the kernel's ``__mark_chain_precision`` finds it:
from the current instruction back over the path (pybpf keeps every pc walked,
:attr:`~pybpf.verifier.state.State.path`, which serves as the kernel's
instruction history and ``get_prev_insn_idx``), one instruction at a time
(:func:`_backtrack_insn`, ``backtrack_insn``), with a register and stack-slot
set per frame (``struct backtrack_state``).  Where the path crosses into the
segment of a parent checkpoint the wanted registers and slots still scalar
are marked precise in it (a set on the node); marking stops where they are
already precise, or where every wanted value was defined.  Path entries carry
what the history records besides the pc (``push_insn_history``'s flags): the
stack slot a spill or fill touched (``INSN_F_STACK_ACCESS``) and the scalars
a conditional jump linked (``linked_regs``).  Where the walk cannot follow
a value (``-ENOTSUPP``, or what the kernel calls a backtracking bug) every
scalar of every checkpoint of the path becomes precise
(``mark_all_scalars_precise``).

The kernel's current (not checkpointed) state never holds precision marks
for a privileged program, so pybpf keeps them on the nodes only.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pybpf.isa import Kind
from pybpf.verifier.cfg import MAX_FRAMES
from pybpf.verifier.log import insn_text
from pybpf.verifier.state import SPILL, State, format_frame

if TYPE_CHECKING:
    from pybpf.verifier.check import Checker
    from pybpf.verifier.prune import Node

ARGS = frozenset(range(1, 6))  # BPF_REGMASK_ARGS
_CALL_LOCAL_CODE = 0x85


class _Fallback(Exception):
    """The walk cannot follow the value: mark every scalar of the path precise."""


class Backtrack:
    """``struct backtrack_state``: the registers and stack slots wanted, per frame."""

    __slots__ = ("frame", "regs", "slots")

    def __init__(self, frame: int) -> None:
        self.frame = frame
        self.regs: list[set[int]] = [set() for _ in range(MAX_FRAMES)]
        self.slots: list[set[int]] = [set() for _ in range(MAX_FRAMES)]

    def empty(self) -> bool:
        return not any(self.regs) and not any(self.slots)

    def enter(self) -> None:
        """bt_subprog_enter: backwards over an exit, into the callee's frame."""
        if self.frame + 1 >= MAX_FRAMES:
            raise _Fallback
        self.frame += 1

    def leave(self) -> None:
        """bt_subprog_exit: backwards over a call, out to the caller's frame."""
        if self.frame == 0:
            raise _Fallback
        self.frame -= 1

    def has(self, loc: tuple[int, str, int]) -> bool:
        fr, kind, i = loc
        return i in (self.regs if kind == "r" else self.slots)[fr]

    def add(self, loc: tuple[int, str, int]) -> None:
        fr, kind, i = loc
        (self.regs if kind == "r" else self.slots)[fr].add(i)


# --- the history a path entry carries ---------------------------------------------------------


def note(st: State, flag: tuple) -> None:
    """push_insn_history: attach ``flag`` to the current instruction's path entry.

    ``("S", frame, spi)``: a spill to or fill from that stack slot;
    ``("L", locs, stack)``: the scalars a conditional jump linked; ``("J", stack)``: a
    conditional jump whose destination / source (``stack``, two booleans) was a stack
    pointer;
    ``("X",)``: an edge the backtracking cannot follow.
    """
    entry = st.path
    if entry is not None:
        st.path = (entry[0], entry[1], flag)


def history_len(st: State, jmp_points, limit: int) -> int:
    """The entries of ``st``'s instruction history since its last checkpoint (arrivals
    at a jump point, spills, fills, linked jumps), counted up to ``limit + 1``."""
    stop = st.parent.path if st.parent is not None else None
    entry = st.path
    n = 0
    while entry is not stop and entry is not None and n <= limit:
        if len(entry) > 2 or entry[0] in jmp_points:
            n += 1
        entry = entry[1]
    return n


def linked_locations(st: State, ids: list[int]) -> tuple:
    """collect_linked_regs: every scalar register and spilled scalar sharing one of ``ids``."""
    locs = []
    for fr, f in enumerate(st.frames):
        for i, r in enumerate(f.regs):
            if r.is_scalar and r.id and r.id in ids:
                locs.append((fr, "r", i))
        for spi, s in f.stack.items():
            sp = s.spilled
            if sp is not None and s.types[7] == SPILL and sp.is_scalar and sp.id and sp.id in ids:
                locs.append((fr, "s", spi))
    return tuple(locs)


# --- node marks ---------------------------------------------------------------------------------


def is_precise(node: Node, fr: int, kind: str, i: int) -> bool:
    return node.all_precise or (fr, kind, i) in node.precise


def _is_spilled_scalar(frame, spi: int) -> bool:
    s = frame.stack.get(spi)
    return s is not None and s.spilled is not None and s.types[7] == SPILL and s.spilled.is_scalar


# --- the walk ------------------------------------------------------------------------------------


def mark(env: Checker, st: State, regs=(), *, locs=()) -> None:
    """mark_chain_precision, asked by the instruction being checked: registers ``regs``
    of the current frame (those holding scalars) and ``locs`` (``(frame, "r"/"s",
    regno/spi)``) are relied upon.  The instruction's own path entry is skipped, as
    the kernel's ``skip_first``: what it needs is its input."""
    bt = Backtrack(len(st.frames) - 1)
    for r in regs:
        if st.regs[r].is_scalar:
            bt.regs[bt.frame].add(r)
    for loc in locs:
        bt.add(loc)
    _run(env, st, bt, True)


def propagate(env: Checker, st: State, old: Node) -> None:
    """propagate_precision: ``st`` was pruned by ``old``; what is precise in ``old`` must
    be precise along ``st``'s path too."""
    if old.all_precise:
        mark_all(env, st)
        return
    if not old.precise:
        return
    bt = Backtrack(len(st.frames) - 1)
    by_frame: dict[int, list[str]] = {}
    for fr, kind, i in sorted(old.precise):
        if fr >= len(st.frames):
            continue
        bt.add((fr, kind, i))
        by_frame.setdefault(fr, []).append(f"r{i}" if kind == "r" else f"fp{-8 * (i + 1)}")
    if env.log.level >= 2:
        for fr in sorted(by_frame, reverse=True):
            env.log.add(f"frame {fr}: propagating {','.join(by_frame[fr])}")
    _run(env, st, bt, False, last=env.pc)


def _run(env: Checker, st: State, bt: Backtrack, skip_first: bool, last: int | None = None) -> None:
    if bt.empty():
        return
    try:
        if _walk(env, st, bt, skip_first, last):
            return
    except _Fallback:
        pass
    mark_all(env, st)


def _walk(env: Checker, st: State, bt: Backtrack, skip_first: bool, last: int | None) -> bool:
    """__mark_chain_precision's loop; True when done, False to fall back."""
    level2 = env.log.level >= 2
    node = st.parent
    entry = st.path
    stop = node.path if node is not None else None
    subseq = -1
    last_idx = entry[0] if last is None and entry is not None else (last if last is not None
                                                                     else -1)
    first_idx = node.pc if node is not None else env.entry_pc
    while True:
        if level2:
            env.log.add(f"mark_precise: frame{bt.frame}: last_idx {last_idx} first_idx "
                        f"{first_idx} subseq_idx {subseq} ")
        while entry is not stop:
            if entry is None:
                return False  # the segment's start was never met
            pc = entry[0]
            if skip_first:
                skip_first = False
            else:
                flag = entry[2] if len(entry) > 2 else None
                if level2:
                    env.log.add(f"mark_precise: frame{bt.frame}: regs={_regs_text(bt)} "
                                f"stack={_slots_text(bt)} before {pc}: "
                                f"{insn_text(env.insns[pc])}")
                _backtrack_insn(env, pc, subseq, flag, bt)
            if bt.empty():
                return True
            subseq = pc
            entry = entry[1]
        if node is None:
            # the path's first state: only a global function's arguments may remain
            return (bt.frame == 0 and not any(bt.slots) and not any(bt.regs[1:])
                    and bt.regs[0] <= ARGS and st.frames[0].subprog > 0)
        frames = node.state.frames
        for fr in range(bt.frame, -1, -1):
            if fr >= len(frames):
                return False
            f = frames[fr]
            for i in sorted(bt.regs[fr]):
                if not f.regs[i].is_scalar or is_precise(node, fr, "r", i):
                    bt.regs[fr].discard(i)
                else:
                    node.precise.add((fr, "r", i))
                    env.precision_changes += 1
            for spi in sorted(bt.slots[fr]):
                if not _is_spilled_scalar(f, spi) or is_precise(node, fr, "s", spi):
                    bt.slots[fr].discard(spi)
                else:
                    node.precise.add((fr, "s", spi))
                    env.precision_changes += 1
            if level2:
                env.log.add(f"mark_precise: frame{fr}: parent state regs={_regs_text(bt, fr)} "
                            f"stack={_slots_text(bt, fr)}: {_state_text(node, fr)}")
        if bt.empty():
            return True
        subseq = node.pc
        entry = node.path
        last_idx = entry[0] if entry is not None else -1
        node = node.parent
        stop = node.path if node is not None else None
        first_idx = node.pc if node is not None else env.entry_pc


def mark_all(env: Checker, st: State) -> None:
    """mark_all_scalars_precise: every checkpoint of ``st``'s path keeps every scalar."""
    if env.log.level >= 2:
        env.log.add(f"mark_precise: frame{len(st.frames) - 1}: falling back to forcing all "
                    "scalars precise")
    node = st.parent
    while node is not None and not node.all_precise:
        node.all_precise = True
        env.precision_changes += 1
        node = node.parent


def _state_text(node: Node, fr: int) -> str:
    """print_verifier_state of the checkpoint's frame ``fr``, every register and slot,
    a precise scalar's value after ``P``."""
    f = node.state.frames[fr]
    text = format_frame(f)
    for i, r in enumerate(f.regs):
        if r.is_scalar and is_precise(node, fr, "r", i):
            text = re.sub(rf"(^| )R{i}=", rf"\g<1>R{i}=P", text, count=1)
    for spi in f.stack:
        if _is_spilled_scalar(f, spi) and is_precise(node, fr, "s", spi):
            text = re.sub(rf"(^| )fp{-8 * (spi + 1)}=", rf"\g<1>fp{-8 * (spi + 1)}=P", text,
                          count=1)  # fmt: skip
    prefix = f" frame{f.frameno}:" if f.frameno else ""
    return f"{prefix} {text}" if text else prefix


def _regs_text(bt: Backtrack, fr: int | None = None) -> str:
    return ",".join(f"r{i}" for i in sorted(bt.regs[bt.frame if fr is None else fr]))


def _slots_text(bt: Backtrack, fr: int | None = None) -> str:
    return ",".join(str(-8 * (i + 1)) for i in sorted(bt.slots[bt.frame if fr is None else fr]))


# --- one instruction backwards ------------------------------------------------------------------


def _sync_linked(bt: Backtrack, flag) -> None:
    """bt_sync_linked_regs: one of the linked scalars wanted means all are."""
    if flag is None or flag[0] != "L":
        return
    locs = flag[1]
    if any(bt.has(loc) for loc in locs):
        for loc in locs:
            bt.add(loc)


_ALU, _MOV, _KEEP, _LDX, _ST, _STX, _ATOMIC, _LDDW, _LDABS, _LOCAL, _CALL, _EXIT, _JUMP, \
    _NONE, _OTHER = range(15)


def _insn_info(env: Checker, pc: int) -> tuple:
    """What backtracking needs of the instruction at ``pc``: (kind tag, dst, src, uses
    src, ALU/atomic op), cached per pc."""
    info = env.bt_info.get(pc)
    if info is not None:
        return info
    spec = env.decoded[pc].spec
    insn = env.insns[pc]
    k = spec.kind if spec is not None else None
    x = spec is not None and "src_reg" in spec.uses
    if k is Kind.MOVSX or (k is Kind.ALU and insn.code & 0xF0 == 0xB0):
        tag = _MOV
    else:
        tag = {Kind.ALU: _ALU, Kind.NEG: _KEEP, Kind.END: _KEEP, Kind.LDX: _LDX,
               Kind.LDXSX: _LDX, Kind.LOAD_ACQ: _LDX, Kind.ST: _ST, Kind.STX: _STX,
               Kind.STORE_REL: _STX, Kind.ATOMIC: _ATOMIC, Kind.LDDW: _LDDW,
               Kind.LD_ABS: _LDABS, Kind.LD_IND: _LDABS, Kind.CALL_LOCAL: _LOCAL,
               Kind.CALL: _CALL, Kind.KFUNC: _CALL, Kind.EXIT: _EXIT, Kind.JUMP: _JUMP,
               Kind.JA: _NONE, Kind.JCOND: _NONE}.get(k, _OTHER)  # fmt: skip
    info = (tag, insn.dst_reg, insn.src_reg, x, spec.op if spec is not None else 0,
            k is Kind.CALL)  # fmt: skip
    env.bt_info[pc] = info
    return info


def _backtrack_insn(env: Checker, pc: int, subseq: int, flag, bt: Backtrack) -> None:
    """backtrack_insn: what was wanted after ``pc`` is wanted before it as ..."""
    tag, d, s, x, op, helper = _insn_info(env, pc)
    regs, slots = bt.regs[bt.frame], bt.slots[bt.frame]
    if flag is not None:
        if flag[0] == "X":
            raise _Fallback
        _sync_linked(bt, flag)
    if tag == _ALU:  # dst op= src: both wanted before it
        if x and s != 10 and d in regs:
            regs.add(s)
    elif tag == _MOV:  # dst = src: src wanted instead
        if d in regs:
            regs.discard(d)
            if x and s != 10:
                regs.add(s)
    elif tag in (_KEEP, _NONE):
        pass
    elif tag == _JUMP:  # dst <op> src: one wanted means both are (not a stack pointer)
        if x and (d in regs or s in regs):
            stack = flag[-1] if flag is not None and flag[0] in "JL" else (False, False)
            if not stack[1]:
                regs.add(s)
            if not stack[0]:
                regs.add(d)
    elif tag == _LDX:
        if d not in regs:
            return
        regs.discard(d)
        if flag is not None and flag[0] == "S":  # a fill: the slot's value is wanted
            bt.slots[flag[1]].add(flag[2])
    elif tag in (_ST, _STX):
        if d in regs:  # a scalar used as an address: pointer subtraction
            raise _Fallback
        if flag is None or flag[0] != "S" or flag[2] not in bt.slots[flag[1]]:
            return
        bt.slots[flag[1]].discard(flag[2])
        if tag == _STX:
            regs.add(s)
    elif tag == _ATOMIC:
        if d in regs or (flag is not None and flag[0] == "S" and not bt.empty()):
            raise _Fallback
        if op == 0xF1:  # cmpxchg: R0 is the old value
            regs.discard(0)
        elif op & 0x01:  # a fetch: the source register is the old value
            regs.discard(s)
    elif tag == _LDDW:
        regs.discard(d)
    elif tag == _LDABS:
        if 0 in regs:
            raise _Fallback
    elif tag == _LOCAL:
        _backtrack_local_call(env, pc, subseq, bt)
        return
    elif tag == _CALL:
        if helper and subseq != pc + 1 and env.calls_callback(pc):
            # backwards from a callback's first insn to the helper that called it
            if regs - ARGS or slots:
                raise _Fallback
            regs.difference_update(ARGS)
            bt.leave()
            return
        regs.discard(0)
        if regs & ARGS:
            raise _Fallback
    elif tag == _EXIT:
        if subseq >= 0 and env.calls_callback(subseq):
            regs.difference_update(ARGS)
        if regs & ARGS:
            raise _Fallback
        prev = env.insns.get(subseq - 1)
        r0 = (prev is not None and prev.code == _CALL_LOCAL_CODE and prev.src_reg == 1
              and 0 in regs)  # fmt: skip
        regs.discard(0)
        bt.enter()
        if r0:
            bt.regs[bt.frame].add(0)
        return
    else:
        raise _Fallback
    if flag is not None:
        _sync_linked(bt, flag)


def _backtrack_local_call(env: Checker, pc: int, subseq: int, bt: Backtrack) -> None:
    regs, slots = bt.regs[bt.frame], bt.slots[bt.frame]
    target = pc + env.insns[pc].imm + 1
    if env.is_global_subprog(target):
        if subseq != pc + 1 or regs & ARGS:
            raise _Fallback
        regs.discard(0)  # a global function always sets R0
        return
    # backwards out of a static subprogram: only its arguments can still be wanted
    if regs - ARGS or slots:
        raise _Fallback
    caller = bt.frame - 1
    if caller < 0:
        raise _Fallback
    bt.regs[caller].update(regs)
    regs.clear()
    bt.leave()
