"""Attachment facts of tracing programs: get_func_ip, get_attach_cookie.

A simulated run is attached to nothing, so both answer what the run's
context state says: ``env.ctx.func_ip`` / ``env.ctx.attach_cookie`` when
the state object (``run_context(..., state=...)``) has those attributes,
else 0 — as the kernel's cookie is 0 when none was given at attach time.
"""

from __future__ import annotations

from pybpf.runtime.helpers import Arg, Ret, define


@define("get_func_ip", [Arg.PTR_TO_CTX], Ret.INTEGER, gpl_only=True)
def get_func_ip(env, r1, r2, r3, r4, r5):
    return getattr(env.ctx, "func_ip", 0) or 0


@define("get_attach_cookie", [Arg.PTR_TO_CTX], Ret.INTEGER)
def get_attach_cookie(env, r1, r2, r3, r4, r5):
    return getattr(env.ctx, "attach_cookie", 0) or 0
