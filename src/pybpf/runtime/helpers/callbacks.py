"""Helpers that call back into the program: loop (bpf_loop) and for_each_map_elem.

The callback is a subprogram (the value an ld_imm64 ``BPF_PSEUDO_FUNC``
loads), run through the program's engine
(:meth:`~pybpf.vm.interpreter.Interpreter.invoke`) in a new frame below the
caller's.  A non-zero return stops the iteration (the verifier allows 0 and
1 only).

* ``bpf_loop(nr_loops, callback, ctx, flags)``: ``callback(i, ctx)`` for i
  from 0; flags other than 0 are ``-EINVAL``, more than 1 << 23 loops
  ``-E2BIG``; returns the number of calls made.
* ``bpf_for_each_map_elem(map, callback, ctx, flags)``:
  ``callback(map, &key, &value, ctx)`` for every element present when the
  walk starts (one deleted meanwhile is skipped), in get_next_key order;
  the key is copied into a temporary region of the kernel's address space
  (freed afterwards), the value is the element's own storage (per-CPU maps:
  the running CPU's copy), so the callback may update it; flags other than
  0 are ``-EINVAL``; a map that cannot be walked ``-EINVAL``; returns the
  number of elements visited.
"""

from __future__ import annotations

import errno

from pybpf.errors import KernelError
from pybpf.runtime.helpers import Arg, Ret, define
from pybpf.runtime.helpers._common import map_arg, u32
from pybpf.verifier import protos as P

BPF_MAX_LOOPS = 1 << 23


@define("loop", [Arg.ANYTHING, Arg.PTR_TO_FUNC, P.PTR_TO_STACK_OR_NULL, Arg.ANYTHING],
        Ret.INTEGER, callback=P.LOOP_CALLBACK)  # fmt: skip
def loop(env, r1, r2, r3, r4, r5):
    if r4:
        return -errno.EINVAL
    nr_loops = u32(r1)
    if nr_loops > BPF_MAX_LOOPS:
        return -errno.E2BIG
    invoke = env.program.engine.invoke
    for i in range(nr_loops):
        if invoke(r2, (i, r3)):
            return i + 1
    return nr_loops


@define("for_each_map_elem", [Arg.CONST_MAP_PTR, Arg.PTR_TO_FUNC, P.PTR_TO_STACK_OR_NULL,
                              Arg.ANYTHING], Ret.INTEGER, callback=P.MAP_ELEM_CALLBACK)  # fmt: skip
def for_each_map_elem(env, r1, r2, r3, r4, r5):
    if r4:
        return -errno.EINVAL
    m = map_arg(env, r1)
    if m is None:
        return -errno.EINVAL
    walk = getattr(m, "prog_keys", None)
    try:
        keys = list(walk() if walk is not None else m.keys())
    except KernelError:
        return -errno.EINVAL
    space = env.kernel.space
    key_region = space.alloc(f"for_each:{m.name}:key", m.key_size)
    invoke = env.program.engine.invoke
    done = 0
    try:
        for key in keys:
            key_region.view[: len(key)] = key
            value = m.prog_lookup(key_region.base, cpu=env.cpu)
            if not value:
                continue
            done += 1
            if invoke(r2, (r1, key_region.base, value, r3)):
                break
    finally:
        space.free(key_region)
    return done
