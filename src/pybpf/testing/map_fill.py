"""Hash map fill rate from Python, side by side with bpf(2) (a benchmark, not a test).

Run ``python -m pybpf.testing.map_fill`` (``--entries`` sets the sizes, default
100,000 and 1,000,000).  Each size fills a fresh ``BPF_MAP_TYPE_HASH`` (4-byte
keys, 8-byte values, ``max_entries`` equal to the fill) through the path a user
takes — :meth:`pybpf.runtime.kernel.Kernel.map_create` and ``Map.update`` — then
deletes every element again.  Where bpf(2) works (root on Linux), the same fill
and delete run through :mod:`pybpf.kernel.linux` (one ``BPF_MAP_UPDATE_ELEM`` /
``BPF_MAP_DELETE_ELEM`` per element through ctypes) in the same run, and the
report gives the ratio (pybpf rate / bpf(2) rate; 1.0 is as fast as the kernel
reached from Python).
"""

from __future__ import annotations

import argparse
import struct
import time

from pybpf.errors import KernelError
from pybpf.runtime.kernel import Kernel
from pybpf.runtime.maps.base import MapAttr, MapType

KEY = struct.Struct("<I")
VALUE = struct.Struct("<Q")


def _run(mapobj, n: int) -> tuple[float, float]:
    """(inserts/s, deletes/s) filling ``mapobj`` with ``n`` keys and emptying it."""
    keys = [KEY.pack(i) for i in range(n)]
    values = [VALUE.pack(i * 7) for i in range(n)]
    update, delete = mapobj.update, mapobj.delete
    start = time.perf_counter()
    for key, value in zip(keys, values, strict=True):
        update(key, value, 0)
    filled = time.perf_counter()
    for key in keys:
        delete(key)
    done = time.perf_counter()
    return n / (filled - start), n / (done - filled)


def pybpf_rates(n: int) -> tuple[float, float]:
    """Fill and empty an ``n``-entry hash map of the simulated kernel."""
    kernel = Kernel()
    mapobj = kernel.map_create(MapAttr(MapType.HASH, KEY.size, VALUE.size, n))
    try:
        return _run(mapobj, n)
    finally:
        mapobj.release()


def kernel_rates(n: int) -> tuple[float, float] | None:
    """The same through bpf(2), or None when the running kernel cannot be asked."""
    from pybpf.kernel import linux

    if linux.available() is not None:
        return None
    try:
        kmap = linux.map_create(MapType.HASH, KEY.size, VALUE.size, n)
    except KernelError:
        return None
    with kmap:
        return _run(kmap, n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pybpf.testing.map_fill",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument(
        "--entries",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        help="map sizes to fill (default: 100000 1000000)",
    )
    parser.add_argument("--no-kernel", action="store_true", help="skip the bpf(2) side")
    args = parser.parse_args(argv)
    print(
        f"{'entries':>9}  {'pybpf ins/s':>12} {'del/s':>10}  {'bpf(2) ins/s':>12} "
        f"{'del/s':>10}  {'ins ratio':>9} {'del ratio':>9}"
    )
    for n in args.entries:
        ins, dels = pybpf_rates(n)
        ref = None if args.no_kernel else kernel_rates(n)
        line = f"{n:>9}  {ins:>12,.0f} {dels:>10,.0f}"
        if ref is None:
            line += f"  {'n/a':>12} {'n/a':>10}"
        else:
            line += (f"  {ref[0]:>12,.0f} {ref[1]:>10,.0f}  {ins / ref[0]:>9.2f} "
                     f"{dels / ref[1]:>9.2f}")  # fmt: skip
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
