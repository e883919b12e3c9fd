"""Describe stage: images + prompt + backend → descriptions with provenance.

Backends (``DESCRIBERS``): ``openai`` (any OpenAI-compatible chat-completions server), ``transformers`` (a local
Hugging Face vision-language model) and ``import`` (existing captions). :func:`describe_stimuli` runs a resumable,
concurrent job into the artifact store; :func:`export_descriptions` writes what is stored to JSONL or Parquet; both
can clean boilerplate off the texts (``clean=["preamble"]``, steps in ``CLEANERS``) while keeping the raw text.
"""

from llmvem.describe import imported as _imported  # noqa: F401  (registers the "import" backend)
from llmvem.describe import local_vlm as _local_vlm  # noqa: F401  (registers "transformers"; torch loads lazily)
from llmvem.describe import openai_compat as _openai  # noqa: F401  (registers "openai"; httpx loads lazily)
from llmvem.describe.base import (
    DESCRIBERS,
    DescribeFailure,
    Describer,
    Description,
    Descriptions,
    Failure,
    Generation,
    ImageRequest,
)
from llmvem.describe.clean import CLEANERS, clean_text
from llmvem.describe.export import export_descriptions, read_records
from llmvem.describe.from_config import build_describer, generation_params
from llmvem.describe.prompts import PROMPTS, resolve_prompt
from llmvem.describe.run import (
    DescribeFailuresError,
    DescribePlan,
    describe_stimuli,
    plan_descriptions,
    stimuli_from_folder,
)

__all__ = [
    "CLEANERS", "DESCRIBERS", "PROMPTS", "DescribeFailure", "DescribeFailuresError", "DescribePlan", "Describer",
    "Description", "Descriptions", "Failure", "Generation", "ImageRequest", "build_describer", "clean_text",
    "describe_stimuli", "export_descriptions", "generation_params", "plan_descriptions", "read_records",
    "resolve_prompt", "stimuli_from_folder",
]  # fmt: skip
