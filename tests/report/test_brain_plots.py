"""Brain maps as pictures: planted patterns land where they should, offline (nilearn's shipped fsaverage5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nilearn")

from llmvem.errors import DataError
from llmvem.report import brain_plots as bp

N5 = bp.N_FS5


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def _coloured(px: np.ndarray) -> np.ndarray:
    """Pixels of the positive colour map (autumn: red → yellow), never the grey background or a cyan outline."""
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    return (r > 170) & (b < 90) & (r - b > 110) & (g > 0.0 * r)


def _outline(px: np.ndarray) -> np.ndarray:
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    return (b > 180) & (g > 150) & (r < 90)


def _crop(px: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return px[y0:y1, x0:x1]


@pytest.fixture(scope="module")
def occipital() -> np.ndarray:
    """(10242,) bool: fsaverage5's posterior third of the left hemisphere (pial y < -40 mm)."""
    from nilearn import datasets

    xyz = datasets.load_fsaverage("fsaverage5")["pial"].parts["left"].coordinates
    return np.asarray(xyz[:, 1] < -40)


def test_left_only_pattern_is_drawn_on_the_left(occipital: np.ndarray, tmp_path: Path) -> None:
    fig = bp.plot_surface({"lh": occipital.astype(float), "rh": np.zeros(N5)}, tmp_path / "m.png", threshold=0.5)
    px = _rgb(fig.path)
    counts = {name: int(_coloured(_crop(px, box)).sum()) for name, box in fig.panels.items()}
    assert set(counts) == {f"{h} {v}" for h in ("lh", "rh") for v in ("lateral", "medial", "ventral", "flat")}
    assert all(counts[f"lh {v}"] > 200 for v in ("lateral", "medial", "ventral", "flat")), counts
    assert all(counts[f"rh {v}"] == 0 for v in ("lateral", "medial", "ventral", "flat")), counts


def test_planted_roi_lights_up_inside_its_outline(occipital: np.ndarray, tmp_path: Path) -> None:
    roi = {"occ": {"lh": occipital, "rh": np.zeros(N5, bool)}}
    fig = bp.plot_surface({"lh": occipital.astype(float), "rh": np.zeros(N5)}, tmp_path / "s.png", threshold=0.5,
                          rois=roi)  # fmt: skip
    px = _crop(_rgb(fig.path), fig.panels["lh medial"])
    lit, line = np.argwhere(_coloured(px)), np.argwhere(_outline(px))
    assert len(lit) > 200 and len(line) > 20
    # in the medial view the occipital region lies on the posterior (left) side of its outline
    assert np.percentile(lit[:, 1], 95) <= line[:, 1].max() + 3

    vol = np.full((20, 24, 16), np.nan)
    vol[2:18, 2:22, 2:14] = 0.0
    vol[6:9, 6:10, 5:8] = 2.0
    mask = np.isfinite(vol) & (vol > 1)
    vfig = bp.plot_volume(vol, np.diag([1.8, 1.8, 1.8, 1.0]), tmp_path / "v.png", threshold=0.5, roi=mask)
    vpx = _rgb(vfig.path)
    for name in ("glass x", "glass y", "glass z"):
        p = _crop(vpx, vfig.panels[name])
        lit, line = np.argwhere(_coloured(p)), np.argwhere(_outline(p))
        assert len(lit) > 10 and len(line) > 4, name
        lo, hi = line.min(axis=0) - 2, line.max(axis=0) + 2
        assert ((lit >= lo) & (lit <= hi)).all(), name  # every coloured pixel inside the outline's box


def test_full_resolution_map_is_drawn_by_its_fsaverage5_vertices(occipital: np.ndarray, tmp_path: Path) -> None:
    """fsaverage's first 10,242 vertices per hemisphere are fsaverage5's: the rest must not change the picture."""
    rng = np.random.default_rng(0)
    full = {h: rng.uniform(-5, 5, 163_842) for h in ("lh", "rh")}
    for h in full:
        full[h][:N5] = occipital.astype(float) if h == "lh" else 0.0
    a = bp.plot_surface(full, tmp_path / "full.png", threshold=0.5, vmax=1.0, subjects_dir=tmp_path / "none")
    b = bp.plot_surface({"lh": occipital.astype(float), "rh": np.zeros(N5)}, tmp_path / "fs5.png", threshold=0.5,
                        vmax=1.0)  # fmt: skip
    assert any("subsampled from 163842" in n for n in a.notes)
    pa, pb = _rgb(a.path), _rgb(b.path)
    for name, box in a.panels.items():
        assert np.array_equal(_crop(pa, box), _crop(pb, box)), name
    assert bp.to_fsaverage5(np.arange(40_962.0))[-1] == N5 - 1
    with pytest.raises(DataError, match="no fsaverage resolution"):
        bp.to_fsaverage5(np.zeros(5000))


def test_map_files_and_errors(tmp_path: Path) -> None:
    import nibabel as nib

    v = np.zeros(N5, np.float32)
    v[:500] = 1.0
    nib.save(nib.MGHImage(v.reshape(-1, 1, 1), np.eye(4)), tmp_path / "lh.r.mgh")
    with pytest.raises(DataError, match="other hemisphere"):
        bp.read_map(tmp_path / "lh.r.mgh")
    nib.save(nib.MGHImage(np.zeros((N5, 1, 1), np.float32), np.eye(4)), tmp_path / "rh.r.mgh")
    kind, data = bp.read_map(tmp_path / "rh.r.mgh")
    assert kind == "surface" and data["lh"][:500].sum() == 500
    np.save(tmp_path / "odd.npy", np.zeros(7))
    with pytest.raises(DataError, match="2 × an fsaverage"):
        bp.read_map(tmp_path / "odd.npy")
    with pytest.raises(DataError, match="not a volume"):
        bp.plot_map_file(tmp_path / "lh.r.mgh", tmp_path / "x.png", space="volume")
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(DataError, match="cannot read"):
        bp.read_map(tmp_path / "bad.nii.gz")
    with pytest.raises(DataError, match="no finite value"):
        bp.plot_surface({"lh": np.full(N5, np.nan), "rh": np.full(N5, np.nan)}, tmp_path / "n.png")
    off = np.full(163_842, np.nan)
    off[[20_000, 90_000]] = 0.5  # a tiny full-resolution map whose vertices are all off fsaverage5's
    with pytest.raises(
        DataError, match=r"its 2 vertices with values all lie off fsaverage5's first 10242 .*SUBJECTS_DIR"
    ):
        bp.plot_surface({"lh": off, "rh": np.full(163_842, np.nan)}, tmp_path / "off.png", subjects_dir=tmp_path)


def test_plot_map_command(tmp_path: Path) -> None:
    import nibabel as nib
    from typer.testing import CliRunner

    from llmvem.cli.app import app

    vol = np.full((10, 12, 8), np.nan, np.float32)
    vol[2:8, 2:10, 2:6] = 0.2
    vol[3:5, 3:5, 3:5] = 0.9
    nib.save(nib.Nifti1Image(vol, np.diag([1.8, 1.8, 1.8, 1.0])), tmp_path / "r.nii.gz")
    res = CliRunner().invoke(app, ["plot", "map", str(tmp_path / "r.nii.gz"), "--threshold", "0.5"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r.png").is_file() and _coloured(_rgb(tmp_path / "r.png")).sum() > 10
    res = CliRunner().invoke(app, ["plot", "map", str(tmp_path / "r.nii.gz"), "--space", "fsaverage"])
    assert res.exit_code == 2 and "not a fsaverage one" in res.output


def test_full_resolution_on_freesurfer_fsaverage_from_subjects_dir(
    occipital: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``$SUBJECTS_DIR/fsaverage/surf/{lh,rh}.inflated`` present a finer map is drawn on those meshes (here a
    stand-in: fsaverage5's inflated mesh padded to fsaverage6's 40,962 vertices), without subsampling."""
    import nibabel.freesurfer as fsio
    from nilearn import datasets

    fs5 = datasets.load_fsaverage("fsaverage5")["inflated"]
    surf = tmp_path / "subjects" / "fsaverage" / "surf"
    surf.mkdir(parents=True)
    n6 = bp.FSAVERAGE_VERTICES["fsaverage6"]
    for hemi, part in bp.HEMIS.items():
        mesh = fs5.parts[part]
        coords = np.vstack([mesh.coordinates, np.repeat(mesh.coordinates[:1], n6 - N5, axis=0)])
        fsio.write_geometry(str(surf / f"{hemi}.inflated"), coords.astype(np.float32), np.asarray(mesh.faces))
    monkeypatch.setenv("SUBJECTS_DIR", str(tmp_path / "subjects"))
    lh = np.zeros(n6)
    lh[:N5] = occipital
    fig = bp.plot_surface({"lh": lh, "rh": np.zeros(n6)}, tmp_path / "full.png", threshold=0.5)
    assert fig.notes[0].startswith("drawn on fsaverage from") and not any("subsampled" in n for n in fig.notes)
    assert "lh flat" not in fig.panels  # FreeSurfer ships no flat patch for fsaverage
    px = _rgb(fig.path)
    assert _coloured(_crop(px, fig.panels["lh lateral"])).sum() > 200
    assert _coloured(_crop(px, fig.panels["rh lateral"])).sum() == 0


def _ico_levels_nested(sphere_xyz: np.ndarray) -> float:
    """Largest angle (degrees) between a vertex added at an icosahedron level and the normalised midpoint of its two
    nearest vertices of the levels before: ~0 when the vertex order is the nested ico order FreeSurfer uses."""
    unit = sphere_xyz / np.linalg.norm(sphere_xyz, axis=1, keepdims=True)
    worst = 0.0
    for lo, hi in [(12, 42), (42, 162), (162, 642), (642, 2562), (2562, 10242)]:
        older, new = unit[:lo], unit[lo:hi]
        pair = np.argsort(-(new @ older.T), axis=1)[:, :2]
        mid = older[pair[:, 0]] + older[pair[:, 1]]
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        worst = max(worst, float(np.degrees(np.arccos(np.clip((mid * new).sum(1), -1, 1))).max()))
    return worst


def test_fsaverage_vertex_order_is_nested_icosahedra() -> None:
    """The premise of subsampling to the first 10,242 vertices, checked on FreeSurfer's own fsaverage5 sphere (as
    nilearn ships it): every ico level's vertices are appended after the coarser levels' as edge midpoints, so the
    first 642 / 2,562 vertices are fsaverage3 / fsaverage4. The same construction gives fsaverage6/7 (Winkler 2016,
    "Downsampling (decimating) a brain surface", brainder.org). A shuffled order fails the check."""
    import nibabel as nib
    from nilearn import datasets

    mesh = datasets.fetch_surf_fsaverage("fsaverage5")
    for hemi in ("sphere_left", "sphere_right"):
        xyz = np.asarray(nib.load(mesh[hemi]).darrays[0].data, dtype=float)
        assert xyz.shape == (N5, 3)
        assert _ico_levels_nested(xyz) < 0.05
    shuffled = xyz[np.random.default_rng(0).permutation(N5)]
    assert _ico_levels_nested(shuffled) > 1.0
