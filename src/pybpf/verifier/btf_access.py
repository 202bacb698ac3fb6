"""Loads through a pointer to a kernel struct (PTR_TO_BTF_ID): ``check_ptr_to_btf_access``.

The struct a register points to is named by its :class:`~pybpf.verifier.types.BtfRef`;
its layout comes from the kernel's BTF (:attr:`pybpf.verifier.api.Target.kernel_btf`,
vmlinux), the one the program's CO-RE offsets were relocated against.
:func:`walk` is ``btf_struct_walk``: the member an access of ``size`` bytes at
``off`` lands in — a scalar (any access inside an int, enum or bitfield
run), a pointer member read whole (a pointer to the struct it points to,
with its ``__user`` / ``__percpu`` / ``__rcu`` type tag), or a nested struct
or array element walked into.

Writes are refused ("only read is supported"), as for every program type
without its own ``btf_struct_access``.  A pointer read from a struct is
marked untrusted: the kernel trusts a few fields of a few structs
(``BTF_TYPE_SAFE_TRUSTED``) and RCU-protected ones inside an RCU section;
pybpf does not list them, so it refuses passing such a pointer where a
trusted one is needed.  Without the kernel's BTF, or for a pointer whose
struct pybpf does not know, the access is refused with a sentence saying so.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pybpf.errors import PybpfError
from pybpf.verifier.kfunc_proto import skip
from pybpf.verifier.state import UNKNOWN, Reg
from pybpf.verifier.types import Base, Flag, btf_ref

if TYPE_CHECKING:
    from pybpf.verifier.check import Checker

_TAG_FLAGS = {"user": Flag.MEM_USER, "percpu": Flag.MEM_PERCPU, "rcu": Flag.MEM_RCU}


def _reject(msg: str, err: int = errno.EACCES):
    from pybpf.verifier.check import Reject

    return Reject(msg, err)


def access(env: Checker, regno: int, reg: Reg, off: int, size: int, write: bool,
           value: Reg | None, st: bool, atomic: bool) -> Reg | None:  # fmt: skip
    """check_ptr_to_btf_access for ``*(size *)(R<regno> + off)``; the loaded register."""
    name = getattr(reg.map, "name", "")
    if not env.target.gpl:
        raise _reject(f"Cannot access kernel 'struct {name}' from non-GPL compatible program",
                      errno.EINVAL)  # fmt: skip
    total = off + reg.off
    if total < 0:
        raise _reject(f"R{regno} is ptr_{name} invalid negative access: off={total}")
    if not reg.var.is_const() or reg.var.value:
        raise _reject(f"R{regno} is ptr_{name} invalid variable offset: off={total}, "
                      f"var_off={reg.var.var_off}")  # fmt: skip
    if reg.flags & Flag.MEM_USER:
        raise _reject(f"R{regno} is ptr_{name} access user memory: off={total}")
    if reg.flags & Flag.MEM_PERCPU:
        raise _reject(f"R{regno} is ptr_{name} access percpu memory: off={total}")
    if write or atomic:
        raise _reject("only read is supported")
    btf = getattr(env.target, "kernel_btf", None)
    if btf is None or not name:
        what = f"struct {name}" if name else "a kernel struct pybpf cannot name"
        raise _reject(f"pybpf cannot check a load from {what} without the kernel's BTF",
                      errno.EINVAL)  # fmt: skip
    tid = btf.find(name, "struct")
    if tid is None:
        tid = btf.find(name, "union")
    if tid is None:
        raise _reject(f"pybpf finds no struct {name} in the kernel's BTF", errno.EINVAL)
    found = walk(btf, tid, total, size)
    if found is None:
        return UNKNOWN
    target, flags = found
    flags |= Flag.PTR_UNTRUSTED  # see the module docstring
    return Reg(Base.PTR_TO_BTF_ID, flags, map=btf_ref(target))


def walk(btf: Any, tid: int, off: int, size: int) -> tuple[str, Flag] | None:
    """btf_struct_access: None for a scalar, (struct, type-tag flags) for a pointer member.

    Raises the kernel's refusal for an access no member allows.
    """
    try:
        return _walk(btf, tid, off, size)
    except (PybpfError, LookupError, AttributeError, ValueError) as exc:
        raise _reject(f"pybpf cannot read the kernel's BTF of type {tid}: {exc}",
                      errno.EINVAL) from None  # fmt: skip


def _walk(btf: Any, tid: int, off: int, size: int) -> tuple[str, Flag] | None:
    t = skip(btf, tid)
    for _ in range(64):
        if t.kind not in ("struct", "union"):
            raise _reject(f"Type '{t.name}' is not a struct", errno.EINVAL)
        if off + size > t.size:
            raise _reject(f"access beyond struct {t.name} at off {off} size {size}")
        nested = _member(btf, t, off, size)
        if nested is None or isinstance(nested, tuple):
            return nested
        t, off = nested
    raise _reject("pybpf gave up walking nested structs", errno.EINVAL)


def _member(btf: Any, t: Any, off: int, size: int):
    """One level of btf_struct_walk: None (scalar), (name, flags) (pointer), or
    (struct type, offset in it) to walk on."""
    for m in t.members:
        moff = m.offset // 8
        if off + size <= moff:
            break
        if m.bitfield_size:
            end = (m.offset + m.bitfield_size + 7) // 8
            if off <= moff and end <= off + size:
                return None
            continue
        mt = skip(btf, m.type)
        msize, elem = _size(btf, m.type)
        if msize is None:
            raise _reject(f"field {m.name} doesn't have size", errno.EFAULT)
        end = moff + msize
        if off >= end:
            continue
        if mt.kind == "array" and elem is not None:
            mt, esize = elem
            if esize:
                moff += (off - moff) // esize * esize
                end = moff + esize
        if mt.kind in ("struct", "union"):
            return mt, off - moff
        if mt.kind == "ptr":
            if size != 8 or off != moff:
                raise _reject(f"cannot access ptr member {m.name} with moff {moff} in struct "
                              f"{t.name} with off {off} size {size}")  # fmt: skip
            pointee = btf.type(mt.type)
            flags = Flag.NONE
            if pointee.kind == "type_tag":
                flags = _TAG_FLAGS.get(pointee.name, Flag.NONE)
            target = skip(btf, mt.type)
            if target.kind in ("struct", "union") and target.name:
                return target.name, flags
        if off + size > end:
            raise _reject(f"access beyond the end of member {m.name} (mend:{end}) in struct "
                          f"{t.name} with off {off} size {size}")  # fmt: skip
        return None
    raise _reject(f"struct {t.name} doesn't have field at offset {off}", errno.EINVAL)


def _size(btf: Any, tid: int) -> tuple[int | None, tuple[Any, int] | None]:
    """(the member's bytes, (innermost element type, its bytes) for an array)."""
    t = skip(btf, tid)
    if t.kind == "array":
        n = 1
        while t.kind == "array":
            n *= t.nelems
            t = skip(btf, t.type)
        esize = _plain_size(btf, t)
        return (None, None) if esize is None else (esize * n, (t, esize))
    return _plain_size(btf, t), None


def _plain_size(btf: Any, t: Any) -> int | None:
    if t.kind in ("int", "struct", "union", "enum", "enum64", "float"):
        return t.size
    if t.kind == "ptr":
        return 8
    return None
