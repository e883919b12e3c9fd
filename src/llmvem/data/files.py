"""User files for ``llmvem evaluate``: feature/embedding matrices, brain responses and RDM sets.

Formats
-------
- **Matrix** (features, embeddings): ``X.npy`` (n, d) with ``X.ids.txt`` beside it (one stimulus id per line, the
  row order), as ``llmvem features`` / ``llmvem embed`` write them (the layers of one extraction, ``f.<layer>.npy``,
  may share ``f.ids.txt``: :func:`ids_file`); or ``X.npz`` with arrays ``values`` and ``ids``.
- **Brain**: a ``.npz`` written by :func:`save_brain` (``responses`` (n, v), ``stimulus_ids``, ``roi`` and optional
  ``ncsnr``, ``n_repeats``, ``noise_ceiling``, ``splits`` as JSON, other voxel columns as ``voxel_<name>``, the
  voxels' space as JSON ``space`` with ``space_affine``); an
  Algonauts 2023 subject folder (``…/subj01`` holding ``training_split``); or an NSD root (holding ``nsddata`` and
  ``nsddata_betas``; the subject comes from ``subject=``).
- **RDMs**: ``DATASET:TARGET`` for a dataset's RDM set (``objects92:cichy_it``); a ``.npz`` with ``rdms``
  ((s, n, n) or (n, n)), ``stimulus_ids`` and optional ``subjects``; or ``R.npy`` with ``R.ids.txt``.

Every loader raises :class:`~llmvem.errors.DataError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmvem.data.brain import BrainData, BrainSpace, RDMSet
from llmvem.errors import DataError
from llmvem.store import atomic_write_bytes


@dataclass(frozen=True)
class Matrix:
    """A named matrix with one row per stimulus.

    Attributes:
        name: display name (``NAME=`` prefix of the spec, else the file stem).
        values: (n, d) float32.
        ids: n stimulus ids, the row order.
        path: where it was read from.
    """

    name: str
    values: np.ndarray
    ids: list[str]
    path: Path


def split_spec(spec: str) -> tuple[str | None, str]:
    """``"name=path"`` → ``("name", "path")``; ``"path"`` → ``(None, "path")``."""
    if "=" in spec:
        name, _, path = spec.partition("=")
        if name and "/" not in name and not name.startswith("."):
            return name.strip(), path.strip()
    return None, spec


def _read_ids(path: Path, n: int, what: str) -> list[str]:
    """The ids of ``<X>.ids.txt`` (one per line), checked by :func:`check_row_ids` against ``n`` rows."""
    if not path.is_file():
        raise DataError(f"{what}: no stimulus id file {path} (one id per line, the row order of the matrix)")
    lines = read_text_file(path, f"{what}: id file").splitlines()
    ids = [line.strip() for line in lines if line.strip()]
    last = max((k for k, line in enumerate(lines) if line.strip()), default=-1)
    blank = [k + 1 for k, line in enumerate(lines[:last]) if not line.strip()]
    if blank and len(ids) != n:  # a row whose id was left empty: name the line, not only the count
        raise DataError(
            f"{what}: {path} lists {len(ids)} ids for {n} rows; line(s) {blank[:5]} are blank (one id per row)"
        )
    return check_row_ids(ids, n, what, str(path))


def read_text_file(path: str | Path, what: str) -> str:
    """The text of a UTF-8 file (a leading byte-order mark, as spreadsheet exports write, is dropped).

    Raises:
        DataError: the file cannot be read, or is not UTF-8 (the message gives the first bad byte's line).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{what} {path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8"
        ) from None


def check_row_ids(ids: list[str], n: int, what: str, where: str) -> list[str]:
    """The one id check of every file kind (matrices, RDMs; ``.npy`` + ``.ids.txt`` or ``.npz``): ``n`` ids, unique.

    Args:
        ids: the ids read from ``where``.
        n: rows (matrix) or rows/columns (RDMs) they must name.
        what, where: the file, for the message.
    Raises:
        DataError: a count mismatch or a duplicated id (a duplicated row would be used twice, silently).
    """
    if len(ids) != n:
        raise DataError(f"{what}: {where} lists {len(ids)} ids for {n} rows")
    seen: set[str] = set()
    dup = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
    if dup:
        raise DataError(f"{what}: {len(dup)} stimulus id(s) appear more than once in {where}: {dup[:5]}")
    return ids


def check_writable_ids(ids: list[str], what: str) -> None:
    """Raise unless every id survives a round trip through an ``.ids.txt`` file (one id per line, stripped)."""
    bad = [i for i in ids if not i or i != i.strip() or "\n" in i or "\r" in i]
    if bad:
        raise DataError(
            f"{what}: {len(bad)} stimulus id(s) cannot be written one per line (empty, a line break inside, or "
            f"spaces at either end), e.g. {[b[:60] for b in bad[:3]]}; rename the files or ids"
        )


def write_ids(path: str | Path, ids: list[str], what: str) -> Path:
    """Write ``ids`` one per line to ``path`` atomically, after :func:`check_writable_ids`. Returns the path."""
    check_writable_ids(ids, what)
    path = Path(path)
    atomic_write_bytes(path, ("\n".join(ids) + "\n").encode("utf-8"))
    return path


def save_matrix(path: str | Path, values: np.ndarray, ids: list[str], what: str) -> tuple[Path, Path]:
    """Write ``values`` (n, d) to ``path`` (.npy) and its row ids to ``<path>.ids.txt``, both atomically; the
    ids are checked first (:func:`check_writable_ids`), so nothing is written for ids that cannot round-trip.
    Returns both paths; :func:`load_matrix` reads them back."""
    import io

    path = Path(path)
    check_writable_ids(ids, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, values)
    atomic_write_bytes(path, buf.getvalue())
    return path, write_ids(path.with_suffix(".ids.txt"), ids, what)


def ids_file(path: Path) -> Path:
    """The id file of matrix ``path``: ``X.ids.txt`` beside ``X.npy``; failing that, for the layers of one
    extraction (``f.<layer>.npy``, a layer name may hold dots: ``f.blocks.3.npy``), the ``f.ids.txt`` they share —
    the longest dotted prefix of the stem that has one. Returns the ``X.ids.txt`` path when none exists.

    >>> ids_file(Path("/nowhere/f.blocks.3.npy")).name
    'f.blocks.3.ids.txt'
    """
    own = path.with_suffix(".ids.txt")
    if own.is_file():
        return own
    parts = path.stem.split(".")
    for k in range(len(parts) - 1, 0, -1):
        shared = path.with_name(".".join(parts[:k]) + ".ids.txt")
        if shared.is_file():
            return shared
    return own


def load_matrix(spec: str | Path) -> Matrix:
    """Read a feature or embedding matrix (see the module docstring for the formats).

    Args:
        spec: ``"path.npy"``, ``"path.npz"`` or ``"name=path"``.
    Returns:
        :class:`Matrix` with float32 (n, d) values.
    Raises:
        DataError: missing file, not 2-D, non-finite values, id file missing or of the wrong length.
    """
    name, raw = split_spec(str(spec))
    path = Path(raw).expanduser()
    what = f"matrix {path}"
    if not path.is_file():
        raise DataError(f"{what}: file not found")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "values" not in z or "ids" not in z:
                    raise DataError(f"{what}: an .npz matrix needs arrays 'values' and 'ids', found {list(z.keys())}")
                values, ids = np.asarray(z["values"]), [str(i) for i in z["ids"]]
                check_row_ids(ids, len(values) if values.ndim else 0, what, "its 'ids' array")
        else:
            values = np.load(path, allow_pickle=False)
            ids = _read_ids(ids_file(path), len(values) if values.ndim else 0, what)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{what}: cannot read it ({npy_problem(exc)})") from exc
    if values.ndim != 2:
        raise DataError(f"{what}: expected a 2-D (stimuli, dims) array, got shape {values.shape}")
    if values.dtype.kind not in "biuf":
        raise DataError(f"{what}: holds {values.dtype} values, not real numbers (save a numeric array)")
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise DataError(f"{what}: {int(bad.sum())} row(s) hold NaN/inf, e.g. stimulus {ids[int(np.argmax(bad))]!r}")
    return Matrix(name or path.stem, values.astype(np.float32, copy=False), ids, path)


def npy_problem(exc: BaseException) -> str:
    """What is wrong with an unreadable ``.npy`` / ``.npz``, in words (numpy blames pickling for any non-array).

    >>> npy_problem(ValueError("... pickled (object) data ... load it unsafely using the `allow_pickle=` keyword"))
    'not a NumPy .npy/.npz file (or one holding Python objects, which llmvem does not load)'
    """
    if isinstance(exc, zipfile.BadZipFile):
        return f"not a valid .npz (zip) archive: {exc}"
    if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
        return "not a NumPy .npy/.npz file (or one holding Python objects, which llmvem does not load)"
    return str(exc)


# --------------------------------------------------------------------------- brain
def save_brain(brain: BrainData, path: str | Path) -> Path:
    """Write ``brain`` to ``path`` (.npz; see the module docstring), atomically. Returns the path."""
    import io

    path = Path(path)
    arrays: dict[str, Any] = {
        "responses": brain.responses,
        "stimulus_ids": np.asarray(brain.stimulus_ids, dtype=str),
        "roi": np.asarray(brain.voxels["roi"].astype(str).tolist(), dtype=str),
        "splits": np.asarray(json.dumps(brain.splits)),
        "name": np.asarray(brain.name),
    }
    for attr in ("ncsnr", "n_repeats", "noise_ceiling"):
        if getattr(brain, attr) is not None:
            arrays[attr] = np.asarray(getattr(brain, attr))
    if brain.space is not None:
        sp = brain.space
        arrays["space"] = np.asarray(
            json.dumps({"kind": sp.kind, "name": sp.name, "shape": sp.shape, "n_vertices": sp.n_vertices})
        )
        if sp.affine is not None:
            arrays["space_affine"] = np.asarray(sp.affine, dtype=np.float64)
    for col in brain.voxels.columns:
        if col != "roi":
            values = brain.voxels[col].to_numpy()
            if values.dtype.kind not in "biuf":
                values = np.asarray([str(v) for v in values], dtype=str)
            arrays[f"voxel_{col}"] = values
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _load_brain_npz(path: Path) -> BrainData:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("responses", "stimulus_ids", "roi") if k not in z]
            if missing:
                raise DataError(f"brain file {path}: missing arrays {missing} (found {list(z.keys())})")
            voxels = pd.DataFrame({"roi": z["roi"].astype(str)})
            for key in z.files:
                if key.startswith("voxel_"):
                    voxels[key[len("voxel_") :]] = z[key]
            splits = json.loads(str(z["splits"])) if "splits" in z else {}
            space = None
            if "space" in z:
                sp = json.loads(str(z["space"]))
                if not isinstance(sp, dict) or "kind" not in sp or "name" not in sp:
                    raise DataError(f"brain file {path}: 'space' must be JSON with 'kind' and 'name', got {sp!r}")
                affine = z.get("space_affine")
                space = BrainSpace(sp["kind"], sp["name"], sp.get("shape"), affine, sp.get("n_vertices"))
            return BrainData(
                responses=z["responses"],
                stimulus_ids=[str(s) for s in z["stimulus_ids"]],
                voxels=voxels,
                ncsnr=z.get("ncsnr"),
                n_repeats=z.get("n_repeats"),
                noise_ceiling=z.get("noise_ceiling"),
                splits=splits,
                name=str(z["name"]) if "name" in z else path.stem,
                space=space,
            )
    except (OSError, ValueError, json.JSONDecodeError, zipfile.BadZipFile) as exc:
        raise DataError(f"brain file {path}: cannot read it ({npy_problem(exc)})") from exc


def load_brain(source: str | Path | Mapping[str, Any], subject: int | None = None) -> BrainData:
    """Brain responses of one brain source: a :func:`save_brain` ``.npz``, an Algonauts 2023 subject folder or an
    NSD root (detected from the layout), or ``KIND:PATH?key=value&...`` / a mapping with the loader's options
    (:mod:`llmvem.data.brain_sources`).

    Args:
        source: the file or folder, or a source string or mapping.
        subject: NSD subject (1–8) for an NSD source that names none (default 1).
    Raises:
        DataError: the path does not exist or is none of the layouts; a malformed source; a source naming several
            subjects (load each with :func:`llmvem.data.brain_sources.parse_brain_sources`).
    """
    from llmvem.data.brain_sources import parse_brain_source

    sources = parse_brain_source(source, subject=subject)
    if len(sources) != 1:
        raise DataError(
            f"brain source {sources[0].text!r}: names {len(sources)} subjects; load_brain reads one (use "
            "llmvem.data.brain_sources.parse_brain_sources and load each)"
        )
    return sources[0].load()


# --------------------------------------------------------------------------- RDMs
def load_rdms(spec: str, data_dir: str | Path | None = None) -> tuple[str, RDMSet]:
    """A target RDM set: ``DATASET:TARGET`` (from the data directory), or an ``.npz`` / ``.npy`` file.

    Args:
        spec: ``"objects92:cichy_it"``, ``"name=path.npz"``, ``"path.npy"`` (with ``path.ids.txt``).
        data_dir: data directory for dataset targets.
    Returns:
        ``(name, RDMSet)``.
    """
    name, raw = split_spec(spec)
    path = Path(raw).expanduser()
    if not path.exists() and ":" in raw and "/" not in raw.split(":", 1)[0]:
        from llmvem.data.datasets import load_dataset

        dataset, _, target = raw.partition(":")
        ds = load_dataset(dataset, data_dir)
        rdms = getattr(ds, "rdms", None)
        if not isinstance(rdms, dict):
            raise DataError(f"dataset {dataset!r} has no RDM sets")
        if target not in rdms:
            raise DataError(f"dataset {dataset!r} has no RDM set {target!r}; choose from {sorted(rdms)}")
        return name or target, rdms[target]
    what = f"RDM file {path}"
    if not path.is_file():
        raise DataError(f"{what}: not found (pass a .npz/.npy file or DATASET:TARGET such as objects92:cichy_it)")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "rdms" not in z or "stimulus_ids" not in z:
                    raise DataError(f"{what}: needs arrays 'rdms' and 'stimulus_ids', found {list(z.keys())}")
                rdms_arr, ids = np.asarray(z["rdms"], dtype=np.float64), [str(i) for i in z["stimulus_ids"]]
                check_row_ids(ids, rdms_arr.shape[-1] if rdms_arr.ndim else 0, what, "its 'stimulus_ids' array")
                subjects = [str(s) for s in z["subjects"]] if "subjects" in z else None
        else:
            rdms_arr = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
            ids = _read_ids(path.with_suffix(".ids.txt"), rdms_arr.shape[-1] if rdms_arr.ndim else 0, what)
            subjects = None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{what}: cannot read it ({npy_problem(exc)})") from exc
    if rdms_arr.ndim == 2:
        rdms_arr = rdms_arr[None]
    if rdms_arr.ndim != 3 or rdms_arr.shape[1] != rdms_arr.shape[2]:
        raise DataError(f"{what}: expected (n, n) or (subjects, n, n) RDMs, got shape {rdms_arr.shape}")
    if not np.isfinite(rdms_arr).all():
        raise DataError(f"{what}: RDMs hold NaN/inf")
    diag = np.diagonal(rdms_arr, axis1=1, axis2=2)
    if rdms_arr.shape[1] > 1 and np.allclose(diag, 1.0, atol=1e-6) and (rdms_arr <= 1.0 + 1e-6).all():
        raise DataError(
            f"{what}: every diagonal value is 1 and none is above 1: this is a similarity matrix (e.g. correlations), "
            "not an RDM; RSA on it would flip the sign of every score. Save dissimilarities instead (1 - r)"
        )
    subjects = subjects or [f"s{k + 1:02d}" for k in range(rdms_arr.shape[0])]
    return name or path.stem, RDMSet(rdms_arr, ids, subjects, name=name or path.stem)


# --------------------------------------------------------------------------- captions
def load_captions(path: str | Path) -> tuple[list[str], list[str]]:
    """A caption corpus for retrieval: ``.jsonl`` (fields ``id`` / ``image`` and ``text``), ``.csv`` / ``.tsv``
    (columns ``id`` or ``image``, and ``text``) or ``.txt`` (one caption per line). Returns ``(ids, texts)``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"caption corpus {path}: not found")
    import io

    text = read_text_file(path, "caption corpus")
    if path.suffix == ".txt":
        texts = [t.strip() for t in text.splitlines() if t.strip()]
        return [str(k) for k in range(len(texts))], texts
    try:
        if path.suffix == ".jsonl":
            df = pd.read_json(io.StringIO(text), lines=True, dtype=False)
        else:
            df = pd.read_csv(io.StringIO(text), sep="\t" if path.suffix == ".tsv" else ",", dtype=str)
    except ValueError as exc:
        raise DataError(f"caption corpus {path}: cannot read it ({exc})") from exc
    id_col = next((c for c in ("id", "image", "stimulus_id") if c in df.columns), None)
    if "text" not in df.columns or id_col is None:
        raise DataError(f"caption corpus {path}: needs columns 'text' and one of id/image, found {list(df.columns)}")
    df = df[df["text"].astype(str).str.strip() != ""]
    if df.empty:
        raise DataError(f"caption corpus {path}: no non-empty captions")
    return df[id_col].astype(str).tolist(), df["text"].astype(str).tolist()


class References(dict[str, list[str]]):
    """Stimulus id → its human captions (a ``dict``), and whether every stimulus asked about must have some.

    Attributes:
        complete: the source covers a whole stimulus set (COCO captions mapped through ``nsd_stim_info_merged.csv``:
            every NSD image has COCO captions), so a scored stimulus without one is an error, not a skip.
        why_missing: stimulus id → why it has none (which COCO split file holds it), for that error.
    """

    complete: bool = False
    why_missing: dict[str, str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.why_missing = {}

    def check_covers(self, ids: Sequence[str], where: str) -> None:
        """Raise unless some of ``ids`` have references, and (``complete``) every one of them has.

        Raises:
            DataError: naming the stimuli without references and, for COCO, the caption file each needs.
        """
        missing = [i for i in ids if not self.get(i)]
        if len(missing) == len(ids) and ids:
            raise DataError(f"{where}: the references name none of the {len(ids)} scored stimuli (e.g. "
                            f"{list(ids)[:3]}); theirs look like {list(self)[:3]}")  # fmt: skip
        if self.complete and missing:
            why = "; ".join(f"{i}: {self.why_missing.get(i, 'no captions')}" for i in missing[:5])
            raise DataError(f"{where}: {len(missing)} of {len(ids)} scored stimuli have no COCO captions ({why}"
                            f"{' …' if len(missing) > 5 else ''})")  # fmt: skip


def load_references(path: str | Path | Sequence[str | Path], stim_info: str | Path | None = None) -> References:
    """Human reference captions per stimulus, for caption metrics.

    Formats: rows of ``id`` (or ``image`` / ``stimulus_id``) and ``text`` as in :func:`load_captions`
    (``.jsonl`` / ``.csv`` / ``.tsv``; several rows per stimulus); a ``.json`` list of objects with ``image`` and
    ``coco_captions`` (the special100 file of Doerig et al.'s code); or COCO caption annotation files
    (``captions_train2017.json``, ``captions_val2017.json``: ``images[].id``, ``annotations[].image_id`` /
    ``caption``), keyed by COCO image id and mapped to NSD ids through ``stim_info`` (NSD's
    ``nsd_stim_info_merged.csv``, :func:`read_nsd_stim_info`). NSD file names (``shared0004_nsd03078.jpg``) become
    canonical ids (``nsd-03078``); other ids are used as written (a file extension dropped). Several files: their
    captions are merged.

    Returns:
        stimulus id → its captions, in file order (:class:`References`; ``complete`` for COCO files).
    Raises:
        DataError: a missing or unreadable file, a ``.txt`` file (no ids), no captions; COCO files without
            ``stim_info``, or none of whose images is an NSD image.
    """
    paths = [Path(path).expanduser()] if isinstance(path, str | Path) else [Path(x).expanduser() for x in path]
    out = References()
    coco: dict[int, list[str]] = {}
    for one in paths:
        rows = _reference_rows(one)
        if isinstance(rows, dict):
            for image_id, texts in rows.items():
                coco.setdefault(image_id, []).extend(texts)
            continue
        for name, texts in rows:
            stem = Path(name).stem if Path(name).suffix.lower() in {".jpg", ".jpeg", ".png"} else name
            out.setdefault(_canonical(stem), []).extend(t for t in texts if t.strip())
    if coco:
        _add_coco(out, coco, paths, stim_info)
    if not any(out.values()):
        raise DataError(f"references {', '.join(map(str, paths))}: no captions")
    return out


def _canonical(stem: str) -> str:
    from llmvem.data.nsd_ids import canonical_id

    return canonical_id(stem) or stem


def _reference_rows(path: Path) -> list[tuple[str, list[str]]] | dict[int, list[str]]:
    """The (id, captions) rows of one references file, or for a COCO caption file COCO image id → captions."""
    if path.suffix == ".txt":
        raise DataError(f"references {path}: a .txt file has no stimulus ids; use .jsonl/.csv/.tsv with id and text")
    if path.suffix != ".json":
        ids, texts = load_captions(path)
        return [(i, [t]) for i, t in zip(ids, texts, strict=True)]
    if not path.is_file():
        raise DataError(f"references {path}: not found")
    try:
        data = json.loads(read_text_file(path, "references"))
    except ValueError as exc:
        raise DataError(f"references {path}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and "annotations" in data and "images" in data:  # COCO caption annotations
        try:
            known = {int(im["id"]) for im in data["images"]}
            coco: dict[int, list[str]] = {k: [] for k in known}
            for a in data["annotations"]:
                coco.setdefault(int(a["image_id"]), []).append(str(a["caption"]).strip())
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"references {path}: COCO captions need images[].id and annotations[].image_id / "
                            f"caption ({exc!r})") from None  # fmt: skip
        return coco
    try:
        return [(str(r["image"]), [str(t) for t in r["coco_captions"]]) for r in data]
    except (KeyError, TypeError) as exc:
        raise DataError(f"references {path}: expected COCO caption annotations ({{images, annotations}}) or a list "
                        f"of {{image, coco_captions}} objects ({exc!r})") from None  # fmt: skip


def read_nsd_stim_info(path: str | Path) -> pd.DataFrame:
    """NSD's ``nsddata/experiments/nsd/nsd_stim_info_merged.csv``: one row per 73k image with ``cocoId``,
    ``cocoSplit`` (``train2017`` / ``val2017``: the COCO caption file that holds it) and ``nsdId``, the **0-based**
    73k index (NSD data manual; its first, unnamed column repeats it). Returns the frame with a column ``id``, the
    canonical ``nsd-NNNNN`` (``nsdId`` + 1).

    Raises:
        DataError: the file is missing or unreadable, lacks ``cocoId`` / ``nsdId``, ``nsdId`` is outside
            0 … 72,999 (a 1-based column would reach 73,000), or differs from the first column's row number
            (a subset of rows shifted by one is caught here).
    """
    from llmvem.data.nsd_ids import N_IMAGES, from_index

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"NSD stimulus info {path}: not found (nsddata/experiments/nsd/nsd_stim_info_merged.csv)")
    try:
        df = pd.read_csv(path, index_col=0)
    except (ValueError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"NSD stimulus info {path}: cannot read it ({exc})") from None
    if not {"cocoId", "nsdId"} <= set(df.columns):
        raise DataError(f"NSD stimulus info {path}: needs columns cocoId and nsdId, found {list(df.columns)[:12]}")
    nsd = pd.to_numeric(df["nsdId"], errors="coerce")
    if nsd.isna().any() or not nsd.between(0, N_IMAGES - 1).all():
        raise DataError(f"NSD stimulus info {path}: nsdId must be the 0-based 73k index (0 … {N_IMAGES - 1}); found "
                        f"{nsd.min()} … {nsd.max()}")  # fmt: skip
    row = pd.to_numeric(pd.Series(df.index, index=df.index), errors="coerce")
    if row.notna().all() and (row != nsd).any():  # the unnamed first column is the 0-based row: nsdId repeats it
        k = int((row != nsd).to_numpy().argmax())
        shift = " (nsdId = row + 1 in every row: a 1-based column)" if ((nsd - row) == 1).all() else ""
        raise DataError(f"NSD stimulus info {path}: nsdId must repeat the first (0-based row) column, as in NSD's "
                        f"file; row {int(row.iloc[k])} has nsdId {int(nsd.iloc[k])}{shift}")  # fmt: skip
    df = df.assign(id=[from_index(int(k)) for k in nsd], cocoId=pd.to_numeric(df["cocoId"], errors="coerce"))
    return df


def _add_coco(out: References, coco: dict[int, list[str]], paths: list[Path], stim_info: str | Path | None) -> None:
    """Map COCO image id → captions to NSD ids through ``stim_info`` into ``out`` (marked complete)."""
    names = ", ".join(p.name for p in paths)
    if stim_info is None:
        raise DataError(f"references {names}: COCO captions are keyed by COCO image id; give NSD's "
                        "nsd_stim_info_merged.csv (--nsd-stim-info; nsddata/experiments/nsd/) to map them to NSD "
                        "images")  # fmt: skip
    info = read_nsd_stim_info(stim_info)
    split = info["cocoSplit"].astype(str) if "cocoSplit" in info else pd.Series("", index=info.index)
    found = 0
    for nsd, cid, sp in zip(info["id"], info["cocoId"], split, strict=True):
        texts = [t for t in coco.get(int(cid), []) if t] if pd.notna(cid) else []
        if texts:
            out.setdefault(nsd, []).extend(texts)
            found += 1
        else:
            file = f"captions_{sp}.json" if sp and sp != "nan" else "its COCO caption file"
            out.why_missing[nsd] = f"COCO {sp or ''} image {cid}: not in {names}; {file} holds it".replace("  ", " ")
    if not found:
        raise DataError(f"references {names}: none of their {len(coco)} COCO images is an NSD image of {stim_info}")
    out.complete = True
