"""The native boundary: LLVM IR text in, callable machine code out.

This is the only module that imports llvmlite (and one of the few allowed
ctypes).  It owns every native handle the JIT creates:

* a host :class:`TargetMachine` per compilation (llvmlite's native target is
  initialised once per process);
* :func:`compile_ir` parses and verifies IR text, optimises it with the new
  pass manager at the requested level (``opt_level`` 0..3, see there) and
  turns it into machine code with MCJIT, keeping the object file MCJIT
  emitted (for ``prog dump jited`` and the compile cache);
* :func:`load_object` maps a previously emitted object file again without
  running LLVM's optimiser or code generator;
* :func:`trampoline` wraps a Python callable as the C function generated code
  calls for everything that must reach Python (helpers, slow memory paths,
  errors): ``uint64 fn(void *ctx, uint64 id, uint64 r1..r5)``;
* :class:`Slots` is a pinned array of 64-bit words (the run context the
  generated code reads and writes).

A :class:`NativeModule` stays valid until :meth:`NativeModule.close`; the
caller keeps it (and any trampoline) alive as long as code may run.  LLVM
errors become :class:`~pybpf.errors.JitError`.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

import llvmlite.binding as llvm

from pybpf.errors import JitError

_LOCK = threading.Lock()
_HOST: list[str] = []  # host CPU name and features, read once
_READY = False

TRAMPOLINE_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_uint64, ctypes.c_void_p, *([ctypes.c_uint64] * 6)
)
"""``uint64 (void *ctx, uint64 id, uint64 r1, r2, r3, r4, r5)``."""

ENTRY_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)
"""The entry of a compiled program: ``uint64 entry(void *ctx)`` returns a status."""


def _init() -> None:
    global _READY
    if not _READY:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _HOST[:] = [llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()]
        _READY = True


def target_machine(opt_level: int = 2) -> llvm.TargetMachine:
    """A new target machine for the host at ``opt_level`` (0..3).

    Each execution engine takes ownership of the target machine it is given
    (and frees it when closed), so every compilation gets its own.
    """
    if not 0 <= opt_level <= 3:
        raise JitError(f"optimisation level {opt_level} is not 0..3")
    with _LOCK:
        _init()
        target = llvm.Target.from_default_triple()
        return target.create_target_machine(
            cpu=_HOST[0], features=_HOST[1], opt=opt_level, reloc="static",
            codemodel="jitdefault",
        )  # fmt: skip


def triple() -> str:
    """The host target triple code is generated for."""
    _init()
    return llvm.get_process_triple()


def host_cpu() -> str:
    """The host CPU name LLVM tunes code for."""
    _init()
    return llvm.get_host_cpu_name()


class NativeModule:
    """Machine code mapped into this process: function addresses and the object file."""

    def __init__(self, engine: llvm.ExecutionEngine, object_code: bytes, keep=()) -> None:
        self._engine = engine
        self.object_code = object_code
        self._keep = keep

    def address(self, name: str) -> int:
        """The address of function ``name``; JitError when the module has none."""
        if self._engine is None:
            raise JitError("the native module is closed")
        address = self._engine.get_function_address(name)
        if not address:
            raise JitError(f"compiled module has no function {name!r}")
        return address

    def entry(self, name: str) -> Callable[[int], int]:
        """Function ``name`` as ``uint64 f(void *ctx)`` callable from Python."""
        return ENTRY_TYPE(self.address(name))

    def function(self, name: str, nargs: int) -> Callable[..., int]:
        """Function ``name`` as ``uint64 f(uint64, ...)`` of ``nargs`` arguments."""
        return ctypes.CFUNCTYPE(ctypes.c_uint64, *[ctypes.c_uint64] * nargs)(self.address(name))

    def close(self) -> None:
        """Unmap the code (no function of this module may run afterwards)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def _parse(ir_text: str) -> llvm.ModuleRef:
    try:
        module = llvm.parse_assembly(ir_text)
        module.verify()
    except RuntimeError as err:
        raise JitError(f"LLVM rejected the generated IR: {err}") from err
    return module


DEFAULT_OPT_LEVEL = 1
"""The level large programs are compiled at unless asked otherwise (fast to compile)."""
AUTO_O2_LIMIT = 128
"""Programs up to this many instructions get LLVM's O2 by default (a few ms each)."""


def auto_opt_level(insn_count: int) -> int:
    """The level a program of ``insn_count`` instructions is compiled at when none is asked:
    2 up to :data:`AUTO_O2_LIMIT` instructions, :data:`DEFAULT_OPT_LEVEL` above."""
    return 2 if insn_count <= AUTO_O2_LIMIT else DEFAULT_OPT_LEVEL


def _optimise(module: llvm.ModuleRef, tm: llvm.TargetMachine, opt_level: int) -> None:
    pto = llvm.create_pipeline_tuning_options(speed_level=max(opt_level, 1))
    pb = llvm.create_pass_builder(tm, pto)
    if opt_level >= 2:
        pm = pb.getModulePassManager()
    else:
        pm = llvm.create_new_module_pass_manager()
        pm.add_sroa_pass()
    pm.run(module, pb)


def compile_ir(ir_text: str, *, opt_level: int = DEFAULT_OPT_LEVEL) -> NativeModule:
    """Parse, verify, optimise and compile ``ir_text``; JitError if LLVM refuses it.

    Levels: 0 compiles the IR as it is with LLVM's fast instruction selector;
    1 (the default) first promotes the register allocas to SSA values (SROA),
    which is most of the benefit for a fraction of the time; 2 and 3 run
    LLVM's O2/O3 pipelines and optimising code generator (several times
    faster code, tens of times slower to compile).
    """
    if not 0 <= opt_level <= 3:
        raise JitError(f"optimisation level {opt_level} is not 0..3")
    tm = target_machine(opt_level if opt_level >= 2 else 0)
    module = _parse(ir_text)
    if opt_level:
        _optimise(module, tm, opt_level)
    captured: list[bytes] = []
    engine = llvm.create_mcjit_compiler(module, tm)
    engine.set_object_cache(notify_func=lambda _mod, data: captured.append(bytes(data)))
    engine.finalize_object()
    return NativeModule(engine, captured[-1] if captured else b"")


def compile_object(ir_text: str, *, opt_level: int = DEFAULT_OPT_LEVEL) -> bytes:
    """The relocatable object file of ``ir_text`` (for a compile cache)."""
    native = compile_ir(ir_text, opt_level=opt_level)
    try:
        return native.object_code
    finally:
        native.close()


_HEADER: list[bytes] = []  # ELF identification, type and machine of this host's objects


def _host_header() -> bytes:
    if not _HEADER:
        _HEADER.append(compile_object("define void @f() {\n  ret void\n}\n")[:20])
    return _HEADER[0]


def load_object(data: bytes) -> NativeModule:
    """Map an object file :func:`compile_object` produced.

    Raises JitError for bytes that are not a relocatable object for this host
    (header checked before LLVM sees them).  The rest of the file is trusted:
    it must come from :func:`compile_object` (a cache the caller owns).
    """
    data = bytes(data)
    if len(data) < 64 or data[:20] != _host_header():
        raise JitError("not a relocatable object file for this host")
    tm = target_machine()
    module = _parse(f'target triple = "{tm.triple}"\n')
    engine = llvm.create_mcjit_compiler(module, tm)
    try:
        engine.add_object_file(llvm.ObjectFileRef.from_data(bytes(data)))
        engine.finalize_object()
    except (RuntimeError, ValueError) as err:
        engine.close()
        raise JitError(f"cannot load object code: {err}") from err
    return NativeModule(engine, bytes(data))


def trampoline(fn: Callable[..., int]):
    """``fn(ctx, id, r1..r5) -> int`` as a C function pointer; keep the result alive."""
    return TRAMPOLINE_TYPE(fn)


def address_of(cfunc) -> int:
    """The address of a ctypes function pointer (what generated code calls)."""
    return ctypes.cast(cfunc, ctypes.c_void_p).value or 0


class Slots:
    """A pinned array of ``count`` unsigned 64-bit words at a fixed host address."""

    def __init__(self, count: int) -> None:
        self.words = (ctypes.c_uint64 * count)()
        self.address = ctypes.addressof(self.words)

    def __getitem__(self, index: int) -> int:
        return self.words[index]

    def __setitem__(self, index: int, value: int) -> None:
        self.words[index] = value & 0xFFFF_FFFF_FFFF_FFFF
