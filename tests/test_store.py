"""The artifact store: keys, atomic writes, concurrent writers, killed writers, record logs."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmvem.errors import StoreError
from llmvem.hashing import artifact_key, hash_array, hash_file
from llmvem.store import ArtifactStore, RecordLog, atomic_write_text

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
specs = st.dictionaries(st.text(min_size=1, max_size=10), values, min_size=1, max_size=6)


def _same(a: object, b: object) -> bool:
    """Structural equality where NaN equals NaN and 1 differs from 1.0 and True."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)  # NaN == NaN, -0.0 != 0.0
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)  # type: ignore[attr-defined]
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b


@settings(max_examples=300, deadline=None)
@given(specs, specs)
def test_key_differs_iff_spec_differs(a: dict, b: dict) -> None:
    assert (artifact_key(a) == artifact_key(b)) == _same(a, b)


@settings(max_examples=200, deadline=None)
@given(specs, st.text(min_size=1, max_size=10), values)
def test_changing_any_one_input_changes_the_key(spec: dict, field: str, new_value: object) -> None:
    changed = dict(spec)
    changed[field] = new_value
    if _same(changed, spec):
        return
    assert artifact_key(changed) != artifact_key(spec)


def test_key_ignores_dict_order_but_not_list_order() -> None:
    assert artifact_key({"a": 1, "b": 2}) == artifact_key({"b": 2, "a": 1})
    assert artifact_key({"x": [1, 2]}) != artifact_key({"x": [2, 1]})
    assert artifact_key({"x": 1}) != artifact_key({"x": 1.0}) != artifact_key({"x": True})


def test_realistic_spec_fields_each_change_the_key() -> None:
    base = {
        "images": ["a" * 64, "b" * 64],
        "model": {"name": "efficientnet_lite0", "weights_sha256": "c" * 64},
        "prompt": "Describe this image in one sentence.",
        "params": {"temperature": 0.3, "max_tokens": 128},
        "preprocess": {"size": 224, "mean": 127.0},
    }
    k0 = artifact_key(base)
    variants = [
        {**base, "images": ["a" * 64, "d" * 64]},
        {**base, "model": {**base["model"], "weights_sha256": "e" * 64}},
        {**base, "prompt": "Describe this image."},
        {**base, "params": {"temperature": 0.31, "max_tokens": 128}},
        {**base, "preprocess": {"size": 256, "mean": 127.0}},
    ]
    keys = {artifact_key(v) for v in variants}
    assert k0 not in keys and len(keys) == len(variants)


def test_array_hash_sees_dtype_shape_and_values() -> None:
    a = np.arange(6, dtype=np.float32)
    assert hash_array(a) != hash_array(a.astype(np.float64))
    assert hash_array(a) != hash_array(a.reshape(2, 3))
    b = a.copy()
    b[3] += 1e-6
    assert hash_array(a) != hash_array(b)


def test_put_get_roundtrip_and_cached(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    calls = []

    def compute() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"x": np.arange(5, dtype=np.float32), "ids": np.array(["a", "b"])}

    out1 = store.cached("feat", {"n": 5}, compute)
    out2 = store.cached("feat", {"n": 5}, compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(out1["x"], out2["x"])
    assert list(out2["ids"]) == ["a", "b"]
    store.cached("feat", {"n": 6}, compute)
    assert len(calls) == 2
    meta = json.loads((store.path("feat", store.key("feat", {"n": 5})) / "meta.json").read_text())
    assert meta["spec"] == {"n": 5} and "x.npy" in meta["files"]


def test_reserved_and_invalid_kinds(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(StoreError):
        store.key("feat", {"kind": "x"})
    with pytest.raises(StoreError):
        store.path("../evil", "abc")
    with pytest.raises(StoreError, match="no artifact"):
        store.get_arrays("feat", "0" * 64)


def test_failed_write_publishes_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    key = store.key("feat", {"n": 1})
    with pytest.raises(RuntimeError), store.writing("feat", key, {"n": 1}) as d:
        np.save(d / "x.npy", np.zeros(3))
        raise RuntimeError("boom")
    assert not store.has("feat", key)
    assert store.entries() == []
    assert store.stale_temporaries() == []


def _writer(root: str, value: int, barrier: object) -> None:
    store = ArtifactStore(root)
    barrier.wait()  # type: ignore[attr-defined]
    for _ in range(5):
        store.put_arrays("race", {"same": True}, {"x": np.full(200_000, value, dtype=np.int64)})


def test_concurrent_writers_never_corrupt(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), v, barrier)) for v in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = ArtifactStore(tmp_path)
    [entry] = store.entries("race")
    x = store.get_arrays("race", entry.key)["x"]
    assert x.shape == (200_000,) and len(set(np.unique(x))) == 1  # one writer's complete copy, never a mix
    assert store.stale_temporaries() == []


_KILLED_WRITER = """
import sys, time, numpy as np
from llmvem.store import ArtifactStore
store = ArtifactStore(sys.argv[1])
key = store.key("big", {"n": 1})
with store.writing("big", key, {"n": 1}) as d:
    np.save(d / "part1.npy", np.zeros(1000))
    print("writing", flush=True)
    time.sleep(60)
    np.save(d / "part2.npy", np.zeros(1000))
"""


def test_killed_writer_leaves_no_partial_artifact(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    store = ArtifactStore(tmp_path)
    assert not store.has("big", store.key("big", {"n": 1}))
    assert store.entries() == []
    stale = store.stale_temporaries()
    assert len(stale) == 1  # visible to `cache clean`, never read as an entry
    assert store.clean(tmp_min_age_s=0) == 0
    assert store.stale_temporaries() == []


def test_clean_by_kind_and_key(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    k1 = store.put_arrays("a", {"i": 1}, {"x": np.zeros(1)})
    store.put_arrays("a", {"i": 2}, {"x": np.zeros(1)})
    store.put_arrays("b", {"i": 1}, {"x": np.zeros(1)})
    assert len(store.entries()) == 3
    assert store.clean(key_prefix=k1[:10]) == 1
    assert store.clean(kind="b") == 1
    assert [e.kind for e in store.entries()] == ["a"]


def test_damaged_entry_reports_path(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    key = store.put_arrays("a", {"i": 1}, {"x": np.zeros(10)})
    (store.path("a", key) / "x.npy").write_bytes(b"garbage")
    with pytest.raises(StoreError, match="damaged"):
        store.get_arrays("a", key)


def test_entry_corrupted_in_place_is_detected_not_used(tmp_path: Path) -> None:
    """Same size, one byte changed (what a bad disk, a stray write or an editor does): the digest catches it."""
    store = ArtifactStore(tmp_path)
    spec = {"i": 2}
    key = store.put_arrays("a", spec, {"x": np.arange(100, dtype=np.float32)}, extra={"n": 100})
    f = store.path("a", key) / "x.npy"
    raw = bytearray(f.read_bytes())
    raw[-4] ^= 0x40  # a float's byte in the data, not the header: np.load would read it without complaint
    f.write_bytes(bytes(raw))
    assert f.stat().st_size == len(raw)
    with pytest.raises(StoreError, match=r"x.npy is damaged: its content no longer matches the SHA-256"):
        store.get_arrays("a", key)
    with pytest.raises(StoreError, match="llmvem cache clean --key"):
        store.cached("a", spec, lambda: pytest.fail("must not recompute over a damaged entry silently"))
    with pytest.raises(StoreError, match="damaged"):
        store.get_arrays("a", key, mmap=True)
    e = store.path("a", key) / "extra.json"
    e.write_text(e.read_text().replace("100", "999"))
    with pytest.raises(StoreError, match=r"extra\.json is damaged"):
        store.get_extra("a", key)


def test_entry_without_digests_is_recomputed_and_replaced(tmp_path: Path) -> None:
    """Layout 1 (no digests) cannot be verified: it counts as absent, and the next write replaces it."""
    store = ArtifactStore(tmp_path)
    key = store.put_arrays("a", {"i": 3}, {"x": np.ones(3)})
    meta_path = store.path("a", key) / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert set(meta["digests"]) == {"x.npy"} and meta["layout"] == 2
    del meta["digests"], meta["layout"]
    meta_path.write_text(json.dumps(meta))
    np.save(store.path("a", key) / "x.npy", np.full(3, 7.0))  # an old, unverifiable copy
    assert not store.has("a", key)
    got = store.cached("a", {"i": 3}, lambda: {"x": np.ones(3)})
    np.testing.assert_array_equal(got["x"], np.ones(3))
    assert store.has("a", key) and [e.key for e in store.entries()] == [key]
    assert not list((tmp_path / ".tmp").iterdir())  # the replaced copy is gone


def test_atomic_write_text_replaces_whole_file(tmp_path: Path) -> None:
    p = tmp_path / "m.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [q.name for q in tmp_path.iterdir()] == ["m.json"]


def test_record_log_ignores_partial_trailing_line(tmp_path: Path) -> None:
    p = tmp_path / "log.jsonl"
    log = RecordLog(p)
    log.append({"key": "a", "v": 1})
    log.append({"key": "b", "v": 2})
    with open(p, "ab") as fh:
        fh.write(b'{"key": "c", "v"')  # writer killed mid-line
    log2 = RecordLog(p)
    assert len(log2) == 2 and "c" not in log2
    log2.append({"key": "c", "v": 3})
    assert [json.loads(line)["key"] for line in p.read_text().splitlines()] == ["a", "b", "c"]


def test_record_log_never_truncates_records_after_a_damaged_line(tmp_path: Path) -> None:
    p = tmp_path / "log.jsonl"
    log = RecordLog(p)
    for k in "abc":
        log.append({"key": k, "v": 1})
    lines = p.read_bytes().splitlines(keepends=True)
    p.write_bytes(lines[0] + b'{"key": "b", \xff\n' + lines[2])  # the middle record damaged in place
    with pytest.raises(StoreError, match="line 2: not a record of this log"):
        RecordLog(p)
    assert p.read_bytes().endswith(lines[2])  # record "c" is still there


def test_hash_file_matches_content(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    h1 = hash_file(p)
    p.write_bytes(b"abd")
    assert hash_file(p) != h1
    time.sleep(0)
