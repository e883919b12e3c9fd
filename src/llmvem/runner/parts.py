"""The four registries of the experiment runner and what their entries are.

A *part* is one kind of stimulus source, target, model or evaluation: a pydantic model of its parameters (the keys
a study may give it, checked with the bad key's path) and a function that builds it. A new kind is one small module
with a ``@part(REGISTRY, "name", Params)`` function, imported in :mod:`llmvem.runner.kinds` (one line).

Example
-------
>>> from pydantic import BaseModel
>>> from llmvem.registry import Registry
>>> reg: Registry[Part] = Registry("example part")
>>> class Scale(BaseModel):
...     factor: float = 2.0
>>> @part(reg, "scale", Scale)
... def scale(params, state, name):
...     return params.factor
>>> reg.get("scale").build(reg.get("scale").parse({"factor": 3}, "models.x"), None, "x")
3.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from llmvem.errors import ConfigError
from llmvem.registry import Registry


class Params(BaseModel):
    """Base of every part's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True)
class Part:
    """One registered kind: its parameter model, its builder ``build(params, state, name)``, whether it runs once
    per seed of the study (``seeded``: ``build(params, state, name, seed)``) and, for evaluations, ``write(frame,
    state, name, params)``: the files it derives from the result table (CSVs, plots), and ``check(params, state,
    name)``: input checks the runner makes for every evaluation before the first one runs (so bad input stops the
    run before its directory exists, whatever the evaluation's place in the study)."""

    params: type[BaseModel]
    build: Callable[..., Any]
    seeded: bool = False
    write: Callable[..., Any] | None = None
    check: Callable[..., Any] | None = None

    def parse(self, values: Mapping[str, Any], where: str) -> Any:
        """``values`` validated by :attr:`params`; a bad key is named by its path (``models.aligned.lamda``)."""
        from llmvem.config import format_validation_error

        try:
            return self.params.model_validate(dict(values))
        except ValidationError as exc:
            text = format_validation_error(exc, self.params).replace("\n  - ", f"\n  - {where}.")
            raise ConfigError(text) from None


def part(
    registry: Registry[Part],
    name: str,
    params: type[BaseModel],
    seeded: bool = False,
    write: Callable[..., Any] | None = None,
    check: Callable[..., Any] | None = None,
) -> Callable[..., Any]:
    """Decorator registering ``fn(params, state, name)`` as the kind ``name`` of ``registry`` (:class:`Part`)."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        registry.register(name)(Part(params, fn, seeded, write, check))
        return fn

    return decorator


#: where the stimuli come from (generated demo set, objects92, NSD shared images ...): → ``Stimuli``
STIMULI: Registry[Part] = Registry("stimulus source")
#: representations that are not trained image models (text embeddings, word controls, labels) and brain targets
#: (voxels, RDM sets): → ``Representation`` or ``BrainTarget``
TARGETS: Registry[Part] = Registry("target kind")
#: image models (pretrained features, twins, image→text maps ...), once per seed when seeded: → ``Representation``
MODELS: Registry[Part] = Registry("model kind")
#: analyses that add rows to the result table (encoding, rsa, paired ...)
EVALUATIONS: Registry[Part] = Registry("evaluation")
