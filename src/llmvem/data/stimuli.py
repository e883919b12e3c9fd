"""Stimulus sets: ordered, stably identified images with content hashes and lazy loading.

A set's images are image files (``paths``) or the positions of an :class:`ImageSource`, images held together in one
array file (the rows of NSD's ``nsd_stimuli.hdf5``, :mod:`llmvem.data.nsd_stimuli`). Every stage reads them through
the set (:meth:`StimulusSet.load`, :attr:`StimulusSet.content_hashes`, :attr:`StimulusSet.locations`), so both kinds
work wherever a set does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from llmvem.errors import DataError, IdMismatchError
from llmvem.hashing import hash_file, hash_many

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageRef(Protocol):
    """One image of an :class:`ImageSource` where a file path would go (a describe request); ``str()`` names it."""

    def png(self) -> bytes:
        """The image's 8-bit RGB pixels encoded losslessly as PNG."""
        ...


class ImageSource(Protocol):
    """Images that are not one file each, addressed by position ``0 … n-1`` (``n = len(source)``).

    Implementations read lazily and survive pickling (a DataLoader worker reopens what it needs).
    """

    def __len__(self) -> int: ...

    def load(self, k: int) -> Image.Image:
        """Image ``k`` as 8-bit RGB."""
        ...

    def content_hashes(self) -> list[str]:
        """SHA-256 content hash of every image (n), reading only this source's images."""
        ...

    def take(self, positions: Sequence[int]) -> ImageSource:
        """A source of the images at ``positions``, in that order."""
        ...

    def ref(self, k: int) -> ImageRef:
        """A reference to image ``k`` (see :class:`ImageRef`)."""
        ...


@dataclass(frozen=True)
class BadImage:
    """An image that could not be read: its id, path and the reason."""

    id: str
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class UnreadableImagesError(DataError):
    """One or more images of a stimulus set are unreadable; ``bad`` lists each with its reason."""

    def __init__(self, bad: Sequence[BadImage]) -> None:
        self.bad = list(bad)
        lines = "\n".join(f"  - {b}" for b in self.bad[:20])
        more = f"\n  ... and {len(self.bad) - 20} more" if len(self.bad) > 20 else ""
        super().__init__(
            f"{len(self.bad)} unreadable image(s):\n{lines}{more}\n"
            "Fix these files, or move them out of the folder (in Python, StimulusSet.from_folder(..., "
            "on_error='skip') leaves them out and lists them in .skipped)."
        )


def folder_images(folder: str | Path, suffixes: Sequence[str] = IMAGE_SUFFIXES, stacklevel: int = 2) -> list[Path]:
    """The image files directly in ``folder`` (sorted, not decoded), for every stage that reads a folder.

    What looks meant to count but is left out is named in one warning: subfolders, symbolic links that lead nowhere
    (broken or looping) and image-named entries that are not regular files (FIFOs, sockets, devices: reading one could
    block forever).

    Raises:
        DataError: ``folder`` is not a folder, or holds no image file directly (with the subfolders it has, so a
            class-folder layout is named as such).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    paths: list[Path] = []
    skipped: dict[str, list[str]] = {}
    for p in sorted(folder.iterdir()):
        image_name = p.suffix.lower() in suffixes
        try:
            is_dir, is_file = p.is_dir(), p.is_file()
            exists = p.exists()
        except OSError:  # a symlink loop on some Pythons
            is_dir = is_file = exists = False
        if is_file and image_name:
            paths.append(p)
        elif is_dir and not p.name.startswith("."):
            skipped.setdefault("subfolder", []).append(p.name)
        elif p.is_symlink() and not exists:
            skipped.setdefault("broken or looping link", []).append(p.name)
        elif image_name and not is_file and not is_dir:
            skipped.setdefault("non-regular file", []).append(p.name)
    subdirs = skipped.get("subfolder", [])
    if not paths:
        hint = (
            f"; it has {len(subdirs)} subfolder(s) ({', '.join(subdirs[:5])}): images are read directly in the "
            "folder, so run it on each subfolder"
            if subdirs
            else ""
        )
        raise DataError(f"no images ({', '.join(suffixes)}) found directly in {folder}{hint}")
    if skipped:
        import warnings

        warnings.warn(
            f"{folder}: left out "
            + "; ".join(f"{len(v)} {k}(s) ({', '.join(v[:5])})" for k, v in skipped.items())
            + f"; using the {len(paths)} image file(s) directly in it",
            stacklevel=stacklevel,
        )
    return paths


@dataclass
class StimulusSet:
    """An ordered set of image stimuli.

    Attributes:
        ids: stimulus ids, unique, in the set's order (length n).
        paths: image file of each stimulus (length n); empty when the images come from ``source``.
        name: a short name of the set (``"objects92"``).
        labels: optional per-stimulus category label (length n).
        skipped: images left out by ``on_error='skip'``, with their reasons.
        source: the images when they are not files (length n, in the set's order), else ``None``.

    Images are read only when asked for (:meth:`load`); content hashes are computed once, on first use.
    """

    ids: list[str]
    paths: list[Path]
    name: str = "stimuli"
    labels: list[str] | None = None
    skipped: list[BadImage] = field(default_factory=list)
    _hashes: list[str] | None = field(default=None, repr=False, compare=False)
    source: ImageSource | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.ids = [str(i) for i in self.ids]
        self.paths = [Path(p) for p in self.paths]
        if self.source is not None:
            if self.paths:
                raise DataError(f"StimulusSet {self.name!r}: give image paths or an image source, not both")
            if len(self.source) != len(self.ids):
                raise DataError(f"StimulusSet {self.name!r}: {len(self.ids)} ids but {len(self.source)} images")
        elif len(self.ids) != len(self.paths):
            raise DataError(f"StimulusSet {self.name!r}: {len(self.ids)} ids but {len(self.paths)} paths")
        dup = _duplicates(self.ids)
        if dup:
            raise DataError(f"StimulusSet {self.name!r}: duplicate stimulus ids {dup[:10]}")
        if self.labels is not None and len(self.labels) != len(self.ids):
            raise DataError(f"StimulusSet {self.name!r}: {len(self.labels)} labels for {len(self.ids)} stimuli")

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_folder(
        cls, folder: str | Path, name: str | None = None, recursive: bool = False, on_error: str = "raise"
    ) -> StimulusSet:
        """All images in ``folder`` (sorted by relative path); id = relative path without suffix.

        Args:
            on_error: ``"raise"`` (default) raises :class:`UnreadableImagesError` listing every unreadable file;
                ``"skip"`` leaves them out and records them in ``skipped``.
        """
        folder = Path(folder)
        if not recursive:
            paths = folder_images(folder, stacklevel=3)
        else:
            if not folder.is_dir():
                raise DataError(f"image folder not found: {folder}")
            paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not paths:
                raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder} or its subfolders")
        ids = [str(p.relative_to(folder).with_suffix("")) for p in paths]
        return cls.from_paths(paths, ids=ids, name=name or folder.name, on_error=on_error)

    @classmethod
    def from_paths(
        cls,
        paths: Sequence[str | Path],
        ids: Sequence[str] | None = None,
        name: str = "stimuli",
        labels: Sequence[str] | None = None,
        on_error: str = "raise",
        verify: bool = True,
    ) -> StimulusSet:
        """A set from a list of image paths; ids default to file stems.

        With ``verify`` every file is checked to decode as an image (headers and pixel data) up front, so a
        corrupt file is reported here with its path and reason rather than deep inside a later stage.
        """
        if on_error not in ("raise", "skip"):
            raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        files = [Path(p) for p in paths]
        ids = [p.stem for p in files] if ids is None else [str(i) for i in ids]
        if len(ids) != len(files):
            raise DataError(f"{len(ids)} ids for {len(files)} paths")
        if labels is not None and len(labels) != len(files):
            raise DataError(f"{len(labels)} labels for {len(files)} paths")
        bad: list[BadImage] = []
        if verify:
            bad = [BadImage(i, p, r) for i, p in zip(ids, files, strict=True) if (r := check_image(p)) is not None]
        if bad and on_error == "raise":
            raise UnreadableImagesError(bad)
        bad_ids = {b.id for b in bad}
        keep = [k for k, i in enumerate(ids) if i not in bad_ids]
        return cls(
            ids=[ids[k] for k in keep],
            paths=[files[k] for k in keep],
            name=name,
            labels=[labels[k] for k in keep] if labels is not None else None,
            skipped=bad,
        )

    # ----------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def index(self, stimulus_id: str) -> int:
        try:
            return self._index()[stimulus_id]
        except KeyError:
            raise DataError(f"stimulus id {stimulus_id!r} is not in set {self.name!r}") from None

    def _index(self) -> dict[str, int]:
        return {s: k for k, s in enumerate(self.ids)}

    def load(self, i: int | str, mode: str = "RGB") -> Image.Image:
        """Decode stimulus ``i`` (position or id) as a PIL image in ``mode``."""
        k = self.index(i) if isinstance(i, str) else i
        if self.source is not None:
            if not -len(self) <= k < len(self):
                raise IndexError(f"stimulus position {k} out of range for {len(self)} stimuli")
            rgb = self.source.load(k % len(self))
            return rgb if mode == "RGB" else rgb.convert(mode)
        return load_image(self.paths[k], mode=mode)

    @property
    def locations(self) -> list[Path] | list[ImageRef]:
        """Where each image is (length n): its file, or a reference into the image source."""
        if self.source is not None:
            return [self.source.ref(k) for k in range(len(self))]
        return list(self.paths)

    @property
    def content_hashes(self) -> list[str]:
        """SHA-256 of each image (computed once): of the file's bytes, or the source's hash (for
        :mod:`llmvem.data.nsd_stimuli`, of the decoded pixels)."""
        if self._hashes is None:
            src = self.source
            self._hashes = src.content_hashes() if src is not None else [hash_file(p) for p in self.paths]
        return self._hashes

    @property
    def fingerprint(self) -> str:
        """One hash of the ordered ids and image contents; equal iff same images in the same order with same ids."""
        return hash_many([f"{i}:{h}" for i, h in zip(self.ids, self.content_hashes, strict=True)])

    def subset(self, ids: Sequence[str]) -> StimulusSet:
        """The stimuli ``ids`` in that order; unknown ids raise :class:`IdMismatchError` naming them."""
        idx = self._index()
        missing = [i for i in ids if i not in idx]
        if missing:
            raise IdMismatchError(f"{len(missing)} id(s) not in stimulus set {self.name!r}: {missing[:10]}")
        ks = [idx[i] for i in ids]
        hashes = [self._hashes[k] for k in ks] if self._hashes is not None else None
        return StimulusSet(
            ids=[self.ids[k] for k in ks],
            paths=[self.paths[k] for k in ks] if self.source is None else [],
            name=self.name,
            labels=[self.labels[k] for k in ks] if self.labels is not None else None,
            _hashes=hashes,
            source=self.source.take(ks) if self.source is not None else None,
        )

    def with_ids(self, ids: Sequence[str]) -> StimulusSet:
        """The same images, in the same order, under other ids (length n; e.g. canonical NSD ids)."""
        if len(ids) != len(self):
            raise DataError(f"StimulusSet {self.name!r}: {len(ids)} new ids for {len(self)} stimuli")
        return StimulusSet(
            ids=list(ids), paths=list(self.paths), name=self.name, labels=self.labels, skipped=list(self.skipped),
            _hashes=self._hashes, source=self.source,
        )  # fmt: skip


def check_image(path: Path) -> str | None:
    """Return ``None`` if ``path`` decodes as an image, else the reason it does not (see
    :func:`llmvem.data.images.read_image`: missing, permission denied, not an image, corrupt, too large)."""
    from llmvem.data.images import ImageReadError, read_image

    try:
        read_image(path)
    except ImageReadError as exc:
        return exc.reason
    return None


def load_image(path: Path, mode: str = "RGB") -> Image.Image:
    """Open and fully decode an image as every stage sees it (:func:`llmvem.data.images.to_rgb`: EXIF orientation,
    16-bit rescaled, alpha on white), then in ``mode`` if not ``"RGB"``; errors name the file and the reason."""
    from llmvem.data.images import load_rgb

    rgb = load_rgb(path)
    return rgb if mode == "RGB" else rgb.convert(mode)


def align_ids(reference: Sequence[str], other: Sequence[str], what: str, other_what: str) -> list[int]:
    """Positions in ``other`` of each id of ``reference``; a clear error if any id is missing on either side.

    NSD ids are checked too (:mod:`llmvem.data.nsd_ids`): ``nsd-00000`` is an error, and ids that match only after
    a shift of one say so.

    Returns:
        ``order`` such that ``[other[k] for k in order] == list(reference)``.
    """
    from llmvem.data.nsd_ids import check_ids, explain_mismatch

    check_ids(reference, what)
    check_ids(other, other_what)
    pos = {s: k for k, s in enumerate(other)}
    missing = [s for s in reference if s not in pos]
    if missing:
        shifted = explain_mismatch(missing, other)
        if shifted is not None:
            raise IdMismatchError(f"{len(missing)} of {len(reference)} {what} id(s) have no {other_what}: {shifted}")
        extra = sorted(set(other) - set(reference))
        raise IdMismatchError(
            f"{len(missing)} of {len(reference)} {what} id(s) have no {other_what}: {list(missing[:10])}"
            + (f"; {other_what} has {len(extra)} id(s) not in {what}: {extra[:10]}" if extra else "")
        )
    return [pos[s] for s in reference]


def _duplicates(items: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    dup: list[str] = []
    for i in items:
        if i in seen:
            dup.append(i)
        seen.add(i)
    return dup
