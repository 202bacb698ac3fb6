"""The privileged rewrites of the xlated image after ``do_check`` (Linux 6.18).

For a CAP_BPF loader, once the abstract interpreter has visited what it
can, ``bpf_check`` hard-wires conditional jumps whose other side was never
seen (``opt_hard_wire_dead_code_branches``), removes the slots never seen
(``opt_remove_dead_code``) and the ``ja +0`` / ``may_goto +0`` nops
(``opt_remove_nops``), fixing every jump, call and subprogram start as
``bpf_remove_insns`` and ``bpf_adj_branches`` do.  :func:`xlate` returns the
image with a map from old pcs to new ones; :func:`remap_line_info` carries
BTF line info over as ``bpf_adj_linfo_after_remove`` does.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pybpf.isa import Instruction
from pybpf.verifier.slots import (
    JA,
    MAY_GOTO,
    Slot,
    branch_field,
    is_cond_jump,
    to_instructions,
    to_slots,
)

_T = TypeVar("_T")


@dataclass(frozen=True)
class Xlated:
    """The image after the rewrites: instructions, old slot -> new slot, subprogram starts.

    ``pc_map`` holds every old slot that survived (both slots of a kept
    ld_imm64); a removed slot has no entry.
    """

    insns: tuple[Instruction, ...]
    pc_map: Mapping[int, int]
    subprog_starts: tuple[int, ...]


class _Image:
    """Slots being removed one run at a time, as verifier_remove_insns does.

    Removing slots and fixing every branch after each removal (the kernel's
    way) is quadratic; this keeps each branch's target as an original slot
    instead.  ``bpf_adj_branches`` moves a target by the size of the removed
    run exactly when the run lies before it, whichever side the branch is
    on, so a target only changes when its own slot is removed: it then
    names the slot that takes its place, ``d`` slots past the run when it
    was ``d`` slots into it.  Alive slots are a linked list.
    """

    def __init__(self, slots: list[Slot]) -> None:
        n = len(slots)
        self.slots, self.n = slots, n
        self.alive = [True] * n
        self.next = list(range(1, n + 1))  # n is the end
        self.prev = list(range(-1, n - 1))
        self.head = 0 if n else n
        self.target: dict[int, int] = {}
        self.by_target: dict[int, list[int]] = {}
        for i, s in enumerate(slots):
            field = branch_field(s)
            if field is not None:
                self._aim(i, i + 1 + getattr(s, field))

    def _aim(self, branch: int, target: int) -> None:
        self.target[branch] = target
        self.by_target.setdefault(target, []).append(branch)

    def remove(self, first: int, count: int) -> None:
        """Remove ``count`` alive slots from ``first``; the next ``count`` alive slots follow."""
        run, cur = [], first
        for _ in range(count):
            run.append(cur)
            cur = self.next[cur]
        after = []  # the slots that take the removed ones' places
        for _ in range(count):
            after.append(cur)
            cur = self.next[cur] if cur < self.n else cur + 1
        for d, slot in enumerate(run):
            self.alive[slot] = False
            for branch in self.by_target.pop(slot, ()):
                if self.alive[branch] and self.target[branch] == slot:
                    self._aim(branch, after[d])
        before, last_next = self.prev[first], self.next[run[-1]]
        if before < 0:
            self.head = last_next
        else:
            self.next[before] = last_next
        if last_next < self.n:
            self.prev[last_next] = before

    def rank(self) -> list[int]:
        """New index of every original slot (meaningful for alive ones)."""
        ranks, k = [], 0
        for alive in self.alive:
            ranks.append(k)
            k += alive
        ranks.append(k)
        return ranks

    def finish(self, ranks: list[int]) -> list[Slot]:
        def new(pc: int) -> int:
            if pc < 0:
                return pc
            return ranks[pc] if pc < self.n else ranks[self.n] + pc - self.n

        out = []
        for i, s in enumerate(self.slots):
            if not self.alive[i]:
                continue
            field = branch_field(s)
            if field is not None:
                s = s._replace(**{field: new(self.target[i]) - new(i) - 1})
            out.append(s)
        return out


def seen_slots(insns: Sequence[Instruction], seen: Collection[int]) -> list[bool]:
    marks: list[bool] = []
    pc = 0
    for insn in insns:
        marks += [pc in seen] * insn.slots
        pc += insn.slots
    return marks


def hard_wire(slots: list[Slot], seen: list[bool]) -> None:
    """opt_hard_wire_dead_code_branches: a branch with an unseen side becomes ``ja``."""
    n = len(slots)
    for i, s in enumerate(slots):
        if not is_cond_jump(s.code) or i + 1 >= n or not 0 <= i + 1 + s.off < n:
            continue
        if not seen[i + 1]:
            slots[i] = Slot(JA, 0, 0, s.off, 0)
        elif not seen[i + 1 + s.off]:
            slots[i] = Slot(JA, 0, 0, 0, 0)


_NOPS = {Slot(JA, 0, 0, 0, 0): False, Slot(MAY_GOTO, 0, 0, 0, 0): True}  # -> is may_goto


def xlate(insns: Sequence[Instruction], seen: Collection[int],
          subprog_starts: Iterable[int] = (0,)) -> Xlated:  # fmt: skip
    """The privileged rewrites after do_check, on an image with ``seen`` pcs visited.

    ``seen`` holds the pcs (first slots) the abstract interpreter processed;
    ``subprog_starts`` the pcs of the subprograms.  In the kernel's order: a
    conditional jump (may_goto included) with one successor never seen
    becomes ``ja`` to the other one; then every run of unseen slots is
    removed, jump and call offsets adjusted as ``bpf_adj_branches`` does;
    then every ``ja +0`` and ``may_goto +0`` (the exact encodings, all other
    fields zero) is removed, looking back once after a may_goto as the
    kernel does (so ``may_goto +1; may_goto +0`` both go, ``ja +1; ja +0``
    leaves ``ja +0``).  A subprogram with no slot left disappears from the
    starts.  Linear in the program's size.
    """
    slots = to_slots(insns)
    marks = seen_slots(insns, seen)
    hard_wire(slots, marks)
    image = _Image(slots)
    n, i = len(slots), 0
    while i < n:  # opt_remove_dead_code: maximal unseen runs, left to right
        if marks[i]:
            i += 1
            continue
        j = i
        while j < n and not marks[j]:
            j += 1
        image.remove(i, j - i)
        i = j
    cur = image.head
    while cur < n:  # opt_remove_nops
        s = slots[cur]
        is_nop = s._replace(off=0) in _NOPS and image.target[cur] == image.next[cur]
        if not is_nop:
            cur = image.next[cur]
            continue
        before, after = image.prev[cur], image.next[cur]
        image.remove(cur, 1)
        cur = before if _NOPS[s._replace(off=0)] and before >= 0 else after
    ranks = image.rank()
    out = image.finish(ranks)
    starts = sorted(set(subprog_starts) | {0})
    bounds = [*starts, n]
    kept = []
    for start, end in itertools.pairwise(bounds):
        first = next((k for k in range(start, end) if image.alive[k]), None)
        if first is not None:
            kept.append(ranks[first])
    return Xlated(
        insns=to_instructions(out),
        pc_map={k: ranks[k] for k in range(n) if image.alive[k]},
        subprog_starts=tuple(sorted(set(kept))),
    )


def remap_line_info(line_info: Mapping[int, _T], pc_map: Mapping[int, int],
                    length: int) -> dict[int, _T]:  # fmt: skip
    """Line info (pc -> record) for the rewritten image, as bpf_adj_linfo_after_remove leaves it.

    A record on a kept slot follows it; records on removed slots are
    dropped, except that the last one before a kept slot without a record
    of its own moves onto that slot (so the first instruction after removed
    code still names a source line).  ``pc_map`` and ``length`` (in slots)
    describe the rewrite (:attr:`Xlated.pc_map`, the original length).
    """
    out: dict[int, _T] = {}
    pending = None
    for pc in range(length):
        record = line_info.get(pc)
        if pc in pc_map:
            chosen = record if record is not None else pending
            if chosen is not None:
                out[pc_map[pc]] = chosen
            pending = None
        elif record is not None:
            pending = record
    return out


def rewrite(insns: Sequence[Instruction], seen: Collection[int],
            always: object = None) -> tuple[Instruction, ...]:  # fmt: skip
    """The xlated image after the privileged rewrites (:func:`xlate`'s instructions).

    ``always`` is accepted for callers that record branch directions and is
    not read: the kernel decides a branch's direction from which successor
    was seen, and so does this function.
    """
    del always
    return xlate(insns, seen).insns
