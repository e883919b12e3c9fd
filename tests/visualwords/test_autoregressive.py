"""VW-LMM's autoregressive visual words: splicing, the shifted / masked KL, stop-gradient, tiny GPT-2 and Llama."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmvem.errors import ConfigError, DataError
from llmvem.visualwords.autoregressive import (
    build_llava_batch,
    splice_image_embeddings,
    text_next_token_loss,
    visual_words_kl,
    visual_words_lm,
)

IMG = 99  # placeholder id


def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    p, q = p_logits.softmax(-1), q_logits.softmax(-1)
    return float((p * (p.log() - q.log())).sum())


def test_kl_is_shifted_by_one_and_masked_to_image_positions() -> None:
    g = torch.Generator().manual_seed(0)
    lm = torch.randn(2, 5, 4, generator=g)
    vis = torch.randn(2, 5, 4, generator=g)
    # row 0: text, img, img, text, text ; row 1: img, text, text, img, pad-ish text
    mask = torch.tensor([[0, 1, 1, 0, 0], [1, 0, 0, 1, 0]], dtype=torch.bool)
    # positions t whose next token is visual: (0,0)→1, (0,1)→2, (1,2)→3 ; (1,0) is an image but nothing predicts it
    want = np.mean([_kl(vis[0, 1], lm[0, 0]), _kl(vis[0, 2], lm[0, 1]), _kl(vis[1, 3], lm[1, 2])])
    got = visual_words_kl(lm, vis, mask)
    assert float(got) == pytest.approx(want, rel=1e-5)
    # nothing else matters: the LM at positions whose next token is text, visual logits at text positions
    lm2, vis2 = lm.clone(), vis.clone()
    lm2[0, 2:] = 50.0 * torch.randn(3, 4)
    lm2[1, [0, 1, 3, 4]] = -30.0
    vis2[0, [0, 3, 4]] = 7.0 * torch.randn(3, 4)
    vis2[1, [0, 1, 2, 4]] = 11.0
    assert float(visual_words_kl(lm2, vis2, mask)) == pytest.approx(want, rel=1e-5)
    # the KL direction is KL(visual ‖ LM): swapping the roles changes the value
    assert float(visual_words_kl(vis.roll(-1, 1), lm.roll(1, 1), mask)) != pytest.approx(want, rel=1e-3)
    # identical distributions: zero
    assert float(visual_words_kl(vis.roll(-1, 1), vis, mask)) == pytest.approx(0.0, abs=1e-6)
    # no qualifying position: zero, still differentiable
    none = visual_words_kl(lm.requires_grad_(), vis, torch.zeros(2, 5, dtype=torch.bool))
    assert float(none.detach()) == 0.0 and none.requires_grad


@pytest.mark.parametrize(("stop", "lm_grad", "vis_grad"), [("visual", True, False), ("lm", False, True),
                                                           ("none", True, True)])  # fmt: skip
def test_stop_gradient(stop: str, lm_grad: bool, vis_grad: bool) -> None:
    lm = torch.randn(1, 4, 6, requires_grad=True)
    vis = torch.randn(1, 4, 6, requires_grad=True)
    mask = torch.tensor([[0, 1, 1, 0]], dtype=torch.bool)
    visual_words_kl(lm, vis, mask, stop_gradient=stop).backward()  # type: ignore[arg-type]
    assert (lm.grad is not None and lm.grad.abs().sum() > 0) == lm_grad
    assert (vis.grad is not None and vis.grad.abs().sum() > 0) == vis_grad
    if lm.grad is not None:  # only positions 0 and 1 (next token visual) get a gradient
        assert lm.grad[0, 2:].abs().sum() == 0 and lm.grad[0, :2].abs().sum() > 0
    if vis.grad is not None:
        assert vis.grad[0, [0, 3]].abs().sum() == 0


def test_kl_errors() -> None:
    mask = torch.ones(1, 3, dtype=torch.bool)
    with pytest.raises(DataError, match=r"vocabulary mismatch.*7 tokens.*5"):
        visual_words_kl(torch.zeros(1, 3, 7), torch.zeros(1, 3, 5), mask)
    with pytest.raises(ConfigError, match="stop_gradient"):
        visual_words_kl(torch.zeros(1, 3, 5), torch.zeros(1, 3, 5), mask, stop_gradient="both")  # type: ignore[arg-type]


def test_splice_and_text_loss_on_hand_made_sequences() -> None:
    ids, att = build_llava_batch([[5, 6], [7]], [[8], [9, 10, 11]], n_image_tokens=3, image_token_id=IMG)
    assert ids.tolist() == [[5, 6, IMG, IMG, IMG, 8, 0], [7, IMG, IMG, IMG, 9, 10, 11]]
    assert att.tolist() == [[1, 1, 1, 1, 1, 1, 0], [1] * 7]
    table = torch.nn.Embedding(20, 4)
    img = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    emb, mask = splice_image_embeddings(ids, img, table, IMG)
    assert mask.tolist() == [[0, 0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 0, 0, 0]]
    torch.testing.assert_close(emb[0, 2:5], img[0])
    torch.testing.assert_close(emb[1, 1:4], img[1])
    torch.testing.assert_close(emb[0, [0, 1, 5]], table(torch.tensor([5, 6, 8])))
    with pytest.raises(DataError, match=r"row\(s\) \[1\] hold 2 image placeholder"):
        splice_image_embeddings(torch.tensor([[IMG, IMG, IMG], [IMG, IMG, 3]]), img, table, IMG)
    with pytest.raises(DataError, match="4-d"):
        splice_image_embeddings(ids, torch.zeros(2, 3, 6), table, IMG)
    # text CE: targets are the next tokens that are text and not padding: row 0 → 6 (t=0), 8 (t=4); row 1 → 9, 10, 11
    logits = torch.randn(2, 7, 20)
    want = F.cross_entropy(torch.stack([logits[0, 0], logits[0, 4], logits[1, 3], logits[1, 4], logits[1, 5]]),
                           torch.tensor([6, 8, 9, 10, 11]))  # fmt: skip
    torch.testing.assert_close(text_next_token_loss(logits, ids, mask, att), want)


def _tiny_lm(kind: str, vocab: int = 64) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2))
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    return LlamaForCausalLM(cfg)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_tiny_causal_lm_learns_visual_words(kind: str) -> None:
    lm = _tiny_lm(kind)
    model = visual_words_lm(lm, image_dim=12, image_token_id=63, projector="mlp", stop_gradient="none")
    # the head starts as the LM's token embeddings (tied)
    torch.testing.assert_close(model.vm_head.weight, lm.get_input_embeddings().weight)
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(4, 3, 12, generator=g)
    ids, att = build_llava_batch([[1, 2]] * 4, [[3, 4, 5]] * 4, n_image_tokens=3, image_token_id=63)
    out = model(ids, feats, att)
    assert out["lm_logits"].shape == (4, 8, 64) and out["visual_logits"].shape == (4, 8, 64)
    assert out["image_mask"][:, 2:5].all() and not out["image_mask"][:, [0, 1, 5, 6, 7]].any()
    torch.testing.assert_close(out["loss"], out["text_loss"] + out["visual_loss"])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(out["loss"].detach())
    for _ in range(30):
        opt.zero_grad()
        loss = model(ids, feats, att)["loss"]
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.7 * first
    probs = model.image_word_distribution(feats)
    assert probs.shape == (4, 64) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_stop_gradient_through_the_model() -> None:
    lm = _tiny_lm("gpt2")
    ids, att = build_llava_batch([[1]] * 2, [[2, 3]] * 2, n_image_tokens=2, image_token_id=63)
    feats = torch.randn(2, 2, 12)
    for stop in ("visual", "lm"):
        model = visual_words_lm(lm, 12, 63, projector="linear", stop_gradient=stop)  # type: ignore[arg-type]
        model.zero_grad()
        model(ids, feats, att)["visual_loss"].backward()
        head = model.vm_head.weight.grad
        lm_grad = sum(float(p.grad.abs().sum()) for p in lm.transformer.h.parameters() if p.grad is not None)
        if stop == "visual":  # the visual words are a fixed target: only the LM (and the projector feeding it) learn
            assert head is None or float(head.abs().sum()) == 0
            assert lm_grad > 0
        else:  # the LM is the teacher: its transformer blocks get nothing, the head does
            assert head is not None and float(head.abs().sum()) > 0
            assert lm_grad == 0


def test_tokenizer_larger_than_the_lm_is_an_error() -> None:
    with pytest.raises(
        DataError, match="vocabulary mismatch: the tokenizer has 100 tokens but the LM predicts only 64"
    ):
        visual_words_lm(_tiny_lm("gpt2"), 12, 63, vocab_size=100)
    with pytest.raises(ConfigError, match="projector"):
        visual_words_lm(_tiny_lm("gpt2"), 12, 63, projector="qformer")
