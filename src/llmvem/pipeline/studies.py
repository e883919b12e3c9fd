"""Which study a config runs: ``llmvem train|evaluate CONFIG`` and ``llmvem demo`` (by ``dataset.name``), and
the file evaluations ``llmvem evaluate encoding|rsa|decode``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmvem.errors import ConfigError

if TYPE_CHECKING:
    from llmvem.config import ExperimentConfig
    from llmvem.runs import RunDir


def run_experiment(cfg: ExperimentConfig, until: Literal["train", "evaluate"]) -> None:
    """Run the study of ``cfg.dataset.name`` up to ``until`` (earlier stages come from the cache).

    Raises:
        ConfigError: a dataset with no study. BackendError: ``cfg.device`` is not available (checked before a run
            directory is made).
    """
    from llmvem.devices import check_device
    from llmvem.pipeline import run_encoding_demo, run_finetune_folder, run_nsd_objects92, run_objects92_rsa

    check_device(cfg.device)  # before a run directory is made (a GPU config on a CPU-only machine, say)
    studies = {"demo": run_encoding_demo, "folder": run_finetune_folder, "nsd_objects92": run_nsd_objects92,
               "objects92": run_objects92_rsa}  # fmt: skip
    if cfg.dataset.name not in studies:
        raise ConfigError(f"dataset.name={cfg.dataset.name!r}: training and evaluation on it are not available yet")
    studies[cfg.dataset.name](cfg, until=until)


def run_demo_study(
    study: str | None,
    given: Mapping[str, Any],
    config: Path | None = None,
    sets: Sequence[str] | None = None,
) -> RunDir:
    """``llmvem demo [STUDY]``: a built-in study (or a study YAML) through the runner, or an old experiment config.

    Args:
        study: a built-in study name or a study YAML file (default ``demo``).
        given: config key → value of the flags typed (``None``: not given); old keys are moved to study keys;
            ``data_dir``, ``cache_dir``, ``output_dir`` say where the run reads and writes (``None``: default).
        config: an old experiment config (run as its study; a warning shows the study YAML).
        sets: ``--set key=value`` items: study keys, or old keys translated like the flags.
    """
    from llmvem.config import literal_overrides, parse_sets
    from llmvem.runner import run_study
    from llmvem.runner.legacy import study_overrides

    paths = {k: given.get(k) for k in ("data_dir", "cache_dir", "output_dir")}
    literal = literal_overrides({k: v for k, v in given.items() if k not in paths})
    if config is not None:  # an old experiment config: run as its study
        from llmvem.config import load_config
        from llmvem.pipeline.encoding_demo import run_legacy

        over = parse_sets(sets)
        cfg = load_config(config, over, literal={**literal, **literal_overrides(paths),
                                                  **({"dataset.name": study} if study else {})})  # fmt: skip
        return run_legacy(cfg, None, None, "evaluate")
    name = study or "demo"
    over, lit = study_overrides(Path(name).stem, parse_sets(sets), literal)
    return run_study(name, overrides=over, literal=lit, data_dir=paths["data_dir"], cache_dir=paths["cache_dir"],
                     output_dir=paths["output_dir"])  # fmt: skip


def run_demo(cfg: ExperimentConfig) -> None:
    """The whole pipeline on a built-in set (``llmvem demo``): the generated demo set, or objects92 RSA."""
    from llmvem.pipeline import run_encoding_demo, run_objects92_rsa

    if cfg.dataset.name == "objects92":
        if cfg.name == "demo":
            cfg.name = "objects92"
        run_objects92_rsa(cfg)
    elif cfg.dataset.name == "demo":
        run_encoding_demo(cfg)
    else:
        raise ConfigError(f"dataset.name={cfg.dataset.name!r} has no demo; use demo or objects92")


def run_file_evaluation(kind: Literal["encoding", "rsa", "decode", "captions"], cfg: ExperimentConfig) -> RunDir:
    """Score feature / embedding files against brain data or RDMs (``cfg.evaluate.inputs``), or read voxels out as
    captions; the run is named ``evaluate-KIND`` unless ``name`` is set."""
    from llmvem.pipeline.evaluate_files import run_evaluate_decode, run_evaluate_encoding, run_evaluate_rsa
    from llmvem.pipeline.voxel_captions import run_evaluate_captions

    if "name" not in cfg.model_fields_set:
        cfg.name = f"evaluate-{kind}"
    runs = {"encoding": run_evaluate_encoding, "rsa": run_evaluate_rsa, "decode": run_evaluate_decode,
            "captions": run_evaluate_captions}  # fmt: skip
    return runs[kind](cfg)
