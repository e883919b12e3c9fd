"""The 92-object image set (Kriegeskorte et al. 2008; Cichy et al. 2014) with its RDMs and LLM descriptions.

Files (under ``DATA_DIR/objects92/``): ``images/image_01.jpg … image_92.jpg``; ``cichy2014/fmri_{EVC,IT}_RDMs.npz``;
``kriegeskorte2008/92_{brain,behav,model}RDMs.mat`` and ``Kriegeskorte_Neuron2008_supplementalData.mat``;
``descriptions.jsonl``. Every part uses the same stimulus order, so all parts share the ids ``image_01 … image_92``
(the .mat files hold the same 92 pictures on a grey background; ``images/`` has them on white).

RDM clean-up: every RDM in these files is symmetric and has a zero diagonal up to float rounding (the Cichy RDMs
differ from their transpose by ≤ 2.2e-16); the loader makes them exactly symmetric with an exactly zero diagonal and
raises :class:`~llmvem.errors.DataError` if any deviates by more than 1e-6 (relative to the RDM's largest value).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmvem.data.brain import RDMSet
from llmvem.data.datasets import OBJECTS92
from llmvem.data.stimuli import StimulusSet
from llmvem.errors import DataError, IdMismatchError

N_IMAGES = 92
STIMULUS_IDS = [f"image_{k:02d}" for k in range(1, N_IMAGES + 1)]

#: single label per image from the categoryVectors columns (species column, part column) or (object column,)
_LABEL_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("human face", ("human", "face")),
    ("human body", ("human", "body")),
    ("animal face", ("nonhumani", "face")),
    ("animal body", ("nonhumani", "body")),
    ("natural object", ("natObj",)),
    ("artificial object", ("artiObj",)),
)
#: the ``category`` string of ``stimuli_92objs`` for each label (a cross-check)
_MAT_CATEGORY = {
    "human face": "human face",
    "human body": "human bodypart",
    "animal face": "nonhuman face",
    "animal body": "nonhuman bodypart",
    "natural object": "natural inanimate",
    "artificial object": "artificial inanimate",
}


@dataclass
class Objects92:
    """The 92-object set.

    Attributes:
        stimuli: 92 images, ids ``image_01 … image_92``, labels one of "human face", "human body", "animal face",
            "animal body", "natural object", "artificial object" (12, 12, 12, 12, 23, 21 images).
        categories: (92, 12) bool DataFrame indexed by stimulus id, one column per ``categoryVectors`` column, named
            by ``categoryLabels`` as written in the file ("animate", "inanim", "human", "nonhumani", "body", "face",
            "natObj", "artiObj", "rand24", "rand48", "other48", "monkeyape").
        rdms: RDM sets over the 92 stimuli (see :func:`load_objects92`).
        descriptions: stimulus id → LLM description (one per image).
        description_prompt: the prompt the descriptions were written for.
        root: the dataset folder.
    """

    stimuli: StimulusSet
    categories: pd.DataFrame
    rdms: dict[str, RDMSet]
    descriptions: dict[str, str]
    description_prompt: str
    root: Path = field(default_factory=Path)

    @property
    def ids(self) -> list[str]:
        return list(self.stimuli.ids)


def load_objects92(data_dir: str | Path, verify: bool = True) -> Objects92:
    """Load the 92-object set from the data directory (or from the ``objects92`` folder itself).

    ``rdms`` keys (each an :class:`RDMSet` over the 92 stimuli in the same order):

    - ``cichy_evc``, ``cichy_it``: fMRI, 15 subjects (``subj01`` …), 1 − Pearson r (Cichy et al. 2014).
    - ``kriegeskorte_hit_sessions``: human IT fMRI, 4 subjects × 2 sessions (``BE-sess1``, ``BE-sess2``, …).
    - ``kriegeskorte_hit``: the same averaged over the two sessions (``BE``, ``KO``, ``SN``, ``TI``).
    - ``behaviour``: similarity-judgement RDMs of 16 people (``subj01`` …); scaled to about unit norm.
    - ``monkey_it``: 1 RDM, 674 IT neurons (Kiani et al. 2007), 1 − Pearson r.
    - ``model_<name>``: the model RDMs of ``92_modelRDMs.mat`` (animacy, facebodymanmadenatobj, eva, hmax, v1,
      silhouette, radon); its monkeyIT model equals ``monkey_it`` and is not repeated.

    Args:
        data_dir: the data directory holding ``objects92/``, or that folder.
        verify: check that every image decodes (default; ~0.05 s for this set).

    Raises:
        DatasetNotFoundError: files are missing (the message lists the expected files and their sources).
        DataError / IdMismatchError: the files are inconsistent (shapes, categories, description ids).
    """
    import scipy.io

    root = OBJECTS92.root(data_dir)
    OBJECTS92.require(root)
    kdir = root / "kriegeskorte2008"

    supp = scipy.io.loadmat(str(kdir / "Kriegeskorte_Neuron2008_supplementalData.mat"))
    categories = _categories(supp)
    labels = _labels(categories, supp)
    stimuli = StimulusSet.from_paths(
        [root / "images" / f"{i}.jpg" for i in STIMULUS_IDS],
        ids=STIMULUS_IDS,
        name="objects92",
        labels=labels,
        verify=verify,
    )

    rdms: dict[str, RDMSet] = {}
    for region in ("EVC", "IT"):
        path = root / "cichy2014" / f"fmri_{region}_RDMs.npz"
        with np.load(path) as npz:
            if "Net_RDM" not in npz:
                raise DataError(f"{path}: expected key 'Net_RDM', found {sorted(npz.keys())}")
            arr = _clean_rdms(npz["Net_RDM"], str(path))
        rdms[f"cichy_{region.lower()}"] = RDMSet(
            arr, STIMULUS_IDS, [f"subj{k:02d}" for k in range(1, len(arr) + 1)], f"cichy2014-{region}", "1 - pearson r"
        )

    brain = _struct(scipy.io.loadmat(str(kdir / "92_brainRDMs.mat")), "RDMs", kdir / "92_brainRDMs.mat")
    if brain.shape != (1, 4, 2):
        raise DataError(f"{kdir / '92_brainRDMs.mat'}: expected RDMs of shape (1, 4, 2), got {brain.shape}")
    subjects = [_name(brain[0, s, 0]).split("|")[1].strip() for s in range(brain.shape[1])]
    n_sub, n_sess = brain.shape[1], brain.shape[2]
    raw = np.stack([_rdm(brain[0, s, k]) for s in range(n_sub) for k in range(n_sess)])
    sess = _clean_rdms(raw, "92_brainRDMs.mat").reshape(n_sub, n_sess, N_IMAGES, N_IMAGES)
    measure = "1 - pearson r"
    rdms["kriegeskorte_hit"] = RDMSet(sess.mean(axis=1), STIMULUS_IDS, subjects, "kriegeskorte2008-hIT", measure)
    rdms["kriegeskorte_hit_sessions"] = RDMSet(
        sess.reshape(-1, N_IMAGES, N_IMAGES),
        STIMULUS_IDS,
        [f"{s}-sess{k + 1}" for s in subjects for k in range(n_sess)],
        "kriegeskorte2008-hIT-sessions",
        measure,
    )

    behav = _struct(scipy.io.loadmat(str(kdir / "92_behavRDMs.mat")), "rdms_behav_92", kdir / "92_behavRDMs.mat")
    barr = _clean_rdms(np.stack([_rdm(e) for e in behav.ravel()]), "92_behavRDMs.mat")
    rdms["behaviour"] = RDMSet(
        barr,
        STIMULUS_IDS,
        [f"subj{k:02d}" for k in range(1, len(barr) + 1)],
        "mur2013-similarity-judgements",
        "arrangement dissimilarity (scaled)",
    )

    fig1 = {_name(e): e for e in _struct(supp, "RDMs_mIT_hIT_fig1", kdir).ravel()}
    if "mIT_674neurons" not in fig1:
        raise DataError(f"{kdir}: RDMs_mIT_hIT_fig1 has no 'mIT_674neurons' entry (found {sorted(fig1)})")
    rdms["monkey_it"] = RDMSet(
        _clean_rdms(_rdm(fig1["mIT_674neurons"])[None], "monkey IT"),
        STIMULUS_IDS,
        ["monkey"],
        "kiani2007-monkey-IT",
        "1 - pearson r",
    )

    models = _struct(scipy.io.loadmat(str(kdir / "92_modelRDMs.mat")), "Models", kdir / "92_modelRDMs.mat")
    for e in models.ravel():
        mname = _name(e)
        if mname.lower() == "monkeyit":
            continue
        rdms[f"model_{mname.lower()}"] = RDMSet(
            _clean_rdms(_rdm(e)[None], mname), STIMULUS_IDS, [mname], f"model-{mname}", "model"
        )

    descriptions, prompt = _descriptions(root / "descriptions.jsonl")
    return Objects92(stimuli, categories, rdms, descriptions, prompt, root)


# ----------------------------------------------------------------------------------------------- helpers
def _struct(mat: dict[str, Any], key: str, path: Path | str) -> np.ndarray:
    if key not in mat:
        found = [k for k in mat if not k.startswith("__")]
        raise DataError(f"{path}: expected variable {key!r}, found {found}")
    return np.asarray(mat[key])


def _name(entry: Any) -> str:
    return str(np.asarray(entry["name"]).ravel()[0]).strip()


def _rdm(entry: Any) -> np.ndarray:
    """(92, 92) float64 from a struct entry's ``RDM`` (square, or a condensed upper-triangle vector)."""
    from scipy.spatial.distance import squareform

    r = np.asarray(entry["RDM"], dtype=np.float64)
    if r.ndim == 2 and 1 in r.shape:
        r = squareform(r.ravel(), checks=False)
    if r.shape != (N_IMAGES, N_IMAGES):
        raise DataError(f"RDM {_name(entry)!r} has shape {r.shape}, expected ({N_IMAGES}, {N_IMAGES})")
    return r


def _clean_rdms(rdms: np.ndarray, what: str, tol: float = 1e-6) -> np.ndarray:
    """Exactly symmetric, zero-diagonal copy of (n_subjects, n, n) ``rdms``; DataError if they are not nearly so."""
    r = np.asarray(rdms, dtype=np.float64)
    if r.ndim != 3 or r.shape[1:] != (N_IMAGES, N_IMAGES):
        raise DataError(f"{what}: RDMs have shape {r.shape}, expected (n, {N_IMAGES}, {N_IMAGES})")
    if not np.isfinite(r).all():
        raise DataError(f"{what}: RDMs contain NaN or inf")
    scale = tol * max(1.0, float(np.abs(r).max()))
    asym = float(np.abs(r - r.transpose(0, 2, 1)).max())
    diag = float(np.abs(np.diagonal(r, axis1=1, axis2=2)).max())
    if asym > scale or diag > scale:
        raise DataError(f"{what}: RDMs not symmetric with zero diagonal (max |R - Rᵀ| {asym:.3g}, |diag| {diag:.3g})")
    out = (r + r.transpose(0, 2, 1)) / 2
    idx = np.arange(N_IMAGES)
    out[:, idx, idx] = 0.0
    return out


def _categories(supp: dict[str, Any]) -> pd.DataFrame:
    vec = np.asarray(_struct(supp, "categoryVectors", "supplementalData.mat"))
    names = [str(np.asarray(x).ravel()[0]) for x in _struct(supp, "categoryLabels", "supplementalData.mat").ravel()]
    if vec.shape != (N_IMAGES, len(names)):
        raise DataError(f"categoryVectors has shape {vec.shape}, expected ({N_IMAGES}, {len(names)})")
    return pd.DataFrame(vec.astype(bool), index=pd.Index(STIMULUS_IDS, name="image"), columns=names)


def _labels(categories: pd.DataFrame, supp: dict[str, Any]) -> list[str]:
    """One label per image from the category columns, cross-checked against ``stimuli_92objs.category``."""
    mat_cat = [str(np.asarray(e["category"]).ravel()[0]) for e in _struct(supp, "stimuli_92objs", "supp").ravel()]
    labels: list[str] = []
    for k, sid in enumerate(STIMULUS_IDS):
        row = categories.loc[sid]
        hits = [lab for lab, cols in _LABEL_RULES if all(bool(row[c]) for c in cols)]
        if len(hits) != 1:
            raise DataError(f"objects92 {sid}: category columns give {len(hits)} labels {hits}, expected exactly one")
        if k < len(mat_cat) and _MAT_CATEGORY[hits[0]] != mat_cat[k]:
            raise DataError(f"objects92 {sid}: categoryVectors say {hits[0]!r} but stimuli_92objs says {mat_cat[k]!r}")
        labels.append(hits[0])
    return labels


def _descriptions(path: Path) -> tuple[dict[str, str], str]:
    out: dict[str, str] = {}
    prompts: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                sid, text = Path(rec["image"]).stem, str(rec["text"])
                prompts.add(str(rec["prompt"]))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"{path}:{lineno}: expected a JSON object with image, prompt, text ({exc})") from None
            if sid in out:
                raise DataError(f"{path}:{lineno}: second description of {sid!r}")
            out[sid] = text
    unknown = sorted(set(out) - set(STIMULUS_IDS))
    missing = [s for s in STIMULUS_IDS if s not in out]
    if unknown or missing:
        raise IdMismatchError(
            f"{path}: descriptions do not match the 92 images; unknown ids {unknown[:10]}, missing ids {missing[:10]}"
        )
    if len(prompts) != 1:
        raise DataError(f"{path}: expected one prompt for all descriptions, found {len(prompts)}")
    return {s: out[s] for s in STIMULUS_IDS}, prompts.pop()


#: the semantic columns of ``categoryVectors`` and readable names for them (the random splits rand24, rand48 and
#: other48 are left out: they are not categories)
CATEGORY_NAMES = {
    "animate": "animate", "inanim": "inanimate", "human": "human", "nonhumani": "nonhuman animal", "body": "body",
    "face": "face", "natObj": "natural object", "artiObj": "artificial object", "monkeyape": "monkey or ape",
}  # fmt: skip


def category_lists(categories: pd.DataFrame, ids: list[str] | None = None) -> list[list[str]]:
    """The readable semantic category names of each image (:data:`CATEGORY_NAMES`), in ``ids`` order (default: the
    table's), for category strings and multi-hot label controls.

    >>> cats = pd.DataFrame({"animate": [True], "human": [True], "face": [True], "rand24": [True]}, index=["a"])
    >>> category_lists(cats)
    [['animate', 'human', 'face']]
    """
    cols = [c for c in CATEGORY_NAMES if c in categories.columns]
    rows = categories.loc[ids if ids is not None else list(categories.index), cols]
    return [[CATEGORY_NAMES[c] for c in cols if bool(row[c])] for _, row in rows.iterrows()]
