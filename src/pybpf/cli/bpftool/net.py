"""Usage: pybpf net { show | list } [dev <devname>]
       pybpf net attach ATTACH_TYPE PROG dev <devname> [ overwrite ]
       pybpf net detach ATTACH_TYPE dev <devname>
       pybpf net dev { show | add NAME | del NAME }
       pybpf net feed dev <devname> { pcap FILE | packets N [size S] } [out FILE]
       pybpf net help

       PROG := { id PROG_ID | pinned FILE | tag PROG_TAG | name PROG_NAME }
       ATTACH_TYPE := { xdp | xdpgeneric | xdpdrv | xdpoffload }
       OPTIONS := { {-j|--json} [{-p|--pretty}] | {-d|--debug} }

       pybpf's network devices are virtual: lo (ifindex 1) and eth0 (ifindex 2) exist,
       'net dev add' creates more.  Only XDP attachments are modelled.  'net feed'
       (a pybpf extension) runs the device's XDP program on every packet of a
       classic pcap file (or N generated UDP packets), counts the verdicts and writes
       the packets passed and transmitted (as the program left them) to 'out FILE'.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from pybpf.cli.bpftool.common import CommandError, Ctx
from pybpf.cli.bpftool.map import fail, is_prefix, parse_prog, req_args, strtoul
from pybpf.errors import KernelError, PybpfError

_ATTACH_TYPES = {"xdp": None, "xdpgeneric": "generic", "xdpdrv": "driver",
                 "xdpoffload": "offload"}  # fmt: skip
ETH_HLEN = 14
VERDICTS = ("aborted", "drop", "pass", "tx", "redirect")
XDP_PROG_TYPE = "xdp"


# --- devices ------------------------------------------------------------------------------------
def _devices(ctx: Ctx) -> dict[str, int]:
    return ctx.kernel.devices


def _ifindex(ctx: Ctx, name: str, status: int = (-errno.EINVAL) & 0xFF) -> int:
    ifindex = _devices(ctx).get(name)
    if ifindex is None:
        raise fail(ctx, f"invalid devname {name}", status)
    return ifindex


def _devname(ctx: Ctx, ifindex: int) -> str:
    for name, index in _devices(ctx).items():
        if index == ifindex:
            return name
    return f"if{ifindex}"


def _modes(ctx: Ctx) -> dict[int, str]:
    """The XDP mode of each attachment (persisted with the kernel state)."""
    return dict(getattr(ctx.kernel, "xdp_modes", {}))


def _save_modes(ctx: Ctx, modes: dict[int, str]) -> None:
    ctx.kernel.xdp_modes = dict(modes)  # saved atomically with the rest by the session


def _default_mode(ifindex: int) -> str:
    return "generic" if ifindex == 1 else "driver"  # lo has no native XDP


def _mode_of(ctx: Ctx, ifindex: int, modes: dict[int, str] | None = None) -> str:
    return (modes if modes is not None else _modes(ctx)).get(ifindex, _default_mode(ifindex))


# --- show ---------------------------------------------------------------------------------------
def do_show(ctx: Ctx, args: list[str]) -> int:
    only: int | None = None
    if args:
        if len(args) != 2 or not is_prefix(args[0], "dev"):
            raise fail(ctx, f"expected 'dev', got: '{args[0]}'?") if args[0] != "dev" else \
                fail(ctx, "missing devname")  # fmt: skip
        only = _ifindex(ctx, args[1], 255)
    attached = {k: v for k, v in ctx.kernel.attachments.items() if v in ctx.kernel.progs}
    modes = _modes(ctx)
    rows = [{"devname": _devname(ctx, i), "ifindex": i, "mode": _mode_of(ctx, i, modes),
             "id": attached[i]} for i in sorted(attached) if only in (None, i)]  # fmt: skip
    if ctx.json:
        ctx.emit_json([{"xdp": rows, "tc": [], "flow_dissector": []}])
        return 0
    lines = ["xdp:"]
    lines += [f"{r['devname']}({r['ifindex']}) {r['mode']} id {r['id']}" for r in rows]
    lines += ["", "tc:", "", "flow_dissector:", ""]
    ctx.out.write("\n".join(lines) + "\n")
    return 0


# --- attach / detach ----------------------------------------------------------------------------
def _attach_type(ctx: Ctx, word: str) -> str | None:
    if word not in _ATTACH_TYPES:
        raise fail(ctx, f"invalid net attach/detach type: {word}", (-errno.EINVAL) & 0xFF)
    return _ATTACH_TYPES[word]


def _dev_arg(ctx: Ctx, args: list[str]) -> int:
    word = args.pop(0) if args else ""
    if word != "dev":
        raise fail(ctx, f"expected 'dev', got: '{word}'?", (-errno.EINVAL) & 0xFF)
    return _ifindex(ctx, args.pop(0) if args else "")


def do_attach(ctx: Ctx, args: list[str]) -> int:
    req_args(ctx, args, 5, "attach")
    mode = _attach_type(ctx, args.pop(0))
    try:
        prog = parse_prog(ctx, args)
    except CommandError as err:  # bpftool: a bad PROG makes attach return -EINVAL
        err.status = (-errno.EINVAL) & 0xFF
        raise
    ifindex = _dev_arg(ctx, args)
    overwrite = False
    if args:
        if not is_prefix(args[0], "overwrite") or len(args) > 1:
            raise fail(ctx, f"expected 'overwrite', got: '{args[0]}'?", (-errno.EINVAL) & 0xFF)
        overwrite = True
    kernel = ctx.kernel
    kind = _prog_type_name(prog)
    if kind != XDP_PROG_TYPE:
        raise fail(ctx, f"interface xdp attach failed: {os.strerror(errno.EINVAL)}",
                   (-errno.EINVAL) & 0xFF)  # fmt: skip
    if mode is None:
        mode = _default_mode(ifindex)
    if mode == "offload" or (mode == "driver" and ifindex == 1):
        raise fail(ctx, f"interface xdp attach failed: {os.strerror(errno.EOPNOTSUPP)}",
                   (-errno.EOPNOTSUPP) & 0xFF)  # fmt: skip
    current = kernel.attachments.get(ifindex)
    if current in kernel.progs and not overwrite:
        if not ctx.json:
            ctx.err.write("libbpf: Kernel error message: XDP program already attached\n")
        raise fail(ctx, f"interface xdp attach failed: {os.strerror(errno.EBUSY)}",
                   (-errno.EBUSY) & 0xFF)  # fmt: skip
    modes = _modes(ctx)
    if current in kernel.progs and modes.get(ifindex, _default_mode(ifindex)) != mode:
        raise fail(ctx, f"interface xdp attach failed: {os.strerror(errno.EEXIST)}",
                   (-errno.EEXIST) & 0xFF)  # fmt: skip
    kernel.attachments[ifindex] = prog.id
    modes[ifindex] = mode
    _save_modes(ctx, modes)
    if ctx.json:
        ctx.emit_json(None)
    return 0


def _prog_type_name(prog: Any) -> str:
    from pybpf.runtime.progtypes import PROG_TYPES

    spec = PROG_TYPES.get(prog.prog_type)
    return spec.name if spec is not None else str(prog.prog_type)


def do_detach(ctx: Ctx, args: list[str]) -> int:
    req_args(ctx, args, 3, "detach")
    _attach_type(ctx, args.pop(0))
    ifindex = _dev_arg(ctx, args)
    if args:
        raise fail(ctx, f"what is '{args[0]}'?")
    ctx.kernel.attachments.pop(ifindex, None)  # detaching nothing succeeds, as the kernel's
    if ctx.json:
        ctx.emit_json(None)
    return 0


# --- devices (pybpf extension) ------------------------------------------------------------------
def do_dev(ctx: Ctx, args: list[str]) -> int:
    verb = args.pop(0) if args else "show"
    devices = _devices(ctx)
    if is_prefix(verb, "show") or is_prefix(verb, "list"):
        if args:
            raise fail(ctx, f"what is '{args[0]}'?")
        if ctx.json:
            ctx.emit_json([{"devname": n, "ifindex": i}
                           for n, i in sorted(devices.items(), key=lambda x: x[1])])  # fmt: skip
        else:
            ctx.out.write("".join(f"{i}: {n}\n"
                                  for n, i in sorted(devices.items(), key=lambda x: x[1])))
        return 0
    if verb not in ("add", "del", "delete"):
        raise fail(ctx, f"expected 'show', 'add' or 'del', got: '{verb}'?")
    if len(args) != 1:
        raise fail(ctx, f"'dev {verb}' takes one device name")
    name = args[0]
    if verb == "add":
        if not name or len(name) > 15 or "/" in name or any(c.isspace() for c in name) \
                or name in (".", ".."):  # fmt: skip
            raise fail(ctx, f"invalid devname {name!r} (1 to 15 characters, no '/' or space)")
        if name in devices:
            raise fail(ctx, f"device {name} exists: {os.strerror(errno.EEXIST)}",
                       (-errno.EEXIST) & 0xFF)  # fmt: skip
        ifindex = max(devices.values(), default=0) + 1
        devices[name] = ifindex
        ctx.kernel.netdevs[ifindex] = 1
        if ctx.json:
            ctx.emit_json({"devname": name, "ifindex": ifindex})
        else:
            ctx.out.write(f"{ifindex}: {name}\n")
        return 0
    ifindex = _ifindex(ctx, name, 255)
    if ifindex in (1, 2):
        raise fail(ctx, f"device {name} cannot be deleted: {os.strerror(errno.EPERM)}",
                   (-errno.EPERM) & 0xFF)  # fmt: skip
    del devices[name]
    ctx.kernel.netdevs.pop(ifindex, None)
    ctx.kernel.attachments.pop(ifindex, None)
    if ctx.json:
        ctx.emit_json(None)
    return 0


# --- pcap ---------------------------------------------------------------------------------------
class PcapError(PybpfError):
    """A malformed or unsupported capture file."""


LINKTYPE_ETHERNET = 1
_MAGICS = {0xA1B2C3D4: 1_000_000, 0xA1B23C4D: 1_000_000_000}
_MAX_RECORD = 1 << 20  # more than any real snaplen; a larger length is corruption


@dataclass
class Packet:
    ts_sec: int
    ts_frac: int  # micro- or nanoseconds, as the file's resolution
    data: bytes
    orig_len: int


class PcapReader:
    """Classic libpcap files: either byte order, micro- or nanosecond timestamps."""

    def __init__(self, stream: BinaryIO, name: str = "pcap") -> None:
        self.stream = stream
        self.name = name
        head = stream.read(24)
        if len(head) >= 4 and head[:4] == b"\x0a\x0d\x0d\x0a":
            raise PcapError(f"{name}: pcapng files are not supported (save it as pcap, e.g. "
                            "editcap -F pcap)")  # fmt: skip
        if len(head) < 24:
            raise PcapError(f"{name}: not a pcap file (shorter than the 24-byte header)")
        for order in ("<", ">"):
            (magic,) = struct.unpack(order + "I", head[:4])
            if magic in _MAGICS:
                self.order = order
                self.resolution = _MAGICS[magic]
                break
        else:
            raise PcapError(f"{name}: not a pcap file (magic {head[:4].hex()})")
        major, minor, _zone, _sigfigs, self.snaplen, self.linktype = struct.unpack(
            self.order + "HHiIII", head[4:])
        if major != 2:
            raise PcapError(f"{name}: unsupported pcap version {major}.{minor}")
        if self.linktype & 0x0FFFFFFF != LINKTYPE_ETHERNET:
            raise PcapError(f"{name}: link type {self.linktype} is not Ethernet (1); XDP "
                            "programs see Ethernet frames")  # fmt: skip
        self.count = 0

    def __iter__(self) -> Iterator[Packet]:
        while True:
            head = self.stream.read(16)
            if not head:
                return
            where = f"{self.name}: record {self.count + 1}"
            if len(head) < 16:
                raise PcapError(f"{where}: truncated record header ({len(head)} of 16 bytes)")
            sec, frac, incl, orig = struct.unpack(self.order + "IIII", head)
            if incl > _MAX_RECORD:
                raise PcapError(f"{where}: captured length {incl} is not plausible")
            if frac >= self.resolution:
                raise PcapError(f"{where}: timestamp fraction {frac} out of range")
            data = self.stream.read(incl)
            if len(data) < incl:
                raise PcapError(f"{where}: truncated packet ({len(data)} of {incl} bytes)")
            self.count += 1
            yield Packet(sec, frac, data, max(orig, incl))


class PcapWriter:
    """A classic little-endian pcap file (Ethernet), written to a temporary then renamed."""

    def __init__(self, path: str, resolution: int = 1_000_000, snaplen: int = 262144) -> None:
        self.path = path
        target = Path(path)
        fd, self.tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".",
                                        prefix=f".{target.name}.")  # fmt: skip
        self.stream = os.fdopen(fd, "wb")
        magic = 0xA1B23C4D if resolution == 1_000_000_000 else 0xA1B2C3D4
        self.stream.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen,
                                      LINKTYPE_ETHERNET))  # fmt: skip
        self.count = 0

    def write(self, pkt: Packet, data: bytes) -> None:
        self.stream.write(struct.pack("<IIII", pkt.ts_sec, pkt.ts_frac, len(data), len(data)))
        self.stream.write(data)
        self.count += 1

    def close(self) -> None:
        self.stream.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.stream.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


def read_pcap(path: str) -> list[Packet]:
    """Every packet of the classic pcap file ``path`` (PcapError when malformed)."""
    with open(path, "rb") as f:
        return list(PcapReader(f, path))


def generated_packets(count: int, size: int) -> Iterator[Packet]:
    """``count`` Ethernet/IPv4/UDP frames of ``size`` bytes (source port = sequence)."""
    base = 1_700_000_000
    for i in range(count):
        yield Packet(base + i // 1_000_000, i % 1_000_000, udp_frame(i, size), size)


def udp_frame(seq: int, size: int) -> bytes:
    """A broadcast UDP frame 10.0.0.1:(1024 + seq) -> 10.0.0.2:9 of ``size`` bytes."""
    eth = b"\xff" * 6 + bytes.fromhex("020000000001") + b"\x08\x00"
    if size < 42:
        return (eth + bytes(size)).ljust(size, b"\0")[:size]
    ip_len = size - ETH_HLEN
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, min(ip_len, 0xFFFF), seq & 0xFFFF, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))  # fmt: skip
    total = sum(struct.unpack("!10H", ip))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    ip = ip[:10] + struct.pack("!H", ~total & 0xFFFF) + ip[12:]
    udp = struct.pack("!HHHH", 1024 + seq % 64512, 9, min(ip_len - 20, 0xFFFF), 0)
    return eth + ip + udp + bytes(size - 42)


# --- feed ---------------------------------------------------------------------------------------
class Progress:
    """A progress bar on a terminal's standard error (nothing when it is not a terminal)."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO, *, minimum: int = 1000) -> None:
        self.total = total
        self.stream = stream
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.enabled = tty and total >= minimum
        self.last = 0.0
        self.shown = False

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.1 and done < self.total:
            return
        self.last = now
        frac = done / self.total if self.total else 1.0
        filled = int(frac * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r[{bar}] {frac * 100:5.1f}% {done}/{self.total} packets")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * (self.WIDTH + 40) + "\r")
            self.stream.flush()


def _positive(ctx: Ctx, text: str, what: str) -> int:
    value = strtoul(text)
    if value is None or text.strip().startswith("-"):
        raise fail(ctx, f"can't parse {text} as {what}")
    return value


def do_feed(ctx: Ctx, args: list[str]) -> int:
    ifindex: int | None = None
    pcap: str | None = None
    count: int | None = None
    size = 64
    out: str | None = None
    while args:
        word = args.pop(0)
        if not args:
            raise fail(ctx, f"'{word}' needs an argument")
        if word == "dev":
            ifindex = _ifindex(ctx, args.pop(0), 255)
        elif word == "pcap":
            pcap = args.pop(0)
        elif word == "packets":
            count = _positive(ctx, args.pop(0), "packet count")
        elif word == "size":
            size = _positive(ctx, args.pop(0), "packet size")
        elif word == "out":
            out = args.pop(0)
        else:
            raise fail(ctx, f"expected dev, pcap, packets, size or out, got: '{word}'?")
    if ifindex is None:
        raise fail(ctx, "missing dev <devname>")
    if (pcap is None) == (count is None):
        raise fail(ctx, "give one of 'pcap FILE' or 'packets N'")
    if count is not None and not ETH_HLEN <= size <= 65535:
        raise fail(ctx, f"packet size {size} must be {ETH_HLEN} to 65535 bytes")
    kernel = ctx.kernel
    prog = kernel.progs.get(kernel.attachments.get(ifindex, -1))
    name = _devname(ctx, ifindex)
    if prog is None:
        raise fail(ctx, f"no XDP program attached to {name}", (-errno.ENOENT) & 0xFF)
    kernel.hold(prog)  # detached meanwhile, it still runs to the end, as with an fd
    resolution = 1_000_000
    if pcap is not None:
        try:
            with open(pcap, "rb") as f:
                reader = PcapReader(f, pcap)
                resolution = reader.resolution
                packets: list[Packet] = list(reader)
        except OSError as err:
            raise fail(ctx, f"can't read {pcap}: {err.strerror}") from None
        except PcapError as err:
            raise fail(ctx, str(err)) from None
    else:
        packets = list(generated_packets(count or 0, size))
    writer = None
    if out is not None:
        try:
            writer = PcapWriter(out, resolution)
        except OSError as err:
            raise fail(ctx, f"can't write {out}: {err.strerror}") from None
    try:
        summary = _run_packets(ctx, prog, ifindex, packets, writer)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    summary = {"devname": name, "ifindex": ifindex, "id": prog.id, **summary}
    if out is not None:
        summary["out"] = out
    if ctx.json:
        ctx.emit_json(summary)
    else:
        v = summary["verdicts"]
        text = (f"{name}({ifindex}) xdp id {prog.id}  packets {summary['packets']}  "
                f"bytes {summary['bytes']}\n\t"
                + "  ".join(f"{k} {v[k]}" for k in VERDICTS))  # fmt: skip
        if summary["skipped"]:
            text += f"  skipped {summary['skipped']}"
        if out is not None:
            text += f"\n\twritten {summary['written']} to {out}"
        ctx.out.write(text + "\n")
    return 0


def _run_packets(ctx: Ctx, prog: Any, ifindex: int, packets: list[Packet],
                 writer: PcapWriter | None) -> dict[str, Any]:  # fmt: skip
    from pybpf.runtime.testrun import test_run

    verdicts = dict.fromkeys(VERDICTS, 0)
    skipped = written = total = 0
    progress = Progress(len(packets), ctx.err)
    for done, pkt in enumerate(packets, 1):
        total += len(pkt.data)
        if len(pkt.data) < ETH_HLEN:
            skipped += 1  # a frame without an Ethernet header never reaches XDP
            progress.update(done)
            continue
        md = struct.pack("<6I", 0, len(pkt.data), 0, ifindex, 0, 0)
        try:
            result = test_run(prog, pkt.data, ctx_in=md)
        except KernelError as err:
            raise fail(ctx, f"packet {done}: test run failed: {os.strerror(err.errno or 22)}",
                       (-(err.errno or errno.EINVAL)) & 0xFF) from None  # fmt: skip
        retval = result.retval
        verdict = VERDICTS[retval] if retval < len(VERDICTS) else "aborted"  # the kernel's
        verdicts[verdict] += 1
        if writer is not None and verdict in ("pass", "tx"):
            writer.write(pkt, result.data_out)
            written += 1
        progress.update(done)
    progress.finish()
    return {"packets": len(packets), "bytes": total, "verdicts": verdicts,
            "skipped": skipped, "written": written}  # fmt: skip


COMMANDS = {
    "show": do_show, "list": do_show, "attach": do_attach, "detach": do_detach,
    "dev": do_dev, "feed": do_feed,
}  # fmt: skip
READ_ONLY = {"show", "list"}
NO_CONTENTS = {"show", "list"}  # they show attributes only: the maps' elements stay unread
MERGED = {"feed"}  # what it changes is what programs do: merged into the state after the run

__all__ = ["COMMANDS", "READ_ONLY", "PcapError", "PcapReader", "PcapWriter", "read_pcap",
           "udp_frame"]  # fmt: skip
