"""Targets: text representations (descriptions and Doerig et al.'s controls), label vectors, brain targets."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from llmvem.errors import ConfigError
from llmvem.runner.parts import TARGETS, Params, part
from llmvem.runner.state import BrainTarget, Representation, RunState, Stimuli

TextSource = Literal["descriptions", "described", "scrambled", "category_strings"]


class TextParams(Params):
    stimuli: str
    text: TextSource = Field(
        "descriptions",
        description="descriptions: the source's own texts (several sources: the mean of their embeddings); "
        "described: the describe stage (settings.describe) on the images; scrambled: the descriptions with their "
        "words shuffled; category_strings: each image's category names as one string",
    )
    encoder: str | None = Field(None, description="text encoder (glove, glove-nouns ...); default settings.embed")
    scramble_seed: int = Field(0, description="scrambled: the seed of the word order")


def _described(state: RunState, name: str, src: Stimuli) -> list[str]:
    """The describe stage (``settings.describe``) on the images; the import backend reads the source's captions
    unless ``describe.source`` names a file. The descriptions are written to ``descriptions.jsonl``."""
    from llmvem.describe import describe_stimuli
    from llmvem.describe.from_config import build_describer, generation_params

    cfg = state.cfg
    dcfg = cfg.describe
    if dcfg.backend == "import" and dcfg.source is None and "captions_path" in src.extra:
        dcfg = dcfg.model_copy(update={"source": src.extra["captions_path"]})
    desc = describe_stimuli(src.stimuli, build_describer(dcfg, cfg.device), prompt=dcfg.prompt,
                            params=generation_params(dcfg, cfg.seed), n_samples=dcfg.n_samples, store=state.store,
                            progress=cfg.progress, concurrency=dcfg.concurrency)  # fmt: skip
    desc.to_frame().to_json(state.run.file("descriptions.jsonl"), orient="records", lines=True)
    texts = desc.texts_for(src.ids)
    state.log(f'target {name}: {len(desc)} descriptions via {dcfg.backend!r} ({dcfg.model}), e.g. "{texts[0]}"')
    return texts


def _text_sources(p: TextParams, state: RunState, name: str, src: Stimuli) -> list[list[str]]:
    from llmvem.text.controls import category_strings, scramble_words

    if p.text == "described":
        return [_described(state, name, src)]
    if p.text == "category_strings":
        if not src.labels:
            raise ConfigError(f"targets.{name}: stimuli {p.stimuli!r} have no category labels")
        return [category_strings(src.labels)]
    if not src.texts:
        raise ConfigError(f"targets.{name}: stimuli {p.stimuli!r} have no descriptions (use text: described)")
    missing = [i for i in src.ids if any(i not in t for t in src.texts)]
    if missing:
        raise ConfigError(f"targets.{name}: {len(missing)} image(s) of {p.stimuli!r} lack a description: "
                          f"{missing[:5]}")  # fmt: skip
    sources = [[t[i] for i in src.ids] for t in src.texts]
    if p.text == "scrambled":
        return [scramble_words(s, seed=p.scramble_seed) for s in sources]
    return sources


def description_texts(state: RunState, name: str, stimuli: str) -> list[str]:
    """One text per image of ``stimuli``: its descriptions of every source joined by blank lines (as the text
    targets join them); every image must have one of each source (the error names ``targets.<name>``)."""
    src = state.source(stimuli)
    sources = _text_sources(TextParams(stimuli=stimuli), state, name, src)
    return ["\n\n".join(t) for t in zip(*sources, strict=True)]


@part(TARGETS, "text_embedding", TextParams)
def text_embedding(p: TextParams, state: RunState, name: str) -> Representation:
    """Embeddings (n, d) of one text per image (``text``), by ``encoder``: a sentence encoder, GloVe word
    averages (``glove``) or part-of-speech word averages (``glove-nouns`` ...). A source whose descriptions are one
    table (an image folder's) has each image's texts embedded and averaged
    (:func:`~llmvem.text.multi.embed_per_image`)."""
    from llmvem.runner.settings import embed_kwargs
    from llmvem.text.embed import embed_text_sources

    src = state.source(p.stimuli)
    kw = embed_kwargs(state.cfg, state.store)
    if p.encoder is not None:
        kw["encoder"] = p.encoder
    if p.text == "descriptions" and src.text_table is not None:  # rows of one table, several per image possible
        from llmvem.text.multi import embed_per_image

        values = embed_per_image(src.text_table, ids=src.ids, aggregate="mean", **kw).values
        by_image = src.text_table.groupby("image", sort=False)["text"].apply(list).to_dict()
        texts = ["\n\n".join(by_image[i]) for i in src.ids]
    else:
        sources = _text_sources(p, state, name, src)
        values = embed_text_sources(sources, **kw)
        texts = ["\n\n".join(t) for t in zip(*sources, strict=True)]
    state.log(f"target {name}: {values.shape[0]} × {values.shape[1]} {kw['encoder']} embeddings of {p.text}")
    return Representation(p.stimuli, values, texts=texts)


class StimuliParams(Params):
    stimuli: str


@part(TARGETS, "multi_hot", StimuliParams)
def multi_hot_labels(p: StimuliParams, state: RunState, name: str) -> Representation:
    """Multi-hot vectors (n, n_categories) of the images' category names."""
    from llmvem.text.controls import multi_hot

    src = state.source(p.stimuli)
    if not src.labels:
        raise ConfigError(f"targets.{name}: stimuli {p.stimuli!r} have no category labels")
    values, cats = multi_hot(src.labels)
    state.note("targets", name, {"categories": cats})
    return Representation(p.stimuli, values.astype(np.float64))


@part(TARGETS, "voxels", StimuliParams)
def voxels(p: StimuliParams, state: RunState, name: str) -> BrainTarget:
    """The source's brain responses (voxels, ROIs, noise ceilings)."""
    src = state.source(p.stimuli)
    if src.brain is None:
        raise ConfigError(f"targets.{name}: stimuli {p.stimuli!r} come with no brain responses")
    return BrainTarget(p.stimuli, brain=src.brain.reorder(src.ids))


class RDMParams(Params):
    stimuli: str
    sets: list[str] | None = Field(None, description="RDM sets to use (default: every set of the source)")


@part(TARGETS, "rdms", RDMParams)
def rdms(p: RDMParams, state: RunState, name: str) -> BrainTarget:
    """The source's brain RDM sets (subjects × n × n), in the source's stimulus order."""
    src = state.source(p.stimuli)
    chosen = p.sets if p.sets is not None else sorted(src.rdms)
    unknown = [s for s in chosen if s not in src.rdms]
    if unknown:
        raise ConfigError(f"targets.{name}.sets: unknown RDM set(s) {unknown}; available: {sorted(src.rdms)}")
    return BrainTarget(p.stimuli, rdms={s: src.rdms[s].reorder(src.ids) for s in chosen})
