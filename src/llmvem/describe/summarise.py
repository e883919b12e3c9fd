"""One sentence from a group of captions, written by a served language model (e.g. a ROI's nearest captions).

The request goes through the text-only ``complete`` of the ``openai`` backend (retries, deadlines and masked
credentials as for descriptions) and is cached like a description: one record per (describer identity, generation
parameters, prompt text) in an append-only log under the store's describe logs (``cache clean --all`` keeps it), so
a re-run makes no request and a killed run resumes. Empty or garbage answers are failures, never summaries.

Example
-------
>>> from llmvem.describe.summarise import summary_prompt
>>> print(summary_prompt(["a dog on grass", "a puppy in a park"]).splitlines()[1])
- a dog on grass
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmvem.describe.base import DescribeFailure, check_text, length_warning
from llmvem.describe.log import DescriptionLog
from llmvem.describe.run import job_key, log_path_for
from llmvem.errors import ConfigError
from llmvem.store import ArtifactStore

#: the default instruction; ``{captions}`` becomes one ``- caption`` line each
SUMMARY_TEMPLATE = (
    "These captions describe the images that most strongly drive one region of the visual cortex:\n{captions}\n"
    "Write one short sentence, with no preamble, that says what these images have in common."
)


def summary_prompt(captions: Sequence[str], template: str = SUMMARY_TEMPLATE) -> str:
    """The request text for ``captions`` (each on its own ``- `` line, newlines inside a caption flattened)."""
    if "{captions}" not in template:
        raise ConfigError("the summary prompt must contain '{captions}' where the captions go")
    lines = "\n".join("- " + " ".join(str(c).split()) for c in captions)
    return template.replace("{captions}", lines)


@dataclass
class Summaries:
    """Summaries by group name; ``failures`` names the groups whose request failed (and why)."""

    texts: dict[str, str]
    failures: dict[str, str] = field(default_factory=dict)
    requested: int = 0


def _item_key(job: str, prompt: str) -> str:
    return hashlib.sha256(f"{job}\x00summary\x00{prompt}".encode()).hexdigest()


def summarise_groups(
    groups: Mapping[str, Sequence[str]],
    describer: Any,
    *,
    params: Mapping[str, Any] | None = None,
    template: str = SUMMARY_TEMPLATE,
    store: ArtifactStore | None = None,
) -> Summaries:
    """One sentence per group of captions, from cache where possible.

    Args:
        groups: name (e.g. ROI) → its captions (nearest first); empty groups are skipped.
        describer: a describer with a text-only ``complete(prompt, params, sample)`` (the ``openai`` backend).
        params: generation parameters (temperature, max_tokens, seed, top_p); part of the cache key.
        template: the instruction, with ``{captions}``.
        store: artifact store (default ``ArtifactStore()``).
    Returns:
        :class:`Summaries` (a failed group is in ``failures``, not in ``texts``).
    Raises:
        ConfigError: the backend cannot write text from text.
    """
    if not callable(getattr(describer, "complete", None)):
        raise ConfigError(
            f"summaries need a backend that answers text-only requests (openai); {describer.backend!r} cannot"
        )
    params = dict(params or {})
    store = store or ArtifactStore()
    job = job_key({**describer.identity(), "task": "summarise"}, params)
    out = Summaries({})
    with DescriptionLog(log_path_for(store, job)) as log:
        for name, captions in groups.items():
            if not captions:
                continue
            prompt = summary_prompt(captions, template)
            key = _item_key(job, prompt)
            if key in log.done:
                rec = log.read(key)
                if rec is not None:
                    out.texts[name] = str(rec["text"])
                    continue
            out.requested += 1
            try:
                gen = describer.complete(prompt, params, 0)
                bad = check_text(gen.text)
                if bad is not None:
                    raise DescribeFailure(bad, gen.attempts)
            except DescribeFailure as exc:
                log.append(key, False, {"group": name, "prompt": prompt, "error": str(exc)})
                out.failures[name] = str(exc)
                if exc.fatal:
                    raise
                continue
            text = gen.text.strip()
            warn = length_warning(text, gen.completion_tokens, params.get("max_tokens"))
            log.append(key, True, {"group": name, "prompt": prompt, "text": text, "attempts": gen.attempts,
                                   "completion_tokens": gen.completion_tokens,
                                   "warnings": [warn] if warn else []})  # fmt: skip
            out.texts[name] = text
    return out
