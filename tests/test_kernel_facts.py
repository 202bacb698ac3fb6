"""Recorded kernel facts: the store, the oracle's policy, decisions and the stamps in use."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from pybpf.errors import KernelError
from pybpf.runtime import model
from pybpf.testing import kernel_facts as kf

FACTS = Path(__file__).resolve().parent / "kernel_facts"
OLD, NEW = kf.Stamp("6.18.44-old", "aaaa"), kf.Stamp("6.18.44-new", "bbbb")


def _oracle(tmp_path: Path, *, live=None, record=False, decisions=()) -> kf.Oracle:
    file = kf.FactFile.load(tmp_path / "demo.json")
    return kf.Oracle(file, live=live, record=record, decisions=list(decisions))


def test_values_are_kept_as_json_keeps_them():
    assert kf.canonical((1, b"\x01\xff", {"a": (2,)})) == [1, {"hex": "01ff"}, {"a": [2]}]
    with pytest.raises(TypeError):
        kf.canonical(object())

    def refused():
        raise KernelError("no", errno=errno.EINVAL)

    assert kf.outcome(refused) == {"errno": "EINVAL"}


def test_recording_then_reading_without_a_kernel(tmp_path):
    recorder = _oracle(tmp_path, live=OLD, record=True)
    assert recorder.fact("k", lambda: (1, b"x")) == [1, {"hex": "78"}]
    recorder.file.save()
    offline = _oracle(tmp_path)  # no bpf(2): the recording alone answers
    assert offline.fact("k", lambda: pytest.fail("no probe without a kernel")) == [1, {"hex": "78"}]
    assert offline.file.get("k")[1] == OLD
    with pytest.raises(kf.FactError, match="never recorded"):
        offline.fact("missing", lambda: 0)


def test_a_live_kernel_that_differs_is_drift_and_the_recording_still_answers(tmp_path):
    rec = _oracle(tmp_path, live=OLD, record=True)
    rec.fact("k", lambda: 1)
    rec.file.save()
    decision = kf.Decision(("demo/k",), "recorded", "mainline does so")
    live = _oracle(tmp_path, live=NEW, decisions=[decision])
    assert live.fact("k", lambda: 2) == 1
    (drift,) = live.drifts
    assert (drift.recorded, drift.live, drift.recorded_on, drift.live_on) == (1, 2, OLD, NEW)
    assert drift.decision == decision and "[pybpf follows the recorded kernel]" in drift.line()
    assert live.fact("k", lambda: 1) == 1 and len(live.drifts) == 1  # agreement: no drift
    live.check("k", 1, lambda: 2)  # pybpf equals the recording: passes, drift noted
    with pytest.raises(AssertionError, match=r"demo/k: pybpf 2, the kernel on Linux 6\.18\.44-old"):
        live.check("k", 2, lambda: 2)  # pybpf follows the live kernel, not the recording


def test_recording_keeps_facts_decided_to_follow_the_recording(tmp_path):
    _oracle(tmp_path, live=OLD, record=True).fact("k", lambda: 1)
    keep = kf.Decision(("demo/*",), "recorded", "why")
    recorder = _oracle(tmp_path, live=NEW, record=True, decisions=[keep])
    recorder.file.facts = {"k": {"kernel": "aaaa", "value": 1}}
    recorder.file.kernels = {"aaaa": {"release": OLD.release}}
    assert recorder.fact("k", lambda: 2) == 1
    assert recorder.fact("new", lambda: 3) == 3  # nothing recorded yet: recorded from live


def test_saving_is_atomic_and_reloads(tmp_path):
    rec = _oracle(tmp_path, live=OLD, record=True)
    for i in range(3):
        rec.fact(f"k{i}", lambda i=i: i)
    rec.file.save()
    text = (tmp_path / "demo.json").read_text()
    assert text.count("\n") == 6 and not list(tmp_path.glob("*.tmp"))  # one fact per line
    assert kf.FactFile.load(tmp_path / "demo.json").facts == rec.file.facts


@pytest.mark.parametrize("text", ["", "[]", "{}", '{"kernels": {}, "facts": {"k": {}}}',
                                  '{"kernels": [], "facts": {}}'])  # fmt: skip
def test_malformed_fact_files_are_refused(tmp_path, text):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(kf.FactError, match="not a kernel fact file"):
        kf.FactFile.load(tmp_path / "bad.json")


def test_recording_needs_a_kernel(tmp_path):
    with pytest.raises(kf.FactError, match="needs bpf"):
        _oracle(tmp_path, live=None, record=True)


def test_decisions_are_well_formed():
    decisions = kf.load_decisions(FACTS / kf.DECISIONS)
    assert {d.follow for d in decisions} == {"recorded", "live"}
    assert all(d.why and d.patterns for d in decisions)


def test_every_stamp_in_use_is_a_recording_pybpf_names():
    named = {(r.release, r.fingerprint) for r in model.RECORDINGS}
    used = set()
    for path in FACTS.glob("*.json"):
        if path.name == kf.DECISIONS:
            continue
        doc = json.loads(path.read_text())
        used |= {(k["release"], fp) for fp, k in doc["kernels"].items()}
    assert used and used <= named, used - named
