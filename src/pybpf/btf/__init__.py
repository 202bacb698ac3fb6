"""BTF: the BPF Type Format of .BTF and .BTF.ext sections, pure Python over bytes.

* :class:`Btf` — parse a .BTF blob, ``types[id]``, ``find``, ``resolve``,
  ``size_of``, ``name_of``, ``c_decl``, ``type_only`` (bpftool's signatures),
  ``dump_raw`` (``bpftool btf dump``);
* :class:`BtfExt` — func_info, line_info and CO-RE relocations per section;
* :func:`map_def_from_btf` — a ``SEC(".maps")`` definition as libbpf decodes it;
* :func:`format_value` — map values as ``bpftool map dump`` prints them;
* :func:`load_vmlinux` — the running kernel's BTF (cached);
* :mod:`pybpf.btf.core` — CO-RE relocations computed as libbpf does.
"""

from .dump import format_entry, format_value, map_dump_json, map_dump_text, render_plain
from .ext import BtfExt, CoreRelo, LineInfo
from .maps import map_def_from_btf, maps_in_btf
from .model import Btf
from .types import BtfType, EnumValue, Member, Param, VarSecinfo
from .vmlinux import load_vmlinux

__all__ = [
    "Btf",
    "BtfExt",
    "BtfType",
    "CoreRelo",
    "EnumValue",
    "LineInfo",
    "Member",
    "Param",
    "VarSecinfo",
    "format_entry",
    "format_value",
    "load_vmlinux",
    "map_def_from_btf",
    "map_dump_json",
    "map_dump_text",
    "maps_in_btf",
    "render_plain",
]
