"""``report.html`` in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``).

The test speaks the W3C WebDriver protocol to ``chromedriver`` over HTTP on 127.0.0.1 with httpx (no Selenium):
the page must load without console errors, every embedded image must decode, the screenshot must not be blank and
hostile text must stay text. Slow-marked: ``python -m pytest -m slow tests/report/test_report_browser.py``; skipped,
with the reason, where Chromium or its driver is absent (``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> & <b id=evil>bold</b>'
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,2000"]  # fmt: skip


class _WebDriver:
    """The few WebDriver commands the test needs, on one session."""

    def __init__(self, url: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=url, timeout=60)
        caps = {"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": FLAGS},
                "goog:loggingPrefs": {"browser": "ALL"}}  # fmt: skip
        resp = self.http.post("/session", json={"capabilities": {"alwaysMatch": caps}}).json()
        self.sid = resp["value"]["sessionId"]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = self.http.request(method, f"/session/{self.sid}{path}", json=body)
        value = resp.json()["value"]
        if resp.status_code != 200:
            raise AssertionError(f"webdriver {path}: {value}")
        return value

    def script(self, js: str) -> Any:
        return self.call("POST", "/execute/sync", {"script": js, "args": []})

    def close(self) -> None:
        self.http.delete(f"/session/{self.sid}")
        self.http.close()


@pytest.fixture()
def browser() -> Iterator[_WebDriver]:
    if CHROMIUM is None or DRIVER is None:
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([DRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import httpx

        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/status", timeout=1).json()["value"]["ready"]:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                time.sleep(0.1)
        driver = _WebDriver(f"http://127.0.0.1:{port}")
        yield driver
        driver.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _run_dir(tmp_path: Path) -> Path:
    """A run directory holding an encoding table, a brain map picture and ROI captions with hostile text."""
    from llmvem.report.brain_plots import plot_volume

    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"model": [HOSTILE, "plain"], "roi": ["V1", "V1"], "n_voxels": [10, 10], "mean_r": [0.3, 0.2],
                  "median_r": [0.3, 0.2], "noise_ceiling_r": [0.6, 0.6], "mean_score": [0.25, 0.1]}).to_csv(
        run / "encoding.csv", index=False)  # fmt: skip
    pd.DataFrame({"subject": ["s1"], "roi": ["V1"], "rank": [1], "caption": [HOSTILE], "score": [0.9],
                  "n_voxels": [10], "mean_r": [0.3]}).to_csv(run / "roi_captions.csv", index=False)  # fmt: skip
    vol = np.full((8, 8, 6), np.nan)
    vol[1:7, 1:7, 1:5] = 0.1
    vol[3:5, 3:5, 2:4] = 0.8
    plot_volume(vol, np.eye(4), run / "maps" / "s1" / "m" / "r.png", threshold=0.3)
    (run / "metrics.json").write_text(json.dumps({"note": HOSTILE}))
    return run


def test_report_loads_cleanly_in_chromium(browser: _WebDriver, tmp_path: Path) -> None:
    from PIL import Image

    from llmvem.report import build_report

    report = build_report(_run_dir(tmp_path))
    browser.call("POST", "/url", {"url": report.as_uri()})
    logs = browser.call("POST", "/se/log", {"type": "browser"})
    errors = [e for e in logs if e.get("level") == "SEVERE"]
    assert errors == [], errors
    images = browser.script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(images) >= 2 and all(c and w > 0 and h > 0 for c, w, h in images), images
    assert browser.script("return window.__pwned === undefined") is True
    assert browser.script("return document.getElementById('evil') === null") is True
    assert "<script>window.__pwned = 1</script>" in browser.script("return document.body.innerText")
    shot = Image.open(io.BytesIO(base64.b64decode(browser.call("GET", "/screenshot"))))
    grey = np.asarray(shot.convert("L"), dtype=float)
    assert grey.std() > 5, "the screenshot is blank"
