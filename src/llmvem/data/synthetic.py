"""The offline demo set: procedurally drawn scenes, ground-truth captions and a simulated two-ROI visual cortex.

:func:`generate_demo_set` needs no data and no network. It writes, under ``out_dir``::

    images/demo_0001.png ...   RGB PNGs, image_size × image_size
    captions.jsonl             {"image": "demo_0001.png", "text": "A large red fish on the left, on sand."}
    latents.csv                the ground-truth factors of each image (index ``id``)
    voxels.csv                 one row per simulated voxel: roi, receptive field, true ncsnr
    responses.npz              trials (n, n_repeats, n_voxels), responses (n, n_voxels), ncsnr, n_repeats
    splits.json                {"train": [...], "test": [...]}, stratified over categories
    manifest.json              parameters + SHA-256 of every file above; written last, atomically

and returns a :class:`DemoSet`. A directory whose manifest matches the parameters and whose files match their hashes
is reused as is; anything else (no manifest, other parameters, a changed file) is regenerated.

Scenes. Each image shows one object of 12 categories (animals: dog, cat, bird, fish, horse; food: apple, banana,
cake; artefacts: car, bicycle, chair, house), drawn as a distinctive glyph from ellipses, polygons and lines, in one
of 10 named colours, small or large, at one of 5 positions (left, right, centre, top, bottom), possibly mirrored, on
one of 5 backgrounds (light grey, dark blue, green grass, sand, textured noise of random contrast). Factors are
balanced (each level tiled, then shuffled) so they are nearly independent; colours too close to the background's
colour are redrawn. The caption states category, colour, size, position and background with varied templates.

Simulated cortex (two ROIs, ``n_voxels_per_roi`` voxels each).

* ``early`` sees pixels only. From the rendered image we take, on a 28 × 28 grid, local luminance contrast (the
  standard deviation of luminance in each cell) and the mean R, G, B of each cell. Each voxel has a Gaussian
  receptive field (random centre, log-uniform size) and responds with a compressive-spatial-summation contrast term
  (RF-weighted contrast)^n, 0.3 ≤ n ≤ 0.8 (Kay et al. 2013), plus a colour term (random R/G/B weights · RF-weighted
  channel means), mixed with a random weight.
* ``semantic`` sees meaning only. Each category has a hand-written vector of 12 semantic attributes
  (:data:`SEMANTIC_ATTRIBUTES`: animate, edible, man-made, natural, can-move, size-in-world, found-indoors, has-legs,
  has-wheels, furry, sweet, rideable); the background adds one scene attribute (natural outdoor scene: grass, sand).
  Each voxel weights a random sparse subset of the attributes; the scene term is small.

Both drives pass through a mild nonlinearity and are z-scored over images (signal variance 1). Each voxel gets a
true ncsnr uniform in [0.3, 1.5] and single trials are signal + N(0, 1/ncsnr²), independent over repeats, so the
noise ceiling of the 3-repeat mean spans about 0.2 to 0.85. ``responses`` are the trial means and the ``ncsnr`` the
pipeline sees is estimated from the trials with :func:`~llmvem.data.brain.ncsnr_from_repeats`.

All randomness comes from ``numpy.random.SeedSequence([seed, stream, ...])``; the rendering of image i depends only
on (seed, i) and its factors. PNGs are written without metadata at a fixed compression level and the npz with fixed
zip timestamps, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from llmvem.data.brain import BrainData, ncsnr_from_repeats
from llmvem.data.stimuli import StimulusSet
from llmvem.errors import ConfigError, DataError
from llmvem.hashing import hash_bytes, hash_file

GENERATOR_VERSION = 1
"""Bump when a change to this module changes its output, so that stale sets are regenerated."""

TEST_FRACTION = 0.25
GRID = 28
"""Side of the grid on which the early ROI reads local contrast and colour."""
NCSNR_RANGE = (0.3, 1.5)

MANIFEST = "manifest.json"
_KIND = "llmvem-demo-set"
_RGB = tuple[int, int, int]

CATEGORIES: dict[str, str] = {
    "dog": "animal",
    "cat": "animal",
    "bird": "animal",
    "fish": "animal",
    "horse": "animal",
    "apple": "food",
    "banana": "food",
    "cake": "food",
    "car": "artefact",
    "bicycle": "artefact",
    "chair": "artefact",
    "house": "artefact",
}
"""Category → superordinate class."""

SEMANTIC_ATTRIBUTES: tuple[str, ...] = (
    "animate",
    "edible",
    "man_made",
    "natural",
    "can_move",
    "size_in_world",
    "found_indoors",
    "has_legs",
    "has_wheels",
    "furry",
    "sweet",
    "rideable",
)
_ATTRIBUTE_VALUES: dict[str, tuple[float, ...]] = {
    #         anim edib made natu move size indo legs whee furr swee ride
    "dog": (1.0, 0.0, 0.0, 1.0, 1.0, 0.40, 0.6, 1.0, 0.0, 1.0, 0.0, 0.0),
    "cat": (1.0, 0.0, 0.0, 1.0, 1.0, 0.25, 0.8, 1.0, 0.0, 1.0, 0.0, 0.0),
    "bird": (1.0, 0.0, 0.0, 1.0, 1.0, 0.10, 0.2, 1.0, 0.0, 0.0, 0.0, 0.0),
    "fish": (1.0, 0.5, 0.0, 1.0, 1.0, 0.15, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0),
    "horse": (1.0, 0.0, 0.0, 1.0, 1.0, 0.85, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0),
    "apple": (0.0, 1.0, 0.0, 1.0, 0.0, 0.10, 0.6, 0.0, 0.0, 0.0, 0.6, 0.0),
    "banana": (0.0, 1.0, 0.0, 1.0, 0.0, 0.12, 0.5, 0.0, 0.0, 0.0, 0.8, 0.0),
    "cake": (0.0, 1.0, 1.0, 0.0, 0.0, 0.20, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "car": (0.0, 0.0, 1.0, 0.0, 1.0, 0.90, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0),
    "bicycle": (0.0, 0.0, 1.0, 0.0, 1.0, 0.60, 0.2, 0.0, 1.0, 0.0, 0.0, 1.0),
    "chair": (0.0, 0.0, 1.0, 0.0, 0.0, 0.45, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0),
    "house": (0.0, 0.0, 1.0, 0.0, 0.0, 1.00, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
}

COLOURS: dict[str, _RGB] = {
    "red": (205, 35, 35),
    "green": (45, 165, 55),
    "blue": (45, 75, 215),
    "yellow": (245, 220, 45),
    "orange": (245, 140, 25),
    "purple": (135, 55, 175),
    "brown": (125, 78, 38),
    "black": (22, 22, 22),
    "white": (246, 246, 246),
    "grey": (128, 128, 128),
}
SIZES: dict[str, tuple[float, float]] = {"small": (0.28, 0.36), "large": (0.56, 0.66)}
"""Size → range of the glyph's side as a fraction of the image side."""
POSITIONS: tuple[str, ...] = ("left", "right", "centre", "top", "bottom")
BACKGROUNDS: dict[str, _RGB] = {
    "light grey": (202, 202, 202),
    "dark blue": (24, 36, 96),
    "green grass": (72, 148, 58),
    "sand": (222, 196, 146),
    "textured noise": (128, 128, 128),
}
"""Background → its mean colour (used to keep objects visible)."""
_NATURAL_SCENE = {"light grey": 0.0, "dark blue": 0.0, "green grass": 1.0, "sand": 1.0, "textured noise": 0.0}


# ====================================================================== public API
@dataclass
class DemoSet:
    """A generated demo set.

    Attributes:
        root: the directory it lives in.
        stimuli: the n images, ids ``demo_0001`` ..., labels = category.
        captions: stimulus id → ground-truth caption.
        brain: mean-over-repeats responses (n, 2·v) of ROIs ``early`` and ``semantic``, ncsnr estimated from
            ``trials``, ``n_repeats``, train/test splits stratified over categories.
        trials: float32 (n, n_repeats, 2·v) single-trial responses.
        latents: ground-truth factors per image (index = stimulus id): category, superordinate, colour, size,
            position, background, mirrored, scale, cx, cy (fractions of the image side), bg_contrast (NaN unless
            textured noise).
        attributes: (12 categories × 12) semantic attribute table that drives the ``semantic`` ROI.
        params: the generation parameters (as in the manifest).
    """

    root: Path
    stimuli: StimulusSet
    captions: dict[str, str]
    brain: BrainData
    trials: np.ndarray
    latents: pd.DataFrame
    attributes: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def captions_path(self) -> Path:
        """The captions JSONL (for the ``import`` describer)."""
        return self.root / "captions.jsonl"


def semantic_attributes() -> pd.DataFrame:
    """(12 categories × 12 attributes) float table of :data:`SEMANTIC_ATTRIBUTES`, rows in :data:`CATEGORIES` order."""
    return pd.DataFrame(
        [_ATTRIBUTE_VALUES[c] for c in CATEGORIES],
        index=pd.Index(list(CATEGORIES), name="category"),
        columns=list(SEMANTIC_ATTRIBUTES),
    )


def generate_demo_set(
    out_dir: str | Path,
    n_images: int = 240,
    n_voxels_per_roi: int = 200,
    n_repeats: int = 3,
    image_size: int = 224,
    seed: int = 0,
) -> DemoSet:
    """Generate (or reuse) the demo set in ``out_dir``; see the module docstring for what is written.

    Args:
        n_images: number of images (≥ 24, spread evenly over the 12 categories).
        n_voxels_per_roi: simulated voxels in each of the two ROIs.
        n_repeats: presentations per image (≥ 2, needed to estimate the ncsnr).
        image_size: side of the square images in pixels (≥ 32).
        seed: non-negative integer; equal seeds and parameters give byte-identical files.
    Returns:
        The :class:`DemoSet`, read back from ``out_dir``.
    """
    params = _check_params(n_images, n_voxels_per_roi, n_repeats, image_size, seed)
    root = Path(out_dir)
    if _complete_manifest(root, params) is not None:
        return load_demo_set(root)
    (root / MANIFEST).unlink(missing_ok=True)  # from here on the directory is incomplete until the manifest is back
    files = _write_set(root, params)
    manifest = {"kind": _KIND, "generator_version": GENERATOR_VERSION, "params": params, "files": files}
    _write_atomic(root / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return load_demo_set(root)


def load_demo_set(out_dir: str | Path) -> DemoSet:
    """Read back a set written by :func:`generate_demo_set`.

    Raises:
        DataError: if the directory holds no complete set (no manifest) or a file is missing or changed.
    """
    root = Path(out_dir)
    manifest = _read_manifest(root)
    if manifest is None:
        raise DataError(
            f"{root} holds no complete demo set ({MANIFEST} missing or unreadable); "
            "generate it with llmvem.data.synthetic.generate_demo_set (or run `llmvem demo`)"
        )
    bad = _changed_files(root, manifest["files"])
    if bad:
        raise DataError(
            f"demo set in {root}: {len(bad)} file(s) missing or changed since generation: {bad[:5]}; "
            f"delete {root / MANIFEST} and generate it again"
        )
    params = dict(manifest["params"])
    files: dict[str, str] = manifest["files"]

    latents = pd.read_csv(root / "latents.csv", index_col="id", keep_default_na=True)
    latents.index = latents.index.astype(str)
    ids = list(latents.index)
    image_files = [f"images/{i}.png" for i in ids]
    stimuli = StimulusSet(
        ids=ids,
        paths=[root / f for f in image_files],
        name="demo",
        labels=[str(c) for c in latents["category"]],
        _hashes=[files[f] for f in image_files],
    )
    captions: dict[str, str] = {}
    with open(root / "captions.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                captions[Path(rec["image"]).stem] = str(rec["text"])
    with np.load(root / "responses.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    voxels = pd.read_csv(root / "voxels.csv")
    splits = json.loads((root / "splits.json").read_text(encoding="utf-8"))
    brain = BrainData(
        responses=arrays["responses"],
        stimulus_ids=ids,
        voxels=voxels,
        ncsnr=arrays["ncsnr"],
        n_repeats=arrays["n_repeats"],
        splits={k: [str(s) for s in v] for k, v in splits.items()},
        name=f"demo-s{params['seed']}",
    )
    return DemoSet(
        root=root,
        stimuli=stimuli,
        captions=captions,
        brain=brain,
        trials=arrays["trials"],
        latents=latents,
        attributes=semantic_attributes(),
        params=params,
    )


# ====================================================================== generation
def _check_params(n_images: int, n_voxels_per_roi: int, n_repeats: int, image_size: int, seed: int) -> dict[str, Any]:
    checks = [
        (n_images >= 2 * len(CATEGORIES), f"n_images must be ≥ {2 * len(CATEGORIES)}, got {n_images}"),
        (n_voxels_per_roi >= 1, f"n_voxels_per_roi must be ≥ 1, got {n_voxels_per_roi}"),
        (n_repeats >= 2, f"n_repeats must be ≥ 2 (the ncsnr is estimated from repeats), got {n_repeats}"),
        (image_size >= 32, f"image_size must be ≥ 32, got {image_size}"),
        (seed >= 0, f"seed must be a non-negative integer, got {seed}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"demo set: {msg}")
    return {
        "n_images": int(n_images),
        "n_voxels_per_roi": int(n_voxels_per_roi),
        "n_repeats": int(n_repeats),
        "image_size": int(image_size),
        "seed": int(seed),
    }


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _write_set(root: Path, params: dict[str, Any]) -> dict[str, str]:
    """Render, simulate and write every file but the manifest; returns relative path → SHA-256."""
    n, seed, size = params["n_images"], params["seed"], params["image_size"]
    width = max(4, len(str(n)))
    ids = [f"demo_{k + 1:0{width}d}" for k in range(n)]
    latents = _sample_latents(ids, _rng(seed, 1))

    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    features = np.empty((n, 4, GRID, GRID), dtype=np.float64)
    for k, sid in enumerate(ids):
        pixels = _render(latents.iloc[k], size, _rng(seed, 2, k))
        features[k] = _early_features(pixels)
        buf = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buf, format="PNG", compress_level=1)
        files[f"images/{sid}.png"] = _write_atomic(img_dir / f"{sid}.png", buf.getvalue())
    keep = {f"{sid}.png" for sid in ids}
    for stale in img_dir.glob("demo_*.png"):
        if stale.name not in keep:
            stale.unlink()

    captions = _captions(latents, _rng(seed, 3))
    lines = [json.dumps({"image": f"{sid}.png", "text": captions[sid]}) for sid in ids]
    files["captions.jsonl"] = _write_atomic(root / "captions.jsonl", ("\n".join(lines) + "\n").encode())
    files["latents.csv"] = _write_atomic(root / "latents.csv", latents.to_csv(index_label="id").encode())

    v = params["n_voxels_per_roi"]
    early, early_vox = _simulate_early(features, v, _rng(seed, 4))
    semantic = _simulate_semantic(latents, v, _rng(seed, 5))
    signal = np.concatenate([early, semantic], axis=1)
    noise_rng = _rng(seed, 6)
    ncsnr_true = noise_rng.uniform(*NCSNR_RANGE, size=2 * v)
    noise = noise_rng.standard_normal((n, params["n_repeats"], 2 * v)) / ncsnr_true
    trials = (signal[:, None, :] + noise).astype(np.float32)
    voxels = pd.DataFrame(
        {
            "roi": ["early"] * v + ["semantic"] * v,
            "rf_x": np.concatenate([early_vox[:, 0], np.full(v, np.nan)]),
            "rf_y": np.concatenate([early_vox[:, 1], np.full(v, np.nan)]),
            "rf_size": np.concatenate([early_vox[:, 2], np.full(v, np.nan)]),
            "ncsnr_true": ncsnr_true,
        }
    )
    files["voxels.csv"] = _write_atomic(root / "voxels.csv", voxels.to_csv(index=False).encode())
    arrays = {
        "trials": trials,
        "responses": trials.mean(axis=1, dtype=np.float64).astype(np.float32),
        "ncsnr": ncsnr_from_repeats(trials),
        "n_repeats": np.full(n, params["n_repeats"], dtype=np.int64),
    }
    files["responses.npz"] = _write_atomic(root / "responses.npz", _npz_bytes(arrays))

    splits = _stratified_split(ids, list(latents["category"]), _rng(seed, 7))
    files["splits.json"] = _write_atomic(root / "splits.json", (json.dumps(splits, indent=1) + "\n").encode())
    return files


def _balanced(levels: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` draws that use every level equally often (± 1), in random order."""
    reps = [levels[k % len(levels)] for k in range(n)]
    return [reps[k] for k in rng.permutation(n)]


def _sample_latents(ids: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Ground-truth factors of every image (index ``id``)."""
    n = len(ids)
    cats = _balanced(list(CATEGORIES), n, rng)
    colours = _balanced(list(COLOURS), n, rng)
    sizes = _balanced(list(SIZES), n, rng)
    positions = _balanced(list(POSITIONS), n, rng)
    backgrounds = _balanced(list(BACKGROUNDS), n, rng)
    rows = []
    for k in range(n):
        colour, bg = colours[k], backgrounds[k]
        while _too_close(COLOURS[colour], BACKGROUNDS[bg]):
            colour = str(rng.choice(list(COLOURS)))
        lo, hi = SIZES[sizes[k]]
        scale = float(rng.uniform(lo, hi))
        cx, cy = _place(positions[k], scale, rng)
        rows.append(
            {
                "category": cats[k],
                "superordinate": CATEGORIES[cats[k]],
                "colour": colour,
                "size": sizes[k],
                "position": positions[k],
                "background": bg,
                "mirrored": bool(rng.random() < 0.5),
                "scale": round(scale, 4),
                "cx": round(cx, 4),
                "cy": round(cy, 4),
                "bg_contrast": round(float(rng.uniform(0.15, 1.0)), 4) if bg == "textured noise" else np.nan,
            }
        )
    return pd.DataFrame(rows, index=pd.Index(ids, name="id"))


def _too_close(a: _RGB, b: _RGB) -> bool:
    return math.dist(a, b) < 75.0


def _place(position: str, scale: float, rng: np.random.Generator) -> tuple[float, float]:
    """Centre (x, y) of the glyph, as fractions of the image side, for a named position."""
    edge = scale / 2 + 0.03  # nearest the centre of a glyph may come to an image border
    off = rng.uniform(-0.04, 0.04, size=2)
    centre = 0.5 + off
    if position == "left":
        return edge + abs(off[0]) * 0.5, float(centre[1])
    if position == "right":
        return 1 - edge - abs(off[0]) * 0.5, float(centre[1])
    if position == "top":
        return float(centre[0]), edge + abs(off[1]) * 0.5
    if position == "bottom":
        return float(centre[0]), 1 - edge - abs(off[1]) * 0.5
    return float(centre[0]), float(centre[1])


# ---------------------------------------------------------------------- rendering
def _render(lat: pd.Series, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (size, size, 3) image of one scene.

    The glyph is drawn at 2× on a transparent RGBA layer (colour where drawn, zero elsewhere, i.e. premultiplied),
    averaged over 2 × 2 blocks (premultiplied colour and coverage as alpha) and composited over the background.
    """
    bg = _background(str(lat["background"]), size, float(lat["bg_contrast"]), rng)
    big = 2 * size
    layer = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    side = float(lat["scale"]) * big
    x0, y0 = float(lat["cx"]) * big - side / 2, float(lat["cy"]) * big - side / 2
    base = COLOURS[str(lat["colour"])]
    jitter = rng.integers(-10, 11, size=3)
    fill: _RGB = (
        int(np.clip(base[0] + jitter[0], 0, 255)),
        int(np.clip(base[1] + jitter[1], 0, 255)),
        int(np.clip(base[2] + jitter[2], 0, 255)),
    )
    _GLYPHS[str(lat["category"])](_Pen(ImageDraw.Draw(layer), x0, y0, side, bool(lat["mirrored"]), fill))
    q = np.asarray(layer, dtype=np.uint16)
    glyph = (q[0::2, 0::2] + q[1::2, 0::2] + q[0::2, 1::2] + q[1::2, 1::2]).astype(np.float32) / 4.0  # 2 × 2 box
    alpha = glyph[..., 3:] / 255.0
    out = bg * (1.0 - alpha) + glyph[..., :3]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _smooth_noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """float32 (size, size) noise, roughly unit variance, with blobs of about size / cells pixels."""
    coarse = rng.standard_normal((cells, cells), dtype=np.float32)
    out = np.asarray(Image.fromarray(coarse, "F").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    return out / (out.std() + 1e-6)


def _background(name: str, size: int, contrast: float, rng: np.random.Generator) -> np.ndarray:
    """float32 (size, size, 3) background with values in [0, 255]."""
    base = np.array(BACKGROUNDS[name], dtype=np.float32)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)[:, None, None]  # top → bottom
    if name == "light grey":
        img = base + 6.0 * ramp
    elif name == "dark blue":
        img = base + np.array([6.0, 10.0, 22.0], dtype=np.float32) * ramp
    elif name == "green grass":
        img = base + 16.0 * _smooth_noise(size, 6, rng)[..., None]
        im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(im)
        for _ in range(int(0.6 * size)):
            x, y = rng.uniform(0, size), rng.uniform(0, size)
            h, lean = rng.uniform(0.03, 0.08) * size, rng.uniform(-0.4, 0.4)
            g = int(rng.integers(95, 190))
            draw.line([(x, y), (x + lean * h, y - h)], fill=(int(0.45 * g), g, int(0.3 * g)), width=max(1, size // 150))
        img = np.asarray(im, dtype=np.float32)
    elif name == "sand":
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        ripples = 7.0 * np.sin(2 * np.pi * (9 * yy + 0.6 * np.sin(2 * np.pi * (xx + rng.uniform()))))
        grain = 5.0 * _smooth_noise(size, size // 2, rng)
        img = base + (ripples + grain)[..., None] * np.array([1.0, 0.95, 0.8], dtype=np.float32)
    else:  # textured noise
        cells = int(rng.integers(8, 33))
        tex = 0.85 * _smooth_noise(size, cells, rng) + 0.15 * _smooth_noise(size, size // 2, rng)
        img = np.repeat((base[0] + 70.0 * contrast * tex)[..., None], 3, axis=2)
    return np.clip(np.broadcast_to(img, (size, size, 3)), 0, 255).astype(np.float32)


def _shade(c: _RGB, f: float, to: _RGB = (0, 0, 0)) -> _RGB:
    """Blend colour ``c`` towards ``to`` by fraction ``f``."""
    return (round(c[0] + f * (to[0] - c[0])), round(c[1] + f * (to[1] - c[1])), round(c[2] + f * (to[2] - c[2])))


class _Pen:
    """Draws in glyph coordinates: the unit square (x right, y down) mapped onto the glyph's box, mirrored or not."""

    def __init__(self, draw: ImageDraw.ImageDraw, x0: float, y0: float, side: float, mirror: bool, fill: _RGB) -> None:
        self.draw, self.x0, self.y0, self.side, self.mirror = draw, x0, y0, side, mirror
        self.fill = fill
        light = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2] > 50
        self.outline: _RGB = _shade(fill, 0.55) if light else _shade(fill, 0.35, (255, 255, 255))
        self.dark: _RGB = _shade(fill, 0.35) if light else _shade(fill, 0.2, (255, 255, 255))
        self.tint: _RGB = _shade(fill, 0.55, (255, 255, 255))
        self.detail: _RGB = (20, 20, 20) if light else (235, 235, 235)

    def xy(self, x: float, y: float) -> tuple[float, float]:
        return self.x0 + (1.0 - x if self.mirror else x) * self.side, self.y0 + y * self.side

    def w(self, width: float) -> int:
        return max(1, round(width * self.side))

    def box(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        (a, b), (c, d) = self.xy(x0, y0), self.xy(x1, y1)
        return [min(a, c), min(b, d), max(a, c), max(b, d)]

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, fill: _RGB | None = None, line: bool = True) -> None:
        self.draw.ellipse(
            self.box(x0, y0, x1, y1),
            fill=fill or self.fill,
            outline=self.outline if line else None,
            width=self.w(0.015),
        )

    def circle(self, cx: float, cy: float, r: float, fill: _RGB | None = None, line: bool = True) -> None:
        self.ellipse(cx - r, cy - r, cx + r, cy + r, fill, line)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: _RGB | None = None, line: bool = True) -> None:
        self.draw.rectangle(
            self.box(x0, y0, x1, y1),
            fill=fill or self.fill,
            outline=self.outline if line else None,
            width=self.w(0.015),
        )

    def poly(self, pts: Sequence[tuple[float, float]], fill: _RGB | None = None, line: bool = True) -> None:
        self.draw.polygon(
            [self.xy(x, y) for x, y in pts],
            fill=fill or self.fill,
            outline=self.outline if line else None,
            width=self.w(0.015),
        )

    def line(self, pts: Sequence[tuple[float, float]], width: float, fill: _RGB | None = None) -> None:
        self.draw.line([self.xy(x, y) for x, y in pts], fill=fill or self.fill, width=self.w(width), joint="curve")

    def ring(self, cx: float, cy: float, r: float, width: float, fill: _RGB) -> None:
        self.draw.ellipse(self.box(cx - r, cy - r, cx + r, cy + r), outline=fill, width=self.w(width))


_EYE_WHITE: _RGB = (250, 250, 250)
_PUPIL: _RGB = (15, 15, 15)


def _fish(p: _Pen) -> None:
    p.poly([(0.30, 0.30), (0.44, 0.08), (0.58, 0.32)])  # dorsal fin
    p.poly([(0.62, 0.50), (0.97, 0.20), (0.88, 0.50), (0.97, 0.80)])  # tail
    p.ellipse(0.03, 0.25, 0.74, 0.75)
    p.poly([(0.36, 0.70), (0.46, 0.86), (0.52, 0.70)], fill=p.dark)  # pelvic fin
    p.line([(0.30, 0.36), (0.26, 0.50), (0.30, 0.64)], 0.02, p.outline)  # gill
    p.circle(0.16, 0.43, 0.06, _EYE_WHITE)
    p.circle(0.15, 0.43, 0.03, _PUPIL, line=False)
    p.line([(0.04, 0.55), (0.11, 0.56)], 0.015, p.outline)


def _dog(p: _Pen) -> None:
    p.line([(0.22, 0.42), (0.12, 0.30), (0.07, 0.18)], 0.05)  # tail
    for x in (0.22, 0.35, 0.58, 0.70):
        p.rect(x, 0.52, x + 0.08, 0.92)
        p.rect(x - 0.01, 0.89, x + 0.10, 0.95, fill=p.dark)
    p.ellipse(0.15, 0.32, 0.84, 0.66)
    p.ellipse(0.64, 0.10, 0.92, 0.40)  # head
    p.ellipse(0.82, 0.23, 0.99, 0.37)  # snout
    p.circle(0.975, 0.27, 0.03, _PUPIL, line=False)
    p.ellipse(0.63, 0.12, 0.73, 0.40, fill=p.dark)  # floppy ear
    p.circle(0.81, 0.21, 0.028, _PUPIL, line=False)
    p.poly([(0.66, 0.42), (0.72, 0.52), (0.78, 0.42)], fill=(200, 30, 40))  # collar tag


def _cat(p: _Pen) -> None:
    p.line([(0.70, 0.93), (0.86, 0.88), (0.92, 0.72), (0.86, 0.56)], 0.06)  # tail
    p.ellipse(0.25, 0.44, 0.75, 0.98)
    p.poly([(0.29, 0.30), (0.31, 0.02), (0.47, 0.17)])  # ears
    p.poly([(0.71, 0.30), (0.69, 0.02), (0.53, 0.17)])
    p.poly([(0.32, 0.22), (0.33, 0.09), (0.42, 0.17)], fill=(235, 150, 170), line=False)
    p.poly([(0.68, 0.22), (0.67, 0.09), (0.58, 0.17)], fill=(235, 150, 170), line=False)
    p.ellipse(0.27, 0.10, 0.73, 0.52)  # head
    for x in (0.41, 0.59):
        p.ellipse(x - 0.05, 0.22, x + 0.05, 0.32, fill=(185, 225, 60))
        p.ellipse(x - 0.012, 0.225, x + 0.012, 0.315, fill=_PUPIL, line=False)
    p.poly([(0.46, 0.36), (0.54, 0.36), (0.50, 0.41)], fill=(235, 120, 150))
    for dy in (-0.03, 0.03):
        p.line([(0.43, 0.41), (0.16, 0.39 + dy * 2)], 0.008, p.detail)
        p.line([(0.57, 0.41), (0.84, 0.39 + dy * 2)], 0.008, p.detail)


def _bird(p: _Pen) -> None:
    for x in (0.42, 0.52):
        p.line([(x, 0.66), (x - 0.01, 0.90)], 0.022, (215, 140, 40))
        p.line([(x - 0.07, 0.90), (x + 0.06, 0.90)], 0.02, (215, 140, 40))
    p.poly([(0.26, 0.46), (0.02, 0.34), (0.06, 0.48), (0.02, 0.62)])  # tail
    p.ellipse(0.16, 0.32, 0.70, 0.72)
    p.circle(0.70, 0.32, 0.15)  # head
    p.poly([(0.82, 0.26), (0.99, 0.33), (0.82, 0.38)], fill=(235, 125, 10))
    p.circle(0.74, 0.28, 0.035, _EYE_WHITE)
    p.circle(0.75, 0.28, 0.018, _PUPIL, line=False)
    p.poly([(0.28, 0.44), (0.55, 0.40), (0.62, 0.50), (0.38, 0.64)], fill=p.dark)  # wing


def _horse(p: _Pen) -> None:
    p.line([(0.15, 0.34), (0.07, 0.50), (0.08, 0.72)], 0.05, p.dark)  # tail
    for x in (0.20, 0.30, 0.60, 0.70):
        p.rect(x, 0.48, x + 0.06, 0.93)
        p.rect(x - 0.005, 0.92, x + 0.065, 0.98, fill=_PUPIL)
    p.ellipse(0.13, 0.28, 0.80, 0.60)
    p.poly([(0.64, 0.40), (0.72, 0.10), (0.84, 0.08), (0.82, 0.46)])  # neck
    p.poly([(0.72, 0.06), (0.84, 0.02), (0.99, 0.20), (0.96, 0.28), (0.84, 0.24), (0.74, 0.16)])  # head
    p.poly([(0.76, 0.07), (0.78, 0.0), (0.82, 0.06)])  # ear
    p.line([(0.73, 0.08), (0.68, 0.22), (0.65, 0.38)], 0.04, p.dark)  # mane
    p.circle(0.85, 0.12, 0.02, _PUPIL, line=False)
    p.circle(0.96, 0.23, 0.012, _PUPIL, line=False)


def _apple(p: _Pen) -> None:
    p.ellipse(0.08, 0.20, 0.58, 0.94)  # two lobes give the dent at top and bottom
    p.ellipse(0.42, 0.20, 0.92, 0.94)
    p.ellipse(0.20, 0.27, 0.80, 0.88, line=False)  # hides the lobes' inner outlines
    p.ellipse(0.22, 0.36, 0.32, 0.52, fill=p.tint, line=False)  # highlight
    p.line([(0.50, 0.30), (0.54, 0.05)], 0.04, (95, 60, 25))  # stem
    p.poly([(0.55, 0.15), (0.69, 0.04), (0.85, 0.07), (0.69, 0.18)], fill=(55, 150, 45))  # leaf


def _banana(p: _Pen) -> None:
    cx, cy, r, thick, n = 0.5, 0.0, 0.58, 0.30, 25
    angles = np.radians(np.linspace(32, 148, n))
    prof = np.sin(np.pi * np.linspace(0, 1, n)) ** 0.7

    def tilt(x: float, y: float) -> tuple[float, float]:  # rotate by 20° about the glyph centre
        c, s = math.cos(math.radians(-20)), math.sin(math.radians(-20))
        return 0.5 + c * (x - 0.5) - s * (y - 0.42), 0.5 + s * (x - 0.5) + c * (y - 0.42)

    def arc(radius: np.ndarray | float) -> list[tuple[float, float]]:
        rr = np.broadcast_to(radius, angles.shape)
        return [tilt(cx + q * math.cos(a), cy + q * math.sin(a)) for q, a in zip(rr, angles, strict=True)]

    p.poly(arc(r) + arc(r - thick * prof)[::-1])
    p.line(arc(r - 0.45 * thick * prof)[4:-4], 0.012, p.outline)  # ridge
    p.line(
        [arc(r)[-1], tilt(cx + (r + 0.05) * math.cos(angles[-1]) + 0.04, cy + r * math.sin(angles[-1]) - 0.03)],
        0.04,
        (90, 60, 25),
    )  # stalk
    x, y = arc(r - 0.1 * thick)[0]
    p.circle(x, y, 0.022, (60, 40, 20), line=False)  # tip


def _cake(p: _Pen) -> None:
    p.ellipse(0.03, 0.86, 0.97, 0.99, fill=(225, 225, 230))  # plate
    p.rect(0.14, 0.50, 0.86, 0.92)
    p.rect(0.14, 0.68, 0.86, 0.74, fill=p.tint, line=False)  # cream layer
    p.ellipse(0.14, 0.42, 0.86, 0.58, fill=p.tint)  # icing
    for x in (0.22, 0.38, 0.54, 0.70):
        p.ellipse(x - 0.04, 0.50, x + 0.04, 0.63, fill=p.tint, line=False)  # drips
    p.rect(0.46, 0.22, 0.54, 0.48, fill=(250, 250, 250))  # candle
    p.line([(0.46, 0.30), (0.54, 0.27)], 0.02, (220, 40, 60))
    p.line([(0.46, 0.40), (0.54, 0.37)], 0.02, (220, 40, 60))
    p.ellipse(0.445, 0.06, 0.555, 0.21, fill=(255, 205, 30), line=False)  # flame
    p.ellipse(0.475, 0.12, 0.525, 0.20, fill=(255, 110, 10), line=False)


def _car(p: _Pen) -> None:
    p.poly([(0.24, 0.46), (0.33, 0.20), (0.68, 0.20), (0.81, 0.46)])  # cabin
    p.poly([(0.31, 0.44), (0.37, 0.25), (0.49, 0.25), (0.49, 0.44)], fill=(170, 210, 240))
    p.poly([(0.53, 0.44), (0.53, 0.25), (0.65, 0.25), (0.74, 0.44)], fill=(170, 210, 240))
    p.draw.rounded_rectangle(
        p.box(0.03, 0.42, 0.97, 0.72), radius=p.w(0.07), fill=p.fill, outline=p.outline, width=p.w(0.015)
    )
    p.line([(0.51, 0.46), (0.51, 0.68)], 0.012, p.outline)
    p.ellipse(0.90, 0.47, 0.97, 0.55, fill=(255, 235, 130))  # headlight
    p.rect(0.03, 0.49, 0.07, 0.55, fill=(220, 40, 30))  # tail light
    for x in (0.25, 0.75):
        p.circle(x, 0.72, 0.13, (28, 28, 28))
        p.circle(x, 0.72, 0.055, (185, 185, 190))


def _bicycle(p: _Pen) -> None:
    tyre: _RGB = (28, 28, 28)
    rear, front, crank, seat, head = (0.21, 0.68), (0.79, 0.68), (0.46, 0.70), (0.38, 0.36), (0.70, 0.34)
    for cx, cy in (rear, front):
        p.ring(cx, cy, 0.20, 0.035, tyre)
        for a in np.radians(np.arange(0, 180, 45)):
            dx, dy = 0.18 * math.cos(a), 0.18 * math.sin(a)
            p.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], 0.006, (150, 150, 150))
    for a, b in ((rear, crank), (crank, seat), (seat, rear), (seat, head), (head, crank), (head, front)):
        p.line([a, b], 0.045)
    p.line([(0.36, 0.30), (seat[0], seat[1])], 0.03, tyre)
    p.ellipse(0.28, 0.25, 0.46, 0.31, fill=tyre, line=False)  # saddle
    p.line([head, (0.68, 0.20), (0.80, 0.18)], 0.03, tyre)  # handlebar
    p.circle(crank[0], crank[1], 0.045, p.dark)
    p.line([(crank[0] - 0.06, crank[1] + 0.06), (crank[0] + 0.06, crank[1] - 0.06)], 0.025, tyre)


def _chair(p: _Pen) -> None:
    p.rect(0.30, 0.56, 0.35, 0.88, fill=p.dark)  # back legs
    p.rect(0.65, 0.56, 0.70, 0.88, fill=p.dark)
    p.rect(0.25, 0.04, 0.31, 0.48)  # back posts
    p.rect(0.69, 0.04, 0.75, 0.48)
    p.rect(0.25, 0.04, 0.75, 0.14)  # top rail
    p.rect(0.25, 0.24, 0.75, 0.29)  # middle rail
    for x in (0.40, 0.48, 0.56):
        p.rect(x, 0.14, x + 0.04, 0.24)  # spindles
    p.poly([(0.22, 0.46), (0.78, 0.46), (0.84, 0.58), (0.16, 0.58)])  # seat
    p.rect(0.18, 0.58, 0.25, 0.97)  # front legs
    p.rect(0.75, 0.58, 0.82, 0.97)
    p.rect(0.25, 0.76, 0.75, 0.80, fill=p.dark)  # stretcher


def _house(p: _Pen) -> None:
    p.rect(0.66, 0.10, 0.76, 0.36, fill=p.dark)  # chimney
    p.poly([(0.03, 0.48), (0.50, 0.08), (0.97, 0.48)], fill=p.dark)  # roof
    p.rect(0.12, 0.46, 0.88, 0.97)  # walls
    p.rect(0.42, 0.66, 0.58, 0.97, fill=(105, 65, 30))  # door
    p.circle(0.55, 0.82, 0.012, (235, 200, 60), line=False)
    for x in (0.18, 0.66):
        p.rect(x, 0.56, x + 0.16, 0.72, fill=(175, 215, 240))
        p.line([(x + 0.08, 0.56), (x + 0.08, 0.72)], 0.012, p.outline)
        p.line([(x, 0.64), (x + 0.16, 0.64)], 0.012, p.outline)
    p.circle(0.50, 0.32, 0.06, (175, 215, 240))  # attic window


_GLYPHS: dict[str, Callable[[_Pen], None]] = {
    "dog": _dog,
    "cat": _cat,
    "bird": _bird,
    "fish": _fish,
    "horse": _horse,
    "apple": _apple,
    "banana": _banana,
    "cake": _cake,
    "car": _car,
    "bicycle": _bicycle,
    "chair": _chair,
    "house": _house,
}


# ---------------------------------------------------------------------- captions
_SIZE_WORDS = {"small": ("small", "small", "little"), "large": ("large", "large", "big")}
_POSITION_PHRASES = {
    "left": ("on the left", "on the left side of the picture", "in the left half of the image"),
    "right": ("on the right", "on the right side of the picture", "in the right half of the image"),
    "centre": ("in the centre", "in the middle of the picture", "at the centre of the image"),
    "top": ("near the top of the picture", "at the top", "in the upper part of the image"),
    "bottom": ("near the bottom of the picture", "at the bottom", "in the lower part of the image"),
}
_BACKGROUND_PHRASES = {
    "light grey": ("on a light grey background", "against a plain light grey background"),
    "dark blue": ("on a dark blue background", "against a dark blue background"),
    "green grass": ("on green grass", "on a grassy green background"),
    "sand": ("on a sandy background", "on sand"),
    "textured noise": ("on a textured noise background", "against a noisy, textured background"),
}
_BACKGROUND_NOUNS = {
    "light grey": "A plain light grey background",
    "dark blue": "A dark blue background",
    "green grass": "Green grass",
    "sand": "A sandy background",
    "textured noise": "A textured noise background",
}
_TEMPLATES = (
    "{Obj} {pos}, {bg}.",
    "{Obj} {bg}, {pos}.",
    "A drawing of {obj} {pos}, {bg}.",
    "{Bgn} with {obj} {pos}.",
    "There is {obj} {pos}, {bg}.",
)


def _article(phrase: str) -> str:
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


def _captions(latents: pd.DataFrame, rng: np.random.Generator) -> dict[str, str]:
    """Stimulus id → a caption stating category, colour, size, position and background."""
    out: dict[str, str] = {}
    for sid, lat in latents.iterrows():
        size = str(rng.choice(_SIZE_WORDS[str(lat["size"])]))
        obj = _article(f"{size} {lat['colour']} {lat['category']}")
        pos = str(rng.choice(_POSITION_PHRASES[str(lat["position"])]))
        bg = str(rng.choice(_BACKGROUND_PHRASES[str(lat["background"])]))
        template = str(rng.choice(_TEMPLATES))
        text = template.format(
            Obj=obj[0].upper() + obj[1:], obj=obj, pos=pos, bg=bg, Bgn=_BACKGROUND_NOUNS[str(lat["background"])]
        )
        out[str(sid)] = text
    return out


# ---------------------------------------------------------------------- simulated cortex
def _early_features(pixels: np.ndarray) -> np.ndarray:
    """(4, GRID, GRID) local luminance contrast and mean R, G, B (all in [0, 1]) of a uint8 (h, w, 3) image."""
    rgb = pixels.astype(np.float32) / 255.0
    lum = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)

    def cell_mean(a: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(a, "F").resize((GRID, GRID), Image.Resampling.BOX), dtype=np.float64)

    contrast = np.sqrt(np.maximum(cell_mean(lum * lum) - cell_mean(lum) ** 2, 0.0))
    return np.stack([contrast] + [cell_mean(np.ascontiguousarray(rgb[..., c])) for c in range(3)])


def _zscore(x: np.ndarray) -> np.ndarray:
    """Columns of (n, v) ``x`` to zero mean and unit variance (constant columns to zero)."""
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _simulate_early(features: np.ndarray, n_voxels: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free early-ROI responses (n, v), z-scored, and each voxel's (rf_x, rf_y, rf_size) as image fractions.

    Voxel = α·z((RF · contrast)^e) + (1 − α)·z(Σ_c b_c RF · channel_c), then a soft rectification, then z-scored.
    """
    n = features.shape[0]
    centres = rng.uniform(0.08, 0.92, size=(n_voxels, 2))
    sizes = np.exp(rng.uniform(np.log(0.04), np.log(0.2), size=n_voxels))
    exponent = rng.uniform(0.3, 0.8, size=n_voxels)
    colour_w = rng.standard_normal((n_voxels, 3))
    alpha = rng.uniform(0.3, 0.85, size=n_voxels)
    gain = rng.uniform(0.5, 1.5, size=n_voxels)

    grid = (np.arange(GRID) + 0.5) / GRID
    gx = np.exp(-0.5 * ((grid[None, :] - centres[:, :1]) / sizes[:, None]) ** 2)  # (v, GRID) over x
    gy = np.exp(-0.5 * ((grid[None, :] - centres[:, 1:]) / sizes[:, None]) ** 2)  # (v, GRID) over y
    rf = gy[:, :, None] * gx[:, None, :]
    rf = (rf / rf.sum(axis=(1, 2), keepdims=True)).reshape(n_voxels, -1)
    pooled = (features.reshape(n * 4, -1) @ rf.T).reshape(n, 4, n_voxels)  # 2-D matmul: batched @ is slow here
    contrast_drive = _zscore((pooled[:, 0] + 1e-6) ** exponent)
    colour_drive = _zscore(np.einsum("ncv,vc->nv", pooled[:, 1:], colour_w))
    drive = alpha * contrast_drive + (1 - alpha) * colour_drive
    signal = _zscore(_softplus(gain * _zscore(drive)))
    return signal, np.column_stack([centres, sizes])


def _simulate_semantic(latents: pd.DataFrame, n_voxels: int, rng: np.random.Generator) -> np.ndarray:
    """Noise-free semantic-ROI responses (n, v), z-scored: sparse random weights on category attributes + scene."""
    table = semantic_attributes()
    attrs = table.to_numpy()
    attrs = (attrs - attrs.mean(axis=0)) / attrs.std(axis=0)
    per_image = attrs[[table.index.get_loc(c) for c in latents["category"]]]  # (n, 12)
    scene = np.array([_NATURAL_SCENE[b] for b in latents["background"]])
    scene = (scene - scene.mean()) / (scene.std() or 1.0)
    weights = rng.standard_normal((len(SEMANTIC_ATTRIBUTES), n_voxels))
    weights *= rng.random(weights.shape) < 0.5  # each voxel tuned to about half the attributes
    object_drive = _zscore(per_image @ weights)
    scene_w = rng.uniform(0.0, 0.35, size=n_voxels) * rng.choice([-1.0, 1.0], size=n_voxels)
    drive = object_drive + scene_w[None, :] * scene[:, None]
    gain = rng.uniform(0.5, 1.5, size=n_voxels)
    return _zscore(_softplus(gain * _zscore(drive)))


def _stratified_split(ids: list[str], labels: list[str], rng: np.random.Generator) -> dict[str, list[str]]:
    """About :data:`TEST_FRACTION` of each label's ids to ``test``, the rest to ``train``; both in set order."""
    test: set[str] = set()
    for label in dict.fromkeys(labels):
        members = [i for i, lab in zip(ids, labels, strict=True) if lab == label]
        k = min(len(members) - 1, max(1, round(TEST_FRACTION * len(members))))
        test.update(members[j] for j in rng.permutation(len(members))[:k])
    return {"train": [i for i in ids if i not in test], "test": [i for i in ids if i in test]}


# ====================================================================== files
def _write_atomic(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` via a temporary file and rename; returns its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hash_bytes(data)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` archive (readable by ``np.load``) with fixed timestamps, so equal arrays give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def _read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("kind") != _KIND:
        return None
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("params"), dict):
        return None
    return manifest


def _changed_files(root: Path, files: dict[str, str]) -> list[str]:
    """Relative paths in ``files`` that are missing under ``root`` or whose SHA-256 differs."""
    return [rel for rel, digest in files.items() if not (root / rel).is_file() or hash_file(root / rel) != digest]


def _complete_manifest(root: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest if ``root`` holds a complete, unchanged set generated with ``params`` by this version."""
    manifest = _read_manifest(root)
    if manifest is None or manifest.get("generator_version") != GENERATOR_VERSION or manifest["params"] != params:
        return None
    return None if _changed_files(root, manifest["files"]) else manifest
