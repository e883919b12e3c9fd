"""Export stored descriptions to JSONL or Parquet (fields ``image``, ``model``, ``prompt``, ``text`` first).

:func:`export_descriptions` reads every description log of the store (or those matching filters) — the
descriptions of every run, not only the last — and writes one row per description. Nested fields (``params``,
``image_notes``, ``info``, ``clean``) stay objects in JSONL and become JSON strings in Parquet. With ``clean``
(steps of :data:`~llmvem.describe.clean.CLEANERS`) each row's ``text`` is cleaned, its ``raw_text`` is the text as
stored and ``clean`` names the steps.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from llmvem.describe.base import dumps
from llmvem.describe.clean import clean_steps, clean_text
from llmvem.describe.log import DescriptionLog
from llmvem.errors import ConfigError, DataError
from llmvem.store import ArtifactStore

FIRST = ["image", "model", "prompt", "text", "backend", "prompt_name", "sample", "params", "image_hash"]
_NESTED = ("params", "image_notes", "info", "clean")
FORMATS = ("jsonl", "parquet")


def _format(path: Path, format: str | None) -> str:
    fmt = (format or path.suffix.lstrip(".")).lower()
    fmt = {"ndjson": "jsonl", "pq": "parquet"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise ConfigError(f"export format must be jsonl or parquet (from --format or the file suffix), got {fmt!r}")
    return fmt


def write_records(records: Iterable[Mapping[str, Any]], path: str | Path, format: str | None = None) -> Path:
    """Write description records (dicts) to ``path`` as JSONL or Parquet, atomically; returns ``path``."""
    from llmvem.store import atomic_write_bytes

    p = Path(path)
    fmt = _format(p, format)
    rows = [{k: r[k] for k in [*FIRST, *(k for k in r if k not in FIRST)] if k in r} for r in records]
    if fmt == "jsonl":
        atomic_write_bytes(p, "".join(dumps(r) + "\n" for r in rows).encode("utf-8"))
        return p
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list[Any]] = {}
    for r in rows:
        for k in r:
            cols.setdefault(k, [])
    for r in rows:
        for k, v in cols.items():
            x = r.get(k)
            v.append(dumps(x) if k in _NESTED and x is not None else x)
    if not cols:
        cols = {k: [] for k in FIRST[:4]}
    table = pa.table({k: pa.array(v, type=pa.string() if k in _NESTED else None) for k, v in cols.items()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(p, buf.getvalue())
    return p


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an exported JSONL or Parquet file as dicts (nested fields decoded)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"file not found: {p}")
    if _format(p, None) == "jsonl":
        return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = pq.read_table(p).to_pylist()
    for r in rows:
        for k in _NESTED:
            if isinstance(r.get(k), str):
                r[k] = json.loads(r[k])
    return rows


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
