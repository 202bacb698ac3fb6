"""bpf_get_stack: the stack trace of the probed context, for the tracing program types.

pybpf's tracing runs (kprobe, tracepoint, perf_event, raw_tracepoint) have
no kernel or user call stack behind their context, so the trace is empty:
the helper checks its flags and size as the kernel's ``__bpf_get_stack``
does, zero-fills the buffer and returns the bytes copied (0).  A skip
count above the empty trace's length is ``-EFAULT``, as the kernel answers
for a trace shorter than the frames to skip.
"""

from __future__ import annotations

import errno

from pybpf.runtime.helpers import Arg, Ret, define
from pybpf.runtime.helpers._common import M64, u32
from pybpf.verifier import protos as P

SKIP_FIELD_MASK = 0xFF  # BPF_F_SKIP_FIELD_MASK
USER_STACK = 1 << 8  # BPF_F_USER_STACK
USER_BUILD_ID = 1 << 11  # BPF_F_USER_BUILD_ID
BUILD_ID_ELEM = 32  # sizeof(struct bpf_stack_build_id)
IP_ELEM = 8  # one u64 instruction pointer


@define("get_stack", [Arg.PTR_TO_CTX, P.PTR_TO_UNINIT_MEM, Arg.CONST_SIZE_OR_ZERO, Arg.ANYTHING],
        Ret.INTEGER, gpl_only=True)  # fmt: skip
def get_stack(env, ctx, buf, size, flags, r5=0):
    """bpf_get_stack(ctx, buf, size, flags): bytes copied (0: empty trace), or -errno."""
    size = u32(size)
    err = _check(size, flags)
    if err == 0 and flags & SKIP_FIELD_MASK:
        err = -errno.EFAULT  # skipping more frames than the (empty) trace holds
    if size:
        env.memory.write(buf, bytes(size))
    return err & M64


def _check(size: int, flags: int) -> int:
    if flags & ~(SKIP_FIELD_MASK | USER_STACK | USER_BUILD_ID):
        return -errno.EINVAL
    user = bool(flags & USER_STACK)
    build_id = bool(flags & USER_BUILD_ID)
    if build_id and not user:
        return -errno.EINVAL
    if size % (BUILD_ID_ELEM if build_id else IP_ELEM):
        return -errno.EINVAL
    return 0
