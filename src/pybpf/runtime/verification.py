"""Running the verifier at load time, as BPF_PROG_LOAD runs ``bpf_check``.

:func:`verify_program` describes a program's target to the pure verifier
(:mod:`pybpf.verifier`): its program type and attach type, the license, the
maps its xlated image references (by id, as ``ld_imm64 map[id:N]`` names
them) and the prototypes of the helpers its program type may call.  On a
refusal it raises :class:`~pybpf.errors.VerifierError` carrying the log at
the level asked for and the report for people; on success it returns the
verdict, whose ``xlated`` image (dead code removed, constant branches
hard-wired) the program keeps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pybpf.runtime.helpers import prototypes
from pybpf.runtime.progtypes import PROG_TYPES

if TYPE_CHECKING:
    from pybpf.runtime.program import Program


def verify_program(prog: Program, *, log_level: int = 0, line_info: Mapping | None = None,
                   func_info: Sequence[int] | None = None,
                   func_scalar_return: Sequence[bool] | None = None,
                   funcs: Sequence | None = None, kfuncs: Mapping | None = None,
                   kernel_btf=None):
    """Verify ``prog.xlated``; returns the Verdict or raises VerifierError.

    ``func_info`` are the start pcs of the functions the program's BTF
    describes, in order (None or empty: the load carries no BTF func_info);
    ``(pc, type_id)`` pairs, as the loader's ``ProgramSpec.func_info``
    holds them, are accepted too.  ``func_scalar_return`` says, per record, whether the
    function's BTF return type is an int or enum (the loader reads it from the BTF);
    ``funcs``, per record, the function's linkage and argument types
    (:class:`pybpf.verifier.funcs.FuncDesc`; None: every function static).
    """
    from pybpf.verifier import Target, verify

    if func_info:
        func_info = tuple(f[0] if isinstance(f, tuple) else int(f) for f in func_info)

    allowed = PROG_TYPES[prog.prog_type].helpers_for(prog.expected_attach_type)
    target = Target(
        prog_type=int(prog.prog_type),
        attach_type=prog.expected_attach_type,
        gpl=prog.gpl_compatible,
        maps={m.id: m for m in prog.maps},
        helpers=prototypes(allowed, int(prog.prog_type), int(prog.prog_flags)),
        line_info=line_info,
        func_info=tuple(func_info) if func_info else None,
        prog_flags=int(prog.prog_flags),
        func_scalar_return=tuple(func_scalar_return) if func_scalar_return else None,
        funcs=tuple(funcs) if funcs and func_info else None,
        kfuncs=dict(kfuncs or {}),
        kernel_btf=kernel_btf,
    )
    verdict = verify(prog.xlated, target, log_level=log_level)
    if not verdict.ok:
        raise verdict.error
    return verdict
