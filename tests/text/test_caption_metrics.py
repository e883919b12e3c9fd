"""Caption metrics: equal to coco-caption's own scorers and to nlg-eval's published example scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmvem.errors import ConfigError, DataError
from llmvem.text import caption_metrics as cm

pytest.importorskip("pycocoevalcap")
pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="the PTB tokenizer and METEOR need Java")

REFS = {
    "img1": ["A man riding a horse on a beach.", "A person rides a horse near the ocean"],
    "img2": ["Two dogs play in the snow.", "dogs running through snow", "Two brown dogs, in deep snow!"],
    "img3": ["A plate of food with broccoli", "a dinner plate with meat and broccoli on it"],
}
CANDS = {"img1": "a man on a horse at the beach", "img2": "a dog in the snow", "img3": "food on a plate"}


def _coco_reference(cands: dict[str, str], refs: dict[str, list[str]]) -> dict[str, float]:
    """The scores exactly as coco-caption's evaluation script computes them (its tokenizer, its scorers)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": v}] for k, v in cands.items()})
    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res)
    out.update({f"bleu_{n + 1}": bleu[n] for n in range(4)})
    meteor = Meteor()
    out["meteor"], _ = meteor.compute_score(gts, res)
    out["rouge_l"], _ = Rouge().compute_score(gts, res)
    out["cider_d"], _ = Cider().compute_score(gts, res)
    return out


def test_tokenizer_equals_coco_caption() -> None:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    texts = ["A man, riding a horse...", "Two dogs' toys (red) -- in snow!", "café déjà vu: it's 3.5 m"]
    ref = PTBTokenizer().tokenize({"x": [{"caption": t} for t in texts]})["x"]
    assert cm.ptb_tokenize(texts) == ref
    assert cm.ptb_tokenize(["line one\nline two", "a ||| b"]) == ["line one line two", "a b"]


def test_scores_equal_coco_caption_scorers() -> None:
    ours = cm.score_captions(CANDS, REFS, metrics=["bleu", "meteor", "rouge_l", "cider_d"])
    ref = _coco_reference(CANDS, REFS)
    assert set(ours.corpus) == set(ref)
    for k, v in ref.items():
        assert ours.corpus[k] == pytest.approx(float(v), rel=1e-9, abs=1e-12), k
    assert list(ours.per_image.index) == list(CANDS)
    # ROUGE-L and CIDEr-D corpus scores are the per-image means; BLEU is corpus-level (not the mean)
    assert ours.corpus["rouge_l"] == pytest.approx(ours.per_image["rouge_l"].mean())


def test_hand_computed_bleu1_and_rouge_l() -> None:
    # unigram precision 5/6, equal lengths (no brevity penalty); LCS 5 of 6 both ways -> F = 5/6
    s = cm.score_captions(
        {"a": "the cat sat on the mat"}, {"a": ["the cat is on the mat"]}, metrics=["bleu", "rouge_l"]
    )
    assert s.corpus["bleu_1"] == pytest.approx(5 / 6, rel=1e-6)
    assert s.corpus["rouge_l"] == pytest.approx(5 / 6, rel=1e-6)
    same = cm.score_captions({"a": "the cat is on the mat"}, {"a": ["The cat is on the mat."]}, metrics=["bleu"])
    assert same.corpus["bleu_4"] == pytest.approx(1.0, rel=1e-6)


def test_matched_references_leave_one_out() -> None:
    s = cm.score_captions(CANDS, REFS, metrics=["rouge_l"], matched=True)
    assert s.references == "leave-one-out"
    by_hand = []
    for i, refs in REFS.items():
        rounds = [cm.score_captions({i: CANDS[i]}, {i: refs[:j] + refs[j + 1 :]}, metrics=["rouge_l"])
                  for j in range(len(refs))]  # fmt: skip
        by_hand.append(np.mean([r.corpus["rouge_l"] for r in rounds]))
    assert s.per_image["rouge_l"].to_numpy() == pytest.approx(by_hand)


def test_embedding_similarity_with_minilm() -> None:
    from llmvem.text import embed_texts

    s = cm.score_captions(
        {"a": "a dog runs on the grass", "b": "a plate of pasta"},
        {"a": ["a dog runs on the grass", "a dog running on grass"], "b": ["a red sports car"]},
        metrics=["embedding"],
        embed=lambda t: embed_texts(t, encoder="minilm", progress=False),
    )
    a, b = s.per_image.loc["a", "embedding"], s.per_image.loc["b", "embedding"]
    assert 0.9 < a <= 1.0 + 1e-6 and b < 0.5


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="no references"):
        cm.score_captions({"x": "a cat"}, REFS, metrics=["bleu"])
    with pytest.raises(DataError, match="fewer than 2"):
        cm.human_ceiling({"a": ["only one caption"], "b": ["one", "two"]}, metrics=["bleu"])
    with pytest.raises(ConfigError, match="SPICE"):
        cm.score_captions(CANDS, REFS, metrics=["spice"])
    with pytest.raises(ConfigError, match="encoder"):
        cm.score_captions(CANDS, REFS, metrics=["embedding"])


def test_no_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cm.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="need Java"):
        cm.score_captions(CANDS, REFS, metrics=["bleu"])


def test_hostile_text_keeps_meteor_in_step() -> None:
    refs = {"a": ["a b ||| c", "line\nbreak here"], "b": ["|||", "plain text caption"], "c": ["...", "ok fine"]}
    s = cm.score_captions({"a": "a b c", "b": "||| |||", "c": "!!!"}, refs, metrics=["meteor", "bleu"])
    assert len(s.per_image) == 3 and np.isfinite(s.per_image.to_numpy()).all()


# nlg-eval (Maluuba/nlg-eval) runs coco-caption's scorers on untokenised, lower-case text: its README example
# (examples/hyp.txt, ref1.txt, ref2.txt) and its unit test publish these scores to 6 places (printed rounded, or
# truncated in its test). PTB tokenisation leaves these texts as they are, so our pipeline (tokenizer included)
# must give the same numbers.
NLG_EVAL_HYP = [
    "this is the model generated sentence1 which seems good enough",
    "this is sentence2 which has been generated by your model",
]
NLG_EVAL_REFS = [
    ["this is one reference sentence for sentence1", "this is one more reference sentence for sentence1"],
    [
        "this is a reference sentence for sentence2 which was generated by your model",
        "this is the second reference sentence for sentence2",
    ],
]
NLG_EVAL_README = {"bleu_1": 0.55, "bleu_2": 0.428174, "bleu_3": 0.284043, "bleu_4": 0.201143, "meteor": 0.295797}
NLG_EVAL_README |= {"rouge_l": 0.522104, "cider_d": 1.242192}
NLG_EVAL_ONE = {"bleu_1": 0.799999, "bleu_2": 0.632455, "bleu_3": 0.5108729, "bleu_4": 0.0000903602}
NLG_EVAL_ONE |= {"meteor": 0.44434387, "rouge_l": 0.9070631, "cider_d": 0.0}


def test_equals_published_scores_of_nlg_eval_examples() -> None:
    metrics = ["bleu", "meteor", "rouge_l", "cider_d"]
    cands = {str(k): h for k, h in enumerate(NLG_EVAL_HYP)}
    refs = {str(k): r for k, r in enumerate(NLG_EVAL_REFS)}
    ours = cm.score_captions(cands, refs, metrics=metrics).corpus
    for k, v in NLG_EVAL_README.items():
        assert ours[k] == pytest.approx(v, abs=1.5e-6), k
    one = cm.score_captions(
        {"x": "this is a good test"}, {"x": ["this is a test", "this is also a test"]}, metrics=metrics
    )
    for k, v in NLG_EVAL_ONE.items():
        assert one.corpus[k] == pytest.approx(v, abs=1.5e-6), k


@pytest.mark.data
def test_human_ceiling_on_special100(data_dir: Path) -> None:
    """Five COCO captions of the 100 special NSD images, each against the other four (our measured figures).

    Scope: these 100 images only. COCO's own "Human" leaderboard row could not be checked offline (neither the
    evaluation server's table nor captions_val2014.json is reachable here), so no comparison with it is claimed.
    CIDEr-D's IDF depends on the reference set, so it is only checked for range.
    """
    rows = json.loads((data_dir / "nsd_shared1000" / "special100_captions.json").read_text())
    refs = {r["image"]: r["coco_captions"] for r in rows}
    c = cm.human_ceiling(refs, metrics=["bleu", "meteor", "rouge_l", "cider_d"])
    assert c.n_images == 100 and c.references == "leave-one-out"
    assert c.corpus["bleu_4"] == pytest.approx(0.214, abs=0.002)
    assert c.corpus["meteor"] == pytest.approx(0.246, abs=0.002)
    assert c.corpus["rouge_l"] == pytest.approx(0.474, abs=0.002)
    assert 0.6 < c.corpus["cider_d"] < 1.5
    gpt4 = cm.score_captions({r["image"]: r["gpt4_caption"] for r in rows}, refs, metrics=["rouge_l"], matched=True)
    assert gpt4.corpus["rouge_l"] < c.corpus["rouge_l"]
    table = cm.caption_table(gpt4, c)
    assert table.loc[0, "score_over_ceiling"] == pytest.approx(gpt4.corpus["rouge_l"] / c.corpus["rouge_l"])


def test_caption_table_leaves_no_ratio_over_a_near_zero_ceiling() -> None:
    """BLEU-4 of captions sharing no 4-gram is ~1e-9, not 0: dividing by it gave ratios of 1e5-1e8."""
    per = pd.DataFrame({"bleu_4": [0.2], "rouge_l": [0.4]}, index=["a"])
    model = cm.CaptionScores({"bleu_4": 2e-7, "rouge_l": 0.4}, per, "leave-one-out")
    ceiling = cm.CaptionScores({"bleu_4": 3e-9, "rouge_l": 0.5}, per, "leave-one-out")
    table = cm.caption_table(model, ceiling).set_index("metric")
    assert np.isnan(table.loc["bleu_4", "score_over_ceiling"])
    assert table.loc["bleu_4", "human_ceiling"] == 3e-9  # the ceiling itself is still reported
    assert table.loc["rouge_l", "score_over_ceiling"] == pytest.approx(0.8)
    assert np.isnan(cm.caption_table(model, None).loc[0, "score_over_ceiling"])
