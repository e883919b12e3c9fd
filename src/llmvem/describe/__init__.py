"""Describe stage: images + prompt + backend → descriptions with provenance."""

from llmvem.describe import imported as _imported  # noqa: F401  (registers the "import" backend)
from llmvem.describe.base import DESCRIBERS, Describer, Description, Descriptions, ImageRequest
from llmvem.describe.prompts import PROMPTS, resolve_prompt
from llmvem.describe.run import describe_stimuli

__all__ = [
    "DESCRIBERS", "PROMPTS", "Describer", "Description", "Descriptions", "ImageRequest", "describe_stimuli",
    "resolve_prompt",
]  # fmt: skip
