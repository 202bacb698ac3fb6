"""The JIT's hot path as IR: native map operations and helper fast paths.

The IR is generated purely from descriptors (map shapes, addresses).  The
native pieces are few and at the end: :class:`NativeWord` (the PRNG state and
the process's current-CPU word the emitted code reads), the precompiled hot
functions (below), :class:`RepeatDriver` and :class:`ProgramHooks` (all of it
for one loaded program).

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

**Hot functions.**  The hash probe and update (one function per key and
value size), ktime, prandom and ``csum_partial`` are IR functions.  A
program compiled at level 2 or 3 gets them in its own module, where LLVM
inlines them; one compiled at a fast level (whose code generator does not
optimise) calls them by address, compiled once per process at level 2 and
kept in the JIT's on-disk compile cache.

:func:`repeat_driver_ir` is the native BPF_PROG_TEST_RUN loop: it calls a
compiled entry ``n`` times on one context and times the loop with
``clock_gettime`` (the thread's CPU time), as the kernel's ``bpf_test_run``
does with its timer.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from pybpf.isa import MAX_CALL_FRAMES, STACK_SIZE
from pybpf.jit.abi import Callout, Slot, callout_id
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
CLOCK_THREAD_CPUTIME_ID = 3
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


def _hash_find(c: _Code, key_size: int, header: str, key: str) -> tuple[str, str, str]:
    """Emit the index probe for the key at ``key`` in the index whose header is at ``header``.

    Returns (hit label, miss label, value address); the value address is
    defined in the hit block.  Control is left in neither block.
    """
    words = _key_words(c, key, key_size)
    h = str(_s64(HASH_SEED ^ key_size))
    for w in words:
        m = c.v(f"mul i64 {c.v(f'xor i64 {h}, {w}')}, {_s64(HASH_MUL)}")
        h = c.v(f"xor i64 {m}, {c.v(f'lshr i64 {m}, 32')}")
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
    slot = c.v(f"add i64 {table}, {c.v(f'mul i64 {index}, {slot_size(key_size)}')}")
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


def _memcpy(c: _Code, dst: str, src: str, size: int) -> None:
    c.emit(f"call void @llvm.memcpy.p0.p0.i64(ptr {c.ptr(dst)}, ptr {c.ptr(src)}, "
           f"i64 {size}, i1 false)")  # fmt: skip


def _function(name: str, params: str, body: Callable[[_Code], str]) -> str:
    """``define internal i64 @name(params)`` returning what ``body`` emits."""
    counter = iter(range(1 << 30))
    c = _Code(lambda: f"%v{next(counter)}")
    c.block("entry")
    c.emit(f"ret i64 {body(c)}")
    return f"define internal i64 @{name}({params}) {{\n{c.text()}\n}}"


MAP_SLOW = 1
"""What an update function returns when the trampoline must decide (never a
real result: updates give 0 or -errno)."""


def _hash_lookup_ir(name: str, key_size: int) -> str:
    """``i64 @name(i64 header, i64 key)``: the element's value address, or 0."""

    def body(c: _Code) -> str:
        hit, miss, value = _hash_find(c, key_size, "%header", "%key")
        end = c.label()
        c.block(hit)
        c.emit(f"br label %{end}")
        c.block(miss)
        c.emit(f"br label %{end}")
        c.block(end)
        return c.v(f"phi i64 [ {value}, %{hit} ], [ 0, %{miss} ]")

    return _function(name, "i64 %header, i64 %key", body)


def _hash_update_ir(name: str, key_size: int, value_size: int) -> str:
    """``i64 @name(i64 header, i64 key, i64 value, i64 flags, i64 offset)``.

    Writes a present key's value in place (at ``offset``: the CPU's copy of a
    per-CPU element) for flags ANY and EXIST; -EEXIST for NOEXIST of a
    present key, -ENOENT for EXIST of a missing one; :data:`MAP_SLOW` for the
    rest (a new key, other flags).
    """

    def body(c: _Code) -> str:
        hit, miss, found = _hash_find(c, key_size, "%header", "%key")
        write, exists, absent, slow, done = (c.label() for _ in range(5))
        c.block(hit)
        c.emit(f"switch i64 %flags, label %{slow} [ i64 0, label %{write} i64 2, "
               f"label %{write} i64 1, label %{exists} ]")  # fmt: skip
        c.block(write)
        _memcpy(c, c.v(f"add i64 {found}, %offset"), "%value", value_size)
        c.emit(f"br label %{done}")
        c.block(exists)
        c.emit(f"br label %{done}")
        c.block(miss)
        c.emit(f"br i1 {c.v('icmp eq i64 %flags, 2')}, label %{absent}, label %{slow}")
        c.block(absent)
        c.emit(f"br label %{done}")
        c.block(slow)
        c.emit(f"br label %{done}")
        c.block(done)
        return c.v(f"phi i64 [ 0, %{write} ], [ {-errno.EEXIST}, %{exists} ], "
                   f"[ {-errno.ENOENT}, %{absent} ], [ {MAP_SLOW}, %{slow} ]")  # fmt: skip

    return _function(name, "i64 %header, i64 %key, i64 %value, i64 %flags, i64 %offset", body)


def _array_index(c: _Code, shape: ArrayShape, key: str) -> tuple[str, str]:
    """(index, in-range i1) of the u32 key at ``key``."""
    index = c.v(f"zext i32 {c.load(key, 0, 32)} to i64")
    return index, c.v(f"icmp ult i64 {index}, {shape.max_entries}")


def _array_element(c: _Code, shape: ArrayShape, index: str, cpu: str) -> str:
    base = str(shape.bases[0])
    for n, other in enumerate(shape.bases[1:], 1):  # a select chain: ncpus is small
        is_n = c.v(f"icmp eq i64 {cpu}, {n}")
        base = c.v(f"select i1 {is_n}, i64 {other}, i64 {base}")
    return c.v(f"add i64 {base}, {c.v(f'mul i64 {index}, {shape.stride}')}")


# --- the hot functions: in the module, or precompiled ---------------------------------------------
class _Library:
    """The hot functions a program's hooks call, by name.

    ``inline`` True (programs compiled at level 2 or 3): their text goes into
    the program's module (internal, so LLVM inlines them).  False (the fast
    levels, whose code generator does not optimise): :meth:`finish` compiles
    the ones this process lacks at level 2, in one module, and calls go
    through their addresses.  Compiled functions are kept for the process and
    their object code in the JIT's on-disk compile cache, so a later process
    maps them without running LLVM.
    """

    _compiled: ClassVar[dict[str, int]] = {}  # text -> address (modules kept in _modules)
    _modules: ClassVar[list[object]] = []

    def __init__(self, inline: bool) -> None:
        self.inline = inline
        self.texts: dict[str, str] = {}
        self.addresses: dict[str, int] = {}

    def add(self, name: str, text: str) -> None:
        self.texts.setdefault(name, text)

    def finish(self) -> None:
        """Compile (or fetch) what :meth:`add` named, unless inlining."""
        if self.inline:
            return
        missing = {n: t for n, t in self.texts.items() if t not in self._compiled}
        if missing:
            module = _library_module(missing)
            _Library._modules.append(module)
            for name, text in missing.items():
                self._compiled[text] = module.address(name)
        self.addresses = {n: self._compiled[t] for n, t in self.texts.items()}

    def callee(self, c: _Code, name: str) -> str:
        """The callee operand for a call to ``name`` from emitted code."""
        if self.inline:
            return f"@{name}"
        return c.v(f"inttoptr i64 {self.addresses[name]} to ptr")

    def prelude(self) -> str:
        return "\n".join(self.texts.values()) if self.inline else ""


def _library_module(texts: dict[str, str]):
    """A native module defining ``texts`` (public), from the compile cache when it has it."""
    import hashlib

    from pybpf.errors import JitError
    from pybpf.jit import cache, native  # compiling needs LLVM; importing this module does not

    source = "\n".join([PRELUDE, *(t.replace("define internal", "define", 1)
                                   for t in texts.values())])  # fmt: skip
    key = hashlib.sha256(f"pybpf hot functions|{cache.toolchain()}|{source}".encode()).hexdigest()
    store = cache.default_cache()
    data = store.get(key) if store is not None else None
    if data is not None:
        try:
            return native.load_object(data)
        except JitError:
            pass  # a foreign or damaged object: compile again
    module = native.compile_ir(source, opt_level=2)
    if store is not None:
        store.put(key, module.object_code)
    return module


@dataclass(frozen=True)
class _Site:
    """A helper call as seen inside a dispatch function: its parameters by name."""

    helper_id: int
    ctx: str = "%ctx"
    args: tuple[str, ...] = ("%a1", "%a2", "%a3", "%a4", "%a5")
    ident: str = "%ident"


def _trampoline(c: _Code, site: _Site) -> str:
    """The helper's callout, by id in ``Slot.AUX`` (HELPER_X).

    HELPER_X rather than HELPER because a runner binds HELPER callouts only
    for the ids the translator saw without a hook.
    """
    aux = c.v(f"getelementptr i64, ptr {site.ctx}, i64 {int(Slot.AUX)}")
    c.emit(f"store i64 {site.helper_id}, ptr {aux}")
    fn = c.v(f"getelementptr i64, ptr {site.ctx}, i64 {int(Slot.TRAMPOLINE)}")
    target = c.v(f"inttoptr i64 {c.v(f'load i64, ptr {fn}')} to ptr")
    args = ", ".join(f"i64 {a}" for a in site.args)
    return c.v(f"call i64 {target}(ptr {site.ctx}, i64 {site.ident}, {args})")


def _dispatch_function(name: str, helper_id: int, body: Callable[[_Code, _Site, str], str]) -> str:
    """``i64 @name(ptr ctx, i64 a1..a5, i64 ident)``: ``body``'s native path, else the trampoline.

    ``body(c, site, slow) -> result`` emits the native path, leaving control in
    a block that returns ``result``, or branching to ``slow``, which calls the
    trampoline with callout id ``ident``.  One such function per module
    serves every call site (a fast level compiles it once; levels 2 and 3
    inline it).
    """
    counter = iter(range(1 << 30))
    c = _Code(lambda: f"%v{next(counter)}")
    site = _Site(helper_id)
    c.block("entry")
    c.emit(f"ret i64 {body(c, site, 'slow')}")
    c.block("slow")
    c.emit(f"ret i64 {_trampoline(c, site)}")
    params = ", ".join(["ptr %ctx", *(f"i64 {a}" for a in site.args), "i64 %ident"])
    return f"define internal i64 @{name}({params}) {{\n{c.text()}\n}}"


def _call_dispatch(name: str):
    """The hook calling dispatch function ``name`` from a site (may abort: a callout)."""

    def hook(site: CallSite) -> str:
        c = _Code(site.fresh)
        ident = _s64(callout_id(Callout.HELPER_X, site.pc))
        args = ", ".join(f"i64 {a}" for a in site.args)
        c.emit(f"{site.result} = call i64 @{name}(ptr {site.ctx}, {args}, i64 {ident})")
        site.may_abort = True
        return c.text()

    return hook


def _guard(c: _Code, site: _Site, pointers: Sequence[tuple[str, int | str]],
           slow: str) -> None:  # fmt: skip
    """Branch to ``slow`` unless each (pointer, size) lies in the stack or the hot region.

    Those are the two windows the run context names; anything else (or a
    crossing) goes through the trampoline, whose Memory checks fault exactly
    as the interpreter's helper would.  A size may be an IR value (at most
    one stack's size, which the caller checked); size 0 always passes.
    """
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


def _switch(c: _Code, site: _Site, slow: str, cpu_address: int | None,
            cases: Sequence[tuple[int, Callable]]) -> str:  # fmt: skip
    """Switch on r1 over ``cases`` (map pointer, emitter); other pointers go to ``slow``.

    An emitter ``emit(c, cpu, slow) -> result`` leaves control in a block
    that falls through to the join with ``result``, or branches to ``slow``.
    """
    cpu = c.load(str(cpu_address)) if cpu_address is not None else "0"
    join = c.label()
    labels = [c.label() for _ in cases]
    arms = " ".join(f"i64 {_s64(p)}, label %{lab}" for (p, _), lab in zip(cases, labels,
                                                                           strict=True))
    c.emit(f"switch i64 {site.args[0]}, label %{slow} [ {arms} ]")
    incoming = []
    for (_, emit), lab in zip(cases, labels, strict=True):
        c.block(lab)
        result = emit(c, cpu, slow)
        done = c.label()
        c.emit(f"br label %{done}")
        c.block(done)
        incoming.append((result, done))
        c.emit(f"br label %{join}")
    c.block(join)
    return c.v("phi i64 " + ", ".join(f"[ {v}, %{lab} ]" for v, lab in incoming))


def _map_library(shapes: Sequence[Shape], lib: _Library, wanted: set[int]) -> None:
    """Add the hash functions the map hooks over ``shapes`` call to ``lib``."""
    for s in shapes:
        if isinstance(s, HashShape) and MAP_LOOKUP_ELEM in wanted:
            name = f"pybpf.hash.lookup.k{s.key_size}"
            lib.add(name, _hash_lookup_ir(name, s.key_size))
        if isinstance(s, HashShape) and MAP_UPDATE_ELEM in wanted:
            name = f"pybpf.hash.update.k{s.key_size}.v{s.value_size}"
            lib.add(name, _hash_update_ir(name, s.key_size, s.value_size))


def _map_hooks(shapes: Sequence[Shape], lib: _Library, cpu_address: int | None,
               trusted: bool, wanted: set[int], functions: list[str]) -> dict[int, Callable]:
    """Hooks for map_lookup_elem and map_update_elem (those in ``wanted``) over ``shapes``.

    Their dispatch functions (which embed the maps' addresses) are appended to
    ``functions``, for the program's module; ``lib`` must hold the hash
    functions already (:func:`_map_library`).
    """
    usable = [s for s in shapes if cpu_address is not None or not s.percpu]

    def lookup(shape: Shape, site: _Site) -> Callable:
        key = site.args[1]

        def emit(c: _Code, cpu: str, slow: str) -> str:
            if not trusted:
                size = shape.key_size if isinstance(shape, HashShape) else 4
                _guard(c, site, [(key, size)], slow)
            if isinstance(shape, ArrayShape):
                index, ok = _array_index(c, shape, key)
                address = _array_element(c, shape, index, cpu)
                return c.v(f"select i1 {ok}, i64 {address}, i64 0")
            fn = lib.callee(c, f"pybpf.hash.lookup.k{shape.key_size}")
            found = c.v(f"call i64 {fn}(i64 {shape.header}, i64 {key})")
            if not shape.percpu:
                return found
            mine = c.v(f"add i64 {found}, {c.v(f'mul i64 {cpu}, {shape.stride}')}")
            return c.v(f"select i1 {c.v(f'icmp eq i64 {found}, 0')}, i64 0, i64 {mine}")

        return emit

    def update(shape: Shape, site: _Site) -> Callable:
        key, value, flags = site.args[1], site.args[2], site.args[3]

        def emit(c: _Code, cpu: str, slow: str) -> str:
            if not trusted:
                size = shape.key_size if isinstance(shape, HashShape) else 4
                _guard(c, site, [(key, size), (value, shape.value_size)], slow)
            if isinstance(shape, ArrayShape):
                index, ok = _array_index(c, shape, key)
                plain = c.v(f"icmp eq i64 {c.v(f'and i64 {flags}, -3')}, 0")  # ANY or EXIST
                write = c.label()
                c.emit(f"br i1 {c.v(f'and i1 {ok}, {plain}')}, label %{write}, label %{slow}")
                c.block(write)
                _memcpy(c, _array_element(c, shape, index, cpu), value, shape.value_size)
                return "0"
            fn = lib.callee(c, f"pybpf.hash.update.k{shape.key_size}.v{shape.value_size}")
            offset = c.v(f"mul i64 {cpu}, {shape.stride}") if shape.percpu else "0"
            result = c.v(f"call i64 {fn}(i64 {shape.header}, i64 {key}, i64 {value}, "
                         f"i64 {flags}, i64 {offset})")  # fmt: skip
            ok = c.label()
            c.emit(f"br i1 {c.v(f'icmp eq i64 {result}, {MAP_SLOW}')}, label %{slow}, "
                   f"label %{ok}")  # fmt: skip
            c.block(ok)
            return result

        return emit

    def function(name: str, helper_id: int, make: Callable, over: list[Shape]) -> str:
        def body(c: _Code, site: _Site, slow: str) -> str:
            return _switch(c, site, slow, cpu_address, [(s.pointer, make(s, site)) for s in over])

        return _dispatch_function(name, helper_id, body)

    hooks: dict[int, Callable] = {}
    writable = [s for s in usable if not isinstance(s, ArrayShape) or s.writable]
    for helper, make, over, name in ((MAP_LOOKUP_ELEM, lookup, usable, "pybpf.map_lookup"),
                                     (MAP_UPDATE_ELEM, update, writable, "pybpf.map_update")):
        if over and helper in wanted:
            functions.append(function(name, helper, make, over))
            hooks[helper] = _call_dispatch(name)
    return hooks


def _ktime_ir(name: str) -> str:
    """``i64 @name(i64 boot)``: CLOCK_MONOTONIC in ns minus ``boot``."""

    def body(c: _Code) -> str:
        ts = c.v("alloca [2 x i64], align 8")  # in the entry block: a fixed frame slot
        c.v(f"call i32 @clock_gettime(i32 {CLOCK_MONOTONIC}, ptr {ts})")
        sec = c.v(f"load i64, ptr {ts}, align 8")
        nsp = c.v(f"getelementptr i64, ptr {ts}, i64 1")
        ns = c.v(f"add i64 {c.v(f'mul i64 {sec}, 1000000000')}, {c.v(f'load i64, ptr {nsp}')}")
        return c.v(f"sub i64 {ns}, %boot")

    return _function(name, "i64 %boot", body)


def _prandom_ir(name: str) -> str:
    """``i64 @name(i64 state)``: xorshift64* on the u64 at ``state``, the high 32 bits."""

    def body(c: _Code) -> str:
        p = c.ptr("%state")
        x = c.v(f"load i64, ptr {p}, align 8")
        for op, n in (("lshr", 12), ("shl", 25), ("lshr", 27)):
            x = c.v(f"xor i64 {x}, {c.v(f'{op} i64 {x}, {n}')}")
        c.emit(f"store i64 {x}, ptr {p}, align 8")
        return c.v(f"lshr i64 {c.v(f'mul i64 {x}, {_s64(PRANDOM_MUL)}')}, 32")

    return _function(name, "i64 %state", body)


def _call_hook(lib: _Library, name: str, argument: int):
    """A hook whose result is ``name(argument)`` (a constant argument)."""

    def hook(site: CallSite) -> str:
        c = _Code(site.fresh)
        c.emit(f"{site.result} = call i64 {lib.callee(c, name)}(i64 {_s64(argument)})")
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


def _csum_body(trusted: bool, lib: _Library) -> Callable[[_Code, _Site, str], str]:
    """bpf_csum_diff natively for sizes that are multiples of 4 below :data:`CSUM_MAX`."""

    def body(c: _Code, site: _Site, slow: str) -> str:
        partial = lib.callee(c, CSUM_PARTIAL)
        src, dst = site.args[0], site.args[2]
        fs, ts = (c.v(f"and i64 {a}, 4294967295") for a in (site.args[1], site.args[3]))
        seed = c.v(f"and i64 {site.args[4]}, 4294967295")
        fast = c.label()
        either = c.v(f"or i64 {fs}, {ts}")
        odd = c.v(f"icmp ne i64 {c.v(f'and i64 {either}, 3')}, 0")
        big = c.v(f"icmp uge i64 {either}, {CSUM_MAX}")
        c.emit(f"br i1 {c.v(f'or i1 {odd}, {big}')}, label %{slow}, label %{fast}")
        c.block(fast)
        if not trusted:
            _guard(c, site, [(src, fs), (dst, ts)], slow)
        to_sum = c.v(f"call i64 {partial}(i64 {dst}, i64 {ts}, i64 {seed})")
        has_to = c.v(f"icmp ne i64 {ts}, 0")
        from_seed = c.v(f"select i1 {has_to}, i64 0, i64 {c.v(f'xor i64 {seed}, 4294967295')}")
        from_sum = c.v(f"call i64 {partial}(i64 {src}, i64 {fs}, i64 {from_seed})")
        neg = c.v(f"xor i64 {from_sum}, 4294967295")
        added = c.v(f"and i64 {c.v(f'add i64 {to_sum}, {neg}')}, 4294967295")
        carry = c.v(f"zext i1 {c.v(f'icmp ult i64 {added}, {neg}')} to i64")
        both = c.v(f"and i64 {c.v(f'add i64 {added}, {carry}')}, 4294967295")
        with_from = c.v(f"select i1 {has_to}, i64 {both}, i64 {neg}")
        ret = c.v(f"select i1 {c.v(f'icmp eq i64 {fs}, 0')}, i64 {to_sum}, i64 {with_from}")
        low = c.v(f"and i64 {c.v(f'shl i64 {ret}, 16')}, 4294967295")
        rot = c.v(f"or i64 {c.v(f'lshr i64 {ret}, 16')}, {low}")
        total = c.v(f"and i64 {c.v(f'add i64 {ret}, {rot}')}, 4294967295")
        return c.v(f"lshr i64 {total}, 16")

    return body


def native_calls(shapes: Sequence[Shape] = (), *, trusted: bool = False,
                 boot_ns: int | None = None, prandom_address: int | None = None,
                 cpu_address: int | None = None, opt_level: int | None = None,
                 called: Iterable[int] | None = None,
                 ) -> tuple[dict[int, Callable], str]:  # fmt: skip
    """The ``native_calls`` hooks for a program over ``shapes``, and the prelude.

    ``trusted`` skips the pointer window check (verified programs only).
    ``boot_ns`` enables ktime_get_ns (the kernel's ``boot``), ``prandom_address``
    get_prandom_u32 (a :class:`NativeWord` seeded non-zero), ``cpu_address``
    per-CPU maps and get_smp_processor_id (a :class:`NativeWord` the runner
    sets to the run's CPU).  Helpers left out keep the trampoline, and so do
    helpers not in ``called`` (the ids the program calls) when it is given.
    ``opt_level`` is the level the program will be compiled at (default: the
    JIT's); below 2 the hot functions are precompiled at level 2 and called
    by address, at 2 and 3 they join the program's module to be inlined.
    """
    if opt_level is None:
        from pybpf.jit import native

        opt_level = native.DEFAULT_OPT_LEVEL
    wanted = set(called) if called is not None else {
        MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, KTIME_GET_NS, GET_PRANDOM_U32, GET_SMP_PROCESSOR_ID,
        CSUM_DIFF}  # fmt: skip
    lib = _Library(inline=opt_level >= 2)
    usable = [s for s in shapes if cpu_address is not None or not s.percpu]
    _map_library(usable, lib, wanted)
    ktime = boot_ns is not None and KTIME_GET_NS in wanted
    prandom = prandom_address is not None and GET_PRANDOM_U32 in wanted
    if ktime:
        lib.add("pybpf.ktime", _ktime_ir("pybpf.ktime"))
    if prandom:
        lib.add("pybpf.prandom", _prandom_ir("pybpf.prandom"))
    if CSUM_DIFF in wanted:
        lib.add(CSUM_PARTIAL, _CSUM_PARTIAL_IR)
    lib.finish()  # one compilation (or cache fetch) for all; callee() needs the addresses
    functions: list[str] = []
    hooks = _map_hooks(usable, lib, cpu_address, trusted, wanted, functions)
    if ktime:
        hooks[KTIME_GET_NS] = _call_hook(lib, "pybpf.ktime", boot_ns)
    if prandom:
        hooks[GET_PRANDOM_U32] = _call_hook(lib, "pybpf.prandom", prandom_address)
    if cpu_address is not None and GET_SMP_PROCESSOR_ID in wanted:
        hooks[GET_SMP_PROCESSOR_ID] = _cpu_hook(cpu_address)
    if CSUM_DIFF in wanted:
        functions.append(_dispatch_function("pybpf.csum_diff", CSUM_DIFF,
                                            _csum_body(trusted, lib)))  # fmt: skip
        hooks[CSUM_DIFF] = _call_dispatch("pybpf.csum_diff")
    return hooks, "\n".join([PRELUDE, lib.prelude(), *functions])


# --- the native test-run loop -------------------------------------------------------------------
REPEAT_DRIVER = "pybpf_repeat"
REPEAT_ARGS = 6  # u64 words: entry, ctx, n, out status, out calls, out duration


def repeat_driver_ir(name: str = REPEAT_DRIVER) -> str:
    """A module with ``i64 name(ptr args)``, args being :data:`REPEAT_ARGS` u64 words.

    Reads ``entry``, ``ctx`` and ``n`` from words 0..2, calls ``i64
    entry(ptr ctx)`` ``max(n, 1)`` times, stopping after the first non-zero
    status, and writes the last status, the calls made and the loop's
    duration in ns to words 3..5; returns the status.  The duration is the
    thread's CPU time (``CLOCK_THREAD_CPUTIME_ID``): the kernel's
    ``bpf_test_timer`` likewise leaves out the time its task spends
    rescheduled, so both figures stay comparable on a loaded machine.
    The driver has the signature of a compiled program's entry, so it is
    called the same way.  The entry must reset its own per-run state (the
    translator's ``bpf_entry`` reads its inputs from the context every call).
    """
    return f"""declare i32 @clock_gettime(i32, ptr)

define internal i64 @{name}.now() {{
  %ts = alloca [2 x i64], align 8
  %rc = call i32 @clock_gettime(i32 {CLOCK_THREAD_CPUTIME_ID}, ptr %ts)
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


_CURRENT_CPU: list[NativeWord] = []


def current_cpu() -> NativeWord:
    """The process's "current CPU" word that native per-CPU code reads (runs are sequential)."""
    if not _CURRENT_CPU:
        _CURRENT_CPU.append(NativeWord(0, "current cpu"))
    return _CURRENT_CPU[0]


class ProgramHooks:
    """The native hot path of one loaded program: its hooks, prelude and native words.

    ``maps`` are the program's maps (those with a ``jit_shape()`` are reached
    natively); ``boot_ns`` is the kernel's boot time (ktime_get_ns),
    ``seed`` seeds the PRNG word; ``trusted`` as :func:`native_calls`;
    ``insn_count`` picks the level the engine will compile at (as
    :class:`~pybpf.jit.engine.JitProgram` does when given none) unless
    ``opt_level`` is given.  ``called`` (helper ids the program calls), when
    given, keeps only the hooks it uses, so a program calling none of them
    gets none (and stays cacheable).  ``prandom`` False leaves
    get_prandom_u32 to the runtime's seeded generator (the interpreter's
    sequence).  The runner sets :attr:`cpu` (:func:`current_cpu`, one word
    for the process, so tail-call targets and callbacks see the run's CPU)
    before each run.  Keep the object as long as the compiled program lives.
    """

    def __init__(self, maps, *, boot_ns: int, seed: int, trusted: bool = False,
                 insn_count: int = 0, opt_level: int | None = None,
                 called: Iterable[int] | None = None, prandom: bool = True) -> None:  # fmt: skip
        if opt_level is None:
            from pybpf.jit import native  # compiling needs LLVM; importing this module does not

            opt_level = native.auto_opt_level(insn_count)
        self.opt_level = opt_level
        self.prandom = NativeWord(seed | 1, "prandom state")
        self.cpu = current_cpu()
        shapes = []
        for m in maps:
            shape = m.jit_shape() if hasattr(m, "jit_shape") else None
            if shape is not None:
                shapes.append(shape)
        hooks, prelude = native_calls(
            shapes, trusted=trusted, boot_ns=boot_ns,
            prandom_address=self.prandom.address if prandom else None,
            cpu_address=self.cpu.address, opt_level=opt_level, called=called)  # fmt: skip
        self.native_calls = hooks
        self.prelude = prelude if hooks else ""

