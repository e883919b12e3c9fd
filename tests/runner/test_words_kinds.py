"""The visual-words kinds of the runner (runner/kinds/words.py) on a few texts: bag-of-words targets fitted on one
split, another source read with that fit, PIF of the bags, and the checks that stop a bad study early."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import llmvem.runner.kinds  # noqa: F401  (registers the kinds)
from llmvem.config import load_config
from llmvem.errors import ConfigError
from llmvem.results import ResultTable
from llmvem.runner import EVALUATIONS, TARGETS, load_study
from llmvem.runner.run import check_study
from llmvem.runner.state import Representation, RunState, Stimuli
from llmvem.store import ArtifactStore

TEXTS = ["A surfer rides a large wave in the ocean.", "A red bus drives down a city street.",
         "A dog runs on green grass in a park.", "An airplane lands at a busy airport."]  # fmt: skip


def _state(tmp_path: Path) -> RunState:
    from llmvem.data.stimuli import StimulusSet

    ids = [f"s{k}" for k in range(4)]
    nsd = Stimuli(StimulusSet(ids, [tmp_path / f"{i}.jpg" for i in ids]), texts=[dict(zip(ids, TEXTS, strict=True))],
                  splits={"train": ids[:3], "test": ids[3:]})  # fmt: skip
    other = Stimuli(StimulusSet(["o0", "o1"], [tmp_path / "o0.jpg", tmp_path / "o1.jpg"]),
                    texts=[{"o0": "A wave and a surfer.", "o1": "An airport with an airplane."}])  # fmt: skip
    cfg = load_config(overrides={"progress": False})
    state = RunState(cfg, ArtifactStore(tmp_path / "store"), None, lambda msg: None, [0], ResultTable())  # type: ignore[arg-type]
    state.stimuli.update(nsd=nsd, other=other)
    return state


def _build(state: RunState, kind: str, name: str, params: dict) -> None:
    part = TARGETS.get(kind)
    state.targets[name] = part.build(part.parse(params, f"targets.{name}"), state, name)


def test_bags_fitted_on_the_train_split_and_read_with_that_fit(tmp_path: Path) -> None:
    from llmvem.visualwords import BagOfWordsTargets, load_vocabulary
    from llmvem.visualwords.pif import pif_features

    state = _state(tmp_path)
    _build(state, "bag_of_words", "words", {"stimuli": "nsd", "weighting": "tfidf"})
    _build(state, "bag_of_words", "other_words", {"stimuli": "other", "fitted": "words"})
    _build(state, "pif", "other_pif", {"of": "other_words"})
    vocab = load_vocabulary("minilm")
    fit = BagOfWordsTargets(vocab, "tfidf").fit(TEXTS[:3])  # the train split only: idf without the test text
    words = state.targets["words"]
    np.testing.assert_array_equal(words.values, fit.transform(TEXTS))
    assert words.values.dtype == np.float32 and words.texts == TEXTS
    np.testing.assert_allclose(words.values.sum(1), 1.0, rtol=1e-5)
    other = fit.transform(["A wave and a surfer.", "An airport with an airplane."])
    np.testing.assert_array_equal(state.targets["other_words"].values, other)
    pif = state.targets["other_pif"]
    assert isinstance(pif, Representation) and pif.stimuli == "other" and pif.values.shape == (2, 384)
    np.testing.assert_array_equal(pif.values, pif_features(other, vocab.embeddings, probabilities=True))
    assert state.info["targets"]["words"]["weighting"] == "tfidf"
    assert state.info["targets"]["words"]["vocabulary_size"] == 30522


def test_bad_word_parts_stop_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"targets\.w\.\(root\): .*with fitted, the vocabulary"):
        TARGETS.get("bag_of_words").parse({"stimuli": "o", "fitted": "n", "weighting": "tf"}, "targets.w")
    with pytest.raises(ConfigError, match=r"targets\.w\.weighting"):
        TARGETS.get("bag_of_words").parse({"stimuli": "o", "weighting": "counts"}, "targets.w")
    state = _state(tmp_path)
    _build(state, "bag_of_words", "words", {"stimuli": "nsd"})
    state.models["plain"] = {0: Representation("other", np.zeros((2, 3)))}
    readout = EVALUATIONS.get("word_readout")
    assert readout.check is not None
    with pytest.raises(ConfigError, match="'plain' is not a fine-tuned model"):
        readout.check(readout.parse({"model": "plain", "words": "words"}, "evaluations.r"), state, "r")
    with pytest.raises(ConfigError, match="'nope' is not a bag_of_words target"):
        readout.check(readout.parse({"model": "plain", "words": "nope"}, "evaluations.r"), state, "r")
    check_study(load_study("nsd-objects92-words"))  # the shipped study: every kind known, every parameter valid
