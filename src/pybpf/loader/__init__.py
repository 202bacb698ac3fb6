"""Object files, libbpf's way: open an ELF object into a pure spec, load it into a kernel.

``ObjectSpec.from_file(path)`` parses (deterministic: the same on every
machine); ``load_object(spec_or_path, kernel)`` creates maps and programs and
returns a :class:`~pybpf.loader.collection.Collection`.
"""

from pybpf.loader.collection import Collection, load_object
from pybpf.loader.spec import MapSpec, ObjectSpec, ProgramSpec

__all__ = ["Collection", "MapSpec", "ObjectSpec", "ProgramSpec", "load_object"]
