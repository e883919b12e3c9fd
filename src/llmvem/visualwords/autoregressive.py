"""Visual words as in VW-LMM: a causal language model's next-token distribution at the image positions of a
LLaVA-style sequence, against each next visual embedding's visual words.

A LLaVA sequence is a token sequence in which ``K`` placeholder tokens (``image_token_id``) stand for the image;
:func:`splice_image_embeddings` replaces them by the K projected image embeddings (B, K, H) inside the LM's input
embeddings. The LM's output at position t predicts the token at t + 1; where that token is visual, VW-LMM asks the
prediction to match the *visual words* of the next visual embedding, softmax(vm_head(v_{t+1})):

    L_visual = mean over {t : position t + 1 is an image position} of KL(softmax(vm_head(v_{t+1})) ‖ p_LM(· | ≤ t))

(shifted by one, masked to image positions; the last text token before the image predicts the first visual word).
``stop_gradient`` picks which side is a fixed target: ``"visual"`` detaches the visual words (VW-LMM's supervision
of the LM: only the LM learns from this term), ``"lm"`` detaches the LM's prediction (the LM teaches the vision side
its visual words: only the projector and the head learn), ``"none"`` lets both learn. The text term is the usual
next-token cross-entropy where the next token is text.

:func:`visual_words_lm` wires a projector (image features → LM width), any Hugging Face causal LM (GPT-2, Llama, ...)
and the vocabulary head (LM width → the LM's vocabulary, initialised from its token embeddings).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from llmvem.errors import ConfigError, DataError

StopGradient = Literal["visual", "lm", "none"]
STOP_GRADIENTS = ("visual", "lm", "none")


def build_llava_batch(
    prefixes: Sequence[Sequence[int]],
    suffixes: Sequence[Sequence[int]],
    n_image_tokens: int,
    image_token_id: int,
    pad_token_id: int = 0,
) -> tuple[Any, Any]:
    """Token ids ``prefix + [image] * K + suffix`` per row, right-padded.

    Returns:
        input_ids (B, T) long and attention_mask (B, T) long (0 on padding).
    """
    import torch

    if len(prefixes) != len(suffixes):
        raise DataError(f"LLaVA batch: {len(prefixes)} prefixes but {len(suffixes)} suffixes")
    rows = [list(p) + [image_token_id] * n_image_tokens + list(s) for p, s in zip(prefixes, suffixes, strict=True)]
    t = max(len(r) for r in rows)
    ids = torch.full((len(rows), t), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), t), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def splice_image_embeddings(
    input_ids: Any, image_embeds: Any, token_embedding: Any, image_token_id: int
) -> tuple[Any, Any]:
    """Replace the image placeholders of ``input_ids`` by image embeddings, LLaVA-style.

    Args:
        input_ids: (B, T) long; each row holds exactly K tokens equal to ``image_token_id``.
        image_embeds: (B, K, H) embeddings already in the LM's input space (projected).
        token_embedding: the LM's input embedding module (ids → (B, T, H)).
        image_token_id: the placeholder id (need not be inside the embedding table).
    Returns:
        inputs_embeds (B, T, H) and image_mask (B, T) bool (True at image positions).
    Raises:
        DataError: a row has a number of placeholders other than K, or batch sizes / widths differ.
    """
    mask = input_ids == image_token_id
    b, k, h = image_embeds.shape
    if input_ids.shape[0] != b:
        raise DataError(f"splice: {input_ids.shape[0]} token rows but {b} images")
    counts = mask.sum(1)
    bad = (counts != k).nonzero().flatten().tolist()
    if bad:
        raise DataError(
            f"splice: row(s) {bad[:10]} hold {counts[bad[0]].item()} image placeholder token(s) "
            f"(id {image_token_id}) but each image has {k} embeddings"
        )
    embeds = token_embedding(input_ids.masked_fill(mask, 0))
    if embeds.shape[-1] != h:
        raise DataError(f"splice: image embeddings are {h}-d but the LM's token embeddings are {embeds.shape[-1]}-d")
    embeds = embeds.clone()
    embeds[mask] = image_embeds.reshape(b * k, h).to(embeds.dtype)  # row-major: row i's K positions in order
    return embeds, mask


def visual_words_kl(lm_logits: Any, visual_logits: Any, image_mask: Any, stop_gradient: StopGradient = "visual") -> Any:
    """VW-LMM's visual term: mean KL(softmax(visual_logits[t+1]) ‖ softmax(lm_logits[t])) over t where t + 1 is an
    image position.

    Args:
        lm_logits: (B, T, V) the LM's next-token logits.
        visual_logits: (B, T, V) vm_head of the input embedding at each position (only image positions are used).
        image_mask: (B, T) bool, True at image positions.
        stop_gradient: ``"visual"`` (target = visual words, detached), ``"lm"`` (LM prediction detached) or
            ``"none"``.
    Returns:
        scalar (0 when no position qualifies).
    """
    import torch.nn.functional as F

    if stop_gradient not in STOP_GRADIENTS:
        raise ConfigError(f"unknown stop_gradient {stop_gradient!r}; choose one of {', '.join(STOP_GRADIENTS)}")
    if lm_logits.shape[-1] != visual_logits.shape[-1]:
        raise DataError(
            f"vocabulary mismatch: the LM predicts {lm_logits.shape[-1]} tokens but the vocabulary head gives "
            f"{visual_logits.shape[-1]}; both must be over the same vocabulary"
        )
    if lm_logits.shape[:2] != visual_logits.shape[:2] or tuple(image_mask.shape) != tuple(lm_logits.shape[:2]):
        raise DataError(
            f"visual-word KL: shapes differ (lm {tuple(lm_logits.shape)}, visual {tuple(visual_logits.shape)}, "
            f"mask {tuple(image_mask.shape)})"
        )
    pred = F.log_softmax(lm_logits[:, :-1].float(), dim=-1)
    target = F.log_softmax(visual_logits[:, 1:].float(), dim=-1)
    keep = image_mask[:, 1:].bool()
    if not bool(keep.any()):
        return (lm_logits.sum() + visual_logits.sum()) * 0.0
    pred, target = pred[keep], target[keep]  # (n, V)
    if stop_gradient == "visual":
        target = target.detach()
    elif stop_gradient == "lm":
        pred = pred.detach()
    return (target.exp() * (target - pred)).sum(-1).mean()


def text_next_token_loss(lm_logits: Any, input_ids: Any, image_mask: Any, attention_mask: Any | None = None) -> Any:
    """Next-token cross-entropy at positions whose next token is text (not an image position, not padding).

    Args:
        lm_logits: (B, T, V); input_ids, image_mask, attention_mask: (B, T).
    Returns:
        scalar (0 when no position qualifies).
    """
    import torch.nn.functional as F

    keep = ~image_mask[:, 1:].bool()
    if attention_mask is not None:
        keep = keep & attention_mask[:, 1:].bool()
    if not bool(keep.any()):
        return lm_logits.sum() * 0.0
    return F.cross_entropy(lm_logits[:, :-1][keep].float(), input_ids[:, 1:][keep])


def visual_words_lm(
    lm: Any,
    image_dim: int,
    image_token_id: int,
    projector: str = "mlp",
    head_init: str = "embeddings",
    stop_gradient: StopGradient = "visual",
    kl_weight: float = 1.0,
    vocab_size: int | None = None,
) -> Any:
    """A ``torch.nn.Module``: projector + causal LM + vocabulary head, trained with ``text CE + kl_weight · KL``.

    Args:
        lm: a Hugging Face causal LM (``GPT2LMHeadModel``, ``LlamaForCausalLM`` ...; ``inputs_embeds`` input).
        image_dim: D, width of the image features (B, K, D).
        image_token_id: placeholder id marking image positions in ``input_ids``.
        projector: ``"linear"`` or ``"mlp"`` (LLaVA-1.5's Linear–GELU–Linear) from D to the LM width H.
        head_init: vocabulary head init, ``"embeddings"`` (the LM's token embeddings) or ``"random"``.
        stop_gradient, kl_weight: see :func:`visual_words_kl`.
        vocab_size: optional tokenizer size; an error if it exceeds the LM's vocabulary (tokenizer/LM mismatch).
    Returns:
        the module; ``forward(input_ids (B, T), image_features (B, K, D), attention_mask=None)`` returns ``loss``,
        ``text_loss``, ``visual_loss`` (scalars), ``lm_logits`` and ``visual_logits`` (B, T, V) and ``image_mask``
        (B, T); ``visual_word_probs(image_features)`` gives (B, K, V) visual-word distributions.
    Raises:
        DataError: the tokenizer has more tokens than the LM predicts, or the LM's input and output vocabularies
            differ.
    """
    import torch
    from torch import nn

    from llmvem.visualwords.head import vocab_head

    if stop_gradient not in STOP_GRADIENTS:
        raise ConfigError(f"unknown stop_gradient {stop_gradient!r}; choose one of {', '.join(STOP_GRADIENTS)}")
    emb = lm.get_input_embeddings()
    width = int(emb.weight.shape[1])
    n_lm = int(lm.get_output_embeddings().weight.shape[0])
    if vocab_size is not None and vocab_size > n_lm:
        raise DataError(f"vocabulary mismatch: the tokenizer has {vocab_size} tokens but the LM predicts only {n_lm}")
    if emb.weight.shape[0] != n_lm:
        raise DataError(f"the LM's input ({emb.weight.shape[0]}) and output ({n_lm}) vocabularies differ")
    if projector not in ("linear", "mlp"):
        raise ConfigError(f"unknown projector {projector!r}; choose linear or mlp")
    table = emb.weight.detach().float().cpu().numpy() if head_init == "embeddings" else None

    class VisualWordsLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = lm
            self.projector = (
                nn.Linear(image_dim, width)
                if projector == "linear"
                else nn.Sequential(nn.Linear(image_dim, width), nn.GELU(), nn.Linear(width, width))
            )
            self.vm_head = vocab_head(width, n_lm, head_init, embeddings=table)  # type: ignore[arg-type]

        def forward(self, input_ids: Any, image_features: Any, attention_mask: Any | None = None) -> dict[str, Any]:
            img = self.projector(image_features)
            embeds, mask = splice_image_embeddings(input_ids, img, self.lm.get_input_embeddings(), image_token_id)
            out = self.lm(inputs_embeds=embeds, attention_mask=attention_mask)
            visual_logits = self.vm_head(embeds)
            kl = visual_words_kl(out.logits, visual_logits, mask, stop_gradient)
            ce = text_next_token_loss(out.logits, input_ids, mask, attention_mask)
            return {"loss": ce + kl_weight * kl, "text_loss": ce, "visual_loss": kl, "lm_logits": out.logits,
                    "visual_logits": visual_logits, "image_mask": mask}  # fmt: skip

        def visual_word_probs(self, image_features: Any) -> Any:
            return self.vm_head(self.projector(image_features)).softmax(-1)

        def image_word_distribution(self, image_features: Any) -> np.ndarray:
            """One distribution per image (B, V) float32: the mean of its K tokens' visual words."""
            with torch.no_grad():
                return self.visual_word_probs(image_features).mean(1).float().cpu().numpy()

    return VisualWordsLM()
