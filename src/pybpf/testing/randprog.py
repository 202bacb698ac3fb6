"""Seeded random eBPF programs that the kernel verifier accepts and pybpf runs.

For differential testing (:mod:`pybpf.testing.kernel_diff`): one *body* of
random straight-line code with short forward conditional jumps is wrapped
twice, identically but for a 9-instruction prologue:

* the **kernel** variant is an XDP program: it reads ``ctx->data`` and
  ``ctx->data_end`` (u32 fields of ``struct xdp_md`` the verifier rewrites
  into 64-bit pointer loads), checks ``data + 128 <= data_end`` and spills
  ``data`` to ``r10 - 8``;
* the **interpreter** variant gets ``r1`` = packet address and ``r2`` =
  length (``Interpreter.run(memory=packet)``) and computes the same ``data``
  and ``data_end`` from them.  (The interpreter cannot be handed an xdp_md
  whose 32-bit fields hold 64-bit host addresses.)

Both prologues are 9 instructions, so the body and the epilogue sit at the
same pcs in both programs; jumps never leave the body except to the
epilogue's first instruction, so they are pc-relative within it anyway.

Body (``length`` logical instructions, lddw counting once):

1. every register r0..r9 gets a random constant (lddw, mov64 or mov32);
2. the six 8-byte stack slots ``r10-96 .. r10-136`` get written (stxdw or
   stdw), so no later load reads uninitialised stack;
3. random instructions: ALU and ALU64 add sub mul div mod or and lsh rsh
   arsh xor mov in K and X forms, neg, sdiv/smod (off=1), movsx (off
   8/16/32), le/be 16/32/64, bswap16/32/64, lddw, st/stx/ldx of 1/2/4/8
   bytes and ldxsb/sh/sw at naturally aligned offsets inside the slots,
   stack atomics (add/or/and/xor with and without fetch, xchg, cmpxchg;
   32 and 64 bit) and the 11 conditional jumps (JMP and JMP32, K and X)
   forward by 0..8 instructions.

Verifier rules respected: every register is written before any read and
r10 only ever appears as a memory base; shift immediates are below the
operand width; div/mod immediates are non-zero (register divisors may be
zero at run time, which eBPF defines); stack accesses are naturally
aligned (the verifier insists on aligned stack access); nothing jumps
backward, into an lddw, or out of the program.  Every instruction is valid
in any register state, so both sides of every branch verify.

Epilogue (identical in both variants): r0..r9 are saved to ``r10-16 ..
r10-88``, the packet pointer is reloaded from ``r10-8``, the packet is
overwritten with r0..r9 (bytes 0-79) and the six slots (bytes 80-127), and
r0 becomes a 64-bit xor-multiply hash of those 16 words folded to 32 bits
(``r0 ^= r0 >> 32; w0 = w0``), because XDP's test-run retval is a u32.
A run is therefore compared on its 32-bit return value *and* on all 128
bytes of the packet, i.e. on every register and slot bit-exactly.

Kernel vs RFC 9669 (checked against Linux 6.18 x86-64 JIT by
tests/test_kernel_diff.py and 10,000 programs of kernel_diff); the
instruction *semantics* agree:

* division and modulo by zero: dst = 0, resp. dst unchanged (ALU: its low
  32 bits, zero-extended) -- the kernel patches the JIT's div with a check;
* ``INT_MIN s/ -1`` wraps to INT_MIN and ``INT_MIN s% -1`` is 0, for 32 and
  64 bits, K and X forms -- the verifier rewrites a -1 divisor so that x86's
  idiv never traps;
* signed modulo takes the dividend's sign (C truncation), as the RFC says;
* register shift amounts are masked to 63 / 31 (x86 does it in hardware);
* movsx, bswap, le/be, and 32-bit atomic fetch / xchg / cmpxchg results are
  zero-extended into the 64-bit register (cmpxchg's r0 too).
Where the two *do* differ is validity, not semantics: the kernel rejects
``div``/``mod`` by an immediate 0 and immediate shifts >= the width, which
the RFC defines; the generator never emits those.

One disagreement is a Linux verifier bug, not a semantic choice (seed 6177
of length 100 hits it; tests/test_kernel_diff.py has a 9-instruction
reproducer): precision backtracking treats ``rX = atomic_fetch_*(fp-N, rX)``
as if rX kept its own value instead of being filled from the stack slot, so
the slot is never marked precise, a later state is pruned as equivalent
although a branch depends on that slot, and code that does run is removed
as dead.  RFC 9669 (and the interpreter) are right.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pybpf.isa import Alu, AtomicOp, Class, Instruction, Jmp, Mode, Size, Source

PACKET_SIZE = 128
PROLOGUE_LEN = 9
NUM_SLOTS = 6
PKT_SLOT = -8  # r10 - 8 holds the packet pointer (never touched by the body)
SAVE_BASE = -16  # r0..r9 saved at SAVE_BASE - 8*i by the epilogue
SLOT_BASE = -96  # body slot j is [SLOT_BASE - 8*j, SLOT_BASE - 8*j + 8)
FOLD_SEED = 0x243F6A8885A308D3
FOLD_MUL = -0x61C8864F  # 0x9E3779B1 as s32; sign-extended, an odd 64-bit multiplier
BAIL_R0 = 0xBAD  # the kernel prologue's return when the packet is too short

_R10 = 10
_M64 = (1 << 64) - 1
_SIZES = (Size.B, Size.H, Size.W, Size.DW)
_NBYTES = {Size.B: 1, Size.H: 2, Size.W: 4, Size.DW: 8}
_ALU_OPS = (Alu.ADD, Alu.SUB, Alu.MUL, Alu.DIV, Alu.MOD, Alu.OR, Alu.AND, Alu.LSH, Alu.RSH,
            Alu.ARSH, Alu.XOR, Alu.MOV)  # fmt: skip
_SHIFTS = (Alu.LSH, Alu.RSH, Alu.ARSH)
_JMP_OPS = (Jmp.JEQ, Jmp.JNE, Jmp.JGT, Jmp.JGE, Jmp.JLT, Jmp.JLE, Jmp.JSET, Jmp.JSGT, Jmp.JSGE,
            Jmp.JSLT, Jmp.JSLE)  # fmt: skip
_ATOMIC_OPS = (AtomicOp.ADD, AtomicOp.OR, AtomicOp.AND, AtomicOp.XOR,
               AtomicOp.ADD | AtomicOp.FETCH, AtomicOp.OR | AtomicOp.FETCH,
               AtomicOp.AND | AtomicOp.FETCH, AtomicOp.XOR | AtomicOp.FETCH,
               AtomicOp.XCHG, AtomicOp.CMPXCHG)  # fmt: skip
_SPECIAL32 = (0, 1, -1, 2, -2, 3, 7, -7, 8, 31, 32, 33, 63, 64, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000,
              0xFFFF, 0x7FFFFFFF, -0x80000000, -0x8000, -0x80)  # fmt: skip
_SPECIAL64 = (0, 1, _M64, 1 << 63, (1 << 63) - 1, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF,
              1 << 32, 0xFFFFFFFF00000000, 0xFFFFFFFF80000000, 0x8000, 0x80,
              0xFFFFFFFFFFFF8000, 0x0123456789ABCDEF)  # fmt: skip

# (category, weight) for step 3
_MIX = (("alu", 34), ("neg", 2), ("sdivmod", 5), ("movsx", 4), ("end", 5), ("lddw", 2),
        ("st", 4), ("stx", 8), ("ldx", 8), ("ldxsx", 4), ("atomic", 9), ("jump", 11))  # fmt: skip
_CATS = tuple(c for c, _ in _MIX)
_WEIGHTS = tuple(w for _, w in _MIX)
MAX_JUMP = 8  # a jump skips 0..MAX_JUMP body instructions


@dataclass(frozen=True)
class Op:
    """One body instruction; a conditional jump names its ``target`` body index.

    ``target`` may equal the body's length (the epilogue's first
    instruction).  The jump's ``off`` is computed when the body is assembled,
    in slots, so lddw (two slots) never breaks a target.
    """

    insn: Instruction
    target: int | None = None


@dataclass(frozen=True)
class RandomProgram:
    """A body and its two runnable wrappings (see the module docstring).

    ``kernel`` is the XDP program, ``interp`` the interpreter's; both have
    the body at pcs ``[body_start, body_end)``.  ``seed`` is None for a
    hand-written body.
    """

    seed: int | None
    body: tuple[Op, ...]
    kernel: tuple[Instruction, ...]
    interp: tuple[Instruction, ...]
    body_start: int
    body_end: int


# --- instruction builders ----------------------------------------------------


def _alu(cls: int, op: int, dst: int, *, src: int | None = None, imm: int = 0,
         off: int = 0) -> Instruction:  # fmt: skip
    if src is None:
        return Instruction(cls | op | Source.K, dst, 0, off, imm)
    return Instruction(cls | op | Source.X, dst, src, off, 0)


def mov64(dst: int, src: int | None = None, imm: int = 0) -> Instruction:
    """``dst = src`` or ``dst = (s64) imm``."""
    return _alu(Class.ALU64, Alu.MOV, dst, src=src, imm=imm)


def alu64(op: int, dst: int, src: int | None = None, imm: int = 0) -> Instruction:
    """A 64-bit ALU instruction (K form when ``src`` is None)."""
    return _alu(Class.ALU64, op, dst, src=src, imm=imm)


def alu32(op: int, dst: int, src: int | None = None, imm: int = 0) -> Instruction:
    """A 32-bit ALU instruction (K form when ``src`` is None)."""
    return _alu(Class.ALU, op, dst, src=src, imm=imm)


def ldx(size: Size, dst: int, src: int, off: int, *, signed: bool = False) -> Instruction:
    """``dst = *(size *)(src + off)``; ``signed`` makes it ldxs (MEMSX)."""
    mode = Mode.MEMSX if signed else Mode.MEM
    return Instruction(Class.LDX | mode | size, dst, src, off, 0)


def stx(size: Size, dst: int, off: int, src: int) -> Instruction:
    """``*(size *)(dst + off) = src``."""
    return Instruction(Class.STX | Mode.MEM | size, dst, src, off, 0)


def st(size: Size, dst: int, off: int, imm: int) -> Instruction:
    """``*(size *)(dst + off) = imm``."""
    return Instruction(Class.ST | Mode.MEM | size, dst, 0, off, imm)


def atomic(size: Size, op: int, dst: int, off: int, src: int) -> Instruction:
    """A BPF_ATOMIC instruction on ``*(size *)(dst + off)``."""
    return Instruction(Class.STX | Mode.ATOMIC | size, dst, src, off, int(op))


def jump(cls: int, op: int, dst: int, src: int | None = None, imm: int = 0,
         off: int = 0) -> Instruction:  # fmt: skip
    """A conditional jump (K form when ``src`` is None)."""
    if src is None:
        return Instruction(cls | op | Source.K, dst, 0, off, imm)
    return Instruction(cls | op | Source.X, dst, src, off, 0)


EXIT = Instruction(Class.JMP | Jmp.EXIT)


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value


def slot_offset(slot: int, size: int = 8, index: int = 0) -> int:
    """r10-relative offset of the ``index``-th ``size``-byte piece of body slot ``slot``."""
    return SLOT_BASE - 8 * slot + size * index


# --- prologues and epilogue -------------------------------------------------


def kernel_prologue() -> list[Instruction]:
    """XDP: r2 = ctx->data, r3 = ctx->data_end; bail unless 128 bytes; spill r2."""
    return [
        mov64(0, imm=0),  # padding to the interpreter prologue's length
        ldx(Size.W, 2, 1, 0),
        ldx(Size.W, 3, 1, 4),
        *_prologue_tail(),
    ]


def interp_prologue() -> list[Instruction]:
    """Interpreter: r1 = packet, r2 = length -> r2 = data, r3 = data_end; as above."""
    return [mov64(3, 1), alu64(Alu.ADD, 3, 2), mov64(2, 1), *_prologue_tail()]


def _prologue_tail() -> list[Instruction]:
    return [
        mov64(4, 2),
        alu64(Alu.ADD, 4, imm=PACKET_SIZE),
        jump(Class.JMP, Jmp.JLE, 4, 3, off=2),
        mov64(0, imm=BAIL_R0),
        EXIT,
        stx(Size.DW, _R10, PKT_SLOT, 2),
    ]


def _words() -> list[int]:
    """r10 offsets of the 16 words the epilogue reports: r0..r9 saved, then the slots."""
    return [SAVE_BASE - 8 * i for i in range(10)] + [slot_offset(j) for j in range(NUM_SLOTS)]


def epilogue() -> list[Instruction]:
    """Save r0-r9, copy them and the slots to the packet, hash them into w0, exit."""
    out = [stx(Size.DW, _R10, SAVE_BASE - 8 * i, i) for i in range(10)]
    out.append(ldx(Size.DW, 1, _R10, PKT_SLOT))
    for k, off in enumerate(_words()):
        out += [ldx(Size.DW, 2, _R10, off), stx(Size.DW, 1, 8 * k, 2)]
    out.append(Instruction.lddw(0, FOLD_SEED))
    for off in _words():
        out += [
            ldx(Size.DW, 2, _R10, off),
            alu64(Alu.XOR, 0, 2),
            alu64(Alu.MUL, 0, imm=FOLD_MUL),
            mov64(3, 0),
            alu64(Alu.RSH, 3, imm=29),
            alu64(Alu.XOR, 0, 3),
        ]
    out += [mov64(3, 0), alu64(Alu.RSH, 3, imm=32), alu64(Alu.XOR, 0, 3), alu32(Alu.MOV, 0, 0),
            EXIT]  # fmt: skip
    return out


def expected_retval(words: Sequence[int]) -> int:
    """The epilogue's hash of the 16 reported words, computed in Python."""
    r0 = FOLD_SEED
    for w in words:
        r0 = ((r0 ^ w) * (FOLD_MUL & _M64)) & _M64
        r0 ^= r0 >> 29
    return (r0 ^ (r0 >> 32)) & 0xFFFFFFFF


def packet_words(data: bytes | bytearray) -> dict[str, int]:
    """Name the 16 words of a packet the epilogue wrote: r0..r9, slot0..slot5."""
    names = [f"r{i}" for i in range(10)] + [f"slot{j}" for j in range(NUM_SLOTS)]
    values = struct.unpack_from("<16Q", bytes(data[:PACKET_SIZE]).ljust(PACKET_SIZE, b"\0"))
    return dict(zip(names, values, strict=True))


# --- assembly -----------------------------------------------------------------


def assemble(body: Sequence[Op], seed: int | None = None) -> RandomProgram:
    """Wrap ``body`` into the kernel and interpreter programs.

    Raises ``ValueError`` for a jump whose target is not a later body index
    (or the body's end).
    """
    body = tuple(body)
    starts, pc = [], 0
    for op in body:
        starts.append(pc)
        pc += op.insn.slots
    starts.append(pc)
    insns: list[Instruction] = []
    for i, op in enumerate(body):
        insn = op.insn
        if op.target is not None:
            if not i < op.target <= len(body):
                raise ValueError(
                    f"body op {i}: jump target {op.target} is not in ({i}, {len(body)}]"
                )
            insn = dataclasses.replace(insn, off=starts[op.target] - starts[i] - 1)
        insns.append(insn)
    tail = insns + epilogue()
    kernel, interp = kernel_prologue(), interp_prologue()
    if len(kernel) != PROLOGUE_LEN or len(interp) != PROLOGUE_LEN:  # pragma: no cover
        raise RuntimeError("prologue lengths drifted")
    return RandomProgram(seed, body, tuple(kernel + tail), tuple(interp + tail),
                         PROLOGUE_LEN, PROLOGUE_LEN + pc)  # fmt: skip


def truncate(program: RandomProgram, n: int) -> RandomProgram:
    """The program with only the first ``n`` body ops; jumps past them go to the epilogue.

    Used to shrink a mismatch to its first diverging instruction.  Any
    prefix that keeps the 16-op initialisation (:data:`INIT_LEN`; a
    shorter ``n`` is raised to it) is itself a valid program.
    """
    n = max(min(INIT_LEN, len(program.body)), min(n, len(program.body)))
    body = [
        Op(op.insn, None if op.target is None else min(op.target, n)) for op in program.body[:n]
    ]
    return assemble(body, program.seed)


def zero_init() -> list[Op]:
    """Body preamble for hand-written tests: r0..r9 = 0 and every slot = 0."""
    ops = [Op(mov64(r, imm=0)) for r in range(10)]
    ops += [Op(st(Size.DW, _R10, slot_offset(j), 0)) for j in range(NUM_SLOTS)]
    return ops


# --- random generation --------------------------------------------------------


class _Gen:
    def __init__(self, rng: random.Random, length: int) -> None:
        self.rng = rng
        self.length = length
        self.ops: list[Op] = []

    def reg(self) -> int:
        return self.rng.randrange(10)

    def imm32(self) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.45:
            return rng.choice(_SPECIAL32)
        if roll < 0.7:
            return rng.randint(-64, 64)
        return rng.randint(-(1 << 31), (1 << 31) - 1)

    def imm64(self) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.35:
            return rng.choice(_SPECIAL64)
        if roll < 0.55:
            return self.imm32() & _M64
        return rng.getrandbits(64)

    def emit(self, insn: Instruction, target: int | None = None) -> None:
        self.ops.append(Op(insn, target))

    # step 1 and 2
    def init(self) -> None:
        rng = self.rng
        for r in range(10):
            kind = rng.random()
            if kind < 0.5:
                self.emit(Instruction.lddw(r, self.imm64()))
            elif kind < 0.8:
                self.emit(mov64(r, imm=self.imm32()))
            else:
                self.emit(alu32(Alu.MOV, r, imm=self.imm32()))
        for j in range(NUM_SLOTS):
            if rng.random() < 0.6:
                self.emit(stx(Size.DW, _R10, slot_offset(j), self.reg()))
            else:
                self.emit(st(Size.DW, _R10, slot_offset(j), self.imm32()))

    # step 3
    def random_op(self) -> None:
        cat = self.rng.choices(_CATS, _WEIGHTS)[0]
        getattr(self, "op_" + cat)()

    def cls(self) -> int:
        return Class.ALU64 if self.rng.random() < 0.5 else Class.ALU

    def op_alu(self) -> None:
        rng, cls, op, dst = self.rng, self.cls(), self.rng.choice(_ALU_OPS), self.reg()
        if rng.random() < 0.5:
            self.emit(_alu(cls, op, dst, src=self.reg()))
            return
        width = 64 if cls == Class.ALU64 else 32
        if op in _SHIFTS:
            imm = rng.choice((0, 1, width - 1, width // 2, rng.randrange(width)))
        else:
            imm = self.imm32()
            if op in (Alu.DIV, Alu.MOD) and imm == 0:
                imm = rng.choice((1, -1, 3, -0x80000000))
        self.emit(_alu(cls, op, dst, imm=imm))

    def op_neg(self) -> None:
        self.emit(Instruction(self.cls() | Alu.NEG, self.reg()))

    def op_sdivmod(self) -> None:
        rng, cls, op = self.rng, self.cls(), self.rng.choice((Alu.DIV, Alu.MOD))
        if rng.random() < 0.5:
            self.emit(_alu(cls, op, self.reg(), src=self.reg(), off=1))
        else:
            imm = rng.choice((-1, -1, 1, 2, -2, 3, -3, 7, -0x80000000, 0x7FFFFFFF, self.imm32()))
            self.emit(_alu(cls, op, self.reg(), imm=imm or 5, off=1))

    def op_movsx(self) -> None:
        cls = self.cls()
        bits = self.rng.choice((8, 16, 32) if cls == Class.ALU64 else (8, 16))
        self.emit(_alu(cls, Alu.MOV, self.reg(), src=self.reg(), off=bits))

    def op_end(self) -> None:
        rng = self.rng
        bits = rng.choice((16, 32, 64))
        code = rng.choice((Class.ALU | Alu.END | Source.K, Class.ALU | Alu.END | Source.X,
                           Class.ALU64 | Alu.END | Source.K))  # fmt: skip
        self.emit(Instruction(code, self.reg(), 0, 0, bits))

    def op_lddw(self) -> None:
        self.emit(Instruction.lddw(self.reg(), self.imm64()))

    def where(self, size: Size) -> int:
        n = _NBYTES[size]
        return slot_offset(self.rng.randrange(NUM_SLOTS), n, self.rng.randrange(8 // n))

    def op_st(self) -> None:
        size = self.rng.choice(_SIZES)
        self.emit(st(size, _R10, self.where(size), self.imm32()))

    def op_stx(self) -> None:
        size = self.rng.choice(_SIZES)
        self.emit(stx(size, _R10, self.where(size), self.reg()))

    def op_ldx(self) -> None:
        size = self.rng.choice(_SIZES)
        self.emit(ldx(size, self.reg(), _R10, self.where(size)))

    def op_ldxsx(self) -> None:
        size = self.rng.choice((Size.B, Size.H, Size.W))
        self.emit(ldx(size, self.reg(), _R10, self.where(size), signed=True))

    def op_atomic(self) -> None:
        size = self.rng.choice((Size.W, Size.DW))
        self.emit(atomic(size, self.rng.choice(_ATOMIC_OPS), _R10, self.where(size), self.reg()))

    def op_jump(self) -> None:
        rng = self.rng
        cls = Class.JMP if rng.random() < 0.5 else Class.JMP32
        op = rng.choice(_JMP_OPS)
        i = len(self.ops)
        target = min(i + 1 + rng.randint(0, MAX_JUMP), self.length)
        if rng.random() < 0.5:
            self.emit(jump(cls, op, self.reg(), self.reg()), target)
        else:
            self.emit(jump(cls, op, self.reg(), imm=self.imm32()), target)


def generate(seed: int, length: int = 100) -> RandomProgram:
    """The random program of ``seed`` whose body has ``length`` instructions.

    ``length`` counts logical body instructions (an lddw counts once; the
    9-instruction prologue and the ~145-instruction epilogue come on top)
    and must be at least 16, the register and slot initialisation.  The
    same ``(seed, length)`` always gives the same program.
    """
    if length < 16:
        raise ValueError(f"length {length} < 16: the initialisation alone takes 16")
    gen = _Gen(random.Random(seed), length)
    gen.init()
    while len(gen.ops) < length:
        gen.random_op()
    return assemble(gen.ops, seed)


INIT_LEN = 16  # body ops of the initialisation (step 1 and 2)

__all__ = [
    "BAIL_R0", "EXIT", "INIT_LEN", "NUM_SLOTS", "PACKET_SIZE", "PROLOGUE_LEN", "Op",
    "RandomProgram", "alu32", "alu64", "assemble", "atomic", "epilogue", "expected_retval",
    "generate", "interp_prologue", "jump", "kernel_prologue", "ldx", "mov64", "packet_words",
    "slot_offset", "st", "stx", "truncate", "zero_init",
]  # fmt: skip
