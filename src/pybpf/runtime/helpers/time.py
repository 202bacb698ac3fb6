"""Clock helpers: ktime_get_ns, ktime_get_boot_ns, ktime_get_coarse_ns, ktime_get_tai_ns,
jiffies64.

All read the kernel's clock (:meth:`~pybpf.runtime.kernel.Kernel.ktime_ns`,
monotonic nanoseconds since the simulated kernel was created).  The boot
clock equals the monotonic one (a simulated machine never suspends); the
coarse clock is the monotonic one rounded down to the last tick (HZ = 1000,
as Fedora kernels are built); TAI is the host's CLOCK_TAI; jiffies count
ticks from the kernel's INITIAL_JIFFIES (``(u32)-300 * HZ``, so they wrap
32 bits five minutes after boot, as Linux arranges on purpose).
"""

from __future__ import annotations

import time

from pybpf.runtime.helpers import Ret, define

HZ = 1000
TICK_NS = 1_000_000_000 // HZ
INITIAL_JIFFIES = (-300 * HZ) & 0xFFFF_FFFF


@define("ktime_get_ns", [], Ret.INTEGER)
def ktime_get_ns(env, r1, r2, r3, r4, r5):
    return env.kernel.ktime_ns()


@define("ktime_get_boot_ns", [], Ret.INTEGER)
def ktime_get_boot_ns(env, r1, r2, r3, r4, r5):
    return env.kernel.ktime_ns()


@define("ktime_get_coarse_ns", [], Ret.INTEGER)
def ktime_get_coarse_ns(env, r1, r2, r3, r4, r5):
    now = env.kernel.ktime_ns()
    return now - now % TICK_NS


@define("ktime_get_tai_ns", [], Ret.INTEGER)
def ktime_get_tai_ns(env, r1, r2, r3, r4, r5):
    clock = getattr(time, "CLOCK_TAI", None)
    return time.clock_gettime_ns(clock) if clock is not None else time.time_ns() + 37 * 10**9


@define("jiffies64", [], Ret.INTEGER)
def jiffies64(env, r1, r2, r3, r4, r5):
    return INITIAL_JIFFIES + env.kernel.ktime_ns() // TICK_NS
