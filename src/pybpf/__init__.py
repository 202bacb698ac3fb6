"""pybpf: the eBPF virtual machine, its toolchain and a bpftool-like command line, in Python."""

__version__ = "0.1.0"
