"""A compile cache: object code of compiled programs, on disk, shared by processes.

Every ``pybpf`` command is a new process that reloads the programs the
state keeps, so the JIT would otherwise run LLVM again for every command.
:class:`CompileCache` stores the relocatable object :mod:`pybpf.jit.native`
emits, under a key naming everything the machine code depends on
(:func:`cache_key`):

* the program: SHA-256 over its xlated image (the tag's input, map
  immediates included) and the values its pseudo ld_imm64 resolve to --
  stand-ins, for :func:`build` stores code compiled with stand-in addresses
  and relocates it to the real ones (the maps live elsewhere in every
  process);
* the code generator: :data:`pybpf.jit.engine.ENGINE_VERSION` and a digest
  of the generator's own sources (so an edited generator never meets code
  an older one emitted), the opt level, checked or trusting mode;
* the toolchain: llvmlite's version (it pins LLVM's), the target triple and
  host CPU the code was tuned for.

Where: ``$PYBPF_CACHE_DIR``, else ``$XDG_CACHE_HOME/pybpf``, else
``~/.cache/pybpf``; entries live in its ``jit/`` directory, one file per key.
``PYBPF_CACHE_DIR=off`` disables the cache.

Guarantees: a write is a temporary file renamed over the entry, so readers
see a whole entry or none, whatever concurrent writers do; every entry
carries its key and a digest of its payload, and an entry that does not
match (truncated, corrupt, written for another key or by another format)
is ignored and removed, so the caller compiles again; the directory is kept
under ``max_bytes`` by removing the least recently used entries.  No cache
error ever escapes: a read-only or missing directory only means misses.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pybpf.errors import JitError, PybpfError
from pybpf.isa import LDDW, Instruction, Pseudo, encode, slot_offsets
from pybpf.jit import native
from pybpf.jit.engine import ENGINE_VERSION, JitProgram
from pybpf.vm.memory import Memory

MAGIC = b"PYBPF-JIT-CACHE\x01"
"""First bytes of every entry (the entry format's version is its last byte)."""
DEFAULT_MAX_BYTES = 64 << 20
_DIGEST = 32


def default_root() -> Path | None:
    """The cache directory the environment names (None when disabled)."""
    explicit = os.environ.get("PYBPF_CACHE_DIR")
    if explicit is not None and explicit.strip():
        return None if explicit.strip().lower() == "off" else Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pybpf"


def toolchain() -> str:
    """What the generated machine code depends on besides the program and options."""
    try:
        llvmlite = importlib.metadata.version("llvmlite")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - it is a dependency
        llvmlite = "unknown"
    return (f"llvmlite {llvmlite}; {native.triple()}; {native.host_cpu()}; "
            f"generator {generator_digest()}")


_GENERATOR: list[str] = []


def generator_digest() -> str:
    """SHA-256 over the sources of the modules that decide what code is generated."""
    if not _GENERATOR:
        h = hashlib.sha256()
        for name in ("abi", "ir", "maps_ir", "engine", "native"):
            path = Path(__file__).with_name(f"{name}.py")
            with contextlib.suppress(OSError):
                h.update(name.encode() + b"\0" + path.read_bytes())
        _GENERATOR.append(h.hexdigest())
    return _GENERATOR[0]


def resolved_imm64(insns: Sequence[Instruction], resolve_imm64) -> list[int]:
    """The values the pseudo ld_imm64 of ``insns`` resolve to, in program order."""
    out = []
    for pc, insn in zip(slot_offsets(insns), insns, strict=True):
        if insn.code == LDDW and insn.src_reg not in (Pseudo.IMM64, Pseudo.FUNC):
            out.append(resolve_imm64(insn, pc) & ((1 << 64) - 1) if resolve_imm64 else -1)
    return out


def cache_key(insns: Sequence[Instruction], *, resolve_imm64=None, checked: bool,
              opt_level: int, engine_version: int = ENGINE_VERSION,
              tools: str | None = None) -> str:  # fmt: skip
    """The hex key of a compilation (see the module docstring for its parts)."""
    h = hashlib.sha256()
    h.update(hashlib.sha256(encode(insns)).digest())
    h.update(repr(resolved_imm64(insns, resolve_imm64)).encode())
    h.update(f"|engine {engine_version}|opt {opt_level}|checked {bool(checked)}|".encode())
    h.update((tools if tools is not None else toolchain()).encode())
    return h.hexdigest()


class CompileCache:
    """Object code by key, in the files of one directory (see the module docstring)."""

    def __init__(self, root: Path | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root) / "jit"
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        if len(key) != 2 * _DIGEST or not all(c in "0123456789abcdef" for c in key):
            raise JitError(f"compile cache key {key!r} is not a SHA-256 hex digest")
        return self.root / f"{key}.o"

    def get(self, key: str) -> bytes | None:
        """The object stored under ``key``, or None (missing, corrupt or foreign)."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except OSError:
            self.misses += 1
            return None
        head = len(MAGIC)
        payload = data[head + 2 * _DIGEST :]
        if (
            data[:head] != MAGIC
            or data[head : head + _DIGEST] != bytes.fromhex(key)
            or data[head + _DIGEST : head + 2 * _DIGEST] != hashlib.sha256(payload).digest()
        ):
            with contextlib.suppress(OSError):
                path.unlink()
            self.misses += 1
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        self.hits += 1
        return payload

    def put(self, key: str, data: bytes) -> bool:
        """Store ``data`` under ``key`` atomically; False when the directory refuses it."""
        path = self._path(key)
        blob = MAGIC + bytes.fromhex(key) + hashlib.sha256(data).digest() + bytes(data)
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".o")
        except OSError:
            return False
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return False
        self.trim()
        return True

    def entries(self) -> list[Path]:
        """The entry files, least recently used first."""
        found = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.root):
                if entry.name.endswith(".o") and not entry.name.startswith("."):
                    with contextlib.suppress(OSError):
                        found.append((entry.stat().st_mtime_ns, entry.name))
        return [self.root / name for _, name in sorted(found)]

    def size(self) -> int:
        """Bytes the entries take."""
        total = 0
        for path in self.entries():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def trim(self) -> None:
        """Remove least recently used entries until the cache holds ``max_bytes`` or less,
        and temporary files a killed writer left (older than an hour)."""
        stale = time.time() - 3600
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.root):
                if entry.name.startswith(".tmp-"):
                    with contextlib.suppress(OSError):
                        if entry.stat().st_mtime < stale:
                            os.unlink(entry.path)
        entries = self.entries()
        sizes = []
        for path in entries:
            try:
                sizes.append(path.stat().st_size)
            except OSError:
                sizes.append(0)
        total = sum(sizes)
        for path, size in zip(entries, sizes, strict=True):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                path.unlink()
            total -= size

    def clear(self) -> None:
        """Remove every entry."""
        for path in self.entries():
            with contextlib.suppress(OSError):
                path.unlink()


def default_cache() -> CompileCache | None:
    """The cache the environment names (None when ``PYBPF_CACHE_DIR=off``)."""
    root = default_root()
    return CompileCache(root) if root is not None else None


PLACEHOLDER_TAG = 0x5EB7
"""Top 16 bits of the stand-in addresses a cacheable object is compiled with."""
_M64 = (1 << 64) - 1


def placeholder(index: int) -> int:
    """The stand-in for the ``index``-th resolved ld_imm64 (offsets of +-2 GiB stay inside)."""
    return PLACEHOLDER_TAG << 48 | (index + 1) << 32 | 0x8000_0000


def relocate(data: bytes, values: Sequence[int]) -> bytes:
    """``data`` with every stand-in address (plus an offset) replaced by the real one.

    Every 8-byte window holding ``placeholder(i) + off`` becomes ``values[i] + off``.
    Bytes that merely look like a stand-in are caught by :func:`build`,
    which stores an object only when relocating it reproduces the real
    compilation byte for byte.
    """
    out = bytearray(data)
    tag, count, pos = PLACEHOLDER_TAG.to_bytes(2, "little"), len(values), 0
    while (hit := out.find(tag, pos + 6)) >= 0:  # the tag is a window's last two bytes
        start = hit - 6
        word = int.from_bytes(out[start : start + 8], "little")
        slot = (word >> 32) & 0xFFFF
        if 1 <= slot <= count:
            real = (values[slot - 1] + (word & 0xFFFF_FFFF) - 0x8000_0000) & _M64
            out[start : start + 8] = real.to_bytes(8, "little")
            pos = start + 8
        else:
            pos = start + 1
    return bytes(out)


def build(insns: Sequence[Instruction], *, cache: CompileCache | str | None = "default",
          checked: bool = False, opt_level: int | None = None,
          resolve_imm64: Callable[[Instruction, int], int] | None = None,
          **kwargs) -> JitProgram:  # fmt: skip
    """A :class:`JitProgram` for ``insns``, its object code from ``cache`` when it has it.

    ``cache`` is a CompileCache, None (no cache) or ``"default"``
    (:func:`default_cache`).  Other arguments are JitProgram's.

    Programs with pseudo ld_imm64 (map references) embed the maps' host
    addresses, which differ in every process.  Their entry is compiled with
    stand-in addresses (:func:`placeholder`) and stored only when
    :func:`relocate` turns it into exactly the code compiled with the real
    addresses (a miss compiles twice); a hit relocates it to this process's
    addresses.  Programs with native call hooks (``native_calls`` /
    ``prelude``) are not cached: their code depends on functions the key
    cannot name.  A cached object LLVM cannot load is replaced by a fresh
    compilation.
    """
    if cache == "default":
        cache = default_cache()
    if opt_level is None:  # the level JitProgram would pick, so that the key names it
        opt_level = native.auto_opt_level(len(insns))

    def compile_with(resolver, **extra) -> JitProgram:
        return JitProgram(insns, checked=checked, opt_level=opt_level, resolve_imm64=resolver,
                          **(kwargs | extra))  # fmt: skip

    if cache is None or kwargs.get("native_calls") or kwargs.get("prelude"):
        return compile_with(resolve_imm64)
    try:
        values = resolved_imm64(insns, resolve_imm64)
    except PybpfError:  # an unresolvable reference: JitProgram reports it
        return compile_with(resolve_imm64)
    if len(values) >= 0xFFFF:
        return compile_with(resolve_imm64)
    order = {pc: i for i, pc in enumerate(
        pc for pc, insn in zip(slot_offsets(insns), insns, strict=True)
        if insn.code == LDDW and insn.src_reg not in (Pseudo.IMM64, Pseudo.FUNC))}  # fmt: skip

    def stand_in(insn: Instruction, pc: int) -> int:
        return placeholder(order[pc])

    key = cache_key(insns, resolve_imm64=stand_in, checked=checked, opt_level=opt_level)
    data = cache.get(key)
    if data is not None:
        try:
            return compile_with(resolve_imm64, object_code=relocate(data, values))
        except JitError:
            pass
    prog = compile_with(resolve_imm64)
    template = prog.object_code
    if values:
        try:
            other = compile_with(stand_in, memory=Memory())
        except PybpfError:
            return prog
        template = other.object_code
        other.close()
        if relocate(template, values) != prog.object_code:
            return prog  # the code depends on the addresses beyond holding them
    cache.put(key, template)
    return prog


__all__ = ["CompileCache", "build", "cache_key", "default_cache", "default_root", "placeholder",
           "relocate", "toolchain"]
