"""One registry per family of interchangeable parts (describers, text encoders, backbones, losses, solvers ...).

Example
-------
>>> import numpy as np
>>> from llmvem.registry import Registry
>>> losses = Registry("alignment loss")
>>> @losses.register("mse")
... def mse(a, b):
...     return ((a - b) ** 2).mean()
>>> float(losses.get("mse")(np.array([3.0, 1.0]), np.array([1.0, 1.0])))
2.0
>>> losses.names()
['mse']

Plug-ins import the registry, never the other way round: a registry names the modules that register its entries
(``Registry(kind, plugins=[...])``, imported on the first lookup), and an entry can point at a function of a module
that imports the registry (:func:`lazy`, imported when the entry is used, not when the registry is listed).

>>> sqrt = lazy("math", "sqrt")
>>> sqrt(9.0)
3.0
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from llmvem.errors import RegistryError, short_repr

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → factory mapping with helpful errors.

    Args:
        kind: what the registry holds, used in error messages ("text encoder").
        plugins: modules that register entries of this registry (and import it), imported on the first lookup
            (:meth:`load_plugins`).
    """

    def __init__(self, kind: str, plugins: Sequence[str] = ()) -> None:
        self.kind = kind
        self.plugins = tuple(plugins)
        self._items: dict[str, T] = {}
        self._plugins_loaded = not self.plugins

    def load_plugins(self) -> None:
        """Import the :attr:`plugins` modules (once), which register their entries: called by every lookup, so a
        plug-in module may import the registry's module without that module importing it (no import circle)."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True  # first: a plug-in that looks something up while it loads does not recurse
        try:
            for module in self.plugins:
                importlib.import_module(module)
        except BaseException:
            self._plugins_loaded = False
            raise

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a duplicate name is an error."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise RegistryError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the entry called ``name`` or raise :class:`RegistryError` listing the known names."""
        self.load_plugins()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise RegistryError(f"unknown {self.kind} {short_repr(name)}; known: {known}") from None

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self.load_plugins()
        return len(self._items)


def lazy(module: str, name: str) -> Callable[..., Any]:
    """A function that imports ``module`` when called (once: Python caches the import) and calls its ``name``."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{module}.{name}``, imported on the first call."
    return call
