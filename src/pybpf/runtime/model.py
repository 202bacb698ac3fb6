"""The kernel pybpf models, and the kernels its recorded facts were taken from.

pybpf follows mainline Linux 6.18 where users compare (verdicts, logs, test runs, tags).
The tests compare it with facts recorded from real kernels (``tests/kernel_facts/``),
each stamped with a :class:`Recording`'s fingerprint, a hash of probed behaviour
(``pybpf.testing.kernel_facts.fingerprint``): the same ``uname -r`` has shipped
verifiers that answer differently.  docs/kernel-drift.md lists where the kernels differ.
"""

from __future__ import annotations

from dataclasses import dataclass

RELEASE = "6.18"


@dataclass(frozen=True)
class Recording:
    """A kernel the facts were recorded on."""

    release: str
    fingerprint: str
    when: str
    what: str


RECORDINGS = (
    Recording("6.18.44-fc-v1300", "4bdbd6a2e541", "2026-12-07",
              "every fact but those below"),
    Recording("6.18.44-fc-v595", "pre-stamp", "before 2026-12-07",
              "another build of 6.18.44: bpf_xdp_adjust_meta in XDP, kprobe "
              "private stacks and sign-extension bounds as mainline 6.18 has them"),
)  # fmt: skip


def describe() -> str:
    """One line: the kernel pybpf models and where its facts were recorded."""
    where = "; ".join(f"Linux {r.release} ({r.fingerprint}, {r.when})" for r in RECORDINGS)
    return f"pybpf models Linux {RELEASE}, as recorded on {where}"
