"""Malformed instructions: pybpf's verifier refuses them with the kernel's message and errno.

Linux 6.18 refuses a malformed encoding in two places: ``resolve_pseudo_ldimm64``
before it walks anything (unknown opcode bytes, LDX modes and ``imm``, broken
ld_imm64 pairs, ld_imm64 sources), and ``do_check`` when the walk reaches the
instruction, where the function handling its class checks the reserved fields
(``check_alu_op``, ``check_atomic``, ``check_cond_jmp_op``, ``check_ld_imm``,
``check_ld_abs`` and the STX/ST/CALL/JA/EXIT branches of ``do_check_insn``) and
``check_reg_arg`` the register numbers ("R15 is invalid", "frame pointer is read
only"), each at its own point among the checks of the register state.  So the
order matters: ``mov r0, r15`` with an ``imm`` is "BPF_MOV uses reserved
fields", a conditional jump reads its destination before it looks at its
reserved field, and a malformed instruction the walk never reaches is never
refused.

``CASES`` holds each program with the kernel's answer, recorded at log level 1
as root: the errno, the pc and the line of the refused instruction as the log
prints it (None when the refusal comes before the walk, with no instruction
line), and the message.  pybpf must give the same answer; the kernel's answers
are also kernel facts (``kernel_facts/verifier_malformed.json``, stamped with the
kernel that gave them), asked of the live kernel where bpf(2) works, so a drift
is reported.  Re-record with ``pytest --record-kernel
tests/test_verifier_malformed.py`` as root.  Finally, random instruction words
must never make pybpf's verifier fail with an internal error.
"""

from __future__ import annotations

import errno
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.errors import IsaError, KernelError
from pybpf.isa import Instruction, decode
from pybpf.verifier import Target, verify
from pybpf.verifier.cfg import KNOWN_OPCODES

XDP, SOCKET = 6, 1
EINVAL, EACCES = "EINVAL", "EACCES"
R0_0 = (0xB7, 0, 0, 0, 0)  # r0 = 0
EXIT = (0x95, 0, 0, 0, 0)  # exit


def _p(*insns: tuple[int, int, int, int, int]) -> list[tuple[int, int, int, int, int]]:
    """A program: ``insns`` (code, dst_reg, src_reg, off, imm), then ``r0 = 0; exit``."""
    return [*insns, R0_0, EXIT]


# Recorded on Linux 6.18.44-fc-v1300 (`uname -r`; kernel fingerprint 4bdbd6a2e541), root,
# log level 1.  name, program type, the program's 8-byte slots (code, dst_reg, src_reg, off,
# imm; an ld_imm64 is two), and the kernel's answer: None (loaded), or (errno, pc of the
# refused instruction, its log line, the message); pc and line are None for a refusal
# before the walk.
CASES = [
    # --- check_alu_op: BPF_MOV (reserved fields first, then src, then dst)
    ("mov64_reg_imm", XDP, _p((0xbf, 0, 1, 0, 1)),
     (EINVAL, 0, "(bf) r0 = r1", "BPF_MOV uses reserved fields")),
    ("mov64_reg_src15", XDP, _p((0xbf, 0, 15, 0, 0)),
     (EINVAL, 0, "(bf) r0 = r15", "R15 is invalid")),
    ("mov64_reg_src11", XDP, _p((0xbf, 0, 11, 0, 0)),
     (EINVAL, 0, "(bf) r0 = r11", "R11 is invalid")),
    ("mov64_reg_dst15", XDP, _p((0xbf, 15, 1, 0, 0)),
     (EINVAL, 0, "(bf) r15 = r1", "R15 is invalid")),
    ("mov64_reg_dst12_src11", XDP, _p((0xbf, 12, 11, 0, 0)),
     (EINVAL, 0, "(bf) r12 = r11", "R11 is invalid")),
    ("mov64_reg_imm_src15", XDP, _p((0xbf, 0, 15, 0, 7)),
     (EINVAL, 0, "(bf) r0 = r15", "BPF_MOV uses reserved fields")),
    ("mov64_reg_off4", XDP, _p((0xbf, 0, 1, 4, 0)),
     (EINVAL, 0, "(bf) r0 = r1", "BPF_MOV uses reserved fields")),
    ("mov64_reg_off1_asc", XDP, _p((0xbf, 0, 1, 1, 0)),
     (EINVAL, 0, "(bf) r0 = addr_space_cast(r1, 0, 0)",
      "addr_space_cast insn can only convert between address space 1 and 0")),
    ("mov64_reg_off1_asc_imm1", XDP, _p((0xbf, 0, 1, 1, 1)),
     (EINVAL, 0, "(bf) r0 = addr_space_cast(r1, 0, 1)",
      "addr_space_cast insn can only be used in a program that has an associated arena")),
    ("mov64_reg_offm1", XDP, _p((0xbf, 0, 1, -1, 0)),
     (EINVAL, 0, "(bf) r0 = &(void __percpu *)(r1)", "BPF_MOV uses reserved fields")),
    ("mov64_reg_dst10", XDP, _p((0xbf, 10, 1, 0, 0)),
     (EACCES, 0, "(bf) r10 = r1", "frame pointer is read only")),
    ("movsx64_src15", XDP, _p((0xbf, 0, 15, 8, 0)),
     (EINVAL, 0, "(bf) r0 = (s8)r15", "R15 is invalid")),
    ("movsx64_off32_ok", XDP, _p((0xb7, 2, 0, 0, 5), (0xbf, 0, 2, 32, 0)), None),
    ("mov32_reg_off32", XDP, _p((0xbc, 0, 1, 32, 0)),
     (EINVAL, 0, "(bc) w0 = (s32)w1", "BPF_MOV uses reserved fields")),
    ("mov32_reg_imm", XDP, _p((0xbc, 0, 1, 0, 3)),
     (EINVAL, 0, "(bc) w0 = w1", "BPF_MOV uses reserved fields")),
    ("mov64_imm_src1", XDP, _p((0xb7, 0, 1, 0, 0)),
     (EINVAL, 0, "(b7) r0 = 0", "BPF_MOV uses reserved fields")),
    ("mov64_imm_off1", XDP, _p((0xb7, 0, 0, 1, 0)),
     (EINVAL, 0, "(b7) r0 = 0", "BPF_MOV uses reserved fields")),
    ("mov64_imm_dst15", XDP, _p((0xb7, 15, 0, 0, 0)),
     (EINVAL, 0, "(b7) r15 = 0", "R15 is invalid")),
    ("mov64_imm_dst10", XDP, _p((0xb7, 10, 0, 0, 0)),
     (EACCES, 0, "(b7) r10 = 0", "frame pointer is read only")),
    ("mov32_imm_dst11", XDP, _p((0xb4, 11, 0, 0, 0)),
     (EINVAL, 0, "(b4) w11 = 0", "R11 is invalid")),
    ("mov32_imm_src2", XDP, _p((0xb4, 0, 2, 0, 0)),
     (EINVAL, 0, "(b4) w0 = 0", "BPF_MOV uses reserved fields")),
    # --- check_alu_op: the other operations (src, dst read, div/shift, then dst written)
    ("add64_imm_src1", XDP, _p((0x07, 1, 1, 0, 0)),
     (EINVAL, 0, "(07) r1 += 0", "BPF_ALU uses reserved fields")),
    ("add64_imm_off1", XDP, _p((0x07, 1, 0, 1, 0)),
     (EINVAL, 0, "(07) r1 += 0", "BPF_ALU uses reserved fields")),
    ("add64_reg_imm", XDP, _p((0x0f, 1, 1, 0, 1)),
     (EINVAL, 0, "(0f) r1 += r1", "BPF_ALU uses reserved fields")),
    ("add64_reg_off2", XDP, _p((0x0f, 1, 1, 2, 0)),
     (EINVAL, 0, "(0f) r1 += r1", "BPF_ALU uses reserved fields")),
    ("add64_reg_src15", XDP, _p((0x0f, 1, 15, 0, 0)),
     (EINVAL, 0, "(0f) r1 += r15", "R15 is invalid")),
    ("add64_reg_dst13", XDP, _p((0x0f, 13, 1, 0, 0)),
     (EINVAL, 0, "(0f) r13 += r1", "R13 is invalid")),
    ("add64_imm_dst13", XDP, _p((0x07, 13, 0, 0, 1)),
     (EINVAL, 0, "(07) r13 += 1", "R13 is invalid")),
    ("add64_imm_dst10", XDP, _p((0x07, 10, 0, 0, 1)),
     (EACCES, 0, "(07) r10 += 1", "frame pointer is read only")),
    ("and64_imm_dst10", XDP, _p((0x57, 10, 0, 0, 7)),
     (EACCES, 0, "(57) r10 &= 7", "frame pointer is read only")),
    ("add32_reg_src11_dst12", XDP, _p((0x0c, 12, 11, 0, 0)),
     (EINVAL, 0, "(0c) w12 += w11", "R11 is invalid")),
    ("add64_reg_src_uninit_dst15", XDP, _p((0x0f, 15, 5, 0, 0)),
     (EACCES, 0, "(0f) r15 += r5", "R5 !read_ok")),
    ("div64_imm_off2", XDP, _p((0x37, 0, 0, 2, 1)),
     (EINVAL, 0, "(37) r0 /= 1", "BPF_ALU uses reserved fields")),
    ("sdiv64_imm_ok", XDP, _p((0xb7, 0, 0, 0, 8), (0x37, 0, 0, 1, 2)), None),
    ("smod32_reg_off1_ok", XDP, _p((0xb7, 0, 0, 0, 8), (0xb7, 2, 0, 0, 3), (0x9c, 0, 2, 1, 0)),
     None),
    ("div64_imm0_dst_uninit", XDP, _p((0x37, 5, 0, 0, 0)),
     (EACCES, 0, "(37) r5 /= 0", "R5 !read_ok")),
    ("div64_imm0_dst15", XDP, _p((0x37, 15, 0, 0, 0)),
     (EINVAL, 0, "(37) r15 /= 0", "R15 is invalid")),
    ("div64_imm0_dst10", XDP, _p((0x37, 10, 0, 0, 0)),
     (EINVAL, 0, "(37) r10 /= 0", "div by zero")),
    ("mod32_imm0_off1", XDP, _p((0x94, 1, 0, 1, 0)),
     (EINVAL, 0, "(94) w1 s%= 0", "div by zero")),
    ("lsh64_imm64_dst15", XDP, _p((0x67, 15, 0, 0, 0x40)),
     (EINVAL, 0, "(67) r15 <<= 64", "R15 is invalid")),
    ("lsh64_imm64_dst_uninit", XDP, _p((0x67, 6, 0, 0, 0x40)),
     (EACCES, 0, "(67) r6 <<= 64", "R6 !read_ok")),
    ("arsh32_imm_ok", XDP, _p((0xb4, 0, 0, 0, 8), (0xc4, 0, 0, 0, 1)), None),
    ("arsh32_reg_ok", XDP, _p((0xb4, 0, 0, 0, 8), (0xb4, 2, 0, 0, 1), (0xcc, 0, 2, 0, 0)), None),
    # --- check_alu_op: BPF_NEG and BPF_END
    ("neg64_src1", XDP, _p((0x87, 1, 1, 0, 0)),
     (EINVAL, 0, "(87) r1 = -r1", "BPF_NEG uses reserved fields")),
    ("neg64_off1", XDP, _p((0x87, 1, 0, 1, 0)),
     (EINVAL, 0, "(87) r1 = -r1", "BPF_NEG uses reserved fields")),
    ("neg64_imm1", XDP, _p((0x87, 1, 0, 0, 1)),
     (EINVAL, 0, "(87) r1 = -r1", "BPF_NEG uses reserved fields")),
    ("neg64_dst15", XDP, _p((0x87, 15, 0, 0, 0)),
     (EINVAL, 0, "(87) r15 = -r15", "R15 is invalid")),
    ("neg64_dst10", XDP, _p((0x87, 10, 0, 0, 0)),
     (EACCES, 0, "(87) r10 = -r10", "frame pointer is read only")),
    ("neg32_dst_uninit", XDP, _p((0x84, 3, 0, 0, 0)),
     (EACCES, 0, "(84) w3 = -w3", "R3 !read_ok")),
    ("le_imm8", XDP, _p((0xd4, 1, 0, 0, 8)),
     (EINVAL, 0, "(d4) r1 = le8 r1", "BPF_END uses reserved fields")),
    ("le_src1", XDP, _p((0xd4, 1, 1, 0, 0x10)),
     (EINVAL, 0, "(d4) r1 = le16 r1", "BPF_END uses reserved fields")),
    ("be_off1", XDP, _p((0xdc, 1, 0, 1, 0x20)),
     (EINVAL, 0, "(dc) r1 = be32 r1", "BPF_END uses reserved fields")),
    ("be_dst11", XDP, _p((0xdc, 11, 0, 0, 0x40)),
     (EINVAL, 0, "(dc) r11 = be64 r11", "R11 is invalid")),
    ("bswap_imm0", XDP, _p((0xd7, 1, 0, 0, 0)),
     (EINVAL, 0, "(d7) r1 = bswap0 r1", "BPF_END uses reserved fields")),
    ("bswap_dst10", XDP, _p((0xd7, 10, 0, 0, 0x10)),
     (EACCES, 0, "(d7) r10 = bswap16 r10", "frame pointer is read only")),
    # --- LDX: mode and imm before the walk; then src, then dst
    ("ldx_src15", XDP, _p((0x79, 0, 15, 0, 0)),
     (EINVAL, 0, "(79) r0 = *(u64 *)(r15 +0)", "R15 is invalid")),
    ("ldx_dst15", XDP, _p((0x79, 15, 1, 0, 0)),
     (EINVAL, 0, "(79) r15 = *(u64 *)(r1 +0)", "R15 is invalid")),
    ("ldx_dst10", XDP, _p((0x79, 10, 1, 0, 0)),
     (EACCES, 0, "(79) r10 = *(u64 *)(r1 +0)", "frame pointer is read only")),
    ("ldx_imm1", XDP, _p((0x79, 0, 1, 0, 1)),
     (EINVAL, None, None, "BPF_LDX uses reserved fields")),
    ("ldx_mode_abs", XDP, _p((0x21, 0, 1, 0, 0)),
     (EINVAL, None, None, "BPF_LDX uses reserved fields")),
    ("ldxsx_dst11", XDP, _p((0x91, 11, 1, 0, 0)),
     (EINVAL, 0, "(91) r11 = *(s8 *)(r1 +0)", "R11 is invalid")),
    ("ldx_src_uninit_dst15", XDP, _p((0x61, 15, 5, 0, 0)),
     (EACCES, 0, "(61) r15 = *(u32 *)(r5 +0)", "R5 !read_ok")),
    # --- STX and ST
    ("stx_imm1", XDP, _p((0x7b, 10, 1, -8, 1)),
     (EINVAL, 0, "(7b) *(u64 *)(r10 -8) = r1", "BPF_STX uses reserved fields")),
    ("stx_src15", XDP, _p((0x7b, 10, 15, -8, 0)),
     (EINVAL, 0, "(7b) *(u64 *)(r10 -8) = r15", "R15 is invalid")),
    ("stx_dst15", XDP, _p((0x7b, 15, 1, -8, 0)),
     (EINVAL, 0, "(7b) *(u64 *)(r15 -8) = r1", "R15 is invalid")),
    ("st_src1", XDP, _p((0x7a, 10, 1, -8, 0)),
     (EINVAL, 0, "(7a) *(u64 *)(r10 -8) = 0", "BPF_ST uses reserved fields")),
    ("st_dst15", XDP, _p((0x7a, 15, 0, -8, 0)),
     (EINVAL, 0, "(7a) *(u64 *)(r15 -8) = 0", "R15 is invalid")),
    ("st_dst_uninit", XDP, _p((0x72, 4, 0, 0, 0)),
     (EACCES, 0, "(72) *(u8 *)(r4 +0) = 0", "R4 !read_ok")),
    # --- check_atomic: the operation, the size, then the registers
    ("atomic_bad_op", XDP, _p((0xdb, 10, 1, -8, 2)),
     (EINVAL, 0, "BUG_db", "BPF_ATOMIC uses invalid atomic opcode 02")),
    ("atomic_bad_op_src15", XDP, _p((0xdb, 10, 15, -8, 3)),
     (EINVAL, 0, "BUG_db", "BPF_ATOMIC uses invalid atomic opcode 03")),
    ("atomic_add_size_h", XDP, _p((0xcb, 10, 1, -8, 0)),
     (EINVAL, 0, "(cb) lock *(u16 *)(r10 -8) += r1", "invalid atomic operand size")),
    ("atomic_add_size_b_src15", XDP, _p((0xd3, 10, 15, -8, 0)),
     (EINVAL, 0, "(d3) lock *(u8 *)(r10 -8) += r15", "invalid atomic operand size")),
    ("atomic_add_src15", XDP, _p((0xdb, 10, 15, -8, 0)),
     (EINVAL, 0, "(db) lock *(u64 *)(r10 -8) += r15", "R15 is invalid")),
    ("atomic_add_dst15", XDP, _p((0xdb, 15, 1, -8, 0)),
     (EINVAL, 0, "(db) lock *(u64 *)(r15 -8) += r1", "R15 is invalid")),
    ("load_acq_dst10", XDP, _p((0x7a, 10, 0, -8, 0), (0xdb, 10, 10, -8, 0x100)),
     (EACCES, 1, "(db) r10 = load_acquire((u64 *)(r10 -8))", "frame pointer is read only")),
    ("load_acq_dst15", XDP, _p((0x7a, 10, 0, -8, 0), (0xdb, 15, 10, -8, 0x100)),
     (EINVAL, 1, "(db) r15 = load_acquire((u64 *)(r10 -8))", "R15 is invalid")),
    ("load_acq_src15", XDP, _p((0xdb, 0, 15, -8, 0x100)),
     (EINVAL, 0, "(db) r0 = load_acquire((u64 *)(r15 -8))", "R15 is invalid")),
    ("store_rel_dst15", XDP, _p((0xdb, 15, 1, -8, 0x110)),
     (EINVAL, 0, "(db) store_release((u64 *)(r15 -8), r1)", "R15 is invalid")),
    ("store_rel_h_ok", XDP, _p((0xb7, 1, 0, 0, 0), (0xcb, 10, 1, -8, 0x110)), None),
    ("xchg_src15", XDP, _p((0xdb, 10, 15, -8, 0xe1)),
     (EINVAL, 0, "(db) r15 = atomic64_xchg((u64 *)(r10 -8), r15)", "R15 is invalid")),
    ("cmpxchg_fetch_dst15", XDP, _p((0xc3, 15, 1, -8, 0xf1)),
     (EINVAL, 0, "(c3) r0 = atomic_cmpxchg((u32 *)(r15 -8), r0, r1)", "R15 is invalid")),
    # --- gotos and conditional jumps (these check dst before their reserved field)
    ("ja_imm1", XDP, _p((0x05, 0, 0, 0, 1)),
     (EINVAL, 0, "(05) goto pc+0", "BPF_JA uses reserved fields")),
    ("ja_src1", XDP, _p((0x05, 0, 1, 0, 0)),
     (EINVAL, 0, "(05) goto pc+0", "BPF_JA uses reserved fields")),
    ("ja_dst15", XDP, _p((0x05, 15, 0, 0, 0)),
     (EINVAL, 0, "(05) goto pc+0", "BPF_JA uses reserved fields")),
    ("gotol_off1", XDP, _p((0x06, 0, 0, 1, 0), (0xb7, 0, 0, 0, 0)),
     (EINVAL, 0, "(06) gotol pc+0", "BPF_JA uses reserved fields")),
    ("gotol_dst1", XDP, _p((0x06, 1, 0, 0, 0)),
     (EINVAL, 0, "(06) gotol pc+0", "BPF_JA uses reserved fields")),
    ("jeq_imm_src1", XDP, _p((0x15, 1, 1, 0, 0)),
     (EINVAL, 0, "(15) if r1 == 0x0 goto pc+0", "BPF_JMP/JMP32 uses reserved fields")),
    ("jeq_imm_src1_dst_uninit", XDP, _p((0x15, 5, 1, 0, 0)),
     (EACCES, 0, "(15) if r5 == 0x0 goto pc+0", "R5 !read_ok")),
    ("jeq_imm_dst15", XDP, _p((0x15, 15, 0, 0, 0)),
     (EINVAL, 0, "(15) if r15 == 0x0 goto pc+0", "R15 is invalid")),
    ("jeq_imm_src1_dst15", XDP, _p((0x15, 15, 1, 0, 0)),
     (EINVAL, 0, "(15) if r15 == 0x0 goto pc+0", "R15 is invalid")),
    ("jeq_reg_imm1", XDP, _p((0x1d, 1, 1, 0, 1)),
     (EINVAL, 0, "(1d) if r1 == r1 goto pc+0", "BPF_JMP/JMP32 uses reserved fields")),
    ("jeq_reg_src15", XDP, _p((0x1d, 1, 15, 0, 0)),
     (EINVAL, 0, "(1d) if r1 == r15 goto pc+0", "R15 is invalid")),
    ("jeq_reg_src_uninit", XDP, _p((0x1d, 1, 5, 0, 0)),
     (EACCES, 0, "(1d) if r1 == r5 goto pc+0", "R5 !read_ok")),
    ("jlt32_reg_imm1", XDP, _p((0xae, 1, 1, 0, 1)),
     (EINVAL, 0, "(ae) if w1 < w1 goto pc+0", "BPF_JMP/JMP32 uses reserved fields")),
    ("jne32_imm_src2", XDP, _p((0x56, 1, 2, 0, 0)),
     (EINVAL, 0, "(56) if w1 != 0x0 goto pc+0", "BPF_JMP/JMP32 uses reserved fields")),
    ("jset_reg_dst11", XDP, _p((0x4d, 11, 1, 0, 0)),
     (EINVAL, 0, "(4d) if r11 & r1 goto pc+0", "R11 is invalid")),
    ("may_goto_imm", XDP, _p((0xe5, 0, 0, 0, 5)),
     (EINVAL, 0, "(e5) may_goto pc+0", "invalid may_goto imm 5")),
    ("may_goto_src1", XDP, _p((0xe5, 0, 1, 0, 0)),
     (EINVAL, 0, "(e5) if r0 (null) 0x0 goto pc+0", "invalid may_goto imm 0")),
    ("may_goto_dst1", XDP, _p((0xe5, 1, 0, 0, 0)),
     (EINVAL, 0, "(e5) may_goto pc+0", "invalid may_goto imm 0")),
    # --- calls and exits
    ("call_src3", XDP, _p((0x85, 0, 3, 0, 7)),
     (EINVAL, 0, "(85) call unknown#7", "BPF_CALL uses reserved fields")),
    ("call_dst1", XDP, _p((0x85, 1, 0, 0, 7)),
     (EINVAL, 0, "(85) call bpf_get_prandom_u32#7", "BPF_CALL uses reserved fields")),
    ("call_off1", XDP, _p((0x85, 0, 0, 1, 7)),
     (EINVAL, 0, "(85) call bpf_get_prandom_u32#7", "BPF_CALL uses reserved fields")),
    ("call_src15", XDP, _p((0x85, 0, 15, 0, 7)),
     (EINVAL, 0, "(85) call unknown#7", "BPF_CALL uses reserved fields")),
    ("call_local_off1", XDP, _p((0x85, 0, 1, 1, 2), (0xb7, 0, 0, 0, 0), (0x95, 0, 0, 0, 0)),
     (EINVAL, 0, "(85) call pc+2", "BPF_CALL uses reserved fields")),
    ("callx", XDP, _p((0x8d, 1, 0, 0, 0)),
     (EINVAL, None, None, "unknown opcode 8d")),
    ("jmp32_call", XDP, _p((0x86, 0, 0, 0, 7)),
     (EINVAL, None, None, "unknown opcode 86")),
    ("jmp32_exit", XDP, [R0_0, (0x96, 0, 0, 0, 0)],
     (EINVAL, None, None, "last insn is not an exit or jmp")),
    ("jmp32_jcond", XDP, _p((0xe6, 0, 0, 0, 0)),
     (EINVAL, None, None, "unknown opcode e6")),
    ("exit_imm1", XDP, [R0_0, (0x95, 0, 0, 0, 1)],
     (EINVAL, 1, "(95) exit", "BPF_EXIT uses reserved fields")),
    ("exit_src1", XDP, [R0_0, (0x95, 0, 1, 0, 0)],
     (EINVAL, 1, "(95) exit", "BPF_EXIT uses reserved fields")),
    ("exit_dst1", XDP, [R0_0, (0x95, 1, 0, 0, 0)],
     (EINVAL, 1, "(95) exit", "BPF_EXIT uses reserved fields")),
    ("exit_off1_ok", XDP, [R0_0, (0x95, 0, 0, 1, 0)], None),
    # --- ld_imm64: the pair and src_reg before the walk, off and dst in it
    ("lddw_off1", XDP, _p((0x18, 0, 0, 1, 0), (0x00, 0, 0, 0, 0)),
     (EINVAL, 0, "(18) r0 = 0x0", "BPF_LD_IMM64 uses reserved fields")),
    ("lddw_dst15", XDP, _p((0x18, 15, 0, 0, 0), (0x00, 0, 0, 0, 0)),
     (EINVAL, 0, "(18) r15 = 0x0", "R15 is invalid")),
    ("lddw_dst10", XDP, _p((0x18, 10, 0, 0, 0), (0x00, 0, 0, 0, 0)),
     (EACCES, 0, "(18) r10 = 0x0", "frame pointer is read only")),
    ("lddw_src7", XDP, _p((0x18, 0, 7, 0, 0), (0x00, 0, 0, 0, 0)),
     (EINVAL, None, None, "unrecognized bpf_ld_imm64 insn")),
    ("lddw_src15", XDP, _p((0x18, 0, 15, 0, 0), (0x00, 0, 0, 0, 0)),
     (EINVAL, None, None, "unrecognized bpf_ld_imm64 insn")),
    ("lddw_second_code", XDP, _p((0x18, 0, 0, 0, 0), (0xb7, 0, 0, 0, 0)),
     (EINVAL, None, None, "invalid bpf_ld_imm64 insn")),
    ("lddw_second_dst", XDP, _p((0x18, 0, 0, 0, 0), (0x00, 1, 0, 0, 0)),
     (EINVAL, None, None, "invalid bpf_ld_imm64 insn")),
    ("lddw_second_off", XDP, _p((0x18, 0, 0, 0, 0), (0x00, 0, 0, 1, 0)),
     (EINVAL, None, None, "invalid bpf_ld_imm64 insn")),
    ("lddw_last", XDP, [R0_0, (0x18, 0, 0, 0, 0)],
     (EINVAL, None, None, "last insn is not an exit or jmp")),
    # --- LD_ABS / LD_IND: the program type, the reserved fields, R6, then LD_IND's src
    ("ldabs_dst1", SOCKET, _p((0xbf, 6, 1, 0, 0), (0x30, 1, 0, 0, 0)),
     (EINVAL, 1, "(30) r0 = *(u8 *)skb[0]", "BPF_LD_[ABS|IND] uses reserved fields")),
    ("ldabs_off1", SOCKET, _p((0xbf, 6, 1, 0, 0), (0x30, 0, 0, 1, 0)),
     (EINVAL, 1, "(30) r0 = *(u8 *)skb[0]", "BPF_LD_[ABS|IND] uses reserved fields")),
    ("ldabs_src1", SOCKET, _p((0xbf, 6, 1, 0, 0), (0x30, 0, 1, 0, 0)),
     (EINVAL, 1, "(30) r0 = *(u8 *)skb[0]", "BPF_LD_[ABS|IND] uses reserved fields")),
    ("ldind_src15", SOCKET, _p((0xbf, 6, 1, 0, 0), (0x50, 0, 15, 0, 0)),
     (EINVAL, 1, "(50) r0 = *(u8 *)skb[r15 + 0]", "R15 is invalid")),
    ("ldind_src_uninit", SOCKET, _p((0xbf, 6, 1, 0, 0), (0x50, 0, 5, 0, 0)),
     (EACCES, 1, "(50) r0 = *(u8 *)skb[r5 + 0]", "R5 !read_ok")),
    ("ldabs_dst1_r6_uninit", SOCKET, _p((0x30, 1, 0, 0, 0)),
     (EINVAL, 0, "(30) r0 = *(u8 *)skb[0]", "BPF_LD_[ABS|IND] uses reserved fields")),
    ("ldabs_r6_uninit", SOCKET, _p((0x30, 0, 0, 0, 0)),
     (EACCES, 0, "(30) r0 = *(u8 *)skb[0]", "R6 !read_ok")),
    ("ldabs_r6_scalar", SOCKET, _p((0xb7, 6, 0, 0, 0), (0x30, 0, 0, 0, 0)),
     (EINVAL, 1, "(30) r0 = *(u8 *)skb[0]", "at the time of BPF_LD_ABS|IND R6 != pointer to skb")),
    ("ldabs_dst1_xdp", XDP, _p((0x30, 1, 0, 0, 0)),
     (EINVAL, 0, "(30) r0 = *(u8 *)skb[0]",
      "BPF_LD_[ABS|IND] instructions not allowed for this program type")),
    ("ldabs_dw", SOCKET, _p((0xbf, 6, 1, 0, 0), (0x38, 0, 0, 0, 0)),
     (EINVAL, None, None, "unknown opcode 38")),
    # --- opcodes the kernel does not know (refused before the walk)
    ("unknown_00", XDP, _p((0x00, 0, 0, 0, 0)),
     (EINVAL, None, None, "unknown opcode 00")),
    ("unknown_ff", XDP, _p((0xff, 0, 0, 0, 0)),
     (EINVAL, None, None, "unknown opcode ff")),
    ("unknown_8c", XDP, _p((0x8c, 0, 0, 0, 0)),
     (EINVAL, None, None, "unknown opcode 8c")),
    ("unknown_0d", XDP, _p((0x0d, 0, 0, 0, 0)),
     (EINVAL, None, None, "unknown opcode 0d")),
    ("unknown_df", XDP, _p((0xdf, 0, 0, 0, 0)),
     (EINVAL, None, None, "unknown opcode df")),
    ("unknown_e4", XDP, _p((0xe4, 0, 0, 0, 0)),
     (EINVAL, None, None, "unknown opcode e4")),
    # --- a malformed instruction the walk never reaches is never refused
    ("dead_malformed", XDP, [R0_0, (0x15, 0, 0, 1, 0), (0xbf, 0, 15, 0, 9), EXIT], None),
    # --- more orders of checks
    ("jmp32_exit_mid", XDP, _p((0x96, 0, 0, 0, 0)),
     (EINVAL, None, None, "unknown opcode 96")),
    ("mov64_reg_src10_ok", XDP, _p((0xbf, 0, 10, 0, 0)), None),
    ("mov32_reg_off8_ok", XDP, _p((0xb4, 2, 0, 0, 7), (0xbc, 0, 2, 8, 0)), None),
    ("xchg_src10", XDP, _p((0x7a, 10, 0, -8, 0), (0xdb, 10, 10, -8, 0xe1)),
     (EACCES, 1, "(db) r10 = atomic64_xchg((u64 *)(r10 -8), r10)", "frame pointer is read only")),
    ("fetch_add_src10", XDP, _p((0x7a, 10, 0, -8, 0), (0xdb, 10, 10, -8, 1)),
     (EACCES, 1, "(db) r10 = atomic64_fetch_add((u64 *)(r10 -8), r10)",
      "frame pointer is read only")),
    ("cmpxchg_r0_uninit", XDP, _p((0x7a, 10, 0, -8, 0), (0xdb, 10, 1, -8, 0xf1)),
     (EACCES, 1, "(db) r0 = atomic64_cmpxchg((u64 *)(r10 -8), r0, r1)", "R0 !read_ok")),
    ("atomic_imm_neg", XDP, _p((0xdb, 10, 1, -8, -1)),
     (EINVAL, 0, "BUG_db", "BPF_ATOMIC uses invalid atomic opcode ffffffff")),
    ("ldind_src10", SOCKET, _p((0xbf, 6, 1, 0, 0), (0x50, 0, 10, 0, 0)), None),
    ("jeq_reg_dst10_src15", XDP, _p((0x1d, 10, 15, 0, 0)),
     (EINVAL, 0, "(1d) if r10 == r15 goto pc+0", "R15 is invalid")),
    ("ldabs_src1_r6_uninit", SOCKET, _p((0x30, 0, 1, 0, 0)),
     (EINVAL, 0, "(30) r0 = *(u8 *)skb[0]", "BPF_LD_[ABS|IND] uses reserved fields")),
    ("mov64_imm_src15_dst15", XDP, _p((0xb7, 15, 15, 0, 0)),
     (EINVAL, 0, "(b7) r15 = 0", "BPF_MOV uses reserved fields")),
    ("exit_off_neg_ok", XDP, [R0_0, (0x95, 0, 0, -5, 0)], None),
    ("lddw_dst11_imm2", XDP, _p((0x18, 11, 0, 0, 1), (0x00, 0, 0, 0, 2)),
     (EINVAL, 0, "(18) r11 = 0x200000001", "R11 is invalid")),
    ("call_helper_dst_and_src15", XDP, _p((0x85, 3, 15, 0, 7)),
     (EINVAL, 0, "(85) call unknown#7", "BPF_CALL uses reserved fields")),
    ("le_dst15_imm8", XDP, _p((0xd4, 15, 0, 0, 8)),
     (EINVAL, 0, "(d4) r15 = le8 r15", "BPF_END uses reserved fields")),
    ("add32_imm_dst10", XDP, _p((0x04, 10, 0, 0, 1)),
     (EACCES, 0, "(04) w10 += 1", "frame pointer is read only")),
    ("sub64_reg_src10_dst1", XDP, _p((0x1f, 1, 10, 0, 0)), None),
    ("stx_dst10_src10_ok", XDP, _p((0x7b, 10, 10, -8, 0)), None),
    ("ldx_dst10_src15", XDP, _p((0x79, 10, 15, 0, 0)),
     (EINVAL, 0, "(79) r10 = *(u64 *)(r15 +0)", "R15 is invalid")),
    ("st_imm_src15", XDP, _p((0x62, 10, 15, -4, 0)),
     (EINVAL, 0, "(62) *(u32 *)(r10 -4) = 0", "BPF_ST uses reserved fields")),
]

# The opcode bytes the kernel refuses as "unknown opcode XX" (bpf_opcode_in_insntable), each
# loaded with zero fields (an ld_imm64 with its second slot) before `r0 = 0; exit`; recorded
# on Linux 6.18.44-fc-v1300 as CASES.  LDX bytes of other modes than MEM and MEMSX are refused
# before it, as "BPF_LDX uses reserved fields".
UNKNOWN_OPCODES = frozenset({
    0x00, 0x02, 0x03, 0x08, 0x0a, 0x0b, 0x0d, 0x0e, 0x10, 0x12, 0x13, 0x1a,
    0x1b, 0x22, 0x23, 0x2a, 0x2b, 0x32, 0x33, 0x38, 0x3a, 0x3b, 0x42, 0x43,
    0x4a, 0x4b, 0x52, 0x53, 0x58, 0x5a, 0x5b, 0x60, 0x68, 0x70, 0x78, 0x80,
    0x82, 0x83, 0x86, 0x88, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x90, 0x92,
    0x93, 0x96, 0x98, 0x99, 0x9a, 0x9b, 0x9d, 0x9e, 0xa0, 0xa2, 0xa3, 0xa8,
    0xaa, 0xab, 0xb0, 0xb2, 0xb3, 0xb8, 0xba, 0xbb, 0xc0, 0xc2, 0xc8, 0xca,
    0xd0, 0xd2, 0xd8, 0xda, 0xdf, 0xe0, 0xe2, 0xe3, 0xe4, 0xe6, 0xe7, 0xe8,
    0xea, 0xeb, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6,
    0xf7, 0xf8, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
})

_SKIP = ("processed ", "verification time", "stack depth")
_INSN_LINE = re.compile(r"^(\d+): (\([0-9a-f]{2}\) .*|BUG_[0-9a-f]{2})$")


def answer(log: str, err: int) -> tuple:
    """A refusal as CASES records it, from a level-1 log: (errno, pc, insn line, message).

    The message is the log's last line before the summary; the refused instruction's line
    comes just before it when the walk refused (the kernel prints an atomic of an unknown
    operation as ``BUG_XX``, without the opcode).
    """
    lines = [line for line in log.splitlines() if line and not line.startswith(_SKIP)]
    message = lines[-1] if lines else ""
    found = _INSN_LINE.match(lines[-2]) if len(lines) > 1 else None
    name = errno.errorcode.get(err, str(err))
    if found is None:
        return (name, None, None, message)
    return (name, int(found.group(1)), found.group(2), message)


def _wire(slots) -> bytes:
    return b"".join(struct.pack("<BBhi", c, d | s << 4, o, i) for c, d, s, o, i in slots)


def _program(slots):
    """The instructions of ``slots``; the raw bytes when they hold a broken ld_imm64 pair
    (which no Instruction list can), as the verifier takes both."""
    data = _wire(slots)
    try:
        return decode(data, validate=False)
    except IsaError:
        return data


def _target(prog_type: int) -> Target:
    from pybpf.runtime.helpers import HELPERS
    from pybpf.runtime.progtypes import PROG_TYPES

    allowed = PROG_TYPES[prog_type].helpers
    return Target(prog_type, helpers={h: HELPERS[h].proto for h in allowed if h in HELPERS})


def pybpf_answer(slots, prog_type: int) -> tuple | None:
    verdict = verify(_program(slots), _target(prog_type), log_level=1)
    if verdict.ok:
        return None
    return answer(verdict.log, verdict.error.errno)


def kernel_answer(slots, prog_type: int) -> tuple | None:
    from pybpf.kernel import linux

    try:
        linux.prog_load(_wire(slots), prog_type, log_level=1).close()
    except KernelError as err:
        if err.errno == errno.EPERM or not err.log:
            raise
        return answer(err.log, err.errno)
    return None


@pytest.mark.parametrize(("name", "prog_type", "slots", "expected"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_pybpf_refuses_as_the_kernel(name, prog_type, slots, expected):
    assert pybpf_answer(slots, prog_type) == expected


@pytest.mark.parametrize(("name", "prog_type", "slots", "expected"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_recorded_answer_is_the_kernels(kernel_facts, name, prog_type, slots, expected):
    kernel_facts.check(f"verdict/{name}", expected, lambda: kernel_answer(slots, prog_type))


def _opcode_program(code: int) -> list[tuple[int, int, int, int, int]]:
    return _p((code, 0, 0, 0, 0), *([(0, 0, 0, 0, 0)] if code == 0x18 else []))


def _unknown(answer_: tuple | None, code: int) -> bool:
    return answer_ is not None and answer_[3] == f"unknown opcode {code:02x}"


def test_unknown_opcodes_are_the_kernels():
    ours = {code for code in range(256) if _unknown(pybpf_answer(_opcode_program(code), XDP),
                                                      code)}  # fmt: skip
    assert ours == UNKNOWN_OPCODES
    assert KNOWN_OPCODES.isdisjoint(UNKNOWN_OPCODES)


def test_recorded_unknown_opcodes_are_the_kernels(kernel_facts):
    def probe():
        return [code for code in range(256)
                if _unknown(kernel_answer(_opcode_program(code), XDP), code)]  # fmt: skip

    kernel_facts.check("opcodes/unknown", sorted(UNKNOWN_OPCODES), probe)


def test_every_refusal_is_einval_but_the_frame_pointer_and_the_state():
    """The encoding's refusals are EINVAL; only check_reg_arg's state checks are EACCES."""
    for name, _, _, expected in CASES:
        if expected is not None and expected[0] == EACCES:
            assert expected[3] == "frame pointer is read only" or \
                expected[3].endswith("!read_ok"), name  # fmt: skip


# --- random instruction words ---------------------------------------------------------------

_FIELDS = (0, 1, -1, 2, 8, 16, 32, 64, 0x100, 0x110, 0xE1, 0xF1, 0xD0, 0x7FFFFFFF, -0x80000000)
_imm = st.one_of(st.sampled_from(_FIELDS), st.integers(-(2**31), 2**31 - 1))
_off = st.one_of(st.sampled_from((0, 1, -1, 8, 16, 32)), st.integers(-0x8000, 0x7FFF))
_code = st.one_of(st.sampled_from(sorted(KNOWN_OPCODES)), st.integers(0, 255))


@st.composite
def _words(draw) -> Instruction:
    code, imm = draw(_code), draw(_imm)
    dst, src, off = draw(st.integers(0, 15)), draw(st.integers(0, 15)), draw(_off)
    if code & 0x07 in (0x05, 0x06):
        # no jump back further than to itself: a loop of random instructions may take the
        # verifier its whole budget of a million instructions (a loop onto itself is found
        # at once); calls may go back, their depth is bounded
        off = off if off >= -1 else -off - 1
        if code == 0x06:  # gotol jumps by imm
            imm = imm if imm >= -1 else -imm - 1
    imm2 = draw(_imm) if code == 0x18 else 0
    return Instruction(code, dst, src, off, imm, imm2)


@settings(max_examples=400)
@given(st.lists(_words(), min_size=1, max_size=4), st.sampled_from((XDP, SOCKET)),
       st.sampled_from((0, 1, 2)))  # fmt: skip
def test_random_instruction_words_never_make_an_internal_error(words, prog_type, level):
    insns = [*words, Instruction(*R0_0), Instruction(*EXIT)]
    verdict = verify(insns, _target(prog_type), log_level=level)
    if verdict.ok:
        return
    err = verdict.error
    assert err.errno != errno.EFAULT and "pybpf verifier bug" not in err.reason, err.reason
    assert err.reason.strip()
    if level:  # the refusal is the log's message (its last line before the summary)
        assert answer(verdict.log, err.errno)[3] == err.reason.splitlines()[-1]


@settings(max_examples=150)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 15), st.integers(0, 15),
                          _off, _imm), min_size=1, max_size=4))  # fmt: skip
def test_random_slots_never_make_an_internal_error(slots):
    """Raw slots, where an ld_imm64's second half may be anything (or missing)."""
    data = _wire([(c, d, s, o if o >= -1 or c & 0x07 not in (5, 6) else -o - 1, i)
                  for c, d, s, o, i in slots] + [R0_0, EXIT])  # fmt: skip
    verdict = verify(data, _target(XDP), log_level=1)
    if not verdict.ok:
        assert verdict.error.errno != errno.EFAULT, verdict.error.reason
