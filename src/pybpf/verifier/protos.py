"""Helper prototypes as the verifier checks them (``struct bpf_func_proto``).

A helper's prototype says, per argument register R1..R5, what kind of value
the caller must pass (:class:`Arg`, a base kind, plus :class:`ArgFlag`
modifiers: the kernel's ``ARG_PTR_TO_MEM | MEM_RDONLY``) and what R0 holds
afterwards (:class:`Ret`).  :class:`HelperProto` bundles the argument and
return types with the flags of ``struct bpf_func_proto`` (``gpl_only``,
``pkt_access``, ``might_sleep``, ``allow_fastcall``) and the facts the
verifier derives from a prototype or from the helper's identity
(``check_func_proto``, ``is_acquire_function``,
``is_sync_callback_calling_function``): which size argument describes which
memory argument, which argument is released, whether R0 is an acquired
reference, the callback a helper calls and its signature.

:func:`compatible_types` is the kernel's ``compatible_reg_types`` table:
the register types an argument kind accepts, in the order the kernel lists
them in ``R1 type=... expected=...``.

Everything here is data read from Linux 6.18 (include/linux/bpf.h,
kernel/bpf/verifier.c and the helpers' ``*_proto`` definitions); nothing
imports the runtime.  :mod:`pybpf.verifier.helper_protos` holds every
helper's prototype in this vocabulary.

An argument may carry a *gap* (:attr:`ArgType.unchecked`): what pybpf's
verifier cannot check yet about it (a BTF type, a timer, a dynptr...).
:func:`accepts` refuses a register that type-checks for such an argument
with that text ("pybpf verifier does not support argument type ... yet")
rather than accept what the kernel might refuse.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from enum import Enum, IntFlag

from pybpf.isa.helper_ids import helper_id, helper_ids
from pybpf.verifier import mapcompat
from pybpf.verifier.mapcompat import (  # enum bpf_map_type, declared once in the verifier
    ARRAY,
    DEVMAP,
    DEVMAP_HASH,
    HASH,
    LRU_HASH,
    LRU_PERCPU_HASH,
    PERCPU_ARRAY,
    PERCPU_HASH,
)
from pybpf.verifier.types import Base, Flag, type_str


class ArgFlag(IntFlag):
    """Modifiers of an argument kind (the arg-side bits of ``enum bpf_type_flag``)."""

    NONE = 0
    MAYBE_NULL = 1 << 0  # PTR_MAYBE_NULL: NULL (a known zero scalar) is accepted too
    MEM_RDONLY = 1 << 1  # the helper only reads: read-only memory is accepted
    MEM_UNINIT = 1 << 2  # the helper fills the memory: it need not be initialised
    MEM_WRITE = 1 << 3  # the helper writes the memory
    MEM_FIXED_SIZE = 1 << 4  # size known from the prototype (``arg_size``), no size argument
    MEM_ALIGNED = 1 << 5  # with MEM_FIXED_SIZE: the pointer must be aligned to the size
    OBJ_RELEASE = 1 << 6  # the helper releases the reference the argument holds
    DYNPTR_LOCAL = 1 << 7  # DYNPTR_TYPE_LOCAL: a dynptr over program memory
    DYNPTR_RINGBUF = 1 << 8  # DYNPTR_TYPE_RINGBUF: a dynptr over a ring buffer record


class Arg(Enum):
    """Argument base kinds (``enum bpf_arg_type`` below ``__BPF_ARG_TYPE_MAX``).

    ``Arg.X | ArgFlag.Y`` builds an :class:`ArgType`; a bare member is the
    kind without modifiers.
    """

    DONTCARE = 0
    CONST_MAP_PTR = 1
    PTR_TO_MAP_KEY = 2
    PTR_TO_MAP_VALUE = 3
    PTR_TO_MEM = 4
    PTR_TO_ARENA = 5
    CONST_SIZE = 6
    CONST_SIZE_OR_ZERO = 7
    PTR_TO_CTX = 8
    ANYTHING = 9
    PTR_TO_SPIN_LOCK = 10
    PTR_TO_SOCK_COMMON = 11
    PTR_TO_SOCKET = 12
    PTR_TO_BTF_ID = 13
    PTR_TO_RINGBUF_MEM = 14
    CONST_ALLOC_SIZE_OR_ZERO = 15
    PTR_TO_BTF_ID_SOCK_COMMON = 16
    PTR_TO_PERCPU_BTF_ID = 17
    PTR_TO_FUNC = 18
    PTR_TO_STACK = 19
    PTR_TO_CONST_STR = 20
    PTR_TO_TIMER = 21
    KPTR_XCHG_DEST = 22
    PTR_TO_DYNPTR = 23

    def __or__(self, flags: ArgFlag) -> ArgType:
        return ArgType(self, ArgFlag(flags))

    @property
    def is_size(self) -> bool:
        """A size argument that describes the memory argument before it."""
        return self in (Arg.CONST_SIZE, Arg.CONST_SIZE_OR_ZERO)


@dataclass(frozen=True)
class ArgType:
    """One argument's kind: base, modifiers and, for MEM_FIXED_SIZE, the size in bytes.

    ``unchecked`` is not the kernel's: the refusal pybpf's verifier gives
    when a register of one of ``unchecked_bases`` (all, when empty) is
    passed for this argument, because it cannot check it yet (see
    :func:`accepts`).  It takes no part in comparisons.
    """

    base: Arg
    flags: ArgFlag = ArgFlag.NONE
    size: int = 0
    unchecked: str = field(default="", compare=False, repr=False)
    unchecked_bases: frozenset[Base] = field(default=frozenset(), compare=False, repr=False)

    def __or__(self, flags: ArgFlag) -> ArgType:
        return ArgType(self.base, self.flags | flags, self.size)

    @classmethod
    def of(cls, arg: Arg | ArgType) -> ArgType:
        return arg if isinstance(arg, ArgType) else cls(arg)

    def has(self, flag: ArgFlag) -> bool:
        return bool(self.flags & flag)

    @property
    def is_raw_mem(self) -> bool:
        """Memory the helper fills (``arg_type_is_raw_mem``): stack need not be initialised."""
        return self.base is Arg.PTR_TO_MEM and self.has(ArgFlag.MEM_UNINIT)

    @property
    def is_release(self) -> bool:
        return self.has(ArgFlag.OBJ_RELEASE)

    def __str__(self) -> str:
        names = [f"ARG_{self.base.name}"]
        names += [f"{flag.name}" for flag in ArgFlag if flag and flag in self.flags]
        text = " | ".join(names)
        return f"{text} (size {self.size})" if self.size else text


def fixed_size_mem(size: int, flags: ArgFlag = ArgFlag.NONE) -> ArgType:
    """``ARG_PTR_TO_FIXED_SIZE_MEM | flags`` with ``arg_size = size``."""
    return ArgType(Arg.PTR_TO_MEM, ArgFlag.MEM_FIXED_SIZE | flags, size)


# The kernel's named composite argument types.
PTR_TO_MEM_OR_NULL = Arg.PTR_TO_MEM | ArgFlag.MAYBE_NULL
PTR_TO_MAP_VALUE_OR_NULL = Arg.PTR_TO_MAP_VALUE | ArgFlag.MAYBE_NULL
PTR_TO_CTX_OR_NULL = Arg.PTR_TO_CTX | ArgFlag.MAYBE_NULL
PTR_TO_STACK_OR_NULL = Arg.PTR_TO_STACK | ArgFlag.MAYBE_NULL
PTR_TO_UNINIT_MEM = Arg.PTR_TO_MEM | ArgFlag.MEM_UNINIT | ArgFlag.MEM_WRITE
PTR_TO_RDONLY_MEM = Arg.PTR_TO_MEM | ArgFlag.MEM_RDONLY
# bpf_strtol/strtoul's result: ARG_PTR_TO_FIXED_SIZE_MEM | MEM_UNINIT | MEM_WRITE | MEM_ALIGNED
PTR_TO_LONG = fixed_size_mem(8, ArgFlag.MEM_UNINIT | ArgFlag.MEM_WRITE | ArgFlag.MEM_ALIGNED)
PTR_TO_INT = fixed_size_mem(4, ArgFlag.MEM_UNINIT | ArgFlag.MEM_WRITE | ArgFlag.MEM_ALIGNED)


class Ret(Enum):
    """Return kinds (``enum bpf_return_type``, with its named extended types)."""

    INTEGER = "RET_INTEGER"
    VOID = "RET_VOID"
    PTR_TO_MAP_VALUE = "RET_PTR_TO_MAP_VALUE"
    PTR_TO_SOCKET = "RET_PTR_TO_SOCKET"
    PTR_TO_TCP_SOCK = "RET_PTR_TO_TCP_SOCK"
    PTR_TO_SOCK_COMMON = "RET_PTR_TO_SOCK_COMMON"
    PTR_TO_MEM = "RET_PTR_TO_MEM"
    PTR_TO_MEM_OR_BTF_ID = "RET_PTR_TO_MEM_OR_BTF_ID"
    PTR_TO_BTF_ID = "RET_PTR_TO_BTF_ID"
    PTR_TO_MAP_VALUE_OR_NULL = "RET_PTR_TO_MAP_VALUE_OR_NULL"
    PTR_TO_SOCKET_OR_NULL = "RET_PTR_TO_SOCKET_OR_NULL"
    PTR_TO_TCP_SOCK_OR_NULL = "RET_PTR_TO_TCP_SOCK_OR_NULL"
    PTR_TO_SOCK_COMMON_OR_NULL = "RET_PTR_TO_SOCK_COMMON_OR_NULL"
    PTR_TO_RINGBUF_MEM_OR_NULL = "RET_PTR_TO_RINGBUF_MEM_OR_NULL"
    PTR_TO_DYNPTR_MEM_OR_NULL = "RET_PTR_TO_DYNPTR_MEM_OR_NULL"
    PTR_TO_BTF_ID_OR_NULL = "RET_PTR_TO_BTF_ID_OR_NULL"
    PTR_TO_BTF_ID_TRUSTED = "RET_PTR_TO_BTF_ID_TRUSTED"
    # bpf_per_cpu_ptr, bpf_this_cpu_ptr: no named composite, the value is the kernel's spelling
    PTR_TO_RDONLY_MEM_OR_BTF_ID_OR_NULL = "RET_PTR_TO_MEM_OR_BTF_ID | PTR_MAYBE_NULL | MEM_RDONLY"
    PTR_TO_RDONLY_MEM_OR_BTF_ID = "RET_PTR_TO_MEM_OR_BTF_ID | MEM_RDONLY"

    @property
    def reg_type(self) -> tuple[Base, Flag] | None:
        """R0's type after the call; None when R0 is an unknown scalar (INTEGER, VOID)."""
        return _RET_REG[self]

    @property
    def maybe_null(self) -> bool:
        rt = _RET_REG[self]
        return rt is not None and bool(rt[1] & Flag.MAYBE_NULL)


_RET_REG: dict[Ret, tuple[Base, Flag] | None] = {
    Ret.INTEGER: None,
    Ret.VOID: None,
    Ret.PTR_TO_MAP_VALUE: (Base.PTR_TO_MAP_VALUE, Flag.NONE),
    Ret.PTR_TO_SOCKET: (Base.PTR_TO_SOCKET, Flag.NONE),
    Ret.PTR_TO_TCP_SOCK: (Base.PTR_TO_TCP_SOCK, Flag.NONE),
    Ret.PTR_TO_SOCK_COMMON: (Base.PTR_TO_SOCK_COMMON, Flag.NONE),
    Ret.PTR_TO_MEM: (Base.PTR_TO_MEM, Flag.NONE),
    Ret.PTR_TO_MEM_OR_BTF_ID: (Base.PTR_TO_MEM, Flag.NONE),
    Ret.PTR_TO_BTF_ID: (Base.PTR_TO_BTF_ID, Flag.NONE),
    Ret.PTR_TO_MAP_VALUE_OR_NULL: (Base.PTR_TO_MAP_VALUE, Flag.MAYBE_NULL),
    Ret.PTR_TO_SOCKET_OR_NULL: (Base.PTR_TO_SOCKET, Flag.MAYBE_NULL),
    Ret.PTR_TO_TCP_SOCK_OR_NULL: (Base.PTR_TO_TCP_SOCK, Flag.MAYBE_NULL),
    Ret.PTR_TO_SOCK_COMMON_OR_NULL: (Base.PTR_TO_SOCK_COMMON, Flag.MAYBE_NULL),
    Ret.PTR_TO_RINGBUF_MEM_OR_NULL: (Base.PTR_TO_MEM, Flag.MAYBE_NULL | Flag.MEM_RINGBUF),
    Ret.PTR_TO_DYNPTR_MEM_OR_NULL: (Base.PTR_TO_MEM, Flag.MAYBE_NULL),
    Ret.PTR_TO_BTF_ID_OR_NULL: (Base.PTR_TO_BTF_ID, Flag.MAYBE_NULL),
    Ret.PTR_TO_BTF_ID_TRUSTED: (Base.PTR_TO_BTF_ID, Flag.PTR_TRUSTED),
    # memory when the ksym's type is not a struct, else its BTF type: pybpf knows no ksyms
    Ret.PTR_TO_RDONLY_MEM_OR_BTF_ID_OR_NULL: (Base.PTR_TO_MEM, Flag.MAYBE_NULL | Flag.MEM_RDONLY),
    Ret.PTR_TO_RDONLY_MEM_OR_BTF_ID: (Base.PTR_TO_MEM, Flag.MEM_RDONLY),
}


@dataclass(frozen=True)
class Callback:
    """What a callback-calling helper does with its callback (``set_*_callback_state``).

    ``func_arg`` is the index (0 = R1) of the ARG_PTR_TO_FUNC argument,
    ``ctx_arg`` the index of the argument passed on as callback context
    (None: there is none).  ``params`` describes the callee's R1..R5 on
    entry: a (Base, Flag) type, ``"ctx"`` for the caller's ``ctx_arg``
    register copied as is, or None for not initialised.  ``ret_range``
    bounds the callback's R0 at exit.  ``sync`` callbacks run before the
    helper returns (bpf_loop, for_each_map_elem, find_vma,
    user_ringbuf_drain), so the verifier explores them as a loop body;
    bpf_timer_set_callback's runs later, on its own.
    """

    func_arg: int
    ctx_arg: int | None
    params: tuple[tuple[Base, Flag] | str | None, ...]
    ret_range: tuple[int, int] = (0, 1)
    sync: bool = True


_SCALAR = (Base.SCALAR, Flag.NONE)

LOOP_CALLBACK = Callback(func_arg=1, ctx_arg=2, params=(_SCALAR, "ctx", None, None, None))
MAP_ELEM_CALLBACK = Callback(
    func_arg=1,
    ctx_arg=2,
    params=((Base.CONST_PTR_TO_MAP, Flag.NONE), (Base.PTR_TO_MAP_KEY, Flag.NONE),
            (Base.PTR_TO_MAP_VALUE, Flag.NONE), "ctx", None),
)  # fmt: skip
# set_find_vma_callback_state: R1 is the caller's R1 (a task pointer) copied, R2 the vma
FIND_VMA_CALLBACK = Callback(
    func_arg=2,
    ctx_arg=3,
    params=((Base.PTR_TO_BTF_ID, Flag.PTR_TRUSTED), (Base.PTR_TO_BTF_ID, Flag.NONE), "ctx", None,
            None),
)  # fmt: skip
# set_user_ringbuf_callback_state: R1 a local dynptr over the sample
USER_RINGBUF_CALLBACK = Callback(
    func_arg=1, ctx_arg=2, params=((Base.CONST_PTR_TO_DYNPTR, Flag.NONE), "ctx", None, None, None)
)
# set_timer_callback_state: the map, key and value holding the timer; runs asynchronously
TIMER_CALLBACK = Callback(
    func_arg=1,
    ctx_arg=None,
    params=((Base.CONST_PTR_TO_MAP, Flag.NONE), (Base.PTR_TO_MAP_KEY, Flag.NONE),
            (Base.PTR_TO_MAP_VALUE, Flag.NONE), None, None),
    ret_range=(0, 0),
    sync=False,
)  # fmt: skip


class ProtoError(ValueError):
    """A prototype the kernel's check_func_proto would call misconfigured."""


@dataclass(frozen=True)
class HelperProto:
    """One helper's ``struct bpf_func_proto`` plus what checking derives from it.

    ``args`` has one :class:`ArgType` per argument register used (unused
    trailing registers are ARG_DONTCARE and left out).  ``acquire``: R0 holds
    a new reference the program must release (is_acquire_function:
    ringbuf_reserve, sk_lookup_tcp...); ``ptr_cast``: R0 shares the
    reference its argument holds (is_ptr_cast_function: sk_fullsock,
    tcp_sock, skc_to_tcp_sock...); ``callback``: the helper calls a program
    function (bpf_loop, for_each_map_elem...); ``changes_pkt_data``: the
    call invalidates every packet pointer (bpf_helper_changes_pkt_data).
    ``arg_btf`` names the kernel struct each ARG_PTR_TO_BTF_ID argument
    points to (``argN_btf_id``), as (index, name) pairs; ``ret_btf`` the
    struct R0 points to (``ret_btf_id``); "" where the kernel checks no
    type.  Construction validates the pairing rules of ``check_func_proto``
    and raises :class:`ProtoError`.
    """

    name: str
    args: tuple[ArgType, ...]
    ret: Ret = Ret.INTEGER
    gpl_only: bool = False
    pkt_access: bool = False
    might_sleep: bool = False
    allow_fastcall: bool = False
    acquire: bool = False
    callback: Callback | None = None
    changes_pkt_data: bool = False
    ptr_cast: bool = False
    arg_btf: tuple[tuple[int, str], ...] = ()
    ret_btf: str = ""

    def __post_init__(self) -> None:
        args = tuple(ArgType.of(a) for a in self.args)
        object.__setattr__(self, "args", args)
        if len(args) > 5:
            raise ProtoError(f"{self.name}: {len(args)} arguments, at most 5")
        if sum(a.is_raw_mem for a in args) > 1:
            raise ProtoError(f"{self.name}: more than one uninitialised-memory argument")
        if args and args[0].base.is_size:
            raise ProtoError(f"{self.name}: a size argument cannot come first")
        for i, arg in enumerate(args):
            nxt = args[i + 1].base.is_size if i + 1 < len(args) else False
            if arg.base is not Arg.PTR_TO_MEM:
                if nxt:
                    raise ProtoError(f"{self.name}: size argument {i + 2} follows no memory")
                continue
            fixed = arg.has(ArgFlag.MEM_FIXED_SIZE)
            if fixed != bool(arg.size) or nxt == fixed:
                raise ProtoError(f"{self.name}: memory argument {i + 1} has no size")
        if self.callback is not None and (
            args[self.callback.func_arg].base is not Arg.PTR_TO_FUNC
        ):
            raise ProtoError(f"{self.name}: callback argument is not ARG_PTR_TO_FUNC")

    # --- derived facts ---------------------------------------------------------------------
    @property
    def mem_size_pairs(self) -> tuple[tuple[int, int], ...]:
        """(memory arg index, size arg index) for each ``buf, len`` pair (0 = R1)."""
        return tuple((i, i + 1) for i, a in enumerate(self.args[:-1])
                     if a.base is Arg.PTR_TO_MEM and self.args[i + 1].base.is_size)  # fmt: skip

    def size_arg_of(self, mem_arg: int) -> int | None:
        """The size argument describing memory argument ``mem_arg``, if any."""
        return next((s for m, s in self.mem_size_pairs if m == mem_arg), None)

    @property
    def release_arg(self) -> int | None:
        """Index of the argument whose reference the helper releases (OBJ_RELEASE)."""
        return next((i for i, a in enumerate(self.args) if a.is_release), None)

    @property
    def ret_size_arg(self) -> int | None:
        """Index of the ARG_CONST_ALLOC_SIZE_OR_ZERO giving the returned memory's size."""
        return next((i for i, a in enumerate(self.args)
                     if a.base is Arg.CONST_ALLOC_SIZE_OR_ZERO), None)  # fmt: skip

    @property
    def map_arg(self) -> int | None:
        """Index of the ARG_CONST_MAP_PTR argument, if any."""
        return next((i for i, a in enumerate(self.args) if a.base is Arg.CONST_MAP_PTR), None)

    @property
    def nargs(self) -> int:
        return len(self.args)


# --- compatible register types (compatible_reg_types) ------------------------------------------
_MEM_TYPES = (
    (Base.PTR_TO_STACK, Flag.NONE),
    (Base.PTR_TO_PACKET, Flag.NONE),
    (Base.PTR_TO_PACKET_META, Flag.NONE),
    (Base.PTR_TO_MAP_KEY, Flag.NONE),
    (Base.PTR_TO_MAP_VALUE, Flag.NONE),
    (Base.PTR_TO_MEM, Flag.NONE),
    (Base.PTR_TO_MEM, Flag.MEM_RINGBUF),
    (Base.PTR_TO_BUF, Flag.NONE),
    (Base.PTR_TO_BTF_ID, Flag.PTR_TRUSTED),
)
_SOCK_TYPES = tuple(
    (b, Flag.NONE)
    for b in (Base.PTR_TO_SOCK_COMMON, Base.PTR_TO_SOCKET, Base.PTR_TO_TCP_SOCK,
              Base.PTR_TO_XDP_SOCK)
)  # fmt: skip
_COMPATIBLE: dict[Arg, tuple[tuple[Base, Flag], ...]] = {
    Arg.PTR_TO_MAP_KEY: _MEM_TYPES,
    Arg.PTR_TO_MAP_VALUE: _MEM_TYPES,
    Arg.CONST_SIZE: (_SCALAR,),
    Arg.CONST_SIZE_OR_ZERO: (_SCALAR,),
    Arg.CONST_ALLOC_SIZE_OR_ZERO: (_SCALAR,),
    Arg.CONST_MAP_PTR: ((Base.CONST_PTR_TO_MAP, Flag.NONE),),
    Arg.PTR_TO_CTX: ((Base.PTR_TO_CTX, Flag.NONE),),
    Arg.PTR_TO_SOCK_COMMON: _SOCK_TYPES,
    Arg.PTR_TO_BTF_ID_SOCK_COMMON: _SOCK_TYPES + ((Base.PTR_TO_BTF_ID, Flag.NONE),
                                                  (Base.PTR_TO_BTF_ID, Flag.PTR_TRUSTED)),
    Arg.PTR_TO_SOCKET: ((Base.PTR_TO_SOCKET, Flag.NONE),),
    Arg.PTR_TO_BTF_ID: ((Base.PTR_TO_BTF_ID, Flag.NONE), (Base.PTR_TO_BTF_ID, Flag.PTR_TRUSTED),
                        (Base.PTR_TO_BTF_ID, Flag.MEM_RCU)),
    Arg.PTR_TO_SPIN_LOCK: ((Base.PTR_TO_MAP_VALUE, Flag.NONE),
                           (Base.PTR_TO_BTF_ID, Flag.MEM_ALLOC)),
    Arg.PTR_TO_MEM: _MEM_TYPES,
    Arg.PTR_TO_RINGBUF_MEM: ((Base.PTR_TO_MEM, Flag.MEM_RINGBUF),),
    Arg.PTR_TO_PERCPU_BTF_ID: ((Base.PTR_TO_BTF_ID, Flag.MEM_PERCPU),
                               (Base.PTR_TO_BTF_ID, Flag.MEM_PERCPU | Flag.MEM_RCU),
                               (Base.PTR_TO_BTF_ID, Flag.MEM_PERCPU | Flag.PTR_TRUSTED)),
    Arg.PTR_TO_FUNC: ((Base.PTR_TO_FUNC, Flag.NONE),),
    Arg.PTR_TO_STACK: ((Base.PTR_TO_STACK, Flag.NONE),),
    Arg.PTR_TO_CONST_STR: ((Base.PTR_TO_MAP_VALUE, Flag.NONE),),
    Arg.PTR_TO_TIMER: ((Base.PTR_TO_MAP_VALUE, Flag.NONE),),
    Arg.KPTR_XCHG_DEST: ((Base.PTR_TO_MAP_VALUE, Flag.NONE), (Base.PTR_TO_BTF_ID, Flag.MEM_ALLOC)),
    Arg.PTR_TO_DYNPTR: ((Base.PTR_TO_STACK, Flag.NONE), (Base.CONST_PTR_TO_DYNPTR, Flag.NONE)),
}  # fmt: skip


def compatible_types(arg: Arg | ArgType) -> tuple[tuple[Base, Flag], ...]:
    """The register types ``arg`` accepts, in the kernel's order; () for ANYTHING/DONTCARE.

    ARG_ANYTHING accepts any initialised register and has no table entry in
    the kernel; the caller checks it is initialised.
    """
    return _COMPATIBLE.get(ArgType.of(arg).base, ())


def accepts(arg: Arg | ArgType, base: Base, flags: Flag = Flag.NONE) -> bool:
    """Whether a register of type (base, flags) matches ``arg`` (check_reg_type's lookup).

    MEM_RDONLY and MAYBE_NULL on the register are folded away when the
    argument allows them, as the kernel does before comparing.  A NULL
    (known zero scalar) for a MAYBE_NULL argument is the caller's business
    (``register_is_null`` is checked before the type table).

    A matching register for an argument pybpf's verifier cannot check yet
    (``arg.unchecked`` names why, ``arg.unchecked_bases`` the register
    types concerned) is refused: this raises the verifier's refusal
    (``Reject``, EINVAL) with that text.  A register of the wrong type is
    not a match and gets the kernel's own message.
    """
    at = ArgType.of(arg)
    if at.base in (Arg.ANYTHING, Arg.DONTCARE):
        return base is not Base.NOT_INIT
    if at.has(ArgFlag.MEM_RDONLY):
        flags &= ~Flag.MEM_RDONLY
    if at.has(ArgFlag.MAYBE_NULL):
        flags &= ~Flag.MAYBE_NULL
    ok = (base, Flag(flags)) in compatible_types(at)
    if ok and at.unchecked and (not at.unchecked_bases or base in at.unchecked_bases):
        from pybpf.verifier.check import Reject  # check imports this module

        raise Reject(at.unchecked, errno.EINVAL)
    return ok


def expected_text(arg: Arg | ArgType) -> str:
    """The ``expected=`` list of the kernel's ``R1 type=... expected=...`` message."""
    return ", ".join(type_str(b, f) for b, f in compatible_types(arg))


def type_mismatch(regno: int, arg: Arg | ArgType, base: Base, flags: Flag = Flag.NONE) -> str:
    """check_reg_type's refusal: ``R3 type=scalar expected=fp, pkt, ...``."""
    return f"R{regno} type={type_str(base, flags)} expected={expected_text(arg)}"


# --- which maps a helper may be given (check_map_func_compatibility: mapcompat's table) ---


# maps whose ops set up for_each_map_elem's callback (map_set_for_each_callback_args)
FOR_EACH_MAPS: frozenset[int] = frozenset({HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY, LRU_HASH,
                                           LRU_PERCPU_HASH})  # fmt: skip


def map_func_error(func_id: int, map_type: int) -> str | None:
    """The kernel's refusal of passing a ``map_type`` map to helper ``func_id``, or None.

    The two-way check_map_func_compatibility table (map types reserved to
    some helpers, helpers that need one map type), plus for_each_map_elem's
    "callback function not allowed for map".  Updating a sockmap from a
    program is allowed here; the kernel also asks the program type
    (may_update_sockmap).
    """
    error = mapcompat.map_func_error(func_id, map_type)  # the table's one home
    if error is not None:
        return error
    if func_id == _FOR_EACH and map_type not in FOR_EACH_MAPS:
        return "callback function not allowed for map"
    return None


_FOR_EACH = helper_id("for_each_map_elem")

BPF_F_RDONLY_PROG = 1 << 7
# dev maps hand programs a pointer to the device's ifindex: the kernel adds BPF_F_RDONLY_PROG
IMPLICIT_RDONLY_PROG: frozenset[int] = frozenset({DEVMAP, DEVMAP_HASH})
_MAP_WRITERS = helper_ids("map_delete_elem map_update_elem map_push_elem map_pop_elem")


def map_write_error(func_id: int, map_type: int, map_flags: int = 0) -> str | None:
    """record_func_map's refusal of a helper that changes a map programs may only read.

    Checked before :func:`map_func_error`, with the map's flags as created
    (dev maps are read-only for programs whatever their flags).
    """
    rdonly = map_flags & BPF_F_RDONLY_PROG or map_type in IMPLICIT_RDONLY_PROG
    return "write into map forbidden" if rdonly and func_id in _MAP_WRITERS else None

# bpf_tail_call is the interpreter's, not a runtime helper, but the verifier checks it; a
# failed tail call returns, and the callee might have moved the packet
# (bpf_helper_changes_pkt_data lists tail_call)
TAIL_CALL = HelperProto("bpf_tail_call", (Arg.PTR_TO_CTX, Arg.CONST_MAP_PTR, Arg.ANYTHING),
                        Ret.VOID, changes_pkt_data=True)  # fmt: skip
