"""A loaded program: identity, the xlated image, and the engine that runs it.

:meth:`Program.load` does what BPF_PROG_LOAD does before and after the
verifier: checks the name and license, validates every instruction and jump,
resolves ld_imm64 map references (MAP_FD / MAP_VALUE by fd, MAP_IDX /
MAP_IDX_VALUE by fd_array index) to the maps' ids, refuses helpers the
program type may not call or a non-GPL program may not use, computes the tag
and prepares the engine.

The **xlated image** (what the engines run) keeps the kernel's map references
as ``bpftool prog dump xlated`` shows them: map references become ``map[id:N]`` /
``map[id:N][0]+off`` (src MAP_FD / MAP_VALUE with the map *id* in imm), and
helper calls keep their ids so listings name them; :attr:`Program.shown` adds
the kernel's last rewrites for listings and sizes.  The **tag** is computed
over the instructions with map immediates zeroed (so it is the same whatever
fds or ids a load got), SHA-256 as Linux 6.18 computes it unless the kernel was
told SHA-1 (the seeds' older kernel; see runtime.tag).
"""

from __future__ import annotations

import errno
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pybpf.errors import KernelError, PybpfError, VerifierError
from pybpf.isa import LDDW, Instruction, Kind, Pseudo, check_jumps, slot_offsets
from pybpf.runtime.helpers import helper_table
from pybpf.runtime.kfuncs import kfunc_table
from pybpf.runtime.maps.base import Map, MapType, fail
from pybpf.runtime.progtypes import PROG_TYPES, ProgType
from pybpf.runtime.tag import prog_tag
from pybpf.uapi import PROG_LOAD_FLAGS, ProgFlag
from pybpf.verifier.fixups import View, kernel_view
from pybpf.vm.interpreter import Interpreter

if TYPE_CHECKING:
    from pybpf.runtime.kernel import Kernel

NAME_MAX = 15  # BPF_OBJ_NAME_LEN - 1
_NAME = re.compile(r"[A-Za-z0-9_.]*")
# license_is_gpl_compatible() in include/linux/license.h
GPL_COMPATIBLE = frozenset({
    "GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL",
})  # fmt: skip
_DIRECT_VALUE_MAPS = (MapType.ARRAY,)  # maps whose values an ld_imm64 may address directly


class Program:
    """One loaded program (see the module docstring)."""

    def __init__(self, kernel: Kernel, prog_type: ProgType, name: str, license: str) -> None:
        self.kernel = kernel
        self.prog_type = ProgType(prog_type)
        self.name = name
        self.license = license
        self.gpl_compatible = license in GPL_COMPATIBLE
        self.id = 0
        self.loaded_at = time.time()
        self.uid = 0
        self.insns: tuple[Instruction, ...] = ()
        self.xlated: tuple[Instruction, ...] = ()
        self.maps: list[Map] = []
        self.tag = ""
        self.verdict = None  # the verifier's Verdict when the program was verified
        self._shown: tuple[tuple[Instruction, ...], View] | None = None
        self.has_func_info = False  # the load carried BTF func_info (callbacks are allowed)
        self._engine: Interpreter | None = None
        self._make_engine: Callable[[], Interpreter] | None = None  # a lazy load's engine
        self._engine_args: tuple = ((), ())  # the helper table and the helpers called
        self.kept_jited: int | None = None  # the jited size a restore kept (None: unknown)
        self.native_hooks = None  # the JIT's native hot path (maps_ir.ProgramHooks)
        self.expected_attach_type = 0
        self.prog_flags = ProgFlag(0)  # BPF_PROG_LOAD's BPF_F_* flags
        self.run_count = 0
        self.run_time_ns = 0

    @property
    def engine(self) -> Interpreter | None:
        """The engine that runs the program; a lazy load (``lazy_engine``) prepares it here,
        when the program first runs, so listing programs never compiles them."""
        if self._engine is None and self._make_engine is not None:
            make, self._make_engine = self._make_engine, None
            self._engine = make()
        return self._engine

    @engine.setter
    def engine(self, engine: Interpreter | None) -> None:
        self._engine, self._make_engine = engine, None

    @property
    def engine_prepared(self) -> bool:
        """False while a lazy load's engine waits for the program's first run."""
        return self._make_engine is None

    @property
    def kept_bytes_jited(self) -> int | None:
        """The jited image's size the state kept, while the engine is not prepared (the
        same image on the same engine compiles to it); None otherwise."""
        return None if self.engine_prepared else self.kept_jited

    @property
    def map_ids(self) -> list[int]:
        """Ids of the maps the program references, in first-use order."""
        return [m.id for m in self.maps]

    @property
    def shown(self) -> View:
        """The xlated image as the kernel keeps and shows it (``prog dump xlated``).

        The engines run :attr:`xlated`; the kernel rewrites it once more after the
        verifier (context accesses to its own structs, inlined map lookups, division
        guards, helper calls to their kernel functions): :mod:`pybpf.verifier.fixups`
        builds that image from the verifier's facts, computed once per image.
        """
        if self._shown is None or self._shown[0] is not self.xlated:
            verdict = self.verdict
            if isinstance(verdict, KeptVerdict) and verdict.xlated is self.xlated:
                self._shown = (self.xlated, verdict.shown)
                return verdict.shown
            view = kernel_view(self.xlated, int(self.prog_type),
                               verdict.sites if verdict is not None else None,
                               direct_write=verdict is not None and verdict.direct_write,
                               depths=verdict.depths if verdict is not None else None)
            self._shown = (self.xlated, view)
        return self._shown[1]

    @property
    def bytes_xlated(self) -> int:
        """Size of the shown xlated image in bytes (8 per slot)."""
        return 8 * self.shown.slots

    def tag_with(self, algorithm: str) -> str:
        """The tag under another algorithm ('sha1' or 'sha256')."""
        return prog_tag(self.xlated, algorithm)

    # --- loading ----------------------------------------------------------------
    @classmethod
    def load(cls, kernel: Kernel, insns: Sequence[Instruction], prog_type, *, name: str = "",
             license: str = "GPL", maps: Mapping[int, Map] | Sequence[Map] = (),
             expected_attach_type: int = 0, engine: str = "interp", log_level: int = 0,
             verify: bool = False, line_info: Mapping | None = None,
             func_info: Sequence[int] | None = None, prog_flags: int = 0,
             func_scalar_return: Sequence[bool] | None = None,
             funcs: Sequence | None = None, kfuncs: Mapping | None = None,
             kernel_btf=None, kept: View | None = None,
             lazy_engine: bool = False) -> Program:  # fmt: skip
        """Check and prepare ``insns`` (see the module docstring); KernelError on refusal.

        ``kept`` is the shown image of an earlier verified load of the same image (the
        state store keeps it): the program counts as verified (a :class:`KeptVerdict`)
        without running the verifier again.  ``lazy_engine`` prepares the engine when
        the program first runs (:attr:`engine`) instead of now.
        """
        try:
            prog_type = ProgType(prog_type)
        except ValueError:
            raise fail(errno.EINVAL, f"unknown program type {prog_type}") from None
        if prog_type not in PROG_TYPES:
            raise fail(errno.EINVAL, f"program type {prog_type.name.lower()} is not supported")
        if len(name) > NAME_MAX or not _NAME.fullmatch(name):
            raise fail(errno.EINVAL, f"invalid program name {name!r} (15 of [A-Za-z0-9_.])")
        if not insns:
            raise fail(errno.EINVAL, "a program needs at least one instruction")
        if prog_flags & ~PROG_LOAD_FLAGS:
            raise fail(errno.EINVAL, f"unknown program flags {prog_flags & ~PROG_LOAD_FLAGS:#x}")
        refused = PROG_TYPES[prog_type].load_error(expected_attach_type, prog_flags)
        if refused is not None:  # bpf_prog_load_check_attach, the sleepable rule
            raise fail(errno.EINVAL, refused)
        prog = cls(kernel, prog_type, name, license)
        prog.prog_flags = ProgFlag(prog_flags)
        prog.expected_attach_type = expected_attach_type
        prog.insns = tuple(insns)
        try:
            specs, bad_jumps = check_jumps(prog.insns), None
        except PybpfError as err:  # the verifier words it as the kernel does, when it runs
            specs, bad_jumps = (), err
        prog.xlated = tuple(prog._relocate(prog.insns, maps))
        prog.tag = prog_tag(prog.xlated, kernel.tag_algorithm)  # before the verifier's rewrites
        if verify:
            from pybpf.runtime.verification import verify_program

            prog.verdict = verify_program(prog, log_level=log_level, line_info=line_info,
                                          func_info=func_info,
                                          func_scalar_return=func_scalar_return,
                                          funcs=funcs, kfuncs=kfuncs,
                                          kernel_btf=kernel_btf)
            prog.has_func_info = bool(func_info)
            prog.xlated = prog.verdict.xlated
        elif kept is not None:  # verified when first loaded: the same image, not again
            prog.verdict = KeptVerdict(prog.xlated, kept)
            prog.has_func_info = bool(func_info)
        if bad_jumps is not None:
            raise KernelError(str(bad_jumps), errno=errno.EINVAL) from bad_jumps
        called = [insn.imm for insn, spec in zip(prog.insns, specs, strict=True)
                  if spec.kind is Kind.CALL]  # fmt: skip
        helpers = helper_table(kernel, prog, called)
        kfunc_table(helpers, kfuncs or {})
        prog._engine_args = (helpers, called)
        prog._make_engine = lambda: prog.build_engine(engine)
        if not lazy_engine:
            prog.engine  # noqa: B018 - prepared now: a JIT refusal fails the load
        return prog

    def build_engine(self, engine: str) -> Interpreter:
        """A new engine ``engine`` for the xlated image, with its native hooks on the JIT."""
        helpers, called = self._engine_args
        from pybpf.jit.maps_ir import ProgramHooks
        from pybpf.runtime import engines

        native = {}
        if engine == "jit":  # the hot path: maps, ktime, csum_diff... without Python
            trusted = self.verdict is not None and not engines.JIT_CHECKED_DEFAULT
            self.native_hooks = ProgramHooks(
                self.maps, boot_ns=self.kernel.boot, seed=0, trusted=trusted, prandom=False,
                insn_count=len(self.xlated), called=called)
            if self.native_hooks.native_calls:
                native = {"native_calls": self.native_hooks.native_calls,
                          "prelude": self.native_hooks.prelude}  # fmt: skip
        return engines.build(
            engine, self.xlated, verified=self.verdict is not None, helpers=helpers,
            resolve_imm64=self._resolve, tail_call=self._tail_call,
            memory=self.kernel.space.memory, **native,
        )  # fmt: skip

    def _relocate(self, insns: Sequence[Instruction], maps) -> list[Instruction]:
        out = []
        for pc, insn in zip(slot_offsets(insns), insns, strict=True):
            if insn.code == LDDW and insn.src_reg in (
                Pseudo.MAP_FD,
                Pseudo.MAP_VALUE,
                Pseudo.MAP_IDX,
                Pseudo.MAP_IDX_VALUE,
            ):
                m = self._map_ref(insn, maps, pc)
                if m not in self.maps:
                    self.maps.append(m)
                direct = insn.src_reg in (Pseudo.MAP_VALUE, Pseudo.MAP_IDX_VALUE)
                if direct:  # array_map_direct_value_addr: one-entry arrays only
                    if m.map_type not in _DIRECT_VALUE_MAPS or m.max_entries != 1:
                        raise fail(errno.EINVAL, f"pc {pc}: direct value access on map "
                                                 f"{m.name!r} is not allowed")  # fmt: skip
                    if not 0 <= insn.imm2 < m.value_size:
                        raise fail(
                            errno.EINVAL,
                            f"pc {pc}: direct value offset {insn.imm2} "
                            f"outside map {m.name!r} value ({m.value_size}B)",
                        )
                insn = replace(insn, src_reg=Pseudo.MAP_VALUE if direct else Pseudo.MAP_FD,
                               imm=m.id, imm2=insn.imm2 if direct else 0)  # fmt: skip
            elif insn.code == LDDW and insn.src_reg == Pseudo.BTF_ID:
                raise fail(errno.EINVAL, f"pc {pc}: ld_imm64 of a kernel symbol (BTF id) "
                                         "is not supported")  # fmt: skip
            out.append(insn)
        return out

    @staticmethod
    def _map_ref(insn: Instruction, maps, pc: int) -> Map:
        by_index = insn.src_reg in (Pseudo.MAP_IDX, Pseudo.MAP_IDX_VALUE)
        try:
            m = maps[insn.imm] if by_index or isinstance(maps, Mapping) else None
        except (IndexError, KeyError):
            m = None
        if not isinstance(m, Map):
            if not by_index:  # resolve_pseudo_ldimm64, in the verifier's log: stdin, stdout
                # and stderr are open files that are not maps (EINVAL); other fds are not open
                why = f"fd {insn.imm} is not pointing to valid bpf_map"
                err = errno.EINVAL if insn.imm in (0, 1, 2) else errno.EBADF
                raise VerifierError(why, errno=err, log=why + "\n")
            raise fail(errno.EBADF, f"pc {pc}: fd_array index {insn.imm} is not a map")
        if by_index is False and not isinstance(maps, Mapping):
            raise fail(errno.EBADF, f"pc {pc}: map fd {insn.imm} needs a fd -> map mapping")
        return m

    def _resolve(self, insn: Instruction, pc: int) -> int:
        """Turn an xlated map reference into the address the program holds."""
        m = self.kernel.maps.get(insn.imm)
        if m is None:  # pragma: no cover - _relocate only emits ids of live maps
            raise fail(errno.EBADF, f"pc {pc}: map id {insn.imm} is gone")
        if insn.src_reg == Pseudo.MAP_VALUE:
            return m.direct_value_address() + insn.imm2
        return m.pointer.base

    def _tail_call(self, env, ctx: int, prog_array: int, index: int):
        m = self.kernel.map_from_pointer(prog_array)
        if m is None or m.map_type != MapType.PROG_ARRAY:
            return None
        target = m.program_at(index)
        count = env.scratch.get("tail_calls", 0)
        if target is None or count >= 33:  # MAX_TAIL_CALL_CNT
            return None
        env.scratch["tail_calls"] = count + 1
        return target.engine

    def release(self) -> None:
        """Free the engine's resources (an engine never prepared is never made)."""
        self._make_engine = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None


@dataclass(frozen=True)
class KeptVerdict:
    """The verdict of a program the verifier passed in an earlier load of the same
    ``xlated`` image (a program the state store restores): what the kernel keeps of a
    verification, its final image ``shown``, and no log (this load ran no verifier)."""

    xlated: tuple[Instruction, ...]
    shown: View
    log: str = ""
