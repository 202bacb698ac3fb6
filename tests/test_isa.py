"""The instruction set: the table's shape, the codec, and typed errors with positions."""

from __future__ import annotations

import pytest

from pybpf.errors import (
    EncodeError,
    JumpRangeError,
    ReservedFieldError,
    TruncatedError,
    UnknownOpcodeError,
)
from pybpf.isa import BY_NAME, LDDW, SPECS, Instruction, Kind, check_jumps, decode, encode, lookup


def test_table_names_are_unique_and_cover_the_rfc():
    assert len({s.name for s in SPECS}) == len(SPECS) == 174
    kinds = {s.kind for s in SPECS}
    assert kinds == set(Kind)
    # RFC 9669's v4 additions and the Linux extensions are all there
    for name in ("sdiv64_reg", "smod_imm", "movsx3264_reg", "ldxsw", "bswap64", "ja32",
                 "may_goto", "callx", "call_kfunc", "load_acqb", "store_reldw",
                 "lock_cmpxchg_w", "lock_fetch_xor_dw", "ldindh", "ldabsb"):  # fmt: skip
        assert name in BY_NAME


def test_bytes_of_the_seed_program():
    # seed 001 / 002: r0 = 2 (XDP_PASS); exit
    insns = decode(bytes.fromhex("b700000002000000 9500000000000000".replace(" ", "")))
    assert insns == [Instruction(0xB7, imm=2), Instruction(0x95)]
    assert lookup(insns[0]).name == "mov64_imm"


def test_codec_roundtrip_every_spec():
    for spec in SPECS:
        fields = {f: 0 for f in ("dst_reg", "src_reg", "off", "imm")}
        for f in spec.uses:
            fields[f] = {"dst_reg": 3, "src_reg": 10, "off": -8, "imm": -7}[f]
        if spec.disc:
            fields[spec.disc[0]] = spec.disc[1]
        if spec.kind is Kind.LDDW:
            fields["src_reg"] = 0
        insn = Instruction(spec.code, **fields, imm2=-1 if spec.code == LDDW else 0)
        data = encode([insn])
        assert len(data) == 8 * insn.slots
        assert decode(data) == [insn]
        assert lookup(insn) is spec


def test_lddw_is_one_instruction_of_two_slots():
    insn = Instruction.lddw(1, 0x1122334455667788)
    data = encode([insn])
    assert data.hex() == "1801000088776655000000004433221" + "1"
    assert decode(data)[0].imm64 == 0x1122334455667788


@pytest.mark.parametrize(
    "data, error, pc",
    [
        (b"\x95\x00\x00\x00", TruncatedError, 0),
        (bytes.fromhex("b700000000000000") + b"\x18" + bytes(7), TruncatedError, 1),
        (bytes.fromhex("1800000000000000"), TruncatedError, 0),  # lddw without its second half
        (bytes.fromhex("b700000000000000ff00000000000000"), UnknownOpcodeError, 1),
        (bytes.fromhex("18000000000000000001000000000000"), ReservedFieldError, 1),
        (bytes.fromhex("bf0b000000000000"), ReservedFieldError, 0),  # r11
    ],
)
def test_bad_bytecode_is_typed_with_position(data, error, pc):
    with pytest.raises(error) as info:
        decode(data)
    assert info.value.pc == pc


def test_unknown_opcode_names_the_byte():
    with pytest.raises(UnknownOpcodeError) as info:
        decode(bytes.fromhex("b700000000000000" "8f00000000000000"))
    assert info.value.pc == 1 and info.value.code == 0x8F and "0x8f" in str(info.value)


def test_jump_targets_are_checked():
    with pytest.raises(JumpRangeError) as info:
        check_jumps([Instruction(0xB7), Instruction(0x15, off=-3), Instruction(0x95)])
    assert info.value.pc == 1
    check_jumps([Instruction(0x15, off=1), Instruction(0x95), Instruction(0x95)])


@pytest.mark.parametrize(
    "fields",
    [
        dict(code=256),
        dict(code=0x07, dst_reg=16),
        dict(code=0x07, off=1 << 15),
        dict(code=0x07, imm=1 << 31),
        dict(code=0x07, imm2=1),
    ],
)
def test_instruction_fields_must_fit(fields):
    with pytest.raises(EncodeError):
        Instruction(**fields)
