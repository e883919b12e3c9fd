"""Describe every image of a stimulus set with a describer: planned, concurrent, resumable, failures recorded.

Each request — one (image content, describer, prompt, parameters, sample) — has a key; finished requests, successes
and failures alike, are appended to the job's :class:`~llmvem.describe.log.DescriptionLog` in the artifact store
(``<store>/descriptions/<job>.jsonl``, job = describer identity + generation parameters). A re-run skips every key
with a success and retries the failures, so a killed job loses at most the requests in flight and never duplicates
a description. Identical image files under several ids are described once.
"""

from __future__ import annotations

import gc
import hashlib
import queue
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from llmvem.data.stimuli import StimulusSet
from llmvem.describe.base import (
    DescribeFailure,
    Describer,
    Description,
    Descriptions,
    Failure,
    Generation,
    ImageRequest,
    check_text,
    length_warning,
)
from llmvem.describe.clean import clean_steps, clean_text
from llmvem.describe.log import DescriptionLog
from llmvem.describe.prompts import resolve_prompt
from llmvem.errors import BackendError, DataError, cut
from llmvem.hashing import artifact_key, hash_file, hash_text
from llmvem.store import RECORD_LOG_DIR, ArtifactStore

LOG_DIR = RECORD_LOG_DIR  # the record logs live in the store root


class DescribeFailuresError(BackendError):
    """Some requests failed for good; ``failures`` lists them and ``descriptions`` holds everything that succeeded."""

    def __init__(self, failures: Sequence[Failure], descriptions: Descriptions) -> None:
        self.failures = list(failures)
        self.descriptions = descriptions
        lines = "\n".join(f"  - {f}" for f in self.failures[:20])
        more = f"\n  ... and {len(self.failures) - 20} more" if len(self.failures) > 20 else ""
        super().__init__(
            f"{len(self.failures)} request(s) failed:\n{lines}{more}\n"
            "The successful descriptions are stored; a re-run retries only the failures."
        )


class WorkItem(NamedTuple):
    """One request: an image, a prompt (name and resolved text) and a sample index, with its record key."""

    key: str
    image: ImageRequest
    prompt_name: str
    prompt: str
    sample: int


@dataclass
class DescribePlan:
    """What a describe job must do.

    Attributes:
        items: every (image, prompt, sample) of the set, in stimulus order, then prompt, then sample.
        todo: requests still to make (unique keys without a success), in the same order.
        n_done: requests already finished successfully.
        n_failed_before: of ``todo``, those that failed in an earlier run (they are retried).
        log_path: the job's description log.
        job: the job key (describer identity + parameters).
    """

    items: list[WorkItem]
    todo: list[WorkItem]
    n_done: int
    n_failed_before: int
    log_path: Path
    job: str
    params: dict[str, Any] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def n_requests(self) -> int:
        """Unique requests of the job (identical images share one)."""
        return len({it.key for it in self.items})


def stimuli_from_folder(folder: str | Path, labels: str | Path | None = None) -> StimulusSet:
    """Every image file of ``folder`` (ids = file stems; NSD and Algonauts names become canonical ``nsd-NNNNN``,
    :mod:`llmvem.data.nsd_ids`), listed without decoding: unreadable files become recorded failures of the describe
    run instead of stopping it before it starts.

    Args:
        labels: optional CSV/TSV/JSONL with an image column (``image``, ``id`` or ``file``) and a ``label``
            column, or a JSON object image → label: the ``{label}`` of class-conditioned prompts.
    """
    from llmvem.data.nsd_ids import canonical_ids
    from llmvem.data.stimuli import folder_images

    folder = Path(folder)
    paths = folder_images(folder, stacklevel=3)

    stems = [p.stem for p in paths]
    lab = None
    if labels is not None:
        table = read_labels(labels)
        missing = [i for i in stems if i not in table]
        if missing:
            raise DataError(f"{len(missing)} image(s) have no label in {labels}: {missing[:10]}")
        lab = [table[i] for i in stems]
    ids = canonical_ids(stems, f"images of {folder}")  # NSD / Algonauts names → nsd-NNNNN; other names unchanged
    return StimulusSet.from_paths(paths, ids=ids, name=folder.name, labels=lab, verify=False)


def read_labels(path: str | Path) -> dict[str, str]:
    """Image id (file stem) → category label from a CSV/TSV/JSONL table or a JSON object."""
    import json

    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DataError(f"labels file not found: {p}")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise DataError(f"{p}: a JSON labels file must map image → label")
            return _one_label_each(((k, v) for k, v in data.items()), p)
        if p.suffix.lower() in (".jsonl", ".ndjson"):
            df = pd.read_json(p, lines=True)
        else:
            df = pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ",")
    except ValueError as exc:
        raise DataError(f"{p}: cannot read labels ({exc})") from None
    col = next((c for c in ("image", "id", "file", "file_name") if c in df.columns), None)
    if col is None or "label" not in df.columns:
        raise DataError(f"{p}: needs an image column (image, id or file) and a 'label' column; has {list(df.columns)}")
    return _one_label_each(zip(df[col], df["label"], strict=True), p)


def _one_label_each(pairs: Iterable[tuple[object, object]], path: Path) -> dict[str, str]:
    """Image stem → label; an image listed twice with two labels is an error (one would win silently)."""
    out: dict[str, str] = {}
    clash: dict[str, set[str]] = {}
    for image, label in pairs:
        stem, text = Path(str(image)).stem, str(label)
        if out.setdefault(stem, text) != text:
            clash.setdefault(stem, {out[stem]}).add(text)
    if clash:
        shown = "; ".join(f"{k}: {sorted(v)}" for k, v in list(clash.items())[:5])
        raise DataError(f"{path}: {len(clash)} image(s) have more than one label ({cut(shown, 400)})")
    return out


def job_key(identity: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """Key of a describe job: everything about the describer and the generation parameters."""
    return artifact_key({"describer": dict(identity), "params": dict(params)})


def item_key(job: str, image_hash: str, prompt: str, sample: int) -> str:
    """Record key of one request: SHA-256 over job key, prompt text, sample index and image content hash."""
    h = _key_prefix(job, prompt, sample)
    h.update(image_hash.encode())
    return h.hexdigest()


def _key_prefix(job: str, prompt: str, sample: int) -> Any:
    """The hash state of a request key before its image hash (copied per image: long prompts are hashed once)."""
    return hashlib.sha256(f"{job}\x00{prompt}\x00{sample}\x00".encode())


#: content-hash prefix of an image file that could not be read (its requests become recorded ``input`` failures)
UNREADABLE = "unreadable:"


def _image_hashes(stimuli: StimulusSet) -> list[str]:
    """Content hash of each image; a file that cannot be read (permission, I/O error) gets ``UNREADABLE`` + a hash
    of its id instead of stopping the whole run: its requests are recorded as failures, and a re-run after the file
    is fixed describes it under its real hash."""
    try:
        return list(stimuli.content_hashes)
    except OSError:
        if stimuli.source is not None:  # not one file per image: nothing to isolate
            raise
    out = []
    for sid, path in zip(stimuli.ids, stimuli.paths, strict=True):
        try:
            out.append(hash_file(path))
        except OSError:
            out.append(UNREADABLE + hash_text(sid))
    return out


def _unreadable(image: ImageRequest) -> DescribeFailure:
    """The recorded failure of an image whose file could not be hashed (the reason read again now)."""
    from llmvem.data.images import ImageReadError, read_image

    path = Path(str(image.path))  # UNREADABLE marks files only
    try:
        read_image(path)
        reason = "cannot read the file"  # readable again: the re-run will describe it
    except ImageReadError as exc:
        reason = exc.reason
    return DescribeFailure(f"{path.name}: {reason}", kind="input")


def log_path_for(store: ArtifactStore, job: str) -> Path:
    return store.root / LOG_DIR / f"{job[:24]}.jsonl"


def plan_descriptions(
    stimuli: StimulusSet,
    describer: Describer,
    prompt: str | Sequence[str] = "caption",
    params: Mapping[str, Any] | None = None,
    n_samples: int = 1,
    store: ArtifactStore | None = None,
    log: DescriptionLog | None = None,
) -> DescribePlan:
    """Every request of the job and which of them remain (see :class:`DescribePlan`); makes no request."""
    if n_samples < 1:
        raise DataError(f"n_samples must be at least 1, got {n_samples}")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise DataError("give at least one prompt")
    store = store or ArtifactStore()
    params = dict(params or {})
    check = getattr(describer, "check_ids", None)
    if check is not None:
        check(list(stimuli.ids))
    ident = describer.identity()
    job = job_key(ident, params)
    path = log_path_for(store, job)
    if log is None:
        log = DescriptionLog(path, writable=False)
    custom = getattr(describer, "resolve_prompt", None)
    resolved: dict[tuple[str, str | None], tuple[str, str]] = {}
    prefixes: dict[tuple[str, int], Any] = {}
    hashes = _image_hashes(stimuli)
    items: list[WorkItem] = []
    todo: list[WorkItem] = []
    seen: set[str] = set()
    n_failed = 0
    done = log.done
    gc_was_on = gc.isenabled()
    gc.disable()  # the loop allocates only acyclic tuples: collections over 100,000s of them cost as much
    try:
        new = tuple.__new__  # NamedTuple construction without the Python-level __new__: 100,000s of items
        labels = stimuli.labels
        for k, (sid, img_path, h) in enumerate(zip(stimuli.ids, stimuli.locations, hashes, strict=True)):
            label = labels[k] if labels is not None else None
            req: ImageRequest = new(ImageRequest, (sid, img_path, h, label))
            for p in prompts:
                rp = resolved.get((p, label))
                if rp is None:
                    rp = resolved[(p, label)] = (
                        custom(p, label) if custom is not None else (p, resolve_prompt(p, label))
                    )
                name, text = rp
                for s in range(n_samples):
                    pre = prefixes.get((text, s))
                    if pre is None:
                        pre = prefixes[(text, s)] = _key_prefix(job, text, s)
                    hk = pre.copy()
                    hk.update(h.encode())
                    key = hk.hexdigest()
                    it: WorkItem = new(WorkItem, (key, req, name, text, s))
                    items.append(it)
                    if key not in done and key not in seen:
                        seen.add(key)
                        todo.append(it)
                        n_failed += key in log.failed
    finally:
        if gc_was_on:
            gc.enable()
    n_done = len({it[0] for it in items}) - len(todo)
    return DescribePlan(items, todo, n_done, n_failed, path, job, params, ident)


def describe_stimuli(
    stimuli: StimulusSet,
    describer: Describer,
    prompt: str | Sequence[str] = "caption",
    params: Mapping[str, Any] | None = None,
    n_samples: int = 1,
    store: ArtifactStore | None = None,
    progress: bool = True,
    concurrency: int = 1,
    raise_on_failure: bool = True,
    max_consecutive_failures: int = 50,
    on_failure: Callable[[Failure], None] | None = None,
    clean: str | Sequence[str] | None = None,
) -> Descriptions:
    """Describe each stimulus ``n_samples`` times with each prompt; returns the descriptions in stimulus order.

    Args:
        stimuli: the images (content hashes identify them; ids name them in the output).
        describer: a backend from ``DESCRIBERS``.
        prompt: one prompt or several (names of ``PROMPTS`` or free text; ``{label}`` needs labelled stimuli).
        params: generation parameters (temperature, max_tokens, seed ...), recorded with every description and
            part of every record key.
        n_samples: descriptions per image and prompt (sample ``s`` uses seed ``seed + s``).
        store: artifact store holding the job's description log.
        progress: show a progress bar with rate and ETA.
        concurrency: requests in flight at once (threads); local models batch instead (``batch_size``).
        raise_on_failure: after the run, raise :class:`DescribeFailuresError` if any request failed for good
            (everything that succeeded is stored first); ``False`` returns them in ``Descriptions.failures``.
        max_consecutive_failures: stop the run (raising :class:`BackendError`) after this many backend failures in
            a row — a server that is down or a model that cannot run should not burn through a million requests.
        on_failure: called with each failure as it happens (the CLI prints them).
        clean: cleaning steps of ``CLEANERS`` (``"preamble"``, ``"closing"``) applied to the returned texts; the
            log keeps the raw texts (cleaning is not part of any key), and each cleaned description carries its
            ``raw_text`` and the ``clean`` steps.

    The record key of each description hashes the image content, the describer identity, the resolved prompt
    text, ``params`` and the sample index; a different model, prompt or parameter never reuses a stale text.
    """
    if concurrency < 1:
        raise DataError(f"concurrency must be at least 1, got {concurrency}")
    steps = clean_steps(clean)
    store = store or ArtifactStore()
    ident = describer.identity()
    path = log_path_for(store, job_key(ident, dict(params or {})))
    with DescriptionLog(path) as log:
        plan = plan_descriptions(stimuli, describer, prompt, params, n_samples, store, log=log)
        if plan.todo:
            _execute(plan, describer, log, concurrency, progress, max_consecutive_failures, on_failure)
        result = collect(plan, log, steps)
    if result.failures and raise_on_failure:
        raise DescribeFailuresError(result.failures, result)
    return result


def collect(plan: DescribePlan, log: DescriptionLog, clean: Sequence[str] = ()) -> Descriptions:
    """The descriptions (and failures) of ``plan``'s items from the log, in plan order, cleaned by ``clean``."""
    recs = log.read_many(it.key for it in plan.items)
    out: list[Description] = []
    failures: list[Failure] = []
    failed_keys: set[str] = set()
    for it in plan.items:
        r = recs.get(it.key)
        if r is None:
            continue
        if not r.get("ok", True):
            if it.key not in failed_keys:
                failed_keys.add(it.key)
                failures.append(
                    Failure(
                        it.image.id,
                        it.image.content_hash,
                        it.prompt,
                        it.sample,
                        str(r.get("error")),
                        int(r.get("attempts", 1)),
                        str(r.get("error_kind", "backend")),
                        it.key,
                    )
                )
            continue
        out.append(
            Description(
                image=it.image.id,
                image_hash=r["image_hash"],
                backend=r["backend"],
                model=r["model"],
                prompt=r["prompt"],
                text=clean_text(r["text"], clean) if clean else r["text"],
                params=r.get("params", {}),
                sample=int(r["sample"]),
                seconds=float(r.get("seconds", 0.0)),
                prompt_name=r.get("prompt_name", ""),
                attempts=int(r.get("attempts", 1)),
                prompt_tokens=r.get("prompt_tokens"),
                completion_tokens=r.get("completion_tokens"),
                finish_reason=r.get("finish_reason"),
                image_notes=list(r.get("image_notes", [])),
                key=it.key,
                raw_text=r["text"] if clean else None,
                clean=list(clean),
                warnings=list(r.get("warnings", [])),
            )
        )
    return Descriptions(out, failures)


# ---------------------------------------------------------------------------------------------- execution
Outcome = tuple[WorkItem, "Generation | BaseException", float]


def _run_batch(describer: Describer, batch: list[WorkItem], params: Mapping[str, Any]) -> list[Outcome]:
    """Describe ``batch`` (one item unless the backend batches); exceptions become outcomes, never escape."""
    bad: list[Outcome] = [(it, _unreadable(it.image), 0.0) for it in batch if it.image.content_hash[:11] == UNREADABLE]
    if bad:
        batch = [it for it in batch if not it.image.content_hash.startswith(UNREADABLE)]
        return bad + (_run_batch(describer, batch, params) if batch else [])
    t0 = time.perf_counter()
    many = getattr(describer, "describe_batch", None)
    if many is not None and len(batch) > 1:
        try:
            results: list[Any] = list(many([(it.image, it.prompt, it.sample) for it in batch], params))
        except Exception as exc:  # the whole batch failed (e.g. out of memory): each item records it
            results = [exc] * len(batch)
        dt = time.perf_counter() - t0
        return [(it, res, dt) for it, res in zip(batch, results, strict=True)]
    out: list[Outcome] = []
    for it in batch:
        t1 = time.perf_counter()
        try:
            res: Generation | BaseException = _as_generation(describer.describe(it.image, it.prompt, params, it.sample))
        except Exception as exc:
            res = exc
        out.append((it, res, time.perf_counter() - t1))
    return out


def _as_generation(result: str | Generation) -> Generation:
    return result if isinstance(result, Generation) else Generation(text=result)


def _execute(
    plan: DescribePlan,
    describer: Describer,
    log: DescriptionLog,
    concurrency: int,
    progress: bool,
    max_consecutive_failures: int,
    on_failure: Callable[[Failure], None] | None,
) -> None:
    from llmvem.progress import progress_bar

    params = plan.params
    bs = int(getattr(describer, "batch_size", 1) or 1) if hasattr(describer, "describe_batch") else 1
    todo = plan.todo
    if bs > 1:  # batch requests of one prompt and sample together: equal prompt lengths, one seed per batch
        group: dict[tuple[str, int], int] = {}
        for it in todo:
            group.setdefault((it.prompt, it.sample), len(group))
        todo = sorted(todo, key=lambda it: group[(it.prompt, it.sample)])
    batches = [todo[i : i + bs] for i in range(0, len(todo), bs)]
    consecutive = 0
    last_reason = ""

    def record(outcome: Outcome) -> None:
        nonlocal consecutive, last_reason
        it, res, seconds = outcome
        base = {
            "image": it.image.id,
            "image_hash": it.image.content_hash,
            "backend": describer.backend,
            "model": describer.model,
            "prompt_name": it.prompt_name,
            "prompt": it.prompt,
            "params": params,
            "sample": it.sample,
            "seconds": round(seconds, 4),
            "time": round(time.time(), 3),
        }
        if isinstance(res, Generation):
            reason = check_text(res.text)
            extra = {
                "attempts": res.attempts,
                "prompt_tokens": res.prompt_tokens,
                "completion_tokens": res.completion_tokens,
                "finish_reason": res.finish_reason,
                "image_notes": res.image_notes,
                "info": res.info,
            }
            if reason is None:
                warn = length_warning(res.text, res.completion_tokens, params.get("max_tokens"))
                if warn is not None:
                    extra["warnings"] = [warn]
                log.append(it.key, True, {**base, "text": res.text, **extra})
                consecutive = 0
                return
            fail = Failure(
                it.image.id, it.image.content_hash, it.prompt, it.sample, reason, res.attempts, "response", it.key
            )
            log.append(
                it.key, False, {**base, **extra, "response": res.text[:2000], "error": reason, "error_kind": "response"}
            )
        else:
            if isinstance(res, DescribeFailure):
                reason, attempts, kind = res.reason, res.attempts, res.kind
            else:
                reason, attempts, kind = f"{type(res).__name__}: {res}", 1, "backend"
            fail = Failure(it.image.id, it.image.content_hash, it.prompt, it.sample, reason, attempts, kind, it.key)
            log.append(it.key, False, {**base, "attempts": attempts, "error": reason, "error_kind": kind})
            if isinstance(res, DescribeFailure) and res.fatal:
                raise BackendError(f"{describer.backend} backend: {reason}") from None
            if kind == "backend":
                consecutive += 1
                last_reason = reason
                if consecutive >= max_consecutive_failures:
                    raise BackendError(
                        f"stopped after {consecutive} failed requests in a row; the last: {last_reason}. "
                        "Finished work is stored; fix the cause and re-run to resume."
                    )
        if on_failure is not None:
            on_failure(fail)

    label = f"describe ({describer.backend}: {describer.model})"
    with progress_bar(label, total=len(plan.todo), enabled=progress) as advance:
        if concurrency == 1:
            for b in batches:
                for outcome in _run_batch(describer, b, params):
                    record(outcome)
                    advance(1)
            return
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="describe")
        finished: queue.SimpleQueue[Future[list[Outcome]]] = queue.SimpleQueue()
        batches_left = iter(batches)
        in_flight = 0

        def submit() -> bool:
            b = next(batches_left, None)
            if b is None:
                return False
            pool.submit(_run_batch, describer, b, params).add_done_callback(finished.put)
            return True

        try:
            while in_flight < 2 * concurrency and submit():  # a short queue: a kill loses little
                in_flight += 1
            while in_flight:
                fut = finished.get()
                in_flight -= 1
                for outcome in fut.result():
                    record(outcome)
                    advance(1)
                in_flight += submit()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
