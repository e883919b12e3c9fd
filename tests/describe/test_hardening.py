"""The openai backend under hostile conditions, against the real loopback server: a trickling answer hits the
whole-request deadline, credentials in the URL never surface, CLI strings reach the server literally, and an
unreadable image is a recorded failure rather than a traceback."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.stimuli import StimulusSet
from llmvem.describe import describe_stimuli
from llmvem.describe.loopback import LoopbackChatServer
from llmvem.describe.openai_compat import OpenAICompatibleDescriber
from llmvem.errors import ConfigError
from llmvem.store import ArtifactStore

runner = CliRunner()


@pytest.fixture
def server() -> Iterator[LoopbackChatServer]:
    with LoopbackChatServer(lifetime_s=60, trickle_s=0.05) as srv:
        yield srv


def _folder(tmp_path: Path, n: int) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(n)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(d / f"img_{i}.png")
    return d


def test_a_trickling_answer_hits_the_whole_request_deadline(server: LoopbackChatServer, tmp_path: Path) -> None:
    # ~450 bytes at one per 50 ms: every read succeeds within any per-read timeout, the whole takes ~20 s
    server.faults.extend(["trickle"])
    stim = StimulusSet.from_folder(_folder(tmp_path, 2))
    d = OpenAICompatibleDescriber("vlm", base_url=server.url, timeout_s=0.8, max_retries=0)
    t0 = time.monotonic()
    desc = describe_stimuli(stim, d, store=ArtifactStore(tmp_path / "s"), progress=False, raise_on_failure=False)
    elapsed = time.monotonic() - t0
    assert elapsed < 4.0, elapsed  # one attempt cut at 0.8 s (before: ~20 s, and it "succeeded")
    assert len(desc.failures) == 1 and "timed out after 0.8 s" in desc.failures[0].reason
    assert len(desc.records) == 1  # the next request, on a fresh deadline, is answered
    assert server.received[0]["fault"] == "trickle"


@pytest.mark.parametrize("bad", [math.inf, math.nan, 0.0, -1.0])
def test_non_finite_or_non_positive_timeouts_are_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="finite number > 0"):
        OpenAICompatibleDescriber("vlm", timeout_s=bad)


def test_cli_refuses_an_infinite_timeout(tmp_path: Path) -> None:
    res = runner.invoke(app, ["describe", str(_folder(tmp_path, 1)), "--backend", "openai", "--model", "m",
                              "--timeout", "inf", "--cache-dir", str(tmp_path / "c")])  # fmt: skip
    assert res.exit_code == 2 and "finite number" in res.output and "Traceback" not in res.output


def test_url_credentials_are_stripped_from_messages_and_records(server: LoopbackChatServer, tmp_path: Path) -> None:
    url = server.url.replace("http://", "http://alice:pw-very-secret-7@")
    d = OpenAICompatibleDescriber("vlm", base_url=url, timeout_s=5, max_retries=0)
    assert d.base_url == server.url and "pw-very-secret" not in repr(d) + str(d.identity()) + d.url
    server.faults.extend(["404"])
    stim = StimulusSet.from_folder(_folder(tmp_path, 2))
    store = ArtifactStore(tmp_path / "s")
    with pytest.raises(Exception) as info:  # 404 stops the run: its message names the URL, not the password
        describe_stimuli(stim, d, store=store, progress=False)
    assert "pw-very-secret" not in str(info.value) and server.url in str(info.value)
    desc = describe_stimuli(stim, d, store=store, progress=False)
    assert len(desc.records) == 2
    assert {r["auth"] for r in server.received[1:]} == {"Basic YWxpY2U6cHctdmVyeS1zZWNyZXQtNw=="}  # still sent
    for f in store.root.rglob("*"):
        if f.is_file():
            assert b"pw-very-secret" not in f.read_bytes(), f
    from llmvem.config import dump_config, load_config

    assert "pw-very-secret" not in dump_config(load_config(literal={"describe.base_url": url}))


def test_cli_strings_reach_the_server_literally(server: LoopbackChatServer, tmp_path: Path) -> None:
    cache = tmp_path / "cc #2"
    prompt = "Count the objects: #1 first, then #2"
    res = runner.invoke(app, ["describe", str(_folder(tmp_path, 1)), "--backend", "openai", "--base-url", server.url,
                              "--model", "ok #2", "--prompt", prompt, "--cache-dir", str(cache), "--no-progress",
                              "-o", str(tmp_path / "d.jsonl")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert server.received[0]["model"] == "ok #2" and server.received[0]["prompt"] == prompt
    assert (cache / "descriptions").is_dir() and not (tmp_path / "cc").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/mem gives a real I/O error on Linux")
def test_an_unreadable_image_is_a_recorded_failure(server: LoopbackChatServer, tmp_path: Path) -> None:
    imgs = _folder(tmp_path, 2)
    (imgs / "broken.png").symlink_to("/proc/self/mem")  # a regular file whose read fails with EIO
    args = ["--base-url", server.url, "--model", "m", "--cache-dir", str(tmp_path / "c"), "--no-progress"]
    res = runner.invoke(app, ["describe", str(imgs), "--backend", "openai", *args, "-o", str(tmp_path / "d.jsonl")])
    assert res.exit_code == 1, res.output  # failures listed, the rest described
    out = " ".join(res.output.split())
    assert "broken.png: cannot read the file (Input/output error)" in out and "Traceback" not in out
    assert server.requests == 2  # the unreadable file was never sent


def test_answers_longer_than_max_tokens_are_flagged(server: LoopbackChatServer, tmp_path: Path) -> None:
    stim = StimulusSet.from_folder(_folder(tmp_path, 1))
    d = OpenAICompatibleDescriber("vlm", base_url=server.url, timeout_s=5)
    store = ArtifactStore(tmp_path / "s")
    ok = describe_stimuli(stim, d, params={"max_tokens": 64}, store=store, progress=False)
    assert ok.records[0].warnings == []
    # the loopback server ignores max_tokens (as some servers do): an 11-word answer to max_tokens=4
    long = describe_stimuli(stim, d, params={"max_tokens": 4}, store=store, progress=False)
    n = long.records[0].completion_tokens
    assert n is not None and n > 4
    assert long.records[0].warnings == [f"answer longer than max_tokens=4 allows ({n} completion tokens reported)"]
    again = describe_stimuli(stim, d, params={"max_tokens": 4}, store=store, progress=False)  # read back from the log
    assert again.records[0].warnings == long.records[0].warnings and server.requests == 2


def test_describe_folder_says_what_it_leaves_out(tmp_path: Path) -> None:
    import os

    from llmvem.describe.run import stimuli_from_folder
    from llmvem.errors import DataError

    classes = tmp_path / "classes"
    for c in ("cat", "dog"):
        (classes / c).mkdir(parents=True)
        _folder(classes / c, 1).rename(classes / c / "x")
    with pytest.raises(DataError, match=r"it has 2 subfolder\(s\) \(cat, dog\).*run it on each subfolder"):
        stimuli_from_folder(classes)
    imgs = _folder(tmp_path, 2)
    (imgs / "sub").mkdir()
    (imgs / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (imgs / "loop.png").symlink_to(imgs / "loop.png")
    os.mkfifo(imgs / "pipe.png")  # reading it would block: never read
    left_out = (
        r"2 broken or looping link\(s\) \(gone.png, loop.png\); 1 non-regular file\(s\) \(pipe.png\); 1 subfolder"
    )
    with pytest.warns(UserWarning, match=left_out):
        stim = stimuli_from_folder(imgs)
    assert stim.ids == ["img_0", "img_1"]


def test_masking_hides_the_password_without_garbling_messages(tmp_path: Path) -> None:
    """Only the password (or a user name given alone: a token) is masked; masking the user name "u" turned
    "Connection refused" into "Connection ref***sed"."""
    d = OpenAICompatibleDescriber("vlm", base_url="http://u:pw-secret-3@127.0.0.1:1/v1", timeout_s=2, max_retries=0)
    stim = StimulusSet.from_folder(_folder(tmp_path, 1))
    desc = describe_stimuli(stim, d, store=ArtifactStore(tmp_path / "s"), progress=False, raise_on_failure=False)
    reason = desc.failures[0].reason
    assert "Connection refused" in reason and "pw-secret" not in reason
    token = OpenAICompatibleDescriber("vlm", base_url="http://tok-123456@127.0.0.1:1/v1")
    assert token._mask("echo tok-123456") == "echo ***"
    with pytest.raises(ConfigError) as err:  # no scheme: the URL was not split, its credentials are cut anyway
        OpenAICompatibleDescriber("vlm", base_url="alice:pw-secret-3@example.org/v1")
    assert "pw-secret" not in str(err.value) and "'***@example.org/v1'" in str(err.value)
