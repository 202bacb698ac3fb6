"""The simulated kernel: the state bpf(2) commands act on.

One :class:`Kernel` owns an address space, the maps and programs by id (ids
grow from 1 and are never reused, as the kernel's idr allocation appears to
user space), the trace pipe, a clock and a seedable random source.  It offers
the bpf(2) commands as methods — :meth:`map_create`, :meth:`prog_load`,
:meth:`prog_test_run` — and the lookups the helpers need (a map from the
pointer a program holds).  Process-local handles (fds), pinning and the
persistent state directory belong to the kernel-model layer above.
"""

from __future__ import annotations

import errno
import os
import random
import time
from collections.abc import Mapping, Sequence

from pybpf.isa import Instruction
from pybpf.runtime.kmem import KernelMemory
from pybpf.runtime.maps import MAP_CLASSES
from pybpf.runtime.maps.base import Map, MapAttr, MapType, fail
from pybpf.runtime.space import AddressSpace
from pybpf.runtime.tag import default_algorithm
from pybpf.runtime.trace import TracePipe

DEFAULT_ENGINE = "jit"
"""The engine programs get by default ('jit' is bpf_jit_enable=1; see runtime.engines)."""


class Kernel:
    """Maps, programs and shared state of one simulated machine."""

    def __init__(self, *, ncpus: int | None = None, seed: int | None = None,
                 tag_algorithm: str | None = None, verify: bool = True) -> None:  # fmt: skip
        self.space = AddressSpace()
        self.ncpus = ncpus or os.cpu_count() or 1
        self.random = random.Random(seed)
        self.trace = TracePipe()
        self.tag_algorithm = tag_algorithm or default_algorithm()  # SHA-256 unless told
        self.verify = verify  # run the verifier at every prog_load (bpf_check)
        self.engine = DEFAULT_ENGINE  # what prog_load builds unless told: bpf_jit_enable
        self.maps: dict[int, Map] = {}
        self.progs: dict[int, object] = {}
        self._map_by_ptr: dict[int, Map] = {}
        self._next_map_id = 1
        self._next_prog_id = 1
        self.boot = time.monotonic_ns()
        self.netdevs: dict[int, int] = {1: 1}  # ifindex -> rx queues; lo is ifindex 1
        self.kmem = KernelMemory()  # what probe_read_kernel/user read
        # task_struct fields (name -> (offset, size)) bpf_get_current_task's image holds;
        # the loader fills it from the target BTF of CO-RE relocations
        self.task_layout: dict[str, tuple[int, int]] = {}
        self.task_size = 0
        self.current_task_addr: int | None = None
        self.pins: dict[str, object] = {}

    # --- clock ------------------------------------------------------------------
    def ktime_ns(self) -> int:
        """Monotonic nanoseconds since this kernel was created (bpf_ktime_get_ns)."""
        return time.monotonic_ns() - self.boot

    # --- maps ---------------------------------------------------------------------
    def map_create(self, attr: MapAttr) -> Map:
        """BPF_MAP_CREATE: a new map with the next id; EINVAL for an unknown type."""
        cls = MAP_CLASSES.get(attr.map_type)
        if cls is None:
            raise fail(errno.EINVAL, f"map type {MapType(attr.map_type).name} is not supported")
        m = cls(attr, self.space, ncpus=self.ncpus)
        m.id = self._next_map_id
        self._next_map_id += 1
        m.pointer = self.space.alloc(f"map:{m.id}:{attr.name}", 8, writable=False)
        self._map_by_ptr[m.pointer.base] = m
        self.maps[m.id] = m
        return m

    def map_from_pointer(self, address: int) -> Map | None:
        """The map whose ld_imm64 pointer is ``address`` (what helpers receive)."""
        return self._map_by_ptr.get(address)

    def map_free(self, m: Map) -> None:
        """Drop a map (its last reference is gone)."""
        self.maps.pop(m.id, None)
        self._map_by_ptr.pop(m.pointer.base, None)
        self.space.free(m.pointer)
        m.release()

    # --- pins ---------------------------------------------------------------------
    def obj_pin(self, path: str, obj: object) -> None:
        """BPF_OBJ_PIN: keep ``obj`` (a map or program) alive under ``path``; EEXIST if taken.

        The pins of this kernel object only; the persistent bpffs shared by
        processes is the kernel-model layer's.
        """
        if not path.startswith("/sys/fs/bpf/") or path.endswith("/"):
            raise fail(errno.EINVAL, f"{path!r} is not a file under /sys/fs/bpf")
        if path in self.pins:
            raise fail(errno.EEXIST, f"{path} exists")
        self.pins[path] = obj

    def obj_get(self, path: str) -> object:
        """BPF_OBJ_GET: the object pinned at ``path`` (ENOENT otherwise)."""
        try:
            return self.pins[path]
        except KeyError:
            raise fail(errno.ENOENT, f"{path}: no such pin") from None

    def unpin(self, path: str) -> None:
        """Remove a pin (``rm /sys/fs/bpf/X``); ENOENT if there is none."""
        if self.pins.pop(path, None) is None:
            raise fail(errno.ENOENT, f"{path}: no such pin")

    # --- programs ---------------------------------------------------------------
    def prog_load(
        self,
        insns: Sequence[Instruction],
        prog_type,
        *,
        name: str = "",
        license: str = "GPL",
        maps: Mapping[int, Map] | Sequence[Map] = (),
        expected_attach_type: int = 0,
        engine: str | None = None,
        log_level: int = 0,
        verify: bool | None = None,
        line_info: Mapping | None = None,
        func_info: Sequence[int] | None = None,
        prog_flags: int = 0,
        func_scalar_return: Sequence[bool] | None = None,
        funcs: Sequence | None = None,
        kfuncs: Mapping | None = None,
        kernel_btf=None,
        kept=None,
        lazy_engine: bool = False,
    ):
        """BPF_PROG_LOAD: check, relocate and prepare ``insns``; returns the Program.

        ``maps`` resolves ld_imm64 map references: a mapping from the fd a
        MAP_FD / MAP_VALUE instruction names to the map, or a sequence
        indexed by MAP_IDX / MAP_IDX_VALUE (libbpf's fd_array).  The verifier
        runs when ``verify`` (default: the kernel's ``verify`` setting) is true;
        a refusal raises VerifierError with the log at ``log_level`` (0, 1 or
        2) and a report using ``line_info`` (pc -> BTF line info record);
        ``func_info`` are the start pcs of the functions BTF describes;
        ``prog_flags`` are BPF_PROG_LOAD's ``BPF_F_*`` flags (:class:`pybpf.uapi.ProgFlag`);
        ``func_scalar_return`` says per ``func_info`` record whether BTF gives the function
        an int return type (the kernel reads it from the program's BTF); ``funcs`` describes
        each record's function (:class:`pybpf.verifier.funcs.FuncDesc`: global functions are
        verified on their own); ``kfuncs`` maps the ``imm`` of each kfunc call to the
        kfunc's prototype (:class:`pybpf.verifier.kfunc_proto.KfuncProto`, the kernel's
        BTF view of it) and ``kernel_btf`` is that BTF when known (vmlinux).  ``kept`` and
        ``lazy_engine`` restore a program verified before (see :meth:`Program.load`).
        """
        from pybpf.runtime.program import Program  # program.py imports this module

        engine = self.engine if engine is None else engine  # the kernel's default engine
        prog = Program.load(self, insns, prog_type, name=name, license=license, maps=maps,
                            expected_attach_type=expected_attach_type, engine=engine,
                            log_level=log_level,
                            verify=self.verify if verify is None else verify,
                            line_info=line_info, func_info=func_info,
                            prog_flags=prog_flags,
                            func_scalar_return=func_scalar_return, funcs=funcs,
                            kfuncs=kfuncs, kernel_btf=kernel_btf, kept=kept,
                            lazy_engine=lazy_engine)  # fmt: skip
        prog.engine_name = engine
        prog.uid = os.getuid()  # the loading user, as bpf_prog_info's created_by_uid
        prog.id = self._next_prog_id
        self._next_prog_id += 1
        self.progs[prog.id] = prog
        return prog

    def prog_free(self, prog) -> None:
        """Unload a program (its last reference is gone)."""
        self.progs.pop(prog.id, None)
        prog.release()
