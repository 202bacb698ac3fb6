r"""Usage: pybpf prog { show | list } [PROG]
       pybpf prog dump xlated PROG [{ file FILE | opcodes | linum }]
       pybpf prog dump jited  PROG [{ file FILE | [opcodes] [linum] }]
       pybpf prog pin   PROG FILE
       pybpf [--engine interp|jit] prog { load | loadall } OBJ  PATH \
                         [type TYPE] [pinmaps MAP_DIR]
       pybpf [--engine interp|jit] prog run PROG \
                         data_in FILE \
                         [data_out FILE [data_size_out L]] \
                         [ctx_in FILE [ctx_out FILE [ctx_size_out M]]] \
                         [repeat N] [trace]
       pybpf prog tracelog [follow]
       pybpf prog help

       PROG := { id PROG_ID | pinned FILE | tag PROG_TAG | name PROG_NAME }
       TYPE := a libbpf section name: { socket | kprobe | classifier | action |
                 tracepoint | raw_tracepoint | xdp | perf_event | cgroup/skb | ... }
       OPTIONS := { {-j|--json} [{-p|--pretty}] | {-d|--debug} }

       pybpf extensions: 'run ... trace' prints every executed instruction and the
       registers it changed; 'tracelog' prints what the trace pipe holds and returns
       ('follow' polls it every 0.5 s until Ctrl-C, as bpftool's tracelog does).
       '--engine' picks the engine a program runs on: 'jit' compiles it to native code
       (listed 'jited NB', 'dump jited' shows the code), 'interp' runs it in pybpf's
       interpreter (listed 'not jited'); the choice stays with the loaded program.
       On 'prog run' it runs that one test on the given engine.
"""

# Notes on fidelity (bpftool 7.1 / src/prog.c, the seeds):
# * show: print_prog_plain / print_prog_json, field for field; "orphaned" is printed as
#   newer bpftool (and the seed) print it; "jited NB" / "bytes_jited" for programs the
#   JIT compiled, "not jited" / "jited": false for those on the interpreter (jited.py);
#   "pinned" only with -f (ctx.bpffs), as bpftool's show_pinned.
# * memlock: the kernel charges a program bpf_prog_size(len) rounded up to pages
#   (struct bpf_prog's header, about 72 bytes on x86-64, plus 8 bytes per slot);
#   4096 for every program under 503 slots, as the seed shows.
# * helper calls: the kernel rewrites a helper's imm to (address - __bpf_call_base)
#   and bpftool prints it after '#'; pybpf has no addresses and prints the stable fake
#   offset HELPER_BASE - HELPER_STRIDE * id (bpf_trace_printk#-67072); a kfunc call
#   names its kfunc with KFUNC_BASE - HELPER_STRIDE * its BTF id.
# * a selector that matches nothing (name, tag) prints nothing and exits 255, as
#   bpftool's prog_parse_fds returning 0.

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from pybpf.cli.bpftool import jited
from pybpf.cli.bpftool.common import EXIT_ERROR, CommandError, Ctx, match, no_more, take
from pybpf.cli.bpftool.memlock import prog_memlock
from pybpf.errors import KernelError, PybpfError
from pybpf.isa import encode, slot_offsets
from pybpf.isa.helper_ids import helper_name as _helper_name
from pybpf.kernel import state
from pybpf.runtime.progtypes import PROG_TYPES, sec_to_prog_type
from pybpf.runtime.tag import prog_tag

HELPER_BASE = -65536  # fake helper offsets: HELPER_BASE - HELPER_STRIDE * id
HELPER_STRIDE = 256
KFUNC_BASE = -(1 << 24)  # fake kfunc offsets: KFUNC_BASE - HELPER_STRIDE * BTF id
DEFAULT_SIZE_OUT = 32 * 1024  # bpftool's SZ_32K
SELECTORS = ("id", "tag", "name", "pinned")
FOLLOW_INTERVAL = 0.5


# --- output helpers ------------------------------------------------------------------
def helper_text(insn) -> str | None:
    """``bpf_<helper>#<fake offset>`` for a helper call (see the notes above)."""
    if insn.code != 0x85 or insn.src_reg != 0:
        return None
    name = _helper_name(insn.imm)
    if name is None:
        return None
    return f"bpf_{name}#{HELPER_BASE - HELPER_STRIDE * insn.imm}"


def _type_name(prog) -> str | None:
    spec = PROG_TYPES.get(prog.prog_type)
    return spec.name if spec is not None else None


def _loaded_at(prog, json_mode: bool) -> str | int:
    if json_mode:
        return int(prog.loaded_at)
    return datetime.fromtimestamp(prog.loaded_at).astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")


def _pins_of(ctx: Ctx) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for path, record in state.pins(ctx.kernel).items():
        if record.get("type") == "prog":
            out.setdefault(record.get("id"), []).append(path)
    return out


# --- PROG := id N | tag TAG | name NAME | pinned FILE -----------------------------------
def select(ctx: Ctx, args: list[str]) -> list:
    """prog_parse_fds: the programs PROG names (possibly none for tag and name)."""
    word = take(args, "PROG")
    try:
        kind = match(word, SELECTORS, "PROG")
    except CommandError:
        raise CommandError(f"expected 'id', 'tag', 'name' or 'pinned', got: '{word}'?") from None
    if not args:
        raise CommandError(f"what is '{word}'?")
    value = args.pop(0)
    kernel = ctx.kernel
    progs = [kernel.progs[i] for i in sorted(kernel.progs)]
    if kind == "id":
        try:
            ident = int(value, 0)
        except ValueError:
            raise CommandError(f"can't parse {value} as ID") from None
        if ident not in kernel.progs:
            raise CommandError(f"get by id ({ident}): {os.strerror(2)}")
        return [kernel.progs[ident]]
    if kind == "tag":
        try:
            tag = bytes.fromhex(value).hex()
        except ValueError:
            tag = ""
        if len(tag) != 16:
            raise CommandError("can't parse tag")
        return [p for p in progs if p.tag == tag]
    if kind == "name":
        if len(value) > 127:
            raise CommandError("can't parse name")
        return [p for p in progs if p.name == value]
    try:
        obj = state.pinned(kernel, value)
    except KernelError as err:
        raise CommandError(f"bpf obj get ({value}): {os.strerror(err.errno or 22)}") from None
    if obj not in progs:
        raise CommandError("incorrect object type: map")
    return [obj]


def select_one(ctx: Ctx, args: list[str]):
    """prog_parse_fd: exactly one program."""
    progs = select(ctx, args)
    if len(progs) != 1:
        raise CommandError("several programs match this handle" if progs else
                           "no program matches this handle")  # fmt: skip
    return progs[0]


# --- show ------------------------------------------------------------------------------
def prog_json(ctx: Ctx, prog, pins: dict[int, list[str]] | None) -> dict:
    """print_prog_json's fields, in its order."""
    out: dict = {"id": prog.id, "type": _type_name(prog) or int(prog.prog_type)}
    if prog.name:
        out["name"] = prog.name
    out["tag"] = prog.tag
    out["gpl_compatible"] = prog.gpl_compatible
    if prog.run_time_ns:
        out["run_time_ns"] = prog.run_time_ns
        out["run_cnt"] = prog.run_count
    out["loaded_at"] = _loaded_at(prog, True)
    out["uid"] = prog.uid
    out["orphaned"] = False
    out["bytes_xlated"] = prog.bytes_xlated
    size = jited.bytes_jited(prog)
    out["jited"] = bool(size)
    if size:
        out["bytes_jited"] = size
    out["bytes_memlock"] = prog_memlock(prog)
    if prog.map_ids:
        out["map_ids"] = list(prog.map_ids)
    if getattr(prog, "btf_id", 0):
        out["btf_id"] = prog.btf_id
    if pins is not None:
        out["pinned"] = pins.get(prog.id, [])
    return out


def header_plain(prog) -> str:
    """print_prog_header_plain."""
    kind = _type_name(prog)
    line = f"{prog.id}: " + (f"{kind}  " if kind else f"type {int(prog.prog_type)}  ")
    if prog.name:
        line += f"name {prog.name}  "
    line += f"tag {prog.tag}" + ("  gpl" if prog.gpl_compatible else "")
    if prog.run_time_ns:
        line += f" run_time_ns {prog.run_time_ns} run_cnt {prog.run_count}"
    return line + "\n"


def prog_plain(prog, pins: dict[int, list[str]] | None) -> str:
    """print_prog_plain."""
    text = header_plain(prog)
    text += f"\tloaded_at {_loaded_at(prog, False)}  uid {prog.uid}\n"
    size = jited.bytes_jited(prog)
    text += f"\txlated {prog.bytes_xlated}B  " + (f"jited {size}B" if size else "not jited")
    text += f"  memlock {prog_memlock(prog)}B"
    if prog.map_ids:
        text += "  map_ids " + ",".join(map(str, prog.map_ids))
    for path in (pins or {}).get(prog.id, []):
        text += f"\n\tpinned {path}"
    if getattr(prog, "btf_id", 0):
        text += f"\n\tbtf_id {prog.btf_id}"
    return text + "\n"


def do_show(ctx: Ctx, args: list[str]) -> int:
    pins = _pins_of(ctx) if getattr(ctx, "bpffs", False) else None
    if args:
        progs = select(ctx, args)
        no_more(args)
        if not progs:
            if ctx.json:
                ctx.out.write("\n")  # json_writer's closing newline
            return EXIT_ERROR
        if ctx.json:
            objs = [prog_json(ctx, p, pins) for p in progs]
            ctx.emit_json(objs[0] if len(objs) == 1 else objs)
        else:
            ctx.out.write("".join(prog_plain(p, pins) for p in progs))
        return 0
    progs = [ctx.kernel.progs[i] for i in sorted(ctx.kernel.progs)]
    if ctx.json:
        ctx.emit_json([prog_json(ctx, p, pins) for p in progs])
    else:
        ctx.out.write("".join(prog_plain(p, pins) for p in progs))
    return 0


# --- dump ------------------------------------------------------------------------------
def _linum(prog) -> dict[int, str]:
    return getattr(prog, "linum", {}) or {}


_FUNC_NAME = re.compile(r"(\w+)\s*\(")


def _subprog_symbols(prog, insns, pcs, notes) -> dict[int, str]:
    """The kallsyms name of each subprogram of a JIT-compiled program, by start pc:
    ``bpf_prog_<tag>_<name>``, the tag of the subprogram's own instructions and the
    name of its BTF function (``F`` without BTF), as bpftool shows after ``call pc+N``."""
    if not jited.bytes_jited(prog):
        return {}  # bpftool prints no symbol for interpreted programs
    starts = {0}
    for pc, insn in zip(pcs, insns, strict=True):
        if (insn.code == 0x85 or insn.code == 0x18) and insn.src_reg in (1, 4) and \
                not (insn.code == 0x85 and insn.src_reg == 4):  # fmt: skip
            starts.add(pc + insn.imm + 1)
    bounds = sorted(starts) + [sum(i.slots for i in insns)]
    index = {start: i for i, start in enumerate(bounds)}
    # jit_subprogs tags each subprogram with its calls as it left them: off the callee's
    # index, imm 1
    tagged = [replace(i, off=index.get(pc + i.imm + 1, 0), imm=1)
              if i.code == 0x85 and i.src_reg == 1 else i
              for pc, i in zip(pcs, insns, strict=True)]  # fmt: skip
    out = {}
    for start, end in itertools.pairwise(bounds):
        body = [i for pc, i in zip(pcs, tagged, strict=True) if start <= pc < end]
        sig = next((line for line in notes.get(start, ()) if line.endswith(":")), "")
        name = _FUNC_NAME.findall(sig.split("(")[0] + "(") if sig else []
        tag = prog_tag(body, prog.kernel.tag_algorithm)
        out[start] = f"bpf_prog_{tag}_{name[-1] if name else 'F'}"
    return out


def _shown(prog):
    """The image the kernel shows, its call texts by instruction, and its notes by pc."""
    view = prog.shown
    moved = view.pc_map
    notes = {moved.get(pc, pc): lines
             for pc, lines in (getattr(prog, "notes", {}) or {}).items()}  # fmt: skip
    pcs = slot_offsets(view.insns)
    texts = {}
    subprogs = _subprog_symbols(prog, view.insns, pcs, notes)
    for pc, insn in zip(pcs, view.insns, strict=True):
        if pc in view.symbols:
            base = KFUNC_BASE if insn.code == 0x85 and insn.src_reg == 2 else HELPER_BASE
            texts[id(insn)] = f"{view.symbols[pc]}#{base - HELPER_STRIDE * insn.imm}"
        elif insn.code == 0x85 and insn.src_reg == 1 and pc + insn.imm + 1 in subprogs:
            texts[id(insn)] = f"pc{insn.imm:+d}#{subprogs[pc + insn.imm + 1]}"

    def call_text(insn) -> str | None:
        return texts.get(id(insn)) or helper_text(insn)

    linum = {moved.get(pc, pc): where for pc, where in _linum(prog).items()}
    return view.insns, call_text, notes, linum


def xlated_plain(prog, *, opcodes: bool = False, linum: bool = False) -> str:
    """dump_xlated_plain: signature and source lines from BTF, then the instructions."""
    from pybpf.asm import xlated

    insns, call_text, shown_notes, where_at = _shown(prog)
    notes = {pc: list(lines) for pc, lines in shown_notes.items()}
    if linum:
        for pc, where in where_at.items():
            lines = notes.get(pc, [])
            for i, line in enumerate(lines):
                if line.startswith("; "):
                    lines[i] = f"{line} {where}"
    return xlated.disassemble(insns, helper_name=call_text, opcodes=opcodes,
                              notes=notes)  # fmt: skip


def xlated_json(prog, *, opcodes: bool = False, linum: bool = False) -> list[dict]:
    """dump_xlated_json: one object per instruction (proto, src, disasm, opcodes)."""
    from pybpf.asm import xlated

    insns, call_text, notes, where_at = _shown(prog)
    out = []
    for pc, insn in zip(slot_offsets(insns), insns, strict=True):
        item: dict = {}
        for line in notes.get(pc, ()):
            if line.startswith("; "):
                item["src"] = line[2:]
                if linum and pc in where_at:
                    item.update(_linum_fields(where_at[pc]))
            elif line.endswith(":"):
                item["proto"] = line[:-1]
        item["disasm"] = xlated.format_insn(insn, helper_name=call_text)
        if opcodes:
            raw = encode([insn])
            item["opcodes"] = {
                "code": f"{raw[0]:#x}", "src_reg": f"{raw[1] >> 4:#x}",
                "dst_reg": f"{raw[1] & 15:#x}", "off": [f"0x{b:02x}" for b in raw[2:4]],
                "imm": [f"0x{b:02x}" for b in raw[4:]],
            }  # fmt: skip
        out.append(item)
    return out


def _linum_fields(where: str) -> dict:
    fields = dict(part.split(":", 1) for part in where.strip("[]").split())
    return {"file": fields.get("file", ""), "line_num": int(fields.get("line_num", 0)),
            "line_col": int(fields.get("line_col", 0))}  # fmt: skip


def do_dump(ctx: Ctx, args: list[str]) -> int:
    word = take(args, "'xlated' or 'jited'")
    if "jited".startswith(word):
        mode = "jited"
    elif "xlated".startswith(word):
        mode = "xlated"
    else:
        raise CommandError(f"expected 'xlated' or 'jited', got: {word}")
    progs = select(ctx, args)
    if not progs:
        return EXIT_ERROR
    filepath, opcodes, linum = None, False, False
    while args:
        word = args.pop(0)
        kw = match(word, ("file", "opcodes", "linum", "visual"), "dump option")
        if kw == "file":
            if not args:
                raise CommandError("expected file path")
            if len(progs) > 1:
                raise CommandError("several programs matched")
            filepath = args.pop(0)
        elif kw == "visual":
            raise CommandError("'visual' (a DOT graph) is not supported by pybpf")
        elif kw == "opcodes":
            opcodes = True
        else:
            linum = True
    if filepath and (opcodes or linum):
        raise CommandError("'file' is not compatible with 'opcodes', 'visual', or 'linum'")
    if mode == "jited":
        return _dump_jited(ctx, progs, filepath, opcodes=opcodes, linum=linum)
    if filepath:
        try:
            Path(filepath).write_bytes(encode(progs[0].shown.insns))
        except OSError as err:
            raise CommandError(f"can't open file {filepath}: {err.strerror}") from None
        if ctx.json:
            ctx.emit_json(None)
        return 0
    many = len(progs) > 1
    if ctx.json:
        dumps = []
        for p in progs:
            insns = xlated_json(p, opcodes=opcodes, linum=linum)
            if many:
                head = prog_json(ctx, p, None)
                keep = ("id", "type", "name", "tag", "gpl_compatible", "run_time_ns", "run_cnt")
                dumps.append({k: head[k] for k in keep if k in head} | {"insns": insns})
            else:
                dumps.append(insns)
        ctx.emit_json(dumps if many else dumps[0])
        return 0
    texts = [(header_plain(p) if many else "") + xlated_plain(p, opcodes=opcodes, linum=linum)
             for p in progs]  # fmt: skip
    ctx.out.write("\n".join(texts))
    return 0


def _dump_jited(ctx: Ctx, progs: list, filepath: str | None, *, opcodes: bool,
                linum: bool) -> int:  # fmt: skip
    """prog_dump in DUMP_JITED mode, for each program in turn (bpftool stops at the first
    without an image, after printing those before it)."""
    many = len(progs) > 1
    dumps: list = []
    texts: list[str] = []
    error = None
    for p in progs:
        if not jited.bytes_jited(p):
            error = CommandError(jited.NO_IMAGE)
            break
        if filepath:
            try:
                Path(filepath).write_bytes(jited.image(p))
            except OSError as err:
                raise CommandError(f"can't open file {filepath}: {err.strerror}") from None
            if ctx.json:
                ctx.emit_json(None)
            return 0
        if ctx.json:
            funcs = jited.dump_json(p, opcodes=opcodes, linum=linum)
            if many:
                head = prog_json(ctx, p, None)
                keep = ("id", "type", "name", "tag", "gpl_compatible", "run_time_ns", "run_cnt")
                dumps.append({k: head[k] for k in keep if k in head} | {"insns": funcs})
            else:
                dumps.append(funcs)
        else:
            texts.append((header_plain(p) if many else "") +
                         jited.dump_plain(p, opcodes=opcodes, linum=linum))  # fmt: skip
    if ctx.json and not error:
        ctx.emit_json(dumps if many else dumps[0])
    elif not ctx.json:
        ctx.out.write("\n".join(texts))
    if error is not None:
        raise error
    return 0


# --- pin -------------------------------------------------------------------------------
def do_pin(ctx: Ctx, args: list[str]) -> int:
    if len(args) < 3:
        raise CommandError(f"'pin' needs at least 3 arguments, {len(args)} found")
    prog = select_one(ctx, args)
    path = take(args, "FILE")
    no_more(args)
    try:
        state.pin(ctx.kernel, path, prog)
    except KernelError as err:
        raise CommandError(f"can't pin the object ({path}): "
                           f"{os.strerror(err.errno or 22)}") from None  # fmt: skip
    if ctx.json:
        ctx.emit_json(None)
    return 0


# --- load / loadall --------------------------------------------------------------------
def _mkdir(ctx: Ctx, path: str) -> None:
    """create_and_mount_bpffs_dir: a directory in the virtual bpffs."""
    try:
        state.pin_file(ctx.kernel.state_root, path.rstrip("/") + "/x").parent.mkdir(
            parents=True, exist_ok=True)  # fmt: skip
    except KernelError as err:
        raise CommandError(f"can't create directory {path}: {err}") from None
    except OSError as err:  # the message names the user's path, not the state directory's
        raise CommandError(f"can't create directory {path}: {err.strerror}") from None


def _new_btf_id(kernel) -> int:
    """The next BTF object id (never reused while the state keeps the blobs)."""
    blobs = kernel.__dict__.setdefault("btf_blobs", {})
    ident = max([getattr(kernel, "_next_btf_id", 1)] + [int(k) + 1 for k in blobs])
    kernel._next_btf_id = ident + 1
    return ident


def kernel_btf_blob(spec) -> bytes:
    """The object's BTF as libbpf hands it to the kernel: DATASEC sizes and offsets fixed up."""
    data = bytearray(spec.btf_data)
    fixed = spec.btf
    if fixed is None or len(data) < 24:
        return bytes(data)
    hdr_len = int.from_bytes(data[4:8], "little")
    type_off = int.from_bytes(data[8:12], "little")
    type_len = int.from_bytes(data[12:16], "little")
    pos, end, ident = hdr_len + type_off, hdr_len + type_off + type_len, 1
    extra = {1: 4, 3: 12, 12: 0, 14: 4, 17: 4}  # INT, ARRAY, FUNC, VAR, DECL_TAG
    per = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}  # struct, union, enum, proto, datasec
    while pos + 12 <= end:
        info = int.from_bytes(data[pos + 4 : pos + 8], "little")
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        if kind == 15 and ident < len(fixed.types):
            t = fixed.type(ident)
            data[pos + 8 : pos + 12] = t.size.to_bytes(4, "little")
            for i, v in enumerate(t.vars[:vlen]):
                at = pos + 12 + 12 * i
                data[at + 4 : at + 8] = v.offset.to_bytes(4, "little")
        pos += 12 + extra.get(kind, 0) + per.get(kind, 0) * vlen
        ident += 1
    return bytes(data)


def _linum_notes(spec, prog_spec) -> dict[int, str]:
    return {info.insn_index: f"[file:{info.file} line_num:{info.line} line_col:{info.col}]"
            for info in prog_spec.line_info}  # fmt: skip


def _load(ctx: Ctx, args: list[str], first_only: bool) -> int:
    from dataclasses import replace

    from pybpf.cli.bpftool.loadlog import load_with_log
    from pybpf.loader import ObjectSpec
    from pybpf.loader.listing import xlated_notes

    cmd = "load" if first_only else "loadall"
    if len(args) < 2:
        raise CommandError(f"'{cmd}' needs at least 2 arguments, {len(args)} found")
    file, path = args.pop(0), args.pop(0)
    prog_type = pinmaps = None
    while args:
        word = args.pop(0)
        try:
            kw = match(word, ("type", "map", "pinmaps", "dev", "offload_dev", "xdpmeta_dev",
                              "autoattach"), "load option")  # fmt: skip
        except CommandError:
            raise CommandError(f"expected no more arguments, 'type', 'map' or 'dev', "
                               f"got: '{word}'?") from None  # fmt: skip
        if kw == "type":
            if prog_type is not None:
                raise CommandError("program type already specified")
            name = take(args, "TYPE")
            try:
                prog_type = sec_to_prog_type(name)
            except (KeyError, PybpfError):
                try:
                    prog_type = sec_to_prog_type(name + "/")
                except (KeyError, PybpfError):
                    raise CommandError(f"unknown program type '{name}'") from None
        elif kw == "pinmaps":
            pinmaps = take(args, "MAP_DIR")
        elif kw == "map":
            raise CommandError("map reuse ('map idx|name ... MAP') is not supported by "
                               "pybpf's loader yet")  # fmt: skip
        else:
            raise CommandError(f"'{kw}' (device binding) is not supported by pybpf")
    try:
        spec = ObjectSpec.from_file(file)
    except OSError as err:
        raise CommandError(f"failed to open object file: {err.strerror}") from None
    except PybpfError as err:
        raise CommandError(f"failed to open object file: {err}") from None
    if not spec.programs:
        raise CommandError("object file doesn't contain any bpf program")
    if prog_type is not None:
        kind, attach = prog_type if isinstance(prog_type, tuple) else (prog_type, 0)
        spec = replace(spec, programs=tuple(replace(p, prog_type=kind,
                       expected_attach_type=attach) for p in spec.programs))  # fmt: skip
    kernel = ctx.kernel
    if ctx.engine:
        kernel.engine = ctx.engine  # this command's programs run there (kept in the state)
    coll = load_with_log(ctx, spec, kernel)
    btf_id = 0
    if spec.btf_data:
        btf_id = _new_btf_id(kernel)
        kernel.btf_blobs[str(btf_id)] = kernel_btf_blob(spec).hex()
    for prog_spec in spec.programs:
        prog = coll.programs.get(prog_spec.name)
        if prog is None:
            continue
        prog.notes = xlated_notes(spec, prog_spec)
        prog.linum = _linum_notes(spec, prog_spec)
        prog.btf_id = btf_id
    for m in coll.maps.values():
        if btf_id and (m.attr.btf_key_type_id or m.attr.btf_value_type_id):
            m.btf_id = btf_id
    made: list[str] = []  # the pins this command made: a failure removes them, and only them

    def pin(target: str, obj, what: str) -> None:
        try:
            state.pin(kernel, target, obj)
        except KernelError as err:
            why = os.strerror(err.errno or 22) if first_only else err
            raise CommandError(f"{what}: {why}") from None
        made.append(target)

    try:
        if first_only:
            first = spec.programs[0]
            pin(path, coll.programs[first.name], f"failed to pin program {first.section}")
        else:
            _mkdir(ctx, path)
            for name, prog in coll.programs.items():
                pin(f"{path.rstrip('/')}/{name}", prog, "failed to pin all programs")
        if pinmaps:
            _mkdir(ctx, pinmaps)
            for name, m in coll.maps.items():
                target = f"{pinmaps.rstrip('/')}/{name.replace('.', '_')}"  # sanitize_pin_path
                pin(target, m, "failed to pin all maps")
    except CommandError:
        for target in reversed(made):  # an existing pin in the way is kept, as bpftool keeps it
            with contextlib.suppress(KernelError):
                state.unpin(kernel, target)
        raise
    if ctx.json:
        ctx.emit_json(None)
    return 0


def do_load(ctx: Ctx, args: list[str]) -> int:
    return _load(ctx, args, True)


def do_loadall(ctx: Ctx, args: list[str]) -> int:
    return _load(ctx, args, False)


# --- run -------------------------------------------------------------------------------
def _read_input(name: str | None) -> bytes | None:
    if name is None:
        return None
    try:
        if name == "-":
            return sys.stdin.buffer.read()
        return Path(name).read_bytes()
    except OSError as err:
        raise CommandError(f"failed to open {name}: {err.strerror}") from None


def hex_print(data: bytes) -> str:
    """bpftool's hex_print (od-like rows with an ASCII column)."""
    out = []
    for i in range(0, len(data), 16):
        row = data[i : i + 16]
        line = f"{i:07x}\t"
        line += "".join(f"{b:02x}" + (" " if j % 2 else "") for j, b in enumerate(row, i))
        line += "".join("  " + (" " if j % 2 else "") for j in range(i + len(row), i + 16))
        line += "| " + "".join((chr(b) if 32 <= b <= 126 else ".") + (" " if j == i + 7 else "")
                               for j, b in enumerate(row, i))  # fmt: skip
        out.append(line + "\n")
    return "".join(out)


def _size(text: str, what: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise CommandError(f"can't parse {text} as {what}") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise CommandError(f"can't parse {text} as {what}")
    return value


def do_run(ctx: Ctx, args: list[str]) -> int:
    from pybpf.runtime.testrun import test_run

    if len(args) < 4:
        raise CommandError(f"'run' needs at least 4 arguments, {len(args)} found")
    prog = select_one(ctx, args)
    ctx.kernel.hold(prog)  # running it, this process holds it (and its maps), as an fd does
    names: dict[str, str | None] = dict.fromkeys(("data_in", "data_out", "ctx_in", "ctx_out"))
    data_size_out = ctx_size_out = 0
    repeat, trace = 1, False
    keywords = ("data_in", "data_out", "data_size_out", "ctx_in", "ctx_out", "ctx_size_out",
                "repeat", "trace")  # fmt: skip
    while args:
        word = args.pop(0)
        try:
            kw = match(word, keywords, "run option")
        except CommandError:
            raise CommandError(
                "expected no more arguments, 'data_in', 'data_out', 'data_size_out', "
                f"'ctx_in', 'ctx_out', 'ctx_size_out', 'repeat' or 'trace', got: '{word}'?"
            ) from None
        if kw == "trace":
            trace = True
            continue
        if not args:
            raise CommandError(f"'{kw}' needs at least 1 arguments, 0 found")
        value = args.pop(0)
        if kw == "data_size_out":
            data_size_out = _size(value, "output data size")
        elif kw == "ctx_size_out":
            ctx_size_out = _size(value, "output context size")
        elif kw == "repeat":
            repeat = _size(value, "repeat number")
        else:
            names[kw] = value
            if names["data_in"] == "-" and names["ctx_in"] == "-":
                raise CommandError("cannot use standard input for both data_in and ctx_in")
    data_in = _read_input(names["data_in"])
    ctx_in = _read_input(names["ctx_in"])
    if data_in is not None and not data_size_out:
        data_size_out = DEFAULT_SIZE_OUT
    if ctx_in is not None and not ctx_size_out:
        ctx_size_out = DEFAULT_SIZE_OUT
    tracer = None
    if trace:
        tracer = _TracedEngine(prog, ctx.err if ctx.json else ctx.out)
    elif ctx.engine and ctx.engine != getattr(prog, "engine_name", "interp"):
        tracer = _OtherEngine(prog, ctx.engine)
    try:
        with tracer or contextlib.nullcontext():
            result = test_run(prog, data_in=data_in or b"", ctx_in=ctx_in, repeat=repeat,
                              data_size_out=data_size_out if data_in is not None else None)
    except KernelError as err:
        raise CommandError(f"failed to run program: {os.strerror(err.errno or 22)} "
                           f"({err})") from None  # fmt: skip
    doc: dict = {}
    for key, data, size in (("data_out", result.data_out, data_size_out),
                            ("ctx_out", result.ctx_out, ctx_size_out)):  # fmt: skip
        fname = names[key]
        if data is None or fname is None or not size:
            continue
        data = bytes(data[:size])
        if fname == "-":
            if ctx.json:
                doc[key] = list(data)
            else:
                ctx.out.write(hex_print(data))
        else:
            try:
                Path(fname).write_bytes(data)
            except OSError as err:
                ctx.err.write(f"Error: failed to open {fname}: {err.strerror}\n")
    if ctx.json:
        doc["retval"] = result.retval
        doc["duration"] = result.duration_ns
        ctx.emit_json(doc)
    else:
        average = " (average)" if repeat > 1 else ""
        ctx.out.write(f"Return value: {result.retval}, duration{average}: "
                      f"{result.duration_ns}ns\n")  # fmt: skip
    return 0


class _OtherEngine:
    """Run the program on another engine (``--engine``) while a test run lasts."""

    def __init__(self, prog, name: str) -> None:
        self.prog, self.name = prog, name
        self.saved = self.engine = None

    def __enter__(self):
        from pybpf.runtime import engines

        prog = self.prog
        old = prog.engine
        self.engine = engines.build(
            self.name, prog.xlated, verified=getattr(prog, "verdict", None) is not None,
            helpers=old.helpers, resolve_imm64=prog._resolve, tail_call=prog._tail_call,
            memory=prog.kernel.space.memory, budget=old.budget,
        )  # fmt: skip
        self.saved, prog.engine = old, self.engine
        return self

    def __exit__(self, *exc) -> None:
        self.prog.engine = self.saved
        if self.engine is not None:
            self.engine.close()


class _TracedEngine:
    """Swap the program's engine for a tracing build of the same image while a run lasts."""

    def __init__(self, prog, out) -> None:
        from pybpf.cli.trace import RegisterTrace

        self.prog = prog
        from pybpf.asm import xlated

        self.trace = RegisterTrace(prog.xlated, out)
        self.trace.text = {  # the listing's dialect (bpftool's), not llvm's
            pc: xlated.format_insn(insn, helper_name=helper_text).split(") ", 1)[1]
            for pc, insn in zip(slot_offsets(prog.xlated), prog.xlated, strict=True)
        }
        self.saved = None
        self.engine = None

    def __enter__(self):
        from pybpf.vm.interpreter import Interpreter

        prog = self.prog
        old = prog.engine
        self.engine = Interpreter(
            prog.xlated, helpers=old.helpers, resolve_imm64=prog._resolve,
            tail_call=prog._tail_call, memory=prog.kernel.space.memory, budget=old.budget,
            tracer=self._tracer,
        )  # fmt: skip
        self.saved, prog.engine = old, self.engine
        return self

    def _tracer(self, pc: int, regs: tuple[int, ...]) -> None:
        if pc == 0 and self.trace._pending is not None:  # a new repetition begins
            pending_pc, before = self.trace._pending
            self.trace._line(pending_pc, before, before)
            self.trace._pending = None
            self.trace.out.write("--\n")
        self.trace(pc, regs)

    def __exit__(self, *exc) -> None:
        self.prog.engine = self.saved
        if self.engine is not None:
            self.engine.close()
        if self.trace._pending is not None:
            pc, before = self.trace._pending
            self.trace._line(pc, before, before)  # the exit's r0 is in the run's retval
            self.trace._pending = None


# --- tracelog ------------------------------------------------------------------------------
def do_tracelog(ctx: Ctx, args: list[str]) -> int:
    follow = False
    if args:
        match(args.pop(0), ("follow",), "tracelog option")
        follow = True
    no_more(args)
    if not follow:
        for line in ctx.kernel.trace.read():
            _emit_line(ctx, line)
        return 0
    return follow_trace(ctx)  # dispatch runs 'tracelog follow' outside the state lock


def follow_trace(ctx: Ctx, *, interval: float = FOLLOW_INTERVAL, polls: int | None = None) -> int:
    """Poll the trace pipe (one short transaction each time) until Ctrl-C or ``polls`` polls."""
    count = 0
    try:
        while polls is None or count < polls:
            lines = state.take_trace()  # no objects restored: the lock is held only briefly
            for line in lines:
                _emit_line(ctx, line)
            ctx.out.flush()
            count += 1
            if polls is None or count < polls:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    return 0


def _emit_line(ctx: Ctx, line: str) -> None:
    if ctx.json:
        ctx.emit_json(line)
    else:
        ctx.out.write(line + "\n")


COMMANDS = {
    "show": do_show,
    "list": do_show,
    "dump": do_dump,
    "pin": do_pin,
    "load": do_load,
    "loadall": do_loadall,
    "run": do_run,
    "tracelog": do_tracelog,
}
# commands that manage their own sessions (dispatch gives them no kernel): following
# the trace pipe must not hold the state lock the writers need
UNLOCKED = {"tracelog": lambda args: any(a and "follow".startswith(a) for a in args)}
READ_ONLY = {"show", "list", "dump"}
NO_CONTENTS = {"show", "list"}  # they show attributes only: the maps' elements stay unread
MERGED = {"run"}  # what it changes is what programs do: merged into the state after the run

__all__ = ["COMMANDS", "READ_ONLY", "UNLOCKED", "helper_text", "kernel_btf_blob",
           "select", "xlated_plain"]
