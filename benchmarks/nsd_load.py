"""Benchmark ``load_nsd`` at NSD's real size against the floor and the previous loader.

A generated NSD tree (``/tmp/nsdbench`` by default, deleted afterwards unless ``--keep``): subj01's 1.8-mm grid
81 × 104 × 83, 750 trials per session, ``betas_sessionSS.hdf5`` int16 with one (750, 1, 1, 1) chunk per voxel as
NSD's files (1.05 GB each), a 15,724-voxel ROI (subj01's nsdgeneral count) in ``roi/nsdgeneral.nii.gz`` and the
design ``nsd_expdesign.mat`` with its real keys and shapes (10,000 images × 3 repeats over 40 sessions).

Each figure is measured in a fresh subprocess, after dropping the session files from the page cache
(``posix_fadvise(DONTNEED)``: every loader reads from disk):

- **floor**: read only the ROI's voxels of every session with h5py and nothing else (the fastest way measured:
  each voxel's chunk read directly, ~1 s per session cold; the bounding box takes ~7 s, one hyperslab per run ~1.5 s);
- **new**: :func:`llmvem.data.nsd.load_nsd`;
- **old**: the loader before issue 13 (``git show bd08fab:src/llmvem/data/nsd.py``, read into a temporary module).

Peak RSS is ``ru_maxrss`` after the load minus ``ru_maxrss`` after the imports; "returned" is the nbytes of the
response array. Targets (issue 13): new peak RSS ≤ 2 × returned, new time ≤ 1.5 × floor.

Usage::

    python benchmarks/nsd_load.py --sessions 40 --loaders floor,new
    python benchmarks/nsd_load.py --sessions 8 --loaders floor,new,old --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

GRID = (81, 104, 83)  # X, Y, Z of subj01 func1pt8mm (NSD data manual, "Technical notes")
N_ROI = 15_724  # subj01 nsdgeneral voxels at 1.8 mm
TRIALS = 750
RESULTS = Path(__file__).resolve().parent / "results"
OLD_COMMIT = "bd08fab"


def roi_mask() -> np.ndarray:
    """(X*Y*Z,) bool, Fortran order: a posterior ellipsoidal shell of ``N_ROI`` voxels (a cortex-like ribbon)."""
    x, y, z = np.meshgrid(*(np.arange(n) for n in GRID), indexing="ij")
    r = np.sqrt(((x - 40) / 34) ** 2 + ((y - 30) / 34) ** 2 + ((z - 38) / 30) ** 2)
    for t in np.linspace(0.02, 0.5, 200):
        m = (r > 1 - t) & (r < 1) & (y < 55)
        if m.sum() >= N_ROI:
            break
    idx = np.flatnonzero(m.reshape(-1, order="F"))[:N_ROI]
    out = np.zeros(int(np.prod(GRID)), dtype=bool)
    out[idx] = True
    return out


def generate(root: Path, n_sessions: int) -> None:
    """Write the NSD tree (design, ROI volume, ``n_sessions`` HDF5 sessions) under ``root``."""
    import h5py
    import nibabel as nib
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    design = root / "nsddata" / "experiments" / "nsd"
    design.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(np.repeat(np.arange(1, 10_001), 3))  # 30,000 trials → 10k index (1-based)
    subjectim = np.stack([rng.permutation(np.arange(1, 73_001))[:10_000] for _ in range(8)])
    savemat(design / "nsd_expdesign.mat", {"masterordering": order[None], "subjectim": subjectim,
                                           "sharedix": subjectim[0, :1000][None]})  # fmt: skip
    mask = roi_mask()
    labels = np.full(mask.size, -1, dtype=np.int16)
    labels[mask] = 1
    labels[~mask & (rng.random(mask.size) < 0.5)] = 0
    rdir = root / "nsddata" / "ppdata" / "subj01" / "func1pt8mm" / "roi"
    rdir.mkdir(parents=True, exist_ok=True)
    affine = np.diag([1.8, 1.8, 1.8, 1.0])
    nib.save(nib.Nifti1Image(labels.reshape(GRID, order="F"), affine), rdir / "nsdgeneral.nii.gz")
    (rdir / "nsdgeneral.mgz.ctab").write_text("0 Unknown\n1 nsdgeneral\n")
    bdir = root / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"
    bdir.mkdir(parents=True, exist_ok=True)
    first = bdir / "betas_session01.hdf5"
    x, y, z = np.unravel_index(np.flatnonzero(mask), GRID, order="F")
    for s in range(1, n_sessions + 1):
        path = bdir / f"betas_session{s:02d}.hdf5"
        if path.is_file():
            continue
        if s == 1:
            with h5py.File(path, "w") as f:
                d = f.create_dataset("betas", shape=(TRIALS, *GRID[::-1]), dtype=np.int16, chunks=(TRIALS, 1, 1, 1))
                for zz in range(GRID[2]):
                    d[:, zz] = rng.normal(0, 400, size=(TRIALS, GRID[1], GRID[0])).astype(np.int16)
            continue
        shutil.copyfile(first, path)  # the whole volume, then fresh ROI voxels for this session
        vals = rng.normal(0, 400, size=(x.size, TRIALS)).astype(np.int16)
        with h5py.File(path, "r+") as f:
            write = f["betas"].id.write_direct_chunk
            for k, (a, b, c) in enumerate(zip(x, y, z, strict=True)):
                write((0, int(c), int(b), int(a)), vals[k].tobytes())


def session_files(root: Path) -> list[Path]:
    return sorted((root / "nsddata_betas").rglob("betas_session*.hdf5"))


def evict(paths: list[Path]) -> None:
    """Drop the files from the page cache (clean pages), so the next read comes from disk."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _floor(root: Path, n_sessions: int) -> int:
    """Read the ROI's voxels of every session (each voxel's chunk, directly) and nothing else."""
    import h5py

    x, y, z = np.unravel_index(np.flatnonzero(roi_mask()), GRID, order="F")
    total = 0
    for p in session_files(root)[:n_sessions]:
        with h5py.File(p, "r") as f:
            read = f["betas"].id.read_direct_chunk
            raw = b"".join(read((0, int(c), int(b), int(a)))[1] for a, b, c in zip(x, y, z, strict=True))
        total += len(raw)
    return total


def _old_module() -> Any:
    import importlib.util

    src = subprocess.run(
        ["git", "show", f"{OLD_COMMIT}:src/llmvem/data/nsd.py"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    tmp = Path(tempfile.mkdtemp()) / "nsd_old.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location("nsd_old", tmp)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nsd_old"] = mod  # dataclasses look the module up
    spec.loader.exec_module(mod)
    return mod


def child(loader: str, root: Path, n_sessions: int, min_repeats: int, out: Path | None) -> dict[str, Any]:
    """One measurement (run in a fresh process)."""
    import h5py  # noqa: F401  (imports count in the baseline, not the peak)
    import nibabel  # noqa: F401
    import scipy.io  # noqa: F401

    from llmvem.data import nsd

    fn = _old_module().load_nsd if loader == "old" else nsd.load_nsd
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    result: dict[str, Any] = {"loader": loader}
    if loader == "floor":
        result["bytes_read"] = _floor(root, n_sessions)
    else:
        brain = fn(root, 1, rois=("nsdgeneral",), sessions=list(range(1, n_sessions + 1)), min_repeats=min_repeats)
        result["returned_bytes"] = int(brain.responses.nbytes)
        result["shape"] = list(brain.responses.shape)
        if out is not None:
            np.save(out / f"{loader}_responses.npy", brain.responses)
            if brain.ncsnr is not None:
                np.save(out / f"{loader}_ncsnr.npy", brain.ncsnr)
            (out / f"{loader}_ids.txt").write_text("\n".join(brain.stimulus_ids))
    result["time_s"] = time.perf_counter() - t0
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return result


def measure(loader: str, root: Path, n_sessions: int, min_repeats: int, out: Path | None) -> dict[str, Any]:
    evict(session_files(root))
    cmd = [sys.executable, __file__, "--child", loader, "--root", str(root), "--sessions", str(n_sessions),
           "--min-repeats", str(min_repeats)] + (["--out", str(out)] if out else [])  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{loader} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def compare(out: Path) -> dict[str, float]:
    """Largest differences between the old and new loaders' outputs (same ids, same order)."""
    ids_new, ids_old = (out / "new_ids.txt").read_text(), (out / "old_ids.txt").read_text()
    if ids_new != ids_old:
        raise SystemExit("new and old loaders return different stimulus ids")
    r_new, r_old = np.load(out / "new_responses.npy", mmap_mode="r"), np.load(out / "old_responses.npy", mmap_mode="r")
    d = max(float(np.nanmax(np.abs(r_new[i : i + 512] - r_old[i : i + 512]))) for i in range(0, len(r_new), 512))
    diffs = {"max_abs_diff_responses": d}
    if (out / "new_ncsnr.npy").is_file() and (out / "old_ncsnr.npy").is_file():
        c_new, c_old = np.load(out / "new_ncsnr.npy"), np.load(out / "old_ncsnr.npy")
        diffs["max_abs_diff_ncsnr"] = float(np.max(np.abs(c_new - c_old)))
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=40, help="sessions to generate and load (≤ 40)")
    ap.add_argument("--loaders", default="floor,new,old", help="comma-separated: floor, new, old")
    ap.add_argument("--min-repeats", type=int, default=1, help="load_nsd min_repeats (at 40 sessions 1 and 3 agree)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each loader (interleaved; fastest kept)")
    ap.add_argument("--root", type=Path, default=Path("/tmp/nsdbench"))
    ap.add_argument("--keep", action="store_true", help="keep the generated tree")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.root, args.sessions, args.min_repeats, args.out)))
        return
    t0 = time.perf_counter()
    generate(args.root, args.sessions)
    report: dict[str, Any] = {"sessions": args.sessions, "roi_voxels": N_ROI, "grid": GRID,
                              "generate_s": time.perf_counter() - t0}  # fmt: skip
    loaders = args.loaders.split(",")
    with tempfile.TemporaryDirectory(dir=args.root) as tmp:
        out = Path(tmp) if {"new", "old"} <= set(loaders) else None
        for rep in range(args.repeats):  # interleaved; the fastest run of each is kept (peak RSS: the largest)
            for name in loaders:
                r = measure(name, args.root, args.sessions, args.min_repeats, out if rep == 0 else None)
                print(name, r, flush=True)
                if name in report:
                    r["time_s"] = min(r["time_s"], report[name]["time_s"])
                    r["peak_rss_bytes"] = max(r["peak_rss_bytes"], report[name]["peak_rss_bytes"])
                report[name] = r
        if out is not None:
            report["new_vs_old"] = compare(out)
    if "floor" in report:
        for name in ("new", "old"):
            if name in report:
                r = report[name]
                r["time_vs_floor"] = r["time_s"] / report["floor"]["time_s"]
                r["peak_rss_vs_returned"] = r["peak_rss_bytes"] / r["returned_bytes"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"nsd_load_{args.sessions}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    if not args.keep:
        shutil.rmtree(args.root, ignore_errors=True)


if __name__ == "__main__":
    main()
