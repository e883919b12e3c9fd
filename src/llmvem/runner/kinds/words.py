"""Visual words (VW-LMM) in a study: bag-of-words targets over a vocabulary, PIF representations, the readout of a
vocabulary head (held-out precision@k). The analysis is :mod:`llmvem.visualwords`'; these kinds only wire it.

- target ``bag_of_words``: each image's descriptions as an (n, V) token distribution
  (:class:`~llmvem.visualwords.targets.BagOfWordsTargets`), fitted (idf, word pieces) on one split only, or read with
  another such target's fit (the 92 objects' descriptions with the NSD training descriptions' idf);
- target ``pif``: a bag-of-words target as PIF features (its distribution @ token embeddings, (n, E));
- model ``pif`` (seeded): a fine-tuned vocabulary head's softmax @ token embeddings on the images it represents;
- evaluation ``word_readout``: a vocabulary head's top-k words against the images' own descriptions
  (:meth:`~llmvem.visualwords.heldout.VisualWordsSetup.readout`) → rows, ``visual_words.json`` and the training words
  of several tokens (:data:`llmvem.align.words.PIECES_FILE`, read by ``llmvem words``).

The vocabulary a fine-tune's head predicts is ``settings.finetune.vocabulary`` (the trainer builds the head, and
``llmvem words`` reads the run, from that key), so a bag-of-words target that trains a head must use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from llmvem.errors import ConfigError
from llmvem.runner.kinds.networks import Network, network_of
from llmvem.runner.kinds.targets import description_texts
from llmvem.runner.parts import EVALUATIONS, MODELS, TARGETS, Params, part
from llmvem.runner.state import Representation, RunState


@dataclass
class WordBags(Representation):
    """(n, V) float32 bag-of-words rows of a source's descriptions (``values``, ``texts``: the joined descriptions),
    with the fitted :class:`~llmvem.visualwords.targets.BagOfWordsTargets` (vocabulary, idf, word pieces)."""

    bags: Any = None


class BagParams(Params):
    stimuli: str
    vocabulary: str | None = Field(None, description="tokenizer/model whose vocabulary the bags count (default "
                                   "settings.finetune.vocabulary)")  # fmt: skip
    weighting: Literal["tf", "tfidf"] | None = Field(None, description="word counts or tf-idf (default "
                                                     "settings.finetune.bow_weighting)")  # fmt: skip
    fit_split: str | None = Field("train", description="the split of `stimuli` whose descriptions fit the idf and "
                                  "word pieces (none: every image)")  # fmt: skip
    fitted: str | None = Field(None, description="a bag_of_words target whose fit is reused (vocabulary, "
                               "weighting, fit_split are then its)")  # fmt: skip

    @model_validator(mode="after")
    def _one_fit(self) -> BagParams:
        if self.fitted is not None and (self.vocabulary or self.weighting or self.fit_split != "train"):
            raise ValueError("with fitted, the vocabulary, weighting and fit split are those of that fit: give "
                             "fitted or vocabulary / weighting / fit_split")  # fmt: skip
        return self


def word_bags(state: RunState, name: str, where: str) -> WordBags:
    """The bag-of-words target ``name``."""
    target = state.targets.get(name)
    if not isinstance(target, WordBags):
        known = sorted(k for k, v in state.targets.items() if isinstance(v, WordBags))
        raise ConfigError(f"{where}: {name!r} is not a bag_of_words target (built before it); known: {known}")
    return target


@part(TARGETS, "bag_of_words", BagParams)
def bag_of_words(p: BagParams, state: RunState, name: str) -> WordBags:
    """Each image's descriptions (several sources joined, as the text targets join them) as a distribution over the
    vocabulary's tokens: content words, subwords sharing their word's weight, tf or tf-idf with the idf of the
    ``fit_split`` descriptions only (:class:`~llmvem.visualwords.targets.BagOfWordsTargets`)."""
    from llmvem.visualwords import BagOfWordsTargets, load_vocabulary

    texts = description_texts(state, name, p.stimuli)
    src = state.source(p.stimuli)
    if p.fitted is not None:
        bags = word_bags(state, p.fitted, f"targets.{name}.fitted").bags
    else:
        ft = state.cfg.finetune
        vocab = load_vocabulary(p.vocabulary or ft.vocabulary)
        rows = src.split_indices(p.fit_split) if p.fit_split is not None else np.arange(len(texts))
        bags = BagOfWordsTargets(vocab, p.weighting or ft.bow_weighting).fit([texts[k] for k in rows])
    values = bags.transform(texts, src.ids)
    used = int((values.sum(0) > 0).sum())
    state.note("targets", name, {"vocabulary": bags.vocab.name, "vocabulary_size": bags.vocab.size,
                                 "weighting": bags.weighting, "n_tokens_used": used})  # fmt: skip
    state.log(f"target {name}: {values.shape[0]} × {values.shape[1]}-token {bags.vocab.name} bags of words "
              f"({bags.weighting}{', fit of ' + p.fitted if p.fitted else ''})")  # fmt: skip
    return WordBags(p.stimuli, values, texts=texts, bags=bags)


class PIFTargetParams(Params):
    of: str = Field(description="a bag_of_words target")


@part(TARGETS, "pif", PIFTargetParams)
def pif_of_words(p: PIFTargetParams, state: RunState, name: str) -> Representation:
    """A bag-of-words target as PIF features (n, E): each image's token distribution @ the token embeddings
    (:func:`~llmvem.visualwords.pif.pif_features`), a representation made of the descriptions' words alone."""
    from llmvem.visualwords.pif import pif_features

    bags = word_bags(state, p.of, f"targets.{name}.of")
    values = pif_features(bags.values, bags.bags.vocab.embeddings, probabilities=True)
    return Representation(bags.stimuli, values)


class PIFModelParams(Params):
    of: str = Field(description="a fine-tuned model with a vocabulary head (settings.finetune.loss: visual_words)")


def _vocabulary_head(state: RunState, rep: Network, name: str, where: str) -> Any:
    """The vocabulary of a fine-tuned network's vocabulary head (``settings.finetune.vocabulary``)."""
    from llmvem.visualwords import load_vocabulary

    if state.cfg.finetune.loss != "visual_words" or not rep.network.has_head("project"):
        raise ConfigError(f"{where}: {name!r} has no vocabulary head (train it with settings.finetune.loss: "
                          "visual_words and a text target of kind bag_of_words, λ > 0)")  # fmt: skip
    return load_vocabulary(state.cfg.finetune.vocabulary)


@part(MODELS, "pif", PIFModelParams, seeded=True)
def pif_of_network(p: PIFModelParams, state: RunState, name: str, seed: int) -> Representation:
    """A fine-tuned network's PIF features (n, E): softmax(vocabulary head) @ token embeddings of the images it
    represents (:func:`~llmvem.visualwords.pif.pif_features`)."""
    from llmvem.visualwords.pif import pif_features

    rep = network_of(state, p.of, seed, f"models.{name}.of")
    vocab = _vocabulary_head(state, rep, p.of, f"models.{name}.of")
    return Representation(rep.stimuli, pif_features(rep.network.head("project", rep.values), vocab.embeddings))


class ReadoutParams(Params):
    model: str = Field(description="a fine-tuned model with a vocabulary head")
    words: str = Field(description="the bag_of_words target it trained on (its fit reads the words, its texts are "
                       "the references)")  # fmt: skip
    split: str = Field("test", description="the split of the training source whose words are scored")


def _check_readout(p: ReadoutParams, state: RunState, name: str) -> None:
    """Before any evaluation: a vocabulary head of this vocabulary, trained on the words' source; the source the
    model represents has descriptions."""
    where = f"evaluations.{name}"
    bags = word_bags(state, p.words, f"{where}.words")
    for seed in state.representation(p.model):
        rep = network_of(state, p.model, seed, f"{where}.model")
        vocab = _vocabulary_head(state, rep, p.model, f"{where}.model")
        if rep.trained_on != bags.stimuli or vocab.name != bags.bags.vocab.name:
            raise ConfigError(f"{where}: {p.model!r} trained on {rep.trained_on!r} with vocabulary {vocab.name!r}; "
                              f"the words {p.words!r} are of {bags.stimuli!r}, vocabulary "
                              f"{bags.bags.vocab.name!r}")  # fmt: skip
        if not state.source(rep.stimuli).texts:
            raise ConfigError(f"{where}: the images {p.model!r} represents ({rep.stimuli!r}) have no descriptions "
                              "to score its words against")  # fmt: skip
    state.source(bags.stimuli).split_indices(p.split)


@part(EVALUATIONS, "word_readout", ReadoutParams, check=_check_readout)
def word_readout(p: ReadoutParams, state: RunState, name: str) -> None:
    """Each seed's top-k words (``settings.words.top_k``, multi-piece words read as words) on the ``split`` images
    of the training source and on the images the model represents, against their own descriptions' content words:
    precision@k vs shuffled descriptions (``settings.words.n_shuffles``) and vs the training prior's top k (the mean
    target of the ``train`` rows). Rows: ``model`` × source (per seed and their mean), ``prior`` × source;
    ``visual_words.json`` (with example words, report section "Visual words") and the pieces file."""
    from pathlib import Path

    from llmvem.align.words import PIECES_FILE
    from llmvem.runner.kinds.networks import activations
    from llmvem.store import atomic_write_text
    from llmvem.visualwords.heldout import VisualWordsSetup

    bags, cfg = word_bags(state, p.words, f"evaluations.{name}.words"), state.cfg
    src = state.source(bags.stimuli)
    val, train = src.split_indices(p.split), src.split_indices("train")
    setup, shown = VisualWordsSetup(bags.bags.vocab, bags.bags), bags.stimuli
    for seed, rep in state.representation(p.model).items():
        net = network_of(state, p.model, seed, f"evaluations.{name}.model").network
        heldout = net.features(activations(state, bags.stimuli)[val])
        setup.add_seed(int(seed or 0), net.head("project", heldout), net.head("project", rep.values))
        shown = rep.stimuli
    applied = state.source(shown).stimuli
    vw = setup.readout([bags.texts[k] for k in val], [Path(src.stimuli.paths[k]).name for k in val],
                       [Path(x).name for x in applied.paths], description_texts(state, name, shown),
                       np.asarray(bags.values[train], dtype=np.float64).mean(0), cfg.words.top_k,
                       cfg.words.n_shuffles)  # fmt: skip
    for target, key in ((bags.stimuli, "precision"), (shown, "objects92_precision")):
        for seed in setup.seeds:
            state.results.add(name, p.model, target, vw[key][f"seed{seed}"], seed=seed)
    state.results.add(name, "prior", bags.stimuli, {"precision": vw["prior_precision"]})
    state.results.add(name, "prior", shown, {"precision": vw["objects92_prior_precision"]})
    state.note("evaluations", name, {"prior_words": vw["prior_words"], "vocabulary": vw["vocabulary"]})
    atomic_write_text(state.run.file("visual_words.json"), json.dumps(vw, indent=1))
    atomic_write_text(state.run.file(PIECES_FILE), json.dumps(setup.multi_piece_words()))  # for `llmvem words`
    m = vw["precision"]["mean"]
    state.log(f"evaluation {name}: {p.split!r} precision@{cfg.words.top_k} {m['precision']:.3f} vs shuffled "
              f"descriptions {m['shuffled_mean']:.3f} (prior only {vw['prior_precision']:.3f}), "
              f"{len(setup.seeds)} seed(s)")  # fmt: skip
