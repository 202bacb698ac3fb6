"""Pruning: explored states and when one covers another (``is_state_visited``).

A :class:`Node` is a state saved at a prune point, with the number of paths
below it still being explored (``branches``); a node with branches left is
on the current path (a loop), one without is finished and safe.
:func:`covers` is the sound form of the kernel's ``states_equal`` that
pybpf uses: registers dead at the pc (static liveness) are ignored, scalars
and pointer offsets compare by range and tnum inclusion, ids by a
consistent mapping, stack slots byte by byte (MISC and INVALID in the old
state cover anything, as with the kernel's ``allow_uninit_stack``).
:func:`widen` is ``widen_imprecise_scalars`` for may_goto loops, without
precision tracking: every scalar that changed becomes unknown.
"""

from __future__ import annotations

from pybpf.isa import Kind
from pybpf.verifier.cfg import Structure
from pybpf.verifier.decode import spec_of
from pybpf.verifier.state import ITER, PKT_TYPES, UNKNOWN, Reg, State
from pybpf.verifier.types import Base


class Node:
    """An explored state at a prune point and how many paths below it are still running."""

    __slots__ = ("branches", "evicted", "hash", "hits", "key", "misses", "parent", "pc", "state")

    def __init__(self, state: State, parent: Node | None, pc: int) -> None:
        self.state = state
        self.parent = parent
        self.branches = 1
        self.hits = self.misses = 0  # how often it covered / failed to cover a state
        self.evicted = False
        self.key: tuple | None = None  # exact_key(state), computed when first compared
        self.hash = 0
        self.pc = pc


def exact_key(st: State) -> tuple:
    return (tuple((tuple(f.regs), tuple(sorted(f.stack.items(), key=lambda kv: kv[0])),
                   f.callsite, f.callback_depth) for f in st.frames), tuple(st.refs), st.lock)


def prev_entry(node, pc: int):
    while node is not None:
        if node.pc == pc:
            return node
        node = node.parent
    return None


def widen(old: State, cur: State) -> None:
    if len(old.frames) != len(cur.frames):
        return
    for fo, fc in zip(old.frames, cur.frames, strict=False):
        for i, (ro, rc) in enumerate(zip(fo.regs, fc.regs, strict=False)):
            if ro.is_scalar and rc.is_scalar and ro.var != rc.var:
                fc.regs[i] = UNKNOWN
        for spi, sc in list(fc.stack.items()):
            so = fo.stack.get(spi)
            if (so is not None and so.spilled is not None and sc.spilled is not None
                    and so.spilled.is_scalar and sc.spilled.is_scalar
                    and so.spilled.var != sc.spilled.var):
                fc.stack[spi] = type(sc)(sc.types, UNKNOWN)


def covers(old: State, cur: State, live, pc: int) -> bool:
    """Whether ``old`` (explored to the end safely) covers ``cur`` at ``pc`` (sound pruning)."""
    if len(old.frames) != len(cur.frames) or bool(old.lock) != bool(cur.lock):
        return False
    if len(old.refs) != len(cur.refs):
        return False
    idmap: dict = {}
    if old.lock and (old.lock[0] != cur.lock[0]
                     or not _check_id(old.lock[1], cur.lock[1], idmap)):  # fmt: skip
        return False
    for a, b in zip(old.refs, cur.refs, strict=False):
        if not _check_id(a[0], b[0], idmap):
            return False
    for depth, (fo, fc) in enumerate(zip(old.frames, cur.frames, strict=False)):
        if fo.callsite != fc.callsite or fo.callback_depth > fc.callback_depth:
            return False
        at = pc if depth == len(old.frames) - 1 else _resume_pc(old.frames[depth + 1])
        regs = live.get(at)
        for i in range(11) if regs is None else regs:
            if not _regsafe(fo.regs[i], fc.regs[i], idmap):
                return False
        for spi, so in fo.stack.items():
            sc = fc.slot(spi)
            if so.types[0] == ITER:  # stacksafe's STACK_ITER rule (iters.py)
                if not _iter_safe(so, sc, idmap):
                    return False
                continue
            for j in range(8):
                to = so.types[j]
                if to == "?":
                    continue
                if to == "m":
                    continue
                tc = sc.types[j]
                if to == "0" and tc == "0":
                    continue
                if to == "0" and tc == "r" and sc.spilled is not None and sc.spilled.is_const(0):
                    continue
                if to != tc:
                    return False
            if so.spilled is not None and so.types[7] == "r" and (
                    sc.spilled is None or not _regsafe(so.spilled, sc.spilled, idmap)):
                return False
    return True


def _iter_safe(old, cur, idmap: dict) -> bool:
    """Iterator slots: same struct and state, references mapped; the depth is not compared,
    so a loop's states converge."""
    o, c = old.spilled, cur.spilled
    if cur.types[0] != ITER or o is None or c is None:
        return False
    return o.map is c.map and o.rng == c.rng and _check_id(o.ref, c.ref, idmap)


def _resume_pc(callee) -> int:
    """Where the caller of frame ``callee`` continues: after the call, or at the
    helper call again when ``callee`` is a callback (the helper may call it again)."""
    return callee.callsite if callee.callback is not None else callee.callsite + 1


def _check_id(a: int, b: int, idmap: dict) -> bool:
    """check_ids: old ids map to current ids one to one (``("cur", b)`` keys hold the
    reverse map, so two old ids never map to one current id)."""
    if not a and not b:
        return True
    if not a or not b:
        return False
    if a in idmap:
        return idmap[a] == b
    if ("cur", b) in idmap:
        return False
    idmap[a] = b
    idmap[("cur", b)] = a
    return True


def _regsafe(o: Reg, c: Reg, idmap: dict) -> bool:
    if o.base is Base.NOT_INIT:
        return True
    if c.base is Base.NOT_INIT:
        return False
    if o.base is Base.SCALAR:
        if not c.is_scalar:
            return False
        if o.id:
            # a current scalar without an id is linked to nothing: a fresh id
            # (check_scalar_ids), so old's id may map to it only once
            cid = c.id or -(len(idmap) + 1)
            if not _check_id(o.id, cid, idmap) or (c.id and o.off != c.off):
                return False
        return c.var.within(o.var)
    if o.base is not c.base or o.flags != c.flags or o.off != c.off or o.map is not c.map:
        return False
    if o.frame != c.frame or o.size != c.size or o.sub != c.sub:
        return False
    if not c.var.within(o.var):
        return False
    if o.base in PKT_TYPES and (c.rng < o.rng if o.rng >= 0 else c.rng != o.rng):
        return False
    return _check_id(o.id, c.id, idmap) and _check_id(o.ref, c.ref, idmap)


def prune_points(s: Structure) -> set[int]:
    points = set()
    for pc, insn in zip(s.pcs, s.insns, strict=False):
        spec = spec_of(insn)  # by opcode, as check_cfg marks them: fields are checked later
        if spec is None:
            continue
        if spec.kind in (Kind.JUMP, Kind.JCOND):
            points.add(pc)
            points.add(pc + 1)
            points.add(pc + 1 + insn.off)
        elif spec.kind is Kind.JA:
            points.add(pc + 1 + (insn.imm if spec.width == 32 else insn.off))
        elif spec.kind in (Kind.CALL, Kind.CALL_LOCAL):
            points.add(pc)
    return points
