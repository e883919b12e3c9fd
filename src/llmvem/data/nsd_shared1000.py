"""The NSD shared1000 images with VLM descriptions, HED tags and the special100 captions.

Files (under ``DATA_DIR/nsd_shared1000/``): ``images/sharedNNNN_nsdNNNNN.jpg`` (1,000); ``descriptions/<model>.jsonl``
(six VLMs × four prompts) and ``descriptions/prompts.json``; ``shared1000_HED.tsv``; ``special100_captions.json``.

Ids: a stimulus id is the image's file stem (``"shared0001_nsd02951"``). The number after ``nsd`` is the image's NSD
id as written in NSD's file names (1-based); the descriptions and special100 files use that same number, but the
HED table's ``nsd_id`` column is that number minus one (0-based) and its ``File_Name`` column ends in ``.png``: the
loader matches HED rows to images by file stem and checks the off-by-one for every row.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from llmvem.data.datasets import NSD_SHARED1000
from llmvem.data.stimuli import StimulusSet
from llmvem.errors import DataError, IdMismatchError

N_IMAGES = 1000
_ID_RE = re.compile(r"shared(\d{4})_nsd(\d{5})")
DESCRIPTION_COLUMNS = ["image", "model", "prompt", "text"]


@dataclass
class NSDShared1000:
    """The NSD shared1000 set.

    Attributes:
        stimuli: the 1,000 images in shared-index order (ids ``shared0001_nsd02951`` … ``shared1000_nsd72949``).
        nsd_ids: per stimulus, the NSD id from the file name (1-based; HED's ``nsd_id`` is this minus one).
        prompts: prompt name → prompt text the describers were given.
        hed: HED tags, indexed by stimulus id (1,000 rows; columns ``File_Name``, ``nsd_id`` (0-based), ``cocoId``,
            ``HED_short``, ``HED_long``).
        special100: 100 rows with ``image`` (stimulus id), ``nsd_id``, ``coco_captions`` (list of 5 str),
            ``gpt4_caption``.
        models: describer names (file stems of ``descriptions/*.jsonl``, e.g. ``"gemma3_12b"``).
        root: the dataset folder.

    Descriptions are read on first use, per model (:meth:`descriptions_for`) or all at once (:attr:`descriptions`).
    Not every (model, prompt) pair covers all 1,000 images: see :meth:`missing_descriptions`.
    """

    stimuli: StimulusSet
    nsd_ids: list[int]
    prompts: dict[str, str]
    hed: pd.DataFrame
    special100: pd.DataFrame
    models: list[str]
    root: Path
    _by_model: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def ids(self) -> list[str]:
        return list(self.stimuli.ids)

    @property
    def descriptions(self) -> pd.DataFrame:
        """All descriptions: columns ``image``, ``model``, ``prompt``, ``text`` (one row per available triple)."""
        frames = [self._model_frame(m) for m in self.models]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DESCRIPTION_COLUMNS)

    def descriptions_for(self, model: str, prompt: str) -> dict[str, str]:
        """Stimulus id → text for one describer and prompt, in stimulus order (ids without a description are absent).

        Raises:
            DataError: unknown ``model`` or ``prompt`` (the message lists the available ones).
        """
        if model not in self.models:
            raise DataError(f"no descriptions by model {model!r}; available models: {', '.join(self.models)}")
        if prompt not in self.prompts:
            raise DataError(f"unknown prompt {prompt!r}; available prompts: {', '.join(self.prompts)}")
        df = self._model_frame(model)
        sel = df[df["prompt"] == prompt]
        texts = dict(zip(sel["image"], sel["text"], strict=True))
        return {s: texts[s] for s in self.stimuli.ids if s in texts}

    def description_sets(
        self, models: str | list[str], prompts: str | list[str]
    ) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
        """Several describers' and prompts' texts per image, for targets averaged over sources.

        Args:
            models: a model name, a list of them, or ``"all"``.
            prompts: a prompt name, a list of them, or ``"all"``.
        Returns:
            the (model, prompt) sources in order, and stimulus id → one text per source (in that order), for the
            images that have a description from every source, in stimulus order.
        Raises:
            DataError: an unknown model or prompt, or no image described by every source.
        """
        ms = list(self.models) if models == "all" else [models] if isinstance(models, str) else list(models)
        ps = list(self.prompts) if prompts == "all" else [prompts] if isinstance(prompts, str) else list(prompts)
        sources = [(m, p) for m in ms for p in ps]
        if not sources:
            raise DataError("no description source: give at least one model and one prompt")
        per = [self.descriptions_for(m, p) for m, p in sources]
        out = {s: [d[s] for d in per] for s in self.stimuli.ids if all(s in d for d in per)}
        if not out:
            raise DataError(f"no image has a description from every one of {len(sources)} sources")
        return sources, out

    def missing_descriptions(self) -> pd.DataFrame:
        """(model, prompt, image) triples with no description (columns ``model``, ``prompt``, ``image``)."""
        rows = []
        for m in self.models:
            df = self._model_frame(m)
            for p in self.prompts:
                have = set(df.loc[df["prompt"] == p, "image"])
                rows += [(m, p, s) for s in self.stimuli.ids if s not in have]
        return pd.DataFrame(rows, columns=["model", "prompt", "image"])

    def _model_frame(self, model: str) -> pd.DataFrame:
        if model not in self._by_model:
            self._by_model[model] = _read_descriptions(
                self.root / "descriptions" / f"{model}.jsonl",
                model,
                dict(zip(self.ids, self.nsd_ids, strict=True)),
                set(self.prompts),
            )
        return self._by_model[model]


def load_nsd_shared1000(data_dir: str | Path, verify: bool = True) -> NSDShared1000:
    """Load the NSD shared1000 set from the data directory (or from the ``nsd_shared1000`` folder itself).

    Args:
        data_dir: the data directory holding ``nsd_shared1000/``, or that folder.
        verify: check that all 1,000 images decode (default; about 1 s). ``False`` only lists them.

    Raises:
        DatasetNotFoundError: files are missing (the message lists the expected files and their sources).
        IdMismatchError: HED or special100 name an image that is not in ``images/``.
        DataError: a file is malformed or an NSD id disagrees with the file name.
    """
    root = NSD_SHARED1000.root(data_dir)
    NSD_SHARED1000.require(root)

    paths = sorted(p for p in (root / "images").glob("*.jpg") if _ID_RE.fullmatch(p.stem))
    stimuli = StimulusSet.from_paths(paths, name="nsd_shared1000", verify=verify)
    if len(stimuli) != N_IMAGES:
        raise DataError(f"{root / 'images'}: expected {N_IMAGES} sharedNNNN_nsdNNNNN.jpg images, found {len(stimuli)}")
    nsd_ids = [_nsd_id(s) for s in stimuli.ids]
    id_to_nsd = dict(zip(stimuli.ids, nsd_ids, strict=True))

    prompts_path = root / "descriptions" / "prompts.json"
    try:
        meta = json.loads(prompts_path.read_text(encoding="utf-8"))
        prompts = {str(k): str(v) for k, v in meta["prompts"].items()}
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
        raise DataError(f"{prompts_path}: expected JSON with a 'prompts' object of name → text ({exc})") from None
    models = sorted(p.stem for p in (root / "descriptions").glob("*.jsonl"))

    hed = _read_hed(root / "shared1000_HED.tsv", id_to_nsd)
    special100 = _read_special100(root / "special100_captions.json", id_to_nsd)
    return NSDShared1000(stimuli, nsd_ids, prompts, hed, special100, models, root)


# ----------------------------------------------------------------------------------------------- helpers
def _nsd_id(stem: str) -> int:
    m = _ID_RE.fullmatch(stem)
    if m is None:
        raise DataError(f"{stem!r} is not a sharedNNNN_nsdNNNNN name")
    return int(m.group(2))


def _check_known(ids: list[str], known: dict[str, int], where: Path) -> None:
    bad = sorted(set(ids) - set(known))
    if bad:
        raise IdMismatchError(f"{where}: {len(bad)} id(s) not among the {len(known)} images: {bad[:10]}")


def _read_hed(path: Path, id_to_nsd: dict[str, int]) -> pd.DataFrame:
    try:
        hed = pd.read_csv(path, sep="\t")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as TSV ({exc})") from None
    need = {"File_Name", "nsd_id", "HED_short", "HED_long"}
    if not need <= set(hed.columns):
        raise DataError(f"{path}: needs columns {sorted(need)}, has {list(hed.columns)}")
    ids = [Path(str(f)).stem for f in hed["File_Name"]]
    _check_known(ids, id_to_nsd, path)
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: duplicate File_Name rows")
    off = [i for i, n in zip(ids, hed["nsd_id"], strict=True) if int(n) != id_to_nsd[i] - 1]
    if off:
        raise DataError(f"{path}: nsd_id is not the file-name NSD id minus one for {off[:10]}")
    hed.index = pd.Index(ids, name="image")
    return hed


def _read_special100(path: Path, id_to_nsd: dict[str, int]) -> pd.DataFrame:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
        rows: list[dict[str, Any]] = [
            {
                "image": Path(r["image"]).stem,
                "nsd_id": int(r["nsd_id"]),
                "coco_captions": [str(c) for c in r["coco_captions"]],
                "gpt4_caption": str(r["gpt4_caption"]),
            }
            for r in records
        ]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path}: expected a JSON list of objects with image, nsd_id, coco_captions, gpt4_caption ({exc})"
        ) from None
    ids = [r["image"] for r in rows]
    _check_known(ids, id_to_nsd, path)
    off = [r["image"] for r in rows if r["nsd_id"] != id_to_nsd[r["image"]]]
    if off:
        raise DataError(f"{path}: nsd_id differs from the file-name NSD id for {off[:10]}")
    return pd.DataFrame(rows, columns=["image", "nsd_id", "coco_captions", "gpt4_caption"])


def _read_descriptions(path: Path, model: str, id_to_nsd: dict[str, int], prompts: set[str]) -> pd.DataFrame:
    """One describer's file as a DataFrame (image, model, prompt, text); ids, NSD ids and prompts checked."""
    rows: list[tuple[str, str, str, str]] = []
    bad_nsd: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                sid, prompt, text = Path(rec["image"]).stem, str(rec["prompt"]), str(rec["text"])
                nsd = rec.get("nsd_id")
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise DataError(f"{path}:{lineno}: expected a JSON object with image, prompt, text ({exc})") from None
            if nsd is not None and sid in id_to_nsd and int(nsd) != id_to_nsd[sid]:
                bad_nsd.append(sid)
            rows.append((sid, model, prompt, text))
    df = pd.DataFrame(rows, columns=DESCRIPTION_COLUMNS)
    _check_known(list(df["image"]), id_to_nsd, path)
    if bad_nsd:
        raise DataError(f"{path}: nsd_id differs from the file-name NSD id for {bad_nsd[:10]}")
    unknown = sorted(set(df["prompt"]) - prompts)
    if unknown:
        raise DataError(f"{path}: prompts {unknown} are not in prompts.json ({sorted(prompts)})")
    dup = df.duplicated(["image", "prompt"])
    if dup.any():
        raise DataError(f"{path}: more than one description for {df.loc[dup, ['image', 'prompt']].values[:5].tolist()}")
    return df
