"""bpf_spin_lock / bpf_spin_unlock.

Programs run one at a time in pybpf, so a lock never has to wait; what the
kernel's verifier guarantees (one lock held at a time, released before the
program ends, never unlocked when not held) is checked at run time instead:
the run's held lock is kept in ``env.scratch["spin_lock"]`` (by address),
and taking a second lock — the same one again would spin forever — or
releasing a lock that is not held stops the run with :class:`SpinLockError`.
The lock word itself (4 bytes in a map value) is not modified, so user
space reads it as zero, as the kernel's map copies show it.
"""

from __future__ import annotations

from pybpf.runtime.helpers import Arg, Ret, define
from pybpf.runtime.helpers._common import HelperMisuse


class SpinLockError(HelperMisuse):
    """A bpf_spin_lock taken twice or a bpf_spin_unlock without the lock."""


@define("spin_lock", [Arg.PTR_TO_SPIN_LOCK], Ret.VOID)
def spin_lock(env, r1, r2, r3, r4, r5):
    env.memory.read(r1, 4)  # the lock must be memory the program may touch
    held = env.scratch.get("spin_lock")
    if held == r1:
        raise SpinLockError(f"bpf_spin_lock: the lock at {r1:#x} is already held by this "
                            "program: it would spin forever")  # fmt: skip
    if held is not None:
        raise SpinLockError(f"bpf_spin_lock: the lock at {held:#x} is held; a program may "
                            f"hold one lock at a time (taking {r1:#x})")  # fmt: skip
    env.scratch["spin_lock"] = r1
    return 0


@define("spin_unlock", [Arg.PTR_TO_SPIN_LOCK], Ret.VOID)
def spin_unlock(env, r1, r2, r3, r4, r5):
    held = env.scratch.get("spin_lock")
    if held != r1:
        what = "no lock is held" if held is None else f"the held lock is at {held:#x}"
        raise SpinLockError(f"bpf_spin_unlock of {r1:#x}: {what}")
    del env.scratch["spin_lock"]
    return 0
