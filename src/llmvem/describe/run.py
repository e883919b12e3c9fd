"""Describe every image of a stimulus set with a describer, resumably.

Finished descriptions are appended, one fsynced JSON line each, to a record log in the artifact store
(``<store>/descriptions/<job>.jsonl``); a re-run reads the log and skips finished work, so a killed job loses at
most the request in flight and never duplicates a record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from llmvem.data.stimuli import StimulusSet
from llmvem.describe.base import Describer, Description, Descriptions, ImageRequest
from llmvem.describe.prompts import resolve_prompt
from llmvem.hashing import artifact_key
from llmvem.store import ArtifactStore, RecordLog


def describe_stimuli(
    stimuli: StimulusSet,
    describer: Describer,
    prompt: str = "caption",
    params: Mapping[str, Any] | None = None,
    n_samples: int = 1,
    store: ArtifactStore | None = None,
    progress: bool = True,
) -> Descriptions:
    """Describe each stimulus ``n_samples`` times with ``prompt``; returns the descriptions in stimulus order.

    The record key of each description hashes the image content, the describer identity, the resolved prompt
    text, ``params`` and the sample index; a different model, prompt or parameter never reuses a stale text.
    """
    store = store or ArtifactStore()
    params = dict(params or {})
    check = getattr(describer, "check_ids", None)
    if check is not None:
        check(list(stimuli.ids))
    ident = describer.identity()
    job = artifact_key({"describer": ident, "params": params})
    log = RecordLog(store.root / "descriptions" / f"{job[:24]}.jsonl", key_field="key")
    hashes = stimuli.content_hashes
    todo: list[tuple[ImageRequest, str, int, str]] = []
    for k, sid in enumerate(stimuli.ids):
        label = stimuli.labels[k] if stimuli.labels is not None else None
        text_prompt = resolve_prompt(prompt, label)
        req = ImageRequest(sid, stimuli.paths[k], hashes[k], label)
        for s in range(n_samples):
            key = artifact_key(
                {"image": hashes[k], "describer": ident, "prompt": text_prompt, "params": params, "sample": s}
            )
            if key not in log:
                todo.append((req, text_prompt, s, key))
    if todo:
        from llmvem.progress import progress_bar

        with progress_bar(f"describe ({ident.get('backend')})", total=len(todo), enabled=progress) as advance:
            for req, text_prompt, s, key in todo:
                t0 = time.perf_counter()
                text = describer.describe(req, text_prompt, params, s)
                log.append(
                    {
                        "key": key,
                        "image": req.id,
                        "image_hash": req.content_hash,
                        "backend": describer.backend,
                        "model": describer.model,
                        "prompt": text_prompt,
                        "text": text,
                        "params": params,
                        "sample": s,
                        "seconds": round(time.perf_counter() - t0, 4),
                    }
                )
                advance(1)
    records = []
    for k, sid in enumerate(stimuli.ids):
        label = stimuli.labels[k] if stimuli.labels is not None else None
        text_prompt = resolve_prompt(prompt, label)
        for s in range(n_samples):
            key = artifact_key(
                {"image": hashes[k], "describer": ident, "prompt": text_prompt, "params": params, "sample": s}
            )
            r = log.get(key)
            assert r is not None
            records.append(
                Description(
                    image=sid,
                    image_hash=r["image_hash"],
                    backend=r["backend"],
                    model=r["model"],
                    prompt=r["prompt"],
                    text=r["text"],
                    params=r["params"],
                    sample=r["sample"],
                    seconds=r["seconds"],
                )
            )
    return Descriptions(records)
