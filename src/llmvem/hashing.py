"""Content hashes and artifact keys.

An artifact key is the SHA-256 of a canonical JSON encoding of everything that determines the artifact. Canonical
means: dict keys sorted, no whitespace, floats written with ``repr`` precision, tuples as lists, numpy scalars and
arrays and paths encoded by value. Two specs are equal iff their canonical encodings are equal, so changing any input
changes the key.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

_CHUNK = 1 << 20


def hash_bytes(data: bytes) -> str:
    """SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def hash_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_text(text: str) -> str:
    """SHA-256 hex digest of the UTF-8 encoding of ``text``."""
    return hash_bytes(text.encode("utf-8"))


def hash_array(array: Any) -> str:
    """SHA-256 over dtype, shape and C-ordered bytes of ``array`` (read in blocks of rows: a memory-mapped array is
    not copied whole); an object with its own ``digest()`` (a :class:`~llmvem.vision.pixels.PixelArray`) gives
    that."""
    if hasattr(array, "digest") and not isinstance(array, np.ndarray):
        return str(array.digest())
    a = np.asarray(array)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}|{a.shape}|".encode())
    if a.ndim == 0:
        h.update(np.ascontiguousarray(a).tobytes())
    else:
        step = max(1, (64 << 20) // max(a[:1].nbytes, 1))  # ~64 MB at a time
        for i in range(0, len(a), step):
            h.update(np.ascontiguousarray(a[i : i + step]).tobytes())
    return h.hexdigest()


def hash_many(digests: Iterable[str]) -> str:
    """Order-sensitive hash of a sequence of digests (e.g. the content hashes of a stimulus set)."""
    h = hashlib.sha256()
    for d in digests:
        h.update(d.encode("ascii"))
        h.update(b"\n")
    return h.hexdigest()


def _canonical(obj: Any) -> Any:
    """Turn ``obj`` into plain JSON data in a way that distinguishes every distinct value."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        if math.isnan(f):
            return {"__float__": "nan"}
        if math.isinf(f):
            return {"__float__": "inf" if f > 0 else "-inf"}
        # repr round-trips exactly; tag so that 1.0 and 1 differ.
        return {"__float__": repr(f)}
    if isinstance(obj, bytes):
        return {"__bytes__": hash_bytes(obj)}
    if isinstance(obj, Path):
        return {"__path__": str(obj)}
    if isinstance(obj, np.ndarray):
        return {"__array__": hash_array(obj)}
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"artifact key specs need string dict keys, got {type(k).__name__}: {k!r}")
            out[k] = _canonical(v)
        return out
    if isinstance(obj, list | tuple):
        if all(type(v) is str for v in obj):  # fast path: lists of content hashes / ids / texts
            return list(obj)
        return [_canonical(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return {"__set__": sorted(json.dumps(_canonical(v), sort_keys=True) for v in obj)}
    if hasattr(obj, "model_dump"):  # pydantic models
        return _canonical(obj.model_dump(mode="json"))
    raise TypeError(f"cannot hash object of type {type(obj).__name__} into an artifact key")


def canonical_json(spec: Any) -> str:
    """Canonical JSON text of ``spec`` (see module docstring)."""
    return json.dumps(_canonical(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def artifact_key(spec: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of the canonical JSON of ``spec``.

    >>> artifact_key({"kind": "x", "a": 1}) == artifact_key({"a": 1, "kind": "x"})
    True
    >>> artifact_key({"a": 1}) == artifact_key({"a": 1.0})
    False
    """
    return hash_text(canonical_json(spec))
