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


def _log_size(cache: Path) -> int:
    return sum(p.stat().st_size for p in (cache / "descriptions").glob("*.jsonl")) if cache.is_dir() else 0


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
        kills = 0
        for _ in range(n_kills * 3):
            if kills == n_kills:
                break
            before = _log_size(cache)
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            while proc.poll() is None and _log_size(cache) <= before and time.monotonic() < deadline:
                time.sleep(0.005)
            if proc.poll() is not None:
                break  # it finished before a kill: nothing left to interrupt
            time.sleep(float(rng.uniform(0.0, 0.2)))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
            kills += 1
        assert kills == n_kills, f"only {kills} kills: the job finished too early"
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(x) for p in (cache / "descriptions").glob("*.jsonl") for x in p.read_text().splitlines()]
    ok = [r for r in lines if r["ok"]]
    per_key = Counter(r["key"] for r in ok)
    assert len(per_key) == n_images and set(per_key.values()) == {1}  # exactly once
    assert sorted(r["image"] for r in ok) == sorted(p.stem for p in imgs.iterdir())
    for r in ok:
        assert r["text"] == expected_reply((imgs / f"{r['image']}.png").read_bytes(), r["prompt"], 0)
    exported = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["image"] for r in exported) == sorted(p.stem for p in imgs.iterdir())
    # work lost to the kills is bounded by the requests in flight (4 running + 4 queued per kill)
    assert srv.requests <= n_images + kills * 8


def test_kill_and_resume_short(tmp_path: Path) -> None:
    _kill_and_resume(tmp_path, n_images=60, n_kills=3, seed=1)


@pytest.mark.slow
def test_kill_and_resume_twelve_times(tmp_path: Path) -> None:
    _kill_and_resume(tmp_path, n_images=400, n_kills=12, seed=2)
