"""The verifier's structural checks and the privileged xlated rewrites.

Before it interprets anything, ``bpf_check`` (Linux 6.18,
``kernel/bpf/verifier.c``) checks the program's shape, in this order, and
:func:`analyze` does the same:

1. the size: 1 to 1,000,000 slots (``BPF_COMPLEXITY_LIMIT_INSNS``; 4096 for
   an unprivileged loader), checked by ``bpf_prog_load`` with E2BIG and no log;
2. ``add_subprog_and_kfunc``: every ``call local`` and ``ld_imm64`` of a
   function (BPF_PSEUDO_FUNC) starts a subprogram; at most 256;
3. ``check_subprogs``: every jump stays inside its subprogram and a
   subprogram's last slot is ``exit``, ``ja`` or ``gotol``;
4. ``check_btf_info`` without BTF: no LD_ABS or tail call in a subprogram;
5. ``resolve_pseudo_ldimm64``'s well-formedness: LDX modes, ld_imm64 pairs
   and pseudo sources, and opcodes the kernel knows;
6. ``check_cfg``: a walk from instruction 0 along every edge (calls
   included) must reach every instruction, and never land in the
   second half of an ld_imm64.  A privileged loader's loops pass here; the
   abstract interpreter bounds them.

Every check works on *slots* (an ld_imm64 takes two), as the kernel does, so
the messages and the pcs in them are the kernel's.  A failure raises
:class:`~pybpf.errors.VerifierError` with the kernel's wording and errno.

After the abstract interpretation, :func:`check_stack_depth` is
``check_max_stack_depth`` (frames of 512 bytes combined, at most 8 deep, the
256-byte rule for tail calls below subprograms).  The privileged rewrites
of the image that follow live in :mod:`.xlate` and are re-exported here
(:func:`rewrite`, :func:`xlate`, :func:`remap_line_info`); the slot
representation both share is :mod:`.slots`.
"""

from __future__ import annotations

import bisect
import errno
import itertools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass

from pybpf.errors import VerifierError
from pybpf.isa import SPECS, Instruction, Kind, decode
from pybpf.isa.opcodes import CLASS_MASK, MODE_MASK, OP_MASK, SOURCE_MASK, Class, Jmp, Mode
from pybpf.verifier.slots import (
    CALL,
    CALL_OP,
    EXIT,
    EXIT_OP,
    GOTOL,
    JA,
    JA_OP,
    JMP_CLASSES,
    LDDW,
    PSEUDO_CALL,
    PSEUDO_FUNC,
    PSEUDO_KFUNC,
    Slot,
    SlotLike,
    is_cond_jump,
    is_jmp,
    is_pseudo_call,
    is_pseudo_func,
    jump_target,
    slot_view,
    to_slots,
)
from pybpf.verifier.xlate import Xlated, remap_line_info, rewrite, xlate

MAX_INSNS = 1_000_000  # BPF_COMPLEXITY_LIMIT_INSNS, for CAP_BPF
MAX_INSNS_UNPRIV = 4096  # BPF_MAXINSNS
MAX_SUBPROGS = 256  # BPF_MAX_SUBPROGS
MAX_STACK = 512  # MAX_BPF_STACK: all frames of one call chain together
MAX_FRAMES = 8  # MAX_CALL_FRAMES
TAIL_CALL_STACK = 256  # stack of the frames below a subprogram that tail calls
PRIV_STACK_MIN = 64  # BPF_PRIV_STACK_MIN_SIZE
TAIL_CALL_HELPER = 12  # BPF_FUNC_tail_call

_LDIMM64_SOURCES = {0, 1, 2, 3, 4, 5, 6}  # 1 and 5 (map by fd / by index) need imm2 == 0
_MAP_SOURCES = {1, 2, 5, 6}  # a map (by fd or index), or a pointer into its value

# bpf_opcode_in_insntable: the opcode bytes the kernel knows.  The kernel's
# table and pybpf's differ only in callx (0x8d), a uBPF extension.
KNOWN_OPCODES = frozenset(s.code for s in SPECS if s.kind is not Kind.CALLX)


@dataclass(frozen=True)
class Subprog:
    """A subprogram: slots ``[start, end)``; what check_subprogs notes about it."""

    start: int
    end: int
    has_tail_call: bool = False
    has_ld_abs: bool = False


@dataclass(frozen=True)
class Structure:
    """A program that passed the structural checks.

    ``insns`` are the logical instructions, ``pcs[i]`` the slot of
    ``insns[i]``, ``index_of`` the reverse map (slot -> index, first slots
    only).  ``subprogs`` are in pc order, the main program first.
    ``successors`` maps each pc to the pcs control may go to next, as the
    kernel's CFG walk has them: fall-through first, then the jump target or
    the callee (``call local`` and BPF_PSEUDO_FUNC loads); ``exit`` has none.
    """

    insns: tuple[Instruction, ...]
    pcs: tuple[int, ...]
    index_of: Mapping[int, int]
    subprogs: tuple[Subprog, ...]
    successors: Mapping[int, tuple[int, ...]]

    @property
    def length(self) -> int:
        """The program's length in slots."""
        return self.pcs[-1] + self.insns[-1].slots

    def subprog_at(self, pc: int) -> int:
        """The index of the subprogram holding slot ``pc``."""
        for idx, sub in enumerate(self.subprogs):
            if sub.start <= pc < sub.end:
                return idx
        raise ValueError(f"pc {pc} is outside the program")


def _fail(reason: str, pc: int | None, err: int = errno.EINVAL) -> VerifierError:
    return VerifierError(reason, pc=pc, errno=err)


def _check_size(n: int, privileged: bool) -> None:
    limit = MAX_INSNS if privileged else MAX_INSNS_UNPRIV
    if n == 0:
        raise _fail("program has no instructions", None, errno.E2BIG)
    if n > limit:
        raise _fail(f"program of {n} insns is too large (limit {limit})", None, errno.E2BIG)


def _find_subprogs(slots: Sequence[SlotLike], privileged: bool) -> list[int]:
    """add_subprog_and_kfunc: the sorted subprogram starts."""
    starts = {0}
    for pc, s in enumerate(slots):
        if not (is_pseudo_func(s) or is_pseudo_call(s) or
                (s.code == CALL and s.src_reg == PSEUDO_KFUNC)):  # fmt: skip
            continue
        if not privileged:
            raise _fail("loading/calling other bpf or kernel functions are allowed for "
                        "CAP_BPF and CAP_SYS_ADMIN", pc, errno.EPERM)  # fmt: skip
        if s.src_reg == PSEUDO_KFUNC:
            continue  # kfunc BTF ids are checked against the kernel's BTF, not here
        target = pc + s.imm + 1
        if not 0 <= target < len(slots):
            raise _fail("call to invalid destination", pc)
        if target not in starts and len(starts) >= MAX_SUBPROGS:
            raise _fail("too many subprograms", pc, errno.E2BIG)
        starts.add(target)
    return sorted(starts)


def _check_subprogs(slots: Sequence[SlotLike], starts: list[int]) -> tuple[Subprog, ...]:
    """check_subprogs: jumps stay in their subprogram, none falls into the next."""
    bounds = [*starts, len(slots)]
    subs = []
    for start, end in itertools.pairwise(bounds):
        tail = ld_abs = False
        for pc in range(start, end):
            s = slots[pc]
            cls, op = s.code & CLASS_MASK, s.code & OP_MASK
            if s.code == CALL and s.src_reg == 0 and s.imm == TAIL_CALL_HELPER:
                tail = True
            if cls == Class.LD and s.code & MODE_MASK in (Mode.ABS, Mode.IND):
                ld_abs = True
            if is_jmp(s.code) and op not in (Jmp.EXIT, Jmp.CALL):
                target = jump_target(pc, s)
                if not start <= target < end:
                    raise _fail(f"jump out of range from insn {pc} to {target}", pc)
        if slots[end - 1].code not in (EXIT, JA, GOTOL):
            raise _fail("last insn is not an exit or jmp", end - 1)
        subs.append(Subprog(start, end, tail, ld_abs))
    return tuple(subs)


def _check_abnormal_return(subprogs: Sequence[Subprog]) -> None:
    """check_abnormal_return: without BTF, subprograms may not leave abnormally."""
    for sub in subprogs[1:]:
        if sub.has_ld_abs:
            raise _fail("LD_ABS is not allowed in subprogs without BTF", sub.start)
        if sub.has_tail_call:
            raise _fail("tail_call is not allowed in subprogs without BTF", sub.start)


def _check_ldimm64(slots: Sequence[SlotLike],
                   on_map: Callable[[SlotLike], None] | None = None) -> None:  # fmt: skip
    """resolve_pseudo_ldimm64's checks of the encoding; each ld_imm64 of a map is handed
    to ``on_map``, in order (the maps themselves are the caller's)."""
    pc, n = 0, len(slots)
    while pc < n:
        s = slots[pc]
        if s.code & CLASS_MASK == Class.LDX and (
            s.code & MODE_MASK not in (Mode.MEM, Mode.MEMSX) or s.imm != 0
        ):
            raise _fail("BPF_LDX uses reserved fields", pc)
        if s.code == LDDW:
            nxt = slots[pc + 1] if pc + 1 < n else None
            if nxt is None or nxt.code or nxt.dst_reg or nxt.src_reg or nxt.off:
                raise _fail("invalid bpf_ld_imm64 insn", pc)
            if s.src_reg not in _LDIMM64_SOURCES or (s.src_reg in (1, 5) and nxt.imm):
                raise _fail("unrecognized bpf_ld_imm64 insn", pc)
            if on_map is not None and s.src_reg in _MAP_SOURCES:
                on_map(s)
            pc += 2
            continue
        if s.code not in KNOWN_OPCODES:
            raise _fail(f"unknown opcode {s.code:02x}", pc)
        pc += 1


def _edges(pc: int, s: SlotLike) -> tuple[int, ...]:
    """visit_insn's edges of the slot at ``pc``: fall-through first."""
    code = s.code
    if code & CLASS_MASK not in JMP_CLASSES:
        if code == LDDW:
            return (pc + 2, pc + 1 + s.imm) if s.src_reg == PSEUDO_FUNC else (pc + 2,)
        return (pc + 1,)
    op = code & OP_MASK
    if op == EXIT_OP:
        return ()
    if op == CALL_OP:
        return (pc + 1, pc + 1 + s.imm) if s.src_reg == PSEUDO_CALL else (pc + 1,)
    if op == JA_OP and not code & SOURCE_MASK:
        return (jump_target(pc, s),)
    return (pc + 1, pc + 1 + s.off)


def _check_cfg(slots: Sequence[SlotLike], privileged: bool) -> None:
    """check_cfg: every slot is reached from 0; none lands inside an ld_imm64.

    A privileged walk cannot fail on a loop, so plain reachability decides
    (in any order); an unprivileged one is the kernel's depth-first walk,
    fall-through edge first, refusing the first back-edge it meets.
    """
    n = len(slots)
    if privileged:
        state = bytearray(n)
        state[0] = 1
        stack = [0]
        while stack:
            pc = stack.pop()
            for w in _edges(pc, slots[pc]):
                if not 0 <= w < n:
                    raise _fail(f"jump out of range from insn {pc} to {w}", pc)
                if not state[w]:
                    state[w] = 1
                    stack.append(w)
    else:
        state = _depth_first(slots)
    pc = 0
    while pc < n:
        if not state[pc]:
            raise _fail(f"unreachable insn {pc}", pc)
        if slots[pc].code == LDDW:
            if state[pc + 1]:
                raise _fail(f"jump into the middle of ldimm64 insn {pc}", pc)
            pc += 1
        pc += 1


def _depth_first(slots: Sequence[SlotLike]) -> bytearray:
    """The kernel's DFS for an unprivileged loader: the visited slots, or a back-edge refusal."""
    n = len(slots)
    new, active, done = 0, 1, 2
    state = bytearray(n)
    state[0] = active
    stack = [(0, iter(_edges(0, slots[0])))]
    while stack:
        pc, edges = stack[-1]
        for w in edges:
            if not 0 <= w < n:
                raise _fail(f"jump out of range from insn {pc} to {w}", pc)
            if state[w] == new:
                state[w] = active
                stack.append((w, iter(_edges(w, slots[w]))))
                break
            if state[w] == active:
                raise _fail(f"back-edge from insn {pc} to {w}", pc)
        else:
            state[pc] = done
            stack.pop()
    return state


class _Successors(Mapping[int, tuple[int, ...]]):
    """Each instruction's successors (pc -> pcs), computed when asked."""

    def __init__(self, slots: Sequence[SlotLike], pcs: Sequence[int]) -> None:
        self._slots, self._pcs = slots, pcs
        self._starts = frozenset(pcs)

    def __getitem__(self, pc: int) -> tuple[int, ...]:
        if pc not in self._starts:
            raise KeyError(pc)
        return _edges(pc, self._slots[pc])

    def __iter__(self) -> Iterator[int]:
        return iter(self._pcs)

    def __len__(self) -> int:
        return len(self._pcs)


def analyze(
    insns: Sequence[Instruction] | bytes | bytearray,
    *,
    privileged: bool = True,
    btf: bool = False,
    on_map: Callable[[SlotLike], None] | None = None,
) -> Structure:
    """Run the structural checks of ``bpf_check`` on a program, in its order.

    ``insns`` are instructions or raw bytecode (which may hold what an
    Instruction list cannot: a broken ld_imm64 pair).  ``privileged`` is a
    CAP_BPF loader (root), the case pybpf models; without it the kernel's
    unprivileged limits apply (4096 slots, no subprograms, no back-edges).
    ``btf`` says the load carries BTF func or line info; without it the
    kernel refuses LD_ABS and tail calls in subprograms (check_btf_info).
    ``on_map`` is called with each ld_imm64 of a map, in order, where
    resolve_pseudo_ldimm64 checks the map against the program (it raises to refuse).
    Returns the :class:`Structure`; raises
    :class:`~pybpf.errors.VerifierError` naming the kernel's message, the pc
    it is about and its errno (E2BIG for size, EINVAL for shape, EPERM for
    an unprivileged call).
    """
    slots = slot_view(insns)
    _check_size(len(slots), privileged)
    starts = _find_subprogs(slots, privileged)
    subprogs = _check_subprogs(slots, starts)
    if not btf:
        _check_abnormal_return(subprogs)
    _check_ldimm64(slots, on_map)
    _check_cfg(slots, privileged)
    if isinstance(insns, bytes | bytearray):
        logical = tuple(decode(insns, validate=False))  # the pairs are well-formed by now
    else:
        logical = tuple(insns)
    pcs, pc = [], 0
    for insn in logical:
        pcs.append(pc)
        pc += insn.slots
    return Structure(
        insns=logical,
        pcs=tuple(pcs),
        index_of={p: i for i, p in enumerate(pcs)},
        subprogs=subprogs,
        successors=_Successors(slots, pcs),
    )


# --- check_max_stack_depth ---------------------------------------------------


def round_stack_depth(depth: int, *, jit: bool = True) -> int:
    """A frame's size as the kernel counts it: to 16 bytes when JITed, else 32 (min 32)."""
    if jit:
        return -(-depth // 16) * 16
    return -(-max(depth, 1) // 32) * 32


def private_stack(prog_type: int) -> bool:
    """Whether x86-64's JIT gives this program type a private stack (bpf_enable_priv_stack).

    kprobe (2), tracepoint (5), perf_event (7) and raw_tracepoint (17); the
    trampoline types only when they ask for it or may recurse, which pybpf
    does not model.
    """
    return prog_type in (2, 5, 7, 17)


def check_stack_depth(
    structure: Structure,
    depths: Sequence[int],
    calls: Collection[int] | None = None,
    *,
    jit: bool = True,
    private: bool = False,
    async_callbacks: Collection[int] = (),
) -> None:
    """check_max_stack_depth: the stack of every call chain from the main program.

    ``depths[i]`` is the deepest stack byte subprogram ``i`` touched (as the
    abstract interpreter found it; missing entries count 0).  ``calls``
    limits the walk to the call sites at those pcs; None follows every
    ``call local`` and BPF_PSEUDO_FUNC load, as the kernel does (its walk is
    static, so calls in dead code count).  ``jit`` rounds frames as the JIT
    does (16 bytes) rather than the interpreter (32).  ``private`` is
    :func:`private_stack` of the program type: a frame of 64 bytes or more
    then lives apart and only needs to fit 512 bytes itself.
    ``async_callbacks`` are subprogram indexes of timer callbacks: not
    counted where their address is taken, walked as roots of their own.
    Raises VerifierError with no pc (the kernel names none): EACCES for a
    combined size over 512 bytes or a tail call below 256 bytes of frames,
    E2BIG for more than 8 frames.
    """
    for root in sorted({0, *async_callbacks}, reverse=True):
        _StackWalk(structure, depths, calls, jit, async_callbacks).run(root, private and not root)


class _StackWalk:
    """One depth-first walk of the static call graph from a root subprogram."""

    def __init__(self, structure: Structure, depths: Sequence[int],
                 calls: Collection[int] | None, jit: bool,
                 async_callbacks: Collection[int]) -> None:  # fmt: skip
        self.subs = structure.subprogs
        starts = {s.start: i for i, s in enumerate(self.subs)}
        self.sites: list[int] = []  # call sites in pc order
        self.callee: dict[int, tuple[int, bool]] = {}  # site -> (subprogram, is a call)
        for pc, insn in zip(structure.pcs, structure.insns, strict=True):
            local = insn.code == CALL and insn.src_reg == PSEUDO_CALL
            func = insn.code == LDDW and insn.src_reg == PSEUDO_FUNC
            if (local or func) and (calls is None or pc in calls):
                self.sites.append(pc)
                self.callee[pc] = (starts[pc + 1 + insn.imm], local)
        self.frames = [round_stack_depth(depths[i] if i < len(depths) else 0, jit=jit)
                       for i in range(len(self.subs))]  # fmt: skip
        self.async_callbacks = frozenset(async_callbacks)

    def _next_site(self, pc: int, end: int) -> tuple[int, int] | None:
        """The next call site in ``[pc, end)`` to follow: (its pc, the callee's index)."""
        for k in range(bisect.bisect_left(self.sites, pc), len(self.sites)):
            site = self.sites[k]
            if site >= end:
                return None
            callee, local = self.callee[site]
            if callee in self.async_callbacks and not local:
                continue  # an async callback runs on its own stack
            return site, callee
        return None

    def run(self, root: int, private: bool) -> None:
        """Walk every call chain from ``root``; raise on the first one too deep or too big."""
        subs, frames = self.subs, self.frames
        apart = [private and f >= PRIV_STACK_MIN for f in frames]
        stack: list[tuple[int, int]] = []  # (caller, pc to resume scanning at)
        idx, depth, pc = root, 0, subs[root].start
        entering = True
        while True:
            if entering:
                if idx and subs[idx].has_tail_call and depth >= TAIL_CALL_STACK:
                    raise _fail(
                        "tail_calls are not allowed when call stack of previous "
                        f"frames is {depth} bytes. Too large",
                        None,
                        errno.EACCES,
                    )
                if apart[idx]:
                    if frames[idx] > MAX_STACK:
                        raise _fail(f"stack size of subprog {idx} is {frames[idx]}. Too large",
                                    None, errno.EACCES)  # fmt: skip
                else:
                    depth += frames[idx]
                    if depth > MAX_STACK:
                        raise _fail(f"combined stack size of {len(stack) + 1} calls is "
                                    f"{depth}. Too large", None, errno.EACCES)  # fmt: skip
            found = self._next_site(pc, subs[idx].end)
            if found is not None:
                site, callee = found
                stack.append((idx, site + 1))
                idx, pc, entering = callee, subs[callee].start, True
                if len(stack) >= MAX_FRAMES:
                    raise _fail(f"the call stack of {len(stack)} frames is too deep !",
                                None, errno.E2BIG)  # fmt: skip
                continue
            if not stack:
                return
            if not apart[idx]:
                depth -= frames[idx]
            idx, pc = stack.pop()
            entering = False


__all__ = [
    "KNOWN_OPCODES", "MAX_FRAMES", "MAX_INSNS", "MAX_INSNS_UNPRIV", "MAX_STACK", "MAX_SUBPROGS",
    "Slot", "Structure", "Subprog", "Xlated", "analyze", "check_stack_depth", "is_cond_jump",
    "private_stack", "remap_line_info", "rewrite", "round_stack_depth", "to_slots", "xlate",
]  # fmt: skip
