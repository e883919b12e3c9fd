"""The openai backend against a real chat-completions server on 127.0.0.1 that injects faults on demand."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.stimuli import StimulusSet
from llmvem.describe import describe_stimuli, read_records, resolve_prompt
from llmvem.describe.loopback import LoopbackChatServer, expected_reply
from llmvem.describe.openai_compat import OpenAICompatibleDescriber
from llmvem.errors import BackendError
from llmvem.hashing import hash_bytes
from llmvem.store import ArtifactStore


@pytest.fixture
def server() -> Iterator[LoopbackChatServer]:
    with LoopbackChatServer(lifetime_s=120, slow_s=1.0, retry_after_s=0.6) as srv:
        yield srv


def _folder(tmp_path: Path, n: int, name: str = "imgs") -> Path:
    d = tmp_path / name
    d.mkdir()
    rng = np.random.default_rng(len(name) + n)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)).save(d / f"img_{i:02d}.png")
    return d


def _describer(srv: LoopbackChatServer, **kw: object) -> OpenAICompatibleDescriber:
    opts: dict[str, object] = {"base_url": srv.url, "retry_base_s": 0.01, "retry_max_s": 0.05, "timeout_s": 5.0}
    opts.update(kw)
    return OpenAICompatibleDescriber("loopback-vlm", **opts)  # type: ignore[arg-type]


def test_every_image_prompt_and_sample_described_once_with_provenance(
    server: LoopbackChatServer, tmp_path: Path
) -> None:
    stim = StimulusSet.from_folder(_folder(tmp_path, 6))
    store = ArtifactStore(tmp_path / "store")
    params = {"temperature": 0.7, "max_tokens": 64, "seed": 5}
    prompts = ["caption", "What colours dominate?"]
    desc = describe_stimuli(
        stim,
        _describer(server),
        prompt=prompts,
        params=params,
        n_samples=2,
        store=store,
        progress=False,
        concurrency=4,
    )
    assert len(desc) == 6 * 2 * 2 and server.requests == 24 and not desc.failures
    for r in desc.records:
        file_bytes = stim.paths[stim.index(r.image)].read_bytes()
        assert r.text == expected_reply(file_bytes, r.prompt, 5 + r.sample)  # answered from these very bytes
        assert r.params == params and r.model == "loopback-vlm" and r.backend == "openai"
        assert r.prompt_tokens is not None and r.completion_tokens == len(r.text.split())
        assert r.attempts == 1 and r.seconds > 0 and r.image_notes == []
    assert [r.prompt_name for r in desc.records[:4]] == ["caption", "caption", prompts[1], prompts[1]]
    assert desc.records[0].prompt == resolve_prompt("caption")
    assert {rec["params"]["seed"] for rec in server.received} == {5, 6}  # seed + sample index
    again = describe_stimuli(
        stim, _describer(server), prompt=prompts, params=params, n_samples=2, store=store, progress=False
    )
    assert server.requests == 24 and [r.text for r in again.records] == [r.text for r in desc.records]
    describe_stimuli(stim, _describer(server), params={**params, "temperature": 0.2}, store=store, progress=False)
    assert server.requests == 30  # other parameters: other keys, never the stale texts


def test_transient_faults_are_retried(server: LoopbackChatServer, tmp_path: Path) -> None:
    stim = StimulusSet.from_folder(_folder(tmp_path, 8))
    server.faults.extend(["500", "503", "close", "malformed", "slow", "429", "500"])
    server.retry_after_s = 0.05
    desc = describe_stimuli(
        stim, _describer(server, timeout_s=0.4), store=ArtifactStore(tmp_path / "s"), progress=False, concurrency=3
    )
    assert len(desc) == 8 and not desc.failures
    assert server.requests == 8 + 7
    assert sum(r.attempts - 1 for r in desc.records) == 7
    assert all(
        r.text == expected_reply(stim.paths[stim.index(r.image)].read_bytes(), r.prompt, None) for r in desc.records
    )


def test_retry_after_is_honoured(server: LoopbackChatServer, tmp_path: Path) -> None:
    stim = StimulusSet.from_folder(_folder(tmp_path, 1))
    server.faults.append("429")
    t0 = time.perf_counter()
    desc = describe_stimuli(stim, _describer(server), store=ArtifactStore(tmp_path / "s"), progress=False)
    assert time.perf_counter() - t0 >= 0.55  # Retry-After: 0.6, although the backoff base is 0.01 s
    assert desc.records[0].attempts == 2


def test_permanent_failures_recorded_never_stored_and_retried_on_rerun(
    server: LoopbackChatServer, tmp_path: Path
) -> None:
    stim = StimulusSet.from_folder(_folder(tmp_path, 6))
    h = [hash_bytes(p.read_bytes()) for p in stim.paths]
    server.image_faults.update({h[0]: "500", h[1]: "empty", h[2]: "garbage", h[3]: "400"})
    store = ArtifactStore(tmp_path / "s")
    desc = describe_stimuli(
        stim, _describer(server, max_retries=2), store=store, progress=False, concurrency=2, raise_on_failure=False
    )
    assert [r.image for r in desc.records] == stim.ids[4:]
    reasons = {f.image: f.reason for f in desc.failures}
    assert "HTTP 500" in reasons["img_00"] and "after 3 attempts" in reasons["img_00"]
    assert reasons["img_01"] == "empty response" and "garbage" in reasons["img_02"]
    assert "HTTP 400" in reasons["img_03"]
    assert server.requests == 3 + 1 + 1 + 1 + 2  # only 5xx is retried
    server.image_faults.clear()
    fixed = describe_stimuli(stim, _describer(server), store=store, progress=False)
    assert len(fixed) == 6 and not fixed.failures and server.requests == 8 + 4


def test_bad_key_or_model_stops_the_run(server: LoopbackChatServer, tmp_path: Path) -> None:
    stim = StimulusSet.from_folder(_folder(tmp_path, 20))
    server.faults.extend(["401"] * 100)
    with pytest.raises(BackendError, match="API key"):
        describe_stimuli(stim, _describer(server), store=ArtifactStore(tmp_path / "s"), progress=False, concurrency=2)
    assert server.requests <= 4
    server.faults.clear()
    server.faults.extend(["404"] * 100)
    with pytest.raises(BackendError, match="unknown model 'loopback-vlm'"):
        describe_stimuli(stim, _describer(server), store=ArtifactStore(tmp_path / "s"), progress=False)


def test_server_down_stops_after_consecutive_failures(tmp_path: Path) -> None:
    stim = StimulusSet.from_folder(_folder(tmp_path, 30))
    srv = LoopbackChatServer()  # bound but never started, then closed: connection refused
    url = srv.url
    srv.stop()
    d = OpenAICompatibleDescriber("m", base_url=url, max_retries=1, retry_base_s=0.0, timeout_s=1.0)
    with pytest.raises(BackendError, match=r"5 failed requests in a row.*connection failed"):
        describe_stimuli(stim, d, store=ArtifactStore(tmp_path / "s"), progress=False, max_consecutive_failures=5)


def test_api_key_only_from_env_and_never_written(
    server: LoopbackChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMVEM_TEST_KEY", "sk-very-secret-42")
    stim = StimulusSet.from_folder(_folder(tmp_path, 3))
    store = ArtifactStore(tmp_path / "s")
    d = _describer(server, api_key_env="LLMVEM_TEST_KEY")
    desc = describe_stimuli(stim, d, store=store, progress=False)
    assert {r["auth"] for r in server.received} == {"Bearer sk-very-secret-42"}
    assert "sk-very-secret" not in repr(d) + str(d.identity()) + str(desc.to_frame().to_dict())
    for f in store.root.rglob("*"):
        if f.is_file():
            assert b"sk-very-secret" not in f.read_bytes(), f


def _bad_inputs(d: Path) -> None:
    d.mkdir()
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(d / "ok.jpg", quality=90)
    full = (d / "ok.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (d / "not_an_image.png").write_bytes(b"<html>404 not found</html>")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray((rng.integers(0, 65535, (30, 30))).astype(np.uint16)).save(d / "grey16.png")
    Image.fromarray(rng.integers(0, 255, (30, 30, 4), dtype=np.uint8), "RGBA").save(d / "alpha.png")
    Image.fromarray(rng.integers(0, 255, (200, 3000, 3), dtype=np.uint8)).save(d / "huge.png")


def test_bad_inputs_converted_downscaled_or_failed_with_reason(server: LoopbackChatServer, tmp_path: Path) -> None:
    _bad_inputs(tmp_path / "bad")
    paths = sorted((tmp_path / "bad").iterdir())
    stim = StimulusSet.from_paths(paths, verify=False)
    desc = describe_stimuli(
        stim,
        _describer(server, max_side=512),
        store=ArtifactStore(tmp_path / "s"),
        progress=False,
        raise_on_failure=False,
    )
    fails = {f.image: f for f in desc.failures}
    assert set(fails) == {"truncated", "not_an_image"}
    assert fails["truncated"].kind == "input" and "truncated" in fails["truncated"].reason
    assert "not a recognised image" in fails["not_an_image"].reason
    got = {r.image: r for r in desc.records}
    assert got["ok"].image_notes == [] and "40x60" not in got["ok"].text and "60x40 RGB" in got["ok"].text
    assert got["cmyk"].image_notes == ["converted CMYK to RGB"] and " RGB image" in got["cmyk"].text
    assert got["grey16"].image_notes == ["converted I;16 to RGB"]
    assert "alpha composited onto white" in got["alpha"].image_notes[0]
    assert got["huge"].image_notes == ["downscaled 3000x200 to 512x34 (max side 512)"]
    assert "512x34 RGB" in got["huge"].text  # the server saw the downscaled image
    assert server.requests == 5  # input failures are not sent


def test_cli_dry_run_failures_exit_code_and_export(server: LoopbackChatServer, tmp_path: Path) -> None:
    imgs = _folder(tmp_path, 5)
    cache = tmp_path / "cache"
    base = [
        "describe",
        str(imgs),
        "--backend",
        "openai",
        "--base-url",
        server.url,
        "--model",
        "vlm",
        "--cache-dir",
        str(cache),
        "--no-progress",
        "--max-retries",
        "1",
        "--set",
        "describe.retry_base_s=0",
    ]
    runner = CliRunner()
    res = runner.invoke(app, [*base, "--dry-run"])
    assert res.exit_code == 0 and "5 of 5 requests remain (0 finished)" in res.output and server.requests == 0
    server.image_faults[hash_bytes((imgs / "img_03.png").read_bytes())] = "503"
    out = tmp_path / "desc.parquet"
    res = runner.invoke(app, [*base, "-o", str(out), "--concurrency", "3"])
    assert res.exit_code == 1, res.output
    assert "1 request(s) failed" in res.output and "img_03" in res.output and "HTTP 503" in res.output
    assert sorted(r["image"] for r in read_records(out)) == ["img_00", "img_01", "img_02", "img_04"]
    res = runner.invoke(app, [*base, "--dry-run"])
    assert "1 of 5 requests remain (4 finished, 1 failed before and will be retried)" in res.output
    server.image_faults.clear()
    res = runner.invoke(app, [*base, "-o", str(tmp_path / "desc.jsonl")])
    assert res.exit_code == 0, res.output
    for fmt in ("jsonl", "parquet"):
        exp = tmp_path / f"export.{fmt}"
        res = runner.invoke(app, ["describe", "export", str(exp), "--cache-dir", str(cache), "--model", "vlm"])
        assert res.exit_code == 0 and "5 descriptions" in res.output, res.output
        rows = read_records(exp)
        assert list(rows[0])[:4] == ["image", "model", "prompt", "text"]
        assert sorted(r["image"] for r in rows) == [f"img_{i:02d}" for i in range(5)]
        assert rows[0]["params"] == {"temperature": 0.0, "max_tokens": 512, "seed": 0, "top_p": None}
    res = runner.invoke(
        app, ["describe", "export", str(tmp_path / "none.jsonl"), "--cache-dir", str(cache), "--model", "other"]
    )
    assert res.exit_code == 0 and "0 descriptions" in res.output


def test_cli_class_conditioned_prompt_needs_and_uses_labels(server: LoopbackChatServer, tmp_path: Path) -> None:
    imgs = _folder(tmp_path, 3)
    labels = tmp_path / "labels.csv"
    labels.write_text("image,label\nimg_00.png,dog\nimg_01.png,cat\nimg_02.png,red bus\n")
    base = ["describe", str(imgs), "--backend", "openai", "--base-url", server.url, "--model", "vlm",
            "--prompt", "class_conditioned", "--cache-dir", str(tmp_path / "c"), "--no-progress",
            "-o", str(tmp_path / "d.jsonl")]  # fmt: skip
    res = CliRunner().invoke(app, base)
    assert res.exit_code == 2 and "label" in res.output and server.requests == 0
    res = CliRunner().invoke(app, [*base, "--labels", str(labels)])
    assert res.exit_code == 0, res.output
    assert sorted(r["prompt"] for r in server.received) == sorted(
        resolve_prompt("class_conditioned", lab) for lab in ("dog", "cat", "red bus")
    )
    rows = read_records(tmp_path / "d.jsonl")
    assert {r["prompt_name"] for r in rows} == {"class_conditioned"} and "a cat" in rows[1]["prompt"]
