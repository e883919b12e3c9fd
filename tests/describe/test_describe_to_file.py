"""``describe_to_file``: the work of ``llmvem describe IMAGES`` (plan or describe, write, what to tell)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from llmvem.config import ExperimentConfig, load_config
from llmvem.describe import read_records
from llmvem.describe.from_config import describe_to_file
from llmvem.describe.loopback import LoopbackChatServer


def _cfg(tmp_path: Path, ids: list[str]) -> ExperimentConfig:
    src = tmp_path / "caps.jsonl"
    src.write_text("".join(json.dumps({"image": f"{i}.png", "text": f"caption of {i}"}) + "\n" for i in ids))
    over = {"describe.backend": "import", "describe.source": str(src), "describe.model": "gt",
            "cache_dir": str(tmp_path / "store"), "progress": False}  # fmt: skip
    return load_config(overrides=over)


def test_dry_run_plans_and_writes_nothing_then_describe_writes(
    tmp_path: Path, image_folder: Callable[..., Path]
) -> None:
    images, out = image_folder(3), tmp_path / "d.jsonl"
    cfg = _cfg(tmp_path, ["img_0", "img_1", "img_2"])
    plan = describe_to_file(cfg, images, out, dry_run=True)
    assert plan.summary.startswith("3 of 3 requests remain (0 finished); log ") and plan.failures == []
    assert not out.exists()
    done = describe_to_file(cfg, images, out)
    assert done.summary == f"3 descriptions of 3 images → {out}" and done.failures == []
    assert sorted(r["text"] for r in read_records(out)) == [f"caption of img_{i}" for i in range(3)]
    again = describe_to_file(cfg, images, out, dry_run=True)
    assert again.summary.startswith("0 of 3 requests remain (3 finished); log ")


def _served(tmp_path: Path, url: str, **over: object) -> ExperimentConfig:
    keys = {"describe.backend": "openai", "describe.base_url": url, "describe.model": "m", "describe.max_retries": 0,
            "describe.retry_base_s": 0.01, "cache_dir": str(tmp_path / "store"), "progress": False, **over}  # fmt: skip
    return load_config(overrides=keys)


def test_failed_requests_are_returned_not_raised(tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    images, out = image_folder(3), tmp_path / "d.jsonl"
    with LoopbackChatServer(lifetime_s=60) as srv:
        srv.image_faults[hashlib.sha256((images / "img_2.png").read_bytes()).hexdigest()] = "400"
        done = describe_to_file(_served(tmp_path, srv.url), images, out)
    assert done.summary == f"2 descriptions of 3 images → {out}"
    assert len(done.failures) == 1 and "img_2" in done.failures[0]
    assert len(read_records(out)) == 2


def test_a_settings_warning_goes_to_warn(tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    said: list[str] = []
    with LoopbackChatServer(lifetime_s=60) as srv:
        cfg = _served(tmp_path, srv.url, **{"describe.n_samples": 2, "describe.temperature": 0})
        plan = describe_to_file(cfg, image_folder(3), tmp_path / "d.jsonl", dry_run=True, warn=said.append)
    assert said == ["--samples > 1 with temperature 0 gives identical samples"]
    assert plan.summary.startswith("6 of 6 requests remain")
    assert srv.requests == 0  # a dry run asks nothing
