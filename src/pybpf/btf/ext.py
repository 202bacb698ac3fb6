"""The .BTF.ext section: func_info, line_info and CO-RE relocations per ELF section.

Layout (libbpf's struct btf_ext_header): magic 0xeB9F, version 1, flags, hdr_len,
then (offset, length) pairs for func_info, line_info and, when hdr_len >= 32,
core_relo, relative to the end of the header.  Each info block starts with a u32
record size and holds, per section, ``sec_name_off, num_info`` and the records.
Instruction offsets in an object file are in bytes; they are exposed as instruction
indexes (8-byte slots).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from pybpf.errors import BtfError

from .model import Btf

_HDR = struct.Struct("<HBBIIIII")
_U32 = struct.Struct("<I")
_2U32 = struct.Struct("<II")
_4U32 = struct.Struct("<IIII")

# enum bpf_core_relo_kind
CORE_KIND_NAMES = (
    "field_byte_offset", "field_byte_size", "field_exists", "field_signed",
    "field_lshift_u64", "field_rshift_u64", "type_id_local", "type_id_target",
    "type_exists", "type_size", "enumval_exists", "enumval_value", "type_matches",
)  # fmt: skip
#: the same kinds as libbpf's messages spell them (core_relo_kind_str)
LIBBPF_KIND_NAMES = (
    "byte_off", "byte_sz", "field_exists", "signed", "lshift_u64", "rshift_u64",
    "local_type_id", "target_type_id", "type_exists", "type_size", "enumval_exists",
    "enumval_value", "type_matches",
)  # fmt: skip


class LineInfo(NamedTuple):
    """One line_info record; ``line_text`` is the source line as stored.

    ``src`` is that line as bpftool prints it (leading white space removed).
    """

    insn_index: int
    file: str
    line_text: str
    line: int
    col: int
    file_name_off: int = 0
    line_off: int = 0

    @property
    def src(self) -> str:
        return self.line_text.lstrip()

    @property
    def line_col(self) -> int:
        return (self.line << 10) | self.col


class CoreRelo(NamedTuple):
    """One bpf_core_relo: ``access`` is the access string (``"0:1:2"``)."""

    insn_index: int
    type_id: int
    access: str
    kind: int
    access_str_off: int = 0

    @property
    def kind_name(self) -> str:
        return CORE_KIND_NAMES[self.kind] if 0 <= self.kind < len(CORE_KIND_NAMES) else "?"


class BtfExt:
    """Parsed .BTF.ext: ``func_info``, ``line_info`` and ``core_relos`` by section name."""

    def __init__(self) -> None:
        self.flags = 0
        self.func_info: dict[str, list[tuple[int, int]]] = {}
        self.line_info: dict[str, list[LineInfo]] = {}
        self.core_relos: dict[str, list[CoreRelo]] = {}
        self.func_info_rec_size = 8
        self.line_info_rec_size = 16
        self.core_relo_rec_size = 16

    @classmethod
    def parse(cls, data: bytes, btf: Btf) -> BtfExt:
        data = bytes(data)
        ext = cls()
        if len(data) < 8:
            raise BtfError(f"truncated BTF.ext header ({len(data)} bytes)", offset=0)
        magic = int.from_bytes(data[:2], "little")
        if magic == 0x9FEB:
            raise BtfError("big-endian BTF.ext is not supported", offset=0)
        if magic != 0xEB9F:
            raise BtfError(f"bad BTF.ext magic {magic:#06x}", offset=0)
        if data[2] != 1:
            raise BtfError(f"unsupported BTF.ext version {data[2]}", offset=2)
        ext.flags = data[3]
        (hdr_len,) = _U32.unpack_from(data, 4)
        if hdr_len < 24 or hdr_len > len(data):
            raise BtfError(f"bad BTF.ext header length {hdr_len}", offset=4)
        words = [_U32.unpack_from(data, 8 + 4 * i)[0] for i in range((min(hdr_len, 32) - 8) // 4)]
        blocks = [("func_info", words[0], words[1], 8), ("line_info", words[2], words[3], 16)]
        if len(words) >= 6:
            blocks.append(("core_relo", words[4], words[5], 16))
        for what, off, length, min_rec in blocks:
            if not length:
                continue
            start = hdr_len + off
            if off % 4 or start + length > len(data):
                raise BtfError(f"BTF.ext {what} [{off}, {off + length}) is outside the data",
                               offset=start)  # fmt: skip
            ext._parse_block(what, data, start, start + length, min_rec, btf)
        return ext

    def _parse_block(
        self, what: str, data: bytes, pos: int, end: int, min_rec: int, btf: Btf
    ) -> None:
        if end - pos < 4:
            raise BtfError(f"BTF.ext {what}: missing record size", offset=pos)
        (rec,) = _U32.unpack_from(data, pos)
        if rec < min_rec or rec % 4:
            raise BtfError(f"BTF.ext {what}: bad record size {rec}", offset=pos)
        setattr(self, f"{what}_rec_size", rec)
        pos += 4
        target = {"func_info": self.func_info, "line_info": self.line_info,
                  "core_relo": self.core_relos}[what]  # fmt: skip
        if pos == end:
            raise BtfError(f"BTF.ext {what}: no sections", offset=pos)
        while pos < end:
            if end - pos < 8:
                raise BtfError(f"BTF.ext {what}: truncated section header", offset=pos)
            name_off, num = _2U32.unpack_from(data, pos)
            sec = _string(btf, name_off, pos, what)
            if not num:
                raise BtfError(f"BTF.ext {what}: section {sec!r} has no records", offset=pos)
            pos += 8
            if num * rec > end - pos:
                raise BtfError(f"BTF.ext {what}: section {sec!r}: {num} records of {rec} "
                               f"bytes run past the data", offset=pos)  # fmt: skip
            records: list = target.setdefault(sec, [])
            for i in range(num):
                at = pos + i * rec
                if what == "func_info":
                    insn_off, type_id = _2U32.unpack_from(data, at)
                    _check_insn(what, insn_off, at)
                    if type_id >= len(btf.types):
                        raise BtfError(f"BTF.ext func_info: type id {type_id} out of range",
                                       offset=at + 4)  # fmt: skip
                    records.append((insn_off // 8, type_id))
                elif what == "line_info":
                    insn_off, file_off, line_off, line_col = _4U32.unpack_from(data, at)
                    _check_insn(what, insn_off, at)
                    records.append(LineInfo(
                        insn_off // 8, _string(btf, file_off, at + 4, what),
                        _string(btf, line_off, at + 8, what), line_col >> 10, line_col & 0x3FF,
                        file_off, line_off,
                    ))  # fmt: skip
                else:
                    insn_off, type_id, acc_off, kind = _4U32.unpack_from(data, at)
                    _check_insn(what, insn_off, at)
                    if type_id >= len(btf.types):
                        raise BtfError(f"BTF.ext core_relo: type id {type_id} out of range",
                                       offset=at + 4)  # fmt: skip
                    if kind >= len(CORE_KIND_NAMES):
                        raise BtfError(f"BTF.ext core_relo: unknown relocation kind {kind}",
                                       offset=at + 12)  # fmt: skip
                    records.append(CoreRelo(insn_off // 8, type_id,
                                            _string(btf, acc_off, at + 8, what), kind, acc_off))
            pos += num * rec


def _check_insn(what: str, insn_off: int, at: int) -> None:
    if insn_off % 8:
        raise BtfError(f"BTF.ext {what}: instruction offset {insn_off} is not a multiple of 8",
                       offset=at)  # fmt: skip


def _string(btf: Btf, off: int, at: int, what: str) -> str:
    try:
        return btf._strings.get(off, at)
    except BtfError as e:
        raise BtfError(f"BTF.ext {what}: string offset {off} out of range", offset=at) from e
