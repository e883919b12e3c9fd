"""The description log: an append-only JSONL file per describe job, safe against SIGKILL and fast to resume.

Each finished request (success or failure) is one line written with a single ``write(2)`` on an ``O_APPEND``
descriptor, so a killed process leaves at most one torn last line, which the next writer truncates away. Lines
start with a fixed prefix ``{"key":"<64 hex>","ok":true|false,`` so resuming indexes 100,000 records by slicing
bytes, without parsing their JSON; a record is parsed only when it is read. ``fdatasync`` runs at most every
``sync_every_s`` seconds and on close: a killed *process* loses nothing written (the kernel has it); only a power
cut can lose the last unsynced second. One writer per log at a time (an exclusive ``flock``); a second concurrent
run of the same job is refused with a clear message instead of duplicating work.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from llmvem.describe.records import dumps
from llmvem.errors import StoreError

_PREFIX = b'{"key":"'
_KEY_END = len(_PREFIX) + 64  # 72
_OK_AT = _KEY_END + len(b'","ok":')  # 79


class DescriptionLog:
    """Append-only log of a describe job's finished requests.

    Args:
        path: the ``.jsonl`` file (created with its folder on first write).
        writable: take the writer lock and repair a torn last line; ``False`` only reads.
        sync_every_s: longest time between ``fdatasync`` calls while writing.

    Attributes:
        done: key → (byte offset, length) of its successful record.
        failed: key → (byte offset, length) of its latest failure, for keys with no success.
    """

    def __init__(self, path: str | Path, writable: bool = True, sync_every_s: float = 1.0) -> None:
        self.path = Path(path)
        self.writable = writable
        self.sync_every_s = sync_every_s
        self.done: dict[str, tuple[int, int]] = {}
        self.failed: dict[str, tuple[int, int]] = {}
        self._fd: int | None = None
        self._size = 0
        self._last_sync = time.monotonic()
        self._dirty = False
        if writable:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                import fcntl

                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._release()
                raise StoreError(
                    f"another describe run is writing {self.path}; wait for it to finish (two runs of the same job "
                    "would duplicate requests)"
                ) from None
            except ImportError:  # pragma: no cover - not POSIX
                pass
            except OSError as exc:  # pragma: no cover - a file system without locks
                self._release()
                raise StoreError(f"cannot lock {self.path} ({exc}); put the artifact store on a local disk") from None
        try:
            self._load()
        except BaseException:
            self._release()  # a log that cannot be read must not stay locked by this process
            raise

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    # ------------------------------------------------------------------ reading
    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        end = raw.rfind(b"\n") + 1
        if end < len(raw) and self._fd is not None:  # a torn last line: a writer was killed mid-write
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
        self._size = end
        gc_was_on = gc.isenabled()
        gc.disable()  # 100,000s of small acyclic tuples: generational collections would cost as much as the scan
        try:
            self._index(raw[:end], 0)
        finally:
            if gc_was_on:
                gc.enable()

    def _index(self, raw: bytes, base: int) -> None:
        done, failed = self.done, self.failed
        pos = base
        for line in raw.split(b"\n"):
            n = len(line)
            if n == 0:
                pos += 1
                continue
            if line.startswith(_PREFIX) and line[_KEY_END : _KEY_END + 1] == b'"':
                key = line[len(_PREFIX) : _KEY_END].decode("ascii")
                ok = line[_OK_AT : _OK_AT + 4] == b"true"
            else:  # written by hand or by another tool: parse it
                try:
                    rec = json.loads(line)
                    key, ok = str(rec["key"]), bool(rec.get("ok", True))
                except (ValueError, KeyError, TypeError):
                    raise StoreError(
                        f"{self.path}: line at byte {pos} is not a description record; "
                        "remove the line or the file (its requests will be made again)"
                    ) from None
            if ok:
                done[key] = (pos, n)
                failed.pop(key, None)
            elif key not in done:
                failed[key] = (pos, n)
            pos += n + 1

    def __contains__(self, key: object) -> bool:
        return key in self.done

    def __len__(self) -> int:
        return len(self.done)

    def read(self, key: str) -> dict[str, Any] | None:
        """The successful record of ``key`` (or its latest failure when it has none); ``None`` if unknown."""
        loc = self.done.get(key) or self.failed.get(key)
        if loc is None:
            return None
        return self._read_at(*loc)

    def _read_at(self, offset: int, length: int) -> dict[str, Any]:
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            rec: dict[str, Any] = json.loads(fh.read(length))
        return rec

    def read_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Records of ``keys`` (successes, else latest failures), reading the file once in offset order."""
        locs = sorted((loc, k) for k in set(keys) if (loc := self.done.get(k) or self.failed.get(k)) is not None)
        out: dict[str, dict[str, Any]] = {}
        if not locs:
            return out
        with open(self.path, "rb") as fh:
            for (offset, length), k in locs:
                fh.seek(offset)
                out[k] = json.loads(fh.read(length))
        return out

    def records(self) -> Iterator[dict[str, Any]]:
        """Every successful record, in file order (one per key)."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            pos = 0
            for line in fh:
                n = len(line)
                if not line.endswith(b"\n"):
                    break
                if line.startswith(_PREFIX) and line[_OK_AT : _OK_AT + 5] == b"false":
                    pos += n
                    continue
                rec = json.loads(line)
                if rec.get("ok", True) and self.done.get(str(rec["key"]), (pos,))[0] == pos:
                    yield rec
                pos += n

    def failures(self) -> list[dict[str, Any]]:
        """The latest failure record of every key that has no success."""
        return list(self.read_many(self.failed).values())

    # ------------------------------------------------------------------ writing
    def append(self, key: str, ok: bool, record: Mapping[str, Any]) -> None:
        """Append one record (one ``write``); ``record`` must not hold ``key`` or ``ok``."""
        if self._fd is None:
            raise StoreError(f"{self.path} was opened read-only or is closed")
        if len(key) != 64:
            raise StoreError(f"record key must be a 64-character hex digest, got {key!r}")
        body = dumps(record)
        line = f'{{"key":"{key}","ok":{"true" if ok else "false"}' + ("," + body[1:] if body != "{}" else "}") + "\n"
        data = line.encode("utf-8")
        self._write_line(self._fd, data)
        loc = (self._size, len(data) - 1)
        self._size += len(data)
        if ok:
            self.done[key] = loc
            self.failed.pop(key, None)
        elif key not in self.done:
            self.failed[key] = loc
        self._dirty = True
        if time.monotonic() - self._last_sync >= self.sync_every_s:
            self.sync()

    def _write_line(self, fd: int, data: bytes) -> None:
        """Append ``data`` whole, or leave the file as it was.

        One ``write`` normally takes the whole line. A short write (possible on some file systems when a signal
        arrives) is completed by further writes — the lock makes this process the only writer, so ``O_APPEND``
        puts the rest right after. If writing fails (a full disk), the partial line is cut off again: a torn line
        must never stay in the middle of the log, where later records would be glued onto it.
        """
        view = memoryview(data)
        try:
            while view:
                n = os.write(fd, view)
                if n <= 0:  # pragma: no cover - write(2) returns > 0 or raises
                    raise OSError("write returned 0")
                view = view[n:]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
            raise StoreError(f"cannot append to {self.path} ({exc}); is the disk full?") from None

    def sync(self) -> None:
        """Flush written records to the disk (``fdatasync``)."""
        if self._fd is not None and self._dirty:
            (getattr(os, "fdatasync", None) or os.fsync)(self._fd)
            self._dirty = False
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Sync and release the writer lock."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.sync()
            self._release()

    def __enter__(self) -> DescriptionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
