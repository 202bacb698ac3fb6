"""What LD_ABS / LD_IND read: the kernel's ``bpf_skb_load_helper_{8,16,32}``.

A non-negative offset reads from ``skb->data``.  A negative one names a header
instead, as classic BPF's ancillary offsets do: ``SKF_NET_OFF + k`` reads ``k``
bytes past the network header and ``SKF_LL_OFF + k`` past the link-layer (MAC)
header, anywhere from the buffer's head to its tail.  A read outside the packet
gives None: the program then ends with R0 = 0 (the hidden exit the kernel emits).
"""

from __future__ import annotations

from dataclasses import dataclass

SKF_NET_OFF = -0x100000
SKF_LL_OFF = -0x200000
_M32, _S32 = 0xFFFFFFFF, 0x80000000


@dataclass(frozen=True)
class Headers:
    """Where the headers of one skb lie in its buffer (``view``, from the head).

    ``data`` is skb->data, ``tail`` one past its last byte; ``mac`` is None when
    no link-layer header was set."""

    view: memoryview | bytearray
    data: int
    tail: int
    network: int
    mac: int | None


def load(packet, offset: int, size: int, headers: Headers | None = None) -> int | None:
    """The big-endian value of ``size`` bytes at ``offset`` (a signed 32-bit value)
    of ``packet`` (a region over skb->data), or None when they are not in the packet."""
    offset = ((offset & _M32) ^ _S32) - _S32
    if offset >= 0:
        if offset + size > packet.size:
            return None
        return int.from_bytes(packet.view[offset : offset + size], "big")
    if headers is None:
        return None
    if offset >= SKF_NET_OFF:
        start = headers.network + offset - SKF_NET_OFF
    elif offset >= SKF_LL_OFF and headers.mac is not None:
        start = headers.mac + offset - SKF_LL_OFF
    else:
        return None
    if start < 0 or start + size > headers.tail:
        return None
    return int.from_bytes(headers.view[start : start + size], "big")
