"""The kernel's user-space ABI facts pybpf shares between layers (include/uapi/linux/bpf.h).

The bottom package: it imports nothing of pybpf, and every layer may import it,
so an id, flag or limit of the uapi headers is declared here once.
"""

from __future__ import annotations

from enum import IntFlag

__all__ = ["PROG_LOAD_FLAGS", "ProgFlag"]


class ProgFlag(IntFlag):
    """``prog_flags`` of BPF_PROG_LOAD (the ``BPF_F_*`` program flags)."""

    STRICT_ALIGNMENT = 1 << 0  # check alignment as if the CPU could not load unaligned
    ANY_ALIGNMENT = 1 << 1  # do not check alignment at all (test-only)
    TEST_RND_HI32 = 1 << 2  # poison upper halves the verifier believes dead (test-only)
    TEST_STATE_FREQ = 1 << 3  # checkpoint states at every jump (test-only)
    SLEEPABLE = 1 << 4  # the program may sleep (tracing, LSM, syscall)
    XDP_HAS_FRAGS = 1 << 5  # the XDP program understands multi-buffer packets
    XDP_DEV_BOUND_ONLY = 1 << 6  # the XDP program is bound to one device
    TEST_REG_INVARIANTS = 1 << 7  # a register with impossible bounds is a verifier bug
    TOKEN_FD = 1 << 16  # ``prog_token_fd`` is set


#: Every flag BPF_PROG_LOAD accepts; any other bit is EINVAL.
PROG_LOAD_FLAGS = ProgFlag(sum(ProgFlag))
