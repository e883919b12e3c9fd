"""Build a describer and its generation parameters from the ``describe`` section of an experiment config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmvem.describe.base import DESCRIBERS, Describer

if TYPE_CHECKING:
    from llmvem.config import DescribeConfig


def generation_params(d: DescribeConfig, seed: int | None = 0) -> dict[str, Any]:
    """The parameters recorded with (and keying) every description: none for imports, else temperature,
    max_tokens, seed and top_p (when set)."""
    if d.backend == "import":
        return {}
    return {"temperature": d.temperature, "max_tokens": d.max_tokens, "seed": seed, "top_p": d.top_p}


def build_describer(d: DescribeConfig, device: str = "cpu") -> Describer:
    """The describer of ``d.backend`` with the options of ``d`` that it takes."""
    factory = DESCRIBERS.get(d.backend)
    max_side = d.max_side or None
    if d.backend == "openai":
        return factory(
            d.model,
            base_url=d.base_url,
            api_key_env=d.api_key_env,
            revision=d.revision,
            max_side=max_side,
            timeout_s=d.timeout_s,
            max_retries=d.max_retries,
            retry_base_s=d.retry_base_s,
        )
    if d.backend == "transformers":
        return factory(
            d.model,
            device=device,
            dtype=d.dtype,
            batch_size=d.batch_size,
            max_side=max_side,
            revision=d.revision,
            image_splitting=d.image_splitting,
        )
    return factory(source=d.source, model=d.model)
