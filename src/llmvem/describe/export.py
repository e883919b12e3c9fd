"""Export stored descriptions to JSONL or Parquet (fields ``image``, ``model``, ``prompt``, ``text`` first).

:func:`export_descriptions` reads every description log of the store (or those matching filters) — the
descriptions of every run, not only the last — and writes one row per description. Nested fields (``params``,
``image_notes``, ``info``, ``clean``) stay objects in JSONL and become JSON strings in Parquet. With ``clean``
(steps of :data:`~llmvem.describe.clean.CLEANERS`) each row's ``text`` is cleaned, its ``raw_text`` is the text as
stored and ``clean`` names the steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from llmvem.describe.clean import clean_steps, clean_text
from llmvem.describe.log import DescriptionLog
from llmvem.describe.records import read_records, write_records
from llmvem.store import ArtifactStore

__all__ = ["export_descriptions", "iter_stored", "read_records", "write_records"]


def iter_stored(
    store: ArtifactStore | None = None,
    backend: str | None = None,
    model: str | None = None,
    prompt: Sequence[str] | str | None = None,
    image_hashes: Mapping[str, str] | None = None,
    clean: str | Sequence[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Successful description records of every log in ``store``, filtered.

    Args:
        prompt: prompt names or texts to keep.
        image_hashes: content hash → stimulus id: keep only these images, named by these ids.
        clean: cleaning steps applied to each ``text`` (the stored text goes to ``raw_text``).
    """
    steps = clean_steps(clean)
    store = store or ArtifactStore()
    prompts = {prompt} if isinstance(prompt, str) else set(prompt or ())
    for path in sorted((store.root / "descriptions").glob("*.jsonl")):
        log = DescriptionLog(path, writable=False)
        for rec in log.records():
            if backend is not None and rec.get("backend") != backend:
                continue
            if model is not None and rec.get("model") != model:
                continue
            if prompts and rec.get("prompt") not in prompts and rec.get("prompt_name") not in prompts:
                continue
            if image_hashes is not None:
                sid = image_hashes.get(rec.get("image_hash", ""))
                if sid is None:
                    continue
                rec["image"] = sid
            rec.pop("ok", None)
            if steps:
                rec["raw_text"] = rec["text"]
                rec["text"] = clean_text(rec["text"], steps)
                rec["clean"] = steps
            yield rec


def export_descriptions(
    out: str | Path,
    store: ArtifactStore | None = None,
    format: str | None = None,
    backend: str | None = None,
    model: str | None = None,
    prompt: Sequence[str] | str | None = None,
    images: str | Path | None = None,
    clean: str | Sequence[str] | None = None,
) -> int:
    """Write the stored descriptions (filtered) to ``out`` (JSONL or Parquet); returns the number of rows.

    Args:
        images: a folder: keep only descriptions of its images (matched by content), named by their ids there.
        clean: cleaning steps (``"preamble"``, ``"closing"``) applied to each text; rows then hold ``raw_text``.
    """
    steps = clean_steps(clean)
    hashes: dict[str, str] | None = None
    if images is not None:
        from llmvem.describe.run import stimuli_from_folder

        stim = stimuli_from_folder(images)
        hashes = {}
        for sid, h in zip(stim.ids, stim.content_hashes, strict=True):
            hashes.setdefault(h, sid)
    rows = list(iter_stored(store, backend, model, prompt, hashes, steps))
    write_records(rows, out, format)
    return len(rows)
