"""The built-in demo, kept as the old entry point: a thin wrapper over the ``demo`` study of the runner
(``llmvem/studies/demo.yaml``; :func:`llmvem.runner.run_study`)."""

from __future__ import annotations

from pathlib import Path

from llmvem.config import ExperimentConfig
from llmvem.runner.settings import Log
from llmvem.runs import RunDir

UNTIL = {"train": "models", "evaluate": "evaluations"}


def run_legacy(cfg: ExperimentConfig, run_dir: Path | None, log: Log | None, until: str) -> RunDir:
    """Run an old config through the runner: its study (:func:`llmvem.runner.legacy.study_from_config`, which warns
    with the study YAML to use instead), stopping after training for ``until="train"``."""
    from llmvem.errors import ConfigError
    from llmvem.runner import run_study
    from llmvem.runner.legacy import study_from_config

    if until not in UNTIL:
        raise ConfigError(f"until={until!r}: one of {', '.join(UNTIL)}")
    study = study_from_config(cfg)
    run: RunDir = run_study(study, run_dir=run_dir, log=log, until=UNTIL[until])
    return run


def run_encoding_demo(
    cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None, until: str = "evaluate"
) -> RunDir:
    """The ``demo`` study from an old config (``dataset.name: demo``); see :func:`run_legacy`."""
    return run_legacy(cfg, run_dir, log, until)
