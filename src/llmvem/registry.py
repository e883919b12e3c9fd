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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from llmvem.errors import RegistryError, short_repr

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → factory mapping with helpful errors.

    Args:
        kind: what the registry holds, used in error messages ("text encoder").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

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
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise RegistryError(f"unknown {self.kind} {short_repr(name)}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
