"""Brain sources: which brain data a run reads and with which loader options, as the CLI and configs name them.

A brain source is written as

- a plain path, its kind detected from the layout: a ``.npz`` from :func:`llmvem.data.files.save_brain`, an
  Algonauts 2023 subject folder (holding ``training_split``) or an NSD root (holding ``nsddata``);
- ``KIND:PATH?key=value&key=value`` with KIND one of :data:`KINDS` (``nsd``, ``algonauts``, ``npz``) and keys exactly
  the keyword arguments of the kind's loader (:func:`llmvem.data.nsd.load_nsd`,
  :func:`llmvem.data.algonauts.load_algonauts2023`), typed from its signature; lists are comma-separated
  (``rois=streams,nsdgeneral``), integer lists take ranges (``sessions=1-20``), ``none`` is None;
- in a YAML config also a mapping ``{kind: nsd, path: /data/nsd, subject: [1, 2], rois: [streams]}`` (``kind``
  optional: detected as for a plain path).

NSD's ``subject`` may name several subjects (``subject=1-8``, ``subject=1,2,5``, ``subject: [1, 2]``): the source
expands to one source per subject, so that one run scores every subject and their mean.

>>> [s.text for s in parse_brain_source("nsd:/data/nsd?subject=1-3&space=fsaverage&rois=streams")]
['nsd:/data/nsd?subject=1&space=fsaverage&rois=streams', 'nsd:/data/nsd?subject=2&space=fsaverage&rois=streams', \
'nsd:/data/nsd?subject=3&space=fsaverage&rois=streams']
>>> parse_brain_source("nsd:/data/nsd?subjct=2")
Traceback (most recent call last):
...
llmvem.errors.DataError: brain source 'nsd:/data/nsd?subjct=2': unknown key 'subjct' for nsd; valid keys: subject, \
space, sessions, rois, fmt, zscore, min_repeats, test_split, betas, ncsnr, roi_threshold, missing_sessions
"""

from __future__ import annotations

import importlib
import inspect
import re
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from llmvem.errors import DataError, short_repr

if TYPE_CHECKING:
    from llmvem.data.brain import BrainData

#: kind → (module, loader function); the loader's keyword arguments are the kind's keys.
KINDS: dict[str, tuple[str, str]] = {
    "nsd": ("llmvem.data.nsd", "load_nsd"),
    "algonauts": ("llmvem.data.algonauts", "load_algonauts2023"),
    "npz": ("llmvem.data.files", "_load_brain_npz"),
}
N_NSD_SUBJECTS = 8
_KIND_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]+):(.*)$", re.DOTALL)
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NONE = ("none", "null")


@dataclass(frozen=True)
class BrainSource:
    """One brain source: a kind, a path and its loader's keyword arguments (one subject).

    Attributes:
        kind: ``"nsd"``, ``"algonauts"`` or ``"npz"``; ``"auto"`` for a plain path that does not exist (yet), whose
            kind is detected (or its absence reported) by :meth:`load`.
        path: the file or folder.
        options: keyword arguments of the loader, typed (``{"subject": 2, "rois": ["streams"]}``).
        text: the source as ``KIND:PATH?key=value&...`` (or the plain path), for messages and records.
    """

    kind: str
    path: Path
    options: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    def load(self) -> BrainData:
        """Read the source with its loader. Raises :class:`~llmvem.errors.DataError` as the loader does."""
        kind = self.kind if self.kind != "auto" else _detect_or_raise(self.path)
        module, func = KINDS[kind]
        loaded = getattr(importlib.import_module(module), func)(self.path, **self.options)
        return loaded.brain if kind == "algonauts" else loaded


def _src(text: Any) -> str:
    """How a message names a brain source: its text (or mapping), bounded."""
    return f"brain source {short_repr(text)}"


def detect_kind(path: Path) -> str | None:
    """The kind of brain data at ``path`` from its layout, or None when it is none of them (or absent)."""
    if path.is_file() and path.suffix == ".npz":
        return "npz"
    if path.is_dir() and (path / "training_split").is_dir():
        return "algonauts"
    if path.is_dir() and (path / "nsddata").is_dir():
        return "nsd"
    return None


def _detect_or_raise(path: Path) -> str:
    kind = detect_kind(path)
    if kind is not None:
        return kind
    if not path.exists():
        raise DataError(f"brain data {path}: not found")
    raise DataError(
        f"brain data {path}: not a brain .npz (llmvem.data.files.save_brain), an Algonauts 2023 subject folder "
        "(with training_split/) or an NSD root (with nsddata/); name the kind with nsd:PATH, algonauts:PATH or "
        "npz:PATH"
    )


def parse_brain_sources(
    specs: Sequence[str | Path | Mapping[str, Any]], subject: int | None = None
) -> list[BrainSource]:
    """Every source of ``specs`` (see the module docstring), NSD subject lists expanded, in order.

    Args:
        specs: source strings or mappings.
        subject: the NSD subject of NSD sources that name none (the ``--subject`` flag); a source naming another
            subject is an error.
    """
    out = [s for spec in specs for s in parse_brain_source(spec, subject=subject)]
    if subject is not None and not any(s.kind == "nsd" for s in out):
        warnings.warn(
            f"--subject {subject} (evaluate.inputs.subject) applies to NSD roots only; none of the {len(out)} brain "
            "source(s) is one, so it is ignored",
            stacklevel=2,
        )
    return out


def parse_brain_source(spec: str | Path | Mapping[str, Any], subject: int | None = None) -> list[BrainSource]:
    """One source string or mapping → its sources (several when an NSD ``subject`` lists several).

    Args:
        spec: ``PATH``, ``KIND:PATH?key=value&...`` or ``{kind: ..., path: ..., key: value}``.
        subject: NSD subject for an NSD source that names none (see :func:`parse_brain_sources`).
    Raises:
        DataError: an unknown kind or key, a malformed query, a value of the wrong type, a subject outside 1–8.
    """
    if isinstance(spec, Mapping):
        kind, path, raw, text = _from_mapping(spec)
    else:
        kind, path, raw, text = _from_string(spec)
    if kind == "auto" and raw:
        kind = _detect_or_raise(path)
    if kind == "auto":
        kind = detect_kind(path) or "auto"
    params = loader_params(kind) if kind != "auto" else {}
    unknown = [k for k in raw if k not in params]
    if unknown:
        valid = ", ".join(params) or f"none ({kind} sources take no options)"
        raise DataError(f"{_src(text)}: unknown key {short_repr(unknown[0])} for {kind}; valid keys: {valid}")
    options = {k: _coerce(v, params[k], k, text) for k, v in raw.items() if k != "subject" or kind != "nsd"}
    if kind != "nsd":
        return [BrainSource(kind, path, options, _source_text(kind, path, options, text, raw))]
    subjects = _subjects(raw["subject"], text) if "subject" in raw else [subject or 1]
    if "subject" in raw and subject is not None and subjects != [subject]:
        raise DataError(
            f"{_src(text)} names subject(s) {subjects} but --subject (evaluate.inputs.subject) is {subject}; "
            "give the subject once"
        )
    if subject is not None and subject not in range(1, N_NSD_SUBJECTS + 1):
        raise DataError(f"--subject {subject}: NSD subjects are 1–{N_NSD_SUBJECTS}")
    out = []
    for s in subjects:
        opts = {"subject": s, **options}
        out.append(BrainSource("nsd", path, opts, _source_text("nsd", path, opts, text, raw)))
    return out


def _from_string(spec: str | Path) -> tuple[str, Path, dict[str, Any], str]:
    """``(kind, path, raw options, text)`` of a source string; kind ``"auto"`` for a plain path."""
    text = str(spec).strip()
    if _exists(text):  # an existing path is a path, whatever characters it holds
        return "auto", Path(text).expanduser(), {}, text
    kind, rest = "auto", text
    match = _KIND_RE.match(text)
    if match and "/" not in match.group(1) and "\\" not in match.group(1):
        kind, rest = match.group(1).lower(), match.group(2)
        if kind not in KINDS:
            raise DataError(
                f"{_src(text)}: unknown kind {short_repr(match.group(1))}; choose from {', '.join(KINDS)} "
                "(KIND:PATH?key=value&...), or give a path that exists"
            )
    path_text, sep, query = rest.partition("?")
    if not path_text.strip():
        raise DataError(f"{_src(text)}: no path (write KIND:PATH?key=value&...)")
    raw = _parse_query(query, text) if sep else {}
    return kind, Path(path_text.strip()).expanduser(), raw, text


def _exists(text: str) -> bool:
    try:
        return Path(text).expanduser().exists()
    except (OSError, RuntimeError):  # a name too long for the file system; ~user unknown
        return False


def _parse_query(query: str, text: str) -> dict[str, str]:
    """``"a=1&b=x,y"`` → ``{"a": "1", "b": "x,y"}`` (values percent-decoded). Raises on anything else."""
    if not query.strip():
        raise DataError(f"{_src(text)}: nothing after '?' (write ?key=value&key=value)")
    out: dict[str, str] = {}
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        key, value = key.strip(), unquote(value.strip())
        if not eq or not _KEY_RE.match(key) or not value:
            raise DataError(
                f"{_src(text)}: {short_repr(part)} is not key=value (write ?key=value&key=value; lists as a,b,c)"
            )
        if key in out:
            raise DataError(f"{_src(text)}: key {short_repr(key)} given twice")
        out[key] = value
    return out


def _from_mapping(spec: Mapping[str, Any]) -> tuple[str, Path, dict[str, Any], str]:
    """``(kind, path, raw options, text)`` of a config mapping ``{kind, path, key: value}``."""
    text = "{" + ", ".join(f"{k}: {v}" for k, v in spec.items()) + "}"
    bad = [k for k in spec if not isinstance(k, str)]
    if bad:
        raise DataError(f"{_src(text)}: keys must be names, got {short_repr(bad[0])}")
    if "path" not in spec or not isinstance(spec["path"], str | Path) or not str(spec["path"]).strip():
        raise DataError(f"{_src(text)}: needs a 'path' (the file or folder)")
    kind = str(spec.get("kind") or "auto").lower()
    if kind not in (*KINDS, "auto"):
        raise DataError(f"{_src(text)}: unknown kind {short_repr(spec['kind'])}; choose from {', '.join(KINDS)}")
    raw = {k: v for k, v in spec.items() if k not in ("kind", "path")}
    return kind, Path(str(spec["path"]).strip()).expanduser(), raw, text


def loader_params(kind: str) -> dict[str, Any]:
    """Keyword arguments of ``kind``'s loader → their type hints (the first, positional, path argument left out)."""
    module, func = KINDS[kind]
    loader = getattr(importlib.import_module(module), func)
    hints = typing.get_type_hints(loader)
    names = list(inspect.signature(loader).parameters)[1:]
    return {n: hints.get(n, Any) for n in names}


def _subjects(value: Any, text: str) -> list[int]:
    """NSD subjects of ``subject=`` (``2``, ``"1-8"``, ``"1,2,5"``, ``[1, 2]``), each checked to be in 1–8."""
    items = value if isinstance(value, list | tuple) else [value]
    subjects = [s for item in items for s in _int_items(item, "subject", text)]
    bad = [s for s in subjects if not 1 <= s <= N_NSD_SUBJECTS]
    if bad or not subjects:
        raise DataError(f"{_src(text)}: subject {short_repr(bad[0] if bad else value)} is not an NSD subject (1–8)")
    if len(set(subjects)) != len(subjects):
        raise DataError(f"{_src(text)}: subject list {subjects} names a subject twice")
    return subjects


def _int_items(item: Any, key: str, text: str) -> list[int]:
    """One list item as integers: ``3`` → [3], ``"1-3"`` → [1, 2, 3], ``"1,4"`` → [1, 4]."""
    if isinstance(item, bool) or not isinstance(item, int | str):
        raise DataError(f"{_src(text)}: {key}={short_repr(item)} is not an integer, a list a,b or a range a-b")
    if isinstance(item, int):
        return [item]
    out: list[int] = []
    for part in item.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise DataError(
                f"{_src(text)}: {key}={short_repr(item)} is not an integer, a list a,b or a range a-b"
            ) from None
        if b < a:
            raise DataError(f"{_src(text)}: {key} range {short_repr(part.strip())} runs backwards")
        out.extend(range(a, b + 1))
    return out


def _coerce(value: Any, hint: Any, key: str, text: str) -> Any:
    """``value`` (a query string or a YAML value) as the loader's ``hint`` says (lists split on commas)."""
    from pydantic import TypeAdapter, ValidationError

    args = _union_args(hint)
    if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
        return None
    if any(_is_sequence(a) for a in args):
        items = value if isinstance(value, list | tuple) else [value]
        if any(_is_sequence(a) and _item_type(a) is int for a in args):
            items = [i for item in items for i in _int_items(item, key, text)]
        else:
            items = [p.strip() for item in items for p in (item.split(",") if isinstance(item, str) else [item])]
            if any(isinstance(i, str) and not i for i in items):
                raise DataError(f"{_src(text)}: {key}={short_repr(value)} holds an empty list item")
        value = items
    try:
        return TypeAdapter(hint).validate_python(value)
    except ValidationError as exc:
        msg = exc.errors()[0].get("msg", str(exc))
        raise DataError(f"{_src(text)}: {key}={short_repr(value)}: {msg}") from None


def _union_args(hint: Any) -> tuple[Any, ...]:
    """The members of a union hint (``float | None`` → ``(float, NoneType)``), else ``(hint,)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(a for arg in typing.get_args(hint) for a in _union_args(arg))
    return (hint,)


def _is_sequence(hint: Any) -> bool:
    return typing.get_origin(hint) in (list, tuple, Sequence)


def _item_type(hint: Any) -> Any:
    args = typing.get_args(hint)
    return args[0] if args else Any


def _source_text(kind: str, path: Path, options: Mapping[str, Any], given: str, raw: Mapping[str, Any]) -> str:
    """The source as ``KIND:PATH?key=value&...`` (the plain path as given when it had no kind and no options)."""
    if not raw and not given.startswith(f"{kind}:") and not given.startswith("{"):
        return given
    query = "&".join(f"{k}={_query_value(v)}" for k, v in options.items())
    return f"{kind}:{path}" + (f"?{query}" if query else "")


def _query_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
