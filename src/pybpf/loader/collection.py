"""Load an :class:`~pybpf.loader.spec.ObjectSpec` into a kernel: libbpf's bpf_object__load.

The spec is pure (parsed bytes); loading touches the kernel: it creates the
maps (global data initialised, ``.rodata`` frozen, inner maps for maps of
maps), applies CO-RE relocations against the target BTF (the kernel's
vmlinux BTF unless one is given), and loads every program with its maps
substituted for the spec's map indexes.  The result is a :class:`Collection`
with programs and maps by name, as cilium/ebpf calls it.

Errors: :class:`~pybpf.errors.ObjectError` for what the object asks that
cannot be done (an unknown section type, a CO-RE relocation without a
target), :class:`~pybpf.errors.KernelError` (with errno) for what the kernel
refuses.  A failed load leaves no map or program behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pybpf.btf.core import POISON_IMM, parse_spec
from pybpf.errors import ObjectError, PybpfError, VerifierError
from pybpf.isa import LDDW, CallKind, Instruction, slot_offsets
from pybpf.loader.spec import MapSpec, ObjectSpec, ProgramSpec
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps.base import Map, MapAttr, MapType
from pybpf.runtime.maps.ringbuf import libbpf_ring_size
from pybpf.runtime.program import Program
from pybpf.runtime.progtypes import ProgType, SecFlag, find_sec_def
from pybpf.runtime.testrun import TestRunResult, test_run
from pybpf.uapi import ProgFlag
from pybpf.verifier.funcs import FuncDesc, arg_tags, describe
from pybpf.verifier.kfunc_proto import describe as describe_kfunc

NAME_MAX = 15


@dataclass
class Collection:
    """What one object became in a kernel: programs and maps by name."""

    spec: ObjectSpec
    kernel: Kernel
    programs: dict[str, Program] = field(default_factory=dict)
    maps: dict[str, Map] = field(default_factory=dict)

    def program(self, name: str) -> Program:
        """The program called ``name`` (KeyError naming the choices otherwise)."""
        try:
            return self.programs[name]
        except KeyError:
            raise KeyError(f"no program {name!r}; the object has {sorted(self.programs)}") from None

    def map(self, name: str) -> Map:
        """The map called ``name`` (KeyError naming the choices otherwise)."""
        try:
            return self.maps[name]
        except KeyError:
            raise KeyError(f"no map {name!r}; the object has {sorted(self.maps)}") from None

    def run(self, name: str, data_in: bytes = b"", **kw) -> TestRunResult:
        """BPF_PROG_TEST_RUN of program ``name``."""
        return test_run(self.program(name), data_in=data_in, **kw)

    def pin(self, name: str, path: str) -> None:
        """Pin program or map ``name`` at ``path`` (under /sys/fs/bpf): it outlives close().

        On a kernel from :func:`pybpf.kernel.state.session` this is the command line's
        pin: it outlives the process, and ``pybpf prog show pinned PATH`` finds it.
        """
        obj = self.programs.get(name) or self.maps.get(name)
        if obj is None:
            raise KeyError(f"no program or map {name!r}")
        self.kernel.obj_pin(path, obj)

    def close(self) -> None:
        """Unload what this collection loaded and nothing pinned keeps alive."""
        pinned = {id(obj) for obj in self.kernel.pins.values()}
        for prog in self.programs.values():
            if id(prog) not in pinned:
                self.kernel.prog_free(prog)
        for m in self.maps.values():
            in_use = any(m in getattr(p, "maps", ()) for p in self.kernel.progs.values())
            if id(m) not in pinned and not in_use:
                self.kernel.map_free(m)
        self.programs.clear()
        self.maps.clear()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_object(
    source: ObjectSpec | str | Path | bytes,
    kernel: Kernel | None = None,
    *,
    target_btf=None,
    rodata: Mapping[str, bytes] | None = None,
    log_level: int = 0,
    autoload: Iterable[str] | None = None,
    prog_flags: Mapping[str, int] | None = None,
) -> Collection:
    """Open (if needed) and load an object; see the module docstring.

    ``source`` is a spec, a path, or the object's bytes.  ``rodata`` replaces
    the initial contents of global-data maps by name before they are frozen
    (the set-before-load pattern of ``const volatile`` configuration).
    ``log_level`` is the verifier log's level (0, 1, 2); each program's BTF
    line info goes with it so a refusal can name the source line.
    ``autoload`` names the programs to load (libbpf's ``bpf_program__set_autoload``;
    default: every program whose section asks to be loaded); ``prog_flags`` adds
    BPF_PROG_LOAD flags (:class:`pybpf.uapi.ProgFlag`) by program name.
    """
    if isinstance(source, ObjectSpec):
        spec = source
    elif isinstance(source, bytes | bytearray):
        spec = ObjectSpec.from_bytes(bytes(source))
    else:
        spec = ObjectSpec.from_file(source)
    kernel = kernel or Kernel()
    coll = Collection(spec, kernel)
    try:
        maps = []
        for m in spec.maps:  # one by one, so a failure can unload what came before
            maps.append(_create_map(kernel, m, (rodata or {}).get(m.name), spec.btf))
            coll.maps[m.name] = maps[-1]
        _fill_slots(spec, coll.maps, coll.maps, prog_array=False)  # init_map_in_map_slots
        wanted = None if autoload is None else set(autoload)
        for prog_spec in spec.programs:
            if not (prog_spec.autoload if wanted is None else prog_spec.name in wanted):
                continue
            flags = _section_flags(prog_spec.section) | (prog_flags or {}).get(prog_spec.name, 0)
            coll.programs[prog_spec.name] = _load_program(kernel, spec, prog_spec, maps, target_btf,
                                                          log_level, flags)
        _fill_slots(spec, coll.maps, coll.programs, prog_array=True)  # init_prog_array_slots
    except BaseException:
        coll.close()
        raise
    return coll


def _libbpf_max_entries(kernel: Kernel, spec: MapSpec) -> int:
    """The max_entries libbpf creates ``spec`` with: a PERF_EVENT_ARRAY that leaves it 0
    gets one slot per possible CPU (map_set_def_max_entries), a ring buffer's size is
    rounded up to a power-of-2 number of pages (adjust_ringbuf_sz)."""
    if spec.map_type == MapType.PERF_EVENT_ARRAY and not spec.max_entries:
        return kernel.ncpus
    return libbpf_ring_size(spec.map_type, spec.max_entries)


def _create_map(kernel: Kernel, spec: MapSpec, initial: bytes | None, btf=None) -> Map:
    inner = _create_map(kernel, spec.inner, None, btf) if spec.inner is not None else None
    attr = MapAttr(
        MapType(spec.map_type), spec.key_size, spec.value_size,
        _libbpf_max_entries(kernel, spec),
        spec.map_flags, spec.name[:NAME_MAX], inner_map=inner,
        btf_key_type_id=spec.btf_key_type_id, btf_value_type_id=spec.btf_value_type_id,
    )  # fmt: skip
    try:
        m = kernel.map_create(attr)
    except BaseException:
        if inner is not None:
            kernel.map_free(inner)
        raise
    m.spec = spec
    if spec.btf_value_type_id and btf is not None:  # the value's record, as map_check_btf reads it
        m.btf = btf
        fields = _special_fields(btf, spec.btf_value_type_id)
        m.spin_lock_off = fields.get("bpf_spin_lock")
        m.btf_fields = frozenset(fields)
    data = initial if initial is not None else spec.initial
    if data is not None:
        if len(data) != spec.value_size:
            kernel.map_free(m)
            raise ObjectError(f"initial data is {len(data)} bytes, the map's value is "
                              f"{spec.value_size}", section=spec.section)  # fmt: skip
        m.update(bytes(4), bytes(data))
    if spec.freeze:
        m.freeze()
    return m


def _load_program(kernel: Kernel, spec: ObjectSpec, prog: ProgramSpec, maps: list[Map],
                  target_btf, log_level: int = 0, prog_flags: int = 0) -> Program:  # fmt: skip
    if prog.prog_type is None:
        raise ObjectError(f"program {prog.name!r}: section {prog.section!r} names no program "
                          "type libbpf knows", section=prog.section, symbol=prog.name)  # fmt: skip
    # only calls are resolved (to kfunc calls); a load of an extern's address or value is not
    unresolved = list(prog.extern_loads)
    if unresolved:
        raise ObjectError(f"program {prog.name!r}: pybpf does not resolve extern symbols "
                          f"(kconfig or ksym variables) yet: {', '.join(unresolved)}",
                          section=prog.section, symbol=prog.name)  # fmt: skip
    insns = list(prog.insns)
    kfuncs = _resolve_kfuncs(spec, prog, insns)
    if prog.core_relos:
        insns = _apply_core(kernel, spec, prog, insns, target_btf)
    kernel_btf = target_btf if target_btf is not None else _vmlinux()
    try:
        loaded = kernel.prog_load(insns, prog.prog_type, name=_prog_name(prog.name),
                                  license=spec.license or "", maps=maps,
                                  expected_attach_type=prog.expected_attach_type or 0,
                                  log_level=log_level,
                                  line_info={i.insn_index: i for i in prog.line_info},
                                  func_info=[pc for pc, _ in prog.func_info] or None,
                                  prog_flags=prog_flags,
                                  func_scalar_return=[_scalar_return(spec.btf, tid)
                                                      for _, tid in prog.func_info] or None,
                                  funcs=_funcs(spec.btf, prog),
                                  kfuncs=kfuncs, kernel_btf=kernel_btf,
                                  )  # fmt: skip
    except PybpfError as err:
        if isinstance(err, VerifierError) and prog.core_relos:
            _fixup_core_log(err, spec.btf, prog)
        err.args = (f"program {prog.name!r} (section {prog.section!r}): {err.args[0]}",
                    *err.args[1:])  # fmt: skip
        raise
    loaded.source = prog  # line and function info for listings, as the kernel keeps them
    loaded.btf = spec.btf
    return loaded


def _resolve_kfuncs(spec: ObjectSpec, prog: ProgramSpec, insns: list[Instruction]) -> dict:
    """bpf_object__resolve_ksyms for extern functions: each call becomes a kfunc call.

    libbpf writes the kfunc's vmlinux BTF id into the call's ``imm`` and sets
    ``src_reg`` to BPF_PSEUDO_KFUNC_CALL.  pybpf's kernel reads a kfunc's
    prototype from the object's own BTF (the ``extern`` FUNC libbpf would match
    against vmlinux), so the ``imm`` is that FUNC's id in the object's BTF.
    Returns ``imm`` -> :class:`~pybpf.verifier.kfunc_proto.KfuncProto`.
    """
    if not prog.extern_calls:
        return {}
    by_slot = {pc: i for i, pc in enumerate(slot_offsets(insns))}
    out = {}
    for slot, name in prog.extern_calls:
        func_id = _extern_func(spec.btf, name)
        proto = describe_kfunc(spec.btf, func_id) if func_id is not None else None
        if proto is None:
            raise ObjectError(f"program {prog.name!r}: extern function {name!r} has no BTF "
                              "prototype", section=prog.section, symbol=name)  # fmt: skip
        i = by_slot[slot]
        insns[i] = Instruction(insns[i].code, 0, CallKind.KFUNC, 0, func_id)
        out[func_id] = proto
    return out


class _LazyBtf:
    """The running kernel's BTF, parsed when the verifier first reads it (most programs
    never do: only loads through and arguments of BTF pointers walk kernel structs)."""

    def __getattr__(self, name: str):
        from pybpf.btf import load_vmlinux

        btf = load_vmlinux()
        if btf is None:
            raise LookupError("the kernel's BTF cannot be read")
        return getattr(btf, name)


def _vmlinux():
    """The kernel's BTF (lazily), None where the machine has none."""
    from pybpf.btf.vmlinux import VMLINUX

    return _LazyBtf() if os.path.exists(VMLINUX) else None


def _extern_func(btf, name: str) -> int | None:
    """The BTF FUNC declaring extern ``name`` (linkage BTF_FUNC_EXTERN)."""
    if btf is None:
        return None
    for tid in btf.find_all(name, "func"):
        if btf.type(tid).linkage == 2:
            return tid
    return None


def _fill_slots(spec: ObjectSpec, maps: dict[str, Map], objects: Mapping[str, object],
                prog_array: bool) -> None:  # fmt: skip
    """Store the ``.values`` initialisers: programs in prog arrays, inner maps in maps of maps."""
    for m in spec.maps:
        if (m.map_type == MapType.PROG_ARRAY) != prog_array:
            continue
        for slot, name in m.init_slots:
            if name not in objects:
                raise ObjectError(f"slot {slot} names {name!r}, which was not loaded",
                                  section=".maps", symbol=m.name)  # fmt: skip
            maps[m.name].set(slot, objects[name])


def _section_flags(section: str) -> int:
    """The program flags libbpf sets from the section: BPF_F_SLEEPABLE for a sleepable
    one (``syscall``, ``lsm.s/``...), BPF_F_XDP_HAS_FRAGS for ``xdp.frags``."""
    sec = find_sec_def(section)
    if sec is None:
        return 0
    flags = ProgFlag.SLEEPABLE if sec.flags & SecFlag.SLEEPABLE else 0
    if sec.flags & SecFlag.XDP_FRAGS and sec.prog_type == ProgType.XDP:
        flags |= ProgFlag.XDP_HAS_FRAGS
    return int(flags)


#: the kernel structs a map value may hold that btf_parse_fields records (BPF_SPIN_LOCK,
#: BPF_TIMER, BPF_WORKQUEUE, BPF_LIST_HEAD, BPF_RB_ROOT)
SPECIAL_STRUCTS = frozenset({"bpf_spin_lock", "bpf_timer", "bpf_wq", "bpf_list_head",
                             "bpf_rb_root"})  # fmt: skip


def _special_fields(btf, type_id: int) -> dict[str, int]:
    """The special structs (:data:`SPECIAL_STRUCTS`) the value type ``type_id`` holds at
    its top level, by name, with their byte offsets."""
    found: dict[str, int] = {}
    try:
        value = btf.resolved(type_id)
        for member in getattr(value, "members", ()):
            t = btf.resolved(member.type)
            if t.kind == "struct" and t.name in SPECIAL_STRUCTS:
                found.setdefault(t.name, member.offset // 8)
    except (AttributeError, LookupError, PybpfError):
        return {}
    return found


def _scalar_return(btf, func_id: int) -> bool:
    """The BTF function ``func_id`` returns an integer of at most 8 bytes or an enum."""
    try:
        proto = btf.type(btf.type(func_id).type)
        ret = btf.resolved(proto.type)
    except (AttributeError, LookupError, PybpfError):
        return True  # a bad record is the kernel's to refuse, as check_btf_func_early does
    return (ret.kind == "int" and ret.size <= 8) or ret.kind in ("enum", "enum64")


def _funcs(btf, prog: ProgramSpec) -> list[FuncDesc | None] | None:
    """Per func_info record, the function as BTF describes it: linkage and argument types
    (btf_prepare_func_args' reading, :func:`pybpf.verifier.funcs.describe`)."""
    if not prog.func_info or btf is None:
        return None
    tags = arg_tags(btf)
    return [describe(btf, tid, int(prog.prog_type), prog.expected_attach_type or 0, tags)
            for _, tid in prog.func_info]  # fmt: skip


def _prog_name(name: str) -> str:
    """libbpf's name for the kernel: [A-Za-z0-9_.] characters, 15 at most."""
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name)[:NAME_MAX]


def _apply_core(kernel: Kernel, spec: ObjectSpec, prog: ProgramSpec, insns: list[Instruction],
                target_btf) -> list[Instruction]:  # fmt: skip
    from pybpf.btf import load_vmlinux
    from pybpf.btf.core import patch_insn, resolve_core

    target = target_btf if target_btf is not None else load_vmlinux()
    if target is None:
        raise ObjectError(f"program {prog.name!r} has CO-RE relocations and no target BTF "
                          "(no /sys/kernel/btf/vmlinux; pass target_btf)", symbol=prog.name)
    _lay_out_current_task(kernel, target)
    by_pc = {pc: i for i, pc in enumerate(slot_offsets(insns))}
    for relo in prog.core_relos:
        index = by_pc.get(relo.insn_index)
        if index is None:
            raise ObjectError(f"CO-RE relocation at pc {relo.insn_index} is not on an "
                              "instruction", section=prog.section, symbol=prog.name)  # fmt: skip
        insn = insns[index]
        result = resolve_core(spec.btf, relo, target)
        p = patch_insn(insn.code, insn.dst_reg, insn.src_reg, insn.off, insn.imm, insn.imm2,
                       result, relo)  # fmt: skip
        if p.code == insn.code or insn.code != LDDW:
            insns[index] = Instruction(p.code, p.dst, p.src, p.off, _s32(p.imm),
                                       _s32(p.imm2) if p.code == LDDW else 0)  # fmt: skip
        else:  # a poisoned ld_imm64 becomes two poisoned calls, as libbpf writes it
            call = Instruction(p.code, p.dst, p.src, p.off, _s32(p.imm))
            insns[index : index + 1] = [call, call]
            by_pc = {pc: i for i, pc in enumerate(slot_offsets(insns))}
    return insns


_POISONED = f"invalid func unknown#{POISON_IMM}"
_LAST_LINES = 10  # how far from the log's end libbpf looks for a known error


def _fixup_core_log(err: VerifierError, btf, prog: ProgramSpec) -> None:
    """libbpf's fixup_verifier_log for a failed CO-RE relocation: the verifier refused
    the poisoned call (``invalid func unknown#195896080``) at a relocated instruction,
    so the refusal names the relocation instead (``N: <invalid CO-RE relocation>``,
    then ``failed to resolve CO-RE relocation`` and the relocation's local spec), in the
    reason and in the log's last lines, as a libbpf user sees it."""
    if not err.reason.startswith(_POISONED):
        return
    relo = next((r for r in prog.core_relos if r.insn_index == err.pc), None)
    if relo is None:
        return
    try:
        text = parse_spec(btf, relo).format(relo.kind)
    except (AttributeError, LookupError, PybpfError):
        return
    patch = [f"{err.pc}: <invalid CO-RE relocation>", f"failed to resolve CO-RE relocation {text}"]
    lines = err.log.split("\n")
    for i in range(len(lines) - 1, max(len(lines) - 1 - _LAST_LINES, 0), -1):
        if lines[i].startswith(_POISONED) and lines[i - 1].startswith(f"{err.pc}: (85) call "):
            lines[i - 1 : i + 1] = patch
            err.log = "\n".join(lines)
            break
    err.reason = "\n".join(patch)
    err.args = (f"pc {err.pc}: {err.reason}", *err.args[1:])


_TASK_FIELDS = ("pid", "tgid", "comm")


def _lay_out_current_task(kernel: Kernel, target) -> None:
    """Give bpf_get_current_task's image the target's task_struct layout.

    Programs read ``current`` at the offsets CO-RE computed from ``target``;
    the simulated task must hold its pid, tgid and comm at those offsets.
    """
    type_id = target.find("task_struct", "struct")
    if type_id is None:
        return
    struct = target.type(type_id)
    layout = {}
    for member in struct.members:
        if member.name in _TASK_FIELDS and not member.bitfield_size:
            layout[member.name] = (member.offset // 8, target.size_of(member.type))
    kernel.task_layout = layout
    kernel.task_size = struct.size


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value
