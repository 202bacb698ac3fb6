"""``pybpf net ...``: XDP on pybpf's virtual devices, and feeding them pcap files."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest
from tests.test_bpftool_map import load_hello, run

from pybpf.cli.bpftool.net import PcapError, PcapReader, Progress, read_pcap, udp_frame
from pybpf.kernel import state


@pytest.fixture
def root(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("PYBPF_STATE_DIR", str(tmp_path / "state"))
    return state.state_dir()


def test_attach_show_detach(root, capsys):
    load_hello(capsys)
    empty = "xdp:\n\ntc:\n\nflow_dissector:\n\n"
    assert run(capsys, "net", "show") == (0, empty, "")
    with state.session(write=False) as kernel:
        (ident,) = kernel.progs
    assert run(capsys, "net", "attach", "xdp", "name", "hello", "dev", "eth0") == (0, "", "")
    assert run(capsys, "net", "show")[1] == empty.replace(
        "xdp:\n", f"xdp:\neth0(2) driver id {ident}\n")
    assert json.loads(run(capsys, "-j", "net", "show", "dev", "eth0")[1]) == [{
        "xdp": [{"devname": "eth0", "ifindex": 2, "mode": "driver", "id": ident}],
        "tc": [], "flow_dissector": []}]
    status, _, err = run(capsys, "net", "attach", "xdp", "id", str(ident), "dev", "eth0")
    assert status == 240 and err.endswith(
        "Error: interface xdp attach failed: Device or resource busy\n")
    assert run(capsys, "net", "attach", "xdp", "pinned", "/sys/fs/bpf/hello", "dev", "eth0",
               "overwrite")[0] == 0
    assert run(capsys, "net", "attach", "xdp", "id", str(ident), "dev", "nosuch")[2] == (
        "Error: invalid devname nosuch\n")
    assert run(capsys, "net", "attach", "xdpx", "id", str(ident), "dev", "lo")[2] == (
        "Error: invalid net attach/detach type: xdpx\n")
    assert run(capsys, "net", "attach", "xdp", "id", "99", "dev", "lo")[2] == (
        "Error: get by id (99): No such file or directory\n")
    assert run(capsys, "net", "attach", "xdp", "id", str(ident))[2] == (
        "Error: 'attach' needs at least 5 arguments, 3 found\n")
    # the attachment keeps the program alive without its pin
    (state.state_dir() / "bpffs" / "hello").unlink()
    assert f"eth0(2) driver id {ident}" in run(capsys, "net", "show")[1]
    assert run(capsys, "-j", "net", "detach", "xdp", "dev", "eth0") == (0, "null\n", "")
    assert run(capsys, "net", "show") == (0, empty, "")
    assert run(capsys, "-j", "map", "show")[1] == "[]\n"


def test_devices(root, capsys):
    assert run(capsys, "net", "dev", "add", "veth0") == (0, "3: veth0\n", "")
    assert run(capsys, "net", "dev", "add", "veth0")[0] == 239
    assert run(capsys, "net", "dev", "show")[1] == "1: lo\n2: eth0\n3: veth0\n"
    assert run(capsys, "net", "dev", "del", "eth0")[0] != 0
    assert run(capsys, "net", "dev", "del", "veth0")[0] == 0
    assert run(capsys, "net", "dev", "show")[1] == "1: lo\n2: eth0\n"


def _pcap(packets: list[bytes], *, order: str = "<", nano: bool = False) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    for i, p in enumerate(packets):
        out += struct.pack(order + "IIII", 100 + i, 7, len(p), len(p)) + p
    return out


def test_feed_pcap_round_trip(root, capsys, tmp_path):
    load_hello(capsys)
    assert run(capsys, "net", "attach", "xdp", "name", "hello", "dev", "eth0")[0] == 0
    frames = [udp_frame(i, 60 + i) for i in range(5)] + [b"short"]
    for order, nano in (("<", False), (">", True)):
        src = tmp_path / f"in{order}{nano}.pcap"
        src.write_bytes(_pcap(frames, order=order, nano=nano))
        out = tmp_path / "out.pcap"
        status, text, err = run(capsys, "-j", "net", "feed", "dev", "eth0", "pcap", str(src),
                                "out", str(out))
        assert status == 0, err
        doc = json.loads(text)
        assert doc["verdicts"] == {"aborted": 0, "drop": 0, "pass": 5, "tx": 0, "redirect": 0}
        assert (doc["packets"], doc["skipped"], doc["written"]) == (6, 1, 5)
        with open(out, "rb") as f:
            reader = PcapReader(f)
            got = list(reader)
        assert [p.data for p in got] == frames[:5]
        assert [p.ts_sec for p in got] == [100, 101, 102, 103, 104]
        assert reader.resolution == (10**9 if nano else 10**6)
    status, text, _ = run(capsys, "net", "feed", "dev", "eth0", "packets", "20", "size", "80")
    assert status == 0 and "packets 20  bytes 1600" in text and "pass 20" in text
    # the program ran: its counter counts every packet
    _, dump, _ = run(capsys, "-j", "map", "dump", "name", "hello.bss")
    counter = int.from_bytes(bytes(int(b, 16) for b in json.loads(dump)[0]["value"]), "little")
    assert counter == 2 * 5 + 20


def test_feed_refuses_malformed_input(root, capsys, tmp_path):
    load_hello(capsys)
    run(capsys, "net", "attach", "xdp", "name", "hello", "dev", "eth0")
    good = _pcap([udp_frame(0, 64)])
    bad = {
        "empty": b"",
        "magic": b"\x00" * 24,
        "pcapng": b"\x0a\x0d\x0d\x0a" + bytes(40),
        "linktype": good[:20] + struct.pack("<I", 113) + good[24:],
        "truncated": good[:-3],
        "header": good[:24] + good[24:30],
    }
    for name, data in bad.items():
        path = tmp_path / f"{name}.pcap"
        path.write_bytes(data)
        status, _out, err = run(capsys, "net", "feed", "dev", "eth0", "pcap", str(path))
        assert status == 255 and err.startswith("Error: ") and "Traceback" not in err, name
        assert err.count("\n") == 1
        with pytest.raises(PcapError):
            read_pcap(str(path))
    assert run(capsys, "net", "feed", "dev", "lo", "packets", "3")[2] == (
        "Error: no XDP program attached to lo\n")
    assert run(capsys, "net", "feed", "dev", "eth0")[2] == (
        "Error: give one of 'pcap FILE' or 'packets N'\n")
    assert run(capsys, "net", "feed", "dev", "eth0", "packets", "x")[2] == (
        "Error: can't parse x as packet count\n")
    assert run(capsys, "net", "feed", "dev", "eth0", "pcap", str(tmp_path / "none"))[2] == (
        f"Error: can't read {tmp_path / 'none'}: No such file or directory\n")


def test_progress_bar_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    plain = io.StringIO()
    bar = Progress(5000, plain)
    bar.update(2500)
    bar.finish()
    assert plain.getvalue() == ""
    tty = Tty()
    bar = Progress(5000, tty)
    bar.update(2500)
    assert "50.0% 2500/5000 packets" in tty.getvalue() and tty.getvalue().startswith("\r[")
    bar.update(5000)
    bar.finish()
    assert tty.getvalue().endswith("\r")
