"""Kill-and-resume: a ``llmvem describe`` subprocess killed with SIGKILL at random points, then resumed.

Every image must end up described exactly once: no lost work beyond the requests in flight, no duplicates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llmvem.describe.loopback import LoopbackChatServer, expected_reply


def _log_bytes(cache: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((cache / "descriptions").glob("*.jsonl"))) if cache.is_dir() else b""


def _check_log(cache: Path, after: str) -> bool:
    """Every complete line is a record, no key has two successes; returns whether a torn last line is left."""
    raw = _log_bytes(cache)
    complete, _, torn = raw.rpartition(b"\n")
    ok: Counter[str] = Counter()
    for line in complete.split(b"\n") if complete else []:
        rec = json.loads(line)  # a torn line in the middle would fail here
        ok[rec["key"]] += rec["ok"]
    dup = [k for k, n in ok.items() if n > 1]
    assert not dup, f"after {after}: {len(dup)} key(s) described twice"
    return bool(torn)


def _kill_and_resume(tmp_path: Path, n_images: int, n_kills: int, seed: int) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n_images):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(imgs / f"im{i:04d}.png")
    cache = tmp_path / "cache"
    out = tmp_path / "out.jsonl"
    with LoopbackChatServer(delay_s=0.04, lifetime_s=600) as srv:
        cmd = [
            sys.executable, "-m", "llmvem", "describe", str(imgs), "--backend", "openai", "--base-url", srv.url,
            "--model", "vlm", "--concurrency", "4", "--cache-dir", str(cache), "--no-progress", "-o", str(out),
            "--set", "describe.retry_base_s=0",
        ]  # fmt: skip
        env = {**os.environ, "LLMVEM_CACHE": str(cache)}
        kills = torn = 0
        for k in range(n_kills):
            before = len(_log_bytes(cache))
            err = tmp_path / f"stderr-{k}.txt"
            with open(err, "wb") as fh:  # a file, not a pipe nobody reads: a chatty child can never block on it
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=fh)
            deadline = time.monotonic() + 120
            while proc.poll() is None and len(_log_bytes(cache)) <= before and time.monotonic() < deadline:
                time.sleep(0.005)
            if proc.poll() is None:  # it is writing records: kill it at a random moment
                time.sleep(float(rng.uniform(0.0, 0.2)))
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL, (
                f"run {k} ended by itself (exit code {proc.returncode}) before it could be killed: "
                + err.read_text(errors="replace")[-2000:]
            )
            kills += 1
            torn += _check_log(cache, f"kill {k}")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    assert not _check_log(cache, "the final run")
    lines = [json.loads(x) for x in _log_bytes(cache).splitlines()]
    ok = [r for r in lines if r["ok"]]
    per_key = Counter(r["key"] for r in ok)
    assert len(per_key) == n_images and set(per_key.values()) == {1}  # exactly once
    assert sorted(r["image"] for r in ok) == sorted(p.stem for p in imgs.iterdir())
    for r in ok:
        assert r["text"] == expected_reply((imgs / f"{r['image']}.png").read_bytes(), r["prompt"], 0)
    exported = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["image"] for r in exported) == sorted(p.stem for p in imgs.iterdir())
    # work lost to the kills is bounded by the requests in flight (4 running + 4 queued per kill)
    assert srv.requests <= n_images + kills * 8, (srv.requests, kills, torn)


def test_kill_and_resume_short(tmp_path: Path) -> None:
    _kill_and_resume(tmp_path, n_images=60, n_kills=3, seed=1)


@pytest.mark.slow
def test_kill_and_resume_twelve_times(tmp_path: Path) -> None:
    _kill_and_resume(tmp_path, n_images=400, n_kills=12, seed=2)
