"""Image models: pretrained features, twins trained on them, a ridge map from features into a text space."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from llmvem.errors import ConfigError
from llmvem.runner.parts import MODELS, Params, part
from llmvem.runner.state import Representation, RunState


def _single(state: RunState, name: str, where: str) -> Representation:
    """An unseeded representation (features, a target) by name."""
    reps = state.representation(name)
    if list(reps) != [None]:
        raise ConfigError(f"{where}: {name!r} has seeds; give an unseeded model or target")
    return reps[None]


class FeaturesParams(Params):
    stimuli: str
    backbone: str | None = Field(None, description="vision backbone (default settings.features.backbone)")


@part(MODELS, "features", FeaturesParams)
def features(p: FeaturesParams, state: RunState, name: str) -> Representation:
    """Pooled image features (n, d) of a pretrained backbone, cached in the store."""
    from llmvem.runner.settings import feature_kwargs
    from llmvem.vision import extract_features

    kw = feature_kwargs(state.cfg, state.store)
    if p.backbone is not None:
        kw["backbone"] = p.backbone
    values = extract_features(state.source(p.stimuli).stimuli, **kw).values
    state.log(f"model {name}: {values.shape[0]} × {values.shape[1]} {kw['backbone']} features")
    return Representation(p.stimuli, values)


class TwinParams(Params):
    features: str = Field(description="the unseeded model whose features the twin reads")
    task: str | None = Field(None, description="a voxels target: the task head regresses its responses")
    align: str | None = Field(None, description="a text target: the projection head is aligned to it")
    lambda_align: float | None = Field(None, ge=0, description="alignment weight (default settings.train's)")
    split: str = Field("train", description="the stimuli's split it trains on")


@part(MODELS, "twin", TwinParams, seeded=True)
def twin(p: TwinParams, state: RunState, name: str, seed: int) -> Representation:
    """A twin (:mod:`llmvem.align.twins`) trained on the ``split`` images: task + λ · alignment; its image
    embedding of every image of the features' stimuli. Without ``align`` (or λ = 0) it is the baseline twin."""
    from llmvem.align.cache import cached_twin

    feats = _single(state, p.features, f"models.{name}.features")
    src = state.source(feats.stimuli)
    idx = src.split_indices(p.split)
    task = None
    if p.task is not None:
        brain = state.brain_target(p.task).brain
        if brain is None:
            raise ConfigError(f"models.{name}.task: {p.task!r} holds no voxel responses")
        task = brain.responses[idx]
    lam = 0.0 if p.align is None else (state.cfg.train.lambda_align if p.lambda_align is None else p.lambda_align)
    text = _single(state, p.align, f"models.{name}.align").values[idx] if p.align is not None else None
    cfg = state.cfg
    result = cached_twin(state.store, feats.values[idx], task, text, cfg=cfg.train, lambda_align=lam, seed=seed,
                         device=cfg.device, progress=cfg.progress, label=f"{name} twin")  # fmt: skip
    state.note("models", name, {"lambda_align": lam, "final": result.history[-1] if result.history else None}, seed)
    state.log(f"model {name} (seed {seed}): twin, λ={lam:g}, {cfg.train.epochs} epochs on {len(idx)} images")
    return Representation(feats.stimuli, result.embed(feats.values))


class RidgeMapParams(Params):
    fit_features: str = Field(description="unseeded features of the images it learns from")
    fit_target: str = Field(description="the text target of those images")
    apply_to: str = Field(description="unseeded features it maps (another stimulus set's)")


@part(MODELS, "ridge_map", RidgeMapParams)
def ridge_map(p: RidgeMapParams, state: RunState, name: str) -> Representation:
    """A linear map (ridge, per-dimension α: settings.evaluate.encoding) from image features into a text space,
    learned on one stimulus set and applied to another (no image of the other is used to learn it)."""
    from llmvem.brain import pearson_r_rows
    from llmvem.runner.settings import ridge_from_config

    x, y = (_single(state, n, f"models.{name}") for n in (p.fit_features, p.fit_target))
    apply = _single(state, p.apply_to, f"models.{name}.apply_to")
    if x.stimuli != y.stimuli:
        raise ConfigError(f"models.{name}: fit_features ({x.stimuli}) and fit_target ({y.stimuli}) are of different "
                          "stimuli")  # fmt: skip
    mapper = ridge_from_config(state.cfg).fit(x.values, y.values)
    fit: dict[str, Any] = {
        "n_images": len(x.values),
        "train_row_r": float(np.nanmean(pearson_r_rows(y.values, mapper.predict(x.values)))),
        "median_alpha": float(np.nanmedian(mapper.best_alphas_)),
    }
    state.note("models", name, fit)
    state.log(f"model {name}: ridge map {p.fit_features} → {p.fit_target} on {fit['n_images']} images "
              f"(in-sample row r {fit['train_row_r']:.3f}), applied to {p.apply_to}")  # fmt: skip
    return Representation(apply.stimuli, mapper.predict(apply.values))
