"""Map types by ``enum bpf_map_type``: :data:`MAP_CLASSES` is the registry the kernel uses."""

from __future__ import annotations

from pybpf.runtime.maps.base import Map, MapAttr, MapFlag, MapType, UpdateFlag

MAP_CLASSES: dict[MapType, type[Map]] = {}


def register(*types: MapType):
    """Class decorator: make ``cls`` the implementation of ``types``."""

    def deco(cls: type[Map]) -> type[Map]:
        for t in types:
            MAP_CLASSES[t] = cls
        return cls

    return deco


def _load_implementations() -> None:
    # imported for their @register side effect; each module defines one family of maps
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


_load_implementations()

__all__ = ["MAP_CLASSES", "Map", "MapAttr", "MapFlag", "MapType", "UpdateFlag", "register"]
