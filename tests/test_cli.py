"""The command line: the hello walkthrough, asm/disasm/run, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pybpf.cli.main import main
from pybpf.isa import decode
from pybpf.runtime.tag import prog_tag


def test_hello_walkthrough(capsys):
    assert main(["hello"]) == 0
    out = capsys.readouterr().out
    assert "tag 490c48c1179970a8" in out and "SHA1 gives d35b94b4c0c10efb" in out
    for n in range(3):
        assert f"bpf_trace_printk: Hello World {n}" in out
    assert '"counter": 3' in out
    assert "   0: (18) r6 = map[id:1][0]+0" in out
    assert "6: (85) call bpf_trace_printk#6" in out
    assert "2: array  name hello.rodata  flags 0x480" in out and "frozen" in out
    assert "       2:\t61 63 00 00 00 00 00 00\tr3 = *(u32 *)(r6 + 0)" in out


def test_tag_algorithms():
    insns = decode(bytes.fromhex("b7000000020000009500000000000000"))
    assert prog_tag(insns) == prog_tag(insns, "sha256") != prog_tag(insns, "sha1")
    with pytest.raises(ValueError):
        prog_tag(insns, "md5")


def test_tags_are_sha256_unless_told(capsys, monkeypatch):
    """Linux 6.18's SHA-256 tag by default; the seeds' SHA-1 by option or environment."""
    assert main(["hello", "--tag-algo", "sha1"]) == 0
    out = capsys.readouterr().out
    assert "tag d35b94b4c0c10efb" in out and "SHA256 gives 490c48c1179970a8" in out
    monkeypatch.setenv("PYBPF_TAG_ALGO", "sha1")
    assert main(["hello"]) == 0
    assert "tag d35b94b4c0c10efb" in capsys.readouterr().out
    monkeypatch.setenv("PYBPF_TAG_ALGO", "md5")
    assert main(["hello"]) != 0
    assert "PYBPF_TAG_ALGO must be one of sha1, sha256, not 'md5'" in capsys.readouterr().err


def test_hello_on_another_object(capsys):
    from pathlib import Path

    obj = Path(__file__).resolve().parent / "fixtures" / "hash_counter.bpf.o"
    assert main(["hello", str(obj)]) == 0
    assert "Return value: 2" in capsys.readouterr().out


def test_asm_disasm_run(tmp_path: Path, capsys):
    src = tmp_path / "p.s"
    src.write_text("ldxw %r0, [%r1+0]\nadd %r0, 1\nexit\n")
    out = tmp_path / "p.bin"
    assert main(["asm", str(src), "-o", str(out)]) == 0
    assert out.read_bytes()[:1] == b"\x61"
    assert main(["disasm", str(out)]) == 0
    assert capsys.readouterr().out == "r0 = *(u32 *)(r1 + 0)\nr0 += 1\nexit\n"
    assert main(["disasm", str(out), "-d", "xlated"]) == 0
    assert "   1: (07) r0 += 1" in capsys.readouterr().out
    assert main(["run", str(out), "--mem", "29 00 00 00"]) == 0
    assert "r0 = 0x2a (42)" in capsys.readouterr().out
    assert main(["run", str(src), "--mem", "01 00 00 00"]) == 0
    assert "r0 = 0x2 (2)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, text",
    [
        (["run", "/nonexistent.bin"], "cannot read"),
        (["run", "-", "--hex"], "not hex"),
        (["disasm", "/dev/null"], ""),
    ],
)
def test_errors_are_one_line(argv, text, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pybpf.cli.main", *argv], input="zz",
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "Traceback" not in proc.stderr
    if text:
        assert proc.returncode == 1 and text in proc.stderr
        assert proc.stderr.count("\n") == 1


def test_bad_bytecode_and_assembly(tmp_path: Path, capsys):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x07\x00\x01\x00\x01\x00\x00\x00")
    assert main(["run", str(bad)]) == 1
    assert "reserved field off" in capsys.readouterr().err
    src = tmp_path / "bad.s"
    src.write_text("mov %r0, 1\nfrobnicate %r1\n")
    assert main(["asm", str(src)]) == 1
    assert "line 2, column 1" in capsys.readouterr().err


def test_run_trace_shows_each_instruction_and_changed_registers(tmp_path: Path, capsys):
    src = tmp_path / "loop.s"
    src.write_text("mov %r0, 0\nmov %r1, 2\nl:\nadd %r0, %r1\nsub %r1, 1\njne %r1, 0, l\nexit\n")
    assert main(["run", str(src), "--trace"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        "   0: r0 = 0",
        "   1: r1 = 2                            r1 = 0x2",
        "   2: r0 += r1                          r0 = 0x2",
    ]
    assert lines[-3:] == ["   5: exit", "r0 = 0x3 (3)", "executed 9 instructions"]


def test_cc_compiles_and_hello_loads_the_result(tmp_path: Path, capsys):
    import shutil

    if shutil.which("clang") is None or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        pytest.skip("clang or libbpf-dev headers not installed")
    src = tmp_path / "hello.bpf.c"
    src.write_bytes((Path(__file__).resolve().parent / "fixtures" / "hello.bpf.c").read_bytes())
    assert main(["cc", str(src)]) == 0
    obj = capsys.readouterr().out.strip()
    assert main(["hello", obj]) == 0
    assert "tag 490c48c1179970a8" in capsys.readouterr().out


def test_cc_without_clang_says_how_to_install(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("CLANG", "no-such-clang-binary")
    (tmp_path / "x.bpf.c").write_text("int x;")
    assert main(["cc", str(tmp_path / "x.bpf.c")]) == 1
    assert "apt-get install clang" in capsys.readouterr().err
