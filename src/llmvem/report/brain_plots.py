"""Brain maps as pictures: per-vertex results on the cortex, per-voxel results as slices and glass views.

Surfaces (:func:`plot_surface`): both hemispheres of fsaverage, inflated (lateral, medial, ventral) and flat, drawn by
nilearn on the fsaverage5 meshes it ships (no download). A map at a finer resolution is drawn on fsaverage5 by
**subsampling**: FreeSurfer's fsaverage meshes are nested icosahedra, so the first 10,242 vertices of fsaverage (and
of fsaverage6) are fsaverage5's vertices, at the same places; the values there are drawn, the others are not averaged
in (say so in a caption: a map that is noisy at full resolution looks as noisy). Given FreeSurfer's own fsaverage
(``subjects_dir`` or ``$SUBJECTS_DIR`` holding ``fsaverage/surf/{lh,rh}.inflated``) a full-resolution map is drawn on
it instead (inflated views; FreeSurfer ships no flat patch for fsaverage, so no flat view). ROI outlines come from
per-hemisphere label arrays (the loaded ROIs or NSD's streams).

Volumes (:func:`plot_volume`): a map in the subject's own volume (shape and affine as the loaders and
:mod:`llmvem.data.brain_maps` keep them) as axial slices through the voxels that carry data, and a glass view —
maximum-intensity projections along the three axes of the subject's grid, not an MNI glass brain (NSD's 1.8 mm and
1 mm grids are subject spaces) — with the ROI outline.

>>> to_fsaverage5(np.arange(163_842.0))[:3], to_fsaverage5(np.arange(10_242.0)).shape
(array([0., 1., 2.]), (10242,))
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmvem.errors import DataError

if TYPE_CHECKING:
    from llmvem.data.brain import BrainData

#: vertices per hemisphere of FreeSurfer's icosahedral fsaverage meshes (nested: each begins with the coarser ones)
FSAVERAGE_VERTICES = {"fsaverage3": 642, "fsaverage4": 2562, "fsaverage5": 10242, "fsaverage6": 40962,
                      "fsaverage": 163842}  # fmt: skip
N_FS5 = FSAVERAGE_VERTICES["fsaverage5"]
VIEWS = ("lateral", "medial", "ventral")
HEMIS = {"lh": "left", "rh": "right"}
#: ROI outline colours, in order
OUTLINE_COLOURS = ("#00e5ff", "#39ff14", "#ff00ff", "#ffffff", "#ffd500", "#0077ff")


def to_fsaverage5(values: np.ndarray) -> np.ndarray:
    """A per-vertex array of one hemisphere at any fsaverage resolution, subsampled to fsaverage5 (first 10,242).

    Args:
        values: (n_vertices,) with n one of :data:`FSAVERAGE_VERTICES` ≥ 10,242.
    Returns:
        (10242,) float64 view-copy.
    Raises:
        DataError: n is no fsaverage resolution (or coarser than fsaverage5).
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size not in FSAVERAGE_VERTICES.values() or v.size < N_FS5:
        known = ", ".join(f"{k} {n}" for k, n in FSAVERAGE_VERTICES.items() if n >= N_FS5)
        raise DataError(f"a surface map of {v.size} vertices per hemisphere is no fsaverage resolution ({known})")
    return v[:N_FS5].copy()


@dataclass
class MapFigure:
    """A drawn map: the PNG and where each panel sits in it (pixels, origin top-left: x0, y0, x1, y1)."""

    path: Path
    panels: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _panel_boxes(fig: Any, axes: Mapping[str, Any], dpi: float) -> dict[str, tuple[int, int, int, int]]:
    h = fig.get_figheight() * dpi
    out = {}
    for name, ax in axes.items():
        b = ax.get_position()
        x0, x1 = b.x0 * fig.get_figwidth() * dpi, b.x1 * fig.get_figwidth() * dpi
        out[name] = (int(x0), int(h - b.y1 * h), int(x1), int(h - b.y0 * h))
    return out


def _limits(hemis: Mapping[str, np.ndarray], vmax: float | None, threshold: float | None) -> tuple[float, bool]:
    finite = np.concatenate([v[np.isfinite(v)] for v in hemis.values()])
    if finite.size == 0:
        raise DataError("brain map: no finite value to draw")
    symmetric = bool((finite < 0).any() and (finite > 0).any())
    top = vmax if vmax is not None else float(np.nanpercentile(np.abs(finite), 99) or np.abs(finite).max() or 1.0)
    if threshold is not None and threshold >= top:
        top = threshold * 1.5
    return top, symmetric


def _meshes(subjects_dir: str | Path | None, n: int) -> tuple[dict[str, Any], Any | None, str]:
    """(inflated mesh per hemisphere, flat mesh or None, description) for a map of n vertices per hemisphere."""
    from nilearn import datasets

    fs5 = datasets.load_fsaverage("fsaverage5")  # shipped inside nilearn: no download
    root = Path(subjects_dir or os.environ.get("SUBJECTS_DIR", "")) / "fsaverage" / "surf"
    if n > N_FS5 and (root / "lh.inflated").is_file() and (root / "rh.inflated").is_file():
        import nibabel.freesurfer as fsio
        from nilearn.surface import InMemoryMesh

        meshes = {}
        for hemi in HEMIS:
            coords, faces = fsio.read_geometry(str(root / f"{hemi}.inflated"))
            if len(coords) != n:
                raise DataError(f"{root / (hemi + '.inflated')} has {len(coords)} vertices, the map {n}")
            meshes[hemi] = InMemoryMesh(coords, faces)
        return meshes, None, f"fsaverage from {root.parent}"
    return {h: fs5["inflated"].parts[p] for h, p in HEMIS.items()}, fs5["flat"], "fsaverage5 (nilearn)"


def plot_surface(
    hemis: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    threshold: float | None = None,
    vmax: float | None = None,
    rois: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    title: str | None = None,
    subjects_dir: str | Path | None = None,
    cmap: str | None = None,
    dpi: float = 80,
) -> MapFigure:
    """Draw a per-vertex map of both hemispheres: inflated lateral / medial / ventral views (and flat on fsaverage5).

    Args:
        hemis: ``{"lh": (n,), "rh": (n,)}`` values per vertex (NaN: no data), n an fsaverage resolution.
        path: PNG to write.
        threshold: |value| below it is not coloured (None: every finite value).
        vmax: colour scale limit (default: the 99th percentile of |value|).
        rois: ROI name → ``{"lh": (n,) bool, "rh": (n,) bool}`` drawn as outlines.
        title: figure title.
        subjects_dir: FreeSurfer subjects folder with ``fsaverage`` for full resolution (default ``$SUBJECTS_DIR``).
        cmap: colour map (default: ``RdBu_r`` for signed maps, ``autumn`` — red to yellow, no white end — for
            positive ones).
        dpi: resolution.
    Returns:
        :class:`MapFigure` with one panel per ``"<hemi> <view>"``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from nilearn import plotting

    if set(hemis) != set(HEMIS):
        raise DataError(f"brain map: expected values for hemispheres lh and rh, got {sorted(hemis)}")
    sizes = {h: np.asarray(v).size for h, v in hemis.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"brain map: the hemispheres have different sizes {sizes}")
    n = sizes["lh"]
    to_fs5 = {h: to_fsaverage5(v) for h, v in hemis.items()}  # validates n
    meshes, flat, where = _meshes(subjects_dir, n)
    full = n > N_FS5 and flat is None
    data = {h: np.asarray(v, np.float64).reshape(-1) if full else to_fs5[h] for h, v in hemis.items()}
    roi_data = {name: {h: np.asarray(m[h]).reshape(-1) if full else to_fsaverage5(m[h]) > 0.5 for h in HEMIS}
                for name, m in (rois or {}).items()}  # fmt: skip
    if not full and not any(np.isfinite(v).any() for v in data.values()):
        n_fin = sum(int(np.isfinite(np.asarray(v, np.float64)).sum()) for v in hemis.values())
        if n_fin:
            raise DataError(f"brain map: its {n_fin} vertices with values all lie off fsaverage5's first {N_FS5} "
                            "vertices, where the map is drawn (subsampled); set subjects_dir / $SUBJECTS_DIR to "
                            "FreeSurfer's fsaverage to draw it at full resolution")  # fmt: skip
    top, symmetric = _limits(data, vmax, threshold)
    cmap = cmap or ("RdBu_r" if symmetric else "autumn")
    cols = len(VIEWS) + (flat is not None)
    fig = plt.figure(figsize=(3.2 * cols, 5.6))
    axes: dict[str, Any] = {}
    for r, hemi in enumerate(HEMIS):
        for c, view in enumerate([*VIEWS, *(["flat"] if flat is not None else [])]):
            ax = fig.add_subplot(2, cols, r * cols + c + 1, projection="3d")
            mesh = flat.parts[HEMIS[hemi]] if view == "flat" and flat is not None else meshes[hemi]
            values = np.where(np.isfinite(data[hemi]), data[hemi], 0.0)
            plotting.plot_surf_stat_map(
                mesh, values, hemi=HEMIS[hemi], view="dorsal" if view == "flat" else view, axes=ax, figure=fig,
                colorbar=False, threshold=threshold, vmax=top, symmetric_cbar=symmetric, cmap=cmap,
                bg_map=None if full else _sulcal(hemi), bg_on_data=not full,
            )  # fmt: skip
            _outlines(plotting, mesh, roi_data, hemi, ax, fig)
            ax.set_title(f"{hemi} {view}", fontsize=9)
            axes[f"{hemi} {view}"] = ax
    _colourbar(fig, cmap, top, symmetric)
    notes = [f"drawn on {where}"] + ([f"subsampled from {n} to {N_FS5} vertices per hemisphere"] if n > N_FS5 and
                                     not full else [])  # fmt: skip
    fig.suptitle(title or "", fontsize=11)
    fig.text(0.01, 0.01, "; ".join(notes), fontsize=7, color="0.35")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    boxes = _panel_boxes(fig, axes, dpi)
    plt.close(fig)
    return MapFigure(out, boxes, notes)


def _sulcal(hemi: str) -> np.ndarray:
    """fsaverage5 sulcal depth of a hemisphere (nilearn's shipped data): the grey folding pattern behind a map."""
    from nilearn import datasets

    sulc = datasets.load_fsaverage_data(mesh="fsaverage5", mesh_type="inflated", data_type="sulcal")
    return np.asarray(sulc.data.parts[HEMIS[hemi]], np.float64)


def _outlines(plotting: Any, mesh: Any, rois: Mapping[str, Mapping[str, np.ndarray]], hemi: str, ax: Any,
              fig: Any) -> None:  # fmt: skip
    """Each ROI with vertices in this hemisphere as an outline (nilearn refuses an empty region)."""
    for k, (name, masks) in enumerate(rois.items()):
        mask = np.asarray(masks[hemi], bool)
        if not mask.any() or mask.all():
            continue
        try:
            plotting.plot_surf_contours(mesh, mask.astype(np.float64), hemi=HEMIS[hemi], levels=[1], axes=ax,
                                        figure=fig, colors=[OUTLINE_COLOURS[k % len(OUTLINE_COLOURS)]],
                                        labels=[name])  # fmt: skip
        except ValueError:  # nilearn: the vertices do not form a region (scattered labels): no outline to draw
            continue


def _colourbar(fig: Any, cmap: str, top: float, symmetric: bool) -> None:
    import matplotlib as mpl
    from nilearn.plotting import cm as nilearn_cm  # cold_hot and friends

    cm = getattr(nilearn_cm, cmap, cmap)
    ax = fig.add_axes((0.93, 0.25, 0.012, 0.5))
    norm = mpl.colors.Normalize(-top if symmetric else 0.0, top)
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cm), cax=ax)


def plot_volume(
    volume: np.ndarray,
    affine: np.ndarray,
    path: str | Path,
    *,
    threshold: float | None = None,
    vmax: float | None = None,
    roi: np.ndarray | None = None,
    title: str | None = None,
    n_slices: int = 6,
    dpi: float = 80,
) -> MapFigure:
    """Draw a map in a subject's volume: axial slices and a glass view (maximum |value| along each grid axis).

    Args:
        volume: (X, Y, Z) values (NaN outside the voxels), as :func:`llmvem.data.brain_maps.volume_array` returns.
        affine: (4, 4) voxel → scanner mm (the slice labels are in mm).
        path: PNG to write.
        threshold: |value| below it is left uncoloured.
        vmax: colour scale limit (default: 99th percentile of |value|).
        roi: (X, Y, Z) bool mask outlined on slices and glass views.
        title: figure title.
        n_slices: axial slices, spread over the slices that hold data.
    Returns:
        :class:`MapFigure` with panels ``"slice <k>"`` and ``"glass x|y|z"``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    vol = np.asarray(volume, np.float64)
    if vol.ndim != 3 or np.asarray(affine).shape != (4, 4):
        raise DataError(f"volume map: expected an (X, Y, Z) array and a 4×4 affine, got {vol.shape} and "
                        f"{np.asarray(affine).shape}")  # fmt: skip
    if roi is not None and np.asarray(roi).shape != vol.shape:
        raise DataError(f"volume map: ROI mask {np.asarray(roi).shape} and map {vol.shape} differ in shape")
    top, symmetric = _limits({"v": vol.reshape(-1)}, vmax, threshold)
    shown = np.where(np.isfinite(vol) & (np.abs(vol) >= (threshold or 0.0)), vol, np.nan)
    zs = np.flatnonzero(np.isfinite(vol).any(axis=(0, 1)))
    picks = zs[np.linspace(0, len(zs) - 1, min(n_slices, len(zs))).round().astype(int)] if len(zs) else []
    cmap = "RdBu_r" if symmetric else "autumn"
    fig = plt.figure(figsize=(2.2 * max(len(picks), 3), 5.0))
    axes: dict[str, Any] = {}
    kw: dict[str, Any] = dict(cmap=cmap, vmin=-top if symmetric else 0.0, vmax=top, origin="lower",
                              interpolation="nearest")  # fmt: skip
    for k, z in enumerate(picks):
        ax = fig.add_subplot(2, max(len(picks), 3), k + 1)
        ax.imshow(np.isfinite(vol[:, :, z]).T, cmap="Greys", alpha=0.25, origin="lower")
        ax.imshow(shown[:, :, z].T, **kw)
        if roi is not None and np.asarray(roi)[:, :, z].any():
            ax.contour(np.asarray(roi, float)[:, :, z].T, levels=[0.5], colors=[OUTLINE_COLOURS[0]], linewidths=1)
        mm = (np.asarray(affine) @ np.array([0, 0, z, 1.0]))[2]
        ax.set_title(f"z = {mm:.0f} mm", fontsize=8)
        ax.set_axis_off()
        axes[f"slice {k}"] = ax
    cols = max(len(picks), 3)
    for k, axis in enumerate("xyz"):
        ax = fig.add_subplot(2, cols, cols + k + 1)
        proj = _max_abs(shown, k)
        ax.imshow(np.isfinite(vol).any(axis=k).T, cmap="Greys", alpha=0.25, origin="lower")
        ax.imshow(proj.T, **kw)
        if roi is not None:
            ax.contour(np.asarray(roi).any(axis=k).T.astype(float), levels=[0.5], colors=[OUTLINE_COLOURS[0]],
                       linewidths=1)  # fmt: skip
        ax.set_title(f"glass: along {axis}", fontsize=8)
        ax.set_axis_off()
        axes[f"glass {axis}"] = ax
    import matplotlib as mpl

    fig.colorbar(mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(kw["vmin"], top), cmap=cmap),
                 cax=fig.add_axes((0.93, 0.25, 0.012, 0.5)))  # fmt: skip
    fig.suptitle(title or "", fontsize=11)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    boxes = _panel_boxes(fig, axes, dpi)
    plt.close(fig)
    return MapFigure(out, boxes, ["subject's voxel grid; glass views are maximum-|value| projections"])


def _max_abs(vol: np.ndarray, axis: int) -> np.ndarray:
    """The value of largest magnitude along ``axis`` (NaN where the line has none)."""
    filled = np.where(np.isfinite(vol), vol, 0.0)
    idx = np.abs(filled).argmax(axis=axis)
    out = np.take_along_axis(filled, np.expand_dims(idx, axis), axis).squeeze(axis)
    return np.where(np.isfinite(vol).any(axis=axis), out, np.nan)


def read_map(path: str | Path) -> tuple[str, Any]:
    """A per-voxel result file as ``("surface", {"lh", "rh"})`` or ``("volume", (array, affine))``.

    Accepts ``lh.NAME.mgh`` / ``rh.NAME.mgh`` (either; the other hemisphere is found beside it), a ``.nii`` /
    ``.nii.gz`` volume, or an ``.npy`` of 2 × n values (lh then rh, n an fsaverage resolution).
    """
    import nibabel as nib

    load: Any = nib.load  # typed as FileBasedImage; MGH and NIfTI images have get_fdata / affine
    p = Path(path)
    if not p.is_file():
        raise DataError(f"brain map {p}: not found")
    name = p.name
    try:
        if name.endswith(".mgh") and name[:3] in ("lh.", "rh."):
            pair = {h: p.with_name(h + name[2:]) for h in HEMIS}
            missing = [str(q) for q in pair.values() if not q.is_file()]
            if missing:
                raise DataError(f"brain map {p}: the other hemisphere's file is missing ({', '.join(missing)})")
            return "surface", {h: np.asarray(load(q).get_fdata()).reshape(-1) for h, q in pair.items()}
        if name.endswith((".nii", ".nii.gz")):
            img = load(p)
            data = np.asarray(img.get_fdata())
            if data.ndim == 4 and data.shape[3] == 1:
                data = data[..., 0]
            return "volume", (data, img.affine)
        if name.endswith(".npy"):
            v = np.load(p, allow_pickle=False).astype(np.float64).reshape(-1)
            if v.size % 2 or v.size // 2 not in FSAVERAGE_VERTICES.values():
                raise DataError(f"brain map {p}: {v.size} values are not 2 × an fsaverage resolution (lh then rh)")
            return "surface", {"lh": v[: v.size // 2], "rh": v[v.size // 2 :]}
    except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError) as exc:
        raise DataError(f"brain map {p}: cannot read it ({exc})") from exc
    raise DataError(f"brain map {p}: expected lh./rh.NAME.mgh, .nii(.gz) or a 2×n .npy")


def plot_map_file(path: str | Path, out: str | Path | None = None, *, space: str = "auto",
                  threshold: float | None = None, title: str | None = None,
                  subjects_dir: str | Path | None = None) -> MapFigure:  # fmt: skip
    """Draw any per-voxel result file (:func:`read_map`) as a PNG: surfaces or volume, as the file is.

    Args:
        out: the PNG (default: :func:`png_beside` the file).
        space: ``auto`` (from the file), ``fsaverage`` (full resolution where FreeSurfer's fsaverage is found),
            ``fsaverage5`` (always subsampled) or ``volume``; a space the file is not in is an error.
    """
    out = png_beside(Path(path)) if out is None else out
    kind, data = read_map(path)
    want = {"fsaverage": "surface", "fsaverage5": "surface", "volume": "volume", "auto": kind}.get(space)
    if want is None:
        raise DataError(f"plot map: unknown space {space!r}; use fsaverage, fsaverage5 or volume")
    if want != kind:
        raise DataError(f"plot map: {path} is a {kind} map, not a {space} one")
    if kind == "volume":
        return plot_volume(data[0], data[1], out, threshold=threshold, title=title)
    if space == "fsaverage5":  # never the full-resolution meshes, even with $SUBJECTS_DIR set
        data = {h: to_fsaverage5(v) for h, v in data.items()}
    return plot_surface(data, out, threshold=threshold, title=title, subjects_dir=subjects_dir)


def png_beside(path: Path) -> Path:
    """Where a map file's picture goes by default: beside it, named by the map (``lh.r.mgh`` → ``r.png``).

    >>> png_beside(Path("maps/subj01/desc/rh.r.mgh")).as_posix(), png_beside(Path("r.nii.gz")).as_posix()
    ('maps/subj01/desc/r.png', 'r.png')
    """
    stem = path.name.split(".nii")[0].removesuffix(".mgh").removesuffix(".npy")
    return path.with_name(stem.removeprefix("lh.").removeprefix("rh.") + ".png")


#: per-voxel results drawn as pictures beside their map files (the others — α, p — are only written)
DRAWN_MAPS = re.compile(r"^(r|unique_.*|shared|joint|searchlight)$")
#: ROI outlines drawn at most
MAX_OUTLINES = 6


def draw_brain_map(values: np.ndarray, brain: BrainData, path: str | Path, *, title: str | None = None,
                   threshold: float | None = None) -> MapFigure:  # fmt: skip
    """Per-voxel ``values`` of ``brain`` drawn in its own space, with its ROIs outlined (up to six).

    Args:
        values: (n_voxels,) in the order of ``brain.voxels``.
        brain: a BrainData with a volume or fsaverage ``space`` (:mod:`llmvem.data.brain_maps`).
        path: PNG to write.
    Returns:
        :class:`MapFigure`.
    """
    from llmvem.data.brain_maps import fsaverage_arrays, volume_array

    if brain.space is None:
        raise DataError(f"brain {brain.name!r} has no space: its voxels cannot be drawn as a map")
    rois = [r for r in dict.fromkeys(str(x) for x in brain.voxels["roi"]) if r not in ("", "nan")][:MAX_OUTLINES]
    labels = brain.voxels["roi"].astype(str).to_numpy()
    if brain.space.kind == "volume":
        vol = volume_array(values, brain)
        roi_mask = np.isfinite(volume_array(np.isin(labels, rois).astype(np.float32), brain, fill=np.nan))
        affine = brain.space.affine if brain.space.affine is not None else np.eye(4)
        return plot_volume(vol, affine, path, threshold=threshold, roi=roi_mask if rois else None,
                           title=title)  # fmt: skip
    hemis = {h: np.asarray(a, np.float64) for h, a in fsaverage_arrays(values, brain).items()}
    outlines = {r: {h: np.asarray(a) > 0.5 for h, a in fsaverage_arrays((labels == r).astype(np.float32), brain,
                                                                       fill=0.0).items()} for r in rois}  # fmt: skip
    return plot_surface(hemis, path, threshold=threshold, rois=outlines, title=title)
