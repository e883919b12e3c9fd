"""A describe job from an experiment config: the describer, its generation parameters, the images, the run.

>>> from llmvem.config import load_config
>>> generation_params(load_config(overrides={"describe.backend": "openai"}).describe, seed=3)
{'temperature': 0.0, 'max_tokens': 512, 'seed': 3, 'top_p': None}
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmvem.describe.base import DESCRIBERS, Describer

if TYPE_CHECKING:
    from llmvem.config import DescribeConfig, ExperimentConfig
    from llmvem.data.stimuli import StimulusSet
    from llmvem.describe.base import Descriptions
    from llmvem.describe.run import DescribePlan
    from llmvem.store import ArtifactStore


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


def _job(cfg: ExperimentConfig, images: Path) -> tuple[Describer, StimulusSet, dict[str, Any], ArtifactStore]:
    """The describer (built first: a bad backend fails before any image is read), the images (a folder, or NSD's
    nsd_stimuli.hdf5 with ``features.subset`` / ``features.design``), the generation parameters and the store."""
    from llmvem.data.nsd_stimuli import is_stimulus_file, stimuli_from_path
    from llmvem.describe.run import stimuli_from_folder
    from llmvem.store import ArtifactStore

    d = cfg.describe
    describer = build_describer(d, device=cfg.device)
    if is_stimulus_file(images):
        stim = stimuli_from_path(images, cfg.features.subset, design=cfg.features.design)
    else:
        stim = stimuli_from_folder(images, d.labels)
    return describer, stim, generation_params(d, cfg.seed), ArtifactStore(cfg.cache_dir)


def plan_images(cfg: ExperimentConfig, images: Path) -> DescribePlan:
    """Which requests of ``llmvem describe IMAGES`` remain (``--dry-run``); makes no request."""
    from llmvem.describe.run import plan_descriptions

    describer, stim, params, store = _job(cfg, images)
    return plan_descriptions(stim, describer, cfg.describe.prompt, params, cfg.describe.n_samples, store)


def describe_images(cfg: ExperimentConfig, images: Path) -> tuple[Descriptions, int]:
    """Describe the images of ``images`` as ``cfg.describe`` says, cached and resumable: the descriptions and
    the number of images. Failed requests are returned in ``.failures`` (not raised), so a caller can list them
    and a re-run retries only them."""
    from llmvem.describe.run import describe_stimuli

    describer, stim, params, store = _job(cfg, images)
    d = cfg.describe
    desc = describe_stimuli(
        stim,
        describer,
        prompt=d.prompt,
        params=params,
        n_samples=d.n_samples,
        store=store,
        progress=cfg.progress,
        concurrency=d.concurrency if d.backend == "openai" else 1,
        raise_on_failure=False,
        max_consecutive_failures=d.max_consecutive_failures,
        clean=d.clean,
    )
    return desc, len(stim)


def same_samples_warning(d: DescribeConfig) -> str | None:
    """A warning when ``n_samples > 1`` would give identical samples (greedy decoding), else ``None``."""
    if d.n_samples > 1 and d.backend != "import" and d.temperature == 0:
        return "--samples > 1 with temperature 0 gives identical samples"
    return None


@dataclass(frozen=True)
class DescribeOutcome:
    """What ``llmvem describe IMAGES`` did: one line to show, and the failed requests (a re-run retries them)."""

    summary: str  #: ``N descriptions of M images → OUT``, or (dry run) how many requests remain
    failures: list[str] = field(default_factory=list)  #: one line per failed request


def describe_to_file(
    cfg: ExperimentConfig, images: Path, out: Path, *, dry_run: bool = False, warn: Callable[[str], Any] | None = None
) -> DescribeOutcome:
    """``llmvem describe``: describe the images of ``images`` (:func:`describe_images`) and write the descriptions
    to ``out`` (.jsonl or .parquet); with ``dry_run`` only plan the job (:func:`plan_images`), make no request and
    write nothing. ``warn`` is called first with each warning about the settings (:func:`same_samples_warning`;
    default: :func:`warnings.warn`).
    """
    if warning := same_samples_warning(cfg.describe):
        (warn or warnings.warn)(warning)
    if dry_run:
        plan = plan_images(cfg, images)
        retried = f", {plan.n_failed_before} failed before and will be retried" if plan.n_failed_before else ""
        return DescribeOutcome(f"{len(plan.todo)} of {plan.n_requests} requests remain ({plan.n_done} finished"
                               f"{retried}); log {plan.log_path}")  # fmt: skip
    desc, n_images = describe_images(cfg, images)
    desc.write(out)
    return DescribeOutcome(f"{len(desc)} descriptions of {n_images} images → {out}", [str(f) for f in desc.failures])
