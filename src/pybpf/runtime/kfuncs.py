"""The kfuncs pybpf runs: open-coded number and bit iterators, and the two casts.

Each is a dispatch entry ``fn(env, r1, ..., r5) -> r0`` as helpers are
(:mod:`pybpf.vm.helpers`), registered by the ``imm`` the program's calls
carry.  Their behaviour is Linux 6.12's ``kernel/bpf/bpf_iter.c``
(``bpf_iter_num_*``) and ``kernel/bpf/helpers.c`` (``bpf_iter_bits_*``,
``bpf_cast_to_kern_ctx``, ``bpf_rdonly_cast``).  A kfunc the verifier
knows but pybpf cannot run raises UnimplementedHelperError when called.

The iterators keep their state in the program's stack bytes as the kernel
lays them out (``struct bpf_iter_num_kern``: ``int cur, end``;
``struct bpf_iter_bits_kern``: the words, or a pointer to them, then
``int nr_bits, bit``); the words of a bit iterator longer than one word,
which the kernel copies to memory it allocates, are kept in
``env.scratch`` by the iterator's address.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Mapping

from pybpf.runtime.helpers import UnimplementedHelperError
from pybpf.runtime.helpers._common import s32, u32
from pybpf.runtime.helpers.probe import read_kernel
from pybpf.vm.helpers import HelperFn, HelperTable

M64 = (1 << 64) - 1
BPF_MAX_LOOPS = 8 * 1024 * 1024
BITS_ITER_NR_WORDS_MAX = 511  # bpf_iter_bits_new: at most 511 words
_BITS_KEY = "iter_bits"


def _neg(err: int) -> int:
    return -err & M64


# --- bpf_iter_num ----------------------------------------------------------------------------


def iter_num_new(env, it: int, start: int, end: int, *_) -> int:
    start, end = s32(start), s32(end)
    if start > end:
        env.memory.write(it, bytes(8))
        return _neg(errno.EINVAL)
    if end - start > BPF_MAX_LOOPS:
        env.memory.write(it, bytes(8))
        return _neg(errno.E2BIG)
    env.memory.write(it, struct.pack("<ii", start - 1, end))
    return 0


def iter_num_next(env, it: int, *_) -> int:
    cur, end = struct.unpack("<ii", env.memory.read(it, 8))
    if cur + 1 >= end:
        env.memory.write(it, bytes(8))
        return 0
    env.memory.write(it, struct.pack("<i", cur + 1))
    return it


def iter_num_destroy(env, it: int, *_) -> int:
    return 0


# --- bpf_iter_bits -----------------------------------------------------------------------------


def _bits(env) -> dict[int, int]:
    return env.scratch.setdefault(_BITS_KEY, {})


def iter_bits_new(env, it: int, words: int, nr_words: int, *_) -> int:
    nr_words = u32(nr_words)
    nr_bits = (nr_words * 64) & 0xFFFFFFFF  # u32 arithmetic, as the kernel's
    env.memory.write(it, struct.pack("<Qii", 0, 0, -1))
    _bits(env).pop(it, None)
    if not words or not nr_words:
        return _neg(errno.EINVAL)
    if nr_words > BITS_ITER_NR_WORDS_MAX:
        return _neg(errno.E2BIG)
    data = read_kernel(env, words, nr_words * 8)
    if data is None:
        return _neg(errno.EFAULT)
    _bits(env)[it] = int.from_bytes(data, "little")
    env.memory.write(it, struct.pack("<Qii", int.from_bytes(data[:8], "little"), nr_bits, -1))
    return 0


def iter_bits_next(env, it: int, *_) -> int:
    _, nr_bits, bit = struct.unpack("<Qii", env.memory.read(it, 16))
    if nr_bits <= 0 or bit >= nr_bits:
        return 0
    value = _bits(env).get(it, 0) >> (bit + 1)
    bit = bit + 1 + ((value & -value).bit_length() - 1) if value else nr_bits
    bit = min(bit, nr_bits)
    env.memory.write(it + 12, struct.pack("<i", bit))
    return 0 if bit >= nr_bits else it + 12


def iter_bits_destroy(env, it: int, *_) -> int:
    _bits(env).pop(it, None)
    return 0


# --- casts -------------------------------------------------------------------------------------


def cast(env, obj: int, *_) -> int:
    """bpf_cast_to_kern_ctx, bpf_rdonly_cast: the pointer itself."""
    return obj


RUNNABLE: dict[str, HelperFn] = {
    "bpf_iter_num_new": iter_num_new,
    "bpf_iter_num_next": iter_num_next,
    "bpf_iter_num_destroy": iter_num_destroy,
    "bpf_iter_bits_new": iter_bits_new,
    "bpf_iter_bits_next": iter_bits_next,
    "bpf_iter_bits_destroy": iter_bits_destroy,
    "bpf_cast_to_kern_ctx": cast,
    "bpf_rdonly_cast": cast,
}


def _unimplemented(name: str) -> HelperFn:
    def call(env, *_):
        raise UnimplementedHelperError(f"pybpf does not implement kfunc {name} yet (it cannot "
                                       "run it)")  # fmt: skip

    call.__name__ = f"unimplemented_{name}"
    return call


def kfunc_table(helpers: HelperTable, kfuncs: Mapping[int, object]) -> None:
    """Register the program's kfuncs (``imm`` -> prototype) in its dispatch table."""
    for imm, proto in kfuncs.items():
        name = getattr(proto, "name", str(imm))
        helpers.register_kfunc(imm, name, RUNNABLE.get(name) or _unimplemented(name))
