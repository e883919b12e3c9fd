"""Embed stage: text encoders (registry) and cached text embeddings with long-text chunking.

>>> from llmvem.text import embed_texts  # doctest: +SKIP
>>> emb = embed_texts(["a red apple", "a banana"], encoder="minilm")  # (2, 384) float32, unit rows  # doctest: +SKIP
"""

from llmvem.text.embed import EMBEDDINGS_KIND, check_texts, embed_descriptions, embed_texts
from llmvem.text.encoders import (
    POLICIES,
    TEXT_ENCODERS,
    EmbedStats,
    Policy,
    TextEncoder,
    load_text_encoder,
    sentence_spans,
    sentence_transformer_encoder,
)

__all__ = [
    "EMBEDDINGS_KIND",
    "POLICIES",
    "TEXT_ENCODERS",
    "EmbedStats",
    "Policy",
    "TextEncoder",
    "check_texts",
    "embed_descriptions",
    "embed_texts",
    "load_text_encoder",
    "sentence_spans",
    "sentence_transformer_encoder",
]
