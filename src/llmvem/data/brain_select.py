"""Brain sources as a run reads them: loaded, restricted to ROIs, with train/test splits.

:func:`load_brain_sources` loads every brain source (:mod:`llmvem.data.brain_sources`; an NSD subject list gives one
per subject), keeps the voxels of the ROIs asked for and makes the names unique; :func:`with_splits` gives a brain
its ``train`` / ``test`` splits (its own, else a seeded hold-out).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from llmvem.data.brain import BrainData
from llmvem.errors import DataError, cut, short_repr


def load_brain_sources(specs: Sequence[Any], subject: int | None = None, rois: Sequence[str] = ()) -> list[BrainData]:
    """Every brain source of ``specs`` loaded, ``rois`` applied (:func:`select_rois`); names made unique
    (``nsd-subj02-func1pt8mm``, a repeated name gets ``-<k>``).

    Raises:
        DataError: a source cannot be loaded, or no source has one of ``rois``.
    """
    from llmvem.data.brain_sources import parse_brain_sources

    out: list[BrainData] = []
    absent: dict[str, list[tuple[str, str]]] = {}
    for k, source in enumerate(parse_brain_sources(list(specs), subject=subject)):
        brain, src = source.load(), source.text
        if rois:
            brain, missing = select_rois(brain, list(rois), str(src))
            for roi, why in missing.items():
                absent.setdefault(roi, []).append((str(src), why))
        if brain.name in [b.name for b in out]:
            brain = replace(brain, name=f"{brain.name}-{k + 1}")
        out.append(brain)
    _check_absent_rois(absent, len(out))
    return out


def select_rois(brain: BrainData, rois: list[str], source: str) -> tuple[BrainData, dict[str, str]]:
    """The voxels of ``brain`` in any of ``rois`` (names or ``class:name``, :meth:`BrainData.roi_mask`; a voxel in
    several is kept once), and the names ``brain`` lacks → the error that lists the ROIs it has.

    Raises:
        DataError: ``brain`` has none of ``rois``.
    """
    masks, missing = [], {}
    for roi in rois:
        try:
            masks.append(brain.roi_mask(roi))
        except DataError as exc:
            missing[roi] = str(exc)
    if not masks:
        raise DataError(
            f"brain {source}: none of the ROIs {short_repr(rois)}. {cut(next(iter(missing.values())), 400)}"
        )
    return select_voxels(brain, np.logical_or.reduce(masks)), missing


def _check_absent_rois(absent: dict[str, list[tuple[str, str]]], n_sources: int) -> None:
    """A ROI no brain source has is an error (a typo, or another dataset's ROI); one some lack is a counted warning."""
    for roi, where in absent.items():
        if len(where) == n_sources:
            raise DataError(f"--roi {roi!r}: no brain source has it. {where[0][1]}")
    if absent:
        parts = [f"ROI {roi!r} is absent from {len(w)} of {n_sources} brain sources ({', '.join(s for s, _ in w)})"
                 for roi, w in absent.items()]  # fmt: skip
        warnings.warn(f"evaluate --roi: {'; '.join(parts)}; each source is scored on the ROIs it has", stacklevel=3)


def select_voxels(brain: BrainData, keep: np.ndarray) -> BrainData:
    """``brain`` with the voxels of the boolean mask ``keep`` (v,) only."""
    return replace(
        brain,
        responses=brain.responses[:, keep],
        voxels=brain.voxels.loc[keep].reset_index(drop=True),
        ncsnr=None if brain.ncsnr is None else brain.ncsnr[keep],
        noise_ceiling=None if brain.noise_ceiling is None else brain.noise_ceiling[keep],
    )


def with_splits(brain: BrainData, test_fraction: float, seed: int) -> tuple[BrainData, bool]:
    """``brain`` with ``train``/``test`` splits: its own when it has both, else a seeded random hold-out.

    Returns:
        ``(brain, own)``; ``own`` says whether the data's own splits were used.
    """
    if "train" in brain.splits and "test" in brain.splits:  # disjoint: checked by BrainData
        sizes = {s: len(brain.splits[s]) for s in ("train", "test")}
        if min(sizes.values()) < 3:
            raise DataError(
                f"brain {brain.name!r}: its own splits hold {sizes['train']} train and {sizes['test']} test "
                "stimuli; each needs ≥ 3 to fit and score a model (fix the splits, or remove them to let llmvem draw "
                "a seeded --test-fraction hold-out)"
            )
        return brain, True
    ids = list(brain.stimulus_ids)
    n_test = round(test_fraction * len(ids))
    if n_test < 3 or len(ids) - n_test < 3:
        raise DataError(
            f"brain {brain.name!r}: {len(ids)} stimuli are too few for a {test_fraction:g} hold-out (need ≥ 3 "
            "on each side)"
        )
    perm = np.random.default_rng(seed).permutation(len(ids))
    test = sorted(ids[k] for k in perm[:n_test])
    train = sorted(ids[k] for k in perm[n_test:])
    return replace(brain, splits={**brain.splits, "train": train, "test": test}), False
