"""Usage: pybpf feature probe [kernel]
       pybpf feature list_builtins GROUP
       pybpf feature help

       GROUP := { prog_types | map_types | helpers }
       OPTIONS := { {-j|--json} [{-p|--pretty}] | {-d|--debug} }

       'probe' reports what pybpf's simulated kernel implements, in bpftool's
       shape: the program types that load and test-run, the map types that can be
       created, and the helpers each program type may call (available to the type in
       Linux 6.18 and implemented by pybpf), and the kernel pybpf models.  Programs
       are JIT-compiled through LLVM (``--engine interp`` runs them in the interpreter).
"""

from __future__ import annotations

from pybpf.cli.bpftool.common import Ctx, match, no_more
from pybpf.isa.helper_ids import HELPER_NAMES
from pybpf.runtime import model
from pybpf.runtime.helpers import HELPERS
from pybpf.runtime.maps import MAP_CLASSES
from pybpf.runtime.progtypes import PROG_TYPES


def _prog_types() -> list[str]:
    return [spec.name for _, spec in sorted(PROG_TYPES.items())]


def _map_types() -> list[str]:
    return [t.name.lower() for t in sorted(MAP_CLASSES)]


def _helpers(prog_type) -> list[str]:
    allowed = PROG_TYPES[prog_type].helpers
    return [f"bpf_{HELPER_NAMES[i]}" for i in sorted(allowed) if i in HELPERS]


def do_probe(ctx: Ctx, args: list[str]) -> int:
    if args:
        match(args.pop(0), ("kernel",), "component")
    no_more(args)
    if ctx.json:
        ctx.emit_json({
            "system_config": {"bpf_jit_enable": 1},
            "syscall_config": {"have_bpf_syscall": True},
            "program_types": {f"have_{n}_prog_type": True for n in _prog_types()},
            "map_types": {f"have_{n}_map_type": True for n in _map_types()},
            "helpers": {f"{PROG_TYPES[t].name}_available_helpers": _helpers(t)
                        for t in sorted(PROG_TYPES)},
            "misc": {"have_bounded_loops": True, "have_v2_isa_extension": True,
                     "have_v3_isa_extension": True, "have_v4_isa_extension": True},
            # pybpf's own section, after bpftool's: the kernel it models
            "pybpf": {"models": model.RELEASE, "recorded_on": [
                {"release": r.release, "fingerprint": r.fingerprint, "when": r.when}
                for r in model.RECORDINGS]},
        })  # fmt: skip
        return 0
    out = [model.describe(), "",
           "Scanning system configuration...",
           "JIT compiler is enabled (pybpf JIT-compiles through LLVM)", "",
           "Scanning system call availability...",
           "bpf() syscall is available (pybpf's simulated kernel)", "",
           "Scanning eBPF program types..."]  # fmt: skip
    out += [f"eBPF program_type {n} is available" for n in _prog_types()]
    out += ["", "Scanning eBPF map types..."]
    out += [f"eBPF map_type {n} is available" for n in _map_types()]
    out += ["", "Scanning eBPF helper functions..."]
    for t in sorted(PROG_TYPES):
        out.append(f"eBPF helpers supported for program type {PROG_TYPES[t].name}:")
        out += [f"\t- {h}" for h in _helpers(t)]
    out += ["", "Scanning miscellaneous eBPF features...",
            "Bounded loop support is available",
            "ISA extension v2 is available", "ISA extension v3 is available",
            "ISA extension v4 is available", ""]  # fmt: skip
    ctx.out.write("\n".join(out) + "\n")
    return 0


def do_list_builtins(ctx: Ctx, args: list[str]) -> int:
    group = match(args.pop(0) if args else "", ("prog_types", "map_types", "helpers"),
                  "group")  # fmt: skip
    no_more(args)
    if group == "prog_types":
        names = _prog_types()
    elif group == "map_types":
        names = _map_types()
    else:
        names = [f"bpf_{HELPER_NAMES[i]}" for i in sorted(HELPERS) if i < len(HELPER_NAMES)]
    if ctx.json:
        ctx.emit_json(names)
    else:
        ctx.out.write("".join(n + "\n" for n in names))
    return 0


COMMANDS = {"probe": do_probe, "list_builtins": do_list_builtins}
READ_ONLY = {"probe", "list_builtins"}
