"""Fine-tune a vision network on your own images (``dataset.name: folder`` configs): the built-in studies
``folder-classifier`` (GPT4Image-style classification) and ``folder-voxels`` (LLM-VEM-style voxel regression), each
language-aligned model against its unaligned twin, run through the experiment runner.

The old config is translated (:func:`llmvem.runner.legacy.translate_config`: ``finetune.task`` picks the study,
``dataset.images|descriptions|labels|brain|heldout|missing_descriptions`` become the ``image_folder`` stimuli's
parameters); a :class:`~llmvem.runner.legacy.LegacyConfigWarning` shows the study YAML to use instead. What the
studies measure and write: ``llmvem/studies/folder-*.yaml`` and docs/decisions/0013-runner.md.
"""

from __future__ import annotations

from pathlib import Path

from llmvem.config import ExperimentConfig
from llmvem.pipeline.common import Log
from llmvem.runs import RunDir


def run_finetune_folder(
    cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None, until: str = "evaluate"
) -> RunDir:
    """The folder study of an old config (``dataset.name: folder``) through the runner; ``until="train"`` stops
    after training (see :func:`llmvem.pipeline.encoding_demo.run_legacy`)."""
    from llmvem.pipeline.encoding_demo import run_legacy

    return run_legacy(cfg, run_dir, log, until)
