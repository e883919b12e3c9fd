"""NSD's stimuli read straight from ``nsd_stimuli.hdf5``: a lazy :class:`~llmvem.data.stimuli.StimulusSet`.

The file, relative to the NSD root (the layout of the public bucket, as ``nsd_access`` and Algonauts 2023's
``challenge_data_preparation.py`` read it)::

    nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5     dataset "imgBrick", (73000, 425, 425, 3) uint8
    nsddata/experiments/nsd/nsd_expdesign.mat        subjectim (8, 10000), sharedix (1, 1000): 1-based 73k ids

Row ``i`` of ``imgBrick`` is one image, height × width × RGB, with the canonical id ``nsd_ids.from_index(i)``
(``nsd-{i + 1:05d}``). NSD's MATLAB code reads it as ``[3 425 425 73000]`` (``h5read(..., [1 1 1 k], [3 425 425
n])`` then ``permute([3 2 1])``, cvnlab/nsddatapaper), which h5py sees transposed. Its reported size, 36.8 GiB, is
that of the raw pixels (73,000 × 541,875 bytes), so it is not compressed; its chunk layout is not documented. One
image is read with ``imgBrick[i]``: one chunk when the file is chunked per image, one contiguous read when it is not
(the tests cover one-image and tiled chunks).

Subsets (:data:`SUBSETS`): ``all`` (73,000), ``shared1000`` (``sharedix``), ``shared515`` (the shared images all
eight subjects saw three times, :meth:`llmvem.data.nsd.NSDDesign.shared515`), ``subjNN`` (``subjectim[NN - 1]``, the
10,000 images scheduled for the subject; subjects 3, 4, 6 and 8 saw 9,411 or 9,209 of them), or explicit ids. A named
subset is in ascending id order (the file's row order); explicit ids keep their order.

Content hashes and cache keys
-----------------------------
The content hash of a brick image is ``llmvem.hashing.hash_array`` of its pixels: SHA-256 over the text
``|u1|(425, 425, 3)|`` followed by the image's 541,875 bytes (H × W × RGB, C order). Only the requested rows are
read, so keying the 1,000 shared images reads 0.54 GB, not the file's 39.6 GB. An image *file*'s content hash is
SHA-256 of the file's bytes. The same image as a brick row and as a PNG exported from it (``Image.fromarray(row)``,
what ``challenge_data_preparation.py`` writes) decodes to the same pixels and gives the same features, but under
different cache keys: each form is computed and stored once. File keys stay byte hashes on purpose: keying a folder
then needs no decoding, the keys already in users' stores (features, paid describe outputs) stay valid, and a lossy
file (JPEG) has no single decoded form to hash (decoders differ by library version).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmvem.data import nsd_ids
from llmvem.data.stimuli import StimulusSet
from llmvem.errors import DataError, DatasetNotFoundError

if TYPE_CHECKING:
    from PIL import Image

#: the stimulus file and the design file, relative to the NSD root
STIMULI_FILE = Path("nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5")
DESIGN_FILE = Path("nsddata/experiments/nsd/nsd_expdesign.mat")
DATASET = "imgBrick"
IMAGE_SHAPE = (425, 425, 3)
SUBSETS = ("all", "shared1000", "shared515", *(f"subj{s:02d}" for s in range(1, 9)))
_SUBJECT = re.compile(r"^subj0?([1-8])$")


class NSDStimulusFile:
    """Some rows of ``imgBrick`` as an :class:`~llmvem.data.stimuli.ImageSource`: opened on first use, one row read
    per image, picklable (the open file is not pickled, and a forked process opens its own).

    Args:
        path: ``nsd_stimuli.hdf5`` (checked by :func:`check_stimulus_file` first).
        rows: 0-based rows, one per image, in the set's order (length n).
    """

    def __init__(self, path: str | Path, rows: Sequence[int] | np.ndarray) -> None:
        self.path = Path(path)
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        self._file: Any = None
        self._ds: Any = None
        self._pid = -1  # the process that opened _file
        self._lock, self._lock_pid = threading.Lock(), os.getpid()

    def __len__(self) -> int:
        return int(self.rows.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NSDStimulusFile):
            return NotImplemented
        return self.path == other.path and np.array_equal(self.rows, other.rows)

    __hash__ = None  # type: ignore[assignment]  # mutable rows: not hashable, like a list

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["rows"])  # type: ignore[misc]

    def _dataset(self) -> Any:
        """The ``imgBrick`` dataset, opened in this process (a handle inherited through ``fork`` is not reused)."""
        pid = os.getpid()
        if self._ds is not None and self._pid == pid:
            return self._ds
        if self._lock_pid != pid:  # a forked child: the parent's lock may have been held by another thread
            self._lock, self._lock_pid = threading.Lock(), pid
        with self._lock:
            if self._ds is None or self._pid != pid:
                import h5py

                try:
                    self._file = h5py.File(self.path, "r")
                except OSError as exc:
                    raise DataError(f"cannot open the NSD stimulus file {self.path}: {exc}") from None
                self._ds, self._pid = self._file[DATASET], pid
            return self._ds

    def pixels(self, k: int) -> np.ndarray:
        """Image ``k`` as a (425, 425, 3) uint8 array (H × W × RGB)."""
        try:
            return np.asarray(self._dataset()[int(self.rows[k])])
        except OSError as exc:  # a truncated or damaged file
            raise DataError(f"{self.path}: cannot read {DATASET}[{int(self.rows[k])}] ({exc})") from None

    def load(self, k: int) -> Image.Image:
        """Image ``k`` as an 8-bit RGB PIL image (425 × 425)."""
        from PIL import Image

        return Image.fromarray(self.pixels(k), "RGB")

    def content_hashes(self) -> list[str]:
        """:func:`~llmvem.hashing.hash_array` of each image's pixels (n), reading only these rows."""
        from llmvem.hashing import hash_array

        return [hash_array(self.pixels(k)) for k in range(len(self))]

    def take(self, positions: Sequence[int]) -> NSDStimulusFile:
        return NSDStimulusFile(self.path, self.rows[np.asarray(positions, dtype=np.int64)])

    def ref(self, k: int) -> BrickImage:
        return BrickImage(self, k)

    def close(self) -> None:
        """Close the file if this process opened it (it reopens on the next read)."""
        with self._lock:
            if self._file is not None and self._pid == os.getpid():
                self._file.close()
            self._file = self._ds = None


@dataclass(frozen=True, eq=False)
class BrickImage:
    """Image ``position`` of an :class:`NSDStimulusFile` where describers expect a path (``str()``: file[row])."""

    source: NSDStimulusFile
    position: int

    def png(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.source.load(self.position).save(buf, format="PNG")
        return buf.getvalue()

    def __str__(self) -> str:
        return f"{self.source.path.name}[{int(self.source.rows[self.position])}]"

    @property
    def name(self) -> str:
        """The image's canonical id (what a file name would say)."""
        return nsd_ids.from_index(int(self.source.rows[self.position]))


def check_stimulus_file(path: str | Path) -> None:
    """Check that ``path`` is NSD's stimulus file: an HDF5 file with ``imgBrick`` of (73000, 425, 425, 3) uint8.

    Raises:
        DatasetNotFoundError: no such file.
        DataError: not HDF5, no ``imgBrick``, or another shape or dtype (each named).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(
            f"NSD stimulus file {path} not found; it is {STIMULI_FILE} under the NSD root "
            "(s3://natural-scenes-dataset, see the NSD data manual)"
        )
    try:
        with h5py.File(path, "r") as f:
            if DATASET not in f:
                raise DataError(
                    f"{path} has no dataset {DATASET!r} (it has {sorted(f.keys())[:10]}); is it NSD's "
                    f"{STIMULI_FILE.name}?"
                )
            ds = f[DATASET]
            want = (nsd_ids.N_IMAGES, *IMAGE_SHAPE)
            if not isinstance(ds, h5py.Dataset) or ds.shape != want or ds.dtype != np.uint8:
                got = f"{ds.shape} {ds.dtype}" if isinstance(ds, h5py.Dataset) else "a group"
                raise DataError(f"{path}: {DATASET} is {got}; NSD's is {want} uint8 (row i = image nsd-(i+1))")
    except OSError as exc:
        raise DataError(f"{path} is not a readable HDF5 file ({exc})") from None


def find_design(stimulus_file: str | Path) -> Path:
    """``nsd_expdesign.mat`` of the NSD root that holds ``stimulus_file`` (``<root>/`` + :data:`STIMULI_FILE`).

    Raises:
        DatasetNotFoundError: the stimulus file is not in the NSD layout, or the design file is missing there.
    """
    p = Path(stimulus_file).absolute()
    folders = STIMULI_FILE.parent.parts  # ("nsddata_stimuli", "stimuli", "nsd")
    if p.parent.parts[-len(folders) :] == folders:
        design = p.parents[len(folders)] / DESIGN_FILE
        if design.is_file():
            return design
        raise DatasetNotFoundError(f"{design} not found: the subset needs NSD's design file; pass it with --design")
    raise DatasetNotFoundError(
        f"{stimulus_file} is not at <NSD root>/{STIMULI_FILE}, so nsd_expdesign.mat cannot be found beside it; "
        "pass the design file with --design (design= in Python)"
    )


def subset_ids(subset: str, design: str | Path | None = None) -> list[str]:
    """Canonical ids of a named subset (ascending), reading ``design`` (``nsd_expdesign.mat``) when it needs it.

    Args:
        subset: one of :data:`SUBSETS` (``subj1`` works for ``subj01``).
        design: the design file; needed by every subset but ``all``.
    Raises:
        DataError: unknown subset; DatasetNotFoundError: the design file is needed and missing.
    """
    from llmvem.data.nsd import NSDDesign

    subset = subset_name(subset)
    if subset == "all":
        return [nsd_ids.nsd_id(k) for k in range(1, nsd_ids.N_IMAGES + 1)]
    if design is None:
        raise DatasetNotFoundError(f"NSD subset {subset!r} needs the design file nsd_expdesign.mat ({DESIGN_FILE})")
    d = NSDDesign.load(design)
    if subset == "shared1000":
        k73 = d.sharedix
    elif subset == "shared515":
        k73 = d.shared515()
    else:
        s = int(subset[4:])
        if s > d.subjectim.shape[0]:
            raise DataError(f"{design}: subjectim has {d.subjectim.shape[0]} subjects, no subject {s}")
        k73 = d.subjectim[s - 1]
    return [nsd_ids.nsd_id(int(k)) for k in np.unique(k73)]


def subset_name(subset: str) -> str:
    """``subset`` spelled as in :data:`SUBSETS` (``subj1`` → ``subj01``); an unknown name raises DataError."""
    m = _SUBJECT.match(subset)
    name = f"subj{int(m.group(1)):02d}" if m is not None else subset
    if name not in SUBSETS:
        raise DataError(f"unknown NSD subset {subset!r}; choose one of {', '.join(SUBSETS)} (or give ids)")
    return name


def nsd_stimuli(
    path: str | Path,
    subset: str = "all",
    *,
    ids: Sequence[str] | None = None,
    design: str | Path | None = None,
) -> StimulusSet:
    """A lazy stimulus set over ``nsd_stimuli.hdf5``: nothing is read but the file's header until images are asked for.

    Args:
        path: the stimulus file (``<NSD root>/nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5``).
        subset: ``all``, ``shared1000``, ``shared515`` or ``subjNN`` (see the module docstring); ignored with ``ids``.
        ids: explicit images instead, in this order: canonical ``nsd-NNNNN`` or any NSD name
            (:func:`llmvem.data.nsd_ids.canonical_id`).
        design: ``nsd_expdesign.mat``; default: found from the NSD layout (:func:`find_design`) when needed.
    Returns:
        A :class:`StimulusSet` with canonical ids (n) whose ``source`` is an :class:`NSDStimulusFile`.
    Raises:
        DataError: a wrong file (:func:`check_stimulus_file`), an unknown subset, ids that are not NSD images or lie
            outside 1–73,000; DatasetNotFoundError: a missing file or design file.
    """
    check_stimulus_file(path)
    if ids is not None:
        canon = _canonical(ids)
        name = f"nsd-stimuli-{len(canon)}"
    else:
        subset = subset_name(subset)
        needs_design = subset != "all" and design is None
        canon = subset_ids(subset, find_design(path) if needs_design else design)
        name = f"nsd-{subset}"
    rows = [nsd_ids.to_index(i) for i in canon]
    return StimulusSet(ids=canon, paths=[], name=name, source=NSDStimulusFile(path, rows))


def _canonical(ids: Sequence[str]) -> list[str]:
    """Canonical ids of explicit NSD image names; ids outside 1–73,000 or not NSD names raise, naming them."""
    names = [str(i) for i in ids]
    if not names:
        raise DataError("no NSD image ids given")
    mapped = [nsd_ids.canonical_id(n) for n in names]
    bad = [n for n, m in zip(names, mapped, strict=True) if m is None]
    if bad:
        zero = " (nsd-00000 means ids written 0-based: use nsd_ids.from_index)" if "nsd-00000" in bad else ""
        raise DataError(
            f"{len(bad)} of {len(names)} requested id(s) are not NSD images: {bad[:5]}; NSD ids are 1-based, "
            f"nsd-00001 … nsd-{nsd_ids.N_IMAGES}{zero}"
        )
    return nsd_ids.canonical_ids(names, "requested NSD images")


def is_stimulus_file(path: str | Path) -> bool:
    """Whether ``path`` names an HDF5 file (``.hdf5``/``.h5``) rather than an image folder."""
    p = Path(path)
    return p.suffix.lower() in (".hdf5", ".h5") and not p.is_dir()


def stimuli_from_path(path: str | Path, subset: str | None = None, *, design: str | Path | None = None) -> StimulusSet:
    """The stimulus set that ``llmvem features`` reads: a folder of images or ``nsd_stimuli.hdf5``; ids canonical.

    A folder keeps its file stems as ids unless every stem is an NSD image name (``sharedNNNN_nsdNNNNN``,
    Algonauts ``train-XXXX_nsd-NNNNN`` / ``test-XXXX_nsd-NNNNN``, ``nsd-NNNNN``); then all become canonical
    ``nsd-NNNNN`` (:func:`llmvem.data.nsd_ids.canonical_ids`; a folder mixing NSD and other names is an error).

    Args:
        subset: for the stimulus file, a named subset or a text file of ids (one per line); default ``all``.
        design: for the stimulus file, ``nsd_expdesign.mat`` (default: found from the NSD layout).
    """
    if is_stimulus_file(path):
        if subset is not None and _SUBJECT.match(subset) is None and subset not in SUBSETS and Path(subset).is_file():
            lines = Path(subset).read_text(encoding="utf-8").split()
            return nsd_stimuli(path, ids=lines, design=design)
        return nsd_stimuli(path, subset or "all", design=design)
    if subset is not None or design is not None:
        raise DataError(f"--subset and --design apply to NSD's stimulus file ({STIMULI_FILE.name}), not to a folder")
    stim = StimulusSet.from_folder(path)
    canon = nsd_ids.canonical_ids(stim.ids, f"images in {path}")
    return stim if canon == stim.ids else stim.with_ids(canon)
