"""Descriptions of stimuli and the describer interface.

A :class:`Describer` turns one image (+ prompt) into text. Backends live in the ``DESCRIBERS`` registry; each is a
factory taking keyword options and returning a describer. Every description is stored with its provenance: image
content hash, backend, model, prompt text, generation parameters and sample index, plus timings, token counts and
what was done to the image before it was sent (conversion, downscaling).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from llmvem.errors import BackendError, IdMismatchError
from llmvem.registry import Registry

if TYPE_CHECKING:
    import pandas as pd

    from llmvem.data.stimuli import ImageRef


class ImageRequest(NamedTuple):
    """One image to describe: its stimulus id, file (or a reference to an image that is not a file, such as a row of
    ``nsd_stimuli.hdf5``: :class:`~llmvem.data.stimuli.ImageRef`), content hash and optional label."""

    id: str
    path: Path | ImageRef
    content_hash: str
    label: str | None = None


@dataclass
class Generation:
    """What a backend returns for one request.

    Attributes:
        text: the description (validated by the runner: empty or garbage text is a failure, never stored).
        prompt_tokens: tokens of the prompt (text + image) as counted by the backend, if known.
        completion_tokens: generated tokens, if known.
        finish_reason: ``"stop"``, ``"length"`` ... if known.
        attempts: requests made (1 + retries).
        image_notes: what was done to the image before sending ("converted CMYK to RGB", "downscaled ...").
        info: other backend facts worth keeping (served model name, system fingerprint, seed used).
    """

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    attempts: int = 1
    image_notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class DescribeFailure(BackendError):
    """One request failed for good (after retries). The runner records ``reason`` and carries on.

    Args:
        reason: what went wrong, for the failure list (never contains secrets).
        attempts: requests made.
        fatal: every further request would fail the same way (bad API key, unknown model): stop the whole run.
        kind: ``"input"`` (the image itself is bad), ``"backend"`` (server/model failure) or ``"response"``
            (empty or garbage text).
    """

    def __init__(self, reason: str, attempts: int = 1, fatal: bool = False, kind: str = "backend") -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.fatal = fatal
        self.kind = kind


class Describer(Protocol):
    """Writes a description of one image.

    Optional extras a backend may define: ``describe_batch(items, params) -> list[Generation | Exception]`` with a
    ``batch_size`` attribute (batched local models), ``check_ids(ids)`` (fail fast on ids it cannot describe) and
    ``resolve_prompt(prompt, label) -> (name, text)`` (backends whose sources carry their own prompts).
    """

    backend: str
    model: str

    def identity(self) -> dict[str, Any]:
        """Everything about the describer that determines its output (backend, model, weights/revision ...)."""
        ...

    def describe(self, image: ImageRequest, prompt: str, params: Mapping[str, Any], sample: int) -> str | Generation:
        """The description of ``image`` for ``prompt`` (already resolved text)."""
        ...


DESCRIBERS: Registry[Any] = Registry("describer backend")


@dataclass(frozen=True)
class Description:
    """One stored description with its provenance.

    ``seconds`` is the wall time of the request including retries; token counts are ``None`` when the backend
    does not report them; ``image_notes`` lists conversions applied to the image before it was sent. When the
    descriptions were read with cleaning (``describe_stimuli(clean=...)``), ``clean`` names the steps applied to
    ``text`` and ``raw_text`` holds the text as generated; otherwise ``clean`` is empty, ``raw_text`` ``None``.
    ``warnings`` flags a stored text that looks wrong without being a failure (an answer far longer than
    ``max_tokens`` allows: the server ignored the limit, or the text is not what the model generated).
    """

    image: str
    image_hash: str
    backend: str
    model: str
    prompt: str
    text: str
    params: dict[str, Any] = field(default_factory=dict)
    sample: int = 0
    seconds: float = 0.0
    prompt_name: str = ""
    attempts: int = 1
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    image_notes: list[str] = field(default_factory=list)
    key: str = ""
    raw_text: str | None = None
    clean: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def length_warning(text: str, completion_tokens: int | None, max_tokens: int | None) -> str | None:
    """A warning when ``text`` is far longer than ``max_tokens`` allows, else ``None``.

    Reported token counts above ``max_tokens`` count; without them, more than 1.5 words per allowed token (English
    runs at ~0.75 words per token, so twice the most a model could have written) does.

    >>> length_warning("a b c", 5, 64) is None
    True
    >>> length_warning(" ".join(["w"] * 200), None, 64)
    'answer far longer than max_tokens=64 allows (200 words)'
    """
    if not max_tokens:
        return None
    if completion_tokens is not None and completion_tokens > max_tokens:
        return f"answer longer than max_tokens={max_tokens} allows ({completion_tokens} completion tokens reported)"
    n_words = len(text.split())
    if n_words > 1.5 * max_tokens:
        return f"answer far longer than max_tokens={max_tokens} allows ({n_words} words)"
    return None


@dataclass(frozen=True)
class Failure:
    """A request that failed for good: which image, prompt and sample, why, after how many attempts."""

    image: str
    image_hash: str
    prompt: str
    sample: int
    reason: str
    attempts: int = 1
    kind: str = "backend"
    key: str = ""

    def __str__(self) -> str:
        return f"{self.image} (sample {self.sample}): {self.reason}"


_FIRST = ("image", "model", "prompt", "text")
FRAME_COLUMNS = [*_FIRST, *(f.name for f in fields(Description) if f.name not in _FIRST)]


@dataclass
class Descriptions:
    """Descriptions of a stimulus set (possibly several per image: prompts, models, samples).

    Attributes:
        records: the descriptions, in stimulus order, then prompt, then sample.
        failures: requests that failed for good in this run (empty when all succeeded).
    """

    records: list[Description]
    failures: list[Failure] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def to_frame(self) -> pd.DataFrame:
        """One row per description; columns ``FRAME_COLUMNS`` (image, model, prompt, text first)."""
        import pandas as pd

        return pd.DataFrame([asdict(r) for r in self.records], columns=FRAME_COLUMNS)

    def texts_for(self, ids: Sequence[str], model: str | None = None, prompt: str | None = None) -> list[str]:
        """The first matching description of each id, in the order of ``ids``.

        ``prompt`` matches the prompt text or its name.

        Raises:
            IdMismatchError: naming the ids that have no matching description.
        """
        first: dict[str, str] = {}
        for r in self.records:
            if (model is None or r.model == model) and (prompt is None or prompt in (r.prompt, r.prompt_name)):
                first.setdefault(r.image, r.text)
        missing = [i for i in ids if i not in first]
        if missing:
            raise IdMismatchError(f"{len(missing)} stimulus id(s) have no description: {missing[:10]}")
        return [first[i] for i in ids]

    def write(self, path: str | Path, format: str | None = None) -> Path:
        """Write the descriptions to JSONL or Parquet (``format`` or the file suffix); returns the path."""
        from llmvem.describe.records import write_records

        return write_records([_row(r) for r in self.records], path, format)


def _row(d: Description) -> dict[str, Any]:
    """``d`` as a dict for writing; without ``raw_text`` and ``clean`` when no cleaning was applied."""
    row = asdict(d)
    if not d.clean:
        del row["raw_text"], row["clean"]
    return row


def check_text(text: object) -> str | None:
    """``None`` if ``text`` looks like a description, else why it does not (empty, control bytes, no words).

    >>> check_text("A red bus on a street.") is None
    True
    >>> check_text("   ")
    'empty response'
    """
    if not isinstance(text, str):
        return f"response text is {type(text).__name__}, not a string"
    s = text.strip()
    if not s:
        return "empty response"
    bad = len(_CONTROL.findall(s))
    if bad:
        return f"garbage response: {bad} control/replacement character(s) in {len(s)}"
    visible = len("".join(s.split()))
    letters = len(s.encode().translate(None, _ASCII_NON_LETTERS)) if s.isascii() else sum(map(str.isalpha, s))
    if letters < max(1.0, 0.25 * visible):
        return f"garbage response: only {letters} letter(s) in {visible} visible characters ({s[:40]!r})"
    return None


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_ASCII_NON_LETTERS = bytes(c for c in range(128) if not chr(c).isalpha())
