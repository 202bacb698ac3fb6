"""The kernel's last rewrites as pure functions (pybpf.verifier.fixups), on small images.

Each case is a kept image in the llvm dialect, the verifier's facts about it and the
image ``prog dump xlated`` shows, with the offsets of the layout snapshot (Linux
6.18.44 as recorded); the same rewrites are checked against the live kernel's dumps in
tests/test_xlated_kernel.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pybpf.asm import llvm
from pybpf.asm import xlated as dialect
from pybpf.uapi.klayout import LayoutError, Layouts, snapshot
from pybpf.verifier.fixups import Site, helper_symbol, kernel_view

XDP, SOCKET_FILTER, SCHED_CLS, SK_REUSEPORT, SK_LOOKUP, TRACING = 6, 1, 3, 21, 30, 26
LAYOUTS = Layouts("test", {
    "xdp_buff.data": (0, 8), "xdp_buff.data_end": (8, 8), "bpf_array.value": (312, 0),
    "htab_elem.key": (48, 0), "bpf_array.pptrs": (312, 0), "sk_buff.len": (112, 4),
    "sk_buff.cb": (40, 48),
    "qdisc_skb_cb.data": (8, 20), "sk_buff.__cloned_offset": (126, 0),
    "sk_buff.protocol": (176, 2), "sk_reuseport_kern.skb": (0, 8),
    "bpf_sk_lookup_kern.v6.daddr": (24, 8), "bpf_sk_lookup_kern.sport": (4, 2),
})  # fmt: skip
ARRAY = SimpleNamespace(map_type=2, key_size=4, value_size=12, max_entries=4, map_flags=0)
PERCPU_ARRAY = SimpleNamespace(map_type=6, key_size=4, value_size=8, max_entries=4, map_flags=0)
HASH = SimpleNamespace(map_type=1, key_size=6, value_size=8, max_entries=4, map_flags=0)
#: kfunc prototypes as the verifier gives them (KfuncProto: name, parameters, R0's kind)
CAST = SimpleNamespace(name="bpf_cast_to_kern_ctx", args=("obj",), ret="struct")
ITER_NEXT = SimpleNamespace(name="bpf_iter_num_next", args=("it",), ret="mem")


def shown(text: str, prog_type: int = XDP, sites=None, **kw) -> list[str]:
    view = kernel_view(llvm.assemble(text), prog_type, sites, layouts=LAYOUTS, **kw)
    return dialect.disassemble(view.insns, helper_name=lambda i: None).splitlines()


CASES = {
    "xdp data_end is xdp_buff's, 8 bytes": (
        "r2 = *(u32 *)(r1 + 4)\nr0 = 2\nexit", XDP, {0: Site(ptr="ctx")},
        ["   0: (79) r2 = *(u64 *)(r1 +8)", "   1: (b7) r0 = 2", "   2: (95) exit"]),
    "an skb's narrow load of len shifts and masks": (
        "r0 = *(u8 *)(r1 + 1)\nexit", SOCKET_FILTER, {0: Site(ptr="ctx")},
        ["   0: (61) r0 = *(u32 *)(r1 +112)", "   1: (74) w0 >>= 8", "   2: (54) w0 &= 255",
         "   3: (95) exit"]),
    "cb is never narrowed": (
        "r0 = *(u8 *)(r1 + 49)\nexit", SOCKET_FILTER, {0: Site(ptr="ctx")},
        ["   0: (71) r0 = *(u8 *)(r1 +49)", "   1: (95) exit"]),
    "division by a register gets its zero guard": (
        "r0 /= r1\nexit", XDP, {},
        ["   0: (55) if r1 != 0x0 goto pc+2", "   1: (ac) w0 ^= w0", "   2: (05) goto pc+1",
         "   3: (3f) r0 /= r1", "   4: (95) exit"]),
    "an array lookup is inlined, branches over it move": (
        "if r2 == 0 goto +1\ncall 1\nexit", XDP, {1: Site(map=ARRAY)},
        ["   0: (15) if r2 == 0x0 goto pc+7", "   1: (07) r1 += 312",
         "   2: (61) r0 = *(u32 *)(r2 +0)", "   3: (35) if r0 >= 0x4 goto pc+3",
         "   4: (67) r0 <<= 4", "   5: (0f) r0 += r1", "   6: (05) goto pc+1",
         "   7: (b7) r0 = 0", "   8: (95) exit"]),
    "a hash lookup calls __htab_map_lookup_elem and skips the key": (
        "call 1\nexit", XDP, {0: Site(map=HASH)},
        ["   0: (85) call bpf_map_lookup_elem#1", "   1: (15) if r0 == 0x0 goto pc+1",
         "   2: (07) r0 += 56", "   3: (95) exit"]),
    "a per-CPU array lookup is inlined with the per-CPU mov": (
        "call 1\nexit", XDP, {0: Site(map=PERCPU_ARRAY)},
        ["   0: (07) r1 += 312", "   1: (61) r0 = *(u32 *)(r2 +0)",
         "   2: (35) if r0 >= 0x4 goto pc+5", "   3: (67) r0 <<= 3", "   4: (0f) r0 += r1",
         "   5: (79) r0 = *(u64 *)(r0 +0)", "   6: (bf) r0 = &(void __percpu *)(r0)",
         "   7: (05) goto pc+1", "   8: (b7) r0 = 0", "   9: (95) exit"]),
    "a tc program writing its packet starts with the unclone prologue": (
        "r0 = 0\nexit", SCHED_CLS, {},
        ["   0: (71) r6 = *(u8 *)(r1 +126)", "   1: (54) w6 &= 1",
         "   2: (15) if r6 == 0x0 goto pc+7", "   3: (bf) r6 = r1", "   4: (af) r2 ^= r2",
         "   5: (85) call bpf_skb_pull_data#39", "   6: (15) if r0 == 0x0 goto pc+2",
         "   7: (b4) w0 = 2", "   8: (95) exit", "   9: (bf) r1 = r6", "  10: (b7) r0 = 0",
         "  11: (95) exit"]),
    "sk_reuseport's eth_protocol is its skb's protocol, narrowed": (
        "r0 = *(u8 *)(r1 + 20)\nexit", SK_REUSEPORT, {0: Site(ptr="ctx")},
        ["   0: (79) r0 = *(u64 *)(r1 +0)", "   1: (69) r0 = *(u16 *)(r0 +176)",
         "   2: (54) w0 &= 255", "   3: (95) exit"]),
    "sk_lookup's local_ip6 is read through its pointer, 0 without one": (
        "r0 = *(u32 *)(r1 + 48)\nexit", SK_LOOKUP, {0: Site(ptr="ctx")},
        ["   0: (79) r0 = *(u64 *)(r1 +24)", "   1: (15) if r0 == 0x0 goto pc+1",
         "   2: (61) r0 = *(u32 *)(r0 +4)", "   3: (95) exit"]),
    "sk_lookup's remote_port read as 4 bytes is the 2-byte sport": (
        "r0 = *(u32 *)(r1 + 36)\nexit", SK_LOOKUP, {0: Site(ptr="ctx")},
        ["   0: (69) r0 = *(u16 *)(r1 +4)", "   1: (95) exit"]),
    "bpf_cast_to_kern_ctx is r0 = r1, the bpf_fastcall spill and fill around it go": (
        "r2 = 1\n*(u64 *)(r10 - 8) = r2\ncall kfunc 5\nr2 = *(u64 *)(r10 - 8)\nr0 = r2\nexit",
        TRACING, {2: Site(kfunc=CAST)},
        ["   0: (b7) r2 = 1", "   1: (bf) r0 = r1", "   2: (bf) r0 = r2", "   3: (95) exit"]),
    "a kfunc that is not bpf_fastcall keeps the registers' spills": (
        "*(u64 *)(r10 - 8) = r2\ncall kfunc 7\nr2 = *(u64 *)(r10 - 8)\nexit",
        TRACING, {1: Site(kfunc=ITER_NEXT)},
        ["   0: (7b) *(u64 *)(r10 -8) = r2", "   1: (85) call kernel-function#7",
         "   2: (79) r2 = *(u64 *)(r10 -8)", "   3: (95) exit"]),
}  # fmt: skip


@pytest.mark.parametrize(("text", "prog_type", "sites", "want"), CASES.values(), ids=CASES)
def test_shown_image(text, prog_type, sites, want):
    direct = "prologue" in next(k for k, v in CASES.items() if v[0] == text)
    assert shown(text, prog_type, sites, direct_write=direct) == want


def test_the_view_names_the_function_a_call_reaches():
    view = kernel_view(llvm.assemble("call 1\ncall 2\ncall 7\nexit"), XDP,
                       {0: Site(map=HASH), 1: Site(map=HASH)}, layouts=LAYOUTS)  # fmt: skip
    assert view.symbols == {0: "__htab_map_lookup_elem", 3: "htab_map_update_elem",
                            4: "bpf_user_rnd_u32"}  # fmt: skip
    assert view.pc_map == {0: 0, 1: 3, 2: 4, 3: 5}
    assert helper_symbol(25, XDP) == "bpf_xdp_event_output"
    assert helper_symbol(25, SCHED_CLS) == "bpf_skb_event_output"
    kfunc = kernel_view(llvm.assemble("call kfunc 7\nexit"), TRACING, {0: Site(kfunc=ITER_NEXT)},
                        layouts=LAYOUTS)  # fmt: skip
    assert kfunc.symbols == {0: "bpf_iter_num_next"}


def test_unknown_layout_is_a_typed_error():
    with pytest.raises(LayoutError):
        LAYOUTS.off("sk_buff.nothing")


def test_snapshot_is_stamped():
    snap = snapshot()
    assert snap.release and snap.off("xdp_buff.data_end") == 8
