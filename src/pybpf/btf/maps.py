"""BTF-defined maps (``SEC(".maps")``), decoded as libbpf's parse_btf_map_def does.

``__uint(name, N)`` declares ``int (*name)[N]`` (a pointer to an array of N
elements), ``__type(name, T)`` declares ``T *name``, ``__ulong(name, N)`` an
anonymous enum with one value N, and ``__array(values, T)`` declares ``T
*values[]`` (an array of zero pointers) whose pointee is the inner map definition
(maps of maps) or a function prototype (program arrays).
"""

from __future__ import annotations

from typing import Any

from pybpf.errors import BtfError

from .model import Btf
from .types import KIND_ARRAY, KIND_ENUM, KIND_ENUM64, KIND_FUNC_PROTO, KIND_PTR, Struct, Var

# enum bpf_map_type values that hold other maps / programs
MAP_TYPE_PROG_ARRAY = 3
MAP_TYPE_ARRAY_OF_MAPS = 12
MAP_TYPE_HASH_OF_MAPS = 13

PIN_NONE = 0
PIN_BY_NAME = 1

_INT_FIELDS = ("type", "max_entries", "map_flags", "numa_node", "key_size", "value_size",
               "pinning", "map_extra")  # fmt: skip


def _field_int(btf: Btf, map_name: str, member_name: str, type_id: int) -> int:
    """libbpf's get_map_field_int: a pointer to an array whose nelems is the value."""
    t = btf.resolved(type_id)
    if t.kind_id == KIND_PTR:
        arr = btf.type(t.type)  # type: ignore[attr-defined]
        if arr.kind_id != KIND_ARRAY:
            raise BtfError(f"map '{map_name}': attr '{member_name}': expected an array, "
                           f"got {arr.kind}")  # fmt: skip
        return arr.nelems  # type: ignore[attr-defined]
    if t.kind_id in (KIND_ENUM, KIND_ENUM64):  # __ulong(name, val)
        vals = t.values  # type: ignore[attr-defined]
        if len(vals) != 1:
            raise BtfError(f"map '{map_name}': attr '{member_name}': invalid __ulong")
        return vals[0].value & 0xFFFFFFFFFFFFFFFF
    raise BtfError(f"map '{map_name}': attr '{member_name}': expected a pointer, got {t.kind}")


def _field_type(btf: Btf, map_name: str, member_name: str, type_id: int) -> int:
    t = btf.resolved(type_id)
    if t.kind_id != KIND_PTR:
        raise BtfError(f"map '{map_name}': {member_name} spec is not a pointer: {t.kind}")
    return t.type  # type: ignore[attr-defined]


def map_def_from_btf(
    btf: Btf, var_type_id: int, *, name: str | None = None, is_inner: bool = False
) -> dict[str, Any]:
    """Decode a map definition: ``var_type_id`` is the VAR in ``.maps`` (or its struct).

    Returns a dict with every field libbpf knows: ``name``, ``type``, ``key_size``,
    ``value_size``, ``max_entries``, ``map_flags``, ``numa_node``, ``map_extra``,
    ``pinning``, ``key_type_id``, ``value_type_id`` (0 when not given, as libbpf),
    ``inner`` (the inner map's dict for maps of maps, else None), ``values_type_id``
    (the pointee of ``__array(values, ...)``: inner struct or func_proto; 0 if none)
    and ``fields`` (the names the definition sets).  Sizes given by ``__type`` are
    the sizes of those types; conflicting sizes raise :class:`BtfError`, as libbpf.
    """
    t = btf.type(var_type_id)
    if isinstance(t, Var):
        name = name if name is not None else t.name
        def_id = t.type
    else:
        def_id = var_type_id
    map_name = name or ""
    d = btf.resolved(def_id)
    if not isinstance(d, Struct) or d.kind != "struct":
        raise BtfError(f"map '{map_name}': unexpected def kind {d.kind}")
    out: dict[str, Any] = {
        "name": map_name,
        "type": 0,
        "key_size": 0,
        "value_size": 0,
        "max_entries": 0,
        "map_flags": 0,
        "numa_node": 0,
        "map_extra": 0,
        "pinning": PIN_NONE,
        "key_type_id": 0,
        "value_type_id": 0,
        "values_type_id": 0,
        "inner": None,
        "fields": [],
    }
    fields: list[str] = out["fields"]
    for m in d.members:
        if not m.name:
            raise BtfError(f"map '{map_name}': invalid field #{d.members.index(m)}")
        fname = m.name
        if fname in _INT_FIELDS:
            val = _field_int(btf, map_name, fname, m.type)
            if fname in ("key_size", "value_size") and out[fname] and out[fname] != val:
                raise BtfError(f"map '{map_name}': conflicting {fname} {out[fname]} != {val}")
            if fname == "pinning" and val not in (PIN_NONE, PIN_BY_NAME):
                raise BtfError(f"map '{map_name}': invalid pinning value {val}")
            if fname == "pinning" and is_inner:
                raise BtfError(f"map '{map_name}': inner def can't be pinned")
            out[fname] = val
        elif fname in ("key", "value"):
            tid = _field_type(btf, map_name, fname, m.type)
            size = btf.size_of(tid)
            if out[f"{fname}_size"] and out[f"{fname}_size"] != size:
                raise BtfError(f"map '{map_name}': conflicting {fname} size "
                               f"{out[f'{fname}_size']} != {size}")  # fmt: skip
            out[f"{fname}_size"] = size
            out[f"{fname}_type_id"] = tid
        elif fname == "values":
            if is_inner:
                raise BtfError(f"map '{map_name}': multi-level inner maps not supported")
            mt = btf.resolved(m.type)
            if mt.kind_id != KIND_ARRAY or mt.nelems:  # type: ignore[attr-defined]
                raise BtfError(f"map '{map_name}': values spec is not a zero-sized array")
            pt = btf.resolved(mt.type)  # type: ignore[attr-defined]
            if pt.kind_id != KIND_PTR:
                raise BtfError(f"map '{map_name}': values must be an array of pointers")
            target_id = btf.skip_mods(pt.type)  # type: ignore[attr-defined]
            target = btf.types[target_id]
            out["values_type_id"] = target_id
            if out["value_size"] and out["value_size"] != 4:
                raise BtfError(f"map '{map_name}': conflicting value size "
                               f"{out['value_size']} != 4")  # fmt: skip
            out["value_size"] = 4
            if target.kind_id == KIND_FUNC_PROTO:
                pass  # program array
            elif isinstance(target, Struct) and target.kind == "struct":
                out["inner"] = map_def_from_btf(
                    btf, target_id, name=f"{map_name}.inner", is_inner=True
                )
            else:
                raise BtfError(f"map '{map_name}': values must point to a struct or a "
                               f"func_proto, not {target.kind}")  # fmt: skip
        else:
            raise BtfError(f"map '{map_name}': unknown field '{fname}'")
        fields.append(fname)
    if out["type"] in (MAP_TYPE_ARRAY_OF_MAPS, MAP_TYPE_HASH_OF_MAPS) and out["inner"] is None:
        # libbpf accepts a map-in-map without __array(values) (inner set at runtime)
        pass
    return out


def maps_in_btf(btf: Btf, section: str = ".maps") -> dict[str, dict[str, Any]]:
    """Every map definition of the DATASEC ``section``, by variable name."""
    result: dict[str, dict[str, Any]] = {}
    sec_id = btf.find(section, "datasec")
    if sec_id is None:
        return result
    for v in btf.types[sec_id].vars:  # type: ignore[attr-defined]
        var = btf.type(v.type)
        if isinstance(var, Var):
            result[var.name] = map_def_from_btf(btf, v.type)
    return result
