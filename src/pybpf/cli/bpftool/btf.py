"""Usage: pybpf btf { show | list } [id BTF_ID]
       pybpf btf dump BTF_SRC [format FORMAT]
       pybpf btf help

       BTF_SRC := { id BTF_ID | prog PROG | file FILE }
       FORMAT  := { raw }
       PROG := { id PROG_ID | pinned FILE | tag PROG_TAG | name PROG_NAME }
       OPTIONS := { {-j|--json} [{-p|--pretty}] | {-d|--debug} }

       BTF objects are the blobs 'pybpf prog load' hands the kernel (with libbpf's
       DATASEC fix-ups, as bpftool's 'btf dump id' shows them).  pybpf has no
       vmlinux BTF object (bpftool's id 1) and no C header writer ('format c'), and
       prints the raw format as text only.
"""

from __future__ import annotations

from pathlib import Path

from pybpf.btf import Btf
from pybpf.cli.bpftool.common import CommandError, Ctx, match, no_more, number, take
from pybpf.cli.bpftool.prog import select_one
from pybpf.errors import PybpfError


def _blobs(ctx: Ctx) -> dict[int, bytes]:
    blobs = getattr(ctx.kernel, "btf_blobs", {}) or {}
    return {int(k): bytes.fromhex(v) for k, v in sorted(blobs.items(), key=lambda kv: int(kv[0]))}


def _users(ctx: Ctx, btf_id: int) -> tuple[list[int], list[int]]:
    kernel = ctx.kernel
    progs = [i for i in sorted(kernel.progs) if getattr(kernel.progs[i], "btf_id", 0) == btf_id]
    maps = [i for i in sorted(kernel.maps) if getattr(kernel.maps[i], "btf_id", 0) == btf_id]
    return progs, maps


def do_show(ctx: Ctx, args: list[str]) -> int:
    blobs = _blobs(ctx)
    one = bool(args)
    if args:
        match(take(args, "'id'"), ("id",), "BTF source")
        ident = number(take(args, "BTF_ID"), "BTF ID")
        no_more(args)
        if ident not in blobs:
            raise CommandError(f"get by id ({ident}): No such file or directory")
        blobs = {ident: blobs[ident]}
    docs, lines = [], []
    for ident, blob in blobs.items():
        progs, maps = _users(ctx, ident)
        docs.append({"id": ident, "size": len(blob), "prog_ids": progs, "map_ids": maps,
                     "kernel": False})  # fmt: skip
        line = f"{ident}: name <anon>  size {len(blob)}B"
        if progs:
            line += "  prog_ids " + ",".join(map(str, progs))
        if maps:
            line += "  map_ids " + ",".join(map(str, maps))
        lines.append(line + "\n")
    if ctx.json:
        ctx.emit_json(docs[0] if one else docs)
    else:
        ctx.out.write("".join(lines))
    return 0


def _file_btf(path: str) -> Btf:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise CommandError(f"failed to load BTF from {path}: {err.strerror}") from None
    if data[:4] == b"\x7fELF":
        from pybpf.elf.reader import read_object

        try:
            section = read_object(data, path).section(".BTF")
        except (PybpfError, KeyError, ValueError):
            section = None
        if section is None:
            raise CommandError(f"failed to load BTF from {path}: No data available")
        data = section.data
    return Btf.parse(bytes(data))


def do_dump(ctx: Ctx, args: list[str]) -> int:
    src = match(take(args, "BTF_SRC"), ("id", "prog", "map", "file"), "BTF source")
    if src == "id":
        ident = number(take(args, "BTF_ID"), "BTF ID")
        blob = _blobs(ctx).get(ident)
        if blob is None:
            raise CommandError(f"get btf by id ({ident}): No such file or directory")
        btf = Btf.parse(blob)
    elif src == "prog":
        prog = select_one(ctx, args)
        blob = _blobs(ctx).get(getattr(prog, "btf_id", 0))
        if blob is None:
            raise CommandError(f"can't get BTF object id for prog {prog.id}: no BTF")
        btf = Btf.parse(blob)
    elif src == "map":
        raise CommandError("'btf dump map' is not supported by pybpf yet; "
                           "use 'btf dump id' with the map's btf_id")  # fmt: skip
    else:
        btf = _file_btf(take(args, "FILE"))
    fmt = "raw"
    if args:
        match(args.pop(0), ("format",), "option")
        fmt = match(take(args, "FORMAT"), ("raw", "c"), "format")
    no_more(args)
    if fmt == "c":
        raise CommandError("format c is not supported by pybpf (it has no C header writer)")
    if ctx.json:
        raise CommandError("JSON output of 'btf dump' is not supported by pybpf; "
                           "omit -j for bpftool's raw text")  # fmt: skip
    ctx.out.write(btf.dump_raw())
    return 0


COMMANDS = {"show": do_show, "list": do_show, "dump": do_dump}
READ_ONLY = {"show", "list", "dump"}
