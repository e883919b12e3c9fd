"""The ``import`` backend: existing captions or descriptions from JSONL or CSV files.

Each line/row needs an image reference (``image``, ``id`` or ``file``: a stimulus id, or a file name whose stem is a
stimulus id) and a ``text``. Optional ``prompt`` and ``model`` columns filter which texts are used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from llmvem.describe.base import DESCRIBERS, ImageRequest
from llmvem.errors import DataError, IdMismatchError
from llmvem.hashing import hash_file

_ID_FIELDS = ("image", "id", "file", "image_id")


def read_text_table(path: str | Path) -> pd.DataFrame:
    """Read a JSONL or CSV file of texts; reports the line of a malformed JSON record."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"descriptions file not found: {p}")
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        with open(p, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise DataError(f"{p}, line {n}: not valid JSON ({exc})") from None
        df = pd.DataFrame(rows)
    elif p.suffix.lower() in (".csv", ".tsv"):
        df = pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ",")
    else:
        raise DataError(f"{p}: descriptions must be .jsonl or .csv/.tsv")
    id_col = next((c for c in _ID_FIELDS if c in df.columns), None)
    if id_col is None or "text" not in df.columns:
        raise DataError(
            f"{p}: needs an image column (one of {', '.join(_ID_FIELDS)}) and a 'text' column; found {list(df.columns)}"
        )
    df = df.rename(columns={id_col: "image"})
    df["image"] = [Path(str(s)).stem if Path(str(s)).suffix else str(s) for s in df["image"]]
    return df


class ImportDescriber:
    """Looks up an existing text for each image.

    Args:
        source: JSONL/CSV file (see module docstring), or a mapping stimulus id → text.
        model: name recorded as the description's model (``"coco-captions"``, ``"ground-truth"`` ...); when the
            file has a ``model`` column and this is one of its values, only those rows are used.
        prompt_filter: when the file has a ``prompt`` column, use only rows with this prompt.
    """

    backend = "import"

    def __init__(
        self, source: str | Path | Mapping[str, str], model: str = "imported", prompt_filter: str | None = None
    ) -> None:
        self.model = model
        if isinstance(source, Mapping):
            self._texts = {str(k): str(v) for k, v in source.items()}
            self._source_hash = None
            self._source = "<mapping>"
        else:
            df = read_text_table(source)
            if prompt_filter is not None and "prompt" in df.columns:
                df = df[df["prompt"] == prompt_filter]
            if "model" in df.columns and model in set(df["model"]):
                df = df[df["model"] == model]
            self._texts = {}
            for img, text in zip(df["image"], df["text"], strict=True):
                self._texts.setdefault(str(img), text)
            self._source_hash = hash_file(source)
            self._source = str(source)
        if not self._texts:
            raise DataError(f"no texts found in {self._source}")

    def identity(self) -> dict[str, Any]:
        from llmvem.hashing import artifact_key

        content = self._source_hash or artifact_key(dict(sorted(self._texts.items())))
        return {"backend": self.backend, "model": self.model, "source_sha256": content}

    def check_ids(self, ids: list[str]) -> None:
        """Raise :class:`IdMismatchError` naming the ids that have no text in the source."""
        missing = [i for i in ids if i not in self._texts]
        if missing:
            raise IdMismatchError(f"{len(missing)} of {len(ids)} images have no text in {self._source}: {missing[:10]}")

    def describe(self, image: ImageRequest, prompt: str, params: Mapping[str, Any], sample: int) -> str:
        try:
            text = self._texts[image.id]
        except KeyError:
            raise IdMismatchError(f"image {image.id!r} ({image.path}) has no text in {self._source}") from None
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"image {image.id!r} has an empty text in {self._source}")
        return text


@DESCRIBERS.register("import")
def _make_import(source: str | Path | Mapping[str, str], model: str = "imported", **kwargs: Any) -> ImportDescriber:
    return ImportDescriber(source, model=model, **kwargs)
