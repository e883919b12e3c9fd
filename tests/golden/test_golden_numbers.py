"""Golden numbers: every current study run on tiny data, every metric of its ``metrics.json`` pinned.

Issue 14 moves the studies into one runner and one trainer; these tests say whether the numbers stayed. Each test
runs one study on tiny data (the demo set, the real objects92 / NSD files in ``data_dir``, small generated files),
flattens its ``metrics.json`` (``"a.b[0].c": value``) and compares every leaf with ``expected.json``: numbers with a
relative tolerance ``RTOL`` (plus ``ATOL`` near zero; a study may loosen named keys, its reason beside the
tolerance), strings / booleans / ``None`` exactly. Wall-clock timings are left out; machine paths in strings are
replaced by ``<tmp>`` / ``<data>``. The numbers are those of CPU float32/float64 runs: another BLAS or a GPU may
differ beyond ``RTOL``.

Re-pin (after a change meant to move the numbers, its reason in the decision record)::

    LLMVEM_REPIN=1 python -m pytest tests/golden -m ''     # every study, the slow ones too

Without ``LLMVEM_REPIN=1`` a study whose numbers differ, or that has no pinned numbers, fails; it never re-pins.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from llmvem.config import ExperimentConfig, load_config

EXPECTED = Path(__file__).with_name("expected.json")
#: deterministic CPU numbers: the same to float32 rounding accumulated over a study
RTOL, ATOL = 1e-4, 1e-6
#: keys that are not results: wall-clock seconds
IGNORED = re.compile(r"(^|\.)(timings_s|total_s)(\.|\[|$)")
_LOCK = threading.Lock()


def repinning() -> bool:
    """Whether this run rewrites ``expected.json`` (``LLMVEM_REPIN=1``) instead of checking it."""
    return os.environ.get("LLMVEM_REPIN") == "1"


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts / lists as ``{"a.b[0].c": leaf}`` (dict keys in sorted order)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k in sorted(obj, key=str):
            out.update(flatten(obj[k], f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list | tuple):
        out = {}
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: obj}


def run_metrics(run_path: Path, replace: dict[str, str] | None = None) -> dict[str, Any]:
    """The flattened ``metrics.json`` of a run directory, timings left out, machine paths in strings replaced
    (``{"/tmp/pytest-…/x": "<tmp>"}``) so the numbers do not depend on where the test ran."""
    flat = flatten(json.loads((run_path / "metrics.json").read_text()))
    out = {}
    for k, v in flat.items():
        if IGNORED.search(k):
            continue
        if isinstance(v, str):
            for old, new in (replace or {}).items():
                v = v.replace(old, new)
        out[k] = v
    return out


def _same(expected: Any, got: Any, rtol: float, atol: float) -> bool:
    if isinstance(expected, bool) or isinstance(got, bool) or expected is None or got is None:
        return type(expected) is type(got) and expected == got
    if isinstance(expected, int | float) and isinstance(got, int | float):
        if math.isnan(expected) or math.isnan(got):
            return math.isnan(expected) and math.isnan(got)
        return math.isclose(got, expected, rel_tol=rtol, abs_tol=atol)
    return bool(expected == got)


def differences(
    expected: dict[str, Any], got: dict[str, Any], loose: dict[str, tuple[float, float]] | None = None
) -> list[str]:
    """One line per key that is missing, new, or differs beyond its tolerance.

    Args:
        loose: regex of keys → ``(rtol, atol)`` for metrics that need a looser tolerance than ``RTOL`` / ``ATOL``.
    """
    lines = [f"missing: {k} (pinned {expected[k]!r})" for k in sorted(set(expected) - set(got))]
    lines += [f"new: {k} = {got[k]!r}" for k in sorted(set(got) - set(expected))]
    for k in sorted(set(expected) & set(got)):
        rtol, atol = next(((r, a) for pat, (r, a) in (loose or {}).items() if re.search(pat, k)), (RTOL, ATOL))
        if not _same(expected[k], got[k], rtol, atol):
            lines.append(f"differs: {k}: pinned {expected[k]!r}, got {got[k]!r} (rtol {rtol:g}, atol {atol:g})")
    return lines


def check(study: str, got: dict[str, Any], loose: dict[str, tuple[float, float]] | None = None) -> None:
    """Compare ``got`` with the pinned numbers of ``study`` (``AssertionError`` listing every difference), or, under
    ``LLMVEM_REPIN=1``, pin them."""
    with _LOCK:
        pinned = json.loads(EXPECTED.read_text()) if EXPECTED.is_file() else {}
        if repinning():
            pinned[study] = got
            EXPECTED.write_text(json.dumps(pinned, indent=1, sort_keys=True, allow_nan=True) + "\n")
            return
    if study not in pinned:
        raise AssertionError(f"no pinned numbers for study {study!r} in {EXPECTED}; pin them with LLMVEM_REPIN=1")
    diff = differences(pinned[study], got, loose)
    if diff:
        raise AssertionError(
            f"{study}: {len(diff)} metric(s) moved from the pinned numbers ({EXPECTED}); if the change is intended, "
            "explain it in the decision record and re-pin with LLMVEM_REPIN=1:\n  " + "\n  ".join(diff)
        )


# ------------------------------------------------------------------------------------------------ the helpers
def test_flatten_and_differences_catch_every_kind_of_change() -> None:
    pinned = flatten({"rsa": {"a": {"mean": 0.25, "se": float("nan")}}, "seeds": [0, 1], "task": "x", "n": None})
    assert pinned == {"n": None, "rsa.a.mean": 0.25, "rsa.a.se": pinned["rsa.a.se"], "seeds[0]": 0, "seeds[1]": 1,
                      "task": "x"}  # fmt: skip
    assert differences(pinned, dict(pinned)) == []
    assert differences(pinned, {**pinned, "rsa.a.mean": 0.25 * (1 + RTOL / 2)}) == []
    moved = differences(pinned, {**pinned, "rsa.a.mean": 0.2501, "task": "y", "rsa.a.se": 0.1, "extra": 1})
    assert [line.split(":")[0] for line in moved] == ["new", "differs", "differs", "differs"]
    assert differences({**pinned, "gone": 1}, pinned) == ["missing: gone (pinned 1)"]
    assert differences(pinned, {**pinned, "rsa.a.mean": 0.2501}, loose={r"\.mean$": (1e-2, 0.0)}) == []
    assert differences({"n": 1}, {"n": True}) != []  # a flag is not a count


def test_check_fails_rather_than_repinning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(globals(), "EXPECTED", tmp_path / "expected.json")
    monkeypatch.delenv("LLMVEM_REPIN", raising=False)
    with pytest.raises(AssertionError, match="no pinned numbers"):
        check("s", {"m": 1.0})
    assert not (tmp_path / "expected.json").exists()
    monkeypatch.setenv("LLMVEM_REPIN", "1")
    check("s", {"m": 1.0})
    monkeypatch.delenv("LLMVEM_REPIN")
    check("s", {"m": 1.0 + 1e-9})
    with pytest.raises(AssertionError, match=r"differs: m: pinned 1.0, got 1.1"):
        check("s", {"m": 1.1})
    assert json.loads((tmp_path / "expected.json").read_text()) == {"s": {"m": 1.0}}


# ------------------------------------------------------------------------------------------------ the studies
def _paths(tmp_path: Path, data_dir: Path | None = None) -> dict[str, str]:
    out = {str(tmp_path): "<tmp>"}
    if data_dir is not None:
        out[str(data_dir)] = "<data>"
    return out


def _cfg(
    tmp_path: Path, path: Path | None = None, literal: dict[str, Any] | None = None, **over: Any
) -> ExperimentConfig:
    """A config writing its run under ``tmp_path`` with the session's artifact store (``LLMVEM_CACHE``)."""
    over = {"output_dir": str(tmp_path / "runs"), "progress": False, **over}
    return load_config(path, overrides=over, literal=literal)


# --------------------------------------------------------------------- studies ported to the runner (issue 14)
# Their metrics.json has the runner's one schema (llmvem.results: results.EVALUATION.MODEL.TARGET.METRIC, info.*);
# the pinned numbers keep the hand-written studies' key paths. Each pinned path is looked up at its new path by
# these rules (old path regex → new path template; decision 0013 lists them), so every pinned number is compared.
_DEMO_MODELS = {"efficientnet_lite0 features": "features", "baseline twin (λ=0)": "baseline",
                "aligned twin (λ=1)": "aligned", "minilm caption embedding": "captions"}  # fmt: skip
_OBJECTS92_MODELS = {"efficientnet_lite0 image features": "features", "minilm description embedding": "descriptions",
                     "language-aligned image features (image→text map)": "image_to_text"}  # fmt: skip
#: the folder studies' counts, retrieval and seeds (both tasks)
_FOLDER_COMMON: list[tuple[str, Any]] = [
    (r"^data\.masked_voxels$", lambda m: "info.targets.voxels.n_masked"),
    (r"^data\.(\w+)$", lambda m: f"info.stimuli.images.{m[1]}"),
    (r"^(n_images|n_train)$", lambda m: f"info.stimuli.images.{m[1]}"),
    (r"^n_val$", lambda m: "info.stimuli.images.n_test"),
    (r"^(lambda_align|task)$", lambda m: f"info.models.aligned.{m[1]}"),
    (
        r"^retrieval\.aligned\.top1\.seed(\d+)$",
        lambda m: f"results.retrieval.aligned.descriptions.seeds.{m[1]}.top1",
    ),
    (r"^retrieval\.aligned\.top1\.mean$", lambda m: "results.retrieval.aligned.descriptions.top1"),
    (r"^retrieval\.chance$", lambda m: "results.retrieval.aligned.descriptions.chance"),
    (r"^(seeds\[\d+\])$", lambda m: f"study.{m[1]}"),
]
#: evaluate decode: the decoded representation is the model ``embeddings``, its rows' target ``all`` (every voxel)
_DECODE: list[tuple[str, Any]] = [
    (r"^decode\.([^.]+)\.splits$", lambda m: f"info.targets.brain.subjects.{m[1]}.splits"),
    (r"^decode\.([^.]+)\.(\w+)$", lambda m: f"results.decode.embeddings.all.subjects.{m[1]}.{m[2]}"),
    (r"^decode_mean\.(\w+)$", lambda m: f"results.decode.embeddings.all.{m[1]}"),
    (r"^caption_metrics\.([^.]+)\.(\w+)\.(\w+)$", lambda m: f"results.decode.embeddings.{m[2]}.subjects.{m[1]}.{m[3]}"),
    (r"^embeddings$", lambda m: "info.models.embeddings.path"),
]
OLD_TO_NEW: dict[str, list[tuple[str, Any]]] = {
    "demo": [
        (r"^encoding\.(.+) \| (\w+)\.(\w+)$", lambda m: f"results.encoding.{_DEMO_MODELS[m[1]]}.{m[2]}.{m[3]}"),
        (
            r"^aligned_minus_baseline_r_(\w+)$",
            lambda m: f"results.aligned_vs_baseline.aligned - baseline.{m[1]}.diff_mean",
        ),
        (r"^n_(train|test)$", lambda m: f"info.evaluations.encoding.n_{m[1]}"),
        (r"^train\.(baseline|aligned)_final\.(\w+)$", lambda m: f"info.models.{m[1]}.seeds.0.final.{m[2]}"),
    ],
    "objects92": [
        (r"^rsa\.(.+) \| (\w+)\.(\w+)$", lambda m: f"results.rsa.{_OBJECTS92_MODELS[m[1]]}.{m[2]}.{m[3]}"),
        (r"^image_to_text_map\.(\w+)$", lambda m: f"info.models.image_to_text.{m[1]}"),
    ],
    "evaluate_encoding": [
        (r"^encoding\.(.+)\.([^.]+)\.(\w+)$", lambda m: f"results.encoding.{m[1]}.{m[2]}.{m[3]}"),
        (r"^subjects\.(.+)\.(\w+)$", lambda m: f"info.targets.brain.subjects.{m[1]}.{m[2]}"),
    ],
    "evaluate_rsa": [
        (r"^(rois\.)?rsa\.(.+)\.([^.]+)\.mean$", lambda m: f"{m[1] or ''}results.rsa.{m[2]}.{m[3]}.mean"),
        (r"^(rois\.)?rsa\.(.+)\.([^.]+)\.se$", lambda m: f"{m[1] or ''}results.rsa.{m[2]}.{m[3]}.sem"),
    ],
    "evaluate_decode": _DECODE,
    "evaluate_decode_captions": _DECODE,
    "nsd_objects92": [
        (
            r"^rsa\.(\w+)\.(\w+)\.(mean|se)$",
            lambda m: f"results.rsa.{m[1]}.{m[2].lower()}.{'sem' if m[3] == 'se' else m[3]}",
        ),
        (
            r"^(paired|paired_heads|paired_pretrained\.aligned|paired_pretrained\.aligned_head)\.(\w+)\."
            r"(diff_mean|p_paired_t_subjects|ratio_aligned_over_twin|ci95\[[01]\]|per_seed\[\d+\])$",
            lambda m: _nsd_paired(m[1], m[2].lower(), m[3]),
        ),
        (r"^hed\.(aligned|twin)\.(\w+)$", lambda m: f"results.hed.{m[1]}.hed.{m[2]}"),
        (r"^hed_vocabulary(\[\d+\])$", lambda m: f"info.targets.hed.vocabulary{m[1]}"),
        (r"^n_(train|undescribed)$", lambda m: f"info.stimuli.nsd.n_{m[1]}"),
        (r"^n_val$", lambda m: "info.stimuli.nsd.n_test"),
        (r"^(seeds\[\d+\])$", lambda m: f"study.{m[1]}"),  # the study's seeds (study.yaml, added by the test)
    ],
    "folder_classifier": [
        (
            r"^classification\.(aligned|twin)\.(\w+)\.seed(\d+)$",
            lambda m: f"results.classification.{m[1]}.classes.seeds.{m[3]}.{m[2]}",
        ),
        (r"^classification\.(aligned|twin)\.(\w+)\.mean$", lambda m: f"results.classification.{m[1]}.classes.{m[2]}"),
        (r"^classification\.(classes\[\d+\]|n_classes)$", lambda m: f"info.targets.classes.{m[1]}"),
        (r"^classification\.paired\.(\w+)\.(.+)$", lambda m: _folder_paired(m[1], "classes", m[2])),
        *_FOLDER_COMMON,
    ],
    "folder_voxels": [
        (r"^voxels\.(aligned|twin)\.(\w+)\.seed(\d+)$", lambda m: f"results.voxels.{m[1]}.voxels.seeds.{m[3]}.{m[2]}"),
        (r"^voxels\.(aligned|twin)\.(\w+)\.mean$", lambda m: f"results.voxels.{m[1]}.voxels.{m[2]}"),
        (r"^voxels\.rois\.(aligned|twin)\.(\w+)\.(\w+)$", lambda m: f"results.voxels.{m[1]}.{m[2]}.{m[3]}"),
        (r"^voxels\.(n_voxels|n_masked)$", lambda m: f"info.targets.voxels.{m[1]}"),
        (r"^voxels\.paired\.(\w+)\.(.+)$", lambda m: _folder_paired(m[1], "voxels", m[2])),
        *_FOLDER_COMMON,
    ],
}
#: the hand-written NSD study's paired sections → the study's paired evaluations (decision 0013)
_NSD_PAIRS = {"paired": ("aligned_vs_twin", "aligned - twin"), "paired_heads": ("heads", "aligned_head - twin_head"),
              "paired_pretrained.aligned": ("vs_pretrained", "aligned - pretrained"),
              "paired_pretrained.aligned_head": ("vs_pretrained", "aligned_head - pretrained")}  # fmt: skip


def _nsd_paired(section: str, target: str, metric: str) -> tuple[str, ...]:
    """The new path(s) of an old paired number: ``ci95[0|1]`` → ``ci95_low|high``, ``ratio_aligned_over_twin`` →
    ``ratio``, ``per_seed[k]`` → seed k's ``diff`` (with one seed the table has none: the mean is that seed's)."""
    evaluation, pair = _NSD_PAIRS[section]
    base = f"results.{evaluation}.{pair}.{target}"
    if metric.startswith("per_seed"):
        k = metric[len("per_seed[") : -1]
        return f"{base}.seeds.{k}.diff", f"{base}.diff_mean"
    new = {"ci95[0]": "ci95_low", "ci95[1]": "ci95_high", "ratio_aligned_over_twin": "ratio"}.get(metric, metric)
    return (f"{base}.{new}",)


def _folder_paired(metric: str, target: str, key: str) -> str:
    """The folder study's ``paired.<metric>.<key>`` (aligned − twin over seeds) → its ``paired_<metric>``
    evaluation: ``ci95[0|1]`` → ``ci95_low|high``, ``per_seed[k]`` → seed k's ``diff``."""
    base = f"results.paired_{metric}.aligned - twin.{target}"
    if key.startswith("per_seed["):
        return f"{base}.seeds.{key[len('per_seed[') : -1]}.diff"
    return f"{base}.{ {'ci95[0]': 'ci95_low', 'ci95[1]': 'ci95_high'}.get(key, key) }"


def through_mapping(study: str, new: dict[str, Any]) -> dict[str, Any]:
    """The pinned (old) key paths of ``study`` with the values found at their new paths (:data:`OLD_TO_NEW`); a
    pinned path no rule maps, or whose new path is absent, is left out (so :func:`check` reports it missing)."""
    pinned = json.loads(EXPECTED.read_text())[study]
    out = {}
    for old in pinned:
        for pattern, template in OLD_TO_NEW[study]:
            m = re.match(pattern, old)
            paths = template(m) if m else ()
            found = [p for p in ((paths,) if isinstance(paths, str) else paths) if p in new]
            if found:
                out[old] = new[found[0]]
                break
    return out


def test_through_mapping_finds_every_pinned_path_or_reports_it() -> None:
    new = {"results.encoding.features.early.mean_r": 0.5, "info.evaluations.encoding.n_train": 72}
    got = through_mapping("demo", new)
    assert got == {"encoding.efficientnet_lite0 features | early.mean_r": 0.5, "n_train": 72}
    assert any(line.startswith("missing: n_test") for line in differences(json.loads(EXPECTED.read_text())["demo"],
                                                                          got))  # fmt: skip


#: aligned − baseline is a difference of two pinned means (≈ 0.48 and 0.45): its rounding error is theirs, RTOL of
#: the means (≈ 5e-5 absolute), not RTOL of the small difference (on this project's 2-core machine the pinned value
#: and today's differ by 7e-6, before and after the port alike: a BLAS / thread-count difference, not the runner).
DEMO_LOOSE = {r"^aligned_minus_baseline_r_": (RTOL, 1e-4)}


def test_demo(tmp_path: Path) -> None:
    from llmvem.runner import run_study

    over = {"stimuli.demo.n_images": 96, "stimuli.demo.n_voxels_per_roi": 40, "train.epochs": 15, "progress": False}
    run = run_study("demo", overrides=over, output_dir=tmp_path / "runs")
    check("demo", through_mapping("demo", run_metrics(run.path, _paths(tmp_path))), loose=DEMO_LOOSE)


def test_demo_old_config(tmp_path: Path) -> None:
    """The old entry point and config keys (dataset.n_images ...) run the same study, with the same numbers."""
    from llmvem.pipeline import run_encoding_demo
    from llmvem.runner.legacy import LegacyConfigWarning

    cfg = _cfg(tmp_path, **{"dataset.n_images": 96, "dataset.n_voxels_per_roi": 40, "train.epochs": 15})
    with pytest.warns(LegacyConfigWarning, match="n_voxels_per_roi: 40"):
        run = run_encoding_demo(cfg)
    check("demo", through_mapping("demo", run_metrics(run.path, _paths(tmp_path))), loose=DEMO_LOOSE)


def test_objects92(data_dir: Path, tmp_path: Path) -> None:
    from llmvem.runner import run_study

    run = run_study("objects92", overrides={"stimuli.nsd.n_images": 100, "progress": False}, data_dir=data_dir,
                    output_dir=tmp_path / "runs")  # fmt: skip
    check("objects92", through_mapping("objects92", run_metrics(run.path, _paths(tmp_path, data_dir))))


# ---------------------------------------------------------------------------------------- evaluate on files
# The inputs are built here, frozen (not shared with tests/pipeline, whose fixtures may change with the code).
def _save_matrix(path: Path, values: np.ndarray, ids: list[str]) -> Path:
    np.save(path, values.astype(np.float32))
    path.with_suffix(".ids.txt").write_text("\n".join(ids) + "\n")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """80 stimuli × 12 features ('good': ROI 'good' is linear in them + noise; 'rand': unrelated), a brain source of
    30 + 20 voxels (ROI 'noise' pure noise, voxel 5 NaN), 3 noisy copies of it as RSA subjects, and for decoding
    60 captions, their GloVe embeddings and a brain linear in them."""
    from llmvem.data.brain import BrainData
    from llmvem.data.files import save_brain
    from llmvem.text import embed_texts

    root = tmp_path_factory.mktemp("golden-files")
    rng = np.random.default_rng(0)
    n, p = 80, 12
    x = rng.standard_normal((n, p))
    ids = [f"img{k:03d}" for k in range(n)]
    y = np.concatenate([x @ rng.standard_normal((p, 30)) + rng.standard_normal((n, 30)),
                        rng.standard_normal((n, 20))], axis=1)  # fmt: skip
    y[:, 5] = np.nan
    voxels = pd.DataFrame({"roi": ["good"] * 30 + ["noise"] * 20, "hemi": ["lh"] * 50})
    brain = BrainData(y, ids, voxels, ncsnr=np.full(50, 1.0), n_repeats=np.full(n, 3), name="subjA")
    out = {
        "brain": save_brain(brain, root / "subjA.npz"),
        "good": _save_matrix(root / "good.npy", x, ids),
        "rand": _save_matrix(root / "rand.npy", rng.standard_normal((n, p)), ids),
    }
    for k in range(3):
        noisy = y + 0.3 * rng.standard_normal(y.shape)
        out[f"s{k}"] = save_brain(BrainData(noisy, ids, voxels, name=f"s{k}"), root / f"s{k}.npz")
    colours, things = ["red", "blue", "green", "yellow", "black"], ["dog", "car", "house", "tree"]
    caps = [f"a {c} {t} on the {place}" for c in colours for t in things for place in ("beach", "street", "field")]
    cap_ids = [f"s{k:02d}" for k in range(len(caps))]
    emb = embed_texts(caps, encoder="glove", progress=False)
    yd = emb @ rng.standard_normal((emb.shape[1], 300)) + 0.3 * rng.standard_normal((len(caps), 300))
    out["decode_brain"] = save_brain(BrainData(yd, cap_ids, pd.DataFrame({"roi": ["v"] * 300}), name="subjD"),
                                     root / "subjD.npz")  # fmt: skip
    out["emb"] = _save_matrix(root / "emb.npy", emb, cap_ids)
    out["captions"] = root / "captions.jsonl"
    out["captions"].write_text(
        "".join(json.dumps({"id": i, "text": c}) + "\n" for i, c in zip(cap_ids, caps, strict=True))
    )
    return out


def test_evaluate_encoding(files: dict[str, Path], tmp_path: Path) -> None:
    from llmvem.pipeline.evaluate_files import run_evaluate_encoding

    cfg = _cfg(tmp_path, name="evaluate-encoding", **{"evaluate.encoding.permutations": 200},
               literal={"evaluate.inputs.features": [f"signal={files['good']}", str(files["rand"])],
                        "evaluate.inputs.brain": [str(files["brain"])]})  # fmt: skip
    with pytest.warns(RuntimeWarning, match="1 of 50 targets"):
        run = run_evaluate_encoding(cfg)
    got = run_metrics(run.path, _paths(files["brain"].parent))
    check("evaluate_encoding", through_mapping("evaluate_encoding", got))


def test_evaluate_rsa(files: dict[str, Path], data_dir: Path, tmp_path: Path) -> None:
    """RSA against the real objects92 RDMs (features: noisy category vectors) and against ROI RDMs of 3 sources."""
    from llmvem.data.datasets import load_dataset
    from llmvem.pipeline.evaluate_files import run_evaluate_rsa

    obj = load_dataset("objects92", data_dir)
    noise = 0.3 * np.random.default_rng(1).standard_normal((92, 12))
    cats = obj.categories.loc[obj.stimuli.ids].to_numpy() + noise
    cats = _save_matrix(tmp_path / "cats.npy", cats, obj.stimuli.ids)
    cfg = _cfg(tmp_path, name="evaluate-rsa", data_dir=str(data_dir),
               literal={"evaluate.inputs.features": [str(cats)],
                        "evaluate.inputs.rdms": ["objects92:cichy_it", "hit=objects92:kriegeskorte_hit"]})  # fmt: skip
    got = run_metrics(run_evaluate_rsa(cfg).path, _paths(tmp_path, data_dir))
    cfg = _cfg(tmp_path, name="evaluate-rsa-rois",
               literal={"evaluate.inputs.features": [str(files["good"]), str(files["rand"])],
                        "evaluate.inputs.brain": [str(files[f"s{k}"]) for k in range(3)],
                        "evaluate.inputs.rois": ["good"]})  # fmt: skip
    with pytest.warns(RuntimeWarning, match="left out of the RDMs"):
        run = run_evaluate_rsa(cfg)
    got.update({f"rois.{k}": v for k, v in run_metrics(run.path, _paths(files["good"].parent)).items()})
    check("evaluate_rsa", through_mapping("evaluate_rsa", got))


def test_evaluate_decode(files: dict[str, Path], tmp_path: Path) -> None:
    from llmvem.pipeline.evaluate_files import run_evaluate_decode

    # caption metrics (added after pinning) are tested in tests/pipeline/test_evaluate_files.py
    cfg = _cfg(tmp_path, name="evaluate-decode",
               **{"embed.encoder": "glove", "evaluate.decode.top_k": 3, "evaluate.decode.caption_metrics": []},
               literal={"evaluate.inputs.brain": [str(files["decode_brain"])],
                        "evaluate.inputs.embeddings": str(files["emb"]),
                        "evaluate.inputs.captions": str(files["captions"])})  # fmt: skip
    got = run_metrics(run_evaluate_decode(cfg).path, _paths(files["emb"].parent))
    check("evaluate_decode", through_mapping("evaluate_decode", got))


@pytest.fixture(scope="module")
def decode_captions(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """For decoding with caption metrics: a second, noisier brain source with its own splits (the first 45
    stimuli train, the last 15 test), a corpus without the captions of s50–s59 and with a reworded second caption of
    s00–s39, and references of two captions per stimulus (the caption and its rewording)."""
    from llmvem.data.brain import BrainData
    from llmvem.data.files import load_brain, save_brain

    root = tmp_path_factory.mktemp("golden-decode")
    rng = np.random.default_rng(2)
    first = load_brain(files["decode_brain"])
    ids = list(first.stimulus_ids)
    y = first.responses + 1.5 * rng.standard_normal(first.responses.shape)
    second = BrainData(y, ids, first.voxels, splits={"train": ids[:45], "test": ids[45:]}, name="subjE")
    caps = {json.loads(s)["id"]: json.loads(s)["text"] for s in files["captions"].read_text().splitlines()}
    reworded = {i: c.replace("a ", "one ", 1).replace(" on the ", " by the ") for i, c in caps.items()}
    corpus = [(i, c) for i, c in caps.items() if int(i[1:]) < 50] + [(i, reworded[i]) for i in ids[:40]]
    out = {"brain": save_brain(second, root / "subjE.npz"), "corpus": root / "corpus.jsonl",
           "references": root / "references.jsonl"}  # fmt: skip
    out["corpus"].write_text("".join(json.dumps({"id": i, "text": c}) + "\n" for i, c in corpus))
    refs = [{"image": i, "text": t} for i in ids for t in (caps[i], reworded[i])]
    out["references"].write_text("".join(json.dumps(r) + "\n" for r in refs))
    return out


@pytest.mark.skipif(shutil.which("java") is None, reason="caption metrics need Java (coco-caption)")
def test_evaluate_decode_captions(files: dict[str, Path], decode_captions: dict[str, Path], tmp_path: Path) -> None:
    """Two brain sources (a random hold-out, own splits), retrieval where some test stimuli have no caption in the
    corpus, decoded captions scored by every caption metric against two references each (the human ceiling)."""
    from llmvem.pipeline.evaluate_files import run_evaluate_decode

    metrics = ["bleu", "meteor", "rouge_l", "cider_d", "embedding"]
    cfg = _cfg(tmp_path, name="evaluate-decode", **{"embed.encoder": "glove", "evaluate.decode.top_k": 2},
               literal={"evaluate.inputs.brain": [str(files["decode_brain"]), str(decode_captions["brain"])],
                        "evaluate.inputs.embeddings": str(files["emb"]),
                        "evaluate.inputs.captions": str(decode_captions["corpus"]),
                        "evaluate.inputs.references": str(decode_captions["references"]),
                        "evaluate.decode.caption_metrics": metrics})  # fmt: skip
    got = run_metrics(run_evaluate_decode(cfg).path, _paths(files["emb"].parent))
    check("evaluate_decode_captions", through_mapping("evaluate_decode_captions", got))


# ------------------------------------------------------------------------------------------- fine-tuning studies
@pytest.fixture(scope="module")
def folder(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An ImageNet-style folder of 24 real objects92 images (the first 4 of each of the 6 categories, as symlinks),
    their real descriptions, and a brain source of 2 ROIs × 12 voxels linear in the images' 4 × 4 grey pixels."""
    from PIL import Image

    from llmvem.data.brain import BrainData, ncsnr_from_repeats
    from llmvem.data.files import save_brain
    from llmvem.data.objects92 import load_objects92

    obj = load_objects92(data_dir, verify=False)
    root = tmp_path_factory.mktemp("golden-folder")
    chosen: dict[str, str] = {}
    for label in sorted(set(obj.stimuli.labels)):
        ids = [i for i, lab in zip(obj.stimuli.ids, obj.stimuli.labels, strict=True) if lab == label]
        chosen.update({i: label.replace(" ", "_") for i in ids[:4]})
    for i, cls in chosen.items():
        (root / "images" / cls).mkdir(parents=True, exist_ok=True)
        (root / "images" / cls / f"{i}.jpg").symlink_to(data_dir / "objects92" / "images" / f"{i}.jpg")
    lines = [line for line in (data_dir / "objects92" / "descriptions.jsonl").read_text().splitlines()
             if Path(json.loads(line)["image"]).stem in chosen]  # fmt: skip
    (root / "descriptions.jsonl").write_text("\n".join(lines) + "\n")
    ids = sorted(chosen)
    pixels = [np.asarray(Image.open(data_dir / "objects92" / "images" / f"{i}.jpg").convert("L").resize((4, 4)))
              for i in ids]  # fmt: skip
    x = np.stack(pixels).reshape(len(ids), 16).astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    rng = np.random.default_rng(0)
    trials = (x @ rng.standard_normal((16, 24)) / 4)[:, None, :] + 0.7 * rng.standard_normal((len(ids), 3, 24))
    rois = pd.DataFrame({"roi": ["V1"] * 12 + ["LOC"] * 12})
    brain = BrainData(trials.mean(1), ids, rois, ncsnr=ncsnr_from_repeats(trials), n_repeats=np.full(len(ids), 3))
    brain_path = save_brain(brain, root / "subj01.npz")
    return {"images": root / "images", "descriptions": root / "descriptions.jsonl", "brain": brain_path}


def _folder_cfg(tmp_path: Path, folder: dict[str, Path], **over: Any) -> ExperimentConfig:
    return _cfg(tmp_path, **{
        "name": "folder", "dataset.name": "folder", "dataset.images": str(folder["images"]),
        "dataset.descriptions": str(folder["descriptions"]), "finetune.trainable_blocks": 0, "finetune.epochs": 2,
        "finetune.warmup_epochs": 0, "finetune.seeds": "[0, 1]", "finetune.batch_size": 8,
        "finetune.val_fraction": 0.2, "finetune.tensorboard": "false", "finetune.lr": 1e-3,
        "finetune.projection": "linear", "embed.encoder": "minilm", **over})  # fmt: skip


def _folder_metrics(run_path: Path, folder: dict[str, Path]) -> dict[str, Any]:
    """The run's numbers at the hand-written folder study's paths (:data:`OLD_TO_NEW`), the study's seeds
    included."""
    import yaml

    got = run_metrics(run_path, _paths(folder["images"].parent))
    seeds = yaml.safe_load((run_path / "study.yaml").read_text())["seeds"]
    got.update({f"study.seeds[{k}]": s for k, s in enumerate(seeds)})
    return got


#: the tiny folder run of _folder_cfg as study overrides (the study's settings differ from the config defaults:
#: label smoothing 0.1, 3 trainable blocks, the MLP projection ...)
FOLDER_STUDY = {"seeds": "[0, 1]", "stimuli.images.heldout": 0.2, "finetune.trainable_blocks": 0,
                "finetune.epochs": 2, "finetune.warmup_epochs": 0, "finetune.batch_size": 8, "finetune.lr": 1e-3,
                "finetune.tensorboard": "false", "finetune.projection": "linear", "finetune.label_smoothing": 0.0,
                "progress": False}  # fmt: skip


@pytest.mark.slow  # ~15-30 s with the next: MiniLM and EfficientNet loaded, 4 models trained
def test_folder_classifier(folder: dict[str, Path], tmp_path: Path) -> None:
    """The old config (dataset.name: folder) and entry point run the study folder-classifier, same numbers."""
    from llmvem.pipeline import run_finetune_folder
    from llmvem.runner.legacy import LegacyConfigWarning

    with pytest.warns(LegacyConfigWarning, match="folder-classifier"):
        run = run_finetune_folder(_folder_cfg(tmp_path, folder))
    check("folder_classifier", through_mapping("folder_classifier", _folder_metrics(run.path, folder)))


@pytest.mark.slow
def test_folder_classifier_study(folder: dict[str, Path], tmp_path: Path) -> None:
    from llmvem.runner import run_study

    over = {**FOLDER_STUDY, "stimuli.images.images": str(folder["images"]),
            "stimuli.images.descriptions": str(folder["descriptions"])}  # fmt: skip
    run = run_study("folder-classifier", overrides=over, output_dir=tmp_path / "runs")
    check("folder_classifier", through_mapping("folder_classifier", _folder_metrics(run.path, folder)))


#: the median over voxels of held-out r ≈ 0.019 after a 3-epoch fine-tune: near zero, so RTOL is 2e-6 absolute. On
#: this project's 2-core machine it reads 0.0192095 with 1 BLAS thread and 0.0192093 with 2 on the same commit (and
#: on the commit that pinned it, 0.0192063 was measured under other load): float summation order, not the code.
#: 1e-5 absolute on a correlation keeps any real change visible.
FOLDER_VOXELS_LOOSE = {r"median_r": (RTOL, 1e-5)}


@pytest.mark.slow
def test_folder_voxels(folder: dict[str, Path], tmp_path: Path) -> None:
    """The old config with dataset.brain runs the study folder-voxels, same numbers."""
    from llmvem.pipeline import run_finetune_folder
    from llmvem.runner.legacy import LegacyConfigWarning

    with pytest.warns(LegacyConfigWarning, match="folder-voxels"):
        run = run_finetune_folder(_folder_cfg(tmp_path, folder, **{"dataset.brain": str(folder["brain"])}))
    got = through_mapping("folder_voxels", _folder_metrics(run.path, folder))
    check("folder_voxels", got, loose=FOLDER_VOXELS_LOOSE)


@pytest.mark.slow
def test_folder_voxels_study(folder: dict[str, Path], tmp_path: Path) -> None:
    from llmvem.runner import run_study

    over = {
        **FOLDER_STUDY,
        "stimuli.images.images": str(folder["images"]),
        "finetune.label_smoothing": 0.0,
        "stimuli.images.descriptions": str(folder["descriptions"]),
        "stimuli.images.brain": str(folder["brain"]),
    }
    run = run_study("folder-voxels", overrides=over, output_dir=tmp_path / "runs")
    got = through_mapping("folder_voxels", _folder_metrics(run.path, folder))
    check("folder_voxels", got, loose=FOLDER_VOXELS_LOOSE)


def _nsd_metrics(run_path: Path, tmp_path: Path, data_dir: Path) -> dict[str, Any]:
    """The run's numbers at the hand-written study's paths (:data:`OLD_TO_NEW`), the study's seeds included."""
    import yaml

    got = run_metrics(run_path, _paths(tmp_path, data_dir))
    seeds = yaml.safe_load((run_path / "study.yaml").read_text())["seeds"]
    got.update({f"study.seeds[{k}]": s for k, s in enumerate(seeds)})
    return through_mapping("nsd_objects92", got)


#: the paired rows compare two RSA scores that differ by 1e-4..1e-3 (aligned vs twin, heads, vs pretrained) over 4 or
#: 15 subjects. A float difference of ~1e-6 in the scores (summation order of the CPU fine-tune; every run on this
#: machine gives the same values, and the same 9 keys differ from the pin on the commit before the runner port) moves
#: the difference by that absolute amount, 3e-3 of itself, and the t-test's p by up to 1.4e-3 (0.3567 → 0.3553 on
#: hIT). Both get absolute tolerances on the scale of the scores' rounding, which a real change still exceeds by far.
NSD_LOOSE = {
    r"p_paired_t_subjects$": (1e-2, 2e-3),
    r"^paired[a-z_]*\..+\.(diff_mean|per_seed\[\d+\])$": (RTOL, 1e-5),
}


#: the tiny NSD subset: the first 24 described NSD images, 1 seed, 1 epoch, the top block only
NSD_TINY = {"stimuli.nsd.n_images": 24, "seeds": "[0]", "finetune.epochs": 1, "finetune.trainable_blocks": 1,
            "finetune.batch_size": 16}  # fmt: skip


@pytest.mark.slow
def test_nsd_objects92(data_dir: Path, tmp_path: Path) -> None:
    """The built-in study nsd-objects92 on the tiny subset."""
    from llmvem.runner import run_study

    run = run_study("nsd-objects92", overrides={**NSD_TINY, "progress": False}, data_dir=data_dir,
                    output_dir=tmp_path / "runs")  # fmt: skip
    check("nsd_objects92", _nsd_metrics(run.path, tmp_path, data_dir), loose=NSD_LOOSE)


@pytest.mark.slow
def test_nsd_objects92_old_config(data_dir: Path, tmp_path: Path) -> None:
    """The shipped old config (dataset.name: nsd_objects92) and entry point run the same study, same numbers."""
    from llmvem.pipeline import run_nsd_objects92
    from llmvem.runner.legacy import LegacyConfigWarning

    cfg = _cfg(tmp_path, Path(__file__).resolve().parents[2] / "configs" / "nsd-objects92.yaml",
               data_dir=str(data_dir), **{"finetune.n_images": 24, "finetune.seeds": "[0]", "finetune.epochs": 1,
                                          "finetune.trainable_blocks": 1, "finetune.batch_size": 16})  # fmt: skip
    with pytest.warns(LegacyConfigWarning, match="nsd-objects92"):
        run = run_nsd_objects92(cfg)
    check("nsd_objects92", _nsd_metrics(run.path, tmp_path, data_dir), loose=NSD_LOOSE)


# ------------------------------------------------------------------------- nsd-objects92, visual-words variant
#: the tiny visual-words subset (tests/visualwords/test_nsd_objects92_words.py): the first 40 described NSD images,
#: 1 seed, 1 epoch, the top block only, tf bags of words, 50 shuffles of the precision@k null
NSD_WORDS_TINY = {"finetune.n_images": 40, "finetune.seeds": "[0]", "finetune.epochs": 1,
                  "finetune.trainable_blocks": 1, "finetune.batch_size": 16, "finetune.loss": "visual_words",
                  "finetune.bow_weighting": "tf", "words.n_shuffles": 50}  # fmt: skip
#: the same as overrides of the study nsd-objects92-words (λ = 0.03: the pinned run used the old config's, which the
#: study file sets to 1)
NSD_WORDS_STUDY = {"stimuli.nsd.n_images": 40, "seeds": "[0]", "finetune.epochs": 1, "finetune.trainable_blocks": 1,
                   "finetune.batch_size": 16, "finetune.bow_weighting": "tf", "words.n_shuffles": 50,
                   "finetune.lambda_align": 0.03, "progress": False}  # fmt: skip
#: the hand-written study's ``visual_words`` section → the ``words`` evaluation (word_readout): held-out precision
#: on the ``nsd`` source, the 92 objects' on ``objects92``, the training prior as the model ``prior``;
#: ``visual_words.json`` keeps its layout (``visual_words_json.*``: every number and word of the file)
_WORDS_TARGETS = {"precision": "nsd", "objects92_precision": "objects92"}
OLD_TO_NEW["nsd_objects92_words"] = [
    *OLD_TO_NEW["nsd_objects92"],
    (
        r"^visual_words\.(precision|objects92_precision)\.mean\.(\w+)$",
        lambda m: f"results.words.aligned.{_WORDS_TARGETS[m[1]]}.{m[2]}",
    ),
    (
        r"^visual_words\.(precision|objects92_precision)\.seed(\d+)\.(\w+)$",
        lambda m: f"results.words.aligned.{_WORDS_TARGETS[m[1]]}.seeds.{m[2]}.{m[3]}",
    ),
    (r"^visual_words\.prior_precision$", lambda m: "results.words.prior.nsd.precision"),
    (r"^(visual_words_json\..+)$", lambda m: m[1]),
]


def _words_metrics(run_path: Path, tmp_path: Path, data_dir: Path) -> dict[str, Any]:
    """The run's numbers at the hand-written study's paths, and every leaf of ``visual_words.json`` as
    ``visual_words_json.<key>``."""
    import yaml

    vw = json.loads((run_path / "visual_words.json").read_text())
    got = {**run_metrics(run_path, _paths(tmp_path, data_dir)),
           **{f"visual_words_json.{k}": v for k, v in flatten(vw).items()}}  # fmt: skip
    seeds = yaml.safe_load((run_path / "study.yaml").read_text())["seeds"]
    got.update({f"study.seeds[{k}]": s for k, s in enumerate(seeds)})
    return through_mapping("nsd_objects92_words", got)


@pytest.mark.slow  # ~60 s: 40 NSD + 92 objects92 images through EfficientNet, two fine-tunes, 30,522-token head
def test_nsd_objects92_words_old_config(data_dir: Path, tmp_path: Path) -> None:
    """The old config with finetune.loss: visual_words runs the study nsd-objects92-words, with the numbers of the
    hand-written study it replaced (pinned before the port)."""
    from llmvem.pipeline import run_nsd_objects92
    from llmvem.runner.legacy import LegacyConfigWarning

    cfg = _cfg(tmp_path, Path(__file__).resolve().parents[2] / "configs" / "nsd-objects92.yaml",
               data_dir=str(data_dir), **NSD_WORDS_TINY)  # fmt: skip
    with pytest.warns(LegacyConfigWarning, match="nsd-objects92-words"):
        run = run_nsd_objects92(cfg)
    check("nsd_objects92_words", _words_metrics(run.path, tmp_path, data_dir), loose=NSD_LOOSE)


@pytest.mark.slow
def test_nsd_objects92_words_study(data_dir: Path, tmp_path: Path) -> None:
    """The built-in study nsd-objects92-words on the tiny subset."""
    from llmvem.runner import run_study

    run = run_study("nsd-objects92-words", overrides=NSD_WORDS_STUDY, data_dir=data_dir,
                    output_dir=tmp_path / "runs")  # fmt: skip
    check("nsd_objects92_words", _words_metrics(run.path, tmp_path, data_dir), loose=NSD_LOOSE)
