"""RDM sets of brain ROIs, the brain sources as subjects (RSA on the user's own brain data)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from llmvem.errors import DataError

if TYPE_CHECKING:
    from llmvem.data.brain import BrainData, RDMSet


def roi_rdm_sets(brains: list[BrainData], metric: str) -> dict[str, RDMSet]:
    """One RDM set (subjects × n × n) per ROI present in every brain source (the sources are the subjects), over
    the stimuli they share (in the first source's order); voxels with NaN/inf or constant responses are left out,
    counted in a warning.

    Raises:
        DataError: fewer than 4 shared stimuli, no ROI in every source, or a ROI with < 2 usable voxels.
    """
    from llmvem.brain.rsa import compute_rdm
    from llmvem.data.brain import RDMSet
    from llmvem.data.stimuli import align_ids

    others = [set(b.stimulus_ids) for b in brains[1:]]
    common = [i for i in brains[0].stimulus_ids if all(i in o for o in others)]
    if len(common) < 4:
        raise DataError(f"RSA on brain ROIs: the brain sources share {len(common)} stimuli; need ≥ 4")
    rois = [r for r in brains[0].rois if all(r in b.rois for b in brains[1:])]
    if not rois:
        raise DataError("RSA on brain ROIs: no ROI is present in every brain source")
    out = {}
    dropped: list[str] = []
    for roi in rois:
        rdms = []
        for b in brains:
            in_roi = b.roi_mask(roi)
            mask = in_roi & b.check_finite()
            if (n_out := int((in_roi & ~mask).sum())) > 0:
                dropped.append(f"{b.name}/{roi}: {n_out} of {int(in_roi.sum())}")
            if mask.sum() < 2:
                raise DataError(f"brain {b.name!r} ROI {roi!r}: fewer than 2 finite, non-constant voxels")
            rows = np.asarray(align_ids(common, b.stimulus_ids, "common stimuli", f"brain {b.name!r}"))
            rdms.append(compute_rdm(b.responses[np.ix_(rows, np.flatnonzero(mask))], metric))
        out[roi] = RDMSet(np.stack(rdms), common, [b.name for b in brains], name=roi, measure=metric)
    if dropped:
        warnings.warn(
            f"RSA on brain ROIs: voxels with NaN/inf or constant responses left out of the RDMs ({'; '.join(dropped)})",
            RuntimeWarning,
            stacklevel=3,
        )
    return out
