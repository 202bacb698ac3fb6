"""BTF types: one small frozen dataclass per kind (include/uapi/linux/btf.h).

Every type has ``kind`` (the kernel's name, lower case: ``"struct"``,
``"func_proto"``...), ``kind_id`` (the BTF_KIND_* number) and ``name`` (``""``
for anonymous types).  Kinds that refer to another type carry it as ``type``
(a type id).  Member offsets are in bits, as in BTF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

KIND_UNKN = 0
KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

KIND_NAMES = (
    "unkn", "int", "ptr", "array", "struct", "union", "enum", "fwd", "typedef",
    "volatile", "const", "restrict", "func", "func_proto", "var", "datasec", "float",
    "decl_tag", "type_tag", "enum64",
)  # fmt: skip

# INT encoding bits
INT_SIGNED = 1
INT_CHAR = 2
INT_BOOL = 4

# FUNC linkage
FUNC_STATIC = 0
FUNC_GLOBAL = 1
FUNC_EXTERN = 2
FUNC_LINKAGE = ("static", "global", "extern")

# VAR linkage
VAR_STATIC = 0
VAR_GLOBAL_ALLOCATED = 1
VAR_GLOBAL_EXTERN = 2
VAR_LINKAGE = ("static", "global", "extern")


class Member(NamedTuple):
    """A struct/union member; ``offset`` in bits, ``bitfield_size`` 0 when not a bitfield."""

    name: str
    type: int
    offset: int
    bitfield_size: int = 0


class EnumValue(NamedTuple):
    name: str
    value: int


class Param(NamedTuple):
    """A FUNC_PROTO parameter; ``type`` 0 is the variadic ``...``."""

    name: str
    type: int


class VarSecinfo(NamedTuple):
    """A DATASEC entry: the VAR (or FUNC for .ksyms) type id, offset and size in bytes."""

    type: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class BtfType:
    kind: ClassVar[str] = "unkn"
    kind_id: ClassVar[int] = KIND_UNKN
    name: str


@dataclass(frozen=True, slots=True)
class Void(BtfType):
    """Type id 0."""

    kind: ClassVar[str] = "void"
    kind_id: ClassVar[int] = KIND_UNKN
    name: str = ""


@dataclass(frozen=True, slots=True)
class Int(BtfType):
    kind: ClassVar[str] = "int"
    kind_id: ClassVar[int] = KIND_INT
    size: int
    encoding: int  # INT_SIGNED | INT_CHAR | INT_BOOL
    offset: int  # bits
    bits: int

    @property
    def signed(self) -> bool:
        return bool(self.encoding & INT_SIGNED)


@dataclass(frozen=True, slots=True)
class Ptr(BtfType):
    kind: ClassVar[str] = "ptr"
    kind_id: ClassVar[int] = KIND_PTR
    type: int


@dataclass(frozen=True, slots=True)
class Array(BtfType):
    kind: ClassVar[str] = "array"
    kind_id: ClassVar[int] = KIND_ARRAY
    type: int
    index_type: int
    nelems: int


@dataclass(frozen=True, slots=True)
class Struct(BtfType):
    kind: ClassVar[str] = "struct"
    kind_id: ClassVar[int] = KIND_STRUCT
    size: int
    members: tuple[Member, ...]
    kind_flag: bool = False


@dataclass(frozen=True, slots=True)
class Union(Struct):
    kind: ClassVar[str] = "union"
    kind_id: ClassVar[int] = KIND_UNION


@dataclass(frozen=True, slots=True)
class Enum(BtfType):
    kind: ClassVar[str] = "enum"
    kind_id: ClassVar[int] = KIND_ENUM
    size: int
    values: tuple[EnumValue, ...]
    signed: bool = False


@dataclass(frozen=True, slots=True)
class Enum64(Enum):
    kind: ClassVar[str] = "enum64"
    kind_id: ClassVar[int] = KIND_ENUM64


@dataclass(frozen=True, slots=True)
class Fwd(BtfType):
    kind: ClassVar[str] = "fwd"
    kind_id: ClassVar[int] = KIND_FWD
    union: bool = False


@dataclass(frozen=True, slots=True)
class Typedef(BtfType):
    kind: ClassVar[str] = "typedef"
    kind_id: ClassVar[int] = KIND_TYPEDEF
    type: int


@dataclass(frozen=True, slots=True)
class Volatile(BtfType):
    kind: ClassVar[str] = "volatile"
    kind_id: ClassVar[int] = KIND_VOLATILE
    type: int


@dataclass(frozen=True, slots=True)
class Const(BtfType):
    kind: ClassVar[str] = "const"
    kind_id: ClassVar[int] = KIND_CONST
    type: int


@dataclass(frozen=True, slots=True)
class Restrict(BtfType):
    kind: ClassVar[str] = "restrict"
    kind_id: ClassVar[int] = KIND_RESTRICT
    type: int


@dataclass(frozen=True, slots=True)
class Func(BtfType):
    kind: ClassVar[str] = "func"
    kind_id: ClassVar[int] = KIND_FUNC
    type: int  # the FUNC_PROTO
    linkage: int = FUNC_STATIC


@dataclass(frozen=True, slots=True)
class FuncProto(BtfType):
    kind: ClassVar[str] = "func_proto"
    kind_id: ClassVar[int] = KIND_FUNC_PROTO
    type: int  # return type
    params: tuple[Param, ...]


@dataclass(frozen=True, slots=True)
class Var(BtfType):
    kind: ClassVar[str] = "var"
    kind_id: ClassVar[int] = KIND_VAR
    type: int
    linkage: int = VAR_STATIC


@dataclass(frozen=True, slots=True)
class Datasec(BtfType):
    kind: ClassVar[str] = "datasec"
    kind_id: ClassVar[int] = KIND_DATASEC
    size: int
    vars: tuple[VarSecinfo, ...]


@dataclass(frozen=True, slots=True)
class Float(BtfType):
    kind: ClassVar[str] = "float"
    kind_id: ClassVar[int] = KIND_FLOAT
    size: int


@dataclass(frozen=True, slots=True)
class DeclTag(BtfType):
    kind: ClassVar[str] = "decl_tag"
    kind_id: ClassVar[int] = KIND_DECL_TAG
    type: int
    component_idx: int = -1


@dataclass(frozen=True, slots=True)
class TypeTag(BtfType):
    kind: ClassVar[str] = "type_tag"
    kind_id: ClassVar[int] = KIND_TYPE_TAG
    type: int


VOID = Void()

# Kinds whose ``type`` is a plain reference that resolve() skips.
MODIFIER_KINDS = frozenset({KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG})
