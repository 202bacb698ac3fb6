"""What every program-type family module (``ctx_*.py``) is written with.

A family module declares its program types as :class:`ProgTypeOps` — pybpf's
``struct bpf_verifier_ops`` plus the few facts of ``bpf_prog_ops`` and of the
load path that depend on the type alone: the context's layout and access
rule (``*_is_valid_access``), the return range ``check_return_code``
enforces, direct packet access (``may_access_direct_pkt_data``), the
expected_attach_type values BPF_PROG_LOAD accepts
(``bpf_prog_load_check_attach``), the helper ids the type's
``*_func_proto`` answers (:class:`HelperSet`, by name, resolved against
the runtime's helper groups by :mod:`pybpf.runtime.progtypes`) and whether
the kernel has a test run for it.  :mod:`pybpf.verifier.ctx` gathers the
families; adding a program type means adding a :class:`ProgTypeOps` to one
family module (and the family module to ``ctx.FAMILIES`` when it is new).

The primitives here are the kernel's context-access vocabulary:
:func:`layout` lays a uapi struct out, :func:`in_field` is
``bpf_ctx_range`` / ``bpf_ctx_range_till``, :func:`narrow_ok` is
``bpf_ctx_narrow_access_ok`` and :func:`wide_ok` ``bpf_ctx_wide_access_ok``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pybpf.verifier.types import Base, Flag, type_str


@dataclass(frozen=True)
class CtxAccess:
    """An allowed context access.

    ``base``/``flags``: the loaded register's type (SCALAR for stores and
    most fields).  ``field_size``: the kernel's ``ctx_field_size`` — nonzero
    when a narrower load is widened to this many bytes and masked.
    ``field``: the struct member accessed, for messages.  ``btf``: the
    kernel struct a PTR_TO_BTF_ID field points to (netfilter's ``skb``).
    """

    base: Base = Base.SCALAR
    flags: Flag = Flag.NONE
    field_size: int = 0
    field: str = ""
    btf: str = ""

    @property
    def type_name(self) -> str:
        """The register type as the kernel's log spells it (``pkt``, ``sock_common_or_null``,
        ``trusted_ptr_sk_buff``)."""
        return type_str(self.base, self.flags) + self.btf


#: ``is_valid_access(off, size, write, attach_type, ldsx)``: None refuses.
AccessRule = Callable[[int, int, bool, int, bool], "CtxAccess | None"]
Layout = dict[str, tuple[int, int]]


# --- struct layouts ------------------------------------------------------------------------
def layout(*fields: tuple[str, int, int]) -> Layout:
    """name -> (offset, size) from (name, size, align) members in declaration order."""
    out, off = {}, 0
    for name, size, align in fields:
        off = (off + align - 1) // align * align
        out[name] = (off, size)
        off += size
    return out


def u32s(names: str) -> list[tuple[str, int, int]]:
    """``__u32`` members, one per name."""
    return [(n, 4, 4) for n in names.split()]


def ptr(name: str) -> tuple[str, int, int]:
    """A ``__bpf_md_ptr`` member: 8 bytes, 8-aligned."""
    return (name, 8, 8)


def in_field(lay: Layout, off: int, first: str, last: str | None = None) -> bool:
    """``off`` lies within members first..last (bpf_ctx_range / bpf_ctx_range_till)."""
    start = lay[first][0]
    end_off, end_size = lay[last or first]
    return start <= off < end_off + end_size


def field_at(lay: Layout, off: int) -> str:
    """The member containing byte ``off`` (``""`` outside the struct)."""
    for name, (start, size) in lay.items():
        if start <= off < start + size:
            return name
    return ""


def narrow_ok(size: int, field_size: int) -> bool:
    """bpf_ctx_narrow_access_ok: a power of two no wider than the field (sizes are 1/2/4/8)."""
    return size <= field_size


def wide_ok(lay: Layout, off: int, size: int, name: str) -> bool:
    """bpf_ctx_wide_access_ok: an 8-byte, 8-aligned access inside the u32 array ``name``."""
    start, width = lay[name]
    return size == 8 and off % 8 == 0 and start <= off and off + 8 <= start + width


# --- the declaration of one program type ------------------------------------------------------
@dataclass(frozen=True)
class HelperSet:
    """The helper ids a program type's ``*_func_proto`` answers, by name.

    ``group`` names the set it falls back to (``base``: bpf_base_func_proto,
    ``net``: bpf_sk_base_func_proto, ``tracing``: bpf_tracing_func_proto);
    ``add`` and ``drop`` are space-separated helper names on top of it;
    ``by_attach`` gives more names for one expected_attach_type (the kernel's
    ``switch (prog->expected_attach_type)`` inside the func_proto).
    ``variants`` names, for the helpers whose prototype in this type differs
    from the common one, the kernel's ``bpf_func_proto`` this type gets
    (``sk_storage_get`` -> ``bpf_sk_storage_get_cg_sock_proto``): for the
    prototype tables, never a reason to allow a helper.
    """

    group: str
    add: str = ""
    drop: str = ""
    by_attach: Callable[[int], str] | None = None
    variants: Mapping[str, str] = field(default_factory=dict)

    def names(self, attach_type: int) -> tuple[str, set[str], set[str]]:
        """(group, names added, names dropped) for one expected_attach_type."""
        added = set(self.add.split())
        if self.by_attach is not None:
            added |= set(self.by_attach(attach_type).split())
        return self.group, added, set(self.drop.split())


#: What a test run of the type is: a runner key of :mod:`pybpf.runtime.testrun` ("skb",
#: "xdp", "raw_tp"), NO_TEST_RUN (the kernel has none: ENOTSUPP) or UNMODELLED (the kernel
#: has one that pybpf does not model: a typed EOPNOTSUPP error).
NO_TEST_RUN = None
UNMODELLED = "unmodelled"


@dataclass(frozen=True)
class ProgTypeOps:
    """One program type as the verifier and the load path see it (see the module docstring).

    ``attach_types``: the expected_attach_type values BPF_PROG_LOAD accepts
    (None: any); ``default_attach``: what a 0 becomes
    (``bpf_prog_load_fixup_attach_type``).  ``ret``: the [lo, hi] of R0 at
    the main program's exit for an attach type (None: anything).
    ``packet``: direct packet access, "" none, "r" read only, "rw" read and
    write (helpers: their prototype's pkt_access), "ctx" read and write
    even through helpers (cgroup_sockopt).  ``sleepable``: "never",
    "required" (syscall) or "allowed".  ``sweep_attach``: the attach types a
    sweep of the rules loads the type with (the kernel answers some only
    for them).
    """

    prog_type: int
    name: str
    access: AccessRule
    ctx_size: int
    helpers: HelperSet
    attach_types: frozenset[int] | None = None
    default_attach: int = 0
    ret: Callable[[int], tuple[int, int] | None] = lambda attach: None
    packet: str = ""
    test_run: str | None = NO_TEST_RUN
    sleepable: str = "never"
    sweep_attach: tuple[int, ...] = (0,)

    def attach(self, attach_type: int) -> int:
        """The expected_attach_type the kernel keeps after its load-time fixup."""
        return attach_type or self.default_attach


def zero_one(attach: int) -> tuple[int, int]:
    """The [0, 1] check_return_code gives most cgroup-attached types."""
    return (0, 1)
