"""Program contexts, converted the way the kernel converts them.

A program's r1 points at its context: a struct of the uapi (``struct
xdp_md``, ``struct __sk_buff``...) whose fields the verifier rewrites into
accesses of the kernel's real objects (``convert_ctx_access``).  Here each
context is a :class:`CtxRegion`, a :class:`~pybpf.vm.memory.Region` that
takes over its loads and stores (``custom_access``): a load returns what the
kernel's rewritten instructions yield — a 4-byte load of ``xdp_md->data`` is
the 64-bit host address of the packet — and an access the kernel's
``is_valid_access`` refuses raises :class:`~pybpf.errors.MemoryFault` naming
the field and the rule (the kernel refuses such programs at load time; pybpf
has no verifier, so it refuses the access when it happens).

For the JIT each context also has a native *converted image*
(:class:`CtxImage`): for every load :meth:`CtxRegion.load` would answer
without faulting, the value it returns, so generated code reads context
fields without calling Python.  The image follows the state: assigning any
attribute of the :class:`XdpBuff` / :class:`SkBuff` (an adjust helper moving
``data``, ``ctx_in``, a program's store) recomputes the loads that read it.
Stores and the loads the image leaves out still take :meth:`~CtxRegion.load`
/ :meth:`~CtxRegion.store`.  ``RawCtx`` and ``PerfEventData`` images are
empty (their loads keep the Python path).

The state the fields read — the ``xdp_buff`` the adjust helpers move, the
``sk_buff`` — lives in :class:`XdpBuff` and :class:`SkBuff`; a run's
``ExecEnv.ctx`` is one of those.  Packet bytes live in one frame buffer per
run (as the kernel's test run allocates one page); the program reaches them
through a Region covering exactly ``[data_meta, data_end)``, replaced (and
given to the interpreter's fast path) whenever a helper moves the bounds, so
an access outside the packet faults.

Deviations, each where the kernel's value is not modelled: ``__sk_buff->sk``
reads 0 (the kernel gives the test run's dummy socket), ``hash`` and
``napi_id`` read 0 (as in a test run), narrow loads sign-extended by
``ldxs*`` are not refused, and a ``queue_mapping`` store sees only the low
32 bits of the source register.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pybpf.errors import MemoryFault
from pybpf.jit.abi import IMAGE_WIDTHS, ctx_image_layout
from pybpf.vm.ldabs import Headers
from pybpf.vm.memory import Memory, Region, buffer_address, native_buffer

PAGE_SIZE = 4096
ETH_HLEN = 14
XDP_PACKET_HEADROOM = 256
XDP_FRAME_SIZE = 40  # sizeof(struct xdp_frame): adjust_head/meta keep it free at the frame start
SKB_SHARED_INFO = 320  # SKB_DATA_ALIGN(sizeof(struct skb_shared_info)) on x86-64
NET_SKB_PAD = 64  # max(32, L1_CACHE_BYTES); NET_IP_ALIGN is 0 on x86
META_MAX = 255  # skb_shared_info.meta_len is a u8
MIN_NAPI_ID = 8193  # NR_CPUS + 1 (8192 CPUs): smaller ids read as 0
LOOPBACK_IFINDEX = 1

_U = {
    1: struct.Struct("<B"),
    2: struct.Struct("<H"),
    4: struct.Struct("<I"),
    8: struct.Struct("<Q"),
}


def _mask(size: int) -> int:
    return (1 << (8 * size)) - 1


class CtxImage:
    """The converted image of a context: what each valid load returns, in native memory.

    The JIT reads it instead of calling into Python (layout:
    :func:`pybpf.jit.abi.ctx_image_layout`).  An entry is either answered
    (flag bit set, the 64-bit value beside it) or not (the load takes the
    converting path, which may fault); :meth:`put` answers one.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.flags, total = ctx_image_layout(size)
        self.buf = native_buffer(max(total, 1))
        self.address, self._pin = buffer_address(self.buf)

    def put(self, off: int, width: int, value: int) -> None:
        """Answer a ``width``-byte load at ``off`` with ``value`` (64 bits)."""
        k = IMAGE_WIDTHS.index(width)
        struct.pack_into("<Q", self.buf, 8 * (k * self.size + off), value & _mask(8))
        self.buf[self.flags + off] |= 1 << k

    def value(self, off: int, width: int) -> int | None:
        """The answer to a ``width``-byte load at ``off``, None when not answered."""
        k = IMAGE_WIDTHS.index(width)
        if not self.buf[self.flags + off] >> k & 1:
            return None
        return struct.unpack_from("<Q", self.buf, 8 * (k * self.size + off))[0]


class CtxRegion(Region):
    """A context: a Region whose loads and stores a subclass converts.

    Subclasses implement ``load(pc, offset, size)`` and ``store(pc, offset,
    size, value)``; :meth:`fault` builds the MemoryFault for a refused
    access.  The buffer holds the uapi struct's bytes (what helpers reading
    the region see, and what a test run's ``ctx_out`` starts from).

    :attr:`image` is the native converted image (:class:`CtxImage`): a
    subclass whose field values follow some state calls :meth:`convert` for
    the loads that state answers, and again (:meth:`reconvert`) whenever the
    state changes, so the image always holds what :meth:`load` would return;
    loads left out of it keep the Python path.
    """

    custom_access = True
    struct_name = "ctx"

    def __init__(self, name: str, size: int) -> None:
        super().__init__(name, bytearray(max(size, 1)), True)
        self.size = size
        self.image = CtxImage(size)
        self.image_address = self.image.address
        self._answered: dict[str, list[tuple[int, int]]] = {}

    def convert(self, groups: dict[str, list[tuple[int, int]]]) -> None:
        """Put the (offset, width) loads of each group in the image (loads that fault stay out).

        A group name is what :meth:`reconvert` is later called with.
        """
        for group, loads in groups.items():
            kept = self._answered.setdefault(group, [])
            for off, width in loads:
                try:
                    self.image.put(off, width, self.load(0, off, width))
                except MemoryFault:
                    continue
                kept.append((off, width))

    def reconvert(self, group: str, lo: int = 0, hi: int | None = None) -> None:
        """Recompute the image's loads of ``group`` (the state they read changed).

        ``lo``/``hi`` limit it to the loads overlapping context bytes [lo, hi).
        """
        image, load = self.image, self.load
        top = self.size if hi is None else hi
        for off, width in self._answered.get(group, ()):
            if off < top and off + width > lo:
                image.put(off, width, load(0, off, width))

    def fault(self, pc: int, off: int, size: int, write: bool, why: str) -> MemoryFault:
        """A MemoryFault for the access at ``off`` (``why`` names the field and the rule)."""
        return MemoryFault(pc=pc, address=self.base + off, size=size, write=write,
                           region=self.name, reason=f"{why}, in")  # fmt: skip

    def _check_common(self, pc: int, off: int, size: int, write: bool) -> None:
        if off < 0 or off + size > self.size:
            raise self.fault(pc, off, size, write, f"offset {off} is outside {self.struct_name}")
        if off % size:
            raise self.fault(pc, off, size, write, f"misaligned {size}-byte access at "
                                                   f"{self.struct_name}+{off}")  # fmt: skip

    def raw_load(self, off: int, size: int) -> int:
        """The buffer's bytes at ``off`` as a little-endian integer."""
        return _U[size].unpack_from(self.buf, off)[0]

    def raw_store(self, off: int, size: int, value: int) -> None:
        """Write the low ``size`` bytes of ``value`` into the buffer."""
        _U[size].pack_into(self.buf, off, value & _mask(size))


# --- packets -------------------------------------------------------------------------------------
class _Frame:
    """One page-like buffer holding a packet, and the Region the program may touch.

    ``watch``, when set (by the context converting this state), is called
    with the name of every attribute assigned afterwards, so the context's
    converted image follows the state whoever changes it.
    """

    def __setattr__(self, name: str, value) -> None:
        object.__setattr__(self, name, value)
        watch = self.__dict__.get("watch")
        if watch is not None:
            watch(name)

    def __init__(self, size: int, name: str, writable: bool) -> None:
        self.frame = bytearray(size)
        self.base, self._pin = buffer_address(self.frame)
        self.name = name
        self.writable = writable
        self.memory: Memory | None = None
        self.engine = None
        self.region: Region | None = None

    def window(self, start: int, end: int) -> Region:
        """A Region over frame[start:end] sharing the frame's memory.

        The Region is built over the whole frame, then narrowed: its base,
        size and view (a memoryview slice) describe the window only, so both
        Memory and the interpreter's fast path see exactly these bytes.
        """
        region = Region(self.name, self.frame, self.writable)
        region.base, region.size = self.base + start, end - start
        region.view = memoryview(self.frame)[start:end]
        return region

    def attach(self, memory: Memory, engine=None) -> None:
        """Make the packet reachable in ``memory`` (and hot in ``engine``)."""
        self.memory, self.engine = memory, engine
        self.refresh()

    def bounds(self) -> tuple[int, int]:  # pragma: no cover - overridden
        raise NotImplementedError

    def refresh(self) -> None:
        """Replace the packet Region after the bounds moved."""
        if self.memory is None:
            return
        if self.region is not None:
            self.memory.remove(self.region)
            self.region = None
        start, end = self.bounds()
        if end > start:
            self.region = self.memory.add(self.window(start, end))
        if self.engine is not None:
            self.engine.set_hot(self.region)

    def detach(self) -> None:
        """Make the packet unreachable again (the run is over)."""
        if self.memory is not None and self.region is not None:
            self.memory.remove(self.region)
        if self.engine is not None:
            self.engine.set_hot(None)
        self.region, self.memory, self.engine = None, None, None


class XdpBuff(_Frame):
    """The kernel's ``struct xdp_buff`` of one run.

    ``data_meta``, ``data`` and ``data_end`` are offsets into :attr:`frame`
    (``data_hard_start`` is offset 0, the frame is ``frame_sz`` bytes and
    its last :data:`SKB_SHARED_INFO` bytes are the tailroom the kernel
    reserves).  ``frags`` holds the bytes of a non-linear buffer beyond the
    linear part (carried through unchanged: pybpf models no fragment
    helpers).  ``redirect`` is what bpf_redirect / bpf_redirect_map
    recorded (the kernel's ``bpf_redirect_info``).
    """

    def __init__(self, *, headroom: int, linear: bytes, meta_len: int = 0,
                 frame_sz: int = PAGE_SIZE, ingress_ifindex: int = LOOPBACK_IFINDEX,
                 rx_queue_index: int = 0, frags: bytes = b"") -> None:  # fmt: skip
        super().__init__(frame_sz, "xdp packet", True)
        self.frame_sz = frame_sz
        self.frame[headroom : headroom + len(linear)] = linear
        self.data_meta = headroom
        self.data = headroom + meta_len
        self.data_end = headroom + len(linear)
        self.ingress_ifindex = ingress_ifindex
        self.rx_queue_index = rx_queue_index
        self.egress_ifindex = 0
        self.frags = bytearray(frags)
        self.redirect: dict | None = None

    def bounds(self) -> tuple[int, int]:
        return min(self.data_meta, self.data), self.data_end

    @property
    def hard_end(self) -> int:
        """``xdp_data_hard_end``: the end of what adjust_tail may grow into."""
        return self.frame_sz - SKB_SHARED_INFO

    @property
    def metalen(self) -> int:
        """``xdp_get_metalen``: 0 when meta data is unsupported (data_meta > data)."""
        return 0 if self.data_meta > self.data else self.data - self.data_meta

    def address(self, offset: int) -> int:
        """The host address of frame offset ``offset``."""
        return self.base + offset

    def packet(self) -> bytes:
        """data_meta..data_end followed by the fragments (what a test run copies out)."""
        return bytes(self.frame[min(self.data_meta, self.data) : self.data_end]) + bytes(self.frags)


class XdpMd(CtxRegion):
    """``struct xdp_md``, converted as ``xdp_convert_ctx_access`` does.

    Every field needs a 4-byte aligned load; ``data``, ``data_end`` and
    ``data_meta`` yield the buffer's 64-bit addresses; ``egress_ifindex`` is
    refused unless the program's expected attach type is BPF_XDP_DEVMAP;
    every store is refused (``xdp_is_valid_access``, non-offloaded programs).
    """

    struct_name = "xdp_md"
    FIELDS = ("data", "data_end", "data_meta", "ingress_ifindex", "rx_queue_index",
              "egress_ifindex")  # fmt: skip

    def __init__(self, xdp: XdpBuff, *, devmap: bool = False) -> None:
        super().__init__("ctx:xdp_md", 24)
        self.xdp = xdp
        self.devmap = devmap
        self.convert({name: [(4 * i, 4)] for i, name in enumerate(self.FIELDS)})
        xdp.watch = self.reconvert

    def load(self, pc: int, off: int, size: int) -> int:
        self._check_common(pc, off, size, False)
        name = self.FIELDS[off // 4]
        if size != 4:
            raise self.fault(pc, off, size, False, f"xdp_md.{name} needs a 4-byte load")
        if name == "egress_ifindex" and not self.devmap:
            raise self.fault(
                pc,
                off,
                size,
                False,
                "xdp_md.egress_ifindex is only readable by BPF_XDP_DEVMAP programs",
            )
        xdp = self.xdp
        if name in ("data", "data_end", "data_meta"):
            return xdp.address(getattr(xdp, name))
        return getattr(xdp, name) & 0xFFFFFFFF

    def store(self, pc: int, off: int, size: int, value: int) -> None:
        name = self.FIELDS[off // 4] if 0 <= off < 24 else f"+{off}"
        raise self.fault(pc, off, size, True, f"xdp_md.{name} is read-only")


# --- sk_buff ------------------------------------------------------------------------------------
@dataclass
class SkBuff(_Frame):
    """The ``struct sk_buff`` of one run, with the fields ``__sk_buff`` exposes.

    Offsets ``data``/``len`` index :attr:`frame` (``head`` is offset 0);
    ``protocol``, ``vlan_proto`` hold the __be16 as a little-endian u16 load
    of its bytes yields it (0x0008 for IPv4), as the kernel's rewritten load
    does.  ``cb`` is the 20 bytes of ``qdisc_skb_cb.data``; ``wire_len`` is
    ``qdisc_skb_cb.pkt_len``.  ``sk_*`` are the test run's dummy socket
    (family and addresses from the IP header).  ``redirect`` is what
    bpf_redirect recorded.
    """

    frame_size: int = 0
    data: int = 0
    len: int = 0
    meta_len: int = 0
    writable: bool = False
    protocol: int = 0
    pkt_type: int = 0
    mark: int = 0
    priority: int = 0
    queue_mapping: int = 0
    vlan_all: int = 0
    vlan_tci: int = 0
    vlan_proto: int = 0
    skb_iif: int = 0
    ifindex: int = LOOPBACK_IFINDEX
    hash: int = 0
    tc_index: int = 0
    cb: bytearray = field(default_factory=lambda: bytearray(20))
    tc_classid: int = 0
    napi_id: int = 0
    tstamp: int = 0
    wire_len: int = 0
    gso_segs: int = 0
    gso_size: int = 0
    hwtstamp: int = 0
    sk_family: int = 0
    sk_saddr: bytes = bytes(16)
    sk_daddr: bytes = bytes(16)
    redirect: dict | None = None
    mac_header: int | None = None  # frame offsets of the link-layer and network headers
    network_header: int | None = None

    def __post_init__(self) -> None:
        _Frame.__init__(self, self.frame_size, "skb packet", self.writable)

    def bounds(self) -> tuple[int, int]:
        return self.data - self.meta_len, self.data + self.len

    def address(self, offset: int) -> int:
        """The host address of frame offset ``offset``."""
        return self.base + offset

    def headers(self) -> Headers:
        """Where LD_ABS's SKF_NET_OFF / SKF_LL_OFF offsets read (the network header is
        skb->data where none was set)."""
        net = self.data if self.network_header is None else self.network_header
        return Headers(memoryview(self.frame), self.data, self.data + self.len, net,
                       self.mac_header)  # fmt: skip

    def payload(self) -> bytes:
        """skb->data .. skb->data + len."""
        return bytes(self.frame[self.data : self.data + self.len])


# (name, offset, size in __sk_buff, kernel field size the rewrite loads) in uapi order
_SKB_FIELDS = [
    ("len", 0, 4, 4), ("pkt_type", 4, 4, 1), ("mark", 8, 4, 4), ("queue_mapping", 12, 4, 2),
    ("protocol", 16, 4, 2), ("vlan_present", 20, 4, 4), ("vlan_tci", 24, 4, 2),
    ("vlan_proto", 28, 4, 2), ("priority", 32, 4, 4), ("ingress_ifindex", 36, 4, 4),
    ("ifindex", 40, 4, 4), ("tc_index", 44, 4, 2), ("cb", 48, 20, 0), ("hash", 68, 4, 4),
    ("tc_classid", 72, 4, 2), ("data", 76, 4, 8), ("data_end", 80, 4, 8), ("napi_id", 84, 4, 4),
    ("family", 88, 4, 2), ("remote_ip4", 92, 4, 4), ("local_ip4", 96, 4, 4),
    ("remote_ip6", 100, 16, 4), ("local_ip6", 116, 16, 4), ("remote_port", 132, 4, 4),
    ("local_port", 136, 4, 4), ("data_meta", 140, 4, 8), ("flow_keys", 144, 8, 8),
    ("tstamp", 152, 8, 8), ("wire_len", 160, 4, 4), ("gso_segs", 164, 4, 2), ("sk", 168, 8, 8),
    ("gso_size", 176, 4, 2), ("tstamp_type", 180, 1, 1), ("padding", 181, 3, 0),
    ("hwtstamp", 184, 8, 8),
]  # fmt: skip
SK_BUFF_SIZE = 192
_SKB_BY_BYTE: list[tuple[str, int, int, int]] = []
for _f in _SKB_FIELDS:
    _SKB_BY_BYTE += [_f] * _f[2]
_SK_FIELDS = {"family", "remote_ip4", "local_ip4", "remote_ip6", "local_ip6", "remote_port",
              "local_port"}  # fmt: skip
_PTR_FIELDS = {"data", "data_end", "data_meta"}
_SKB_IMAGE_LOADS: dict[str, dict[str, list[tuple[int, int]]]] = {}
"""Per program type: the image's loads of an SkBuffCtx, by the attribute they read."""
# __sk_buff fields whose value is one SkBuff attribute as it is
_SKB_PLAIN = {
    "len": "len", "mark": "mark", "queue_mapping": "queue_mapping", "protocol": "protocol",
    "vlan_tci": "vlan_tci", "vlan_proto": "vlan_proto", "priority": "priority",
    "ingress_ifindex": "skb_iif", "ifindex": "ifindex", "hash": "hash", "tc_index": "tc_index",
    "tc_classid": "tc_classid", "family": "sk_family", "tstamp": "tstamp",
    "wire_len": "wire_len", "gso_segs": "gso_segs", "gso_size": "gso_size",
    "hwtstamp": "hwtstamp",
}  # fmt: skip
# the SkBuff attributes each __sk_buff field's value reads (the field's own name when absent)
_SKB_READS = {
    "data": ("data", "len", "meta_len"), "data_end": ("data", "len", "meta_len"),
    "data_meta": ("data", "len", "meta_len"), "vlan_present": ("vlan_all",),
    "ingress_ifindex": ("skb_iif",), "family": ("sk_family",), "remote_ip4": ("sk_daddr",),
    "local_ip4": ("sk_saddr",), "remote_ip6": ("sk_daddr", "sk_family"),
    "local_ip6": ("sk_saddr", "sk_family"), "remote_port": (), "local_port": (), "sk": (),
    "tstamp_type": (), "flow_keys": (), "padding": (),
}  # fmt: skip
# per program type: fields refused outright, fields a program may store to
_SKB_RULES = {
    "socket_filter": (
        {"tc_classid", "data", "data_meta", "data_end", "tstamp", "wire_len", "hwtstamp"}
        | _SK_FIELDS, {"cb"}),
    "sched_cls": (_SK_FIELDS, {"mark", "tc_index", "priority", "tc_classid", "cb", "tstamp",
                               "queue_mapping"}),
    "cgroup_skb": ({"tc_classid", "data_meta", "wire_len"}, {"mark", "priority", "cb", "tstamp"}),
}  # fmt: skip
_SKB_RULES["sched_act"] = _SKB_RULES["sched_cls"]


class SkBuffCtx(CtxRegion):
    """``struct __sk_buff`` for socket_filter, sched_cls/act and cgroup_skb.

    Access rules are the kernel's ``bpf_skb_is_valid_access`` and the
    per-type ``sk_filter_/tc_cls_act_/cg_skb_is_valid_access``; values are
    what ``bpf_convert_ctx_access`` loads, including its narrow-load
    behaviour (a 1- or 2-byte load of a u32 field shifts and masks the
    field, unless the kernel field is no wider than the load: a 2-byte load
    of the upper half of ``protocol`` yields ``protocol`` again).
    """

    struct_name = "__sk_buff"

    def __init__(self, skb: SkBuff, kind: str) -> None:
        super().__init__("ctx:__sk_buff", SK_BUFF_SIZE)
        self.skb = skb
        self.kind = kind
        self.refused, self.stores = _SKB_RULES[kind]
        known = _SKB_IMAGE_LOADS.get(kind)  # which loads do not fault depends on the kind only
        if known is None:
            groups: dict[str, list[tuple[int, int]]] = {}
            for name, start, width, _ in _SKB_FIELDS:
                loads = [(off, n) for off in range(start, start + width) for n in IMAGE_WIDTHS]
                for attr in _SKB_READS.get(name, (name,)) or ("",):  # "": constant
                    groups.setdefault(attr, []).extend(loads)
            self.convert(groups)
            _SKB_IMAGE_LOADS[kind] = {g: list(loads) for g, loads in self._answered.items()}
        else:
            self.convert(known)
        skb.watch = self.reconvert

    def _field(self, pc: int, off: int, size: int, write: bool) -> tuple[str, int, int, int]:
        self._check_common(pc, off, size, write)
        name, start, width, target = _SKB_BY_BYTE[off]
        what = f"__sk_buff.{name}"
        if name in self.refused:
            raise self.fault(pc, off, size, write, f"{what} is not accessible to {self.kind}")
        if write and name not in self.stores:
            raise self.fault(pc, off, size, write, f"{what} is read-only for {self.kind}")
        if name == "tstamp_type" and self.kind in ("sched_cls", "sched_act"):
            if size != 1 or write:
                raise self.fault(pc, off, size, write, f"{what} needs a 1-byte load")
            return name, start, width, target
        bad = None
        if name in ("flow_keys", "padding", "tstamp_type"):
            bad = f"{what} is not accessible"
        elif name == "cb":
            bad = None if off + size <= 68 else f"{what} access crosses its end"
        elif name in _PTR_FIELDS or name in ("remote_ip4", "local_ip4", "remote_ip6",
                                             "local_ip6"):  # fmt: skip
            bad = None if size == 4 else f"{what} needs a 4-byte access"
        elif name in ("hwtstamp", "sk") and write:
            bad = f"{what} is read-only"
        elif name in ("hwtstamp", "sk", "tstamp"):
            bad = None if size == 8 else f"{what} needs an 8-byte access"
        elif write and size != 4:
            bad = f"{what} needs a 4-byte store"
        elif size > 4:
            bad = f"{what} allows loads of 1, 2 or 4 bytes"
        if bad:
            raise self.fault(pc, off, size, write, bad)
        return name, start, width, target

    def _value(self, name: str, off: int) -> int:
        skb = self.skb
        attr = _SKB_PLAIN.get(name)
        if attr is not None:
            return getattr(skb, attr)
        if name in _PTR_FIELDS:
            where = {"data": skb.data, "data_end": skb.data + skb.len,
                     "data_meta": skb.data - skb.meta_len}[name]  # fmt: skip
            return skb.address(where)
        if name == "pkt_type":
            return skb.pkt_type & 7
        if name == "vlan_present":
            return 1 if skb.vlan_all else 0
        if name == "napi_id":
            return skb.napi_id if skb.napi_id >= MIN_NAPI_ID else 0
        if name in ("sk", "tstamp_type", "remote_port", "local_port"):
            return 0
        if name in ("remote_ip4", "local_ip4"):
            return int.from_bytes((skb.sk_daddr if name == "remote_ip4" else skb.sk_saddr)[:4],
                                  "little")  # fmt: skip
        base = 100 if name == "remote_ip6" else 116
        addr = skb.sk_daddr if name == "remote_ip6" else skb.sk_saddr
        k = (off - base) & ~3
        return int.from_bytes(addr[k : k + 4], "little") if skb.sk_family == 10 else 0

    def load(self, pc: int, off: int, size: int) -> int:
        name, start, width, target = self._field(pc, off, size, False)
        if name == "cb":
            return _U[size].unpack_from(self.skb.cb, off - start)[0]
        value = self._value(name, off)
        if name in _PTR_FIELDS or size >= width:
            return value
        if size < target:  # narrow load: shift and mask the converted field
            value = (value >> (8 * (off & 3))) & _mask(size)
        return value

    def store(self, pc: int, off: int, size: int, value: int) -> None:
        name, start, _, _ = self._field(pc, off, size, True)
        skb = self.skb
        if name == "cb":
            _U[size].pack_into(skb.cb, off - start, value & _mask(size))
            self.reconvert("cb", off, off + size)  # changed in place: no attribute assigned
        elif name == "queue_mapping":
            if value < 0xFFFF:  # NO_QUEUE_MAPPING and above leave it unchanged
                skb.queue_mapping = value & 0xFFFF
        elif name in ("tc_index", "tc_classid"):
            setattr(skb, name, value & 0xFFFF)
        elif name == "tstamp":
            skb.tstamp = value & _mask(8)
        else:  # mark, priority
            setattr(skb, name, value & 0xFFFFFFFF)


# --- tracing contexts ---------------------------------------------------------------------------
PT_REGS = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx",
           "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss")  # fmt: skip
"""x86-64 ``struct pt_regs``, 8 bytes each, in order (168 bytes)."""


def pack_pt_regs(regs: dict[str, int] | None = None) -> bytes:
    """The bytes of a ``struct pt_regs`` with the named registers set (others 0)."""
    regs = dict(regs or {})
    unknown = set(regs) - set(PT_REGS)
    if unknown:
        raise ValueError(f"not x86-64 pt_regs fields: {sorted(unknown)}")
    return b"".join((regs.get(n, 0) & _mask(8)).to_bytes(8, "little") for n in PT_REGS)


class RawCtx(CtxRegion):
    """A context the program reads (and maybe writes) as plain bytes.

    ``min_off`` is the first readable offset (8 for tracepoints: the common
    header), ``writable`` whether stores are allowed, ``limit_name`` what
    running off the end means.  Accesses must be aligned to their size.
    """

    def __init__(self, name: str, struct_name: str, data: bytes, *, writable: bool = False,
                 min_off: int = 0, size: int | None = None) -> None:  # fmt: skip
        super().__init__(name, size if size is not None else len(data))
        self.struct_name = struct_name
        self.buf[: len(data)] = data
        self.ctx_writable = writable
        self.min_off = min_off

    def load(self, pc: int, off: int, size: int) -> int:
        self._check_common(pc, off, size, False)
        if off < self.min_off:
            raise self.fault(pc, off, size, False, f"{self.struct_name}+{off} is not readable "
                                                   f"(below offset {self.min_off})")  # fmt: skip
        return self.raw_load(off, size)

    def store(self, pc: int, off: int, size: int, value: int) -> None:
        if not self.ctx_writable:
            raise self.fault(pc, off, size, True, f"{self.struct_name} is read-only")
        self._check_common(pc, off, size, True)
        self.raw_store(off, size, value)


def kprobe_ctx(regs: dict[str, int] | bytes | None = None) -> RawCtx:
    """A kprobe's ``struct pt_regs`` (writable: Linux 6.18 lets kprobes store to it)."""
    data = regs if isinstance(regs, bytes | bytearray) else pack_pt_regs(regs)
    if len(data) != 8 * len(PT_REGS):
        raise ValueError(f"pt_regs is {8 * len(PT_REGS)} bytes, got {len(data)}")
    return RawCtx("ctx:pt_regs", "pt_regs", bytes(data), writable=True)


def tracepoint_ctx(record: bytes) -> RawCtx:
    """A tracepoint's raw record (its first 8 bytes, the common fields, are unreadable)."""
    return RawCtx("ctx:tracepoint", "tracepoint record", record, min_off=8,
                  size=max(len(record), 8))  # fmt: skip


def raw_tracepoint_ctx(args: list[int] | bytes) -> RawCtx:
    """``struct bpf_raw_tracepoint_args``: u64 args[] (at most 12), read-only."""
    data = args if isinstance(args, bytes | bytearray) else b"".join(
        (a & _mask(8)).to_bytes(8, "little") for a in args)  # fmt: skip
    return RawCtx("ctx:raw_tp_args", "bpf_raw_tracepoint_args", bytes(data))


class PerfEventData(CtxRegion):
    """``struct bpf_perf_event_data``: regs (8-byte loads), sample_period and addr
    (narrow loads allowed), read-only (``pe_prog_is_valid_access``)."""

    struct_name = "bpf_perf_event_data"

    def __init__(self, regs: dict[str, int] | None = None, sample_period: int = 0,
                 addr: int = 0) -> None:  # fmt: skip
        super().__init__("ctx:perf_event", 8 * len(PT_REGS) + 16)
        self.buf[:] = pack_pt_regs(regs) + struct.pack("<QQ", sample_period & _mask(8),
                                                       addr & _mask(8))  # fmt: skip

    def load(self, pc: int, off: int, size: int) -> int:
        self._check_common(pc, off, size, False)
        if off < 8 * len(PT_REGS) and size != 8:
            raise self.fault(pc, off, size, False, "bpf_perf_event_data.regs needs 8-byte loads")
        return self.raw_load(off, size)

    def store(self, pc: int, off: int, size: int, value: int) -> None:
        raise self.fault(pc, off, size, True, "bpf_perf_event_data is read-only")
