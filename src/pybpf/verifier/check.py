"""The path-sensitive abstract interpreter (``do_check`` of Linux 6.18).

:class:`Checker` walks every path of a program from instruction 0, one
instruction at a time, with a :class:`~pybpf.verifier.state.State`; a
conditional jump whose direction is unknown pushes the jump side on a stack
of pending paths and continues with the fall-through, as the kernel does.
At prune points (conditional jumps, jump targets, calls) the state is
compared with the states already explored there: when an explored state
that finished safely covers the current one, the path is pruned
(:func:`.prune.covers`, a sound form of the kernel's ``states_equal``: precise scalars
by range and tnum inclusion, imprecise ones covering any scalar (:mod:`.precise`),
registers and stack slots dead at the pc ignored).  A state that
is still being explored and equals the current one exactly is an infinite
loop.  Memory accesses are in :mod:`.memory`, calls in :mod:`.calls`.
A global function (BTF linkage, :mod:`.funcs`) is not walked where it is
called (:mod:`.global_calls`): after the main program, each one called is
verified on its own from its BTF argument types.

Each instruction is what :func:`.decode.decode` reads from its encoding,
by the kernel's rules rather than pybpf's stricter opcode table: the spec
it runs as, and the kernel's refusal of a reserved field ("BPF_MOV uses
reserved fields"...), raised when the walk reaches it, at the kernel's
point among the register checks.  :meth:`Checker.read`,
:meth:`Checker.check_dst` and :meth:`Checker.write` are ``check_reg_arg``:
a register above r10 is "R%d is invalid" (EINVAL), an uninitialised one
"!read_ok", r10 written "frame pointer is read only" (EACCES).

A refusal raises :class:`Reject`; :meth:`Checker.run` turns it into a
:class:`~pybpf.errors.VerifierError` with the pc and the log.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping

from pybpf.errors import VerifierError
from pybpf.isa import Instruction, Kind, OpSpec
from pybpf.uapi import ProgFlag
from pybpf.verifier import calls, global_calls, kfunc_call, mapcompat, memory, precise, prune
from pybpf.verifier.cfg import MAX_INSNS, Structure
from pybpf.verifier.decode import Decoded, decode, valid_reg
from pybpf.verifier.log import Log, insn_text
from pybpf.verifier.scalar import S64_MIN, Scalar
from pybpf.verifier.state import (
    FP,
    PKT_TYPES,
    UNKNOWN,
    Reg,
    State,
    assign_scalar_id_before_mov,
    const,
    format_frame_line,
    format_state,
    initial_state,
)
from pybpf.verifier.types import Base, Flag

MAX_JMP_SEQ = 8192  # BPF_COMPLEXITY_LIMIT_JMP_SEQ
MAX_BACKEDGE_ITERS = 64  # propagate_backedges' bound, then every scalar is precise
_ADD, _SUB, _MOV, _NEG, _END, _DIV, _MOD, _LSH, _RSH, _ARSH = (
    0x00, 0x10, 0xB0, 0x80, 0xD0, 0x30, 0x90, 0x60, 0x70, 0xC0)
_JEQ, _JNE, _JGT, _JGE, _JLT, _JLE = 0x10, 0x50, 0x20, 0x30, 0xA0, 0xB0
_ALU_STR = {0x00: "+=", 0x10: "-=", 0x20: "*=", 0x30: "/=", 0x40: "|=", 0x50: "&=", 0x60: "<<=",
            0x70: ">>=", 0x80: "neg", 0x90: "%=", 0xA0: "^=", 0xB0: "=", 0xC0: "s>>=",
            0xD0: "endian"}  # fmt: skip
_NO_ARITH = (Base.CONST_PTR_TO_MAP, Base.PTR_TO_PACKET_END, Base.PTR_TO_SOCKET,
             Base.PTR_TO_SOCK_COMMON, Base.PTR_TO_TCP_SOCK, Base.PTR_TO_XDP_SOCK,
             Base.PTR_TO_FLOW_KEYS)  # fmt: skip


class Reject(Exception):
    """A refusal inside the interpreter: the kernel's message lines and errno."""

    def __init__(self, msg: str, err: int = errno.EACCES, pc: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.errno = err
        self.pc = pc  # the instruction named, when not the one being checked


class Checker:
    """One run of the verifier over a program that passed the structural checks."""

    def __init__(self, structure: Structure, target, log: Log) -> None:
        self.structure = structure
        self.target = target
        self.log = log
        self.insns: dict[int, Instruction] = dict(zip(structure.pcs, structure.insns, strict=False))
        # the kernel's reading of each encoding: the spec it runs as, or its refusal
        self.decoded: dict[int, Decoded] = {pc: decode(i) for pc, i in self.insns.items()}
        self.fault: str | None = None  # the current instruction's late refusal, if any
        self.aux_ptr: dict[int, tuple[Base, Flag]] = {}  # insn_aux_data's ptr_type, by pc
        self.aux_map: dict[int, object] = {}  # insn_aux_data's map_ptr_state, by call pc
        self.aux_loop: dict[int, tuple[int, bool]] = {}  # loop_inline_state, by call pc
        self.seen_direct_write = False  # a direct packet write was allowed
        self.maps: Mapping[int, object] = target.maps
        self.explored: dict[int, list[prune.Node]] = {}
        self.pending: list[tuple[State, int, int, int]] = []
        self.processed = 0
        self.seen: set[int] = set()
        self.ids = 0
        self.total_states = 0
        self.peak_states = 0
        self.cur_states = 0
        self.max_states_per_insn = 0
        self.jmps = self.prev_jmps = self.prev_insns = 0
        self._callback_sites: dict[int, bool] = {}
        self.prune_points, self.jmp_points = prune.prune_points(structure, self.calls_callback)
        # iter_next kfunc calls: prune points where a checkpoint is forced (check_cfg)
        self.iter_next_pcs = kfunc_call.iter_next_pcs(self.insns, target)
        self.prune_points |= self.iter_next_pcs
        self.scc = prune.sccs(structure, self.calls_callback)
        self.visits: dict[tuple, prune.Visit] = {}  # the loops being explored, by callchain
        self.precision_changes = 0  # marks made (propagate_backedges' "changed")
        # compute_live_registers: a helper call reads the arguments its prototype names
        self.live = calls.liveness(structure, getattr(target, "helpers", None))
        self.stack_live = prune.stack_liveness(structure)
        self.depths: dict[int, int] = {}
        self.state: State = initial_state()
        self.insn: Instruction = structure.insns[0]
        self.pc = 0
        self.ldsx = False
        self.scratched: set = set()
        self.last_pc = 0
        self.logged = False
        self.called: set[int] = set()  # global subprograms a verified path called
        self.verified: set[int] = set()  # global subprograms verified on their own
        self._pkt_changers: frozenset[int] | None = None
        self.entry_pc = 0  # where the function being verified starts
        self._switched: tuple | None = None  # level 2: the lines of a path just resumed
        self.bt_info: dict[int, tuple] = {}  # per pc, what precision backtracking reads
        self.const_map_key: int | None = None  # the array key the helper call being checked got

    # --- ids and bookkeeping ---------------------------------------------------------------------
    def new_id(self) -> int:
        self.ids += 1
        return self.ids

    def push(self, st: State, pc: int, from_pc: int) -> None:
        """Queue another path (``push_stack``): it continues at ``pc``."""
        if len(self.pending) + 1 > MAX_JMP_SEQ:
            # E2BIG since "bpf: fix the return value of push_stack" (6.19, in 6.18.y stable
            # releases too); older kernels answered EFAULT for the same message
            raise Reject(f"The sequence of {len(self.pending) + 1} jumps is too complex.",
                         errno.E2BIG)  # fmt: skip
        if st.parent is not None:
            st.parent.branches += 1
        self.pending.append((st, pc, from_pc, self.log.mark()))

    def _finish_path(self) -> None:
        """update_branch_counts: a path ended; the states it leaves without paths below
        are finished, and a loop whose first state finishes is left (maybe_exit_scc)."""
        node = self.state.parent
        while node is not None:
            node.branches -= 1
            if node.branches:
                break
            if node.chain is not None:
                visit = self.visits.get(node.chain)
                if visit is not None and visit.entry is node:
                    del self.visits[node.chain]
                    self._propagate_backedges(visit)
            node = node.parent

    def _propagate_backedges(self, visit: prune.Visit) -> None:
        """propagate_backedges: the precision of the states the loop's hits were compared
        with is final now; carry it along each hit's path again, until nothing changes."""
        for _ in range(MAX_BACKEDGE_ITERS):
            before = self.precision_changes
            for st, old in visit.backedges:
                precise.propagate(self, st, old)
            if self.precision_changes == before:
                return
        if self.log.level >= 2:
            self.log.add("propagate_backedges: too many iterations")
        for st, _old in visit.backedges:
            precise.mark_all(self, st)

    def _hit(self, st: State, node: prune.Node, loop: bool) -> bool:
        """A state covered ``st``: what is precise there is precise along ``st``'s path.
        A hit inside a loop whose states' precision is not final yet is kept as a
        backedge of the loop, propagated again when the loop is left."""
        node.hits += 1
        precise.propagate(self, st, node)
        if loop:
            visit = self.visits.get(node.chain) if node.chain is not None else None
            if visit is None:  # no loop to wait for: every scalar of the path is kept
                precise.mark_all(self, st)
            else:
                visit.backedges.append((st.copy(), node))
        return True

    # --- the walk --------------------------------------------------------------------------------
    def run(self) -> None:
        """Explore every path; raises VerifierError (log not yet attached) on refusal.

        The main program first, then each global function some verified code
        called, on its own (``do_check_main``, ``do_check_subprogs``): in
        subprogram order, again while a pass verified one.  At level 1 the
        log of each function verified safely is forgotten, as the kernel
        resets it (``pop_log``).
        """
        self._explore(self.state, 0)
        self._verified()
        subprogs = self.structure.subprogs
        again = True
        while again:
            again = False
            for index in range(1, len(subprogs)):
                if index not in self.called or index in self.verified:
                    continue
                desc = self.func_desc(index)
                if desc is None or not desc.is_global:
                    continue
                self.log.always(f"Validating {desc.name}() func#{index}...")
                st = global_calls.global_entry_state(self, index, desc)
                self._explore(st, subprogs[index].start)
                self._verified()
                self.log.always(f"Func#{index} ('{desc.name}') is safe for any args that "
                                "match its prototype")  # fmt: skip
                self.verified.add(index)
                again = True

    def calls_callback(self, pc: int) -> bool:
        """Whether the instruction at ``pc`` is a helper call that calls a callback."""
        callback = self._callback_sites.get(pc)
        if callback is None:
            callback = self._callback_sites[pc] = calls.calls_callback(self, pc)
        return callback

    def is_global_subprog(self, start: int) -> bool:
        """Whether the subprogram starting at ``start`` is a global function (BTF)."""
        for index, sub in enumerate(self.structure.subprogs):
            if sub.start == start:
                desc = self.func_desc(index) if index else None
                return desc is not None and desc.is_global
        return False

    def func_desc(self, index: int):
        """The BTF description of subprogram ``index`` (None: none, so static)."""
        funcs = getattr(self.target, "funcs", None)
        if not funcs or index >= len(funcs):
            return None
        return funcs[index]

    def _verified(self) -> None:
        """A function was verified safely: forget its states and, at level 1, its log."""
        self.explored = {}
        self.visits = {}
        self.pending = []
        self.cur_states = 0
        self.log.rewind(0)
        self.log._last_linfo = None

    def _explore(self, st: State, pc: int) -> None:
        """do_check from ``pc`` with ``st``: every path, until none is pending."""
        self.state, self.pc = st, pc
        self.entry_pc = pc
        self.log.add(f"{pc}: {format_state(st)}")
        while True:
            self.state, self.pc = st, pc
            try:
                nxt = self._walk_one(st, pc)
            except Reject as exc:
                for line in exc.msg.split("\n"):
                    self.log.always(line)
                self.depths_from(st)
                where = pc if exc.pc is None else exc.pc
                raise VerifierError(exc.msg, pc=where, errno=exc.errno) from None
            if nxt is not None:
                pc = nxt
                continue
            self.depths_from(st)
            self._finish_path()
            if not self.pending:
                return
            st, pc, from_pc, mark = self.pending.pop()
            self.log.rewind(mark)
            self._log_switch(st, from_pc, pc)

    def _log_switch(self, st: State, from_pc: int, pc: int) -> None:
        """What the kernel logs when it resumes a pushed path at ``pc``.

        Level 2 keeps every line: a blank line, ``from X to Y:`` and the state.
        Level 1 has just cut the finished path back to the branch, which it
        prints again without its state, the resumed state following on the
        same line (the kernel's log reset leaves it so).
        """
        state = format_state(st)
        if self.log.level == 1:
            self.log.add(f"{from_pc}: {insn_text(self.insns[from_pc], self.log.kfunc_names)} "
                         f"{pc}: {state}")
        elif self.log:
            self._switched = (self.log.mark(), from_pc, pc)
            self.log.add("")
            self.log.add(f"from {from_pc} to {pc}: {state}")
            self.log.add(f"{pc}: {state}")

    def depths_from(self, st: State) -> None:
        """Note the stack each frame of ``st`` used; called before frames go (exit, path end)."""
        for f in st.frames:
            self.depths[f.subprog] = max(self.depths.get(f.subprog, 0), f.depth)

    def _walk_one(self, st: State, pc: int) -> int | None:
        self.processed += 1  # as the kernel, a visit the pruning ends counts too
        if self.processed > MAX_INSNS:  # before pc's line is logged: the last line is the previous
            raise Reject(f"BPF program is too large. Processed {self.processed} insn", errno.E2BIG,
                         self.last_pc)  # fmt: skip
        if pc in self.prune_points and self._visited(st, pc):
            switched, self._switched = self._switched, None
            if switched is not None and switched[2] == pc:
                # pruned where the path resumed: the kernel prints no state, just this
                mark, from_pc = switched[0], switched[1]
                del self.log.lines[mark:mark + 3]
                self.log.add("")
                self.log.add(f"from {from_pc} to {pc}: safe")
            elif self.log.level >= 1:
                self.log.add(f"{pc}: safe")
            return None
        self._switched = None
        self.last_pc = pc
        self.seen.add(pc)
        st.path = (pc, st.path)
        insn = self.insns[pc]
        self.insn = insn
        self.scratched = set()
        self.logged = False
        mark = self.log.mark()
        try:
            nxt = self.step(st, pc, insn, self.decoded[pc])
        except Reject:
            self._log_insn_before(mark, pc, insn)
            raise
        if self.log and not self.logged:
            regs = tuple(i for i in self.scratched if isinstance(i, int))
            slots = tuple(i[1] for i in self.scratched if isinstance(i, tuple))
            text = format_frame_line(st.cur, regs, slots) if self.scratched else ""
            if insn.code == 0x95:  # the path ends: no state follows an exit
                text = ""
            if st.refs and text:
                text += " refs=" + ",".join(str(i) for i, _ in st.refs)
            if self.log.mark() == mark:
                self.log.insn(pc, insn, text)
            else:  # lines the instruction printed (mark_precise): its state on a line after
                self._log_insn_before(mark, pc, insn)
                if text:
                    after = pc if self.decoded[pc].spec.kind is Kind.JUMP else nxt
                    self.log.add(f"{after}: {text}")
        return nxt

    def _log_insn_before(self, mark: int, pc: int, insn: Instruction) -> None:
        """The instruction's line goes before the lines its check printed, as the
        kernel prints an instruction before checking it."""
        extra = self.log.lines[mark:]
        del self.log.lines[mark:]
        self.log.insn(pc, insn)
        self.log.lines.extend(extra)

    # --- pruning ---------------------------------------------------------------------------------
    def _visited(self, st: State, pc: int) -> bool:
        """is_state_visited: prune against a finished state, or catch an unchanged loop.

        As the kernel, an explored state that keeps failing to cover the
        states arriving at its pc (misses) is dropped from the list: after
        more than ``3 * (hits + 1)`` misses (64 for the loop states of a
        forced checkpoint); misses count only when a new state is to be
        added.  This keeps long loops linear rather than quadratic.
        """
        nodes = self.explored.setdefault(pc, [])
        states_cnt = len(nodes)
        key = None
        may_goto = self.insns[pc].code == 0xE5 and not self.insns[pc].src_reg  # is_may_goto_insn
        callback = self.calls_callback(pc)
        iter_next = pc in self.iter_next_pcs
        force = may_goto or callback or iter_next  # is_force_checkpoint
        # BPF_F_TEST_STATE_FREQ: a checkpoint at every prune point; and one where the
        # state's instruction history grew long (the kernel's jmp_history_cnt > 40)
        force_new = (force or bool(self.target.prog_flags & ProgFlag.TEST_STATE_FREQ)
                     or precise.history_len(st, self.jmp_points, 40) > 40)
        jmps, insns = self.jmps - self.prev_jmps, self.processed - self.prev_insns
        add_new = force_new or (jmps >= 2 and insns >= 8)
        evicted = False
        for node in nodes:
            if node.branches:
                if iter_next:  # the loop converges once its iterator is active in a covered state
                    if kfunc_call.iter_active(st) and prune.covers(node.state, st, self.live, pc,
                                                                   None, self.stack_live):
                        return self._hit(st, node, True)
                elif callback or (may_goto and node.state.may_goto_depth != st.may_goto_depth):
                    if prune.covers(node.state, st, self.live, pc, None, self.stack_live):
                        return self._hit(st, node, True)
                elif (node.state.may_goto_depth == st.may_goto_depth
                      and len(node.state.frames) == len(st.frames)
                      and node.state.regs == st.regs):  # states_maybe_looping, then exact
                    if key is None:
                        key = prune.exact_key(st)
                        khash = hash(key)
                    if node.key is None:
                        node.key = prune.exact_key(node.state)
                        node.hash = hash(node.key)
                    if khash == node.hash and key == node.key:
                        # the kernel's log names the loop's head; its last insn line is
                        # the jump that closed the loop, the pc a refusal is known by
                        raise Reject(f"infinite loop detected at insn {pc}", errno.EINVAL,
                                     self.last_pc)  # fmt: skip
                if not force_new and jmps < 20 and insns < 100:
                    add_new = False
            else:
                # a state of a loop with backedges has no final precision yet: by range
                visit = self.visits.get(node.chain) if node.chain is not None else None
                loop = visit is not None and bool(visit.backedges)
                if prune.covers(node.state, st, self.live, pc, None if loop else node,
                                self.stack_live):
                    return self._hit(st, node, loop)
            if add_new:
                node.misses += 1
            n = 64 if force and node.branches else 3
            if node.misses > node.hits * n + n:
                node.evicted = True
                evicted = True
        if evicted:
            nodes[:] = [n for n in nodes if not n.evicted]
        self.max_states_per_insn = max(self.max_states_per_insn, states_cnt)
        if not add_new:
            return False
        self.prev_jmps, self.prev_insns = self.jmps, self.processed
        node = prune.Node(st.copy(), st.parent, pc)
        node.chain = prune.callchain(st, pc, self.scc)
        if node.chain is not None and node.chain not in self.visits:  # maybe_enter_scc
            self.visits[node.chain] = prune.Visit(node)
        nodes.append(node)
        st.parent = node
        self.total_states += 1
        self.cur_states += 1
        self.peak_states = max(self.peak_states, self.cur_states)
        return False

    # --- one instruction -------------------------------------------------------------------------
    def read(self, regno: int) -> Reg:
        """check_reg_arg(SRC_OP): a register of r0-r10, initialised."""
        if not valid_reg(regno):
            raise Reject(f"R{regno} is invalid", errno.EINVAL)
        r = self.state.regs[regno]
        if r.base is Base.NOT_INIT:
            raise Reject(f"R{regno} !read_ok")
        self.scratched.add(regno)
        return r

    def check_dst(self, regno: int) -> None:
        """check_reg_arg(DST_OP_NO_MARK): a register of r0-r9 (R10 is read only)."""
        if not valid_reg(regno):
            raise Reject(f"R{regno} is invalid", errno.EINVAL)
        if regno == FP:
            raise Reject("frame pointer is read only")

    def write(self, regno: int, reg: Reg) -> None:
        """check_reg_arg(DST_OP): the register may be written; then it is."""
        self.check_dst(regno)
        self.state.regs[regno] = reg
        self.scratched.add(regno)

    def _save_ptr_type(self, pc: int, ptr: Reg, *, allow_trust_mismatch: bool) -> None:
        """save_aux_ptr_type: one load or store instruction is rewritten for one pointer
        type, so it may not reach a context or socket pointer on one path and another
        type on another."""
        now = (ptr.base, ptr.flags)
        prev = self.aux_ptr.setdefault(pc, now)
        if prev == now or (prev[0] not in _REWRITTEN and now[0] not in _REWRITTEN):
            return
        if allow_trust_mismatch and prev[0] in _MEM_OR_BTF and now[0] in _MEM_OR_BTF:
            self.aux_ptr[pc] = (Base.PTR_TO_BTF_ID, Flag.PTR_UNTRUSTED)
            return
        raise Reject("same insn cannot be used with different pointers", errno.EINVAL)

    def late_fault(self) -> None:
        """Refuse the current instruction's encoding where the kernel checks it late."""
        if self.fault is not None:
            raise Reject(self.fault, errno.EINVAL)

    def step(self, st: State, pc: int, insn: Instruction, dec: Decoded) -> int | None:
        spec = dec.spec
        if spec is None or (dec.fault is not None and not dec.late):
            raise Reject(dec.fault or f"unknown opcode {insn.code:02x}", errno.EINVAL)
        self.fault = dec.fault
        k = spec.kind
        nxt = pc + insn.slots
        if k in (Kind.ALU, Kind.NEG, Kind.MOVSX, Kind.END):
            self.alu(st, insn, spec)
            return nxt
        if k is Kind.LDDW:
            self.lddw(insn)
            return nxt
        if k in (Kind.LDX, Kind.LDXSX):
            ptr = self.read(insn.src_reg)
            self.check_dst(insn.dst_reg)
            self.ldsx = k is Kind.LDXSX
            val = memory.access(self, insn.src_reg, insn.off, spec.width, False, None,
                                sx=self.ldsx)  # fmt: skip
            self.ldsx = False
            self._save_ptr_type(pc, ptr, allow_trust_mismatch=True)
            self.write(insn.dst_reg, val)
            self._scratch_stack(insn.src_reg, insn.off, spec.width)
            return nxt
        if k is Kind.STX:
            val = self.read(insn.src_reg)
            ptr = self.read(insn.dst_reg)
            memory.access(self, insn.dst_reg, insn.off, spec.width, True, val)
            self._save_ptr_type(pc, ptr, allow_trust_mismatch=False)
            self._scratch_stack(insn.dst_reg, insn.off, spec.width)
            return nxt
        if k is Kind.ST:
            ptr = self.read(insn.dst_reg)
            memory.access(self, insn.dst_reg, insn.off, spec.width, True, None, st=True)
            self._save_ptr_type(pc, ptr, allow_trust_mismatch=False)
            self._scratch_stack(insn.dst_reg, insn.off, spec.width)
            return nxt
        if k is Kind.ATOMIC:
            self.atomic(insn, spec)
            return nxt
        if k in (Kind.LOAD_ACQ, Kind.STORE_REL):
            if k is Kind.LOAD_ACQ:
                self.read(insn.src_reg)
                self.check_dst(insn.dst_reg)
                val = memory.access(self, insn.src_reg, insn.off, spec.width, False, None)
                self.write(insn.dst_reg, val)
            else:
                val = self.read(insn.src_reg)
                self.read(insn.dst_reg)
                memory.access(self, insn.dst_reg, insn.off, spec.width, True, val)
            return nxt
        if k in (Kind.LD_ABS, Kind.LD_IND):
            return calls.ld_abs(self, insn, spec, pc)
        if k is Kind.JA:
            self.jmps += 1
            return pc + 1 + (insn.imm if spec.width == 32 else insn.off)
        if k is Kind.JCOND:
            return self.may_goto(st, pc, insn)
        if k is Kind.JUMP:
            self.jmps += 1
            return self.cond_jump(st, pc, insn, spec)
        if k in (Kind.CALL, Kind.CALL_LOCAL, Kind.EXIT, Kind.KFUNC):
            self.jmps += 1  # jmps_processed counts every BPF_JMP class instruction
        if k is Kind.CALL:
            return calls.helper_call(self, st, pc, insn)
        if k is Kind.CALL_LOCAL:
            return calls.subprog_call(self, st, pc, insn)
        if k is Kind.EXIT:
            return calls.exit_insn(self, st, pc)
        if k is Kind.KFUNC:
            return kfunc_call.kfunc_call(self, st, pc, insn.imm)
        raise Reject(f"unknown opcode {insn.code:02x}", errno.EINVAL)

    def _scratch_stack(self, regno: int, off: int, size: int) -> None:
        r = self.state.regs[regno]
        top = len(self.state.frames) - 1
        if r.base is Base.PTR_TO_STACK and r.var.is_const() and r.frame == top:
            addr = r.off + off + r.var.signed_value
            for a in range(addr, addr + size):
                if a < 0:
                    self.scratched.add(("s", (-a - 1) // 8))

    # --- ld_imm64 --------------------------------------------------------------------------------
    def lddw(self, insn: Instruction) -> None:
        src = insn.src_reg
        if src == 0:
            self.write(insn.dst_reg, const(insn.imm64))
            return
        if src in (1, 2, 5, 6):
            m = self.maps.get(insn.imm)
            if m is None:
                raise Reject(f"fd {insn.imm} is not pointing to valid bpf_map", errno.EBADF)
            if src in (1, 5):
                self.write(insn.dst_reg, Reg(Base.CONST_PTR_TO_MAP, map=m))
                return
            off = insn.imm2
            if off >= m.value_size:
                raise Reject(f"invalid access to map value pointer, value_size={m.value_size} "
                             f"off={off}", errno.EINVAL)  # fmt: skip
            self.write(insn.dst_reg, Reg(Base.PTR_TO_MAP_VALUE, map=m, off=off))
            return
        if src == 4:  # BPF_PSEUDO_FUNC: a callback's address, typed by BTF func_info
            self.check_dst(insn.dst_reg)
            if not self.target.has_func_info:
                raise Reject("missing btf func_info", errno.EINVAL)
            self.write(insn.dst_reg, Reg(Base.PTR_TO_FUNC, sub=self.pc + insn.imm + 1))
            return
        raise Reject("unrecognized bpf_ld_imm64 insn", errno.EINVAL)

    # --- ALU --------------------------------------------------------------------------------
    def alu(self, st: State, insn: Instruction, spec: OpSpec) -> None:
        is64 = spec.width == 64 if spec.kind is not Kind.END else insn.code & 0x07 == 0x07
        op = insn.code & 0xF0
        x = "src_reg" in spec.uses
        d = insn.dst_reg
        if spec.kind is Kind.END:
            dst = self.read(d)
            if dst.is_ptr:
                self.write(d, UNKNOWN)
                return
            to_be = bool(insn.code & 0x08)
            self.write(d, Reg(Base.SCALAR, var=dst.var.endian(insn.imm, to_be=to_be,
                                                              is64=insn.code & 0x07 == 0x07)))
            return
        if spec.kind is Kind.NEG:
            dst = self.read(d)
            if dst.is_ptr:
                self.write(d, UNKNOWN)
                return
            self.write(d, Reg(Base.SCALAR, var=dst.var.neg(is64)))
            return
        src = self.read(insn.src_reg) if x else const(insn.imm if is64 or op != _MOV
                                                      else insn.imm & 0xFFFFFFFF)
        if op == _MOV:  # the kernel checks the destination before the move
            self.check_dst(d)
        if spec.kind is Kind.MOVSX:
            if src.is_ptr:
                self.write(d, UNKNOWN)
                return
            var = src.var.movsx(spec.op, is64)
            if src.var.umax < 1 << (spec.op - 1):  # no sign to extend: the copy stays linked
                src = self._link_before_mov(st, insn.src_reg, src)
                self.write(d, Reg(Base.SCALAR, var=var, id=src.id))
            else:
                self.write(d, Reg(Base.SCALAR, var=var))
            return
        if op == _MOV:
            if not x:
                self.write(d, const(insn.imm) if is64 else const(insn.imm & 0xFFFFFFFF))
            elif is64:
                self.write(d, self._link_before_mov(st, insn.src_reg, src))
            elif src.is_ptr:
                self.write(d, UNKNOWN)
            elif src.var.umax.bit_length() <= 32:  # get_reg_width: the value fits the subreg
                src = self._link_before_mov(st, insn.src_reg, src)
                self.write(d, src.but(var=src.var.zext32()))
            else:
                self.write(d, Reg(Base.SCALAR, var=src.var.zext32()))
            return
        dst = self.read(d)
        if not x and op in (_DIV, _MOD) and insn.imm == 0:
            raise Reject("div by zero", errno.EINVAL)
        if not x and op in (_LSH, _RSH, _ARSH) and not 0 <= insn.imm < (64 if is64 else 32):
            raise Reject(f"invalid shift {insn.imm}", errno.EINVAL)
        self.check_dst(d)
        if dst.is_ptr or src.is_ptr:
            if x and dst.is_ptr != src.is_ptr:  # the scalar decides the pointer's offset
                precise.mark(self, st, (insn.src_reg if dst.is_ptr else d,))
            self.write(d, self.ptr_alu(d, insn.src_reg if x else -1, dst, src, op, is64))
            return
        split = dst.var.sign_mask_split(op, src.var)
        if split is not None:
            other = st.copy()
            other.regs[d] = Reg(Base.SCALAR, var=split[1])
            self.push(other, self.pc, self.pc)
            dst = Reg(Base.SCALAR, var=split[0])
        result = Reg(Base.SCALAR, var=dst.var.alu(op, src.var, is64=is64))
        if is64 and op in (_ADD, _SUB) and dst.id and not dst.off and src.is_const():
            val = src.var.value
            if val <= 0x7FFFFFFF:  # the kernel links one constant add (BPF_ADD_CONST)
                result = result.but(id=dst.id, off=val if op == _ADD else -val)
        self.write(d, result)

    def _link_before_mov(self, st: State, regno: int, src: Reg) -> Reg:
        """assign_scalar_id_before_mov: a scalar copied keeps a link to its copy; a
        register linked to another plus a constant loses that link first."""
        if not src.is_scalar:
            return src
        new = assign_scalar_id_before_mov(src, self.new_id)
        if new is not src:
            st.regs[regno] = new
        return new

    def ptr_alu(self, d: int, s: int, dst: Reg, src: Reg, op: int, is64: bool) -> Reg:
        """adjust_ptr_min_max_vals (and pointer - pointer) for a privileged loader."""
        if dst.is_ptr and src.is_ptr:  # a privileged loader may subtract pointers
            if op == _SUB:
                return UNKNOWN
            raise Reject(f"R{d} pointer {_ALU_STR[op]} pointer prohibited")
        ptr, off_reg = (dst, src) if dst.is_ptr else (src, dst)
        if not is64:  # 32-bit ops on pointers give (meaningless) scalars; only SUB is allowed
            if op == _SUB:
                return UNKNOWN
            raise Reject(f"R{d} 32-bit pointer arithmetic prohibited")
        if ptr.maybe_null:
            raise Reject(f"R{d} pointer arithmetic on {ptr.type_name()} prohibited, "
                         f"null-check it first")  # fmt: skip
        if ptr.base is Base.CONST_PTR_TO_MAP and op == _ADD and off_reg.is_const(0):
            return ptr  # adding a known zero to a map pointer leaves it as it is
        if ptr.base in _NO_ARITH:
            raise Reject(f"R{d} pointer arithmetic on {ptr.type_name()} prohibited")
        if op in (0x40, 0x50, 0xA0):
            raise Reject(f"R{d} bitwise operator {_ALU_STR[op]} on pointer prohibited")
        if op not in (_ADD, _SUB):
            raise Reject(f"R{d} pointer arithmetic with {_ALU_STR[op]} operator prohibited")
        if op == _SUB and not dst.is_ptr:
            raise Reject(f"R{d} tried to subtract pointer from scalar")
        if op == _SUB and ptr.base is Base.PTR_TO_STACK:
            raise Reject(f"R{d} subtraction from stack pointer prohibited")
        name = ptr.type_name()
        _sane_offset(off_reg.var, 0, name)
        _sane_offset(ptr.var, ptr.off, name)
        v = off_reg.var
        if v.is_const():
            delta = v.signed_value if op == _ADD else -v.signed_value
            out = ptr.but(off=_s32(ptr.off + delta))
        else:
            out = ptr.but(var=ptr.var.alu(op, v, is64=True))
            if ptr.base in PKT_TYPES:
                out = out.but(id=self.new_id(), rng=0)
        _sane_offset(out.var, out.off, name)
        return out

    # --- atomics ----------------------------------------------------------------------------
    def atomic(self, insn: Instruction, spec: OpSpec) -> None:
        self.read(insn.src_reg)
        dst = self.read(insn.dst_reg)
        op = spec.op
        if op == 0xF1:  # cmpxchg reads R0
            self.read(0)
        if dst.base in PKT_TYPES or (dst.base in _NO_ATOMIC and dst.flags == Flag.NONE):
            # atomic_ptr_type_ok: not the context, a packet, flow keys or a socket
            raise Reject(f"BPF_ATOMIC stores into R{insn.dst_reg} {dst.type_name()} is not "
                         f"allowed")  # fmt: skip
        if op & 0x01:  # a fetch writes the old value to R0 (cmpxchg) or the source
            self.check_dst(0 if op == 0xF1 else insn.src_reg)
        old = memory.access(self, insn.dst_reg, insn.off, spec.width, False, None, atomic=True)
        memory.access(self, insn.dst_reg, insn.off, spec.width, True, UNKNOWN, atomic=True)
        if op == 0xF1:
            self.write(0, old if old is not None and old.is_scalar else UNKNOWN)
        elif op & 0x01:
            self.write(insn.src_reg, old if old is not None and old.is_scalar else UNKNOWN)

    # --- may_goto --------------------------------------------------------------------------------
    def may_goto(self, st: State, pc: int, insn: Instruction) -> int:
        """may_goto: the loop body is queued one level deeper; the jump side goes first.

        As the kernel's ``widen_imprecise_scalars``, scalars of the queued
        state that differ from the previous visit of this may_goto on the
        path become unknown, so the loop's states converge.
        """
        self.jmps += 1
        body = st.copy()
        body.may_goto_depth += 1
        start = st.parent
        if start is not None and start.pc == pc:
            start = start.parent  # the checkpoint just made for this visit
        prev = prune.prev_entry(start, pc)
        if prev is not None:
            prune.widen(prev, body)
        self.push(body, pc + 1, pc)
        return pc + 1 + insn.off

    # --- conditional jumps ------------------------------------------------------------------
    def cond_jump(self, st: State, pc: int, insn: Instruction, spec: OpSpec) -> int | None:
        is32 = spec.width == 32
        op = insn.code & 0xF0
        x = "src_reg" in spec.uses
        dst = self.read(insn.dst_reg)
        self.late_fault()  # the reserved field (src_reg or imm) is checked after dst
        src = self.read(insn.src_reg) if x else None
        srcv = src if src is not None else const(insn.imm if not is32 else insn.imm & 0xFFFFFFFF)
        target = pc + 1 + insn.off
        taken = self._taken(op, dst, srcv, is32)
        # stack pointers compared are no values to track back (INSN_F_*_REG_STACK)
        stack = (dst.base is Base.PTR_TO_STACK, src is not None and src.base is Base.PTR_TO_STACK)
        if any(stack):
            precise.note(st, ("J", stack))
        if taken >= 0:  # the outcome rests on the scalars' values
            precise.mark(self, st, (insn.dst_reg, insn.src_reg) if x else (insn.dst_reg,))
            return target if taken == 1 else pc + 1
        ids = [r.id for r in (dst, src) if r is not None and r.is_scalar and r.id]
        if ids:
            linked = precise.linked_locations(st, ids)
            if len(linked) > 1:  # the jump's history entry, shared by both branches
                precise.note(st, ("L", linked, stack))
        other = st.copy()
        ok_fall = self._refine(st, insn, op, dst, srcv, is32, False)
        ok_jump = self._refine(other, insn, op, dst, srcv, is32, True)
        if ok_jump and not ok_fall:
            st.frames[:], st.refs[:], st.lock = other.frames, other.refs, other.lock
            return target
        if ok_jump:
            self.push(other, target, pc)
        return pc + 1 if ok_fall else None

    def _taken(self, op: int, dst: Reg, src: Reg, is32: bool) -> int:
        """is_branch_taken: 1 or 0 when the outcome is known, -1 when both are possible.

        A pointer is known unequal to a constant zero only when it cannot be NULL
        (``reg_not_null``: a context or stack pointer, for one, is not known so)."""
        if dst.is_scalar and src.is_scalar:
            return Scalar.branch_taken(op, dst.var, src.var, is32=is32)
        if dst.base in _PKT_ANY and src.base in _PKT_ANY and not is32:
            return _pkt_taken(op, dst, src)
        ptr, other = (dst, src) if _is_const(src, is32) else (src, dst)
        if not _is_const(other, is32) or not _not_null(ptr):
            return -1
        value = other.var.value & (0xFFFFFFFF if is32 else (1 << 64) - 1)
        if value or op not in (_JEQ, _JNE):
            return -1
        return 0 if op == _JEQ else 1

    def _refine(self, st: State, insn: Instruction, op: int, dst: Reg, src: Reg, is32: bool,
                taken: bool) -> bool:  # fmt: skip
        """Narrow ``st`` by the branch outcome; False when that outcome cannot happen."""
        regs = st.regs
        x = src is not None and insn.code & 0x08
        if dst.is_scalar and src.is_scalar:
            res = Scalar.refine(op, dst.var, src.var, is32=is32, taken=taken)
            if res is None:
                return False
            _set_scalar(st, insn.dst_reg, dst, res[0])
            if x:
                _set_scalar(st, insn.src_reg, src, res[1])
            return True
        if (op in (_JEQ, _JNE) and not is32 and x and dst.is_ptr and src.is_ptr
                and dst.maybe_null != src.maybe_null
                and Base.PTR_TO_BTF_ID not in (dst.base, src.base)):
            # equal to a pointer that is not NULL: the maybe-NULL one is not NULL either
            if (op == _JEQ) == taken:
                regno = insn.src_reg if src.maybe_null else insn.dst_reg
                regs[regno] = _not_null_reg(regs[regno])
            return True
        if op in (_JEQ, _JNE) and not is32:
            is_eq = (op == _JEQ) == taken
            # only the destination: "if r7 != r0" with r0 NULL says nothing of r7
            if dst.maybe_null and src.is_const(0) and dst.id:
                _mark_null(st, dst.id, is_null=is_eq)
                return True
        if not is32 and x:
            self._pkt_compare(st, op, dst, src, taken, insn)
        del regs
        return True

    def _pkt_compare(self, st: State, op: int, dst: Reg, src: Reg, taken: bool,
                     insn: Instruction) -> None:  # fmt: skip
        """try_match_pkt_pointers: ``pkt + N <op> pkt_end`` proves a range on one side;
        on the other the pointer is at or beyond the end (mark_pkt_end), where no access
        is possible."""
        def pair(a: Reg, b: Reg) -> bool:  # data_meta's end: data itself (reg_is_init_pkt_pointer)
            return ((a.base is Base.PTR_TO_PACKET and b.base is Base.PTR_TO_PACKET_END)
                    or (a.base is Base.PTR_TO_PACKET_META and b.base is Base.PTR_TO_PACKET
                        and not b.id and not b.off and b.var.is_const() and not b.var.value))

        if pair(dst, src):
            pkt, flipped = dst, False
        elif pair(src, dst):
            pkt, flipped = src, True
        else:
            return
        # normalise to "pkt OP end"
        if flipped:
            op = {_JGT: _JLT, _JLT: _JGT, _JGE: _JLE, _JLE: _JGE}.get(op, op)
        if op not in (_JGT, _JLT, _JGE, _JLE):
            return
        # in which outcome is pkt <= end (range off) or pkt < end (range off+1)?
        good = {(_JGT, False): False, (_JLE, True): False, (_JLT, True): True,
                (_JGE, False): True}.get((op, taken))  # fmt: skip
        if good is not None:
            _find_good_pkt(st, pkt, good)
        elif pkt.base is Base.PTR_TO_PACKET:  # pkt > end: beyond it; pkt >= end: at it
            beyond = (op, taken) in ((_JGT, True), (_JLE, False))
            regno = insn.src_reg if flipped else insn.dst_reg
            st.regs[regno] = pkt.but(rng=BEYOND_PKT_END if beyond else AT_PKT_END)


_NO_ATOMIC = frozenset({Base.PTR_TO_CTX, Base.PTR_TO_FLOW_KEYS, Base.PTR_TO_SOCKET,
                        Base.PTR_TO_SOCK_COMMON, Base.PTR_TO_TCP_SOCK, Base.PTR_TO_XDP_SOCK})
AT_PKT_END, BEYOND_PKT_END = -1, -2  # a packet pointer's range at or past the packet's end
_PKT_ANY = frozenset({Base.PTR_TO_PACKET, Base.PTR_TO_PACKET_META, Base.PTR_TO_PACKET_END})


def _pkt_taken(op: int, dst: Reg, src: Reg) -> int:
    """is_pkt_ptr_branch_taken: a packet pointer known to be at or beyond the packet's end
    (a range mark left by an earlier comparison) decides its comparison with pkt_end."""
    if src.base is Base.PTR_TO_PACKET_END:
        pkt = dst
    elif dst.base is Base.PTR_TO_PACKET_END:
        pkt, op = src, {_JGT: _JLT, _JLT: _JGT, _JGE: _JLE, _JLE: _JGE}.get(op, op)
    else:
        return -1
    if pkt.rng >= 0:
        return -1
    if op in (_JGT, _JLE) and pkt.rng == BEYOND_PKT_END:  # pkt > end: it is
        return 1 if op == _JGT else 0
    if op in (_JGE, _JLT):  # pkt >= end: it is, at or beyond it
        return 1 if op == _JGE else 0
    return -1


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _sane_offset(v: Scalar, off: int, name: str) -> None:
    """check_reg_sane_offset: offsets the kernel refuses to track (EINVAL)."""
    if v.is_const() and not -memory.MAX_VAR_OFF < v.signed_value < memory.MAX_VAR_OFF:
        raise Reject(f"math between {name} pointer and {v.signed_value} is not allowed",
                     errno.EINVAL)  # fmt: skip
    if not -memory.MAX_VAR_OFF < off < memory.MAX_VAR_OFF:
        raise Reject(f"{name} pointer offset {off} is not allowed", errno.EINVAL)
    if v.smin == S64_MIN:
        raise Reject(f"math between {name} pointer and register with unbounded min value is "
                     f"not allowed", errno.EINVAL)  # fmt: skip
    if not -memory.MAX_VAR_OFF < v.smin < memory.MAX_VAR_OFF:
        raise Reject(f"value {v.smin} makes {name} pointer be out of bounds", errno.EINVAL)


def _set_scalar(st: State, regno: int, old: Reg, var: Scalar) -> None:
    """Give R<regno> its refined value, and every register linked to it (sync_linked_regs)."""
    st.regs[regno] = old.but(var=var)
    if not old.id:
        return

    def moved(r: Reg) -> Scalar:
        delta = r.off - old.off
        return var if not delta else var.alu(_ADD, Scalar.const(delta), is64=True)

    for f in st.frames:
        for i, r in enumerate(f.regs):
            if r.id == old.id and r.is_scalar and (f.regs is not st.regs or i != regno):
                f.regs[i] = r.but(var=moved(r))
        for spi, s in list(f.stack.items()):
            if s.spilled is not None and s.spilled.id == old.id and s.spilled.is_scalar:
                f.stack[spi] = type(s)(s.types, s.spilled.but(var=moved(s.spilled)))


def _map_regs(st: State, fn) -> None:
    for f in st.frames:
        for i, r in enumerate(f.regs):
            nr = fn(r)
            if nr is not r:
                f.regs[i] = nr
        for spi, s in list(f.stack.items()):
            if s.spilled is not None:
                nr = fn(s.spilled)
                if nr is not s.spilled:
                    f.stack[spi] = type(s)(s.types, nr)


def _not_null_reg(r: Reg) -> Reg:
    """mark_ptr_not_null_reg: the register's type without PTR_MAYBE_NULL; a sockmap's,
    sockhash's or xskmap's value is the socket it holds."""
    flags = r.flags & ~Flag.MAYBE_NULL
    if r.base is Base.PTR_TO_MAP_VALUE:
        sock = _SOCK_VALUES.get(int(getattr(r.map, "map_type", 0)))
        if sock is not None:
            return r.but(base=sock, flags=flags)
    return r.but(flags=flags)


_SOCK_VALUES = {mapcompat.SOCKMAP: Base.PTR_TO_SOCKET, mapcompat.SOCKHASH: Base.PTR_TO_SOCKET,
                mapcompat.XSKMAP: Base.PTR_TO_XDP_SOCK}  # fmt: skip


#: reg_type_mismatch_ok's exceptions: accesses the kernel rewrites per pointer type
_REWRITTEN = frozenset({Base.PTR_TO_CTX, Base.PTR_TO_SOCKET, Base.PTR_TO_SOCK_COMMON,
                        Base.PTR_TO_TCP_SOCK, Base.PTR_TO_XDP_SOCK, Base.PTR_TO_BTF_ID})
_MEM_OR_BTF = frozenset({Base.PTR_TO_MEM, Base.PTR_TO_BTF_ID})

#: reg_not_null: the pointer types that are never NULL once they are not "_or_null"
_NOT_NULL = frozenset({Base.PTR_TO_SOCKET, Base.PTR_TO_TCP_SOCK, Base.PTR_TO_MAP_VALUE,
                       Base.PTR_TO_MAP_KEY, Base.PTR_TO_SOCK_COMMON, Base.PTR_TO_MEM})


def _not_null(r: Reg) -> bool:
    if r.maybe_null:
        return False
    trusted = r.base is Base.PTR_TO_BTF_ID and bool(r.flags & Flag.PTR_TRUSTED)
    return r.base in _NOT_NULL or trusted


def _is_const(r: Reg, is32: bool) -> bool:
    """is_reg_const: a scalar whose value (its low half for a 32-bit jump) is known."""
    if not r.is_scalar:
        return False
    return r.var.var_off.subreg_is_const() if is32 else not r.var.var_off.mask


def _mark_null(st: State, rid: int, is_null: bool) -> None:
    """mark_ptr_or_null_regs: every copy of the pointer becomes NULL (0) or non-NULL.

    A NULL result releases the reference only when the pointer is the acquired
    object itself (its id is its ref_obj_id); a pointer derived from a referenced
    one (bpf_tcp_sock(sk)) being NULL leaves the object's reference held.
    """
    ref = 0

    def fix(r: Reg) -> Reg:
        nonlocal ref
        if r.id != rid or not r.maybe_null:
            return r
        if is_null:
            ref = ref or (r.ref if r.ref == rid else 0)
            return const(0)
        if r.base is Base.PTR_TO_MAP_VALUE and getattr(r.map, "spin_lock_off", None) is not None:
            return _not_null_reg(r)  # the id names the value's lock (reg_may_point_to_spin_lock)
        return _not_null_reg(r).but(id=0)

    _map_regs(st, fix)
    if is_null and ref:
        st.refs[:] = [(i, a) for i, a in st.refs if i != ref]


def _find_good_pkt(st: State, pkt: Reg, right_open: bool) -> None:
    if pkt.off < 0 or (pkt.off == 0 and right_open):
        return
    if pkt.var.umax > memory.MAX_PACKET_OFF or pkt.var.umax + pkt.off > memory.MAX_PACKET_OFF:
        return
    new_range = pkt.off + (1 if right_open else 0)

    def fix(r: Reg) -> Reg:
        if r.base is pkt.base and r.id == pkt.id and r.rng < new_range:
            return r.but(rng=new_range)
        return r

    _map_regs(st, fix)
