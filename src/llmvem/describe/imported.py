"""The ``import`` backend: existing captions or descriptions flow through the same store as generated ones.

Sources (see :func:`read_text_table`):

- JSONL / CSV / TSV with an image reference (``image``, ``id``, ``file`` or ``image_id``: a stimulus id, or a file
  name whose stem is one) and a ``text``; optional ``prompt`` and ``model`` columns (the NSD shared1000
  ``descriptions/<model>.jsonl`` files are of this kind, and a ``prompts.json`` beside them gives the prompt texts);
- COCO captions JSON (``{"images": [...], "annotations": [...]}``, several captions per image);
- the NSD ``special100_captions.json`` (five human COCO captions, model ``coco``, and one ``gpt4`` caption per image);
- a JSON list of ``{"image", "text"}`` objects or a JSON object mapping image → text.

Several texts for one image and prompt (COCO's five captions) become samples 0, 1, ... in file order, so
``n_samples=5`` imports all five.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmvem.describe.base import DESCRIBERS, DescribeFailure, ImageRequest
from llmvem.describe.prompts import resolve_prompt as _default_resolve
from llmvem.errors import ConfigError, DataError, IdMismatchError
from llmvem.hashing import hash_file

if TYPE_CHECKING:
    import pandas as pd

_ID_FIELDS = ("image", "id", "file", "image_id", "file_name")


def _stem(s: object) -> str:
    p = Path(str(s))
    return p.stem if p.suffix else str(s)


def _id_key(image: str) -> str:
    """How a source's image reference and a stimulus id are matched: NSD images by their canonical id (a source
    naming ``shared0001_nsd02951`` describes the stimulus ``nsd-02951`` and vice versa), everything else as is."""
    from llmvem.data.nsd_ids import canonical_id

    return canonical_id(image) or image


def read_text_table(path: str | Path) -> pd.DataFrame:
    """Read a file of texts into a frame with columns ``image`` (stimulus id), ``text`` and any of ``prompt``,
    ``model``; reports the line of a malformed JSON record.

    Raises:
        DataError: missing file, unknown format, malformed records or missing columns (the message names them).
    """
    import io

    import pandas as pd

    from llmvem.data.files import read_text_file

    p = Path(path)
    if not p.is_file():
        raise DataError(f"descriptions file not found: {p}")
    suffix = p.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".csv", ".tsv", ".json"):
        raise DataError(f"{p}: descriptions must be .jsonl, .json (COCO captions) or .csv/.tsv")
    text = read_text_file(p, "descriptions file")  # not UTF-8: one clear error, not a traceback
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise DataError(f"{p}, line {n}: not valid JSON ({exc})") from None
        df = pd.DataFrame(rows)
    elif suffix in (".csv", ".tsv"):
        try:
            df = pd.read_csv(io.StringIO(text), sep="\t" if suffix == ".tsv" else ",")
        except (ValueError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"{p}: not a readable {suffix[1:].upper()} table ({exc})") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{p}: not valid JSON ({exc})") from None
        df = _json_table(data, p)
    id_col = next((c for c in _ID_FIELDS if c in df.columns), None)
    if id_col is None or "text" not in df.columns:
        raise DataError(
            f"{p}: needs an image column (one of {', '.join(_ID_FIELDS)}) and a 'text' column; found {list(df.columns)}"
        )
    df = df.rename(columns={id_col: "image"})
    df["image"] = [_stem(s) for s in df["image"]]
    return df


def _json_table(data: Any, p: Path) -> pd.DataFrame:
    import pandas as pd

    if isinstance(data, dict) and "annotations" in data and "images" in data:  # COCO captions
        try:
            names = {im["id"]: _stem(im["file_name"]) for im in data["images"]}
            rows = [{"image": names[a["image_id"]], "text": a["caption"]} for a in data["annotations"]]
        except (KeyError, TypeError) as exc:
            raise DataError(
                f"{p}: COCO captions need images[].id/file_name and annotations[].image_id/caption ({exc!r})"
            ) from None
        return pd.DataFrame(rows, columns=["image", "text"])
    if isinstance(data, list) and data and isinstance(data[0], dict) and "coco_captions" in data[0]:  # special100
        rows = []
        try:
            for r in data:
                rows += [{"image": r["image"], "text": c, "model": "coco"} for c in r["coco_captions"]]
                if r.get("gpt4_caption"):
                    rows.append({"image": r["image"], "text": r["gpt4_caption"], "model": "gpt4"})
        except (KeyError, TypeError) as exc:
            raise DataError(f"{p}: expected objects with image and coco_captions ({exc!r})") from None
        return pd.DataFrame(rows, columns=["image", "text", "model"])
    if isinstance(data, list):
        if not all(isinstance(r, dict) for r in data):
            raise DataError(f"{p}: a JSON list of texts must hold objects with image and text")
        return pd.DataFrame(data)
    if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
        return pd.DataFrame({"image": list(data), "text": list(data.values())})
    raise DataError(f"{p}: unknown JSON layout (expected COCO captions, a list of records or image → text)")


class ImportDescriber:
    """Looks up existing texts for each image.

    Args:
        source: a file (see the module docstring), or a mapping stimulus id → text.
        model: name recorded as the description's model (``"coco"``, ``"gemma3_12b"``, ``"ground-truth"`` ...);
            when the file has a ``model`` column and this is one of its values, only those rows are used. A file
            with several models needs one of them named.
        prompt_filter: when the file has a ``prompt`` column, use only rows with this prompt (the ``prompt``
            argument of :func:`describe_stimuli` does the same).
        prompts_file: JSON ``{"prompts": {name: text}}`` giving the text of prompt names in the source; default
            ``prompts.json`` beside the source, if present.
    """

    backend = "import"

    def __init__(
        self,
        source: str | Path | Mapping[str, str],
        model: str = "imported",
        prompt_filter: str | None = None,
        prompts_file: str | Path | None = None,
    ) -> None:
        self.model = model
        self.prompt_texts: dict[str, str] = {}
        self._texts: dict[tuple[str, str | None], list[Any]] = {}
        self._source_prompts: list[str] = []
        if isinstance(source, Mapping):
            for k, v in source.items():
                self._texts[(_id_key(str(k)), None)] = [v]
            self._source_hash: str | None = None
            self._source = "<mapping>"
        else:
            df = read_text_table(source)
            self._source = str(source)
            self._source_hash = hash_file(source)
            if "model" in df.columns:
                models = list(dict.fromkeys(df["model"].dropna().astype(str)))
                if model in models:
                    df = df[df["model"] == model]
                elif len(models) > 1:
                    raise ConfigError(
                        f"{source} holds texts by several models ({', '.join(models)}); choose one with --model"
                    )
            if "prompt" in df.columns and df["prompt"].notna().any():
                if prompt_filter is not None:
                    df = df[df["prompt"] == prompt_filter]
                self._source_prompts = list(dict.fromkeys(df["prompt"].astype(str)))
                prompts = df["prompt"].astype(str).tolist()
            else:
                prompts = [None] * len(df)
            for img, pr, text in zip(df["image"].astype(str), prompts, df["text"], strict=True):
                self._texts.setdefault((_id_key(img), pr), []).append(text)
            pf = Path(prompts_file) if prompts_file is not None else Path(source).with_name("prompts.json")
            if pf.is_file():
                try:
                    meta = json.loads(pf.read_text(encoding="utf-8"))
                    self.prompt_texts = {str(k): str(v) for k, v in dict(meta.get("prompts", meta)).items()}
                except (ValueError, TypeError, AttributeError) as exc:
                    if prompts_file is not None:
                        raise DataError(f"{pf}: expected JSON {{'prompts': {{name: text}}}} ({exc})") from None
        if not self._texts:
            raise DataError(f"no texts found in {self._source}")
        self._ids = {img for img, _ in self._texts}
        self._by_text = {self.prompt_texts.get(p, p): p for p in self._source_prompts}

    def identity(self) -> dict[str, Any]:
        from llmvem.hashing import artifact_key

        if self._source_hash is None:
            content = artifact_key({f"{k[0]}\x00{k[1]}": [str(t) for t in v] for k, v in self._texts.items()})
        else:
            content = self._source_hash
        return {"backend": self.backend, "model": self.model, "source_sha256": content}

    def resolve_prompt(self, prompt: str, label: str | None = None) -> tuple[str, str]:
        """(name, text) of ``prompt`` as the source knows it.

        A source without prompts takes any prompt (recorded as given). A source with one prompt uses it whatever
        was asked; with several, ``prompt`` must name one of them (by name or text).

        Raises:
            ConfigError: the source has several prompts and ``prompt`` is none of them (the message lists them).
        """
        if not self._source_prompts:
            return prompt, _default_resolve(prompt, label)
        for cand in (prompt, _default_resolve(prompt, label) if "{label}" not in prompt or label else prompt):
            if cand in self._source_prompts:
                return cand, self.prompt_texts.get(cand, cand)
            if cand in self._by_text:
                name = self._by_text[cand]
                return name, cand
        if len(self._source_prompts) == 1:
            only = self._source_prompts[0]
            return only, self.prompt_texts.get(only, only)
        raise ConfigError(
            f"{self._source} holds texts for prompts {', '.join(self._source_prompts)}; choose them with --prompt"
        )

    def check_ids(self, ids: list[str]) -> None:
        """Raise :class:`IdMismatchError` naming the ids that have no text in the source."""
        missing = [i for i in ids if _id_key(i) not in self._ids]
        if missing:
            raise IdMismatchError(f"{len(missing)} of {len(ids)} images have no text in {self._source}: {missing[:10]}")

    def describe(self, image: ImageRequest, prompt: str, params: Mapping[str, Any], sample: int) -> str:
        source_prompt = self._by_text.get(prompt, prompt) if self._source_prompts else None
        texts = self._texts.get((_id_key(image.id), source_prompt))
        if texts is None:
            if _id_key(image.id) not in self._ids:
                raise IdMismatchError(f"image {image.id!r} ({image.path}) has no text in {self._source}")
            raise DescribeFailure(
                f"image {image.id!r} has no text for prompt {source_prompt!r} in {self._source}", kind="input"
            )
        if sample >= len(texts):
            raise DescribeFailure(
                f"image {image.id!r} has {len(texts)} text(s) in {self._source}, no sample {sample}", kind="input"
            )
        text = texts[sample]
        if not isinstance(text, str) or not text.strip():
            raise DescribeFailure(f"image {image.id!r} has an empty text in {self._source}", kind="input")
        return text


@DESCRIBERS.register("import")
def _make_import(source: str | Path | Mapping[str, str], model: str = "imported", **kwargs: Any) -> ImportDescriber:
    if source is None:
        raise ConfigError("describe.source (--source FILE) is required by the import backend")
    return ImportDescriber(source, model=model, **kwargs)
