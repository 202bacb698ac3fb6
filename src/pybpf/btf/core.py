"""CO-RE relocations computed as libbpf computes them (relo_core.c).

:func:`resolve_core` takes the program's (local) BTF, one :class:`CoreRelo` from
.BTF.ext and the target BTF (the kernel's) and returns a :class:`CoreResult`:

1. the local spec is parsed from the access string (``"0:1:2"``: the first index
   is an array index on the root pointer, the others member indexes of structs and
   unions or element indexes of arrays; anonymous members are walked through);
2. candidates are the target types of the same kind (enum and enum64 mix) whose
   *essential name* (the name up to the last ``___flavour`` suffix) is the local
   type's essential name;
3. each candidate is matched (named fields found by name, recursing into anonymous
   members; types compatible as bpf_core_fields_are_compat says); every matching
   candidate must give the same value or the relocation is ambiguous (CoreError);
4. with no candidate the existence kinds give 0, type-based kinds give 0, and the
   other kinds *poison* the instruction (libbpf rewrites it to ``call 0xbad2310``:
   the verifier then rejects the program only if the instruction is reachable).

Patching (:func:`patch_insn`, libbpf's bpf_core_patch_insn):

* ALU/ALU64 with an immediate (``r1 = 8``, ``r1 += 8``): ``imm`` becomes the value;
* LDX/ST/STX: ``off`` becomes the value (at most 32767); when the field's size
  changed (unsigned ints, pointers) the size bits of ``code`` change too, otherwise
  the instruction is poisoned;
* ld_imm64: ``imm`` gets the low and ``imm2`` the high 32 bits;
* when ``result.validate`` holds, the instruction must hold the local value first
  (``imm``/``off``/imm64), as clang emitted it; a mismatch is a CoreError;
* poisoning sets ``code=0x85`` (call), ``dst=src=off=0``, ``imm=0xbad2310``; an
  ld_imm64 is poisoned in both of its slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from pybpf.errors import CoreError

from .ext import LIBBPF_KIND_NAMES, CoreRelo
from .model import Btf
from .types import (
    INT_SIGNED,
    KIND_ARRAY,
    KIND_ENUM,
    KIND_ENUM64,
    KIND_FLOAT,
    KIND_FUNC_PROTO,
    KIND_FWD,
    KIND_INT,
    KIND_PTR,
    KIND_STRUCT,
    KIND_UNION,
    BtfType,
)

FIELD_BYTE_OFFSET = 0
FIELD_BYTE_SIZE = 1
FIELD_EXISTS = 2
FIELD_SIGNED = 3
FIELD_LSHIFT_U64 = 4
FIELD_RSHIFT_U64 = 5
TYPE_ID_LOCAL = 6
TYPE_ID_TARGET = 7
TYPE_EXISTS = 8
TYPE_SIZE = 9
ENUMVAL_EXISTS = 10
ENUMVAL_VALUE = 11
TYPE_MATCHES = 12

FIELD_KINDS = frozenset(range(0, 6))
TYPE_KINDS = frozenset({TYPE_ID_LOCAL, TYPE_ID_TARGET, TYPE_EXISTS, TYPE_SIZE, TYPE_MATCHES})
ENUMVAL_KINDS = frozenset({ENUMVAL_EXISTS, ENUMVAL_VALUE})
EXISTENCE_KINDS = frozenset({FIELD_EXISTS, TYPE_EXISTS, ENUMVAL_EXISTS, TYPE_MATCHES})

SPEC_MAX_LEN = 64  # BPF_CORE_SPEC_MAX_LEN
POISON_IMM = 0xBAD2310  # 195896080: "bad relo"
CALL_CODE = 0x85


class _Poison(Exception):
    pass


@dataclass(frozen=True)
class CoreResult:
    """The outcome of one relocation (libbpf's bpf_core_relo_res plus facts).

    ``value`` is the new value (0 when poisoned), ``exists`` whether a target
    candidate matched, ``poison`` whether the instruction must be poisoned,
    ``orig_value`` the local value clang put in the instruction, ``validate``
    whether the instruction must hold ``orig_value`` before patching;
    ``orig_size``/``new_size`` the field sizes for loads and stores,
    ``target_type_id`` the matched target root type (None without a match).
    """

    value: int
    exists: bool
    poison: bool = False
    orig_value: int = 0
    validate: bool = True
    orig_size: int = 0
    new_size: int = 0
    fail_memsz_adjust: bool = False
    target_type_id: int | None = None
    local_spec: str = ""
    target_spec: str = ""


class PatchedInsn(NamedTuple):
    code: int
    dst: int
    src: int
    off: int
    imm: int
    imm2: int


# --- names ------------------------------------------------------------------------


def essential_name_len(name: str) -> int:
    """libbpf's bpf_core_essential_name_len: the length up to the last X___Y."""
    n = len(name)
    for i in range(n - 5, -1, -1):
        if name[i] != "_" and name[i + 1 : i + 4] == "___" and name[i + 4] != "_":
            return i + 1
    return n


def essential_name(name: str) -> str:
    return name[: essential_name_len(name)]


def _kind_compat(a: BtfType, b: BtfType) -> bool:
    if a.kind_id == b.kind_id:
        return True
    return a.kind_id in (KIND_ENUM, KIND_ENUM64) and b.kind_id in (KIND_ENUM, KIND_ENUM64)


def candidates(local: Btf, local_id: int, target: Btf) -> list[int]:
    """Target type ids that are candidates for local type ``local_id``."""
    lt = local.type(local_id)
    ess = essential_name(lt.name)
    if not ess:
        return []
    out = []
    for name in _ess_index(target).get(ess, ()):
        for tid in target.find_all(name):
            if _kind_compat(target.types[tid], lt):
                out.append(tid)
    return sorted(out)


def _ess_index(btf: Btf) -> dict[str, list[str]]:
    idx = getattr(btf, "_core_ess_index", None)
    if idx is None:
        idx = {}
        for name in btf.names():
            idx.setdefault(essential_name(name), []).append(name)
        btf._core_ess_index = idx  # type: ignore[attr-defined]
    return idx


# --- specs --------------------------------------------------------------------------


class _Acc(NamedTuple):
    type_id: int
    idx: int
    name: str | None


class _Spec:
    __slots__ = ("acc", "bit_offset", "btf", "raw", "root")

    def __init__(self, btf: Btf, root: int) -> None:
        self.btf = btf
        self.root = root
        self.acc: list[_Acc] = []
        self.raw: list[int] = []
        self.bit_offset = 0

    def format(self, kind: int) -> str:
        t = self.btf.types[self.root]
        s = f"<{LIBBPF_KIND_NAMES[kind]}> [{self.root}] {t.kind} {t.name or '<anon>'}"
        if kind in FIELD_KINDS:
            for i, a in enumerate(self.acc):
                if a.name:
                    s += f".{a.name}"
                elif i > 0 or a.idx > 0:
                    s += f"[{a.idx}]"
            raw = ":".join(str(r) for r in self.raw)
            off = self.bit_offset
            s += f" ({raw} @ offset {off // 8}{'.' + str(off % 8) if off % 8 else ''})"
        elif kind in ENUMVAL_KINDS and self.acc:
            s += f"::{self.acc[0].name}"
        return s


def _skip(btf: Btf, tid: int) -> tuple[int, BtfType]:
    tid = btf.skip_mods(tid)
    return tid, btf.types[tid]


def _is_flex(btf: Btf, parent: _Acc | None, nelems: int) -> bool:
    if parent is None or not parent.name or nelems > 0:
        return False
    t = btf.types[parent.type_id]
    return parent.idx == len(t.members) - 1  # type: ignore[attr-defined]


def parse_spec(btf: Btf, relo: CoreRelo) -> _Spec:
    """The local spec of ``relo`` (libbpf's bpf_core_parse_spec)."""
    spec = _Spec(btf, relo.type_id)
    s = relo.access
    if not s or s.startswith(":"):
        raise CoreError(f"relo at insn {relo.insn_index}: bad access string {s!r}")
    if relo.kind in TYPE_KINDS:
        if s != "0":
            raise CoreError(f"relo at insn {relo.insn_index}: type relocation with access {s!r}")
        return spec
    try:
        raw = [int(x) for x in s.split(":")]
    except ValueError:
        raise CoreError(f"relo at insn {relo.insn_index}: bad access string {s!r}") from None
    if len(raw) > SPEC_MAX_LEN:
        raise CoreError(f"relo at insn {relo.insn_index}: access string too long")
    spec.raw = raw
    tid, t = _skip(btf, relo.type_id)
    spec.acc.append(_Acc(tid, raw[0], None))
    if relo.kind in ENUMVAL_KINDS:
        if t.kind_id not in (KIND_ENUM, KIND_ENUM64) or len(raw) > 1 or not (
            0 <= raw[0] < len(t.values)  # type: ignore[attr-defined]
        ):
            raise CoreError(f"relo at insn {relo.insn_index}: bad enum value access {s!r}")
        spec.acc[0] = _Acc(tid, raw[0], t.values[raw[0]].name)  # type: ignore[attr-defined]
        return spec
    if relo.kind not in FIELD_KINDS:
        raise CoreError(f"relo at insn {relo.insn_index}: unknown relocation kind {relo.kind}")
    if raw[0] < 0:
        raise CoreError(f"relo at insn {relo.insn_index}: negative index in {s!r}")
    spec.bit_offset = raw[0] * _size(btf, tid) * 8
    for i in range(1, len(raw)):
        tid, t = _skip(btf, tid)
        idx = raw[i]
        if idx < 0:
            raise CoreError(f"relo at insn {relo.insn_index}: negative index in {s!r}")
        if t.kind_id in (KIND_STRUCT, KIND_UNION):
            members = t.members  # type: ignore[attr-defined]
            if idx >= len(members):
                raise CoreError(f"relo at insn {relo.insn_index}: member {idx} out of range "
                                f"in [{tid}] {t.kind} {t.name}")  # fmt: skip
            m = members[idx]
            spec.bit_offset += m.offset
            if m.name:
                spec.acc.append(_Acc(tid, idx, m.name))
            tid = m.type
        elif t.kind_id == KIND_ARRAY:
            eid, _ = _skip(btf, t.type)  # type: ignore[attr-defined]
            flex = _is_flex(btf, spec.acc[-1] if spec.acc else None, t.nelems)  # type: ignore
            if not flex and idx >= t.nelems:  # type: ignore[attr-defined]
                raise CoreError(f"relo at insn {relo.insn_index}: index {idx} out of bounds")
            spec.acc.append(_Acc(eid, idx, None))
            spec.bit_offset += idx * _size(btf, eid) * 8
            tid = eid
        else:
            raise CoreError(f"relo at insn {relo.insn_index}: access {s!r} (at {i}) reaches "
                            f"[{tid}] of unexpected kind {t.kind}")  # fmt: skip
    return spec


def _size(btf: Btf, tid: int) -> int:
    try:
        return btf.size_of(tid)
    except Exception as e:
        raise CoreError(f"cannot size type [{tid}]: {e}") from e


# --- compatibility ----------------------------------------------------------------


def types_are_compat(local: Btf, lid: int, target: Btf, tid: int, level: int = 32) -> int:
    """libbpf's __bpf_core_types_are_compat (1 yes, 0 no, -1 error)."""
    if not _kind_compat(local.type(lid), target.type(tid)):
        return 0
    for _ in range(32):
        lid, lt = _skip(local, lid)
        tid, tt = _skip(target, tid)
        if not _kind_compat(lt, tt):
            return 0
        k = lt.kind_id
        if k in (0, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_FWD, KIND_ENUM64):
            return 1
        if k == KIND_INT:
            return int(lt.offset == 0 and tt.offset == 0)  # type: ignore[attr-defined]
        if k in (KIND_PTR, KIND_ARRAY):
            lid, tid = lt.type, tt.type  # type: ignore[attr-defined]
            continue
        if k == KIND_FUNC_PROTO:
            lp, tp = lt.params, tt.params  # type: ignore[attr-defined]
            if len(lp) != len(tp):
                return 0
            for a, b in zip(lp, tp, strict=True):
                if level <= 0:
                    return -1
                r = types_are_compat(local, local.skip_mods(a.type), target,
                                     target.skip_mods(b.type), level - 1)  # fmt: skip
                if r <= 0:
                    return r
            lid, tid = lt.type, tt.type  # type: ignore[attr-defined]
            continue
        return 0
    return -1


def _fields_compat(local: Btf, lid: int, target: Btf, tid: int) -> int:
    for _ in range(64):
        lid, lt = _skip(local, lid)
        tid, tt = _skip(target, tid)
        if lt.kind_id in (KIND_STRUCT, KIND_UNION) and tt.kind_id in (KIND_STRUCT, KIND_UNION):
            return 1
        if not _kind_compat(lt, tt):
            return 0
        k = lt.kind_id
        if k in (KIND_PTR, KIND_FLOAT):
            return 1
        if k in (KIND_FWD, KIND_ENUM, KIND_ENUM64):
            ln, tn = essential_name(lt.name), essential_name(tt.name)
            return int(not ln or not tn or ln == tn)
        if k == KIND_INT:
            return int(lt.offset == 0 and tt.offset == 0)  # type: ignore[attr-defined]
        if k == KIND_ARRAY:
            lid, tid = lt.type, tt.type  # type: ignore[attr-defined]
            continue
        return 0
    return -1


def _names_match(ln: str, tn: str) -> bool:
    if not tn:
        return not ln
    return essential_name(ln) == essential_name(tn)


def types_match(local: Btf, lid: int, target: Btf, tid: int, behind_ptr: bool = False,
                level: int = 32) -> int:  # fmt: skip
    """libbpf's __bpf_core_types_match (TYPE_MATCHES)."""
    if level <= 0:
        return -1
    for _ in range(32):
        lid, lt = _skip(local, lid)
        tid, tt = _skip(target, tid)
        if not _names_match(lt.name, tt.name):
            return 0
        lk, tk = lt.kind_id, tt.kind_id
        if lk == 0:
            return int(lk == tk)
        if lk == KIND_FWD:
            lf = lt.union  # type: ignore[attr-defined]
            if behind_ptr:
                if lk == tk:
                    return int(lf == tt.union)  # type: ignore[attr-defined]
                return int((tk == KIND_STRUCT and not lf) or (tk == KIND_UNION and lf))
            return int(lk == tk and lf == tt.union)  # type: ignore[attr-defined]
        if lk in (KIND_ENUM, KIND_ENUM64):
            if tk not in (KIND_ENUM, KIND_ENUM64) or lt.size != tt.size:  # type: ignore
                return 0
            lv, tv = lt.values, tt.values  # type: ignore[attr-defined]
            if len(lv) > len(tv):
                return 0
            return int(all(any(_names_match(a.name, b.name) for b in tv) for a in lv))
        if lk in (KIND_STRUCT, KIND_UNION):
            if behind_ptr:
                if lk == tk:
                    return 1
                if tk != KIND_FWD:
                    return 0
                return int((lk == KIND_UNION) == tt.union)  # type: ignore[attr-defined]
            if lk != tk:
                return 0
            lm, tm = lt.members, tt.members  # type: ignore[attr-defined]
            if len(lm) > len(tm):
                return 0
            for a in lm:
                matched = False
                for b in tm:
                    if not _names_match(a.name, b.name):
                        continue
                    r = types_match(local, a.type, target, b.type, behind_ptr, level - 1)
                    if r < 0:
                        return r
                    if r > 0:
                        matched = True
                        break
                if not matched:
                    return 0
            return 1
        if lk == KIND_INT:
            if lk != tk:
                return 0
            return int(lt.size == tt.size and (lt.encoding & INT_SIGNED)  # type: ignore
                       == (tt.encoding & INT_SIGNED))  # type: ignore  # fmt: skip
        if lk == KIND_PTR:
            if lk != tk:
                return 0
            behind_ptr = True
            lid, tid = lt.type, tt.type  # type: ignore[attr-defined]
            continue
        if lk == KIND_ARRAY:
            if lk != tk or lt.nelems != tt.nelems:  # type: ignore[attr-defined]
                return 0
            lid, tid = lt.type, tt.type  # type: ignore[attr-defined]
            continue
        if lk == KIND_FUNC_PROTO:
            if lk != tk or len(lt.params) != len(tt.params):  # type: ignore[attr-defined]
                return 0
            for a, b in zip(lt.params, tt.params, strict=True):  # type: ignore[attr-defined]
                r = types_match(local, a.type, target, b.type, behind_ptr, level - 1)
                if r <= 0:
                    return r
            lid, tid = lt.type, tt.type  # type: ignore[attr-defined]
            continue
        return 0
    return -1


# --- matching ---------------------------------------------------------------------


def _match_member(local: Btf, lacc: _Acc, target: Btf, tid: int, spec: _Spec,
                  depth: int = 0) -> tuple[int, int]:  # fmt: skip
    """(found, next target type id)."""
    if depth > SPEC_MAX_LEN:
        return -1, 0
    tid, tt = _skip(target, tid)
    if tt.kind_id not in (KIND_STRUCT, KIND_UNION):
        return 0, 0
    lt = local.types[lacc.type_id]
    lm = lt.members[lacc.idx]  # type: ignore[attr-defined]
    for i, m in enumerate(tt.members):  # type: ignore[attr-defined]
        if len(spec.raw) >= SPEC_MAX_LEN:
            return -1, 0
        spec.bit_offset += m.offset
        spec.raw.append(i)
        if not m.name:
            found, nxt = _match_member(local, lacc, target, m.type, spec, depth + 1)
            if found:
                return found, nxt
        elif m.name == lm.name:
            spec.acc.append(_Acc(tid, i, m.name))
            found = _fields_compat(local, lm.type, target, m.type)
            if not found:
                spec.acc.pop()
            return found, m.type
        spec.bit_offset -= m.offset
        spec.raw.pop()
    return 0, 0


def spec_match(local_spec: _Spec, kind: int, target: Btf, tid: int) -> tuple[int, _Spec]:
    """libbpf's bpf_core_spec_match: (1 match / 0 no / -1 error, target spec)."""
    local = local_spec.btf
    ts = _Spec(target, tid)
    if kind in TYPE_KINDS:
        if kind == TYPE_MATCHES:
            return types_match(local, local_spec.root, target, tid), ts
        return types_are_compat(local, local_spec.root, target, tid), ts
    lacc = local_spec.acc[0]
    if kind in ENUMVAL_KINDS:
        tid, tt = _skip(target, tid)
        if tt.kind_id not in (KIND_ENUM, KIND_ENUM64):
            return 0, ts
        want = essential_name(lacc.name or "")
        for i, v in enumerate(tt.values):  # type: ignore[attr-defined]
            if essential_name(v.name) == want:
                ts.acc.append(_Acc(tid, i, v.name))
                ts.raw.append(i)
                return 1, ts
        return 0, ts
    for i, la in enumerate(local_spec.acc):
        tid, tt = _skip(target, tid)
        if la.name:
            found, tid = _match_member(local, la, target, tid, ts)
            if found <= 0:
                return found, ts
        else:
            if i > 0:
                if tt.kind_id != KIND_ARRAY:
                    return 0, ts
                flex = _is_flex(target, ts.acc[-1] if ts.acc else None, tt.nelems)  # type: ignore
                if not flex and la.idx >= tt.nelems:  # type: ignore[attr-defined]
                    return 0, ts
                tid, _ = _skip(target, tt.type)  # type: ignore[attr-defined]
            if len(ts.raw) >= SPEC_MAX_LEN:
                return -1, ts
            ts.acc.append(_Acc(tid, la.idx, None))
            ts.raw.append(la.idx)
            ts.bit_offset += la.idx * _size(target, tid) * 8
    return 1, ts


# --- values -----------------------------------------------------------------------


def _field_value(kind: int, spec: _Spec | None) -> tuple[int, int, int | None, bool]:
    """(value, mem size, field type id, validate) — libbpf's bpf_core_calc_field_relo."""
    if kind == FIELD_EXISTS:
        return (1 if spec else 0), 0, None, True
    if spec is None:
        raise _Poison
    btf = spec.btf
    acc = spec.acc[-1]
    if not acc.name:
        if kind == FIELD_BYTE_OFFSET:
            return spec.bit_offset // 8, _size(btf, acc.type_id), acc.type_id, True
        if kind == FIELD_BYTE_SIZE:
            return _size(btf, acc.type_id), 0, None, True
        raise CoreError(f"relocation {LIBBPF_KIND_NAMES[kind]} can't be applied to array access")
    t = btf.types[acc.type_id]
    m = t.members[acc.idx]  # type: ignore[attr-defined]
    ftid, mt = _skip(btf, m.type)
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = mt.size  # type: ignore[attr-defined]
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise CoreError("bitfield can't be read with a 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = _size(btf, ftid)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    validate = not bitfield
    mem_sz, mem_tid = 0, None
    if kind == FIELD_BYTE_OFFSET:
        val = byte_off
        if not bitfield:
            mem_sz, mem_tid = byte_sz, ftid
    elif kind == FIELD_BYTE_SIZE:
        val = byte_sz
    elif kind == FIELD_SIGNED:
        val = int(
            (mt.kind_id in (KIND_ENUM, KIND_ENUM64) and mt.signed)  # type: ignore[attr-defined]
            or (mt.kind_id == KIND_INT and bool(mt.encoding & INT_SIGNED))  # type: ignore
        )
        validate = True
    elif kind == FIELD_LSHIFT_U64:
        val = 64 - (bit_off + bit_sz - byte_off * 8)
    elif kind == FIELD_RSHIFT_U64:
        val = 64 - bit_sz
        validate = True
    else:  # pragma: no cover
        raise CoreError(f"unknown field relocation {kind}")
    return val, mem_sz, mem_tid, validate


def _type_value(kind: int, spec: _Spec | None) -> int:
    if spec is None:
        return 0
    if kind == TYPE_ID_TARGET:
        return spec.root
    if kind in (TYPE_EXISTS, TYPE_MATCHES):
        return 1
    if kind == TYPE_SIZE:
        return _size(spec.btf, spec.root)
    raise CoreError(f"unexpected type relocation {kind}")  # pragma: no cover


def _enum_value(kind: int, spec: _Spec | None) -> int:
    if kind == ENUMVAL_EXISTS:
        return 1 if spec else 0
    if spec is None:
        raise _Poison
    a = spec.acc[0]
    t = spec.btf.types[a.type_id]
    v = t.values[a.idx].value  # type: ignore[attr-defined]
    if t.kind_id == KIND_ENUM:  # libbpf stores btf_enum's __s32 val in a __u64
        v &= 0xFFFFFFFF
        if v >= 1 << 31:
            v -= 1 << 32
    return v & 0xFFFFFFFFFFFFFFFF


def _resizable(ot: BtfType | None, nt: BtfType | None) -> bool:
    """Loads may change size for pointers and unsigned ints (zero extension keeps them)."""
    if ot is None or nt is None or ot.kind_id != nt.kind_id:
        return False
    if ot.kind_id == KIND_PTR:
        return True
    return (ot.kind_id == KIND_INT and ot.encoding != INT_SIGNED  # type: ignore[attr-defined]
            and nt.encoding != INT_SIGNED)  # type: ignore[attr-defined]  # fmt: skip


def _calc(kind: int, local_spec: _Spec, targ: _Spec | None) -> CoreResult:
    exists = targ is not None
    tid = targ.root if targ is not None else None
    try:
        if kind in FIELD_KINDS:
            orig, osz, otid, validate = _field_value(kind, local_spec)
            new, nsz, ntid, _ = _field_value(kind, targ)
            fail = False
            if osz != nsz:
                ot = local_spec.btf.types[otid] if otid is not None else None
                nt = targ.btf.types[ntid] if (targ is not None and ntid is not None) else None
                fail = not _resizable(ot, nt)
            return CoreResult(new, exists, False, orig, validate, osz, nsz, fail, tid)
        if kind in TYPE_KINDS:
            orig = _type_value(kind, local_spec)
            new = _type_value(kind, targ)
            return CoreResult(new, exists, False, orig, kind != TYPE_ID_TARGET, 0, 0, False, tid)
        orig = _enum_value(kind, local_spec)
        new = _enum_value(kind, targ)
        return CoreResult(new, exists, False, orig, True, 0, 0, False, tid)
    except _Poison:
        return CoreResult(0, exists, True, 0, True, 0, 0, False, tid)


def resolve_core(local: Btf, relo: CoreRelo, target: Btf, *,
                 cands: list[int] | None = None) -> CoreResult:  # fmt: skip
    """Compute ``relo`` (from the local BTF's .BTF.ext) against ``target``.

    ``cands`` overrides the candidate search (target type ids).  Raises
    :class:`CoreError` when the access string is malformed or candidates disagree.
    """
    try:
        return _resolve(local, relo, target, cands)
    except CoreError:
        raise
    except RecursionError as e:  # pragma: no cover - walks are bounded
        raise CoreError(f"relo at insn {relo.insn_index}: {e}") from e
    except Exception as e:
        if e.__class__.__name__ == "BtfError":
            raise CoreError(f"relo at insn {relo.insn_index}: {e}") from e
        raise


def _resolve(local: Btf, relo: CoreRelo, target: Btf, cands: list[int] | None) -> CoreResult:
    lt = local.type(relo.type_id)
    local_spec = parse_spec(local, relo)
    lfmt = local_spec.format(relo.kind)
    if relo.kind == TYPE_ID_LOCAL:
        return CoreResult(relo.type_id, True, False, relo.type_id, False, local_spec=lfmt)
    if not lt.name:
        raise CoreError(f"relo at insn {relo.insn_index}: <{LIBBPF_KIND_NAMES[relo.kind]}> "
                        f"relocation doesn't support anonymous types")  # fmt: skip
    if cands is None:
        cands = candidates(local, relo.type_id, target)
    best: CoreResult | None = None
    best_spec: _Spec | None = None
    for cid in cands:
        found, cspec = spec_match(local_spec, relo.kind, target, cid)
        if found < 0:
            raise CoreError(f"relo at insn {relo.insn_index}: error matching candidate "
                            f"[{cid}]")  # fmt: skip
        if not found:
            continue
        res = _calc(relo.kind, local_spec, cspec)
        if best is None:
            best, best_spec = res, cspec
        elif cspec.bit_offset != best_spec.bit_offset:  # type: ignore[union-attr]
            raise CoreError(f"relo at insn {relo.insn_index}: field offset ambiguity: "
                            f"{cspec.bit_offset} != {best_spec.bit_offset}")  # type: ignore
        elif res.poison != best.poison or res.value != best.value:
            raise CoreError(f"relo at insn {relo.insn_index}: relocation decision ambiguity: "
                            f"{res.value} != {best.value}")  # fmt: skip
    if best is None:
        res = _calc(relo.kind, local_spec, None)
        return _with_specs(res, lfmt, "")
    return _with_specs(best, lfmt, best_spec.format(relo.kind))  # type: ignore[union-attr]


def _with_specs(r: CoreResult, lfmt: str, tfmt: str) -> CoreResult:
    return CoreResult(r.value, r.exists, r.poison, r.orig_value, r.validate, r.orig_size,
                      r.new_size, r.fail_memsz_adjust, r.target_type_id, lfmt, tfmt)  # fmt: skip


# --- patching ---------------------------------------------------------------------

_SIZE_BYTES = {0x18: 8, 0x00: 4, 0x08: 2, 0x10: 1}
_BYTES_SIZE = {8: 0x18, 4: 0x00, 2: 0x08, 1: 0x10}


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def patch_insn(code: int, dst: int, src: int, off: int, imm: int, imm2: int,
               result: CoreResult, relo: CoreRelo | None = None) -> PatchedInsn:  # fmt: skip
    """The instruction after applying ``result`` (libbpf's bpf_core_patch_insn).

    A poisoned instruction comes back as ``call 0xbad2310`` (code 0x85, imm
    195896080, the rest 0); for an ld_imm64 the caller must poison its second slot
    the same way (``imm2`` is returned as 0xbad2310 as a reminder).
    """
    where = f"insn {relo.insn_index}: " if relo is not None else ""
    cls = code & 0x07
    poison = result.poison
    if not poison:
        new = result.value
        if cls in (0x04, 0x07):  # ALU, ALU64
            if code & 0x08:
                raise CoreError(f"{where}ALU instruction with a register source cannot be "
                                "relocated")  # fmt: skip
            if result.validate and (imm & 0xFFFFFFFFFFFFFFFF) != result.orig_value:
                raise CoreError(f"{where}unexpected ALU imm {imm}, expected "
                                f"{result.orig_value}")  # fmt: skip
            return PatchedInsn(code, dst, src, off, _s32(new), imm2)
        if cls in (0x01, 0x02, 0x03):  # LDX, ST, STX
            if result.validate and (off & 0xFFFFFFFFFFFFFFFF) != result.orig_value:
                raise CoreError(f"{where}unexpected LDX/ST/STX off {off}, expected "
                                f"{result.orig_value}")  # fmt: skip
            if new > 0x7FFF:
                raise CoreError(f"{where}LDX/ST/STX offset {new} too big")
            if result.fail_memsz_adjust:
                poison = True
            else:
                if result.new_size != result.orig_size:
                    if _SIZE_BYTES.get(code & 0x18) != result.orig_size:
                        raise CoreError(f"{where}unexpected memory size of the instruction")
                    nsz = _BYTES_SIZE.get(result.new_size)
                    if nsz is None:
                        raise CoreError(f"{where}invalid new memory size {result.new_size}")
                    code = (code & 0xE7) | nsz
                return PatchedInsn(code, dst, src, new, imm, imm2)
        elif cls == 0x00:
            if code != 0x18 or src != 0 or off != 0:
                raise CoreError(f"{where}ld_imm64 has an unexpected form")
            old = (imm & 0xFFFFFFFF) | ((imm2 & 0xFFFFFFFF) << 32)
            if result.validate and old != result.orig_value:
                raise CoreError(f"{where}unexpected ld_imm64 value {old}, expected "
                                f"{result.orig_value}")  # fmt: skip
            return PatchedInsn(code, dst, src, off, _s32(new), _s32(new >> 32))
        else:
            raise CoreError(f"{where}cannot relocate instruction with code {code:#x}")
    return PatchedInsn(CALL_CODE, 0, 0, 0, POISON_IMM, POISON_IMM if code == 0x18 else 0)


def apply_to_insn(code: int, dst: int, src: int, off: int, imm: int, imm2: int,
                  result: CoreResult, relo: CoreRelo | None = None) -> tuple[int, int, int]:
    """The new ``(off, imm, imm2)`` of an instruction whose opcode stays the same.

    When the relocation poisons the instruction or changes its memory size (the
    opcode changes), this raises :class:`CoreError`: use :func:`patch_insn`,
    which returns every field.
    """
    p = patch_insn(code, dst, src, off, imm, imm2, result, relo)
    if p.code != code:
        raise CoreError("the relocation changes the opcode (poisoned or resized): use "
                        "patch_insn")  # fmt: skip
    return p.off, p.imm, p.imm2
