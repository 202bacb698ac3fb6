"""ObjectSpec: an eBPF object file as libbpf's ``bpf_object__open`` sees it, pure and exact.

``ObjectSpec.from_bytes(data, name)`` is a function of the bytes (and the name,
which prefixes global-data map names): no kernel, no environment, no dict
order.  It does what libbpf does before anything touches a kernel:

* **sections** (``bpf_object__elf_collect``): ``license`` (NUL-terminated, 63
  characters at most), ``version`` (a u32), ``.maps`` (BTF-defined maps),
  ``.BTF``/``.BTF.ext``, executable sections (programs), ``.data``/``.data.*``,
  ``.rodata``/``.rodata.*`` and ``.bss``/``.bss.*`` (global data); the legacy
  ``maps`` section is refused with libbpf's message; DWARF, string tables and
  ``.llvm_addrsig`` are ignored.
* **programs** (``bpf_object__add_programs``): every STT_FUNC symbol of an
  executable section, several per section, ordered by section then offset.
  Functions in ``.text`` are subprograms; a static function elsewhere is
  refused as libbpf refuses it.  ``SEC("?name")`` drops the ``?`` and clears
  ``autoload``.  The program type comes from libbpf's SEC table; an unknown
  section keeps ``prog_type`` None (the loader refuses it, naming it).
* **maps** (``bpf_object__init_maps``): BTF-defined maps first, in the order of
  the ``.maps`` DATASEC, then one internal array per non-empty global-data
  section in section order, named as ``internal_map_name`` names them
  (``hello.bss``), ``BPF_F_RDONLY_PROG`` for read-only data and
  ``BPF_F_MMAPABLE`` always (as libbpf 1.1 does; see ``_internal_map``),
  the section's bytes as initial value (zeros for
  ``.bss``) and ``freeze`` for read-only data.
* **relocations** (``bpf_object__collect_relos``, ``bpf_program__record_reloc``,
  ``bpf_object__reloc_code``, ``bpf_object__relocate_data``): calls into
  ``.text`` append the called subprograms (transitively, once per main
  program, in first-call order) and get their pc-relative imm; ld_imm64 of a
  function becomes a BPF_PSEUDO_FUNC reference the same way; ld_imm64 of a map
  becomes ``src_reg`` MAP_IDX (imm = index in :attr:`ObjectSpec.maps`), of
  global data MAP_IDX_VALUE (imm = index, imm2 = offset in the value).  The
  loader only substitutes maps for indexes.
* **BTF**: the parsed ``.BTF`` (DATASEC sizes and offsets fixed up from the
  ELF sections and symbols, as ``btf_fixup_datasec`` does) and ``.BTF.ext``;
  func_info, line_info and CO-RE relocations per program, their instruction
  offsets in slots of the final (subprograms appended) program.

Errors are :class:`~pybpf.errors.ObjectError` (``BtfError`` for BTF) naming
section, symbol and offset.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from dataclasses import dataclass, field, fields, replace
from pathlib import Path, PurePath
from typing import Any

from pybpf.btf import Btf, BtfExt, map_def_from_btf
from pybpf.elf import ElfObject, ElfSection, ElfSymbol, read_object
from pybpf.elf.model import (
    R_BPF_64_32,
    R_BPF_64_64,
    SHF_EXECINSTR,
    SHN_LORESERVE,
    SHN_UNDEF,
    SHT_LLVM_ADDRSIG,
    SHT_NOBITS,
    SHT_PROGBITS,
    SHT_REL,
    SHT_STRTAB,
    SHT_SYMTAB,
    STB_GLOBAL,
    STB_LOCAL,
    STB_WEAK,
    STT_FUNC,
    STT_NOTYPE,
    STT_OBJECT,
    STT_SECTION,
)
from pybpf.errors import ObjectError, PybpfError
from pybpf.isa import LDDW, Instruction, Pseudo, decode, encode
from pybpf.runtime.maps.base import MapFlag, MapType
from pybpf.runtime.progtypes import ProgType, sec_to_prog_type

INSN = 8
OBJ_NAME_LEN = 16  # BPF_OBJ_NAME_LEN
LICENSE_LEN = 64  # char license[64] in struct bpf_object
STV_INTERNAL = 1
CALL = 0x85  # BPF_JMP | BPF_CALL
MAX_GLOBAL_DATA = 1 << 26  # far above KMALLOC_MAX_SIZE, the kernel's array value limit
MAX_CALL_NESTING = 256  # appended subprograms calling new ones; bounds the recursion
_SLOT = struct.Struct("<BBhi")

# libbpf's enum sec_type / libbpf_map_type, for the sections it keeps
SEC_DATA, SEC_RODATA, SEC_BSS = "data", "rodata", "bss"


# --- the spec's values ----------------------------------------------------------


@dataclass(frozen=True)
class MapSpec:
    """One map the object asks for (a BTF-defined map or a global-data section).

    ``initial`` is the value of key 0 for global data (None otherwise); ``freeze``
    asks the loader to freeze the map after writing it (read-only data).
    ``inner`` is the inner map's spec for maps of maps.
    """

    name: str
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    pinning: int = 0
    inner: MapSpec | None = None
    initial: bytes | None = None
    freeze: bool = False
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    section: str = ""
    map_extra: int = 0
    numa_node: int = 0
    offset: int = 0  # of the definition (.maps) in its section
    #: ``__array(values, ...)`` initialisers: (slot, program or inner map name)
    init_slots: tuple[tuple[int, str], ...] = ()

    @property
    def internal(self) -> bool:
        """A global-data map libbpf made from a section (``.bss``, ``.rodata``...)."""
        return self.initial is not None


@dataclass(frozen=True)
class ProgramSpec:
    """One entry-point program, its called subprograms appended, map references by index.

    ``insns`` hold ld_imm64 map references as ``src_reg`` MAP_IDX /
    MAP_IDX_VALUE with ``imm`` an index into :attr:`ObjectSpec.maps`;
    ``func_info`` / ``line_info`` / ``core_relos`` are the .BTF.ext records with
    ``insn_off`` in slots of ``insns``.  ``subprograms`` lists (name, slot) of
    what was appended.
    """

    name: str
    section: str
    prog_type: ProgType | None
    expected_attach_type: int | None
    insns: tuple[Instruction, ...]
    license: str = ""
    func_info: tuple = ()
    line_info: tuple = ()
    core_relos: tuple = ()
    subprograms: tuple[tuple[str, int], ...] = ()
    autoload: bool = True
    kern_version: int = 0
    section_offset: int = 0  # of the function in its section, in bytes
    #: extern symbols (kconfig, ksym, kfunc) the program or its subprograms reference
    externs: tuple[str, ...] = ()
    #: the calls of extern functions (kfuncs): (slot of the call, the symbol's name)
    extern_calls: tuple[tuple[int, str], ...] = ()
    #: the externs an ld_imm64 loads (ksym and kconfig variables, a kfunc's address)
    extern_loads: tuple[str, ...] = ()

    @property
    def slots(self) -> int:
        """Number of 8-byte slots (what bpftool calls ``xlated`` size / 8)."""
        return sum(i.slots for i in self.insns)


@dataclass(frozen=True)
class ObjectSpec:
    """What one object file holds; see the module docstring.

    Equality compares everything derived from the bytes (BTF by its raw bytes);
    :meth:`digest` is a SHA-256 over the same canonical form.
    """

    name: str
    programs: tuple[ProgramSpec, ...]
    maps: tuple[MapSpec, ...]
    license: str = ""
    version: int | None = None
    btf_data: bytes = b""
    btf_ext_data: bytes = b""
    btf: Any = field(default=None, compare=False, repr=False)
    btf_ext: Any = field(default=None, compare=False, repr=False)

    # --- construction ---------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, name: str = "hello.bpf.o"
                   ) -> ObjectSpec:  # fmt: skip
        """Parse the object ``data``; ``name`` (a file name) prefixes internal map names."""
        return _Opener(read_object(data, str(name)), str(name)).open()

    @classmethod
    def from_file(cls, path: str | Path) -> ObjectSpec:
        """Read and parse the object at ``path``."""
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            raise ObjectError(f"cannot read {str(path)!r}: {err.strerror or err}") from None
        return cls.from_bytes(data, PurePath(path).name)

    # --- queries ----------------------------------------------------------------
    def program(self, name: str) -> ProgramSpec:
        """The program called ``name`` (ObjectError naming the choices otherwise)."""
        for prog in self.programs:
            if prog.name == name:
                return prog
        raise ObjectError(f"no program {name!r}; the object has "
                          f"{[p.name for p in self.programs]}", symbol=name)  # fmt: skip

    def map(self, name: str) -> MapSpec:
        """The map called ``name`` (ObjectError naming the choices otherwise)."""
        for m in self.maps:
            if m.name == name:
                return m
        raise ObjectError(f"no map {name!r}; the object has {[m.name for m in self.maps]}",
                          symbol=name)  # fmt: skip

    def digest(self) -> str:
        """SHA-256 (hex) of the spec's canonical form: equal specs, equal digests."""
        return hashlib.sha256(_canonical(self).encode()).hexdigest()


def _canonical(value: Any) -> str:
    """A stable text form of specs (dataclass fields in declaration order)."""
    if isinstance(value, Instruction):
        return encode([value]).hex()
    if isinstance(value, (MapSpec, ProgramSpec, ObjectSpec)):
        parts = [f"{f.name}={_canonical(getattr(value, f.name))}"
                 for f in fields(value) if f.compare]  # fmt: skip
        return f"{type(value).__name__}({','.join(parts)})"
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, bytes):
        return "b:" + value.hex()
    return repr(value)


# --- opening --------------------------------------------------------------------


@dataclass
class _Prog:
    """A function of an executable section, as struct bpf_program before relocation."""

    name: str
    sec_idx: int
    sec_name: str
    sec_insn_off: int
    slots: list[list[int]]
    relos: dict[int, tuple] = field(default_factory=dict)  # insn_idx -> relocation
    autoload: bool = True
    sub_insn_off: int = 0  # position in the main program being relocated (0: not appended)


@dataclass
class _Map:
    spec: MapSpec
    sec_idx: int
    sec_offset: int
    kind: str  # "btf" or SEC_DATA/SEC_RODATA/SEC_BSS
    size: int = 0  # of the definition in .maps
    values_offset: int | None = None  # byte offset of the ``values`` member, if any


def object_name(file_name: str) -> str:
    """libbpf's ``obj->name``: the basename cut to 15 characters, then at its first dot."""
    base = PurePath(file_name).name[: OBJ_NAME_LEN - 1]
    return base.split(".", 1)[0]


def internal_map_name(obj_name: str, real_name: str) -> str:
    """libbpf's ``internal_map_name``: ``hello.bss``, ``my_objec.rodata``, ``.rodata.str1.1``."""
    sfx_len = min(max(7, len(real_name)), OBJ_NAME_LEN - 1)
    pfx_len = 0 if "." in real_name[1:] else min(OBJ_NAME_LEN - sfx_len - 1, len(obj_name))
    name = (obj_name[:pfx_len] + real_name[:sfx_len])[: OBJ_NAME_LEN - 1]
    return "".join(c if (c.isascii() and c.isalnum()) or c in "_." else "_" for c in name)


class _Opener:
    """One bpf_object__open: collect sections, programs, BTF, maps, relocations."""

    def __init__(self, elf: ElfObject, file_name: str) -> None:
        self.elf = elf
        self.file_name = file_name
        self.obj_name = object_name(file_name)
        self.kinds: dict[int, str] = {}  # sec_idx -> SEC_DATA / SEC_RODATA / SEC_BSS
        self.rel_sections: list[int] = []
        self.progs: list[_Prog] = []
        self.text_idx = 0
        self.maps_idx = -1
        self.maps_rel_idx = -1
        self.license = ""
        self.version: int | None = None
        self.btf = None
        self.btf_ext = None
        self.btf_data = b""
        self.btf_ext_data = b""
        self.maps: list[_Map] = []
        self.funcs: dict[int, list[ElfSymbol]] = {}
        self.objects: dict[str, ElfSymbol] = {}  # global object symbols by name
        for sym in elf.symbols:
            if sym.type == STT_FUNC:
                self.funcs.setdefault(sym.section, []).append(sym)
            elif sym.type == STT_OBJECT and sym.bind in (STB_GLOBAL, STB_WEAK):
                self.objects.setdefault(sym.name, sym)
        self.prog_keys: list[tuple[int, int]] = []

    def open(self) -> ObjectSpec:
        self._collect()
        self._init_btf()
        self._init_maps()
        self._collect_relos()
        programs = tuple(self._relocate(p) for p in self.progs if p.sec_idx != self.text_idx)
        return ObjectSpec(
            self.obj_name, programs, tuple(m.spec for m in self.maps), self.license,
            self.version, self.btf_data, self.btf_ext_data, self.btf, self.btf_ext,
        )  # fmt: skip

    # --- bpf_object__elf_collect --------------------------------------------------
    def _collect(self) -> None:
        elf = self.elf
        if not elf.symtab:
            raise ObjectError("no symbol table (a stripped object file?)")
        for sec in elf.sections[1:]:
            name = sec.name
            if _ignored(sec):
                continue
            if name == "license":
                raw = sec.data.split(b"\0", 1)[0][: LICENSE_LEN - 1]
                self.license = raw.decode("latin-1")
            elif name == "version":
                if len(sec.data) != 4:
                    raise ObjectError(f"invalid kernel version section ({len(sec.data)} "
                                      "bytes, expected 4)", section=name)  # fmt: skip
                self.version = int.from_bytes(sec.data, "little")
            elif name == "maps":
                raise ObjectError("legacy map definitions in 'maps' section are not "
                                  "supported by libbpf v1.0+", section=name)  # fmt: skip
            elif name == ".maps":
                self.maps_idx = sec.index
            elif name in (".BTF", ".BTF.ext"):
                if sec.type != SHT_PROGBITS:
                    raise ObjectError("BTF section is not SHT_PROGBITS", section=name)
                if name == ".BTF":
                    self.btf_data = sec.data
                else:
                    self.btf_ext_data = sec.data
            elif sec.type == SHT_SYMTAB:
                pass
            elif sec.type == SHT_PROGBITS and sec.size > 0:
                if sec.flags & SHF_EXECINSTR:
                    if name == ".text":
                        self.text_idx = sec.index
                    self._add_programs(sec)
                elif name == ".data" or name.startswith(".data."):
                    self.kinds[sec.index] = SEC_DATA
                elif name == ".rodata" or name.startswith(".rodata."):
                    self.kinds[sec.index] = SEC_RODATA
            elif sec.type == SHT_REL:
                target = elf.sections[sec.info]
                if target.flags & SHF_EXECINSTR:
                    self.rel_sections.append(sec.index)
                elif target.name == ".maps":
                    self.maps_rel_idx = sec.index
            elif sec.type == SHT_NOBITS and (name == ".bss" or name.startswith(".bss.")):
                self.kinds[sec.index] = SEC_BSS
        self.progs.sort(key=lambda p: (p.sec_idx, p.sec_insn_off))
        self.prog_keys = [(p.sec_idx, p.sec_insn_off) for p in self.progs]

    def _add_programs(self, sec: ElfSection) -> None:
        for sym in self.funcs.get(sec.index, ()):
            off, size = sym.value, sym.size
            if off + size > len(sec.data):
                raise ObjectError(f"program at offset {off} crosses the section's end "
                                  f"({len(sec.data)} bytes)", section=sec.name,
                                  symbol=sym.name)  # fmt: skip
            if sec.index != self.text_idx and sym.bind == STB_LOCAL:
                raise ObjectError("program is static and not supported (libbpf refuses "
                                  "static entry points)", section=sec.name,
                                  symbol=sym.name)  # fmt: skip
            if size == 0 or size % INSN or off % INSN:
                raise ObjectError(f"corrupted program: offset {off}, size {size} (whole "
                                  "8-byte instructions expected)", section=sec.name,
                                  symbol=sym.name)  # fmt: skip
            sec_name, autoload = sec.name, True
            if sec_name.startswith("?"):
                sec_name, autoload = sec_name[1:], False
            slots = [list(s) for s in _SLOT.iter_unpack(sec.data[off : off + size])]
            self.progs.append(_Prog(sym.name, sec.index, sec_name, off // INSN, slots,
                                    autoload=autoload))  # fmt: skip

    # --- BTF ----------------------------------------------------------------------
    def _init_btf(self) -> None:
        if self.btf_data:
            btf = Btf.parse(self.btf_data)
            self.btf = _fixup_datasecs(btf, self.elf, self.objects)
        if self.btf_ext_data:
            if self.btf is None:
                raise ObjectError(".BTF.ext without .BTF", section=".BTF.ext")
            self.btf_ext = _parse_btf_ext(self.btf_ext_data, self.btf)

    # --- maps ---------------------------------------------------------------------
    def _init_maps(self) -> None:
        if self.maps_idx >= 0:
            self._init_btf_maps()
            if self.maps_rel_idx >= 0:
                self._collect_map_relos()
        for idx in sorted(self.kinds):
            sec = self.elf.sections[idx]
            if sec.size == 0:
                continue
            self.maps.append(self._internal_map(sec, self.kinds[idx]))

    def _internal_map(self, sec: ElfSection, kind: str) -> _Map:
        if sec.size > MAX_GLOBAL_DATA:  # .bss sizes cost nothing in the file
            raise ObjectError(f"global data section of {sec.size} bytes; the kernel's array "
                              f"values stop at {MAX_GLOBAL_DATA}", section=sec.name)  # fmt: skip
        flags = MapFlag.RDONLY_PROG if kind == SEC_RODATA else 0
        value_id = 0
        if self.btf is not None:
            value_id = self.btf.find(sec.name) or 0  # btf__find_by_name: any kind
        # libbpf 1.1 (Debian 12's, which this machine's bpftool uses) makes every global
        # data map mmapable: hello.rodata is 0x480.  libbpf >= 1.3 sets MMAPABLE only when
        # the section holds a visible global variable, so seed 002 shows hello.rodata 0x80.
        flags |= MapFlag.MMAPABLE
        initial = bytes(sec.size) if kind == SEC_BSS else sec.data
        spec = MapSpec(
            internal_map_name(self.obj_name, sec.name), MapType.ARRAY, 4, sec.size, 1,
            int(flags), initial=initial, freeze=kind == SEC_RODATA, btf_value_type_id=value_id,
            section=sec.name,
        )  # fmt: skip
        return _Map(spec, sec.index, 0, kind)

    def _init_btf_maps(self) -> None:
        sec = self.elf.sections[self.maps_idx]
        if self.btf is None:
            raise ObjectError("BTF-defined maps need a .BTF section", section=sec.name)
        datasec_id = self.btf.find(".maps", "datasec")
        if datasec_id is None:
            raise ObjectError("DATASEC '.maps' not found in BTF", section=sec.name)
        datasec = self.btf.type(datasec_id)
        symbols = {s.name: s for s in self.elf.symbols
                   if s.section == sec.index and s.name and s.type != STT_SECTION}  # fmt: skip
        for i, vsi in enumerate(datasec.vars):
            var = self.btf.type(vsi.type)
            name = var.name
            if not name:
                raise ObjectError(f"map #{i}: empty name", section=sec.name)
            if var.kind != "var":
                raise ObjectError(f"unexpected var kind {var.kind}", section=sec.name,
                                  symbol=name)  # fmt: skip
            if var.linkage != 1:  # BTF_VAR_GLOBAL_ALLOCATED
                raise ObjectError("unsupported map linkage (a static or extern map)",
                                  section=sec.name, symbol=name)  # fmt: skip
            sym = symbols.get(name)
            offset = sym.value if sym is not None else vsi.offset
            if offset + vsi.size > sec.size:
                raise ObjectError("map definition is outside the section (BTF data is "
                                  "corrupted)", section=sec.name, symbol=name)  # fmt: skip
            try:
                spec = _map_spec(map_def_from_btf(self.btf, vsi.type), name, sec.name, offset)
            except ObjectError as err:
                if err.symbol is None and err.section is None:
                    raise ObjectError(str(err), section=sec.name, symbol=name) from err
                raise
            self.maps.append(_Map(spec, sec.index, offset, "btf", vsi.size,
                                  _values_offset(self.btf, var.type)))

    def _collect_map_relos(self) -> None:
        """libbpf's bpf_object__collect_map_relos: ``.values`` slot initialisers.

        A relocation in ``.rel.maps`` lands in the ``values`` array of a map of
        maps (symbol: an inner map) or a prog array (symbol: a program); its
        slot is its distance from the array's start, in pointers.
        """
        table = next(t for t in self.elf.relocations if t.section == self.maps_rel_idx)
        slots: dict[int, list[tuple[int, str]]] = {}
        for n, rel in enumerate(table.entries):
            where = f"map relocation #{n} at offset {rel.offset:#x}"
            if rel.symbol >= len(self.elf.symbols):
                raise ObjectError(f"{where}: symbol #{rel.symbol} not found", section=".rel.maps")
            sym = self.elf.symbols[rel.symbol]
            owner = next((i for i, m in enumerate(self.maps) if m.kind == "btf"
                          and 0 <= rel.offset - m.sec_offset < m.size), None)  # fmt: skip
            if owner is None:
                raise ObjectError(f"{where} is in no map definition", section=".rel.maps",
                                  symbol=sym.name)  # fmt: skip
            spec = self.maps[owner].spec
            values_at = self.maps[owner].values_offset
            is_prog = spec.map_type == MapType.PROG_ARRAY
            if values_at is None or (rel.offset - self.maps[owner].sec_offset - values_at) % 8:
                raise ObjectError(f"{where} is not a slot of .values", section=".rel.maps",
                                  symbol=spec.name)  # fmt: skip
            if is_prog != (sym.type == STT_FUNC):
                what = "a program" if is_prog else "a map"
                raise ObjectError(f"{where}: {sym.name!r} is not {what}", section=".rel.maps",
                                  symbol=spec.name)  # fmt: skip
            slot = (rel.offset - self.maps[owner].sec_offset - values_at) // 8
            if slot >= spec.max_entries:
                raise ObjectError(f"{where}: slot {slot} >= max_entries {spec.max_entries}",
                                  section=".rel.maps", symbol=spec.name)  # fmt: skip
            slots.setdefault(owner, []).append((slot, sym.name))
        for owner, entries in slots.items():
            m = self.maps[owner]
            m.spec = replace(m.spec, init_slots=tuple(sorted(entries)))

    # --- bpf_object__collect_relos ------------------------------------------------
    def _collect_relos(self) -> None:
        elf = self.elf
        tables = {t.section: t for t in elf.relocations}
        for rel_idx in self.rel_sections:
            table = tables[rel_idx]
            rel_name = elf.sections[rel_idx].name
            target = elf.sections[table.target]
            for n, rel in enumerate(table.entries):
                where = f"relocation #{n} at offset {rel.offset:#x}"
                if rel.symbol >= len(elf.symbols):
                    raise ObjectError(f"{where}: symbol #{rel.symbol} not found (the table "
                                      f"has {len(elf.symbols)})", section=rel_name)  # fmt: skip
                sym = elf.symbols[rel.symbol]
                sym_name = sym.name
                if sym.type == STT_SECTION and not sym.name_offset:
                    sym_name = elf.section_name(sym.section)
                if sym.section >= len(elf.sections):
                    raise ObjectError(f"{where}: corrupted symbol #{rel.symbol} points to "
                                      f"section #{sym.section}, which does not exist",
                                      section=rel_name, symbol=sym_name)  # fmt: skip
                if rel.offset % INSN or rel.offset >= len(target.data):
                    raise ObjectError(f"{where}: invalid offset (section {target.name!r} has "
                                      f"{len(target.data)} bytes of 8-byte instructions)",
                                      section=rel_name, symbol=sym_name)  # fmt: skip
                insn_idx = rel.offset // INSN
                prog = self._prog_at(target.index, insn_idx)
                if prog is None:  # libbpf: probably an overridden weak function
                    continue
                local = insn_idx - prog.sec_insn_off
                prog.relos[local] = self._record(prog, local, sym, sym_name, rel, rel_name)
        # bpf_object__relocate marks function references before relocating calls
        for prog in self.progs:
            for idx, relo in prog.relos.items():
                if relo[0] == "func":
                    prog.slots[idx][1] = (prog.slots[idx][1] & 0x0F) | Pseudo.FUNC << 4

    def _prog_at(self, sec_idx: int, insn_idx: int) -> _Prog | None:
        """find_prog_by_sec_insn: the function of section ``sec_idx`` holding ``insn_idx``."""
        i = bisect.bisect_right(self.prog_keys, (sec_idx, insn_idx)) - 1
        if i < 0:
            return None
        prog = self.progs[i]
        if prog.sec_idx == sec_idx and insn_idx < prog.sec_insn_off + len(prog.slots):
            return prog
        return None

    def _record(self, prog: _Prog, idx: int, sym: ElfSymbol, sym_name: str, rel,
                rel_name: str) -> tuple:  # fmt: skip
        """bpf_program__record_reloc: what the relocation at ``prog`` slot ``idx`` means."""
        code, regs = prog.slots[idx][0], prog.slots[idx][1]
        pc = f"insn {idx} of {prog.name!r} (offset {rel.offset:#x})"
        if rel.type not in (R_BPF_64_64, R_BPF_64_32):
            raise ObjectError(f"{pc}: unsupported relocation type {rel.type_name} for code",
                              section=rel_name, symbol=sym_name)  # fmt: skip
        if code not in (CALL, LDDW):
            raise ObjectError(f"{pc}: relocation expects an ld_imm64 or a call, found code "
                              f"{code:#04x}", section=rel_name, symbol=sym_name)  # fmt: skip
        if sym.section == SHN_UNDEF and sym.bind in (STB_GLOBAL, STB_WEAK) \
                and sym.type == STT_NOTYPE:  # fmt: skip
            return ("extern", sym_name)  # resolved at load, per program, as libbpf does
        if code == CALL:
            if regs >> 4 != 1:
                raise ObjectError(f"{pc}: relocated call is not a bpf-to-bpf call "
                                  f"(src_reg {regs >> 4})", section=rel_name,
                                  symbol=sym_name)  # fmt: skip
            if not sym.section or sym.section != self.text_idx:
                raise ObjectError(f"{pc}: call relocation against a symbol in section "
                                  f"{self.elf.section_name(sym.section)!r}, not .text",
                                  section=rel_name, symbol=sym_name)  # fmt: skip
            if sym.value % INSN:
                raise ObjectError(f"{pc}: call relocation against offset {sym.value}",
                                  section=rel_name, symbol=sym_name)  # fmt: skip
            return ("call", sym.value)
        if idx + 1 >= len(prog.slots):
            raise ObjectError(f"{pc}: ld_imm64 without its second half", section=rel_name,
                              symbol=sym_name)  # fmt: skip
        if not sym.section or sym.section >= SHN_LORESERVE:
            raise ObjectError(f"{pc}: relocation against a symbol in special section "
                              f"{sym.section:#x} (forgot to initialize a global variable?)",
                              section=rel_name, symbol=sym_name)  # fmt: skip
        if _is_subprog(sym, self.text_idx):
            if sym.value % INSN or prog.slots[idx][3] % INSN:
                raise ObjectError(f"{pc}: bad subprogram address relocation at offset "
                                  f"{sym.value}+{prog.slots[idx][3]}", section=rel_name,
                                  symbol=sym_name)  # fmt: skip
            return ("func", sym.value)
        sec_name = self.elf.section_name(sym.section)
        kind = self.kinds.get(sym.section)
        if kind is None:
            if sym.section != self.maps_idx:
                raise ObjectError(f"{pc}: relocation against section {sec_name!r}, which "
                                  "holds neither maps nor global data", section=rel_name,
                                  symbol=sym_name)  # fmt: skip
            for i, m in enumerate(self.maps):
                if m.kind == "btf" and m.sec_idx == sym.section and m.sec_offset == sym.value:
                    return ("map", i)
            raise ObjectError(f"{pc}: no map at offset {sym.value} of {sec_name!r}",
                              section=rel_name, symbol=sym_name)  # fmt: skip
        for i, m in enumerate(self.maps):
            if m.kind == kind and m.sec_idx == sym.section:
                return ("data", i, sym.value)
        raise ObjectError(f"{pc}: no global data map for section {sec_name!r}",
                          section=rel_name, symbol=sym_name)  # fmt: skip

    # --- bpf_object__reloc_code + relocate_data -----------------------------------
    def _relocate(self, main: _Prog) -> ProgramSpec:
        for p in self.progs:
            if p.sec_idx == self.text_idx:
                p.sub_insn_off = 0
        main.sub_insn_off = 0
        out = [list(s) for s in main.slots]
        relos = [(i, r) for i, r in sorted(main.relos.items())]
        appended: list[_Prog] = []
        self._reloc_code(main, main, out, relos, appended, depth=0)
        externs: list[str] = []
        calls: list[tuple[int, str]] = []
        loads: list[str] = []
        for idx, relo in relos:
            slot, nxt = out[idx], out[idx + 1] if idx + 1 < len(out) else None
            if relo[0] == "map":
                slot[1] = (slot[1] & 0x0F) | Pseudo.MAP_IDX << 4
                slot[3] = relo[1]
            elif relo[0] == "data":
                nxt[3] = _s32(slot[3] + relo[2])
                slot[1] = (slot[1] & 0x0F) | Pseudo.MAP_IDX_VALUE << 4
                slot[3] = relo[1]
            elif relo[0] == "extern":
                externs.append(relo[1])
                if slot[0] == CALL:
                    calls.append((idx, relo[1]))
                else:
                    loads.append(relo[1])
            elif relo[0] == "func" and slot[1] >> 4 != Pseudo.FUNC:
                raise ObjectError(f"insn {idx}: function address relocation on an ld_imm64 "
                                  "that is not BPF_PSEUDO_FUNC", section=main.sec_name,
                                  symbol=main.name)  # fmt: skip
        try:
            insns = tuple(decode(b"".join(_SLOT.pack(*s) for s in out), validate=False))
        except PybpfError as err:
            raise ObjectError(f"instructions cannot be decoded: {err}", section=main.sec_name,
                              symbol=main.name) from None  # fmt: skip
        func_info, line_info, core = self._ext_info(main, appended)
        prog_type, attach = _prog_type(main.sec_name)
        return ProgramSpec(
            main.name, main.sec_name, prog_type, attach, insns, self.license, func_info,
            line_info, core, tuple((p.name, p.sub_insn_off) for p in appended), main.autoload,
            self.version or 0, main.sec_insn_off * INSN, tuple(dict.fromkeys(externs)),
            tuple(calls), tuple(dict.fromkeys(loads)),
        )  # fmt: skip

    def _reloc_code(self, main: _Prog, prog: _Prog, out: list[list[int]],
                    relos: list[tuple[int, tuple]], appended: list[_Prog], depth: int
                    ) -> None:  # fmt: skip
        if depth > MAX_CALL_NESTING:
            raise ObjectError(f"subprogram calls nest deeper than {MAX_CALL_NESTING}",
                              section=main.sec_name, symbol=main.name)  # fmt: skip
        base = prog.sub_insn_off
        for i in range(len(prog.slots)):
            code, regs, off, imm = out[base + i]
            is_call = code == CALL and regs == 0x10 and off == 0
            is_func = code == LDDW and regs >> 4 == Pseudo.FUNC
            if not is_call and not is_func:
                continue
            relo = prog.relos.get(i)
            if relo is not None and relo[0] == "extern":  # a kfunc call, resolved at load
                continue
            if relo is not None and relo[0] not in ("call", "func"):
                raise ObjectError(f"insn {i}: unexpected {relo[0]} relocation on a call or "
                                  "function reference", section=prog.sec_name,
                                  symbol=prog.name)  # fmt: skip
            if relo is not None and relo[0] == "call":
                target = relo[1] // INSN + imm + 1
            elif relo is not None:
                target = (relo[1] + imm) // INSN
            elif is_func:
                raise ObjectError(f"insn {i}: function reference without its relocation",
                                  section=prog.sec_name, symbol=prog.name)  # fmt: skip
            else:  # a static callee in the same section: imm is relative already
                target = prog.sec_insn_off + i + imm + 1
            sub = self._prog_at(self.text_idx, target) if self.text_idx else None
            if sub is None or sub.sec_insn_off != target:
                what = "no .text function" if sub is None else f"the middle of {sub.name!r}"
                raise ObjectError(f"insn {i}: call into {what} (instruction {target} of "
                                  ".text)", section=prog.sec_name, symbol=prog.name)
            if sub.sub_insn_off == 0 and sub is not main:
                sub.sub_insn_off = len(out)
                out.extend(list(s) for s in sub.slots)
                relos.extend((sub.sub_insn_off + j, r) for j, r in sorted(sub.relos.items()))
                appended.append(sub)
                self._reloc_code(main, sub, out, relos, appended, depth + 1)
            out[base + i][3] = sub.sub_insn_off - (base + i) - 1

    def _ext_info(self, main: _Prog, appended: list[_Prog]) -> tuple[tuple, tuple, tuple]:
        if self.btf_ext is None:
            return (), (), ()
        kinds = []
        for kind in ("func_info", "line_info", "core_relos"):
            records = []
            for prog in [main, *appended]:
                records += _ext_records(self.btf_ext, kind, self.elf.sections[prog.sec_idx].name,
                                        prog)  # fmt: skip
            kinds.append(tuple(records))
        return kinds[0], kinds[1], kinds[2]


# --- helpers --------------------------------------------------------------------


def _ignored(sec: ElfSection) -> bool:
    """libbpf's ignore_elf_section."""
    name = sec.name
    if sec.type in (SHT_STRTAB, SHT_LLVM_ADDRSIG):
        return True
    if sec.type == SHT_PROGBITS and sec.size == 0 and name == ".text":
        return True
    if name.startswith(".debug_"):
        return True
    if name.startswith(".rel"):
        rest = name[4:]
        return rest.startswith(".debug_") or rest in (".BTF", ".BTF.ext")
    return False


def _is_subprog(sym: ElfSymbol, text_idx: int) -> bool:
    """libbpf's sym_is_subprog: a section symbol or global function of .text."""
    if sym.section != text_idx:
        return False
    if sym.bind == STB_LOCAL and sym.type == STT_SECTION:
        return True
    return sym.bind in (STB_GLOBAL, STB_WEAK) and sym.type == STT_FUNC


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _prog_type(section: str) -> tuple[ProgType | None, int | None]:
    try:
        prog_type, attach = sec_to_prog_type(section)
    except KeyError:
        return None, None
    return prog_type, attach


def _fixup_datasecs(btf, elf: ElfObject, objects: dict[str, ElfSymbol]):
    """btf_fixup_datasec: DATASEC sizes from ELF sections, VAR offsets from symbols."""
    for t in list(btf.types):
        if t.kind != "datasec" or t.size or t.name in (".kconfig", ".ksyms"):
            continue
        sec = elf.section(t.name)
        if sec is None or not sec.size:
            continue
        offsets = {}
        for vsi in t.vars:
            var = btf.type(vsi.type)
            sym = objects.get(var.name) if var.kind == "var" and var.linkage == 1 else None
            if sym is not None:
                offsets[var.name] = sym.value
        btf = btf.with_datasec(t.name, sec.size, offsets)
    return btf


def _parse_btf_ext(data: bytes, btf):
    return BtfExt.parse(data, btf)


def _ext_records(btf_ext, kind: str, sec_name: str, prog: _Prog) -> list:
    """adjust_prog_btf_ext_info: ``prog``'s records, moved to its slot in the main program.

    func_info records are (insn_index, type_id) pairs; line_info and CO-RE records
    carry ``insn_index``; all are in slots of the section.
    """
    per_section = getattr(btf_ext, kind, None) or {}
    out: list = []
    start, end = prog.sec_insn_off, prog.sec_insn_off + len(prog.slots)
    for rec in per_section.get(sec_name, ()):
        insn = rec[0]
        if start <= insn < end:
            moved = insn - start + prog.sub_insn_off
            out.append(rec._replace(insn_index=moved) if hasattr(rec, "_replace")
                       and hasattr(rec, "insn_index") else (moved, *rec[1:]))  # fmt: skip
    return out


def _map_spec(d: dict[str, Any], name: str, section: str, offset: int) -> MapSpec:
    """A MapSpec from map_def_from_btf's dict (libbpf's fill_map_from_def)."""
    inner = d.get("inner")
    inner_spec = _map_spec(inner, f"{name}.inner", section, offset) if inner else None
    return MapSpec(
        name, d["type"], d["key_size"], d["value_size"], d["max_entries"], d["map_flags"],
        d["pinning"], inner_spec, None, False, d["key_type_id"], d["value_type_id"], section,
        d["map_extra"], d["numa_node"], offset,
    )  # fmt: skip


def _values_offset(btf, def_type_id: int) -> int | None:
    """Byte offset of the ``values`` member of a BTF map definition struct, if any."""
    struct = btf.resolved(def_type_id)
    for member in getattr(struct, "members", ()):
        if member.name == "values":
            return member.offset // 8
    return None
