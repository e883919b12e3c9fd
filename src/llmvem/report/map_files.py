"""Per-voxel results written as images in each brain's own space, with their pictures (``maps/``, ``partition/``,
``searchlight/`` of a run directory; :mod:`llmvem.data.brain_maps` writes the files,
:mod:`llmvem.report.brain_plots` draws them)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmvem.errors import DataError

if TYPE_CHECKING:
    from llmvem.data.brain import BrainData


def encoding_map_values(
    r: np.ndarray, brain: BrainData, model: Any, p_values: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The per-voxel maps of one encoding fit: ``r`` (v,), ``score`` (with a noise ceiling), the ridge's ``alpha``
    (when it has per-voxel α) and ``p`` (with permutations)."""
    from llmvem.brain.metrics import algonauts_score

    values: dict[str, np.ndarray] = {"r": r}
    if brain.noise_ceiling is not None:
        values["score"] = algonauts_score(r, brain.noise_ceiling)
    if getattr(model, "best_alphas_", None) is not None:
        values["alpha"] = np.asarray(model.best_alphas_)
    if p_values is not None:
        values["p"] = np.asarray(p_values)
    return values


def save_maps(
    run_path: Path, brain: BrainData, values: dict[str, np.ndarray], folder: Path, draw: bool = True, what: str = ""
) -> dict[str, list[str]]:
    """Per-voxel ``values`` (name → (v,)) as images in ``brain``'s space under ``run_path/folder``: name → files
    relative to ``run_path``; ``{}`` when the brain has no space, or (with a warning) when they cannot be placed.
    With ``draw``, pictures of the maps people read beside them (:func:`draw_maps`)."""
    if brain.space is None:
        return {}
    from llmvem.data.brain_maps import save_result_maps

    try:
        files = save_result_maps(values, brain, run_path / folder)
    except DataError as exc:  # e.g. Algonauts without its all-vertices masks: scores stand, maps cannot be placed
        warnings.warn(f"{what}: no brain maps for {brain.name!r}: {exc}", RuntimeWarning, stacklevel=3)
        return {}
    if draw:
        draw_maps(run_path, brain, values, folder, what)
    return {k: [str(f.relative_to(run_path)) for f in v] for k, v in files.items()}


def draw_maps(run_path: Path, brain: BrainData, values: dict[str, np.ndarray], folder: Path, what: str = "") -> None:
    """Pictures of the maps people read (r, unique / shared / joint parts …) as ``folder/<name>.png`` beside the map
    files (the report finds them there); a map that cannot be drawn (no finite value) is skipped with a warning."""
    from llmvem.report.brain_plots import DRAWN_MAPS, draw_brain_map

    for name, v in values.items():
        if not DRAWN_MAPS.match(name):
            continue
        png = run_path / folder / f"{name}.png"
        try:
            draw_brain_map(v, brain, png, title=f"{name}: {folder.as_posix()}")
        except DataError as exc:
            warnings.warn(f"{what}: map {name} of {brain.name!r} not drawn: {exc}", RuntimeWarning, stacklevel=3)
