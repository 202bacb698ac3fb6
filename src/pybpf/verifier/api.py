"""The verifier's public face: :func:`verify`, :class:`Target`, :class:`Verdict`.

``verify(insns, target)`` is ``bpf_check`` for a privileged (CAP_BPF)
loader: the structural checks of :mod:`.cfg`, the abstract interpretation
of :mod:`.check`, the stack-depth check, then the xlated rewrites.  It
never raises for a refused program: the refusal is the verdict's
``error`` (a :class:`~pybpf.errors.VerifierError` with the pc, the
kernel's message and errno, the log at the level asked and the report).
"""

from __future__ import annotations

import errno
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pybpf.errors import VerifierError
from pybpf.isa import Instruction
from pybpf.uapi import ProgFlag
from pybpf.verifier import cfg, mapcompat
from pybpf.verifier.calls import liveness
from pybpf.verifier.check import Checker
from pybpf.verifier.fixups import Site, sites, subprog_depths
from pybpf.verifier.funcs import FuncDesc
from pybpf.verifier.log import Log, insn_text
from pybpf.verifier.protos import HelperProto
from pybpf.verifier.state import path_pcs


class MapInfo(Protocol):
    """What the verifier reads of a map (pybpf's runtime maps have these attributes)."""

    id: int
    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    frozen: bool


@dataclass(frozen=True)
class Target:
    """What a program is verified for.

    ``maps`` is keyed by the map id that the xlated ``ld_imm64 map[id:N]``
    carries in ``imm``; ``helpers`` holds the prototypes of the helpers this
    program type may call, by helper id; ``line_info`` maps pcs to source
    lines for the report (optional).  ``func_info`` is the BTF func_info of
    the load: the start pc of every function the program's BTF describes,
    in order (None or empty: the load has none).  With it, callbacks may be
    loaded (``ld_imm64`` of a function, BPF_PSEUDO_FUNC) and subprograms may
    hold LD_ABS and tail calls; it must name exactly the subprograms'
    starts, as the kernel's ``check_btf_func`` demands.  ``funcs`` describes
    each func_info record's function (:class:`~pybpf.verifier.funcs.FuncDesc`:
    linkage and argument types from BTF; None or a None entry: a static
    function): a global function is verified on its own, after the main
    program, once some verified code calls it, and a call to it checks the
    arguments against its BTF types instead of walking it.  Without
    ``funcs`` every function is static.
    """

    prog_type: int
    attach_type: int = 0
    gpl: bool = True
    maps: Mapping[int, Any] = field(default_factory=dict)
    helpers: Mapping[int, HelperProto] = field(default_factory=dict)
    line_info: Mapping | None = None
    func_info: Sequence[int] | None = None
    prog_flags: int = 0  # BPF_PROG_LOAD's BPF_F_* flags (pybpf.uapi.ProgFlag)
    #: per func_info record: the function's BTF return type is an int or enum (None: unknown)
    func_scalar_return: Sequence[bool] | None = None
    #: per func_info record: the function as BTF describes it (None: static, unknown)
    funcs: Sequence[FuncDesc | None] | None = None
    #: the kfuncs the program's calls name: imm -> prototype (pybpf.verifier.kfunc_proto)
    kfuncs: Mapping[int, Any] = field(default_factory=dict)
    #: the kernel's BTF (vmlinux) when known: the types bpf_rdonly_cast names
    kernel_btf: Any = None

    @property
    def has_func_info(self) -> bool:
        return bool(self.func_info)


@dataclass(frozen=True)
class Verdict:
    """The verifier's answer; ``ok`` iff ``error`` is None.

    ``xlated`` is the image after the privileged rewrites (empty when
    refused); ``path`` the pcs of the path that failed (or the last one
    explored); ``stack_depths`` the stack bytes each subprogram uses.
    """

    ok: bool
    log: str
    error: VerifierError | None
    xlated: tuple[Instruction, ...]
    insns_processed: int
    max_states_per_insn: int
    total_states: int
    peak_states: int
    stack_depths: tuple[int, ...]
    path: tuple[int, ...]
    #: by pc of ``xlated``: what the kernel's last rewrites need to know (fixups.Site)
    sites: Mapping[int, Site] = field(default_factory=dict)
    direct_write: bool = False  # env->seen_direct_write: tc and sk_skb get a prologue
    #: by start pc of ``xlated``: the stack bytes each subprogram uses
    depths: Mapping[int, int] = field(default_factory=dict)


def _summary(c: Checker | None) -> str:
    if c is None:
        return "processed 0 insns (limit 1000000) max_states_per_insn 0 total_states 0 " \
               "peak_states 0 mark_read 0"
    return (f"processed {c.processed} insns (limit {cfg.MAX_INSNS}) max_states_per_insn "
            f"{c.max_states_per_insn} total_states {c.total_states} peak_states "
            f"{c.peak_states} mark_read 0")


def _stats(log: Log, c: Checker | None, started: int) -> None:
    """print_verification_stats: at BPF_LOG_STATS the time taken and each subprogram's
    stack depth, then (at any level) the summary line."""
    if log.stats:
        log.always(f"verification time {(time.perf_counter_ns() - started) // 1000} usec")
        count = len(c.structure.subprogs) if c is not None else 1
        depths = [c.depths.get(i, 0) if c is not None else 0 for i in range(count)]
        log.always("stack depth " + "+".join(str(d) for d in depths))
    log.always(_summary(c))


def _log_live_registers(log: Log, structure, target: Target) -> None:
    """compute_live_registers' table: which of r0-r9 each instruction may read later."""
    live = liveness(structure, target.helpers)
    log.add("Live regs before insn:")
    for pc, insn in zip(structure.pcs, structure.insns, strict=False):
        regs = set(live.get(pc, ()))
        mask = "".join(str(r) if r in regs else "." for r in range(10))
        log.add(f"{pc:7d}: {mask} {insn_text(insn, log.kfunc_names)}")


def verify(insns: Sequence[Instruction], target: Target, *, log_level: int = 0) -> Verdict:
    """Verify ``insns`` (logical instructions, pcs are slot indexes) for ``target``."""
    log = Log(log_level, target.line_info,
              {imm: k.name for imm, k in target.kfuncs.items()})  # fmt: skip
    started = time.perf_counter_ns()
    checker: Checker | None = None
    path: tuple[int, ...] = ()
    try:
        _check_func_info_early(target.func_info)
        structure = cfg.analyze(insns, btf=target.has_func_info or bool(target.line_info),
                                on_map=_map_checker(target))  # fmt: skip
        if log.level >= 2:  # check_subprogs lists the functions, then the live registers
            for index, sub in enumerate(structure.subprogs):
                log.add(f"func#{index} @{sub.start}")
            _log_live_registers(log, structure, target)
        _check_func_info(structure, target.func_info, target.func_scalar_return)
        checker = Checker(structure, target, log)
        try:
            checker.run()
        except VerifierError:
            raise
        except (ArithmeticError, AttributeError, IndexError, KeyError, TypeError,
                ValueError) as exc:  # a verifier bug is still a typed refusal
            raise VerifierError(f"pybpf verifier bug at insn {checker.pc}: "
                                f"{type(exc).__name__}: {exc}", pc=checker.pc,
                                errno=errno.EFAULT) from exc  # fmt: skip
        finally:
            path = path_pcs(checker.state)
        depths = [checker.depths.get(i, 0) for i in range(len(structure.subprogs))]
        cfg.check_stack_depth(structure, depths,
                              private=cfg.private_stack(int(target.prog_type)))
    except VerifierError as exc:
        if exc.pc is None or checker is None:
            for line in exc.reason.split("\n"):
                log.always(line)
        _stats(log, checker, started)
        err = VerifierError(exc.reason, pc=exc.pc, errno=exc.errno, log=log.text())
        err.report = _report(insns, err, path, target)
        return Verdict(False, err.log, err, (), checker.processed if checker else 0,
                       checker.max_states_per_insn if checker else 0,
                       checker.total_states if checker else 0,
                       checker.peak_states if checker else 0, (), path)
    _stats(log, checker, started)  # the checker forgot each verified function's log at level 1
    kept = cfg.xlate(structure.insns, checker.seen)
    return Verdict(True, log.text(), None, kept.insns, checker.processed,
                   checker.max_states_per_insn, checker.total_states, checker.peak_states,
                   tuple(depths), path, sites(checker, kept.pc_map),
                   checker.seen_direct_write, subprog_depths(checker, kept.pc_map))


def _map_checker(target: Target):
    """check_map_prog_compatibility and the cgroup storage rule, for each map the program
    names (by the id the xlated ld_imm64 carries), as resolve_pseudo_ldimm64 meets them."""
    used: list = []
    sleepable = bool(target.prog_flags & ProgFlag.SLEEPABLE)

    def check(slot) -> None:
        m = target.maps.get(slot.imm)
        if m is None:
            return
        if m not in used:
            used.append(m)
        error = mapcompat.map_prog_error(used, sleepable=sleepable,
                                         prog_type=int(target.prog_type))  # fmt: skip
        if error is not None:
            raise VerifierError(error[0], errno=error[1])

    return check


def _check_func_info_early(func_info: Sequence[int] | None) -> None:
    """check_btf_func_early: the records start at 0 and their offsets increase."""
    if not func_info:
        return
    if func_info[0]:
        raise VerifierError(f"nonzero insn_off {func_info[0]} for the first func info record",
                            errno=errno.EINVAL)  # fmt: skip
    for prev, off in itertools.pairwise(func_info):
        if off <= prev:
            raise VerifierError(f"same or smaller insn offset ({off}) than previous func info "
                                f"record ({prev})", errno=errno.EINVAL)  # fmt: skip


def _check_func_info(structure: cfg.Structure, func_info: Sequence[int] | None,
                     scalar_return: Sequence[bool] | None = None) -> None:  # fmt: skip
    """check_btf_func: one record per subprogram, each at its subprogram's start; a
    subprogram with LD_ABS or a tail call returns an int (LD_ABS's hidden exit and a
    tail call's return put a scalar in R0)."""
    if not func_info:
        return
    subprogs = structure.subprogs
    if len(func_info) != len(subprogs):
        raise VerifierError("number of funcs in func_info doesn't match number of subprogs",
                            errno=errno.EINVAL)  # fmt: skip
    for off, sub in zip(func_info, subprogs, strict=True):
        if off != sub.start:
            raise VerifierError("func_info BTF section doesn't match subprog layout in BPF "
                                "program", errno=errno.EINVAL)  # fmt: skip
    for i, sub in enumerate(subprogs):
        if not i or scalar_return is None or i >= len(scalar_return) or scalar_return[i]:
            continue
        if sub.has_ld_abs:
            raise VerifierError("LD_ABS is only allowed in functions that return 'int'.",
                                errno=errno.EINVAL)  # fmt: skip
        if sub.has_tail_call:
            raise VerifierError("tail_call is only allowed in functions that return 'int'.",
                                errno=errno.EINVAL)  # fmt: skip


def _report(insns, err: VerifierError, path: tuple[int, ...], target: Target) -> str:
    try:
        from pybpf.verifier import report
    except ImportError:
        return ""
    try:
        return report.build_report(list(insns), err, path=path, line_info=target.line_info,
                                   source=None)  # fmt: skip
    except Exception:
        return ""
