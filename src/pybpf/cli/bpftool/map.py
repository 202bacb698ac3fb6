"""Usage: pybpf map { show | list }   [MAP]
       pybpf map create     FILE type TYPE key KEY_SIZE value VALUE_SIZE \\
                                  entries MAX_ENTRIES name NAME [flags FLAGS] \\
                                  [inner_map MAP] [dev NAME]
       pybpf map dump       MAP
       pybpf map update     MAP [key DATA] [value VALUE] [UPDATE_FLAGS]
       pybpf map lookup     MAP [key DATA]
       pybpf map getnext    MAP [key DATA]
       pybpf map delete     MAP  key DATA
       pybpf map pin        MAP  FILE
       pybpf map peek       MAP
       pybpf map push       MAP value VALUE
       pybpf map pop        MAP
       pybpf map enqueue    MAP value VALUE
       pybpf map dequeue    MAP
       pybpf map freeze     MAP
       pybpf map help

       MAP := { id MAP_ID | pinned FILE | name MAP_NAME }
       DATA := { [hex] BYTES }
       PROG := { id PROG_ID | pinned FILE | tag PROG_TAG | name PROG_NAME }
       VALUE := { DATA | MAP | PROG }
       UPDATE_FLAGS := { any | exist | noexist }
       TYPE := { hash | array | prog_array | perf_event_array | percpu_hash |
                 percpu_array | stack_trace | cgroup_array | lru_hash |
                 lru_percpu_hash | lpm_trie | array_of_maps | hash_of_maps |
                 devmap | devmap_hash | sockmap | cpumap | xskmap | sockhash |
                 cgroup_storage | reuseport_sockarray | percpu_cgroup_storage |
                 queue | stack | sk_storage | struct_ops | ringbuf | inode_storage |
                 task_storage | bloom_filter | user_ringbuf }
       OPTIONS := { {-j|--json} [{-p|--pretty}] | {-d|--debug} }

       Maps live in pybpf's persistent kernel model; FILE is a path under /sys/fs/bpf
       in pybpf's virtual bpffs.  Types pybpf does not implement are refused at create.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Any

from pybpf.cli.bpftool.common import EXIT_ERROR, CommandError, Ctx
from pybpf.cli.bpftool.memlock import map_memlock as memlock
from pybpf.cli.bpftool.memlock import round8
from pybpf.cli.bpftool.prog import select_one
from pybpf.errors import KernelError, PybpfError
from pybpf.kernel import state
from pybpf.runtime.maps.base import Map, MapAttr, MapType

# --- bpftool's helpers ---------------------------------------------------------------------
_PER_CPU = (MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
            MapType.PERCPU_CGROUP_STORAGE)  # fmt: skip
_MAP_OF_MAPS = (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)
_OBJ_NAME_LEN = 16  # BPF_OBJ_NAME_LEN


def is_prefix(word: str, full: str) -> bool:
    """bpftool's is_prefix(): ``word`` starts ``full`` (so "" matches everything)."""
    return full.startswith(word)


def fail(ctx: Ctx, message: str, status: int = EXIT_ERROR) -> CommandError:
    """The error ending the command: dispatch prints it as bpftool's p_err does."""
    return CommandError(message, status)


def errno_status(err: int) -> int:
    """The exit status of bpftool returning libbpf's ``-errno``."""
    return (-err) & 0xFF


def strerror(err: KernelError | int) -> str:
    """The C library's text for an errno (524, ENOTSUPP, is "Unknown error 524")."""
    num = err if isinstance(err, int) else (err.errno or errno.EINVAL)
    return os.strerror(num)


def _errno(err: KernelError) -> int:
    return err.errno or errno.EINVAL


def bad_arg(ctx: Ctx, word: str) -> CommandError:
    return fail(ctx, f"what is '{word}'?")


def req_args(ctx: Ctx, args: list[str], count: int, what: str) -> None:
    """bpftool's REQ_ARGS: ``'X' needs at least N arguments, M found``."""
    if len(args) < count:
        raise fail(ctx, f"'{what}' needs at least {count} arguments, {len(args)} found")


def strtoul(text: str, base: int = 0) -> int | None:
    """C's strtoul over the whole word (None when characters are left over)."""
    m = re.fullmatch(r"\s*([+-]?)(0[xX])?([0-9a-fA-F]*)", text)
    if m is None:
        return None
    sign, prefix, digits = m.groups()
    if base == 0:
        if prefix:
            base = 16
        elif digits.startswith("0") and len(digits) > 1:
            base = 8
        else:
            base = 10
    elif prefix and base != 16:
        return None
    if prefix and not digits:
        return None  # "0x": strtoul parses the 0 and stops at the x
    try:
        value = int(digits, base) if digits else 0
    except ValueError:
        return None
    value = min(value, (1 << 64) - 1)
    return (-value) & ((1 << 64) - 1) if sign == "-" else value


def map_type_name(t: int) -> str | None:
    """libbpf_bpf_map_type_str."""
    try:
        return MapType(t).name.lower()
    except ValueError:
        return None


# --- MAP and PROG handles ----------------------------------------------------------------------
def _pinned(ctx: Ctx, path: str, kind: str) -> Any:
    try:
        obj = state.pinned(ctx.kernel, path)
    except KernelError as err:
        text = strerror(err)
        if err.errno == errno.EINVAL and "not a path" in str(err):
            text = "directory not in bpf file system (bpffs)"
        raise fail(ctx, f"bpf obj get ({path}): {text}") from None
    actual = "map" if isinstance(obj, Map) else "prog"
    if actual != kind:
        raise fail(ctx, f"incorrect object type: {actual}")
    return obj


def _need(ctx: Ctx, args: list[str], what: str) -> str:
    if not args:
        raise fail(ctx, f"missing {what}")
    return args.pop(0)


def parse_maps(ctx: Ctx, args: list[str]) -> list[Map]:
    """bpftool's map_parse_fds: MAP := id N | name NAME | pinned PATH (several by name)."""
    word = _need(ctx, args, "MAP: id MAP_ID | pinned FILE | name MAP_NAME")
    kernel = ctx.kernel
    if is_prefix(word, "id"):
        text = _need(ctx, args, "map id")
        ident = strtoul(text)
        if ident is None:
            raise fail(ctx, f"can't parse {text} as ID")
        m = kernel.maps.get(ident & 0xFFFFFFFF)
        if m is None:
            raise fail(ctx, f"get map by id ({ident & 0xFFFFFFFF}): {strerror(errno.ENOENT)}")
        return [m]
    if is_prefix(word, "name"):
        name = _need(ctx, args, "map name")
        if len(name.encode()) > _OBJ_NAME_LEN - 1:
            raise fail(ctx, "can't parse name")
        found = [kernel.maps[i] for i in sorted(kernel.maps) if kernel.maps[i].name == name]
        if not found:  # bpftool fails silently here
            raise fail(ctx, f"no map named {name}")
        return found
    if is_prefix(word, "pinned"):
        return [_pinned(ctx, _need(ctx, args, "pinned path"), "map")]
    raise fail(ctx, f"expected 'id', 'name' or 'pinned', got: '{word}'?")


def parse_map(ctx: Ctx, args: list[str]) -> Map:
    """bpftool's map_parse_fd: exactly one map."""
    found = parse_maps(ctx, args)
    if len(found) > 1:
        raise fail(ctx, "several maps match this handle")
    return found[0]


def parse_prog(ctx: Ctx, args: list[str]) -> Any:
    """bpftool's prog_parse_fd: PROG := id N | tag TAG | name NAME | pinned PATH."""
    return select_one(ctx, args)


# --- DATA ---------------------------------------------------------------------------------------
def parse_bytes(ctx: Ctx, args: list[str], name: str, n: int) -> bytes:
    """bpftool's parse_bytes: ``[hex] B0 B1 ...``, exactly ``n`` words, each a byte."""
    base = 0
    if args and is_prefix(args[0], "hex"):
        base = 16
        args.pop(0)
    out = bytearray()
    while len(out) < n and args:
        word = args[0]
        value = strtoul(word, base)
        if value is None:
            raise fail(ctx, f"error parsing byte: {word}")
        out.append(value & 0xFF)
        args.pop(0)
    if len(out) != n:
        raise fail(ctx, f"{name} expected {n} bytes got {len(out)}")
    return bytes(out)


class Elem:
    """What parse_elem gathered: key, value (bytes, or a map/program for fd maps), flags."""

    def __init__(self) -> None:
        self.key: bytes | None = None
        self.value: bytes | None = None
        self.obj: Any = None
        self.flags = 0


def parse_elem(ctx: Ctx, args: list[str], m: Map, *, want_key: bool, want_value: bool,
               want_flags: bool, elem: Elem | None = None) -> Elem:  # fmt: skip
    """bpftool's parse_elem, recursive as the C: each of key, value, flags at most once."""
    elem = elem or Elem()
    if not args:
        if not want_key and not want_value:
            return elem
        raise fail(ctx, f"did not find {'key' if want_key else 'value'}")
    word = args[0]
    if is_prefix(word, "key"):
        if not want_key:
            raise fail(ctx, "duplicate key" if m.key_size else "unnecessary key")
        args.pop(0)
        elem.key = parse_bytes(ctx, args, "key", m.key_size)
        return parse_elem(ctx, args, m, want_key=False, want_value=want_value,
                          want_flags=want_flags, elem=elem)  # fmt: skip
    if is_prefix(word, "value"):
        if not want_value:
            raise fail(ctx, "duplicate value" if m.value_size else "unnecessary value")
        args.pop(0)
        if m.map_type in _MAP_OF_MAPS or m.map_type == MapType.PROG_ARRAY:
            progs = m.map_type == MapType.PROG_ARRAY
            what = "map of progs" if progs else "map in map"
            if m.value_size != 4:
                raise fail(ctx, f"value smaller than 4B for {what}?")
            if len(args) < 2:
                raise fail(ctx, f"not enough value arguments for {what}")
            if progs and is_prefix(args[0], "id") and not ctx.json:
                ctx.err.write("Warning: updating program array via MAP_ID, make sure this map "
                              "is kept open\n         by some process or pinned otherwise "
                              "update will be lost\n")  # fmt: skip
            elem.obj = parse_prog(ctx, args) if progs else parse_map(ctx, args)
            elem.value = elem.obj.id.to_bytes(4, "little")
        else:
            value = parse_bytes(ctx, args, "value", m.value_size)
            if m.map_type in _PER_CPU:  # fill_per_cpu_value
                value = value.ljust(round8(m.value_size), b"\0") * m.ncpus
            elem.value = value
        return parse_elem(ctx, args, m, want_key=want_key, want_value=False,
                          want_flags=want_flags, elem=elem)  # fmt: skip
    if any(is_prefix(word, f) for f in ("any", "noexist", "exist")):
        if not want_flags:
            raise fail(ctx, f"flags specified multiple times: {word}")
        args.pop(0)
        elem.flags = 0 if is_prefix(word, "any") else 1 if is_prefix(word, "noexist") else 2
        return parse_elem(ctx, args, m, want_key=want_key, want_value=want_value,
                          want_flags=False, elem=elem)  # fmt: skip
    raise fail(ctx, f"expected key or value, got: {word}")


# --- output -------------------------------------------------------------------------------------
def _hex(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def _hex_json(data: bytes) -> list[str]:
    return [f"0x{b:02x}" for b in data]


def _btf(ctx: Ctx, m: Map) -> Any:
    """The map's BTF (a :class:`pybpf.btf.Btf`) when it has a value type, else None."""
    btf_id = getattr(m, "btf_id", 0)
    if not btf_id or not m.attr.btf_value_type_id:
        return None
    cache = ctx.__dict__.setdefault("_btf_cache", {})
    if btf_id not in cache:
        blob = (getattr(ctx.kernel, "btf_blobs", None) or {}).get(str(btf_id))
        btf = None
        if blob:
            from pybpf.btf import Btf

            try:
                btf = Btf.parse(bytes.fromhex(blob) if isinstance(blob, str) else bytes(blob))
            except (PybpfError, ValueError):
                btf = None
        cache[btf_id] = btf
    return cache[btf_id]


def _split_values(m: Map, value: bytes) -> list[bytes]:
    step = round8(m.value_size)
    return [value[i * step : i * step + m.value_size] for i in range(m.ncpus)]


def _entry_json(ctx: Ctx, m: Map, key: bytes, value: bytes) -> dict[str, Any]:
    """print_entry_json: hex key and value(s), and ``formatted`` with BTF."""
    out: dict[str, Any] = {"key": _hex_json(key)}
    per_cpu = m.map_type in _PER_CPU
    if per_cpu:
        out["values"] = [{"cpu": i, "value": _hex_json(v)}
                         for i, v in enumerate(_split_values(m, value))]  # fmt: skip
    else:
        out["value"] = _hex_json(value[: m.value_size])
    btf = _btf(ctx, m)
    if btf is not None:
        out["formatted"] = _formatted(btf, m, key, value, plain=False)
    return out


def _formatted(btf: Any, m: Map, key: bytes, value: bytes, *, plain: bool) -> Any:
    from pybpf.btf import format_entry

    data: bytes | list[bytes] = value
    if m.map_type in _PER_CPU:
        data = _split_values(m, value)
    return format_entry(btf, m.attr.btf_key_type_id, m.attr.btf_value_type_id, key, data,
                        plain=plain)  # fmt: skip


def _entry_plain(m: Map, key: bytes, value: bytes) -> str:
    """print_entry_plain."""
    ks, vs = m.key_size, m.value_size
    if m.map_type not in _PER_CPU:
        break_names = ks > 16 or vs > 16
        single = ks + vs <= 24 and not break_names
        sep = "\n" if break_names else " "
        text = ""
        if ks:
            text += f"key:{sep}{_hex(key)}" + ("  " if single else "\n")
        if vs:
            text += f"value:{sep}{_hex(value[:vs])}"
        return text + "\n"
    text = f"key:\n{_hex(key)}\n" if ks else ""
    if vs:
        for i, v in enumerate(_split_values(m, value)):
            text += f"value (CPU {i:02d}):{chr(10) if vs > 16 else ' '}{_hex(v)}\n"
    return text


def _entry_error_plain(m: Map, key: bytes, message: str) -> str:
    """print_entry_error_msg."""
    break_names = m.key_size > 16 or len(message) > 16
    single = m.key_size + len(message) <= 24 and not break_names
    sep = "\n" if break_names else " "
    return f"key:{sep}{_hex(key)}{'  ' if single else chr(10)}value:{sep}{message}\n"


def _print_key_value(ctx: Ctx, m: Map, key: bytes, value: bytes) -> None:
    """print_key_value: JSON, BTF-formatted plain text, or hex."""
    from pybpf.btf import render_plain

    if ctx.json:
        ctx.emit_json(_entry_json(ctx, m, key, value))
        return
    btf = _btf(ctx, m)
    if btf is not None:
        ctx.out.write(render_plain(_formatted(btf, m, key, value, plain=True)) + "\n")
    else:
        ctx.out.write(_entry_plain(m, key, value))


# --- show ---------------------------------------------------------------------------------------
def _pins_by_id(ctx: Ctx) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for path, record in state.pins(ctx.kernel).items():
        if isinstance(record, dict) and record.get("type") == "map":
            out.setdefault(record.get("id"), []).append(path)
    return out


def _owner(m: Map) -> tuple[str | None, bool | None]:
    owner = getattr(m, "owner_prog_type", None) or getattr(m, "owner_type", None)
    if owner is None:
        return None, None
    from pybpf.runtime.progtypes import PROG_TYPES

    spec = PROG_TYPES.get(owner)
    return (spec.name if spec is not None else str(int(owner))), False


def show_json(ctx: Ctx, m: Map, pins: dict[int, list[str]] | None) -> dict[str, Any]:
    """show_map_close_json's object."""
    out: dict[str, Any] = {"id": m.id, "type": map_type_name(m.map_type) or int(m.map_type)}
    if m.name:
        out["name"] = m.name
    out.update(flags=m.map_flags, bytes_key=m.key_size, bytes_value=m.value_size,
               max_entries=m.max_entries, bytes_memlock=memlock(m, m.ncpus))  # fmt: skip
    if m.map_type == MapType.PROG_ARRAY:
        owner, jited = _owner(m)
        if owner is not None:
            out["owner_prog_type"] = owner
            out["owner_jited"] = jited
    out["frozen"] = int(m.frozen)
    if getattr(m, "btf_id", 0):
        out["btf_id"] = m.btf_id
    if pins:
        out["pinned"] = pins.get(m.id, [])
    return out


def show_plain(ctx: Ctx, m: Map, pins: dict[int, list[str]] | None) -> str:
    """show_map_close_plain's text."""
    kind = map_type_name(m.map_type)
    text = f"{m.id}: " + (f"{kind}  " if kind else f"type {int(m.map_type)}  ")
    if m.name:
        text += f"name {m.name}  "
    text += f"flags 0x{m.map_flags:x}\n"
    text += (f"\tkey {m.key_size}B  value {m.value_size}B  max_entries {m.max_entries}"
             f"  memlock {memlock(m, m.ncpus)}B")  # fmt: skip
    if m.map_type == MapType.PROG_ARRAY:
        owner, jited = _owner(m)
        if owner is not None:
            text += f"\n\towner_prog_type {owner}  owner{'' if jited else ' not'} jited"
    if pins:
        for path in pins.get(m.id, []):
            text += f"\n\tpinned {path}"
    btf_id = getattr(m, "btf_id", 0)
    if btf_id or m.frozen:
        text += "\n\t"
    if btf_id:
        text += f"btf_id {btf_id}"
    if m.frozen:
        text += f"{'  ' if btf_id else ''}frozen"
    return text + "\n"


def do_show(ctx: Ctx, args: list[str]) -> int:
    kernel = ctx.kernel
    pins = _pins_by_id(ctx) if getattr(ctx, "bpffs", False) else None
    if len(args) == 2:
        found = parse_maps(ctx, args)
        objs = [show_json(ctx, m, pins) for m in found]
        if ctx.json:
            ctx.emit_json(objs[0] if len(objs) == 1 else objs)
        else:
            ctx.out.write("".join(show_plain(ctx, m, pins) for m in found))
        return 0
    if args:
        raise bad_arg(ctx, args[0])
    maps = [kernel.maps[i] for i in sorted(kernel.maps)]
    if ctx.json:
        ctx.emit_json([show_json(ctx, m, pins) for m in maps])
    else:
        ctx.out.write("".join(show_plain(ctx, m, pins) for m in maps))
    return 0


# --- dump ---------------------------------------------------------------------------------------
def _walk(m: Map) -> tuple[list[bytes], int]:
    """Keys by get_next_key from NULL; the errno that ended the walk (0 for ENOENT)."""
    keys: list[bytes] = []
    prev: bytes | None = None
    seen = set()
    while True:
        try:
            key = m.get_next_key(prev)
        except KernelError as err:
            return keys, 0 if err.errno == errno.ENOENT else _errno(err)
        if key in seen:  # a map changing under the walk cannot loop forever
            return keys, 0
        seen.add(key)
        keys.append(key)
        prev = key


def do_dump(ctx: Ctx, args: list[str]) -> int:
    from pybpf.btf import render_plain

    if len(args) != 2:
        raise CommandError("usage: map dump MAP (MAP := id N | name NAME | pinned FILE)")
    found = parse_maps(ctx, args)
    many = len(found) > 1
    use_btf = not ctx.json and all(getattr(m, "btf_id", 0) for m in found)
    writer = ctx.json or use_btf
    docs: list[Any] = []
    text = ""
    status = 0
    for i, m in enumerate(found):
        keys, err = _walk(m)
        btf = _btf(ctx, m) if writer else None
        elems: list[Any] = []
        count = 0
        for key in keys:
            try:
                value = m.lookup(key)
            except KernelError as kerr:
                code = _errno(kerr)
                if code == errno.ENOENT and (m.map_type in _MAP_OF_MAPS
                                             or m.map_type == MapType.PROG_ARRAY):  # fmt: skip
                    continue
                if ctx.json or use_btf:
                    elems.append({"key": _hex_json(key), "value": {"error": strerror(code)}})
                else:
                    msg = "<no entry>" if code == errno.ENOENT else strerror(code)
                    text += _entry_error_plain(m, key, msg)
                continue
            count += 1
            if ctx.json:
                elems.append(_entry_json(ctx, m, key, value))
            elif use_btf and btf is not None:
                elems.append(_formatted(btf, m, key, value, plain=True))
            elif use_btf:  # a BTF id without a loadable value type: hex objects
                elems.append({"key": _hex(key), "value": _hex(value)})
            else:
                text += _entry_plain(m, key, value)
        if writer:
            if many:
                head: dict[str, Any] = {"id": m.id, "type": map_type_name(m.map_type)}
                if m.name:
                    head["name"] = m.name
                head["flags"] = m.map_flags
                head["elements"] = elems
                docs.append(head)
            else:
                docs = elems
        else:
            if many:
                kind = map_type_name(m.map_type)
                text_head = f"{m.id}: {kind}  " + (f"name {m.name}  " if m.name else "")
                text = text_head + f"flags 0x{m.map_flags:x}\n" + text
            text += f"Found {count} element{'s' if count != 1 else ''}\n"
            if many and i != len(found) - 1:
                text += "\n"
            ctx.out.write(text)
            text = ""
        if err:
            status = errno_status(err)
            break
    if ctx.json:
        ctx.emit_json(docs)
    elif use_btf:
        ctx.out.write(render_plain(docs) + "\n")
    return status


# --- element commands ---------------------------------------------------------------------------
def _key_arg(m: Map) -> bool:
    return m.key_size != 0


def do_lookup(ctx: Ctx, args: list[str]) -> int:
    if len(args) < 2:
        raise CommandError("usage: map lookup MAP [key DATA]")
    m = parse_map(ctx, args)
    elem = parse_elem(ctx, args, m, want_key=_key_arg(m), want_value=False, want_flags=False)
    key = elem.key if elem.key is not None else b""
    try:
        value = m.lookup(elem.key if _key_arg(m) else None)
    except KernelError as err:
        if err.errno == errno.ENOENT:
            if ctx.json:
                ctx.emit_json(None)
            else:
                ctx.out.write(f"key:\n{_hex(key)}\n\nNot found\n")
            return errno_status(errno.ENOENT)
        raise fail(ctx, f"lookup failed: {strerror(err)}", errno_status(_errno(err))) from None
    _print_key_value(ctx, m, key, value)
    return 0


def _store(m: Map, elem: Elem) -> None:
    """BPF_MAP_UPDATE_ELEM with the parsed element (objects for fd maps)."""
    key = elem.key if _key_arg(m) else None
    if elem.obj is not None:
        if m.map_type == MapType.HASH_OF_MAPS:
            m.set(key, elem.obj, elem.flags)
            return
        if elem.flags:
            raise KernelError("fd arrays take BPF_ANY only", errno=errno.EINVAL)
        if key is None or len(key) != m.key_size:
            raise KernelError("bad key", errno=errno.EINVAL)
        m.set(int.from_bytes(key, "little"), elem.obj)
        return
    m.update(key, elem.value, elem.flags)


def do_update(ctx: Ctx, args: list[str]) -> int:
    if len(args) < 2:
        raise CommandError("usage: map update MAP [key DATA] [value VALUE] [UPDATE_FLAGS]")
    m = parse_map(ctx, args)
    elem = parse_elem(ctx, args, m, want_key=_key_arg(m), want_value=m.value_size != 0,
                      want_flags=True)  # fmt: skip
    if elem.value is None:
        elem.value = b""
    try:
        _store(m, elem)
    except KernelError as err:
        raise fail(ctx, f"update failed: {strerror(err)}", errno_status(_errno(err))) from None
    if ctx.json:
        ctx.emit_json(None)
    return 0


def do_delete(ctx: Ctx, args: list[str]) -> int:
    if len(args) < 2:
        raise CommandError("usage: map delete MAP key DATA")
    m = parse_map(ctx, args)
    elem = parse_elem(ctx, args, m, want_key=True, want_value=False, want_flags=False)
    try:
        if m.map_type in (MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER):
            raise KernelError("no delete", errno=errno.EINVAL)
        m.delete(elem.key or b"")
    except KernelError as err:
        raise fail(ctx, f"delete failed: {strerror(err)}", errno_status(_errno(err))) from None
    if ctx.json:
        ctx.emit_json(None)
    return 0


def do_getnext(ctx: Ctx, args: list[str]) -> int:
    if len(args) < 2:
        raise CommandError("usage: map getnext MAP [key DATA]")
    m = parse_map(ctx, args)
    key = None
    if args:
        key = parse_elem(ctx, args, m, want_key=True, want_value=False, want_flags=False).key
    try:
        if m.map_type in (MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER):
            raise KernelError("no get_next_key", errno=errno.EINVAL)
        nxt = m.get_next_key(key)
    except KernelError as err:
        raise fail(ctx, f"can't get next key: {strerror(err)}", errno_status(_errno(err))) from None
    if ctx.json:
        ctx.emit_json({"key": _hex_json(key) if key is not None else None,
                       "next_key": _hex_json(nxt)})  # fmt: skip
    else:
        head = f"key:\n{_hex(key)}\n" if key is not None else "key: None\n"
        ctx.out.write(f"{head}next key:\n{_hex(nxt)}\n")
    return 0


def do_pop(ctx: Ctx, args: list[str]) -> int:
    if len(args) < 2:
        raise CommandError("usage: map pop MAP")
    m = parse_map(ctx, args)
    key = bytes(m.key_size) if m.key_size else None
    try:
        value = m.lookup_and_delete(key)
    except KernelError as err:
        if err.errno == errno.ENOENT:
            if ctx.json:
                ctx.emit_json(None)
            else:
                ctx.out.write("Error: empty map\n")  # bpftool prints this one on stdout
            return errno_status(errno.ENOENT)
        raise fail(ctx, f"pop failed: {strerror(err)}", errno_status(_errno(err))) from None
    _print_key_value(ctx, m, key or b"", value)
    return 0


def do_freeze(ctx: Ctx, args: list[str]) -> int:
    req_args(ctx, args, 2, "freeze")
    m = parse_map(ctx, args)
    if args:
        raise bad_arg(ctx, args[0])
    try:
        m.freeze()
    except KernelError as err:
        raise fail(ctx, f"failed to freeze map: {strerror(err)}",
                   errno_status(_errno(err))) from None
    if ctx.json:
        ctx.emit_json(None)
    return 0


def _pin(ctx: Ctx, obj: Any, path: str) -> int:
    """do_pin_fd: BPF_OBJ_PIN in the virtual bpffs."""
    try:
        state.pin(ctx.kernel, path, obj)
    except KernelError as err:
        text = strerror(err)
        raise fail(ctx, f"can't pin the object ({path}): {text}",
                   errno_status(_errno(err))) from None
    return 0


def do_pin(ctx: Ctx, args: list[str]) -> int:
    req_args(ctx, args, 3, "pin")
    m = parse_map(ctx, args)
    path = _need(ctx, args, "FILE")
    if args:
        raise bad_arg(ctx, args[0])
    status = _pin(ctx, m, path)
    if not status and ctx.json:
        ctx.emit_json(None)
    return status


_NAME_OK = re.compile(r"[A-Za-z0-9_.]*")


def do_create(ctx: Ctx, args: list[str]) -> int:
    req_args(ctx, args, 7, "create")
    pinfile = args.pop(0)
    map_type: int | None = None
    sizes = {"key size": 0, "value size": 0, "max entries": 0, "flags": 0}
    name: str | None = None
    inner: Map | None = None
    dev: str | None = None
    prev = pinfile
    while args:
        req_args(ctx, args, 2, prev)
        word = args.pop(0)
        if is_prefix(word, "type"):
            if map_type:
                raise fail(ctx, "map type already specified")
            text = args.pop(0)
            names = {t.name.lower(): int(t) for t in MapType}
            if text not in names:
                raise fail(ctx, f"unrecognized map type: {text}")
            map_type = names[text]
        elif is_prefix(word, "name"):
            name = args.pop(0)
        elif any(is_prefix(word, w) for w in ("key", "value", "entries", "flags")):
            what = next(k for w, k in (("key", "key size"), ("value", "value size"),
                                        ("entries", "max entries"), ("flags", "flags"))
                        if is_prefix(word, w))  # fmt: skip
            text = args.pop(0)
            if sizes[what]:
                raise fail(ctx, f"{what} already specified")
            value = strtoul(text)
            if value is None:
                raise fail(ctx, f"can't parse {text} as {what}")
            sizes[what] = value & 0xFFFFFFFF
        elif is_prefix(word, "dev"):
            if dev is not None:
                raise fail(ctx, "offload device already specified")
            dev = args.pop(0)
            if dev not in getattr(ctx.kernel, "devices", {}):
                raise fail(ctx, f"unrecognized netdevice '{dev}': No such device")
        elif is_prefix(word, "inner_map"):
            inner = parse_map(ctx, args)
        else:
            raise fail(ctx, f"unknown arg {word}")
        prev = word
    if name is None:
        raise fail(ctx, "map name not specified")
    name = name.encode()[: _OBJ_NAME_LEN - 1].decode("utf-8", "ignore")  # libbpf's strlcpy
    try:
        if not _NAME_OK.fullmatch(name) or dev is not None or not map_type:
            raise KernelError("bad attributes", errno=errno.EINVAL)  # offload: no device can
        attr = MapAttr(MapType(map_type), sizes["key size"], sizes["value size"],
                       sizes["max entries"], sizes["flags"], name, 0, inner)  # fmt: skip
        m = ctx.kernel.map_create(attr)
    except KernelError as err:
        raise fail(ctx, f"map create failed: {strerror(err)}") from None
    status = _pin(ctx, m, pinfile)
    if status:
        ctx.kernel.map_free(m)
        return status
    if ctx.json:
        ctx.emit_json(None)
    return 0


COMMANDS = {
    "show": do_show, "list": do_show, "dump": do_dump, "update": do_update,
    "lookup": do_lookup, "getnext": do_getnext, "delete": do_delete, "pin": do_pin,
    "create": do_create, "peek": do_lookup, "push": do_update, "enqueue": do_update,
    "pop": do_pop, "dequeue": do_pop, "freeze": do_freeze,
}  # fmt: skip
READ_ONLY = {"show", "list", "dump", "lookup", "getnext", "peek"}
NO_CONTENTS = {"show", "list"}  # they show attributes only: the maps' elements stay unread
