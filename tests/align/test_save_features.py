"""``save_features``: the work of ``llmvem features`` (one matrix, or one file per layer), and what it tells."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from llmvem.align.from_config import SavedFeatures, features_from_config, layer_file, save_features
from llmvem.config import load_config


def test_save_features_writes_the_matrix_and_its_ids(tmp_path: Path, image_folder: Callable[..., Path]) -> None:
    images, out = image_folder(3, size=32), tmp_path / "f.npy"
    cfg = load_config(overrides={"cache_dir": str(tmp_path / "store"), "progress": False})
    saved = save_features(cfg, images, out)
    values, ids = features_from_config(cfg, images)
    assert np.array_equal(np.load(out), values) and out.with_suffix(".ids.txt").read_text().split() == ids
    assert saved.shapes == {out: (3, 1280)} and saved.ids == out.with_suffix(".ids.txt") and not saved.per_layer
    assert saved.lines() == [f"3 × 1280 features → {out}"]


def test_save_features_per_layer_writes_one_file_each_and_one_ids_file(
    tmp_path: Path, image_folder: Callable[..., Path]
) -> None:
    images, out = image_folder(3, size=32), tmp_path / "f.npy"
    over = {"cache_dir": str(tmp_path / "store"), "progress": False, "features.layers": "_blocks.0,_blocks.3"}
    saved = save_features(load_config(overrides=over), images, out)
    files = [layer_file(out, "_blocks.0"), layer_file(out, "_blocks.3")]
    assert list(saved.shapes) == files and all(np.load(f).shape == saved.shapes[f] for f in files)
    assert saved.per_layer and saved.ids == tmp_path / "f.ids.txt" and saved.ids.read_text().split() == [
        "img_0", "img_1", "img_2"
    ]  # fmt: skip
    assert saved.lines()[-1] == f"ids → {saved.ids}" and len(saved.lines()) == 3


def test_lines_name_the_fine_tuned_weights() -> None:
    saved = SavedFeatures({Path("a.npy"): (5, 64)}, Path("a.ids.txt"), "aligned-seed0", per_layer=False)
    assert saved.lines() == ["5 × 64 features of aligned-seed0 → a.npy"]
