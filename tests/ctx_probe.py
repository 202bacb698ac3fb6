"""The kernel's answer to one context access, read off its log (not a test module).

Both context test files (test_verifier_ctx.py, test_progtypes_more.py) load a program
that reads or writes the context into R2 and ask the running kernel what it made of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pybpf.errors import KernelError
from pybpf.kernel import linux

_R2 = re.compile(r"\bR2(?:_w)?=([a-z_0-9]+)")


def load_answer(load: Callable[[], linux.Prog], mode: str) -> tuple[bool, str]:
    """(accepted, R2's type name after the first instruction, or the refusal's line):
    ``load()`` loads the probe at log level 2; a refusal is named by its "invalid
    bpf_context access" line, else its last log line."""
    try:
        prog = load()
    except KernelError as err:
        lines = [ln for ln in err.log.splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "invalid bpf_context access" in ln), None)
        return False, reason or (lines[-1] if lines else str(err))
    log = prog.log
    prog.close()
    if mode == "write":
        return True, ""
    first = next((ln for ln in log.splitlines() if ln.startswith("0: (")), "")
    found = _R2.search(first)
    return True, found.group(1) if found else "?"


def sweep(answer: Callable[[int], tuple[bool, str]], size: int, offsets
          ) -> tuple[dict[str, str], dict[str, str]]:  # fmt: skip
    """``answer(off)`` over ``offsets``: (R2's type by accepted offset, the refusals other
    than the context check's own "invalid bpf_context access" by offset)."""
    accepted, refused = {}, {}
    for off in offsets:
        ok, text = answer(off)
        if ok:
            accepted[str(off)] = text
        elif text != f"invalid bpf_context access off={off} size={size}":
            refused[str(off)] = text
    return accepted, refused
