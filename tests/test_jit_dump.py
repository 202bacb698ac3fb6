"""Native code listings: disasm.py, ``prog dump jited``, jited fields of ``prog show``, --engine.

The layout is bpftool 7.1's (prog_dump / disasm_print_insn with LLVM's
disassembler); the machine code is pybpf's own, so tests pin the structure,
not the instructions.  Engine selection is checked through separate
``python -m pybpf.cli.main`` processes sharing a state directory, as
bpftool commands share the kernel.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.cli.main import main
from pybpf.errors import JitError
from pybpf.isa import Instruction
from pybpf.jit import disasm
from pybpf.jit.abi import Callout
from pybpf.jit.engine import JitProgram
from pybpf.vm import conformance_helpers

HELLO = str(Path(__file__).resolve().parent / "fixtures" / "hello.bpf.o")
PIN = "/sys/fs/bpf/hello"
INSN = re.compile(r"^ *([0-9a-f]+):\t(\S+)(\t\S.*)?$")
# r1 = 5; r2 = 6; call 1000 (a test helper); r0 += 1; exit
CALLING = (Instruction(0xB7, 1, 0, 0, 5), Instruction(0xB7, 2, 0, 0, 6),
           Instruction(0x85, 0, 0, 0, 1000), Instruction(0x07, 0, 0, 0, 1),
           Instruction(0x95))  # fmt: skip


@pytest.fixture(scope="module")
def compiled():
    prog = JitProgram(CALLING, helpers=conformance_helpers(), checked=True)
    yield prog
    prog.close()


# --- disasm.py -------------------------------------------------------------------------------
def test_functions_of_a_compiled_object(compiled):
    funcs = disasm.functions(compiled.object_code)
    assert [f.name for f in funcs] == ["bpf_entry"]
    assert funcs[0].section.endswith("text") and len(funcs[0].code) > 20


def test_disassembly_covers_every_byte(compiled):
    code = disasm.functions(compiled.object_code)[0].code
    lines = disasm.disassemble(code, opcodes=True)
    assert lines[0].offset == 0
    for before, after in itertools.pairwise(lines):
        assert after.offset == before.offset + before.size
    assert b"".join(line.opcodes for line in lines) == code
    assert any(line.mnemonic.startswith("ret") for line in lines)
    assert "(bad)" not in {line.mnemonic for line in lines}
    assert all(line.opcodes == b"" for line in disasm.disassemble(code))


def test_undecodable_bytes_become_bad_lines():
    code = b"\x06\x06\x90\xc3"  # push %es is invalid in 64-bit mode
    lines = disasm.disassemble(code, opcodes=True)
    assert [line.mnemonic for line in lines] == ["(bad)", "(bad)", "nop", "retq"]
    assert [line.offset for line in lines] == [0, 1, 2, 3]
    assert lines[-1].text == "retq" and lines[0].opcodes == b"\x06"


def test_anchors_name_the_pc_of_callouts(compiled):
    code = disasm.functions(compiled.object_code)[0].code
    anchors = disasm.anchors(disasm.disassemble(code), len(CALLING))
    assert 2 in anchors.values()  # the helper call at pc 2
    assert all(0 <= pc < len(CALLING) for pc in anchors.values())
    offsets = disasm.source_offsets(disasm.disassemble(code), len(CALLING), [0, 2])
    assert sorted(offsets.values()) == [0, 2] and min(offsets) == 0


def test_callout_kinds_are_nonzero():
    assert min(int(k) for k in Callout) > 0  # so a plain constant (kind 0) is no anchor


@pytest.mark.parametrize("data", [b"", b"junk", b"\x7fELF" + bytes(60),
                                  b"\x7fELF\x02\x01" + bytes(58)])  # fmt: skip
def test_malformed_objects_raise_jit_error(data):
    with pytest.raises(JitError):
        disasm.functions(data)


def test_corrupted_objects_never_crash(compiled):
    rng = random.Random(7)
    good = compiled.object_code
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        try:
            for func in disasm.functions(bytes(data)):
                disasm.disassemble(func.code)
        except JitError:
            pass


# --- the CLI, in process -------------------------------------------------------------------
@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYBPF_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PYBPF_CACHE_DIR", str(tmp_path / "cache"))

    def go(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return go


@pytest.fixture
def jited(run):
    assert run("--engine", "jit", "prog", "load", HELLO, PIN) == (0, "", "")
    return run


def _insn_lines(text: str) -> list[re.Match]:
    return [m for m in map(INSN.match, text.splitlines()) if m]


def test_dump_jited_layout(jited):
    status, out, err = jited("prog", "dump", "jited", "pinned", PIN)
    assert status == 0, err
    lines = out.split("\n")
    tag = json.loads(jited("-j", "prog", "show", "pinned", PIN)[1])["tag"]
    assert lines[0] == "int hello(struct xdp_md * ctx):"
    assert lines[1] == f"bpf_prog_{tag}_hello:"
    assert lines[2] == '; bpf_printk("Hello World %d", counter);'
    assert INSN.match(lines[3]).group(1) == "0"
    assert out.endswith("\n\n")  # a blank line closes the function
    body = lines[2:-2]
    assert all(INSN.match(line) or line.startswith("; ") for line in body), body
    offsets = [int(m.group(1), 16) for m in _insn_lines(out)]
    assert offsets == sorted(set(offsets))
    assert any(m.group(2).startswith("ret") for m in _insn_lines(out))
    comments = [line for line in body if line.startswith("; ")]
    xlated = jited("prog", "dump", "xlated", "pinned", PIN)[1].splitlines()
    in_xlated = [line for line in xlated if line.startswith("; ")]
    assert comments == [c for c in in_xlated if c in comments]  # a subsequence, in order
    assert comments[0] == in_xlated[0]


def test_dump_jited_opcodes_linum_and_file(jited, tmp_path):
    out = jited("prog", "dump", "jited", "pinned", PIN, "opcodes", "linum")[1]
    lines = out.split("\n")
    assert lines[2] == ('; bpf_printk("Hello World %d", counter); '
                        "[file:./hello.bpf.c line_num:8 line_col:5]")  # fmt: skip
    code = bytearray()
    for i, line in enumerate(lines):
        if INSN.match(line):
            assert re.fullmatch(r"\t([0-9a-f]{2} )+", lines[i + 1]), lines[i + 1]
            code += bytes.fromhex(lines[i + 1])
    dest = tmp_path / "image.bin"
    assert jited("prog", "dump", "jited", "pinned", PIN, "file", str(dest))[0] == 0
    image = dest.read_bytes()
    # each command reloads the program, and its map addresses are compiled in: same size
    assert len(image) == len(code) and image[:16] == code[:16]
    shown = json.loads(jited("-j", "prog", "show", "pinned", PIN)[1])
    assert shown["jited"] is True and shown["bytes_jited"] == len(code)
    text = jited("prog", "show", "pinned", PIN)[1]
    assert f"\txlated 96B  jited {len(code)}B  memlock 4096B  map_ids 1,2" in text


def test_dump_jited_json(jited):
    doc = json.loads(jited("-j", "prog", "dump", "jited", "pinned", PIN, "opcodes", "linum")[1])
    assert isinstance(doc, list) and len(doc) == 1
    func = doc[0]
    assert list(func) == ["proto", "name", "insns"]
    assert func["proto"] == "int hello(struct xdp_md * ctx)"
    first = func["insns"][0]
    assert list(first) == ["src", "file", "line_num", "line_col", "pc", "operation",
                           "operands", "opcodes"]  # fmt: skip
    assert (first["file"], first["line_num"], first["line_col"]) == ("./hello.bpf.c", 8, 5)
    pcs = [int(i["pc"], 16) for i in func["insns"]]
    assert pcs[0] == 0 and pcs == sorted(set(pcs))
    for insn, nxt in itertools.pairwise(func["insns"]):
        assert int(nxt["pc"], 16) - int(insn["pc"], 16) == len(insn["opcodes"])
        assert insn["operands"] == [None] or all(isinstance(o, str) and o for o in
                                                 insn["operands"])  # fmt: skip
        assert all(re.fullmatch(r"0x[0-9a-f]{2}", b) for b in insn["opcodes"])
    plain = jited("-j", "prog", "dump", "jited", "pinned", PIN)[1]
    assert "opcodes" not in plain and "line_num" not in plain and '"src"' in plain


def test_dump_jited_of_several_programs(jited):
    assert jited("--engine", "jit", "prog", "load", HELLO, PIN + "2")[0] == 0
    status, out, _ = jited("prog", "dump", "jited", "name", "hello")
    assert status == 0
    headers = re.findall(r"^\d+: xdp  name hello  tag \w+  gpl$", out, re.M)
    assert len(headers) == 2 and out.count("bpf_prog_") == 2
    doc = json.loads(jited("-j", "prog", "dump", "jited", "name", "hello")[1])
    assert [d["id"] for d in doc] == [1, 2] and all(d["insns"][0]["name"] for d in doc)


def test_interpreted_program_is_not_jited(run):
    assert run("--engine", "interp", "prog", "load", HELLO, PIN)[0] == 0
    text = run("prog", "show", "pinned", PIN)[1]
    assert "\txlated 96B  not jited  memlock" in text
    doc = json.loads(run("-j", "prog", "show", "pinned", PIN)[1])
    assert doc["jited"] is False and "bytes_jited" not in doc
    status, out, err = run("prog", "dump", "jited", "pinned", PIN)
    assert (status, out) == (255, "")
    assert err == ("Error: error retrieving jit dump: no instructions returned or "
                   "kernel.kptr_restrict set?\n")  # fmt: skip


def bpftool_prog_show() -> dict:
    """What bpftool shows of hello.bpf.o loaded in the live kernel (a kernel_facts probe):
    the keys of ``-j prog show`` and the third line of ``prog show``, numbers masked."""
    pin = f"/sys/fs/bpf/pybpf_jit_{os.getpid()}"
    subprocess.run(["bpftool", "prog", "load", HELLO, pin], check=True)
    try:
        real = json.loads(subprocess.run(["bpftool", "-j", "prog", "show", "pinned", pin],
                                         check=True, capture_output=True, text=True).stdout)
        real_text = subprocess.run(["bpftool", "prog", "show", "pinned", pin], check=True,
                                   capture_output=True, text=True).stdout  # fmt: skip
    finally:
        os.unlink(pin)
    return {"keys": [k for k in real if k != "orphaned"],
            "line3": re.sub(r"\d+", "N", real_text.splitlines()[2])}


def test_show_fields_match_bpftool(jited, kernel_facts):
    no_bpftool = None if shutil.which("bpftool") else "bpftool is not installed"
    real = kernel_facts.offline_when(no_bpftool).fact("bpftool/prog_show", bpftool_prog_show)
    ours = json.loads(jited("-j", "prog", "show", "pinned", PIN)[1])
    assert [k for k in ours if k != "orphaned"] == real["keys"]
    our_line = jited("prog", "show", "pinned", PIN)[1].splitlines()[2]
    assert re.sub(r"\d+", "N", our_line) == real["line3"]


def test_bad_engine_is_refused(run):
    status, _, err = run("--engine", "fast", "prog", "load", HELLO, PIN)
    assert status == 255 and err == "Error: --engine takes interp or jit, not 'fast'\n"


# --- engine selection across processes -------------------------------------------------------
@pytest.fixture
def pybpf(tmp_path: Path):
    env = {**os.environ, "PYBPF_STATE_DIR": str(tmp_path / "state"),
           "PYBPF_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip

    def go(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "pybpf.cli.main", *args], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert "Traceback" not in proc.stderr, proc.stderr
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    return go


def test_engine_choice_persists_across_processes(pybpf, tmp_path):
    packet = tmp_path / "packet"
    packet.write_bytes(bytes(64))
    pybpf("--engine", "jit", "prog", "load", HELLO, "/sys/fs/bpf/native")
    pybpf("prog", "load", HELLO, "/sys/fs/bpf/default")  # the default engine: jit
    pybpf("--engine=interp", "prog", "load", HELLO, "/sys/fs/bpf/interp")
    shown = {p["id"]: p for p in json.loads(pybpf("-j", "prog", "show").stdout)}
    assert [shown[i]["jited"] for i in (1, 2, 3)] == [True, True, False]
    db = sqlite3.connect(tmp_path / "state" / "state.db")
    records = [json.loads(r) for (r,) in db.execute("SELECT record FROM progs ORDER BY id")]
    db.close()
    assert [p["engine"] for p in records] == ["jit", "jit", "interp"]
    for pin in ("native", "interp"):
        out = pybpf("prog", "run", "pinned", f"/sys/fs/bpf/{pin}", "data_in", str(packet)).stdout
        assert out.startswith("Return value: 2, duration")
    # one run on the other engine leaves the program where it was loaded
    out = pybpf("--engine", "interp", "prog", "run", "pinned", "/sys/fs/bpf/native",
                "data_in", str(packet), "repeat", "2").stdout  # fmt: skip
    assert out.startswith("Return value: 2, duration (average)")
    assert json.loads(pybpf("-j", "prog", "show", "id", "1").stdout)["jited"] is True
    out = pybpf("--engine", "jit", "prog", "run", "pinned", "/sys/fs/bpf/interp",
                "data_in", str(packet)).stdout  # fmt: skip
    assert out.startswith("Return value: 2")
    trace = pybpf("prog", "tracelog").stdout
    assert [int(n) for n in re.findall(r"Hello World (\d+)", trace)] == [0, 0, 1, 2, 1]
    dump = pybpf("prog", "dump", "jited", "id", "1").stdout
    assert dump.splitlines()[1].startswith("bpf_prog_") and _insn_lines(dump)


def test_pybpf_run_engine(pybpf, tmp_path):
    src = tmp_path / "prog.s"
    src.write_text("mov %r0, 6\nmul %r0, 7\nexit\n")
    for engine in ("interp", "jit"):
        out = pybpf("run", str(src), "--engine", engine).stdout
        assert out.startswith("r0 = 0x2a (42)\n")
    proc = pybpf("run", str(src), "--engine", "jit", "--trace", ok=False)
    assert proc.returncode == 1 and "need --engine interp" in proc.stderr


def test_state_survives_a_jit_that_refuses_a_saved_program(jited, monkeypatch, tmp_path):
    from pybpf.jit import cache

    def refuse(*args, **kwargs):
        raise JitError("LLVM rejected the generated IR")

    monkeypatch.setattr(cache, "build", refuse)
    status, out, _ = jited("prog", "show", "pinned", PIN)
    assert status == 0 and " jited " in out  # the size the state kept: listing compiles nothing
    packet = tmp_path / "packet"
    packet.write_bytes(bytes(64))
    status, out, _ = jited("prog", "run", "pinned", PIN, "data_in", str(packet))
    assert status == 0 and out.startswith("Return value: 2")  # on the interpreter instead
    status, out, _ = jited("prog", "show", "pinned", PIN)
    assert status == 0 and "not jited" in out  # and it stays there


def test_a_pinned_directory_is_not_a_program(run):
    assert run("--engine", "jit", "prog", "loadall", HELLO, "/sys/fs/bpf/dir")[0] == 0
    status, out, err = run("prog", "show", "pinned", "/sys/fs/bpf/dir")
    assert (status, out) == (255, "")
    assert err == "Error: bpf obj get (/sys/fs/bpf/dir): Permission denied\n"


def test_exact_pc_offsets_place_every_record(compiled):
    from types import SimpleNamespace

    from pybpf.cli.bpftool import jited

    lines = disasm.disassemble(disasm.functions(compiled.object_code)[0].code)
    starts = [line.offset for line in lines]
    engine = SimpleNamespace(object_code=compiled.object_code,
                             pc_offsets={0: 0, 3: starts[5], 4: starts[9]})  # fmt: skip
    prog = SimpleNamespace(engine=engine, name="calls", tag="0" * 16, xlated=CALLING,
                           notes={0: ["int f(void):", "; a = 5;"], 3: ["; a++;"],
                                  4: ["; return a;"]}, linum={})  # fmt: skip
    text = jited.dump_plain(prog).splitlines()
    assert text[:3] == ["int f(void):", f"bpf_prog_{'0' * 16}_calls:", "; a = 5;"]
    assert text[text.index("; a++;") + 1].startswith(f"{starts[5]:4x}:\t")
    assert text[text.index("; return a;") + 1].startswith(f"{starts[9]:4x}:\t")
