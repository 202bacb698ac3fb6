"""Pruning: explored states and when one covers another (``is_state_visited``).

A :class:`Node` is a state saved at a prune point, with the number of paths
below it still being explored (``branches``); a node with branches left is
on the current path (a loop), one without is finished and safe.
:func:`covers` is the sound form of the kernel's ``states_equal`` that
pybpf uses: registers dead at the pc (static liveness) are ignored, scalars
and pointer offsets compare by range and tnum inclusion, ids by a
consistent mapping, stack slots byte by byte (MISC and INVALID in the old
state cover anything, as with the kernel's ``allow_uninit_stack``).  Given
the old state's node (a finished state, the kernel's ``NOT_EXACT``), a
scalar it holds that is not precise (:mod:`.precise`) covers any scalar;
without (a state still on the path, ``RANGE_WITHIN``) every scalar compares
by range.  :func:`widen` is ``widen_imprecise_scalars`` for may_goto loops:
an imprecise scalar that changed since the loop's previous visit becomes
unknown.
"""

from __future__ import annotations

from pybpf.isa import Kind
from pybpf.verifier.cfg import Structure
from pybpf.verifier.decode import spec_of
from pybpf.verifier.precise import is_precise
from pybpf.verifier.state import ITER, MISC, PKT_TYPES, SPILL, UNKNOWN, Reg, State
from pybpf.verifier.types import Base


class Node:
    """An explored state at a prune point and how many paths below it are still running."""

    __slots__ = ("all_precise", "branches", "chain", "evicted", "hash", "hits", "key", "misses",
                 "parent", "path", "pc", "precise", "state")

    def __init__(self, state: State, parent: Node | None, pc: int) -> None:
        self.state = state
        self.parent = parent
        self.branches = 1
        self.hits = self.misses = 0  # how often it covered / failed to cover a state
        self.evicted = False
        self.key: tuple | None = None  # exact_key(state), computed when first compared
        self.hash = 0
        self.pc = pc
        self.path = state.path  # the path entry before pc: where this state's segment ends
        self.precise: set[tuple[int, str, int]] = set()  # (frame, "r"/"s", regno/spi)
        self.all_precise = False  # mark_all_scalars_precise reached this state
        self.chain: tuple | None = None  # its loop's callchain (see sccs), None: in no loop


def exact_key(st: State) -> tuple:
    return (tuple((tuple(f.regs), tuple(sorted(f.stack.items(), key=lambda kv: kv[0])),
                   f.callsite, f.callback_depth) for f in st.frames), tuple(st.refs), st.lock)


def prev_entry(node, pc: int):
    while node is not None:
        if node.pc == pc:
            return node
        node = node.parent
    return None


def widen(old: Node, cur: State) -> None:
    """widen_imprecise_scalars: a scalar imprecise in ``old`` (both sides scalars) that
    changed becomes unknown in ``cur``."""
    if len(old.state.frames) != len(cur.frames):
        return
    for fr, (fo, fc) in enumerate(zip(old.state.frames, cur.frames, strict=False)):
        for i, (ro, rc) in enumerate(zip(fo.regs, fc.regs, strict=False)):
            if (ro.is_scalar and rc.is_scalar and ro.var != rc.var
                    and not is_precise(old, fr, "r", i)):
                fc.regs[i] = UNKNOWN
        for spi, sc in list(fc.stack.items()):
            so = fo.stack.get(spi)
            if (so is not None and so.spilled is not None and sc.spilled is not None
                    and so.spilled.is_scalar and sc.spilled.is_scalar
                    and so.spilled.var != sc.spilled.var and not is_precise(old, fr, "s", spi)):
                fc.stack[spi] = type(sc)(sc.types, UNKNOWN)


def covers(old: State, cur: State, live, pc: int, node: Node | None = None,
           stack_live=None) -> bool:  # fmt: skip
    """Whether ``old`` covers ``cur`` at ``pc`` (sound pruning); ``node``, old's node when
    old has finished (its imprecise scalars cover any scalar), None to compare every
    scalar by range; ``stack_live`` (:func:`stack_liveness`) leaves out the innermost
    frame's slots read no more."""
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
            o = fo.regs[i]
            if (node is not None and o.is_scalar and not is_precise(node, depth, "r", i)):
                if fc.regs[i].is_scalar:
                    continue
                return False
            if not _regsafe(o, fc.regs[i], idmap):
                return False
        slots = stack_live.get(pc) if stack_live is not None and depth == len(old.frames) - 1 \
            else None  # fmt: skip
        for spi, so in fo.stack.items():
            if slots is not None and spi not in slots:
                continue  # the frame reads it no more (a callee may: outer frames keep all)
            sc = fc.slot(spi)
            if so.types[0] == ITER:  # stacksafe's STACK_ITER rule (iters.py)
                if not _iter_safe(so, sc, idmap):
                    return False
                continue
            imprecise = (node is not None and so.spilled is not None and so.types[7] == SPILL
                         and so.spilled.is_scalar and not is_precise(node, depth, "s", spi))
            if (so.types == SPILL * 8 and so.spilled is not None and so.spilled.is_scalar
                    and not sc.types.strip(MISC + "?")):
                # scalar_reg_for_stack: bytes all MISC (or uninitialised, which a
                # privileged program may read) load an unknown scalar
                if imprecise or _regsafe(so.spilled, UNKNOWN, idmap):
                    continue
                return False
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
            if so.spilled is not None and so.types[7] == "r":
                if sc.spilled is None:
                    return False
                if imprecise and sc.spilled.is_scalar:
                    continue
                if not _regsafe(so.spilled, sc.spilled, idmap):
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


def prune_points(s: Structure, calls_callback=lambda pc: False) -> tuple[set[int], set[int]]:
    """The prune points and the jump points (``mark_prune_point``, ``mark_jmp_point`` of
    check_cfg's ``visit_insn``), by opcode as check_cfg marks them (fields are checked
    later): a conditional jump and its target; an unconditional jump's target; the
    instruction after a call, a bpf-to-bpf call and its callee's first instruction, a
    helper call that calls a callback.  Arriving at a jump point (a branch target, the
    instruction after a call, a callback-calling call) makes an entry in the state's
    instruction history."""
    prune, jmp = set(), set()
    for pc, insn in zip(s.pcs, s.insns, strict=False):
        spec = spec_of(insn)
        if spec is None:
            continue
        if spec.kind in (Kind.JUMP, Kind.JCOND):
            prune.update((pc, pc + 1 + insn.off))
            jmp.add(pc + 1 + insn.off)
        elif spec.kind is Kind.JA:
            target = pc + 1 + (insn.imm if spec.width == 32 else insn.off)
            prune.add(target)
            jmp.add(target)
        elif spec.kind in (Kind.CALL, Kind.CALL_LOCAL, Kind.KFUNC):
            prune.add(pc + 1)
            jmp.add(pc + 1)
            if spec.kind is Kind.CALL_LOCAL:
                prune.update((pc, pc + 1 + insn.imm))
                jmp.add(pc + 1 + insn.imm)
            elif spec.kind is Kind.CALL and calls_callback(pc):
                prune.add(pc)
                jmp.add(pc)
    return prune, jmp


def successors(s: Structure) -> dict[int, list[int]]:
    """Where each instruction goes on within its function (a call to the next one)."""
    succ: dict[int, list[int]] = {}
    for pc, insn in zip(s.pcs, s.insns, strict=False):
        spec = spec_of(insn)
        nxt = pc + insn.slots
        if spec is None or spec.kind is Kind.EXIT:
            succ[pc] = []
        elif spec.kind is Kind.JA:
            succ[pc] = [pc + 1 + (insn.imm if spec.width == 32 else insn.off)]
        elif spec.kind in (Kind.JUMP, Kind.JCOND):
            succ[pc] = [nxt, pc + 1 + insn.off]
        else:
            succ[pc] = [nxt]
    return succ


ALL_SLOTS = -1  # in a stack liveness set: any slot may be read


def _slot_uses_defs(insn) -> tuple[set[int], set[int]]:
    """The stack slots an instruction reads and writes whole, through r10 at a fixed
    offset; a read that may reach the stack otherwise (another pointer, a call, an
    atomic elsewhere) reads them all."""
    spec = spec_of(insn)
    if spec is None:
        return {ALL_SLOTS}, set()
    k = spec.kind
    size = spec.width // 8
    if k in (Kind.LDX, Kind.LDXSX, Kind.LOAD_ACQ):
        if insn.src_reg != 10:
            return {ALL_SLOTS}, set()
        return {(-a - 1) // 8 for a in range(insn.off, insn.off + size) if a < 0}, set()
    if k in (Kind.ST, Kind.STX, Kind.STORE_REL):
        if insn.dst_reg == 10 and size == 8 and insn.off % 8 == 0 and insn.off < 0:
            return set(), {(-insn.off - 1) // 8}
        return set(), set()
    if k is Kind.ATOMIC:
        if insn.dst_reg != 10:
            return {ALL_SLOTS}, set()
        return {(-a - 1) // 8 for a in range(insn.off, insn.off + size) if a < 0}, set()
    if k in (Kind.CALL, Kind.CALL_LOCAL, Kind.KFUNC, Kind.CALLX):
        return {ALL_SLOTS}, set()
    return set(), set()


def stack_liveness(s: Structure) -> dict[int, frozenset[int] | None]:
    """The stack slots of its own frame a function may read from each pc on before
    writing them whole (None: any), as the kernel's stack liveness leaves the others
    out of the state comparison.  Conservative: only accesses through r10 at fixed
    offsets are followed; any other read, a call included, keeps every slot."""
    succ = successors(s)
    info = {pc: _slot_uses_defs(insn) for pc, insn in zip(s.pcs, s.insns, strict=False)}
    live: dict[int, frozenset[int]] = {pc: frozenset() for pc in s.pcs}
    changed = True
    while changed:
        changed = False
        for pc in reversed(s.pcs):
            out: set[int] = set()
            for n in succ[pc]:
                out |= live.get(n, frozenset())
            uses, defs = info[pc]
            new = frozenset({ALL_SLOTS}) if ALL_SLOTS in uses or ALL_SLOTS in out \
                else frozenset(uses | (out - defs))  # fmt: skip
            if new != live[pc]:
                live[pc] = new
                changed = True
    return {pc: None if ALL_SLOTS in v else v for pc, v in live.items()}


def sccs(s: Structure, calls_callback=lambda pc: False) -> dict[int, int]:
    """compute_scc: the loops of the program, as the strongly connected components of
    its instruction graph (a call goes on to the next instruction; a helper calling a
    callback is a loop of its own, as the callback's visits return to it); the
    component of each instruction in one, numbered from 1."""
    succ = successors(s)
    for pc in s.pcs:
        if calls_callback(pc):
            succ[pc] = [*succ[pc], pc]
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    out: dict[int, int] = {}
    count = 0
    for root in s.pcs:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            edges = [w for w in succ.get(v, ()) if w in succ]
            if i < len(edges):
                work.append((v, i + 1))
                w = edges[i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in succ[v]:
                    count += 1
                    for w in comp:
                        out[w] = count
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return out


def callchain(st: State, pc: int, scc: dict[int, int]) -> tuple | None:
    """compute_scc_callchain: the callsites down to the outermost frame whose
    instruction (``pc`` for the innermost) is in a loop, and that loop; None: none is."""
    sites = []
    for i in range(len(st.frames)):
        at = pc if i == len(st.frames) - 1 else st.frames[i + 1].callsite
        found = scc.get(at)
        if found:
            return (tuple(sites), found)
        sites.append(at)
    return None


class Visit:
    """bpf_scc_visit: a loop being explored on one callchain, from its first state (the
    entry) until that state finishes; the hits against states of the loop whose
    precision was not final yet (backedges), to propagate again when it finishes."""

    __slots__ = ("backedges", "entry")

    def __init__(self, entry: Node) -> None:
        self.entry = entry
        self.backedges: list[tuple[State, Node]] = []
