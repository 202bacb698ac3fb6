"""The report for people: hints for the kernel's messages, the source line, the path.

Every row of the hint table carries an example in the kernel's wording and
must answer it (no earlier row may shadow it).  Programs the kernel refuses
give real messages (recorded in ``kernel_facts/verifier_report.json``, the live
kernel asked too where bpf(2) works), and each must get the hint its row promises.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pybpf.asm import assemble
from pybpf.btf.ext import LineInfo
from pybpf.errors import VerifierError
from pybpf.isa import Instruction, encode
from pybpf.kernel import linux
from pybpf.testing import kernel_facts as kf
from pybpf.verifier import report
from pybpf.verifier.report import HINTS, build_report, find_line, format_path, hint_for


@pytest.mark.parametrize("row", HINTS, ids=[r.example[:40] for r in HINTS])
def test_every_row_answers_its_example(row: report.Hint):
    match = row.pattern.search(row.example)
    assert match, f"{row.pattern.pattern!r} does not match {row.example!r}"
    assert hint_for(row.example) == match.expand(row.hint)


def test_register_numbers_reach_the_hint():
    assert hint_for("R7 !read_ok").startswith("R7 is read before it is written")
    assert "expected: map_ptr" in hint_for("R1 type=scalar expected=map_ptr")


def test_unknown_messages_get_no_hint():
    assert hint_for("something the kernel never says") is None


SOCKET_FILTER, KPROBE, XDP, CGROUP_SKB = 1, 2, 6, 8
ARRAY, HASH = 2, 1
MAP = "r1 = 0x7777 ll"  # replaced by the map's fd
LOOKUP = f"*(u32 *)(r10 - 4) = 0\nr2 = r10\nr2 += -4\n{MAP}\ncall 1\n"

# (id, program type, map type or None, program, license, the row's pattern it must hit)
KERNEL = [
    ("read-ok", SOCKET_FILTER, None, "r0 = r2\nexit", "GPL", r"!read_ok"),
    ("scalar", SOCKET_FILTER, None, "r1 = 0\nr0 = *(u8 *)(r1 + 0)\nexit", "GPL",
     r"invalid mem access 'scalar'"),
    ("packet", XDP, None, "r2 = *(u32 *)(r1 + 0)\nr0 = *(u8 *)(r2 + 14)\nr0 = 0\nexit", "GPL",
     r"offset is outside of the packet"),
    ("exit-value", CGROUP_SKB, None, "r0 = 2\nexit", "GPL", r"At program exit"),
    ("ctx", SOCKET_FILTER, None, "r0 = *(u32 *)(r1 + 4000)\nexit", "GPL",
     r"invalid bpf_context access"),
    ("no-such-helper", SOCKET_FILTER, None, "call 9999\nexit", "GPL", r"invalid func unknown#"),
    ("helper-not-allowed", SOCKET_FILTER, None, "call 4\nexit", "GPL",
     r"cannot use helper"),
    ("gpl-only", KPROBE, None, "call 6\nexit", "MIT", r"GPL-restricted"),
    ("misaligned", SOCKET_FILTER, None, "*(u64 *)(r10 - 7) = 0\nr0 = 0\nexit", "GPL",
     r"^misaligned"),
    ("stack-frame", SOCKET_FILTER, None, "*(u64 *)(r10 - 520) = 0\nr0 = 0\nexit", "GPL",
     r"stack( R"),
    ("or-null", SOCKET_FILTER, HASH, LOOKUP + "r0 = *(u32 *)(r0 + 0)\nr0 = 0\nexit", "GPL",
     r"invalid mem access '\w*_or_null'"),
    ("arith-or-null", SOCKET_FILTER, HASH, LOOKUP + "r0 += 4\nr0 = 0\nexit", "GPL",
     r"pointer arithmetic on \w*_or_null"),
    ("map-value-range", SOCKET_FILTER, ARRAY,
     LOOKUP + "if r0 == 0 goto +1\nr0 = *(u32 *)(r0 + 8)\nr0 = 0\nexit", "GPL",
     r"(min|max) value is outside"),
    ("type-expected", SOCKET_FILTER, None, "r1 = 0\nr2 = r10\ncall 1\nr0 = 0\nexit", "GPL",
     r"type=\S+ expected="),
    ("frame-pointer", SOCKET_FILTER, None, "r10 = 0\nr0 = 0\nexit", "GPL", r"read only"),
    ("unbounded", SOCKET_FILTER, ARRAY,
     LOOKUP + "if r0 == 0 goto +3\nr1 = *(u32 *)(r0 + 0)\nr0 += r1\nr0 = *(u8 *)(r0 + 0)\n"
     "r0 = 0\nexit", "GPL", r"unbounded memory access"),
    ("unbounded-min", SOCKET_FILTER, ARRAY,
     LOOKUP + "if r0 == 0 goto +3\nr1 = *(u64 *)(r0 + 0)\nr0 += r1\nr0 = *(u8 *)(r0 + 0)\n"
     "r0 = 0\nexit", "GPL", r"unbounded min value"),
    ("infinite-loop", SOCKET_FILTER, None, "r0 = 0\nif r0 == 0 goto -1\nexit", "GPL",
     r"infinite loop"),
    ("unreachable", SOCKET_FILTER, None, "r0 = 0\nexit\nexit", "GPL", r"unreachable"),
]  # fmt: skip


def _row(fragment: str) -> report.Hint:
    rows = [r for r in HINTS if fragment in r.pattern.pattern]
    assert len(rows) == 1, f"{fragment!r} names {len(rows)} rows"
    return rows[0]


def kernel_refusal(prog_type: int, map_type: int | None, text: str, lic: str) -> list[str]:
    """The last lines of the live kernel's log refusing the program (a kernel_facts probe);
    [] when it loads.  The refusal is one of the last lines (some are followed by states)."""
    insns = assemble(text, "llvm")
    kmap = linux.map_create(map_type, 4, 8, 1) if map_type is not None else None
    try:
        if kmap is not None:
            insns = [Instruction(0x18, i.dst_reg, 1, 0, kmap.fd)
                     if i.code == 0x18 and i.imm == 0x7777 else i for i in insns]  # fmt: skip
        linux.prog_load(encode(insns), prog_type=prog_type, license=lic).close()
    except linux.KernelError as err:
        return err.log.rstrip("\n").splitlines()[-4:]
    finally:
        if kmap is not None:
            kmap.close()
    return []


@pytest.mark.parametrize(("case", "prog_type", "map_type", "text", "lic", "fragment"),
                         [pytest.param(*r, id=r[0]) for r in KERNEL])  # fmt: skip
def test_hints_answer_the_kernel(kernel_facts, case, prog_type, map_type, text, lic, fragment):
    tail = kernel_facts.fact(f"refusal/{case}",
                             lambda: kernel_refusal(prog_type, map_type, text, lic))
    assert tail, "the kernel loads the program"
    row = _row(fragment)
    messages = [line for line in tail if row.pattern.search(line)]
    assert messages, tail
    assert hint_for(messages[0]) == row.pattern.search(messages[0]).expand(row.hint)


# --- the source line -------------------------------------------------------------

def _info(pc: int, line: int, text: str = "", file: str = "hello.bpf.c") -> LineInfo:
    return LineInfo(insn_index=pc, file=file, line_text=text, line=line, col=5)


PACKET = "invalid access to packet, off=14 size=1, R2(id=0,off=14,r=0)"
PROG = assemble("\n".join(["r0 = 0"] * 2 + ["if r0 > 1 goto +0"] + ["r0 = 0"]
                          + ["if r0 > 1 goto +1"] + ["r0 = 0"] * 2 + ["exit"]), "llvm")


def test_report_as_the_issue_shows_it():
    infos = {0: _info(0, 10, "int f(void)"),
             6: _info(6, 12, "    if (eth->h_proto != bpf_htons(ETH_P_IP))")}  # fmt: skip
    text = build_report(PROG, VerifierError(PACKET, pc=7), path=[0, 1, 2, 3, 4, 6, 7],
                        line_info=infos)  # fmt: skip
    assert text == (
        f"error: {PACKET}\n"
        "  at pc 7 in hello.bpf.c:12\n"
        "     12 |     if (eth->h_proto != bpf_htons(ETH_P_IP))\n"
        "  path: 0 -> 3 -> 6 (jump taken at 4) -> 7\n"
        "  hint: compare `data + N` with `data_end` before reading N bytes of the packet\n"
    )


def test_line_info_is_found_as_find_linfo_finds_it():
    infos = {0: _info(0, 1), 4: _info(4, 2), 9: _info(9, 3)}
    assert [find_line(infos, pc).line for pc in (0, 3, 4, 8, 9, 50)] == [1, 1, 2, 2, 3, 3]
    assert find_line({4: _info(4, 2)}, 1) is None
    assert find_line(None, 1) is None


def test_source_text_fills_in_a_record_without_text():
    info = SimpleNamespace(file="/src/prog.c", line=2, col=1, text="")
    src = "int a;\n  return XDP_DROP;\n"
    for source in (src, {"/src/prog.c": src}, {"prog.c": src}):
        text = build_report(PROG, VerifierError("R0 !read_ok", pc=1),
                            line_info={0: info}, source=source)  # fmt: skip
        assert "      2 |   return XDP_DROP;\n" in text
    assert "|" not in build_report(PROG, VerifierError("x", pc=1), line_info={0: info})


def test_report_without_place_or_path():
    err = VerifierError("combined stack size of 2 calls is 528. Too large", errno=13)
    assert build_report(PROG, err) == (
        "error: combined stack size of 2 calls is 528. Too large\n"
        "  hint: the functions on one call chain use more than 512 bytes of stack together; "
        "move large buffers to a per-CPU array map\n"
    )
    text = build_report(PROG, VerifierError("odd", pc=3))
    assert text == "error: odd\n  at pc 3\n"


# --- the path ------------------------------------------------------------------------

CALLS = assemble("""
r6 = 0
call local +5
if r0 > 1 goto +0
goto +2
r0 = 1 ll
exit
r0 = 1
exit
""", "llvm")  # pcs: 0 1 2 3 4 (an lddw) 6 7 8


@pytest.mark.parametrize(("path", "end", "expected"), [
    ([0, 1, 2, 3], None, "0 -> 3"),
    ([0, 1, 7, 8], None, "0 -> 7 (call at 1) -> 8"),
    ([0, 1, 7, 8, 2, 3, 6], 6, "0 -> 7 (call at 1) -> 2 (return from 8) -> 3 -> 6 (goto at 3)"),
    ([0, 1, 7, 8, 2, 3], 6, "0 -> 7 (call at 1) -> 2 (return from 8) -> 3 -> 6 (goto at 3)"),
    ([3, 6], None, "3 -> 6 (goto at 3)"),
    ([], 7, "7"),
])  # fmt: skip
def test_path_stops(path, end, expected):
    assert format_path(CALLS, path, end) == expected


def test_loops_are_counted_not_repeated():
    loop = assemble("r0 = 0\nr0 += 1\nif r0 < 50 goto -2\nexit", "llvm")
    path = [0] + [1, 2] * 50 + [3]
    assert format_path(loop, path) == "0 -> 1 (jump taken at 2) x49 -> 3"


def test_long_paths_keep_both_ends():
    prog = assemble("\n".join(["r0 = 0", *["if r0 > 9 goto +0"] * 40, "exit"]), "llvm")
    stops = format_path(prog, list(range(42))).split(" -> ")
    assert len(stops) == report.MAX_PATH_STOPS and "..." in stops
    assert stops[:2] == ["0", "2"]
    assert stops[-2:] == ["40", "41"]


def test_a_path_of_the_failing_pc_alone_is_left_out():
    text = build_report(PROG, VerifierError("R2 !read_ok", pc=0), path=[0])
    assert "path:" not in text


def test_inconsistent_input_gives_a_plain_report():
    text = build_report([], VerifierError("R2 !read_ok", pc=5), path=[9, 100],
                        line_info={7: _info(7, 3)})  # fmt: skip
    assert text.splitlines()[:3] == ["error: R2 !read_ok", "  at pc 5", "  path: 9 -> 100 -> 5"]


CORPUS_FACTS = Path(__file__).resolve().parent / "kernel_facts" / "verifier_corpus.json"


def _corpus_refusals() -> list[tuple[str, list[str]]]:
    """(case, the kernel's error lines) of every refusal recorded for the verifier corpus
    (a fact "reject PC ERRNO" followed by the kernel's lines)."""
    facts = kf.FactFile.load(CORPUS_FACTS).facts
    return [(name, value.splitlines()[1:]) for name, entry in sorted(facts.items())
            if isinstance(value := entry["value"], str) and value.startswith("reject ")]


def test_the_corpus_refusals_get_hints():
    refusals = _corpus_refusals()
    assert refusals, f"no recorded refusals in {CORPUS_FACTS}"
    missing = [(name, block[:1]) for name, block in refusals
               if not any(hint_for(line) for line in block)]  # fmt: skip
    # the corpus grows; new kernel messages may arrive before their hint
    assert len(missing) <= len(refusals) // 20, missing
