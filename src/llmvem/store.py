"""Content-addressed artifact store with atomic writes, and an append-only record log for resumable jobs.

Layout under the store root (default ``~/.cache/llmvem``, or ``$LLMVEM_CACHE``)::

    <root>/<kind>/<key[:2]>/<key>/meta.json      # the spec, creation time, file list and each file's SHA-256
    <root>/<kind>/<key[:2]>/<key>/<name>.npy     # arrays (or any files the producer wrote)
    <root>/.tmp/...                              # entries being written; never read

An entry is written into a private temporary directory, every file is fsynced, then the directory is renamed into
place in one ``rename(2)``. A reader therefore sees either no entry or a complete one: a writer killed mid-way leaves
only a stale temporary directory (removed by :meth:`ArtifactStore.clean`), and two concurrent writers of the same key
race harmlessly (the first rename wins, the loser discards its copy).

Every file's SHA-256 is written to ``meta.json`` (``"digests"``, layout 2) and checked before the file is read
(:meth:`ArtifactStore.get_arrays`, :meth:`ArtifactStore.get_extra`; once per process and file version), so an entry
damaged in place — same size, different bytes — is reported, never used. An entry without digests (written before
layout 2, or with an unreadable ``meta.json``) counts as absent: it is recomputed and replaced on the next use
(decision record 0008).

Example
-------
>>> import numpy as np, tempfile
>>> store = ArtifactStore(tempfile.mkdtemp())
>>> spec = {"stage": "demo", "n": 3}
>>> out = store.cached("demo", spec, lambda: {"x": np.arange(3)})
>>> store.has("demo", artifact_key({"kind": "demo", **spec}))
True
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import functools
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmvem.errors import StoreError
from llmvem.hashing import artifact_key, canonical_json, hash_file

ENV_CACHE = "LLMVEM_CACHE"
_META = "meta.json"
_TMP = ".tmp"
#: the describe stage's record logs (``llmvem.describe.run``) under the store root: every description made,
#: possibly paid API output. Not entries: :meth:`ArtifactStore.clean` and :meth:`~ArtifactStore.clean_others`
#: keep them; only :meth:`~ArtifactStore.remove_record_logs` removes them.
RECORD_LOG_DIR = "descriptions"
_HASH_MEMO_FILE = "file-hashes.json"
LAYOUT = 2  # 2: meta.json holds a SHA-256 of every file of the entry ("digests")


def default_store_root() -> Path:
    """``$LLMVEM_CACHE`` if set, else ``~/.cache/llmvem``."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "llmvem"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@dataclass(frozen=True)
class EntryInfo:
    """One finished entry of the store, as listed by ``llmvem cache ls``."""

    kind: str
    key: str
    path: Path
    size_bytes: int
    created: str
    summary: str


class ArtifactStore:
    """A content-addressed store of expensive products (embeddings, features, checkpoints, fitted models).

    Args:
        root: directory of the store; created on first write. Default :func:`default_store_root`.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_root()

    # ----------------------------------------------------------------- keys and paths
    @staticmethod
    def key(kind: str, spec: Mapping[str, Any]) -> str:
        """The artifact key of ``spec`` for ``kind`` (the kind is part of the hash)."""
        if "kind" in spec:
            raise StoreError("an artifact spec may not contain the reserved field 'kind'")
        return artifact_key({"kind": kind, **spec})

    def path(self, kind: str, key: str) -> Path:
        """Directory of the entry ``(kind, key)`` (it may not exist)."""
        if not kind or "/" in kind or kind.startswith("."):
            raise StoreError(f"invalid artifact kind {kind!r}")
        return self.root / kind / key[:2] / key

    def has(self, kind: str, key: str) -> bool:
        """Whether a finished entry ``(kind, key)`` with content digests exists (see the module docstring)."""
        return self._meta(kind, key) is not None

    def _meta(self, kind: str, key: str) -> dict[str, Any] | None:
        """The entry's ``meta.json`` if it is a readable layout-2 entry (with digests), else ``None``."""
        try:
            meta = json.loads((self.path(kind, key) / _META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or not isinstance(meta.get("digests"), dict):
            return None
        return meta

    def _verified(self, kind: str, key: str, name: str) -> Path:
        """Path of file ``name`` of the entry, after checking its SHA-256 against ``meta.json``.

        Raises:
            StoreError: the entry is absent, or the file is missing or its bytes changed since it was written.
        """
        meta = self._meta(kind, key)
        if meta is None:
            raise StoreError(f"no artifact {kind}/{key} in store {self.root}")
        p = self.path(kind, key) / name
        expected = meta["digests"].get(name)
        fix = f"remove it with `llmvem cache clean --key {key[:12]}` (it is recomputed on the next run)"
        if expected is None:
            raise StoreError(f"artifact {kind}/{key[:12]}: file {name} is not one it was written with; {fix}")
        try:
            st = p.stat()
            ok = _file_matches(str(p), st.st_size, st.st_mtime_ns, st.st_ino, expected)
        except OSError as exc:
            raise StoreError(f"artifact file {p} cannot be read ({exc.strerror or exc}); {fix}") from exc
        if not ok:
            raise StoreError(
                f"artifact file {p} is damaged: its content no longer matches the SHA-256 recorded when it was "
                f"written; {fix}"
            )
        return p

    # ----------------------------------------------------------------- writing
    @contextlib.contextmanager
    def writing(self, kind: str, key: str, spec: Mapping[str, Any] | None = None) -> Iterator[Path]:
        """Context manager yielding a private directory; on clean exit it becomes entry ``(kind, key)``.

        If the block raises, nothing is published. If another writer published the same key first, this copy is
        discarded (the entries are equal by construction of the key).
        """
        final = self.path(kind, key)
        tmp_root = self.root / _TMP
        tmp_root.mkdir(parents=True, exist_ok=True)
        tmp = tmp_root / f"{kind}-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        replaced: Path | None = None
        try:
            yield tmp
            files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
            meta = {
                "kind": kind,
                "key": key,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "files": files,
                "digests": {f: hash_file(tmp / f) for f in files},
                "layout": LAYOUT,
                "spec": json.loads(canonical_json(spec)) if spec is not None else None,
            }
            (tmp / _META).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
            _fsync_tree(tmp)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists() and not self.has(kind, key):  # an entry without digests (older layout, damaged meta)
                replaced = tmp_root / f"replaced-{final.name[:16]}-{uuid.uuid4().hex[:8]}"
                with contextlib.suppress(FileNotFoundError):
                    os.rename(final, replaced)
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and self.has(kind, key):
                    return  # another writer won the race; ours is discarded in `finally`
                raise StoreError(f"could not publish artifact {kind}/{key} to {final}: {exc}") from exc
            _fsync_dir(final.parent)
        finally:
            for leftover in (tmp, replaced):
                if leftover is not None and leftover.exists():
                    shutil.rmtree(leftover, ignore_errors=True)

    def put_arrays(
        self,
        kind: str,
        spec: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Store named arrays (and optional JSON ``extra``) under the key of ``spec``; return the key."""
        key = self.key(kind, spec)
        with self.writing(kind, key, spec) as d:
            for name, arr in arrays.items():
                np.save(d / f"{name}.npy", np.asarray(arr), allow_pickle=False)
            if extra is not None:
                (d / "extra.json").write_text(json.dumps(extra, indent=1, sort_keys=True), encoding="utf-8")
        return key

    # ----------------------------------------------------------------- reading
    def get_arrays(self, kind: str, key: str, mmap: bool = False) -> dict[str, np.ndarray]:
        """Load every ``.npy`` of an entry by name. Raises :class:`StoreError` if the entry is absent or damaged."""
        meta = self._meta(kind, key)
        if meta is None:
            raise StoreError(f"no artifact {kind}/{key} in store {self.root}")
        out: dict[str, np.ndarray] = {}
        for name in sorted(f for f in meta["digests"] if f.endswith(".npy") and "/" not in f):
            p = self._verified(kind, key, name)
            try:
                out[p.stem] = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise StoreError(
                    f"artifact file {p} is damaged ({exc}); remove it with `llmvem cache clean --key {key[:12]}`"
                ) from exc
        return out

    def get_extra(self, kind: str, key: str) -> dict[str, Any]:
        """The entry's JSON ``extra`` (``{}`` if it has none), after its digest check."""
        meta = self._meta(kind, key)
        if meta is None or "extra.json" not in meta["digests"]:
            return {}
        extra: dict[str, Any] = json.loads(self._verified(kind, key, "extra.json").read_text(encoding="utf-8"))
        return extra

    def cached(
        self,
        kind: str,
        spec: Mapping[str, Any],
        compute: Callable[[], Mapping[str, np.ndarray]],
        extra: Callable[[], Mapping[str, Any]] | None = None,
    ) -> dict[str, np.ndarray]:
        """Return the arrays of ``(kind, spec)``, computing and storing them first if absent."""
        key = self.key(kind, spec)
        if not self.has(kind, key):
            arrays = compute()
            self.put_arrays(kind, spec, arrays, extra() if extra is not None else None)
        return self.get_arrays(kind, key)

    # ----------------------------------------------------------------- listing and cleaning
    def entries(self, kind: str | None = None) -> list[EntryInfo]:
        """Finished entries, newest first."""
        if not self.root.is_dir():
            return []
        kinds = [kind] if kind else sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != _TMP)
        infos: list[EntryInfo] = []
        for k in kinds:
            base = self.root / k
            if not base.is_dir():
                continue
            for meta_path in base.glob(f"*/*/{_META}"):
                d = meta_path.parent
                try:
                    meta = json.loads(meta_path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    meta = {}
                size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
                spec = meta.get("spec") or {}
                summary = ", ".join(f"{a}={b}" for a, b in list(spec.items())[:3] if not isinstance(b, dict | list))
                infos.append(EntryInfo(k, d.name, d, size, meta.get("created", "?"), summary))
        infos.sort(key=lambda e: e.created, reverse=True)
        return infos

    def stale_temporaries(self, min_age_s: float = 0.0) -> list[Path]:
        """Temporary directories of writers that never finished (older than ``min_age_s`` seconds)."""
        tmp_root = self.root / _TMP
        if not tmp_root.is_dir():
            return []
        now = time.time()
        return [p for p in tmp_root.iterdir() if now - p.stat().st_mtime >= min_age_s]

    def clean(self, kind: str | None = None, key_prefix: str | None = None, tmp_min_age_s: float = 3600.0) -> int:
        """Remove entries (all, one kind, or those whose key starts with ``key_prefix``) and stale temporaries.

        Returns the number of entries removed (stale temporaries are removed but not counted). Temporaries younger
        than ``tmp_min_age_s`` may belong to a live writer and are left alone.
        """
        removed = 0
        for e in self.entries(kind):
            if key_prefix and not e.key.startswith(key_prefix):
                continue
            shutil.rmtree(e.path, ignore_errors=True)
            removed += 1
        for p in self.stale_temporaries(tmp_min_age_s):
            shutil.rmtree(p, ignore_errors=True)
        return removed

    def record_logs(self) -> list[Path]:
        """The describe record logs (``descriptions/*.jsonl``), sorted."""
        d = self.root / RECORD_LOG_DIR
        return sorted(d.glob("*.jsonl")) if d.is_dir() else []

    def remove_record_logs(self, key_prefix: str | None = None) -> int:
        """Remove the record logs (those whose name starts with ``key_prefix``); returns how many."""
        logs = [p for p in self.record_logs() if not key_prefix or p.name.startswith(key_prefix)]
        for p in logs:
            p.unlink()
        return len(logs)

    def demo_sets(self) -> list[Path]:
        """The generated demo stimulus sets (``demo_sets/*``)."""
        d = self.root / "demo_sets"
        return sorted(d.iterdir()) if d.is_dir() else []

    def clean_others(self) -> int:
        """Remove what is neither an entry nor a record log (generated demo sets, fine-tuning checkpoints, the
        hash memo); returns how many top-level items went. Entries go with :meth:`clean`."""
        keep = {RECORD_LOG_DIR, _TMP}
        others = [p for p in self.root.iterdir() if p.name not in keep] if self.root.is_dir() else []
        others = [p for p in others if not (p.is_dir() and any(p.glob(f"*/*/{_META}")))]  # entry kinds
        for p in others:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        return len(others)


def count_lines(path: str | Path) -> int:
    """Newlines in a file (records of a JSONL log), read in 1 MiB chunks."""
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


class RecordLog:
    """Append-only JSONL log of finished work items, for jobs that must resume after being killed.

    Each :meth:`append` writes one complete line and fsyncs it. On open, a trailing partial line (a writer killed
    mid-write) is ignored and truncated away, so a resumed job sees exactly the items that were finished.

    Args:
        path: the ``.jsonl`` file.
        key_field: field of each record that identifies the work item.
    """

    def __init__(self, path: str | Path, key_field: str = "key") -> None:
        self.path = Path(path)
        self.key_field = key_field
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._records: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        good_end = 0
        pos = 0
        lines = raw.splitlines(keepends=True)
        for n, line in enumerate(lines, 1):
            pos += len(line)
            last = n == len(lines)
            if not line.endswith(b"\n"):
                break  # partial trailing line
            try:
                rec = json.loads(line)
                key = str(rec[self.key_field])
            except (ValueError, KeyError, TypeError):
                if last:
                    break  # a torn last record: truncated away below
                raise StoreError(  # never truncate the records after a damaged one
                    f"{self.path}, line {n}: not a record of this log; remove the line (its work item will be redone)"
                ) from None
            self._records[key] = rec
            good_end = pos
        if good_end < len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                os.fsync(fh.fileno())

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def append(self, record: Mapping[str, Any]) -> None:
        key = str(record[self.key_field])
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with open(self.path, "ab") as fh:
            fh.write(line.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        self._records[key] = dict(record)


def weights_sha256(path: str | Path) -> str:
    """SHA-256 of a (weights) file, memoised per resolved path, size and modification time.

    The memo lives in this process and in ``<store root>/file-hashes.json``, so a 20-100 MB weights file is hashed
    once per machine rather than once per run. A changed file (new size or mtime) is hashed again.
    """
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as exc:
        raise StoreError(f"weights file {p} cannot be read: {exc}") from exc
    return _memoised_sha256(str(p), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _file_matches(path: str, size: int, mtime_ns: int, inode: int, expected: str) -> bool:
    """Whether the file's SHA-256 is ``expected``; memoised per file version (path, size, mtime, inode), so an
    entry read many times in one process is hashed once."""
    return hash_file(path) == expected


@functools.lru_cache(maxsize=256)
def _memoised_sha256(path: str, size: int, mtime_ns: int) -> str:
    memo_path = default_store_root() / _HASH_MEMO_FILE
    entry = f"{path}|{size}|{mtime_ns}"
    memo: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(memo_path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            memo = loaded
    if isinstance(memo.get(entry), str) and len(memo[entry]) == 64:
        return memo[entry]
    digest = hash_file(path)
    memo = {k: v for k, v in memo.items() if not k.startswith(f"{path}|")}  # drop stale versions of this file
    memo[entry] = digest
    with contextlib.suppress(OSError):  # a read-only cache directory only costs re-hashing next time
        atomic_write_text(memo_path, json.dumps(memo, indent=0, sort_keys=True))
    return digest
