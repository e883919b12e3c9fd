"""Errors raised at llmvem's boundaries.

Every error a user can cause (bad config, missing file, mismatched ids, corrupt image ...) is raised as a subclass of
:class:`LlmvemError` with a message that says what was wrong and what to do. The CLI prints these without a traceback.
"""

from __future__ import annotations


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
