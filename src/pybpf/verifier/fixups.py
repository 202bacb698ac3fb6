"""The kernel's last rewrites of a verified program, as ``bpftool prog dump xlated`` shows them.

After ``do_check`` and the dead-code passes (:mod:`.xlate`), ``bpf_check`` rewrites
the image once more before it is kept, and ``bpf_prog_info.xlated_prog_insns`` (so
``prog dump xlated`` and ``bytes_xlated``) shows the result:

* ``convert_ctx_accesses``: a load or store through the context pointer becomes
  accesses of the kernel's own struct (``xdp_md->data_end`` is ``xdp_buff->data_end``,
  an 8-byte load at another offset; ``__sk_buff->ifindex`` is ``skb->dev->ifindex``,
  three instructions), a narrower load of a field loads it whole and then shifts and
  masks (``xdp_convert_ctx_access``, ``bpf_convert_ctx_access``,
  ``tc_cls_act_convert_ctx_access`` in net/core/filter.c);
* ``do_misc_fixups``: division and modulo by a register get their zero guards,
  LD_ABS / LD_IND become calls of the skb load helpers (``bpf_gen_ld_abs``), a map
  lookup is inlined by the map's ``map_gen_lookup`` (array, hash, LRU hash), the
  other map helpers call the map's own operation (``htab_map_update_elem``) and every
  helper call names the kernel function that implements it;
* ``fixup_kfunc_call``: a kfunc call names the kernel function (the kernel puts its
  address in ``imm``; the shown image keeps the object's BTF id there, as helper
  calls keep their id), except ``bpf_cast_to_kern_ctx`` and ``bpf_rdonly_cast``,
  which ``specialize_kfunc`` turns into ``r0 = r1``.

The context conversions live in :mod:`.ctx_convert`, the helper-call rewrites in
:mod:`.helper_fixups`, the instruction macros in :mod:`.kinsn`; this module holds the
rest of ``do_misc_fixups`` (division guards, LD_ABS, may_goto, ``bpf_loop`` and
bpf_fastcall) and lays the patches out.

pybpf's engines keep executing the image before these rewrites (with the uapi
context layouts): this module only builds the *shown* image, a pure function of the
kept image, the verifier's per-instruction facts (which accesses go through the
context, which map a helper call was given) and the kernel's struct layouts
(:mod:`pybpf.uapi.klayout`).  Branches, subprogram starts and line info move as
``bpf_patch_insn_data`` moves them: a jump to a rewritten instruction lands on the
first instruction of its replacement.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pybpf.isa import Instruction, slot_offsets
from pybpf.isa.helper_ids import helper_id, helper_name
from pybpf.isa.opcodes import CLASS_MASK, OP_MASK, CallKind
from pybpf.uapi.klayout import Layouts, snapshot
from pybpf.verifier.ctx_convert import ctx_patch
from pybpf.verifier.ctx_skb import LWT_XMIT, SCHED_ACT, SCHED_CLS, SK_BUFF
from pybpf.verifier.helper_fixups import call_patch, helper_symbol, inlined_helper
from pybpf.verifier.helper_protos import KERNEL_PROTOS
from pybpf.verifier.kfunc_proto import VOID
from pybpf.verifier.kfuncs import KF, kfunc
from pybpf.verifier.kinsn import (
    ABS,
    ADD,
    ALU,
    ALU64,
    AND,
    AX,
    BYTES,
    CALL,
    DIV,
    EXIT,
    IND,
    JEQ,
    JGE,
    JGT,
    JLE,
    JMP,
    JMP32,
    JNE,
    JSGE,
    LD,
    LDX,
    MEM,
    MOD,
    MOV,
    NEG,
    PSEUDO_CALL,
    SIZE,
    SK_SKB,
    ST,
    STX,
    SUB,
    XOR,
    K,
    Patch,
    Target,
    X,
    _round8,
    alu32_imm,
    alu64_imm,
    alu64_reg,
    call,
    ja,
    jmp_imm,
    ldx,
)
from pybpf.verifier.protos import Ret
from pybpf.verifier.slots import Slot, branch_field, to_instructions, to_slots
from pybpf.verifier.types import Base


@dataclass(frozen=True)
class Site:
    """What the verifier knew of one instruction of the kept image.

    ``ptr``: the load or store goes through the context pointer or a socket
    (insn_aux_data's ``ptr_type``: PTR_TO_CTX, PTR_TO_SOCKET / SOCK_COMMON, TCP_SOCK,
    XDP_SOCK); ``map``: the one map a helper call was given
    (``map_ptr_state``; None when none or when paths gave different maps); ``loop``:
    the callback of a bpf_loop call every path made with the same callback and zero
    flags (``loop_inline_state.fit_for_inline``), with the ``stack_depth`` of the
    subprogram making it; ``kfunc``: the prototype of the kfunc a kfunc call names
    (:class:`~pybpf.verifier.kfunc_proto.KfuncProto`).
    """

    ptr: str | None = None  # "ctx", "sock", "tcp_sock" or "xdp_sock": what a load goes through
    map: object | None = None
    loop: int | None = None  # a bpf_loop call fit to inline: its callback's pc
    stack_depth: int = 0  # the stack bytes of the subprogram holding a bpf_loop call
    kfunc: object | None = None  # a kfunc call: the kfunc's prototype


@dataclass(frozen=True)
class View:
    """The image ``prog dump xlated`` shows.

    ``symbols`` names, by pc, the kernel function each helper call reaches
    (``__htab_map_lookup_elem``, ``bpf_trace_printk``); ``pc_map`` maps every pc of
    the kept image to the pc of its replacement's first instruction.
    """

    insns: tuple[Instruction, ...]
    symbols: Mapping[int, str] = field(default_factory=dict)
    pc_map: Mapping[int, int] = field(default_factory=dict)

    @property
    def slots(self) -> int:
        return sum(i.slots for i in self.insns)


# --- do_misc_fixups ------------------------------------------------------------------------
def _div_guard(si: Instruction) -> list[Instruction] | None:
    """Division and modulo by a register: the zero (and signed -1) guards."""
    cls, op = si.code & CLASS_MASK, si.code & OP_MASK
    if cls not in (ALU, ALU64) or op not in (DIV, MOD):
        return None
    is64, isdiv, signed = cls == ALU64, op == DIV, si.off == 1
    jcls, acls = (JMP, ALU64) if is64 else (JMP32, ALU)
    d = si.dst_reg
    if si.code & X == K:
        if signed and si.imm == -1:  # x s/ -1 is -x, x s% -1 is 0
            return [Instruction(acls | NEG | K, d)] if isdiv else [Instruction(ALU | MOV | K, d)]
        return None
    s = si.src_reg
    if signed and isdiv:
        return [alu64_reg(MOV, AX, s), Instruction(acls | ADD | K, AX, 0, 0, 1),
                jmp_imm(JGT, AX, 1, 4, jcls), jmp_imm(JEQ, AX, 0, 1, jcls),
                Instruction(acls | MOV | K, d), Instruction(acls | NEG | K, d), ja(1), si]
    if signed:
        out = [alu64_reg(MOV, AX, s), Instruction(acls | ADD | K, AX, 0, 0, 1),
               jmp_imm(JGT, AX, 1, 3, jcls), jmp_imm(JEQ, AX, 1, 3 + (0 if is64 else 1), jcls),
               Instruction(ALU | MOV | K, d), ja(1), si, ja(1),
               Instruction(ALU | MOV | X, d, d)]  # fmt: skip
        return out[:-2] if is64 else out
    if isdiv:
        return [jmp_imm(JNE, s, 0, 2, jcls), Instruction(ALU | XOR | X, d, d), ja(1), si]
    out = [jmp_imm(JEQ, s, 0, 1 + (0 if is64 else 1), jcls), si, ja(1),
           Instruction(ALU | MOV | X, d, d)]  # fmt: skip
    return out[:-2] if is64 else out


def _ld_abs(si: Instruction) -> Patch:
    """bpf_gen_ld_abs: LD_ABS / LD_IND call bpf_skb_load_helper_*_no_cache on R6."""
    out: Patch = []
    if si.code & 0xE0 == ABS:
        out.append((alu64_imm(MOV, 2, si.imm), None))
    else:
        out.append((alu64_reg(MOV, 2, si.src_reg), None))
        if si.imm:
            out.append((alu64_imm(ADD, 2, si.imm), None))
    out.append((alu64_reg(MOV, 1, 6), None))
    bits = 8 * BYTES[si.code & 0x18]
    out.append((call(), f"bpf_skb_load_helper_{bits}_no_cache"))
    out += [(jmp_imm(JSGE, 0, 0, 2), None), (Instruction(ALU | XOR | X, 0, 0), None),
            (Instruction(EXIT), None)]
    return out


MAX_LOOPS = 8 * 1024 * 1024  # BPF_MAX_LOOPS
E2BIG = 7


def _inline_loop(callback: int, stack_depth: int) -> Patch:
    """inline_bpf_loop (optimize_bpf_loop): the loop in place, R6-R8 spilled below the
    subprogram's stack for the bound, the counter and the context."""
    base = -(stack_depth + 24 + _round8(stack_depth) - stack_depth)
    r6, r7, r8 = base, base + 8, base + 16
    out: Patch = [(jmp_imm(JLE, 1, MAX_LOOPS, 2), None), (alu32_imm(MOV, 0, -E2BIG), None),
                  (ja(16), None)]
    out += [(Instruction(STX | MEM | SIZE[8], 10, r, off), None)
            for r, off in ((6, r6), (7, r7), (8, r8))]
    out += [(alu64_reg(MOV, 6, 1), None), (alu32_imm(MOV, 7, 0), None),
            (alu64_reg(MOV, 8, 3), None), (Instruction(JMP | JGE | X, 7, 6, 5), None),
            (alu64_reg(MOV, 1, 7), None), (alu64_reg(MOV, 2, 8), None),
            (Instruction(CALL, 0, PSEUDO_CALL), Target(callback)),
            (alu64_imm(ADD, 7, 1), None), (jmp_imm(JEQ, 0, 0, -6), None),
            (alu64_reg(MOV, 0, 7), None)]
    out += [(ldx(8, r, 10, off), None) for r, off in ((6, r6), (7, r7), (8, r8))]
    return out


_PTRS = {Base.PTR_TO_CTX: "ctx", Base.PTR_TO_SOCKET: "sock", Base.PTR_TO_SOCK_COMMON: "sock",
         Base.PTR_TO_TCP_SOCK: "tcp_sock", Base.PTR_TO_XDP_SOCK: "xdp_sock"}  # fmt: skip


def sites(checker, pc_map: Mapping[int, int]) -> dict[int, Site]:
    """The verifier's per-instruction facts (``aux_ptr``, ``aux_map`` of a finished
    :class:`~pybpf.verifier.check.Checker`), by pc of the kept image (``pc_map``)."""
    ctx = {pc: _PTRS[base] for pc, (base, _) in checker.aux_ptr.items() if base in _PTRS}
    loops = {pc: start for pc, (start, fit) in checker.aux_loop.items() if fit}
    table = getattr(checker.target, "kfuncs", None) or {}
    kfuncs = {pc: table[insn.imm] for pc, insn in zip(checker.structure.pcs,
                                                      checker.structure.insns, strict=True)
              if insn.code == CALL and insn.src_reg == CallKind.KFUNC
              and insn.imm in table}  # fmt: skip
    out: dict[int, Site] = {}
    for pc in set(ctx) | set(checker.aux_map) | set(loops) | set(kfuncs):
        if pc not in pc_map:
            continue
        loop, depth = loops.get(pc), 0
        if loop is not None:
            loop = pc_map.get(loop)
            subs = checker.structure.subprogs
            index = next(i for i, s in enumerate(subs) if s.start <= pc < s.end)
            depth = checker.depths.get(index, 0)
        out[pc_map[pc]] = Site(ptr=ctx.get(pc), map=checker.aux_map.get(pc), loop=loop,
                               stack_depth=depth, kfunc=kfuncs.get(pc))  # fmt: skip
    return out


def subprog_depths(checker, pc_map: Mapping[int, int]) -> dict[int, int]:
    """Each kept subprogram's start (pc of the kept image) -> the stack bytes it uses."""
    out = {}
    for i, sub in enumerate(checker.structure.subprogs):
        if sub.start in pc_map:
            out[pc_map[sub.start]] = checker.depths.get(i, 0)
    return out


MAY_GOTO = 0xE5
MAX_TIMED_LOOPS = 0xFFFF  # BPF_MAX_TIMED_LOOPS


def _may_goto(si: Instruction, pc: int, depth: int) -> Patch:
    """A may_goto with the x86-64 JIT's timed loop budget: a count in the two stack slots
    below the subprogram's, refilled by arch_bpf_timed_may_goto until time runs out."""
    cnt = -_round8(depth) - 16
    out_of_budget = Target(pc + 1 + si.off)
    return [(ldx(8, AX, 10, cnt), None), (jmp_imm(JEQ, AX, 0, 0), out_of_budget),
            (alu64_imm(SUB, AX, 1), None), (jmp_imm(JNE, AX, 0, 2), None),
            (alu64_imm(MOV, AX, cnt), None), (call(), "arch_bpf_timed_may_goto"),
            (Instruction(STX | MEM | SIZE[8], 10, AX, cnt), None)]  # fmt: skip


def _budget_init(depth: int) -> Patch:
    """The may_goto budget's initial values, stored at the subprogram's start."""
    cnt = -_round8(depth) - 16
    return [(Instruction(ST | MEM | SIZE[8], 10, 0, cnt, MAX_TIMED_LOOPS), None),
            (Instruction(ST | MEM | SIZE[8], 10, 0, cnt + 8, 0), None)]


CALLER_SAVED = (0, 1, 2, 3, 4, 5)
STX_DW, LDX_DW = STX | MEM | SIZE[8], LDX | MEM | SIZE[8]


def _call_summary(insn: Instruction, site: Site | None,
                  lay: Layouts) -> tuple[frozenset[int], bool] | None:  # fmt: skip
    """get_call_summary for the bpf_fastcall pattern: the caller-saved registers a call
    clobbers (R0 unless void, R1.. one per parameter) and whether it keeps the others
    (an allow_fastcall helper the kernel inlines, a KF_FASTCALL kfunc).  As in 6.18, a
    pattern around any other helper or kfunc call keeps the subprogram's stack
    (keep_fastcall_stack)."""
    if insn.code != CALL:
        return None
    if insn.src_reg == 0:  # an allow_fastcall helper keeps the others if x86-64 inlines it
        helper = KERNEL_PROTOS.get(insn.imm)
        if helper is None:
            return None
        first = 1 if helper.ret is Ret.VOID else 0
        return frozenset(range(first, len(helper.args) + 1)), \
            helper.allow_fastcall and inlined_helper(helper_name(insn.imm) or "", lay)
    proto = site.kfunc if site is not None else None
    facts = kfunc(proto.name) if insn.src_reg == CallKind.KFUNC and proto else None
    if facts is None:
        return None
    first = 1 if proto.ret == VOID else 0
    return frozenset(range(first, len(proto.args) + 1)), bool(facts.flags & KF.FASTCALL)


def _fastcall(insns: Sequence[Instruction], depths: dict[int, int], lay: Layouts,
              sites: Mapping[int, Site]) -> set[int]:  # fmt: skip
    """mark_fastcall_patterns and remove_fastcall_spills_fills: around a call of an inlined
    bpf_fastcall helper or a bpf_fastcall kfunc, the spills and fills of the registers it
    keeps are dropped, and the subprogram's stack ends above them (``depths`` is
    updated).  The pcs dropped."""
    pcs = slot_offsets(insns)
    at = dict(zip(pcs, insns, strict=True))
    order = {pc: i for i, pc in enumerate(pcs)}
    targets = set()
    for pc, insn in at.items():
        fld = branch_field(to_slots([insn])[0])
        if fld is not None and not (insn.code == CALL and insn.src_reg == 1):
            targets.add(pc + 1 + getattr(insn, fld))
    starts = sorted(depths)
    bounds = [*starts, pcs[-1] + at[pcs[-1]].slots if pcs else 0]
    removed: set[int] = set()
    for start, end in itertools.pairwise(bounds):
        body = [pc for pc in pcs if start <= pc < end]
        lowest = min([at[pc].off for pc in body if at[pc].code == STX_DW
                      and at[pc].dst_reg == 10] + [0])  # fmt: skip
        pattern: set[int] = set()
        drop: set[int] = set()
        area, keep = None, False
        for pc in body:
            summary = _call_summary(at[pc], sites.get(pc), lay)
            if summary is None:
                continue
            clobbered, inlined = summary
            expected = set(CALLER_SAVED) - clobbered
            i, off, k = 1, lowest, order[pc]
            pairs = []
            while i <= len(CALLER_SAVED) and k - i >= 0 and k + i < len(pcs):
                before, after = pcs[k - i], pcs[k + i]
                if pcs[k - i + 1] in targets or after in targets:
                    break
                stx, ldx_ = at[before], at[after]
                spill = stx.code == STX_DW and stx.dst_reg == 10 and stx.off == off
                fill = ldx_.code == LDX_DW and ldx_.src_reg == 10 and ldx_.off == off
                if not (spill and fill and stx.src_reg == ldx_.dst_reg in expected):
                    break
                expected.discard(stx.src_reg)
                pairs += [before, after]
                i, off = i + 1, off + 8
            if i == 1:
                continue
            pattern.update(pairs)
            if inlined:
                drop.update(pairs)
            keep = keep or not inlined
            area = off if area is None else min(area, off)
        if area is None or not drop:
            continue
        touched = any(at[pc].off < area and 10 in (at[pc].dst_reg, at[pc].src_reg)
                      and pc not in pattern and at[pc].code & 7 in (LDX, ST, STX)
                      for pc in body)  # check_fastcall_stack_contract, for r10 accesses
        if touched or any(at[pc].code == ALU64 | MOV | X and at[pc].src_reg == 10
                          for pc in body):  # a stack pointer escapes: assume it reaches
            continue
        removed |= drop
        if not keep:
            depths[start] = -area
    return removed


#: specialize_kfunc: the kfuncs whose call becomes ``r0 = r1`` (they return their argument)
_IDENTITY_KFUNCS = frozenset({"bpf_cast_to_kern_ctx", "bpf_rdonly_cast"})


def _kfunc_patch(si: Instruction, name: str) -> Patch:
    """fixup_kfunc_call: the call names its kernel function, or is ``r0 = r1``."""
    if name in _IDENTITY_KFUNCS:
        return [(alu64_reg(MOV, 0, 1), None)]
    return [(si, name)]


# --- patching --------------------------------------------------------------------------------
TC_ACT_SHOT, SK_DROP = 2, 0
#: the program types whose gen_prologue unclones the skb before a direct packet write,
#: with the verdict the prologue returns when it cannot
_UNCLONE = {SCHED_CLS: TC_ACT_SHOT, SCHED_ACT: TC_ACT_SHOT, LWT_XMIT: TC_ACT_SHOT,
            SK_SKB: SK_DROP}  # fmt: skip
CLONED_MASK = 1  # the cloned bit of sk_buff's __cloned_offset byte (little endian)


def _unclone_prologue(prog_type: int, lay: Layouts) -> Patch:
    """bpf_unclone_prologue: a cloned skb is pulled (made private) before the program."""
    pull = helper_id("skb_pull_data") or 39
    return [(ldx(1, 6, 1, lay.off("sk_buff.__cloned_offset")), None),
            (alu32_imm(AND, 6, CLONED_MASK), None), (jmp_imm(JEQ, 6, 0, 7), None),
            (alu64_reg(MOV, 6, 1), None), (alu64_reg(XOR, 2, 2), None),
            (call(pull), helper_symbol(pull, prog_type)), (jmp_imm(JEQ, 0, 0, 2), None),
            (alu32_imm(MOV, 0, _UNCLONE[prog_type]), None), (Instruction(EXIT), None),
            (alu64_reg(MOV, 1, 6), None)]  # fmt: skip


def kernel_view(insns: Sequence[Instruction], prog_type: int,
                sites: Mapping[int, Site] | None = None, *, direct_write: bool = False,
                depths: Mapping[int, int] | None = None,
                layouts: Layouts | None = None) -> View:  # fmt: skip
    """The shown image of the kept image ``insns`` (see the module docstring).

    ``sites`` holds, by pc of ``insns``, what the verifier knew of an instruction
    (:class:`Site`); ``direct_write`` whether it allowed a direct packet write
    (``seen_direct_write``: tc and sk_skb programs then start with the unclone
    prologue); ``depths`` the stack bytes of each subprogram, by start pc; ``layouts``
    the kernel's struct layouts (default: the snapshot).
    """
    lay = layouts or snapshot()
    sites = sites or {}
    depths = dict(depths or {0: 0})
    starts = sorted(depths)
    dropped = _fastcall(insns, depths, lay, sites)
    typed_at = SK_BUFF["tstamp_type"][0]
    stamp_typed = any(site.ptr == "ctx" and insn.off == typed_at and insn.code & 7 == LDX
                      for insn, site in ((i, sites.get(pc)) for pc, i in
                                         zip(slot_offsets(insns), insns, strict=True))
                      if site is not None)  # fmt: skip
    budgets: set[int] = set()  # subprograms with a may_goto
    patches: list[Patch] = []
    pc = 0
    for insn in insns:
        site = sites.get(pc, Site())
        patch: Patch | None = [] if pc in dropped else None
        if patch is None and insn.code == MAY_GOTO:
            sub = max((s for s in starts if s <= pc), default=0)
            budgets.add(sub)
            patch = _may_goto(insn, pc, depths.get(sub, 0))
        if site.loop is not None and insn.code == CALL and insn.src_reg == 0 \
                and helper_name(insn.imm) == "loop":  # fmt: skip
            sub = max((s for s in starts if s <= pc), default=0)
            patch = _inline_loop(site.loop, depths.get(sub, site.stack_depth))
        if patch is None and site.ptr is not None:
            ctx = ctx_patch(prog_type if site.ptr == "ctx" else site.ptr, insn, lay,
                             stamp_typed=stamp_typed)
            if ctx is not None:
                patch = [(i, None) for i in ctx]
        if patch is None:
            guard = _div_guard(insn)
            if guard is not None:
                patch = [(i, None) for i in guard]
        if patch is None and insn.code & CLASS_MASK == LD and insn.code & 0xE0 in (ABS, IND):
            patch = _ld_abs(insn)
        if patch is None and site.kfunc is not None and insn.code == CALL:
            patch = _kfunc_patch(insn, site.kfunc.name)
        if patch is None:
            patch = call_patch(insn, site.map, prog_type, lay)
        patches.append(patch if patch is not None else [(insn, None)])
        pc += insn.slots
    index = {p: i for i, p in enumerate(slot_offsets(insns))}
    entry: dict[int, int] = {}  # adjust_jmp_off: jumps to a start skip what was put there
    for sub in sorted(budgets):
        init = _budget_init(depths.get(sub, 0))
        entry[sub] = len(init)
        patches[index[sub]] = init + patches[index[sub]]
    if direct_write and prog_type in _UNCLONE and patches:
        prologue = _unclone_prologue(prog_type, lay)
        entry[0] = entry.get(0, 0) + len(prologue)
        patches[0] = prologue + patches[0]
    return _assemble(insns, patches, entry)


def _assemble(insns: Sequence[Instruction], patches: list[Patch],
              entry: Mapping[int, int] | None = None) -> View:  # fmt: skip
    """Lay the patches out and move every outside branch as bpf_adj_branches does
    (a jump, not a call, to a pc in ``entry`` lands that many slots into its patch)."""
    entry = entry or {}
    old_slots = to_slots(insns)
    starts: dict[int, int] = {}  # old slot -> new slot of its patch's first slot
    new_slots: list[Slot] = []
    aims: dict[int, int] = {}  # new slot of a branch -> the old slot it goes to
    symbols: dict[int, str] = {}
    old = 0
    for insn, patch in zip(insns, patches, strict=True):
        starts[old] = len(new_slots)
        if insn.slots == 2:
            starts[old + 1] = len(new_slots) + 1
        for new_insn, note in patch:
            here = len(new_slots)
            if isinstance(note, str):
                symbols[here] = note
            fld = branch_field(to_slots([new_insn])[0])
            if isinstance(note, Target):
                aims[here] = note.pc
            elif new_insn is insn and fld is not None:
                aims[here] = old + 1 + getattr(old_slots[old], fld)
            new_slots += to_slots([new_insn])
        old += insn.slots
    starts[old] = len(new_slots)
    for i, target in aims.items():
        slot = new_slots[i]
        fld = branch_field(slot)
        if fld is None or target not in starts:
            continue
        land = starts[target]
        if target in entry and slot.code != CALL and slot.code != 0x18 and \
                not land <= i < land + entry[target]:  # fmt: skip
            land += entry[target]
        new_slots[i] = slot._replace(**{fld: land - i - 1})
    return View(to_instructions(new_slots), symbols,
                {o: n for o, n in starts.items() if o < old})


__all__ = ["Site", "View", "helper_symbol", "kernel_view", "sites", "subprog_depths"]
