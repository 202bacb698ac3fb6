"""The current task and CPU: get_current_pid_tgid, get_current_uid_gid,
get_current_comm, get_smp_processor_id, get_numa_node_id, get_prandom_u32.

The task is :func:`pybpf.runtime.helpers._common.current_task`: the kernel's
``task`` attribute when it has one, else this Python process (pid = tgid =
``os.getpid()``).  The CPU is the run's (``env.cpu``); there is one NUMA
node.  Random numbers come from the kernel's seedable ``random.Random``, so
``Kernel(seed=...)`` makes a program's sequence reproducible.
"""

from __future__ import annotations

from pybpf.runtime.helpers import Arg, Ret, define
from pybpf.runtime.helpers._common import current_task, u32
from pybpf.verifier import protos as P


@define("get_current_pid_tgid", [], Ret.INTEGER)
def get_current_pid_tgid(env, r1, r2, r3, r4, r5):
    task = current_task(env)
    return (task.tgid & 0xFFFF_FFFF) << 32 | (task.pid & 0xFFFF_FFFF)


@define("get_current_uid_gid", [], Ret.INTEGER)
def get_current_uid_gid(env, r1, r2, r3, r4, r5):
    task = current_task(env)
    return (task.gid & 0xFFFF_FFFF) << 32 | (task.uid & 0xFFFF_FFFF)


@define("get_current_comm", [P.PTR_TO_UNINIT_MEM, Arg.CONST_SIZE], Ret.INTEGER)
def get_current_comm(env, r1, r2, r3, r4, r5):
    """strscpy_pad: at most size-1 bytes of comm, NUL, zeros to the end; returns 0."""
    size = u32(r2)
    if size == 0:  # the verifier refuses a zero size; nothing to write
        return 0
    comm = current_task(env).comm.encode(errors="replace")[: size - 1]
    env.memory.write(r1, comm + bytes(size - len(comm)))
    return 0


@define("get_smp_processor_id", [], Ret.INTEGER, allow_fastcall=True)
def get_smp_processor_id(env, r1, r2, r3, r4, r5):
    return env.cpu


@define("get_numa_node_id", [], Ret.INTEGER)
def get_numa_node_id(env, r1, r2, r3, r4, r5):
    return 0


@define("get_prandom_u32", [], Ret.INTEGER)
def get_prandom_u32(env, r1, r2, r3, r4, r5):
    return env.kernel.random.getrandbits(32)


@define("get_current_task", [], Ret.INTEGER, gpl_only=True)
def get_current_task(env, r1, r2, r3, r4, r5):
    """The address of ``current``'s task_struct in the simulated kernel memory.

    The image holds the fields of ``kernel.task_layout`` (name -> (offset,
    size), filled by the loader from the target BTF a program's CO-RE
    relocations were resolved against) with this task's values, so
    ``BPF_CORE_READ(task, pid)`` through bpf_probe_read_kernel reads what
    bpf_get_current_pid_tgid reports.  Rebuilt at every call: the task may
    change between runs.
    """
    task = current_task(env)
    layout = getattr(env.kernel, "task_layout", None) or {"pid": (0, 4), "tgid": (4, 4)}
    size = max(offset + width for offset, width in layout.values())
    image = bytearray(max(size, getattr(env.kernel, "task_size", 0)))
    values = {"pid": task.pid, "tgid": task.tgid, "comm": task.comm.encode()}
    for name, (offset, width) in layout.items():
        value = values.get(name)
        if isinstance(value, bytes):
            image[offset : offset + width] = value[: width - 1].ljust(width, b"\0")
        elif value is not None:
            image[offset : offset + width] = (value % (1 << 8 * width)).to_bytes(width, "little")
    kernel = env.kernel
    if kernel.current_task_addr is not None:
        kernel.kmem.unmap(kernel.current_task_addr)
    kernel.current_task_addr = kernel.kmem.place(bytes(image), name="task_struct (current)")
    return kernel.current_task_addr
