"""Fixture writers of NSD and Algonauts 2023 data in their public layouts, shared by the tests that need them.

NSD (``write_nsd_design`` / ``write_nsd_volume``): ``nsddata/experiments/nsd/nsd_expdesign.mat`` with the real keys
(``masterordering`` (1, 30000)-like, ``subjectim`` (8, n), ``sharedix``; 1-based), three int16 HDF5 sessions
``nsddata_betas/ppdata/subj01/func1pt8mm/<betas>/betas_sessionSS.hdf5`` of (750, Z, Y, X) chunked per voxel
(percent signal change × 300), ``streams`` ROI volumes (−1/0/1..N, ``lh.``/``rh.``) and the ctab in
``freesurfer/subj01/label``; every betas value carries a planted signal of its image's 73k id.

Algonauts 2023 (``write_algonauts_subject``): a subject folder as gifale95/algonauts_2023
``challenge_data_preparation.py`` writes it (int all-vertices masks holding 2s, ``np.save`` of the ctab dict as
``mapping_<class>``, ``train-NNNN_nsd-MMMMM.png`` with the 0-based brick index, test fMRI and noise ceiling of the
later releases); each image's pixels and fMRI rows carry ``algonauts_signal`` of its 1-based NSD id.

Moved here from tests/data/test_nsd_layouts.py and tests/data/test_algonauts.py, unchanged, so that the folder study,
layer sweeps and decoding are tested on the same layouts (decision 0010).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
from PIL import Image
from scipy.io import savemat

from llmvem.data.nsd import TRIALS_PER_SESSION, NSDDesign, stimulus_id

NSD_GRID = (5, 4, 3)  # X, Y, Z
NSD_SESSIONS = 3
NSD_IMAGES = 750  # 10k indices 1..750, each shown 3× over 3 sessions
NSD_AFFINE = np.array([[-1.8, 0, 0, 4], [0, 1.8, 0, -3], [0, 0, 1.8, 2], [0, 0, 0, 1]])


def write_nsd_design(root: Path) -> NSDDesign:
    rng = np.random.default_rng(0)
    order = rng.permutation(np.repeat(np.arange(1, NSD_IMAGES + 1), 3))
    subjectim = np.stack([rng.permutation(np.arange(1, 73_001))[:NSD_IMAGES] for _ in range(8)])
    subjectim[:, :40] = subjectim[0, :40]  # 40 shared images
    d = root / "nsddata" / "experiments" / "nsd"
    d.mkdir(parents=True)
    savemat(d / "nsd_expdesign.mat", {"masterordering": order[None], "subjectim": subjectim,
                                      "sharedix": subjectim[0, :40][None]})  # fmt: skip
    return NSDDesign(order, subjectim, subjectim[0, :40])


def nsd_streams_labels() -> np.ndarray:
    """streams-like volume: −1 outside cortex, 0 unlabelled cortex, 1 early (x = 0, lh), 5 ventral (x = 4, rh)."""
    lab = np.full(NSD_GRID, -1, dtype=np.int16)
    lab[1:4] = 0
    lab[0] = 1
    lab[4, :2] = 5
    return lab


def write_nsd_volume(root: Path, design: NSDDesign, betas: str = "betas_fithrf_GLMdenoise_RR") -> np.ndarray:
    """Three HDF5 sessions, int16, (750, Z, Y, X) with one (750, 1, 1, 1) chunk per voxel; betas = planted image
    signal × voxel gain + noise. Returns the int16 trials (2250, X*Y*Z) in Fortran voxel order."""
    rng = np.random.default_rng(1)
    n_vox = int(np.prod(NSD_GRID))
    signal = rng.standard_normal(73_001)  # per 73k id
    gain = rng.uniform(0.5, 2.0, n_vox)
    ims = design.trial_images(1)
    trials = (300 * (signal[ims][:, None] * gain + 0.5 * rng.standard_normal((ims.size, n_vox)))).astype(np.int16)
    bdir = root / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / betas
    bdir.mkdir(parents=True)
    for s in range(NSD_SESSIONS):
        vol = trials[s * TRIALS_PER_SESSION : (s + 1) * TRIALS_PER_SESSION].reshape((-1, *NSD_GRID), order="F")
        with h5py.File(bdir / f"betas_session{s + 1:02d}.hdf5", "w") as f:
            f.create_dataset("betas", data=vol.transpose(0, 3, 2, 1), chunks=(TRIALS_PER_SESSION, 1, 1, 1))
    rdir = root / "nsddata" / "ppdata" / "subj01" / "func1pt8mm" / "roi"
    rdir.mkdir(parents=True)
    lab = nsd_streams_labels()
    nib.save(nib.Nifti1Image(lab, NSD_AFFINE), rdir / "streams.nii.gz")
    left = np.where(np.arange(NSD_GRID[0])[:, None, None] < 2, lab, np.minimum(lab, 0)).astype(np.int16)
    right = np.where(np.arange(NSD_GRID[0])[:, None, None] >= 2, lab, np.minimum(lab, 0)).astype(np.int16)
    nib.save(nib.Nifti1Image(left, NSD_AFFINE), rdir / "lh.streams.nii.gz")
    nib.save(nib.Nifti1Image(right, NSD_AFFINE), rdir / "rh.streams.nii.gz")
    ldir = root / "nsddata" / "freesurfer" / "subj01" / "label"
    ldir.mkdir(parents=True)
    (ldir / "streams.mgz.ctab").write_text("0 Unknown\n1 early\n2 midventral\n3 midlateral\n4 midparietal\n5 ventral\n")
    return trials


def nsd_expected(trials: np.ndarray, design: NSDDesign, cols: np.ndarray, drop: dict[int, int] | None = None) -> dict:
    """Reference: z-score per session, NaN for dropped voxel-sessions ({column: session index}), nanmean of repeats."""
    b = trials[:, cols].astype(np.float64) / 300
    z = np.concatenate([(s - s.mean(0)) / s.std(0) for s in np.split(b, NSD_SESSIONS)])
    for col, s in (drop or {}).items():
        z[s * TRIALS_PER_SESSION : (s + 1) * TRIALS_PER_SESSION, col] = np.nan
    ims = design.trial_images(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an image without data at a voxel: NaN
        return {stimulus_id(k): np.nanmean(z[ims == k], axis=0) for k in np.unique(ims)}


N_FS = 163_842  # fsaverage vertices per hemisphere
CTABS = {  # nsddata/freesurfer/subjNN/label/<class>.mgz.ctab
    "prf-visualrois": ["Unknown", "V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"],
    "floc-bodies": ["Unknown", "EBA", "FBA-1", "FBA-2", "mTL-bodies"],
    "floc-faces": ["Unknown", "OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"],
    "floc-places": ["Unknown", "OPA", "PPA", "RSC"],
    "floc-words": ["Unknown", "OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"],
    "streams": ["Unknown", "early", "midventral", "midlateral", "midparietal", "ventral", "lateral", "parietal"],
}
ALG_DIM = 6


def algonauts_signal(nsd73k: int) -> np.ndarray:
    """(ALG_DIM,) the planted signal of the image NSD calls ``nsd73k`` (1-based)."""
    return np.random.default_rng(nsd73k).uniform(-1.0, 1.0, ALG_DIM)


@dataclass
class AlgonautsFake:
    root: Path
    train_cond: np.ndarray  # 0-based brick indices, as the script's train_unique_cond
    test_cond: np.ndarray
    weights: dict[str, np.ndarray]  # hemi → (ALG_DIM, v_hemi)
    labels: dict[tuple[str, str], np.ndarray]  # (hemi, class) → (v_hemi,) challenge-space labels
    masks: dict[str, np.ndarray]  # hemi → (163842,) int all-vertices mask
    noise_ceiling: dict[str, np.ndarray]


def write_algonauts_subject(
    root: Path,
    n_train: int = 40,
    n_test: int = 12,
    n_hemi: tuple[int, int] = (60, 45),
    noise: float = 0.3,
    classes: tuple[str, ...] = tuple(CTABS),
) -> AlgonautsFake:
    """Write ``root`` (``.../subj01``) the way challenge_data_preparation.py does; see the module docstring."""
    rng = np.random.default_rng(0)
    # 0-based conditions: train starts at 13 (file nsd-00013 = NSD's nsd-00014) next to 14; test holds index 0
    rest = rng.choice(np.arange(100, 73_000), n_train + n_test - 3, replace=False)
    train_cond = np.unique(np.concatenate([[13, 14], rest[: n_train - 2]]))
    test_cond = np.unique(np.concatenate([[0], rest[n_train - 2 :]]))
    label_dir = root.parent / "nsddata" / "freesurfer" / root.name / "label"
    label_dir.mkdir(parents=True)
    fake = AlgonautsFake(root, train_cond, test_cond, {}, {}, {}, {})
    save = root / "roi_masks"
    save.mkdir(parents=True)
    for cls in classes:
        names = CTABS[cls]
        ctab = label_dir / f"{cls}.mgz.ctab"
        ctab.write_text("".join(f"{k} {n}\n" for k, n in enumerate(names)))
        roi_map = pd.read_csv(ctab, delimiter=" ", header=None, index_col=0).to_dict()[1]
        np.save(save / f"mapping_{cls}", roi_map)
    for hemi, n in zip(("lh", "rh"), n_hemi, strict=True):
        where = np.sort(rng.choice(N_FS, n + 4, replace=False))
        nsdgeneral, rsc = np.zeros(N_FS), np.zeros(N_FS)
        nsdgeneral[where[: n - 6]] = 1.0
        rsc[where[n - 12 : n]] = 1.0  # 6 vertices in both (2), 6 only in RSC (1)
        plus = (nsdgeneral + rsc).astype(int)
        assert (plus == 2).sum() == 6 and np.count_nonzero(plus) == n
        np.save(save / f"{hemi}.all-vertices_fsaverage_space", plus)
        fake.masks[hemi] = plus
        for cls in classes:
            names = CTABS[cls]
            fs_roi = rng.integers(0, len(names), N_FS).astype(float) * (rng.random(N_FS) < 0.5)
            fs_roi[np.where(plus == 0)[0]] = 0
            fs_roi = fs_roi.astype(int)
            challenge = fs_roi[np.where(plus)[0]]
            np.save(save / f"{hemi}.{cls}_fsaverage_space", fs_roi)
            np.save(save / f"{hemi}.{cls}_challenge_space", challenge)
            fake.labels[(hemi, cls)] = challenge
        w = rng.standard_normal((ALG_DIM, n))
        fake.weights[hemi] = w
        for split, conds, folder in (("training", train_cond, "training_split"), ("test", test_cond, "test_split")):
            y = np.stack([algonauts_signal(int(c) + 1) for c in conds]) @ w + noise * rng.standard_normal(
                (len(conds), n)
            )
            (root / folder / f"{split}_fmri").mkdir(parents=True, exist_ok=True)
            np.save(root / folder / f"{split}_fmri" / f"{hemi}_{split}_fmri.npy", np.float32(y))
        ncsnr = rng.uniform(0.0, 1.5, n)
        norm_term = float(np.mean(1.0 / rng.integers(1, 4, len(test_cond))))  # rep_3/3 + rep_2/2 + rep_1, averaged
        fake.noise_ceiling[hemi] = ncsnr**2 / (ncsnr**2 + norm_term)
        (root / "test_split" / "noise_ceiling").mkdir(parents=True, exist_ok=True)
        np.save(root / "test_split" / "noise_ceiling" / f"{hemi}_noise_ceiling.npy", fake.noise_ceiling[hemi])
    for kind, conds, folder in (("train", train_cond, "training_split/training_images"),
                                ("test", test_cond, "test_split/test_images")):  # fmt: skip
        (root / folder).mkdir(parents=True)
        for i, c in enumerate(conds):
            px = np.zeros((4, 4, 3), dtype=np.uint8)
            px.reshape(-1, 3)[:ALG_DIM, 0] = np.round(128 + 100 * algonauts_signal(int(c) + 1)).astype(np.uint8)
            name = f"{kind}-{format(i + 1, '04')}_nsd-{format(int(c), '05')}.png"
            Image.fromarray(px).convert("RGB").save(root / folder / name, format="png")
    return fake


def drop_test_release(root: Path) -> None:
    """The challenge-time release: no test fMRI and no noise ceiling."""
    for folder in ("test_fmri", "noise_ceiling"):
        for p in (root / "test_split" / folder).iterdir():
            p.unlink()
        (root / "test_split" / folder).rmdir()


# --------------------------------------------------------------------------- COCO captions of NSD images
def write_nsd_stim_info(path: Path, coco_of: dict[int, tuple[int, str]], seed: int = 0) -> Path:
    """``nsddata/experiments/nsd/nsd_stim_info_merged.csv`` as NSD ships it: all 73,000 rows, an unnamed first
    column (the 0-based row) and ``cocoId, cocoSplit, cropBox, loss, nsdId`` (0-based), ``flagged, BOLD5000,
    shared1000, subject1..8, subjectN_rep0..2``. ``coco_of``: 1-based 73k id → (COCO image id, ``train2017`` /
    ``val2017``) for the images a test uses; the other rows get COCO ids no test uses (from 900,000 up)."""
    rng = np.random.default_rng(seed)
    n = 73_000
    coco = 900_000 + np.arange(n)
    split = np.where(rng.random(n) < 0.9, "train2017", "val2017").astype(object)
    for k, (cid, sp) in coco_of.items():
        coco[k - 1], split[k - 1] = cid, sp
    df = pd.DataFrame({"cocoId": coco, "cocoSplit": split, "cropBox": "(0, 0, 0.1671875, 0.1671875)",
                       "loss": 0.1, "nsdId": np.arange(n), "flagged": False, "BOLD5000": False,
                       "shared1000": False})  # fmt: skip
    for s in range(1, 9):
        df[f"subject{s}"] = 0
    for s in range(1, 9):
        for r in range(3):
            df[f"subject{s}_rep{r}"] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path)  # the index is the unnamed first column
    return path


def write_coco_captions(path: Path, captions: dict[int, list[str]], extra: int = 3) -> Path:
    """A COCO 2017 caption annotation file (``captions_train2017.json`` layout: ``info``, ``licenses``, ``images``
    with ``id`` / ``file_name`` 12-digit …, ``annotations`` with ``image_id`` / ``id`` / ``caption``) holding
    ``captions`` (COCO image id → its captions) and ``extra`` images of no NSD image."""
    import json

    images = {**captions, **{800_000 + k: [f"an unrelated photo {k}"] for k in range(extra)}}
    data = {
        "info": {"description": "COCO 2017 Dataset", "version": "1.0", "year": 2017},
        "licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1, "name": "BY-NC-SA"}],
        "images": [
            {
                "license": 1,
                "file_name": f"{cid:012d}.jpg",
                "coco_url": f"http://images.cocodataset.org/x/{cid:012d}.jpg",
                "height": 480,
                "width": 640,
                "date_captured": "2013-11-14 16:28:13",
                "flickr_url": "",
                "id": cid,
            }
            for cid in images
        ],
        "annotations": [
            {"image_id": cid, "id": 10 * cid + j, "caption": c}
            for cid, caps in images.items()
            for j, c in enumerate(caps)
        ],
    }
    path.write_text(json.dumps(data))
    return path
