"""The JIT's hot path as IR: native map operations and helper fast paths.

Everything here is pure (IR text from descriptors) except the two small
native words at the end (:class:`NativeWord`), which hold state the emitted
code reads: the PRNG state and, when the runner provides one, the CPU.

**Map shapes.**  The runtime describes each map a program references with a
shape: :class:`ArrayShape` (values in one block per CPU, ``stride`` bytes
apart) or :class:`HashShape` (an open-addressing index over the elements'
value buffers, laid out as below).  ``pointer`` is the map's pointer, the
constant an ld_imm64 of the map yields, so the emitted code dispatches on r1
with a ``switch``: when r1 is a known constant (the usual
``r1 = map[id:N] ll`` right before the call) LLVM folds the switch away;
any other r1 (a map from a map of maps, a spilled pointer) takes the
trampoline, as do maps without a shape (LRU hashes, whose lookups must mark
recency in Python).

**The hash index** (kept in step by ``runtime/maps/hash.py``): a 32-byte
header at a fixed address (table address, slot mask, element count) and a
table of ``2**k`` slots of :func:`slot_size` bytes: value address (0 =
empty), 64-bit hash of the key, key bytes zero-padded to 8.  Linear probing;
deletion shifts later slots back, so a probe stops at the first empty slot;
the table is at most half full.  :func:`key_hash` is the hash, cheap in
Python and in IR: 8-byte little-endian words, zero-padded, each folded in
with a xor, a multiply and a xor-shift.

**Hooks** (:func:`native_calls`): the functions :class:`pybpf.jit.ir.IrOptions`
takes as ``native_calls``, and the module prelude they need:

* ``map_lookup_elem`` (1): arrays (bounds-checked u32 index, value address
  ``base + index * stride``; per-CPU arrays the running CPU's block) and
  hashes (the index probe; per-CPU hashes ``value + cpu * stride``);
* ``map_update_elem`` (2): an array element, or a hash key already present,
  written in place with flags ANY or EXIST (what the runtime does); NOEXIST
  of a present hash key is -EEXIST and EXIST of a missing one -ENOENT
  natively; everything else (a new hash key, other flags, a read-only
  array) goes through the trampoline;
* ``ktime_get_ns`` (5): ``clock_gettime(CLOCK_MONOTONIC)`` minus the
  kernel's boot time, the clock the runtime's helper reads;
* ``get_prandom_u32`` (7): xorshift64* over a native state word — a
  different sequence from the runtime's seeded ``random.Random`` (both are
  unpredictable to the program; neither is the kernel's);
* ``get_smp_processor_id`` (8): the CPU word, when the runner gives one;
* ``csum_diff`` (28): the runtime's x86-64 ``csum_partial`` arithmetic in
  IR, for sizes that are multiples of 4 below :data:`CSUM_MAX` (others take
  the trampoline).

Per-CPU maps and helper 8 need the CPU of the run: ``cpu_address`` names a
native u64 the runner sets before each run; without it those calls keep the
trampoline.  Key and value pointers are read natively only when they lie in
the run's stack or hot region (the context's windows); any other pointer takes
the trampoline, where Memory faults as the interpreter's helper does — so the
hooks are safe for unverified programs.  ``trusted=True`` (a verified program:
the verifier proved the pointers readable) drops that check.

:func:`repeat_driver_ir` is the native BPF_PROG_TEST_RUN loop: it calls a
compiled entry ``n`` times on one context and times the loop with
``clock_gettime``, as the kernel's ``bpf_test_run`` does with its timer.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pybpf.vm.memory import Region, native_buffer

if TYPE_CHECKING:  # the translator is needed only when hooks run (maps import this module)
    from pybpf.jit.ir import CallSite

M64 = (1 << 64) - 1

# --- the hash index: layout and hash (shared with runtime/maps/hash.py) --------------------------
HASH_SEED = 0x9E3779B97F4A7C15
HASH_MUL = 0xFF51AFD7ED558CCD
HEADER_SIZE = 32
HDR_TABLE, HDR_MASK, HDR_COUNT = 0, 8, 16
SLOT_VALUE, SLOT_HASH, SLOT_KEY = 0, 8, 16

# helper ids (enum bpf_func_id)
MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM = 1, 2
KTIME_GET_NS, GET_PRANDOM_U32, GET_SMP_PROCESSOR_ID = 5, 7, 8
CLOCK_MONOTONIC = 1
PRANDOM_MUL = 0x2545F4914F6CDD1D


def round8(n: int) -> int:
    """``round_up(n, 8)``."""
    return (n + 7) & ~7


def slot_size(key_size: int) -> int:
    """Bytes per index slot: value address, hash, key padded to 8."""
    return SLOT_KEY + round8(key_size)


def key_hash(key: bytes) -> int:
    """The index's 64-bit hash of ``key`` (what the emitted IR computes)."""
    h = HASH_SEED ^ len(key)
    for i in range(0, len(key), 8):
        h = ((h ^ int.from_bytes(key[i : i + 8], "little")) * HASH_MUL) & M64
        h ^= h >> 32
    return h


def _s64(value: int) -> int:
    value &= M64
    return value - (1 << 64) if value >> 63 else value


# --- shapes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArrayShape:
    """An array map as native code sees it (``bases``: one block per CPU, or one)."""

    pointer: int
    max_entries: int
    value_size: int
    stride: int
    bases: tuple[int, ...]
    writable: bool = True

    @property
    def percpu(self) -> bool:
        return len(self.bases) > 1


@dataclass(frozen=True)
class HashShape:
    """A hash map with a native index at ``header`` (see the module docstring)."""

    pointer: int
    header: int
    key_size: int
    value_size: int
    stride: int
    percpu: bool = False


Shape = ArrayShape | HashShape


# --- emitting -----------------------------------------------------------------------------------
class _Code:
    """Lines of IR with fresh names from the translator's counter."""

    def __init__(self, fresh: Callable[[], str]) -> None:
        self.fresh = fresh
        self.lines: list[str] = []

    def v(self, text: str) -> str:
        name = self.fresh()
        self.lines.append(f"  {name} = {text}")
        return name

    def emit(self, text: str) -> None:
        self.lines.append(f"  {text}")

    def label(self) -> str:
        return self.fresh().lstrip("%")

    def block(self, label: str) -> None:
        self.lines.append(f"{label}:")

    def ptr(self, address: str, offset: int = 0) -> str:
        if offset:
            address = self.v(f"add i64 {address}, {offset}")
        return self.v(f"inttoptr i64 {address} to ptr")

    def load(self, address: str, offset: int = 0, bits: int = 64) -> str:
        return self.v(f"load i{bits}, ptr {self.ptr(address, offset)}, align 1")

    def text(self) -> str:
        return "\n".join(self.lines)


def _key_words(c: _Code, key: str, key_size: int) -> list[str]:
    """The key's 8-byte words, the last zero-padded, as i64 values."""
    words = [c.load(key, off) for off in range(0, key_size - key_size % 8, 8)]
    tail, base = key_size % 8, key_size - key_size % 8
    if tail:
        word, shift = None, 0
        for width in (4, 2, 1):
            if tail - shift // 8 >= width:
                part = c.v(f"zext i{8 * width} {c.load(key, base + shift // 8, 8 * width)} to i64")
                if shift:
                    part = c.v(f"shl i64 {part}, {shift}")
                word = part if word is None else c.v(f"or i64 {word}, {part}")
                shift += 8 * width
        words.append(word)
    return words


def _hash_find(c: _Code, shape: HashShape, key: str) -> tuple[str, str, str]:
    """Emit the index probe for the key at ``key``.

    Returns (hit label, miss label, value address); the value address is
    defined in the hit block.  Control is left in neither block.
    """
    words = _key_words(c, key, shape.key_size)
    h = str(_s64(HASH_SEED ^ shape.key_size))
    for w in words:
        m = c.v(f"mul i64 {c.v(f'xor i64 {h}, {w}')}, {_s64(HASH_MUL)}")
        h = c.v(f"xor i64 {m}, {c.v(f'lshr i64 {m}, 32')}")
    header = str(shape.header)
    table, mask = c.load(header, HDR_TABLE), c.load(header, HDR_MASK)
    first = c.v(f"and i64 {h}, {mask}")
    start, probe, check, compare, step = (c.label() for _ in range(5))
    hit, miss = c.label(), c.label()
    c.emit(f"br label %{start}")
    c.block(start)
    c.emit(f"br label %{probe}")
    c.block(probe)
    index = c.fresh()
    following = c.fresh()
    c.emit(f"{index} = phi i64 [ {first}, %{start} ], [ {following}, %{step} ]")
    slot = c.v(f"add i64 {table}, {c.v(f'mul i64 {index}, {slot_size(shape.key_size)}')}")
    value = c.load(slot, SLOT_VALUE)
    c.emit(f"br i1 {c.v(f'icmp eq i64 {value}, 0')}, label %{miss}, label %{check}")
    c.block(check)
    same = c.v(f"icmp eq i64 {c.load(slot, SLOT_HASH)}, {h}")
    c.emit(f"br i1 {same}, label %{compare}, label %{step}")
    c.block(compare)
    equal = "true"
    for j, w in enumerate(words):
        eq = c.v(f"icmp eq i64 {c.load(slot, SLOT_KEY + 8 * j)}, {w}")
        equal = eq if equal == "true" else c.v(f"and i1 {equal}, {eq}")
    c.emit(f"br i1 {equal}, label %{hit}, label %{step}")
    c.block(step)
    c.lines.append(f"  {following} = and i64 {c.v(f'add i64 {index}, 1')}, {mask}")
    c.emit(f"br label %{probe}")
    return hit, miss, value


def _cpu_offset(c: _Code, cpu: str | None, stride: int) -> str:
    """``cpu * stride``: the running CPU's value inside a per-CPU element."""
    return c.v(f"mul i64 {cpu}, {stride}")


def _array_index(c: _Code, shape: ArrayShape, key: str) -> tuple[str, str]:
    """(index, in-range i1) of the u32 key at ``key``."""
    index = c.v(f"zext i32 {c.load(key, 0, 32)} to i64")
    return index, c.v(f"icmp ult i64 {index}, {shape.max_entries}")


def _array_base(c: _Code, shape: ArrayShape, cpu: str | None) -> str:
    if not shape.percpu:
        return str(shape.bases[0])
    base = str(shape.bases[0])
    for n, other in enumerate(shape.bases[1:], 1):  # a select chain: ncpus is small
        is_n = c.v(f"icmp eq i64 {cpu}, {n}")
        base = c.v(f"select i1 {is_n}, i64 {other}, i64 {base}")
    return base


def _lookup(c: _Code, shape: Shape, args: Sequence[str], cpu: str | None,
            slow: str) -> tuple[str, str]:  # fmt: skip
    """Emit a native lookup; (result, label of the block that ends with it)."""
    key = args[1]
    if isinstance(shape, ArrayShape):
        index, ok = _array_index(c, shape, key)
        address = c.v(f"add i64 {_array_base(c, shape, cpu)}, "
                      f"{c.v(f'mul i64 {index}, {shape.stride}')}")  # fmt: skip
        result = c.v(f"select i1 {ok}, i64 {address}, i64 0")
        end = c.label()
        c.emit(f"br label %{end}")
        c.block(end)
        return result, end
    hit, miss, value = _hash_find(c, shape, key)
    end = c.label()
    c.block(hit)
    found = value if not shape.percpu else c.v(
        f"add i64 {value}, {_cpu_offset(c, cpu, shape.stride)}")  # fmt: skip
    c.emit(f"br label %{end}")
    c.block(miss)
    c.emit(f"br label %{end}")
    c.block(end)
    result = c.v(f"phi i64 [ {found}, %{hit} ], [ 0, %{miss} ]")
    return result, end


def _memcpy(c: _Code, dst: str, src: str, size: int) -> None:
    c.emit(f"call void @llvm.memcpy.p0.p0.i64(ptr {c.ptr(dst)}, ptr {c.ptr(src)}, "
           f"i64 {size}, i1 false)")  # fmt: skip


def _update(c: _Code, shape: Shape, args: Sequence[str], cpu: str | None,
            slow: str) -> tuple[str, str]:  # fmt: skip
    """Emit a native update where the runtime's result is certain; else branch to ``slow``."""
    key, value, flags = args[1], args[2], args[3]
    done = c.label()
    if isinstance(shape, ArrayShape):
        index, ok = _array_index(c, shape, key)
        plain = c.v(f"icmp eq i64 {c.v(f'and i64 {flags}, -3')}, 0")  # ANY or EXIST
        go = c.v(f"and i1 {ok}, {plain}")
        write = c.label()
        c.emit(f"br i1 {go}, label %{write}, label %{slow}")
        c.block(write)
        dst = c.v(f"add i64 {_array_base(c, shape, cpu)}, "
                  f"{c.v(f'mul i64 {index}, {shape.stride}')}")  # fmt: skip
        _memcpy(c, dst, value, shape.value_size)
        c.emit(f"br label %{done}")
        c.block(done)
        return "0", done
    hit, miss, slot_value = _hash_find(c, shape, key)
    write, exists, absent = c.label(), c.label(), c.label()
    c.block(hit)
    c.emit(f"switch i64 {flags}, label %{slow} [ i64 0, label %{write} i64 2, label %{write} "
           f"i64 1, label %{exists} ]")  # fmt: skip
    c.block(write)
    dst = slot_value if not shape.percpu else c.v(
        f"add i64 {slot_value}, {_cpu_offset(c, cpu, shape.stride)}")  # fmt: skip
    _memcpy(c, dst, value, shape.value_size)
    c.emit(f"br label %{done}")
    c.block(exists)
    c.emit(f"br label %{done}")
    c.block(miss)
    is_exist = c.v(f"icmp eq i64 {flags}, 2")
    c.emit(f"br i1 {is_exist}, label %{absent}, label %{slow}")
    c.block(absent)
    c.emit(f"br label %{done}")
    c.block(done)
    result = c.v(f"phi i64 [ 0, %{write} ], [ {-errno.EEXIST}, %{exists} ], "
                 f"[ {-errno.ENOENT}, %{absent} ]")  # fmt: skip
    return result, done


def _trampoline(c: _Code, site: CallSite) -> str:
    """The helper's callout, by id in ``Slot.AUX`` (HELPER_X).

    HELPER_X rather than HELPER because a runner binds HELPER callouts only
    for the ids the translator saw without a hook.
    """
    from pybpf.jit.ir import Callout, Slot, callout_id

    aux = c.v(f"getelementptr i64, ptr {site.ctx}, i64 {int(Slot.AUX)}")
    c.emit(f"store i64 {site.helper_id}, ptr {aux}")
    fn = c.v(f"getelementptr i64, ptr {site.ctx}, i64 {int(Slot.TRAMPOLINE)}")
    target = c.v(f"inttoptr i64 {c.v(f'load i64, ptr {fn}')} to ptr")
    ident = _s64(callout_id(Callout.HELPER_X, site.pc))
    args = ", ".join(f"i64 {a}" for a in site.args)
    return c.v(f"call i64 {target}(ptr {site.ctx}, i64 {ident}, {args})")


def _guard(c: _Code, site: CallSite, pointers: Sequence[tuple[str, int | str]],
           slow: str) -> None:  # fmt: skip
    """Branch to ``slow`` unless each (pointer, size) lies in the stack or the hot region.

    Those are the two windows the run context names; anything else (or a
    crossing) goes through the trampoline, whose Memory checks fault exactly
    as the interpreter's helper would.  A size may be an IR value (at most
    one stack's size, which the caller checked); size 0 always passes.
    """
    from pybpf.isa import MAX_CALL_FRAMES, STACK_SIZE
    from pybpf.jit.ir import Slot

    def word(slot) -> str:
        return c.v(f"load i64, ptr {c.v(f'getelementptr i64, ptr {site.ctx}, i64 {int(slot)}')}")

    total = MAX_CALL_FRAMES * STACK_SIZE
    low = c.v(f"sub i64 {word(Slot.STACK_TOP)}, {total}")
    hot, hot_size = word(Slot.HOT_BASE), word(Slot.HOT_SIZE)
    ok = "true"
    for pointer, size in pointers:
        limit = total - size if isinstance(size, int) else c.v(f"sub i64 {total}, {size}")
        in_stack = c.v(f"icmp ule i64 {c.v(f'sub i64 {pointer}, {low}')}, {limit}")
        rel = c.v(f"sub i64 {pointer}, {hot}")
        fits = c.v(f"icmp uge i64 {hot_size}, {size}")
        room = c.v(f"icmp ule i64 {rel}, {c.v(f'sub i64 {hot_size}, {size}')}")
        good = c.v(f"or i1 {in_stack}, {c.v(f'and i1 {fits}, {room}')}")
        if not isinstance(size, int):
            good = c.v(f"or i1 {good}, {c.v(f'icmp eq i64 {size}, 0')}")
        ok = good if ok == "true" else c.v(f"and i1 {ok}, {good}")
    cont = c.label()
    c.emit(f"br i1 {ok}, label %{cont}, label %{slow}")
    c.block(cont)


def _map_hook(shapes: Sequence[Shape], op, cpu_address: int | None, trusted: bool):
    """A hook dispatching on r1 over ``shapes`` with ``op`` per map, trampoline otherwise."""
    usable = [s for s in shapes if cpu_address is not None or not s.percpu]
    if op is _update:
        usable = [s for s in usable if not isinstance(s, ArrayShape) or s.writable]
    if not usable:
        return None

    def pointers(shape: Shape, args: Sequence[str]) -> list[tuple[str, int]]:
        key_size = 4 if isinstance(shape, ArrayShape) else shape.key_size
        out = [(args[1], key_size)]
        if op is _update:
            out.append((args[2], shape.value_size))
        return out

    def hook(site: CallSite) -> str:
        c = _Code(site.fresh)
        cpu = c.load(str(cpu_address)) if cpu_address is not None else None
        slow, join = c.label(), c.label()
        labels = [c.label() for _ in usable]
        cases = " ".join(f"i64 {_s64(s.pointer)}, label %{lab}"
                         for s, lab in zip(usable, labels, strict=True))  # fmt: skip
        c.emit(f"switch i64 {site.args[0]}, label %{slow} [ {cases} ]")
        incoming = []
        for shape, lab in zip(usable, labels, strict=True):
            c.block(lab)
            if not trusted:
                _guard(c, site, pointers(shape, site.args), slow)
            incoming.append(op(c, shape, site.args, cpu, slow))
            c.emit(f"br label %{join}")
        c.block(slow)
        result = _trampoline(c, site)
        after = c.label()
        c.emit(f"br label %{after}")
        c.block(after)
        incoming.append((result, after))
        c.emit(f"br label %{join}")
        c.block(join)
        phis = ", ".join(f"[ {v}, %{lab} ]" for v, lab in incoming)
        c.emit(f"{site.result} = phi i64 {phis}")
        site.may_abort = True
        return c.text()

    return hook


def _ktime_hook(boot_ns: int):
    def hook(site: CallSite) -> str:
        c = _Code(site.fresh)
        # the call site may sit in a loop: give the timespec back (an alloca
        # outside the entry block would grow the native stack per call)
        mark = c.v("call ptr @llvm.stacksave.p0()")
        ts = c.v("alloca [2 x i64], align 8")
        c.v(f"call i32 @clock_gettime(i32 {CLOCK_MONOTONIC}, ptr {ts})")
        sec = c.v(f"load i64, ptr {ts}, align 8")
        nsp = c.v(f"getelementptr i64, ptr {ts}, i64 1")
        ns = c.v(f"add i64 {c.v(f'mul i64 {sec}, 1000000000')}, {c.v(f'load i64, ptr {nsp}')}")
        c.emit(f"call void @llvm.stackrestore.p0(ptr {mark})")
        c.emit(f"{site.result} = sub i64 {ns}, {_s64(boot_ns)}")
        return c.text()

    return hook


def _prandom_hook(state_address: int):
    def hook(site: CallSite) -> str:
        c = _Code(site.fresh)
        p = c.ptr(str(state_address))
        x = c.v(f"load i64, ptr {p}, align 8")
        for op, n in (("lshr", 12), ("shl", 25), ("lshr", 27)):
            x = c.v(f"xor i64 {x}, {c.v(f'{op} i64 {x}, {n}')}")
        c.emit(f"store i64 {x}, ptr {p}, align 8")
        c.emit(f"{site.result} = lshr i64 {c.v(f'mul i64 {x}, {_s64(PRANDOM_MUL)}')}, 32")
        return c.text()

    return hook


def _cpu_hook(cpu_address: int):
    def hook(site: CallSite) -> str:
        c = _Code(site.fresh)
        c.emit(f"{site.result} = load i64, ptr {c.ptr(str(cpu_address))}, align 8")
        return c.text()

    return hook


PRELUDE = "\n".join([
    "declare i32 @clock_gettime(i32, ptr)",
    "declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)",
    "declare ptr @llvm.stacksave.p0()",
    "declare void @llvm.stackrestore.p0(ptr)",
])  # fmt: skip
"""Module-level declarations the hooks' IR calls (add once to the module)."""


CSUM_DIFF = 28
CSUM_MAX = 1024  # buffers this large or larger (the verifier bounds them) take the trampoline
CSUM_PARTIAL = "pybpf.csum_partial"
_CSUM_PARTIAL_IR = f"""define internal i64 @{CSUM_PARTIAL}(i64 %p, i64 %n, i64 %seed) {{
entry:
  %full = and i64 %n, -8
  br label %words
words:
  %i = phi i64 [ 0, %entry ], [ %i2, %body ]
  %s = phi i64 [ %seed, %entry ], [ %s3, %body ]
  %more = icmp ult i64 %i, %full
  br i1 %more, label %body, label %tail
body:
  %a = add i64 %p, %i
  %ap = inttoptr i64 %a to ptr
  %w = load i64, ptr %ap, align 1
  %s1 = add i64 %s, %w
  %c = icmp ult i64 %s1, %w
  %cz = zext i1 %c to i64
  %s3 = add i64 %s1, %cz
  %i2 = add i64 %i, 8
  br label %words
tail:
  %rem = sub i64 %n, %full
  %tb = add i64 %p, %full
  br label %bytes
bytes:
  %j = phi i64 [ 0, %tail ], [ %j2, %byte ]
  %x = phi i64 [ 0, %tail ], [ %x2, %byte ]
  %bm = icmp ult i64 %j, %rem
  br i1 %bm, label %byte, label %done
byte:
  %ba = add i64 %tb, %j
  %bp = inttoptr i64 %ba to ptr
  %b = load i8, ptr %bp, align 1
  %bz = zext i8 %b to i64
  %sh = shl i64 %j, 3
  %bs = shl i64 %bz, %sh
  %x2 = or i64 %x, %bs
  %j2 = add i64 %j, 1
  br label %bytes
done:
  %t1 = add i64 %s, %x
  %tc = icmp ult i64 %t1, %x
  %tz = zext i1 %tc to i64
  %t = add i64 %t1, %tz
  %hi = lshr i64 %t, 32
  %lo = shl i64 %t, 32
  %rot = or i64 %hi, %lo
  %u = add i64 %t, %rot
  %r = lshr i64 %u, 32
  ret i64 %r
}}"""
"""x86-64 ``csum_partial`` (as the runtime's): 8-byte words summed with
end-around carry, the last one zero-padded, then folded to 32 bits."""


def _csum_hook(trusted: bool):
    """bpf_csum_diff natively for sizes that are multiples of 4 below :data:`CSUM_MAX`."""

    def hook(site: CallSite) -> str:
        c = _Code(site.fresh)
        src, dst = site.args[0], site.args[2]
        fs, ts = (c.v(f"and i64 {a}, 4294967295") for a in (site.args[1], site.args[3]))
        seed = c.v(f"and i64 {site.args[4]}, 4294967295")
        slow, join, fast = c.label(), c.label(), c.label()
        either = c.v(f"or i64 {fs}, {ts}")
        odd = c.v(f"icmp ne i64 {c.v(f'and i64 {either}, 3')}, 0")
        big = c.v(f"icmp uge i64 {either}, {CSUM_MAX}")
        c.emit(f"br i1 {c.v(f'or i1 {odd}, {big}')}, label %{slow}, label %{fast}")
        c.block(fast)
        if not trusted:
            _guard(c, site, [(src, fs), (dst, ts)], slow)
        to_sum = c.v(f"call i64 @{CSUM_PARTIAL}(i64 {dst}, i64 {ts}, i64 {seed})")
        has_to = c.v(f"icmp ne i64 {ts}, 0")
        from_seed = c.v(f"select i1 {has_to}, i64 0, i64 {c.v(f'xor i64 {seed}, 4294967295')}")
        from_sum = c.v(f"call i64 @{CSUM_PARTIAL}(i64 {src}, i64 {fs}, i64 {from_seed})")
        neg = c.v(f"xor i64 {from_sum}, 4294967295")
        added = c.v(f"and i64 {c.v(f'add i64 {to_sum}, {neg}')}, 4294967295")
        carry = c.v(f"zext i1 {c.v(f'icmp ult i64 {added}, {neg}')} to i64")
        both = c.v(f"and i64 {c.v(f'add i64 {added}, {carry}')}, 4294967295")
        with_from = c.v(f"select i1 {has_to}, i64 {both}, i64 {neg}")
        ret = c.v(f"select i1 {c.v(f'icmp eq i64 {fs}, 0')}, i64 {to_sum}, i64 {with_from}")
        low = c.v(f"and i64 {c.v(f'shl i64 {ret}, 16')}, 4294967295")
        rot = c.v(f"or i64 {c.v(f'lshr i64 {ret}, 16')}, {low}")
        total = c.v(f"and i64 {c.v(f'add i64 {ret}, {rot}')}, 4294967295")
        folded = c.v(f"lshr i64 {total}, 16")
        done, end = c.label(), c.label()
        c.emit(f"br label %{done}")
        c.block(done)
        c.emit(f"br label %{join}")
        c.block(slow)
        result = _trampoline(c, site)
        c.emit(f"br label %{end}")
        c.block(end)
        c.emit(f"br label %{join}")
        c.block(join)
        c.emit(f"{site.result} = phi i64 [ {folded}, %{done} ], [ {result}, %{end} ]")
        site.may_abort = True
        return c.text()

    return hook


def native_calls(shapes: Sequence[Shape] = (), *, trusted: bool = False,
                 boot_ns: int | None = None, prandom_address: int | None = None,
                 cpu_address: int | None = None) -> tuple[dict[int, Callable], str]:  # fmt: skip
    """The ``native_calls`` hooks for a program over ``shapes``, and the prelude.

    ``trusted`` skips the pointer window check (verified programs only).
    ``boot_ns`` enables ktime_get_ns (the kernel's ``boot``), ``prandom_address``
    get_prandom_u32 (a :class:`NativeWord` seeded non-zero), ``cpu_address``
    per-CPU maps and get_smp_processor_id (a :class:`NativeWord` the runner
    sets to the run's CPU).  Helpers left out keep the trampoline.
    """
    hooks: dict[int, Callable] = {}
    for helper, op in ((MAP_LOOKUP_ELEM, _lookup), (MAP_UPDATE_ELEM, _update)):
        hook = _map_hook(shapes, op, cpu_address, trusted)
        if hook is not None:
            hooks[helper] = hook
    if boot_ns is not None:
        hooks[KTIME_GET_NS] = _ktime_hook(boot_ns)
    if prandom_address is not None:
        hooks[GET_PRANDOM_U32] = _prandom_hook(prandom_address)
    if cpu_address is not None:
        hooks[GET_SMP_PROCESSOR_ID] = _cpu_hook(cpu_address)
    hooks[CSUM_DIFF] = _csum_hook(trusted)
    return hooks, PRELUDE + "\n" + _CSUM_PARTIAL_IR


# --- the native test-run loop -------------------------------------------------------------------
REPEAT_DRIVER = "pybpf_repeat"
REPEAT_ARGS = 6  # u64 words: entry, ctx, n, out status, out calls, out duration


def repeat_driver_ir(name: str = REPEAT_DRIVER) -> str:
    """A module with ``i64 name(ptr args)``, args being :data:`REPEAT_ARGS` u64 words.

    Reads ``entry``, ``ctx`` and ``n`` from words 0..2, calls ``i64
    entry(ptr ctx)`` ``max(n, 1)`` times, stopping after the first non-zero
    status, and writes the last status, the calls made and the loop's
    duration in ns (``CLOCK_MONOTONIC``) to words 3..5; returns the status.
    The driver has the signature of a compiled program's entry, so it is
    called the same way.  The entry must reset its own per-run state (the
    translator's ``bpf_entry`` reads its inputs from the context every call).
    """
    return f"""declare i32 @clock_gettime(i32, ptr)

define internal i64 @{name}.now() {{
  %ts = alloca [2 x i64], align 8
  %rc = call i32 @clock_gettime(i32 {CLOCK_MONOTONIC}, ptr %ts)
  %sec = load i64, ptr %ts, align 8
  %nsp = getelementptr i64, ptr %ts, i64 1
  %ns = load i64, ptr %nsp, align 8
  %secns = mul i64 %sec, 1000000000
  %t = add i64 %secns, %ns
  ret i64 %t
}}

define i64 @{name}(ptr %args) {{
start:
  %entryw = load i64, ptr %args, align 8
  %entry = inttoptr i64 %entryw to ptr
  %ctxp = getelementptr i64, ptr %args, i64 1
  %ctxw = load i64, ptr %ctxp, align 8
  %ctx = inttoptr i64 %ctxw to ptr
  %np = getelementptr i64, ptr %args, i64 2
  %n = load i64, ptr %np, align 8
  %few = icmp ult i64 %n, 1
  %runs = select i1 %few, i64 1, i64 %n
  %t0 = call i64 @{name}.now()
  br label %loop
loop:
  %i = phi i64 [ 0, %start ], [ %next, %cont ]
  %status = call i64 %entry(ptr %ctx)
  %next = add i64 %i, 1
  %bad = icmp ne i64 %status, 0
  br i1 %bad, label %stop, label %cont
cont:
  %more = icmp ult i64 %next, %runs
  br i1 %more, label %loop, label %stop
stop:
  %t1 = call i64 @{name}.now()
  %dt = sub i64 %t1, %t0
  %o0 = getelementptr i64, ptr %args, i64 3
  store i64 %status, ptr %o0, align 8
  %o1 = getelementptr i64, ptr %args, i64 4
  store i64 %next, ptr %o1, align 8
  %o2 = getelementptr i64, ptr %args, i64 5
  store i64 %dt, ptr %o2, align 8
  ret i64 %status
}}
"""


@dataclass(frozen=True)
class RepeatResult:
    """What one native repeat loop did: last status, calls made, total ns."""

    status: int
    calls: int
    duration_ns: int


class RepeatDriver:
    """The compiled :func:`repeat_driver_ir`, shared by every program of a process.

    :meth:`run` calls ``entry(ctx)`` ``n`` times natively; the caller sets up
    ``ctx`` as for a single call (and serves its callouts: the entry's
    trampoline runs inside this loop, on this thread).
    """

    _shared: RepeatDriver | None = None

    def __init__(self) -> None:
        from pybpf.jit import native  # compiling needs LLVM; importing this module does not

        self._native = native.compile_ir(repeat_driver_ir())
        self._call = self._native.entry(REPEAT_DRIVER)
        self._args = Region("repeat arguments", native_buffer(8 * REPEAT_ARGS))

    @classmethod
    def shared(cls) -> RepeatDriver:
        """The process's driver, compiled on first use."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def run(self, entry: int, ctx: int, n: int) -> RepeatResult:
        """Call the function at ``entry`` on ``ctx`` up to ``max(n, 1)`` times."""
        view = self._args.view
        for i, word in enumerate((entry, ctx, n)):
            view[8 * i : 8 * i + 8] = (word & M64).to_bytes(8, "little")
        self._call(self._args.base)
        status, calls, ns = (int.from_bytes(view[8 * i : 8 * i + 8], "little")
                             for i in (3, 4, 5))  # fmt: skip
        return RepeatResult(status, calls, ns)


# --- native words -------------------------------------------------------------------------------
class NativeWord:
    """One u64 at a fixed host address that generated code reads (and may write).

    Used for the PRNG state and the current CPU.  Keep the object alive as
    long as code that embeds :attr:`address` may run.
    """

    def __init__(self, value: int = 0, name: str = "native word") -> None:
        self._region = Region(name, native_buffer(8))
        self.address = self._region.base
        self.value = value

    @property
    def value(self) -> int:
        return int.from_bytes(self._region.view[:8], "little")

    @value.setter
    def value(self, value: int) -> None:
        self._region.view[:8] = (value & M64).to_bytes(8, "little")
