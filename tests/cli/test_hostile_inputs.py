"""A table of hostile inputs run through the CLI: each gives one clear message (no traceback), the documented exit
code, and leaves the artifact store exactly as it was (a describe failure is a recorded failure, nothing else).

Each case builds its inputs in a fresh folder, runs one command with ``--cache-dir`` pointing at a store that already
holds an entry, and compares the store's files and bytes before and after.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.brain import BrainData
from llmvem.data.files import save_brain
from llmvem.describe.loopback import LoopbackChatServer
from llmvem.hashing import hash_file
from llmvem.store import ArtifactStore

runner = CliRunner()
LINUX = sys.platform.startswith("linux")


@dataclass(frozen=True)
class Case:
    """One hostile input: ``build(dir, server_url)`` writes the inputs and returns the CLI arguments."""

    name: str
    build: Callable[[Path, str], list[str]]
    message: str
    exit_code: int = 2
    store_changes: bool = False  # describe records a failure in its log: the only allowed change
    faults: tuple[str, ...] = ()  # what the loopback server does to the next requests
    memory: int | None = None  # bytes the machine seems to have left (for a fit's memory check)
    failed_run: bool = False  # the failure comes after the run directory exists: it must be marked failed


# ----------------------------------------------------------------------------------------- input builders
def _png(path: Path, array: np.ndarray | None = None, mode: str | None = None) -> Path:
    a = np.random.default_rng(len(path.name)).integers(0, 255, (16, 12, 3), dtype=np.uint8) if array is None else array
    Image.fromarray(a, mode).save(path)
    return path


def _images(d: Path, *extra: Callable[[Path], object]) -> Path:
    """A folder of two good images plus whatever ``extra`` writes into it."""
    imgs = d / "imgs"
    imgs.mkdir()
    _png(imgs / "good1.png")
    _png(imgs / "good2.png")
    for make in extra:
        make(imgs)
    return imgs


def _truncated(imgs: Path) -> None:
    raw = _png(imgs / "cut.png").read_bytes()
    (imgs / "cut.png").write_bytes(raw[: len(raw) // 2])


def _html(imgs: Path) -> None:
    (imgs / "page.jpg").write_bytes(b"<html>404 not found</html>")


def _eio(imgs: Path) -> None:
    (imgs / "io.png").symlink_to("/proc/self/mem")  # a regular file whose read fails with EIO


def _newline_name(imgs: Path) -> None:
    _png(imgs / "two\nlines.png")


def _features(d: Path, ids: list[str], name: str = "f") -> Path:
    np.save(d / f"{name}.npy", np.random.default_rng(0).standard_normal((len(ids), 5)).astype(np.float32))
    (d / f"{name}.ids.txt").write_text("\n".join(ids) + "\n")
    return d / f"{name}.npy"


IDS = [f"nsd-{k:05d}" for k in range(1, 31)]


def _brain(d: Path, ids: list[str] = IDS, splits: dict[str, list[str]] | None = None) -> Path:
    y = np.random.default_rng(1).standard_normal((len(ids), 8))
    path = save_brain(BrainData(y, ids, pd.DataFrame({"roi": ["V1"] * 8}), name="subj01"), d / "b.npz")
    if splits is not None:  # written as the file's own, past BrainData's check (as a user's file would be)
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["splits"] = np.asarray(json.dumps(splits))
        np.savez(path, **arrays)
    return path


def _rdm_dup(d: Path) -> Path:
    a = np.random.default_rng(2).random((4, 4))
    r = a + a.T
    np.fill_diagonal(r, 0)
    np.save(d / "r.npy", r)
    (d / "r.ids.txt").write_text("a\nb\nc\na\n")
    return d / "r.npy"


def _out(d: Path) -> list[str]:
    return ["--output-dir", str(d / "runs"), "--no-progress"]


def _describe(d: Path, url: str, *more: str) -> list[str]:
    return ["describe", str(_images(d)), "--backend", "openai", "--base-url", url, "--model", "m", "--no-progress",
            "--max-retries", "0", "-o", str(d / "desc.jsonl"), *more]  # fmt: skip


def _empty_file(imgs: Path) -> None:
    (imgs / "zero.png").write_bytes(b"")


def _duplicate_stem(imgs: Path) -> None:
    _png(imgs / "good1.jpg")


def _class_folders(d: Path) -> Path:
    root = d / "classes"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        _png(root / c / "a.png")
    return root


def _failed_run(d: Path) -> Path:
    run = d / "old-run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")
    status = {"status": "failed", "started": "2026-12-01T10:00:00+00:00", "error": {"type": "DataError",
              "message": "boom " + "x" * 5000}}  # fmt: skip
    (run / "run.json").write_text(json.dumps(status))
    return run


def _bad_utf8_jsonl(d: Path) -> Path:
    (d / "t.jsonl").write_bytes(b'{"image": "good1", "text": "ok"}\n{"image": "good2", "text": "\xff"}\n')
    return d / "t.jsonl"


def _billion_laughs() -> str:
    levels = ["&a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"&a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]" for k in range(1, 14)]
    return "describe.model=[" + ", ".join(levels) + "]"


CASES = [
    # bad images of every kind: features refuses the set up front, naming each file and its reason
    Case("truncated image", lambda d, u: ["features", str(_images(d, _truncated)), "-o", str(d / "out.npy")],
         "cut.png: corrupt or truncated image"),
    Case("not an image", lambda d, u: ["features", str(_images(d, _html)), "-o", str(d / "out.npy")],
         "page.jpg: not a recognised image format"),
    Case("I/O error", lambda d, u: ["features", str(_images(d, _eio)), "-o", str(d / "out.npy")],
         "io.png: cannot read the file (Input/output error)"),
    Case("decompression bomb", lambda d, u: ["features", str(_images(d)), "-o", str(d / "out.npy")],
         "too large to decode safely"),
    Case("empty image file", lambda d, u: ["features", str(_images(d, _empty_file)), "-o", str(d / "out.npy")],
         "zero.png: empty file (0 bytes)"),
    Case("two images with one id", lambda d, u: ["features", str(_images(d, _duplicate_stem)), "-o",
                                                 str(d / "out.npy")],
         "duplicate stimulus ids ['good1']"),
    Case("class-folder layout", lambda d, u: ["features", str(_class_folders(d)), "-o", str(d / "out.npy")],
         "it has 2 subfolder(s) (cat, dog): images are read directly in the folder, so run it on each subfolder"),
    Case("line break in a file name", lambda d, u: ["features", str(_images(d, _newline_name)), "-o",
                                                    str(d / "out.npy")],
         "cannot be written one per line"),
    # broken files
    Case("brain .npz that is not a zip", lambda d, u: ["evaluate", "encoding", "-f", str(_features(d, IDS)), "-b",
                                                        str(_write(d / "b.npz", b"PK\x03\x04" + b"\0" * 30)), *_out(d)],
         "not a valid .npz"),
    Case("brain .npz that is text", lambda d, u: ["evaluate", "encoding", "-f", str(_features(d, IDS)), "-b",
                                                   str(_write(d / "b.npz", b"voxel,value\n1,2\n")), *_out(d)],
         "not a NumPy .npy/.npz file"),
    Case("overlapping own splits", lambda d, u: ["evaluate", "encoding", "-f", str(_features(d, IDS)), "-b",
                                                  str(_brain(d, splits={"train": IDS[:25], "test": IDS[15:]})),
                                                  *_out(d)],
         "are in both the 'train' and the 'test' split"),
    Case("empty test split", lambda d, u: ["evaluate", "decode", "-e", str(_features(d, IDS)), "-b",
                                            str(_brain(d, splits={"train": IDS, "test": []})), "--captions",
                                            str(_write(d / "c.txt", b"a cat\n")), "--encoder", "glove", *_out(d)],
         "30 train and 0 test stimuli"),
    Case("features that are strings", lambda d, u: ["evaluate", "encoding", "-f",
                                                    str(_write_npy(d, np.array([["a"] * 5] * 30))), "-b",
                                                    str(_brain(d)), *_out(d)],
         "holds <U1 values, not real numbers"),
    Case("truncated features file", lambda d, u: ["evaluate", "encoding", "-f", str(_truncate(_features(d, IDS))),
                                                  "-b", str(_brain(d)), *_out(d)],
         "cannot read it (Failed to read all data for array"),
    Case("report of a failed run", lambda d, u: ["report", str(_failed_run(d))],
         "failed (DataError: boom xxxx"),
    Case("fit larger than memory", lambda d, u: ["evaluate", "encoding", "-f", str(_features(d, IDS)), "-b",
                                                 str(_brain(d)), *_out(d)],
         "RidgeEncoder.fit: needs ≈ ", memory=10_000, failed_run=True),
    # off-by-one and duplicated ids
    Case("off-by-one NSD ids", lambda d, u: ["evaluate", "encoding", "-f",
                                             str(_features(d, [f"nsd-{k:05d}" for k in range(2, 32)])), "-b",
                                             str(_brain(d)), *_out(d)],
         "shift"),
    Case("duplicate ids in an RDM file", lambda d, u: ["evaluate", "rsa", "-f", str(_features(d, list("abc"))),
                                                       "--rdms", str(_rdm_dup(d)), *_out(d)],
         "appear more than once"),
    Case("ids file one line short", lambda d, u: ["evaluate", "encoding", "-f", str(_ids(_features(d, IDS),
                                                                                          IDS[:29])),
                                                  "-b", str(_brain(d)), *_out(d)],
         "f.ids.txt lists 29 ids for 30 rows"),
    Case("blank line in an ids file", lambda d, u: ["evaluate", "encoding", "-f",
                                                    str(_ids(_features(d, IDS), [*IDS[:9], "", *IDS[10:]])), "-b",
                                                    str(_brain(d)), *_out(d)],
         "lists 29 ids for 30 rows; line(s) [10] are blank"),
    Case("one image with two labels", lambda d, u: ["describe", str(_images(d)), "--backend", "import", "--source",
                                                    str(_write(d / "t.jsonl", b'{"image": "good1", "text": "a"}\n')),
                                                    "--labels", str(_write(d / "l.csv",
                                                                           b"image,label\ngood1,cat\ngood1,dog\n"
                                                                           b"good2,cat\n")),
                                                    "-o", str(d / "desc.jsonl")],
         "1 image(s) have more than one label (good1: ['cat', 'dog'])"),
    Case("duplicate ids in features", lambda d, u: ["evaluate", "encoding", "-f",
                                                    str(_features(d, IDS[:29] + IDS[:1])), "-b", str(_brain(d)),
                                                    *_out(d)],
         "appear more than once"),
    # hostile text
    Case("embed input not UTF-8", lambda d, u: ["embed", str(_bad_utf8_jsonl(d)), "--encoder", "glove", "-o",
                                                str(d / "e.npy")],
         "not UTF-8 text (byte 0xff on line 2)"),
    Case("import source not UTF-8", lambda d, u: ["describe", str(_images(d)), "--backend", "import", "--source",
                                                  str(_bad_utf8_jsonl(d)), "-o", str(d / "desc.jsonl")],
         "not UTF-8 text (byte 0xff on line 2)"),
    Case("prompt with bytes that are not UTF-8", lambda d, u: _describe(d, u, "--prompt", "what is \udcff?"),
         "describe.prompt[0]: not valid UTF-8 text (byte 0xff at character 8)"),
    Case("huge YAML value", lambda d, u: ["describe", str(_images(d)), "--backend", "import", "--set",
                                          _billion_laughs()],
         "describe.model: Input should be a valid string"),
    Case("huge encoder name", lambda d, u: ["embed", str(_write(d / "t.jsonl", b'{"image": "a", "text": "b"}\n')),
                                            "--encoder", "Z" * 20_000,
                                            "-o", str(d / "e.npy")],
         "unknown text encoder 'ZZZZ"),
    Case("file name too long", lambda d, u: ["evaluate", "encoding", "-f", "Z" * 20_000, "-b", str(_brain(d)),
                                             *_out(d)],
         "error: File name too long: 'ZZZZ"),
    Case("huge ROI name", lambda d, u: ["evaluate", "encoding", "-f", str(_features(d, IDS)), "-b", str(_brain(d)),
                                        "--roi", "Z" * 20_000, *_out(d)],
         "none of the ROIs ['ZZZZ"),
    Case("infinite timeout", lambda d, u: _describe(d, u, "--timeout", "inf"), "finite number"),
    # faulty servers: recorded failures (exit 1), the store holds exactly those records
    Case("credentials in a URL without scheme", lambda d, u: _describe(d, "alice:pw-secret-9@example.org/v1"),
         "must start with http:// or https://, got '***@example.org/v1'"),
    # faulty servers: recorded failures (exit 1), the store holds exactly those records
    Case("server refuses the key", lambda d, u: _describe(d, u), "HTTP 401", exit_code=2, store_changes=True,
         faults=("401",) * 4),
    Case("server trickles its answer", lambda d, u: _describe(d, u, "--timeout", "0.6"), "timed out after 0.6 s",
         exit_code=1, store_changes=True, faults=("trickle",) * 2),
    Case("server sends cut JSON", lambda d, u: _describe(d, u), "malformed response (not JSON", exit_code=1,
         store_changes=True, faults=("malformed",) * 2),
    Case("server sends an empty answer", lambda d, u: _describe(d, u), "empty response", exit_code=1,
         store_changes=True, faults=("empty",) * 2),
    Case("server sends garbage", lambda d, u: _describe(d, u), "garbage response", exit_code=1, store_changes=True,
         faults=("garbage",) * 2),
    Case("server hangs up", lambda d, u: _describe(d, u), "Server disconnected without sending a response",
         exit_code=1, store_changes=True, faults=("close",) * 2),
    Case("server errors", lambda d, u: _describe(d, u), "HTTP 500", exit_code=1, store_changes=True,
         faults=("500",) * 2),
]  # fmt: skip


def _write_npy(d: Path, values: np.ndarray) -> Path:
    np.save(d / "f.npy", values)
    (d / "f.ids.txt").write_text("\n".join(IDS) + "\n")
    return d / "f.npy"


def _truncate(path: Path) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _ids(path: Path, ids: list[str]) -> Path:
    path.with_suffix(".ids.txt").write_text("\n".join(ids) + "\n")
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hash_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def server() -> Iterator[LoopbackChatServer]:
    with LoopbackChatServer(lifetime_s=60, trickle_s=0.05) as srv:
        yield srv


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, server: LoopbackChatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    if not LINUX and case.name == "I/O error":
        pytest.skip("/proc/self/mem gives a real I/O error on Linux only")
    if case.name == "decompression bomb":
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # 16 × 12 = 192 px > 2 × 50
    server.faults.extend(case.faults)
    if case.memory is not None:
        from llmvem.brain import memory

        monkeypatch.setattr(memory, "available_memory", lambda: case.memory)
    store = ArtifactStore(tmp_path / "cache")
    store.put_arrays("image_features", {"seeded": 1}, {"v": np.arange(4.0)})
    before = _snapshot(store.root)
    args = case.build(tmp_path, server.url)
    if args[0] not in ("evaluate", "report"):  # the commands that use the store
        args += ["--cache-dir", str(store.root)]
    res = runner.invoke(app, args)
    out = " ".join(res.output.split())
    assert res.exit_code == case.exit_code, res.output
    assert case.message in out, res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, AssertionError | TypeError | KeyError)
    after = _snapshot(store.root)
    if not case.store_changes:
        assert after == before
    else:  # the old entry is untouched; what was added is the describe log of failed requests
        assert {k: v for k, v in after.items() if k in before} == before
        added = [k for k in after if k not in before]
        assert added and all(k.startswith("descriptions/") for k in added)
        records = [json.loads(line) for k in added for line in (store.root / k).read_text().splitlines()]
        assert records and any(not r["ok"] for r in records)
    assert "pw-secret" not in res.output and len(res.output) < 6000  # huge values are shown cut
    runs = list((tmp_path / "runs").iterdir()) if (tmp_path / "runs").exists() else []
    if case.failed_run:  # the run directory keeps what it wrote and says why it failed
        assert len(runs) == 1 and json.loads((runs[0] / "run.json").read_text())["status"] == "failed"
    else:
        assert not runs
    assert not (tmp_path / "out.npy").exists() and not (tmp_path / "e.npy").exists()
