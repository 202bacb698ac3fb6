"""The layer rule, checked mechanically: imports point down, native modules stay single.

Each pybpf package may import only the packages listed for it below (and
itself).  This is the executable form of docs/architecture.md's layer
diagram; a new package must be added here, deliberately.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "pybpf"

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "uapi": set(),
    "isa": {"errors", "uapi"},
    "asm": {"errors", "uapi", "isa"},
    "vm": {"errors", "uapi", "isa"},
    "verifier": {"errors", "uapi", "isa"},
    "jit": {"errors", "uapi", "isa", "vm"},
    "runtime": {"errors", "uapi", "isa", "vm", "verifier", "jit"},
    "kernel": {"errors", "uapi", "isa", "vm", "verifier", "jit", "runtime"},
    "elf": {"errors", "uapi"},
    "btf": {"errors", "uapi"},
    "loader": {"errors", "uapi", "isa", "asm", "elf", "btf", "vm", "verifier", "jit", "runtime",
               "kernel"},
    "testing": {"errors", "uapi", "isa", "asm", "elf", "btf", "vm", "verifier", "jit", "runtime",
                "kernel", "loader"},
    "cli": {"errors", "uapi", "isa", "asm", "elf", "btf", "vm", "verifier", "jit", "runtime",
            "kernel", "loader", "testing"},
    "__init__": set(),
}

# Foreign packages and native bindings, each confined to the modules that own that boundary.
NATIVE: dict[str, set[str]] = {
    "ctypes": {"vm/memory.py", "kernel/linux.py", "jit/native.py", "testing/selftests_kernel.py"},
    "elftools": {"elf/reader.py"},
    "llvmlite": {"jit/native.py"},
    "capstone": {"jit/disasm.py"},
    "sortedcontainers": {"vm/memory.py"},
}


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_package_has_a_layer():
    assert {_layer(p) for p in _modules()} <= set(ALLOWED)


def test_imports_point_down():
    bad = []
    for path in _modules():
        layer = _layer(path)
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "pybpf" or len(parts) == 1:
                continue
            target = parts[1]
            if target != layer and target not in ALLOWED[layer]:
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert not bad, "\n".join(bad)


def test_native_bindings_stay_in_their_module():
    bad = []
    for path in _modules():
        rel = str(path.relative_to(SRC))
        for name in _imports(path):
            root = name.split(".")[0]
            if root in NATIVE and rel not in NATIVE[root]:
                bad.append(f"{rel} imports {name}")
    assert not bad, "\n".join(bad)
