"""The files of description records: one JSON line per record (:func:`dumps`), or Parquet with nested fields
(``params``, ``image_notes``, ``info``, ``clean``) as JSON strings; the fields ``image``, ``model``, ``prompt``,
``text`` first. Read by :func:`read_records`; used by the description logs, ``Descriptions.write`` and the export.

>>> dumps({"image": "a", "path": Path("x/y.jpg")})
'{"image":"a","path":"x/y.jpg"}'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llmvem.errors import ConfigError, DataError


def json_default(obj: Any) -> Any:
    """JSON fallback for records: paths as strings, numpy scalars as numbers."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot write {type(obj).__name__} to a description record")


def dumps(obj: Any) -> str:
    """``obj`` as one compact JSON line (non-ASCII kept; paths and numpy scalars by :func:`json_default`)."""
    return json.dumps(obj, ensure_ascii=False, default=json_default, separators=(",", ":"))


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
