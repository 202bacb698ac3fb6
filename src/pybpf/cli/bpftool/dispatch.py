"""Route ``pybpf [-j] [-p] [-d] OBJECT COMMAND ...`` to an object module, inside a session."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from pybpf.cli.bpftool.common import EXIT_ERROR, CommandError, Ctx, match
from pybpf.errors import PybpfError
from pybpf.runtime.tag import ALGORITHMS as TAG_ALGORITHMS
from pybpf.runtime.tag import default_algorithm as default_tag_algorithm

OBJECTS = ("prog", "map", "btf", "net", "feature")
_OPTIONS = {"-j": "json", "--json": "json", "-p": "pretty", "--pretty": "pretty",
            "-d": "debug", "--debug": "debug", "-f": "bpffs", "--bpffs": "bpffs"}  # fmt: skip

# pybpf's global options that take a value: option -> (Ctx field, the values it takes)
_VALUED = {
    "--log-level": ("log_level", ("0", "1", "2")),
    "--engine": ("engine", None),  # runtime.engines.NAMES, imported when the option is used
    "--tag-algo": ("tag_algo", TAG_ALGORITHMS),
}


def _values(option: str) -> tuple[str, tuple[str, ...]]:
    """The Ctx field ``option`` sets and the values it takes."""
    field, values = _VALUED[option]
    if values is None:
        from pybpf.runtime.engines import NAMES as values
    return field, tuple(values)


def is_bpftool_command(argv: Sequence[str]) -> bool:
    """True when ``argv`` (after global options) starts with a bpftool object."""
    args, rest = [], list(argv)
    while rest:
        arg = rest.pop(0)
        if arg in _VALUED:  # an option and its value ('--engine jit')
            rest[:1] = []
        elif _options(arg) is None and arg.partition("=")[0] not in _VALUED:
            args.append(arg)
    return bool(args) and any(o.startswith(args[0]) for o in OBJECTS) and len(args[0]) > 0


def dispatch(argv: Sequence[str], ctx: Ctx | None = None) -> int:
    """Run one bpftool-style command; returns the exit status (255 on ``Error:``)."""
    ctx = ctx or Ctx()
    args = []
    argv = list(argv)
    while argv:  # like bpftool's getopt_long: options anywhere (`show id 1 --pretty`)
        arg = argv.pop(0)
        option = arg.partition("=")[0]
        if option in _VALUED:
            value = arg.partition("=")[2] if "=" in arg else (argv.pop(0) if argv else "")
            field, values = _values(option)
            if value not in values:
                return _error(ctx, f"{option} takes {', '.join(values[:-1])} or {values[-1]}, "
                                   f"not '{value}'")  # fmt: skip
            setattr(ctx, field, int(value) if field == "log_level" else value)
            continue
        opts = _options(arg)
        if opts is None:
            args.append(arg)
        for opt in opts or ():
            setattr(ctx, opt, True)
    if args and args[0].startswith("-") and args[0] != "-":
        return _error(ctx, f"unknown option '{args[0]}'")
    ctx.json = ctx.json or ctx.pretty  # bpftool: -p implies -j
    try:
        ctx.tag_algo = ctx.tag_algo or default_tag_algorithm()
    except PybpfError as err:
        return _error(ctx, str(err))
    try:
        obj = match(args.pop(0) if args else "", OBJECTS, "object") if args else None
        if obj is None:
            raise CommandError("missing object: prog | map | btf | net | feature")
        module = importlib.import_module(f"pybpf.cli.bpftool.{obj}")
        if not args or args[0] == "help":
            ctx.out.write(module.__doc__.strip() + "\n")
            return 0
        name = match(args.pop(0), list(module.COMMANDS), f"{obj} command")
        unlocked = getattr(module, "UNLOCKED", {}).get(name)
        if unlocked is not None and unlocked(args):
            return module.COMMANDS[name](ctx, args)  # it opens its own short sessions
        write = name not in getattr(module, "READ_ONLY", ())
        merge = name in getattr(module, "MERGED", ())  # runs programs without the lock
        contents = write or name not in getattr(module, "NO_CONTENTS", ())
        from pybpf.kernel import state  # imported when a command runs (not for help)

        with state.session(write=write, merge=merge, contents=contents,
                           tag_algorithm=ctx.tag_algo) as kernel:  # fmt: skip
            ctx.kernel = kernel
            return module.COMMANDS[name](ctx, args)
    except PybpfError as err:  # the session is not saved: a failed command changes nothing
        return _error(ctx, " ".join(str(err).split()), getattr(err, "status", EXIT_ERROR))
    except BrokenPipeError:
        return 0


def _options(arg: str) -> list[str] | None:
    """The global options ``arg`` sets (``-jp`` sets two), or None if it is not one."""
    if arg in _OPTIONS:
        return [_OPTIONS[arg]]
    if (
        len(arg) > 2
        and arg[0] == "-"
        and arg[1] != "-"
        and all(f"-{c}" in _OPTIONS for c in arg[1:])
    ):
        return [_OPTIONS[f"-{c}"] for c in arg[1:]]
    return None


def _error(ctx: Ctx, message: str, status: int = EXIT_ERROR) -> int:
    if ctx.json:
        ctx.emit_json({"error": message})
    else:
        ctx.err.write(f"Error: {message}\n")
    return status


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - via pybpf
    return dispatch(sys.argv[1:] if argv is None else argv)
