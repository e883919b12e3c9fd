"""Errors raised at llmvem's boundaries.

Every error a user can cause (bad config, missing file, mismatched ids, corrupt image ...) is raised as a subclass of
:class:`LlmvemError` with a message that says what was wrong and what to do. The CLI prints these without a traceback.
"""

from __future__ import annotations

from typing import Any


class LlmvemError(Exception):
    """Base class for errors caused by input, configuration or environment (not by bugs)."""


class ConfigError(LlmvemError):
    """An experiment config or CLI override is invalid."""


class DataError(LlmvemError):
    """Input data is missing, unreadable, or inconsistent (shapes, ids, NaNs)."""


class DatasetNotFoundError(DataError):
    """A named dataset is not present in the data directory."""


class IdMismatchError(DataError):
    """Stimulus ids differ between two inputs that must describe the same stimuli."""


class StoreError(LlmvemError):
    """The artifact store could not read or write an entry."""


class RegistryError(LlmvemError):
    """A name was looked up in a registry that does not hold it."""


class BackendError(LlmvemError):
    """A model backend (describer, encoder, backbone) failed or could not be loaded."""


class ResourceError(LlmvemError):
    """The machine lacks what a piece of work needs (memory for a fit); the message says how much and what to do."""


def short_repr(value: Any, limit: int = 200) -> str:
    """``repr`` of a value for an error message, bounded: a huge string or list, or a self-referencing YAML value
    (``&a [*a, *a]`` nested), is shown in a few levels and at most ``limit`` characters instead of in full (a
    message quoting a 20,000-character argument, or expanding a billion-laughs value without end).

    >>> short_repr("x" * 1000, limit=20)
    "'xxxxxxx...xxxxxxx'"
    """
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 6, 6, 6, 6
    r.maxstring, r.maxother, r.maxlong = limit, limit, 60
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cut(text: str, limit: int = 500) -> str:
    """``text`` unchanged up to ``limit`` characters, else its start and how long it was.

    >>> cut("abcdef", 3)
    'abc… (6 characters)'
    """
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
