"""Run a study: stimuli → targets → models (× seeds, cached) → evaluations → the result table and its files.

The runner only wires: each part is looked up in its registry (:mod:`llmvem.runner.parts`), given its checked
parameters and the run's state, and what it returns is kept under its name for the parts after it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmvem.errors import ConfigError
from llmvem.registry import Registry
from llmvem.runner.parts import EVALUATIONS, MODELS, STIMULI, TARGETS, Part
from llmvem.runner.settings import Log, console_log, make_store
from llmvem.runner.state import RunState
from llmvem.runner.study import PartSpec, Study, load_study
from llmvem.runs import records_outcome

PHASES = ("stimuli", "targets", "models", "evaluations")
_REGISTRIES: dict[str, Registry[Part]] = {"stimuli": STIMULI, "targets": TARGETS, "models": MODELS,
                                          "evaluations": EVALUATIONS}  # fmt: skip


def study_settings(study: Study, **paths: Any) -> Any:
    """The study's ``settings`` as a validated :class:`~llmvem.config.ExperimentConfig` (``name`` = the study's),
    with the paths given here (``data_dir=``, ``cache_dir=``, ``output_dir=``: None leaves the study's)."""
    from llmvem.config import load_config

    settings = {"name": study.name, **study.settings}
    settings.update({k: str(v) for k, v in paths.items() if v is not None})
    return load_config(literal={k: v for k, v in settings.items()})


def _resolve(phase: str, name: str, spec: PartSpec) -> tuple[Part, Any]:
    kinds = _REGISTRIES[phase]
    if spec.kind not in kinds:
        raise ConfigError(f"{phase}.{name}.kind: unknown {kinds.kind} {spec.kind!r}; known: {', '.join(kinds)}")
    part = kinds.get(spec.kind)
    return part, part.parse(spec.params(), f"{phase}.{name}")


def check_study(study: Study) -> None:
    """Every part's kind is known and its parameters valid (before anything runs)."""
    import llmvem.runner.kinds  # noqa: F401  (registers the kinds)

    for phase in PHASES:
        for name, spec in getattr(study, phase).items():
            _resolve(phase, name, spec)


def _phase(state: RunState, study: Study, phase: str) -> None:
    """Build every part of ``phase`` in study order; seeded models once per seed (each seed set first); the
    evaluations' input checks (:attr:`Part.check`) all run before the first evaluation."""
    from llmvem.runs import seed_everything

    if phase == "evaluations":
        for name, spec in study.evaluations.items():
            part, params = _resolve(phase, name, spec)
            if part.check is not None:
                part.check(params, state, name)
    for name, spec in getattr(study, phase).items():
        part, params = _resolve(phase, name, spec)
        if phase == "models" and part.seeded:
            out: dict[int | None, Any] = {}
            for seed in state.seeds:
                seed_everything(seed)
                out[seed] = part.build(params, state, name, seed)
            state.models[name] = out
        elif phase == "models":
            state.models[name] = {None: part.build(params, state, name)}
        elif phase == "stimuli":
            state.stimuli[name] = part.build(params, state, name)
        elif phase == "targets":
            state.targets[name] = part.build(params, state, name)
        else:
            part.build(params, state, name)


def _write(state: RunState, study: Study, timings: dict[str, float]) -> None:
    """``results.csv``, every evaluation's files, ``metrics.json`` (:mod:`llmvem.results`) and ``report.html``."""
    import pandas as pd

    from llmvem.report import build_report
    from llmvem.results import SCHEMA, seed_means, to_nested

    frame = state.results.frame()
    frame = pd.concat([frame, seed_means(frame)], ignore_index=True)
    frame.to_csv(state.run.file("results.csv"), index=False)
    for name, spec in study.evaluations.items():
        part, params = _resolve("evaluations", name, spec)
        if part.write is not None:
            part.write(frame[frame["evaluation"] == name], state, name, params)
    for name, spec in study.evaluations.items():
        state.note("evaluations", name, {"kind": spec.kind})  # report / compare read the kinds
    state.run.log_metrics(study=study.name, schema=SCHEMA, results=to_nested(frame), info=state.info,
                          timings_s=timings)  # fmt: skip
    build_report(state.run.path)


@records_outcome
def run_study(
    study: str | Path | Study,
    overrides: Mapping[str, Any] | None = None,
    literal: Mapping[str, Any] | None = None,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    log: Log | None = None,
    until: str = "evaluations",
) -> Any:
    """Run a study (a built-in name, a YAML path or a parsed :class:`Study`) and return its
    :class:`~llmvem.runs.RunDir`: ``results.csv`` (the long table), each evaluation's CSVs and plots,
    ``metrics.json`` (:mod:`llmvem.results`), ``study.yaml`` (the study as run) and ``report.html``.

    Args:
        overrides: dotted keys (``stimuli.demo.n_images``, ``train.epochs`` = ``settings.train.epochs``); string
            values are read as YAML (``--set``); ``literal`` values are taken as they are (named CLI flags).
        until: the last phase to run (``models``: train and stop; no evaluations, no report).
    Raises:
        ConfigError: an unknown study, kind or parameter (its path named), before anything runs.
    """
    from llmvem.results import ResultTable
    from llmvem.runs import seed_everything

    if until not in PHASES:
        raise ConfigError(f"until={until!r}: one of {', '.join(PHASES)}")
    if not isinstance(study, Study):
        study = load_study(study, overrides, literal)
    elif overrides or literal:
        raise ConfigError("overrides apply to a study name or file; apply them before parsing (load_study)")
    check_study(study)
    cfg = study_settings(study, data_dir=data_dir, cache_dir=cache_dir, output_dir=output_dir)
    log = log or console_log(cfg.progress)
    seed_everything(cfg.seed)
    store = make_store(cfg)
    run = LazyRun(lambda: _open_run(study, cfg, run_dir, log, store.root))
    state = RunState(cfg, store, run, log, study.seeds or [cfg.seed], ResultTable())  # type: ignore[arg-type]
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    for phase in PHASES[: PHASES.index(until) + 1]:
        t0 = time.perf_counter()
        _phase(state, study, phase)
        timings[phase] = round(time.perf_counter() - t0, 2)
    if until != "evaluations":
        run.log_metrics(study=study.name, info=json.loads(json.dumps(state.info, default=str)), timings_s=timings)
        log(f"[green]stopped after {until}[/green]; models are cached in the store, info in {run.file('metrics.json')}")
        return run.opened()
    _write(state, study, timings)
    run.log_metrics(total_s=round(time.perf_counter() - t_start, 1))
    log(f"[green]done[/green] in {time.perf_counter() - t_start:.1f} s: {run.file('results.csv')}, "
        f"{run.file('report.html')}")  # fmt: skip
    return run.opened()


class LazyRun:
    """The run directory, made on first use: a study whose inputs fail their checks (ids that do not pair, a
    missing ROI) leaves no run directory behind. Any attribute of :class:`~llmvem.runs.RunDir` opens it."""

    def __init__(self, open_run: Any) -> None:
        self._open, self._run = open_run, None

    def opened(self) -> Any:
        """The :class:`~llmvem.runs.RunDir` (made now if it was not yet)."""
        if self._run is None:
            self._run = self._open()
        return self._run

    def __getattr__(self, name: str) -> Any:
        return getattr(self.opened(), name)


def _open_run(study: Study, cfg: Any, run_dir: str | Path | None, log: Log, store_root: Path) -> Any:
    """A new run directory with ``config.yaml`` (the resolved settings, no ``dataset``) and ``study.yaml``."""
    import yaml

    from llmvem.config import dump_config
    from llmvem.runs import RunDir
    from llmvem.store import atomic_write_text

    run = RunDir(cfg, run_dir)
    resolved = yaml.safe_load(dump_config(cfg))
    resolved.pop("dataset")  # the stimuli section of study.yaml says which images: no dataset setting applies
    atomic_write_text(run.file("config.yaml"), yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
    atomic_write_text(run.file("study.yaml"), yaml.safe_dump(study.model_dump(exclude_none=True), sort_keys=False,
                                                             allow_unicode=True))  # fmt: skip
    log(f"[bold]llmvem study {study.name}[/bold] → run directory [cyan]{run.path}[/cyan] (store {store_root})")
    return run
