"""The one error family of pybpf.

Every error pybpf raises on purpose derives from :class:`PybpfError`, with one
base per layer (:class:`IsaError`, :class:`AsmError`, :class:`VmError`,
:class:`KernelError`).  Errors carry their facts as attributes (``pc``,
``field``, ``line``, ``column``, ``address``...) so callers and tests match on
types and fields, never on message text.  Foreign exceptions (``struct.error``,
``OSError`` from a syscall...) are converted where they enter pybpf.
"""

from __future__ import annotations


class PybpfError(Exception):
    """Base of every error pybpf raises deliberately."""


# --- instruction set -------------------------------------------------------


class IsaError(PybpfError):
    """Bytecode that cannot be decoded, encoded or is not a valid instruction.

    ``pc`` is the instruction index (in 8-byte slots) when known.
    """

    def __init__(self, message: str, *, pc: int | None = None) -> None:
        self.pc = pc
        where = f"pc {pc}: " if pc is not None else ""
        super().__init__(where + message)


class TruncatedError(IsaError):
    """The byte string ends inside an instruction (or inside an lddw pair)."""


class UnknownOpcodeError(IsaError):
    """The opcode byte (with its discriminating field) names no instruction."""

    def __init__(self, message: str, *, pc: int | None = None, code: int = 0) -> None:
        self.code = code
        super().__init__(message, pc=pc)


class ReservedFieldError(IsaError):
    """A field the instruction does not use is not zero, or holds a bad value.

    ``field`` is the kernel's name of the field: ``dst_reg``, ``src_reg``,
    ``off`` or ``imm`` (or ``code`` of an lddw's second slot).
    """

    def __init__(self, message: str, *, pc: int | None = None, field: str) -> None:
        self.field = field
        super().__init__(message, pc=pc)


class JumpRangeError(IsaError):
    """A jump or call target lies outside the program or inside an lddw."""


class EncodeError(IsaError):
    """An Instruction's fields do not fit the wire format."""


# --- assembly text ---------------------------------------------------------


class AsmError(PybpfError):
    """Assembly text that cannot be assembled; ``line`` and ``column`` are 1-based."""

    def __init__(self, message: str, *, line: int, column: int = 1, text: str = "") -> None:
        self.line = line
        self.column = column
        self.text = text
        self.reason = message
        super().__init__(f"line {line}, column {column}: {message}")


# --- execution -------------------------------------------------------------


class VmError(PybpfError):
    """A program stopped abnormally while running; ``pc`` is where."""

    def __init__(self, message: str, *, pc: int | None = None) -> None:
        self.pc = pc
        where = f"pc {pc}: " if pc is not None else ""
        super().__init__(where + message)


class MemoryFault(VmError):
    """A load or store outside the regions the program may touch.

    ``address`` and ``size`` describe the access; ``region`` names the nearest
    region (or ``None``), ``write`` tells a store from a load.
    """

    def __init__(
        self, *, pc: int, address: int, size: int, write: bool, region: str | None, reason: str
    ) -> None:
        self.address = address
        self.size = size
        self.write = write
        self.region = region
        kind = "store" if write else "load"
        near = f" ({reason} {region})" if region else f" ({reason})"
        super().__init__(f"invalid {kind} of {size} bytes at {address:#x}{near}", pc=pc)


class BudgetExceeded(VmError):
    """The program ran more instructions than its budget allows.

    ``budget`` is that budget; ``pc`` the start of the block that would have
    gone over it.  The message is ``pc N: instruction budget of B exhausted``.
    """

    def __init__(self, budget: int, *, pc: int | None = None) -> None:
        self.budget = budget
        super().__init__(f"instruction budget of {budget} exhausted", pc=pc)


class CallDepthError(VmError):
    """A bpf-to-bpf call would exceed the kernel's 8 frames."""


class UnknownHelperError(VmError):
    """A call names a helper id (or kfunc) that is not registered."""


class HelperError(VmError):
    """A helper failed; ``__cause__`` holds the original exception."""


class UnresolvedLoadError(VmError):
    """An ld_imm64 with a pseudo source (map fd, BTF id...) reached the VM unresolved."""


class TailCallError(VmError):
    """A tail call could not be made for a reason the kernel would not ignore."""


# --- object files ------------------------------------------------------------


class ObjectError(PybpfError):
    """An ELF object that cannot be read or loaded; names what is wrong and where.

    ``section`` and ``symbol`` are set when the problem is tied to one.
    """

    def __init__(self, message: str, *, section: str | None = None,
                 symbol: str | None = None) -> None:  # fmt: skip
        self.section = section
        self.symbol = symbol
        where = "".join(f"{k} {v!r}: " for k, v in (("section", section), ("symbol", symbol)) if v)
        super().__init__(where + message)


class BtfError(ObjectError):
    """BTF or BTF.ext data that is malformed; ``offset`` is the byte offset when known."""

    def __init__(
        self, message: str, *, offset: int | None = None, section: str | None = None
    ) -> None:
        self.offset = offset
        at = f" at offset {offset}" if offset is not None else ""
        super().__init__(message + at, section=section)


class CoreError(ObjectError):
    """A CO-RE relocation that cannot be resolved against the target BTF."""


# --- kernel ---------------------------------------------------------------


class KernelError(PybpfError):
    """A bpf(2) command failed; ``errno`` is the kernel's error number."""

    def __init__(self, message: str, *, errno: int = 0, log: str = "") -> None:
        self.errno = errno
        self.log = log
        super().__init__(message)


class StateError(KernelError):
    """The persistent state (its directory, lock or store) is unusable.

    The message names the path and what to do about it.
    """


class VerifierError(KernelError):
    """The verifier refused a program (the kernel answers EACCES or EINVAL).

    ``pc`` is the instruction (slot index, as the kernel's log numbers it)
    the refusal is about, or None for a whole-program check; ``reason`` is the
    kernel's one-line message (``R0 !read_ok``); ``log`` the full log at the
    level asked for; ``report`` the explanation for people (source line,
    path, hint), empty when none was built.
    """

    def __init__(self, reason: str, *, pc: int | None = None, errno: int = 13, log: str = "",
                 report: str = "") -> None:  # fmt: skip
        self.pc = pc
        self.reason = reason
        self.report = report
        where = f"pc {pc}: " if pc is not None else ""
        super().__init__(f"{where}{reason}", errno=errno, log=log)


class JitError(PybpfError):
    """The JIT could not compile a program (an engine limit, not a program fault)."""


class KernelUnavailable(KernelError):
    """bpf(2) cannot be used by this process (not Linux, no permission...)."""
