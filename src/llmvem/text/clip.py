"""CLIP text encoders: the text tower of a Hugging Face CLIP model or of an open_clip model.

- ``"clip:<hub id or local path>"``: a Hugging Face ``CLIPModel`` (config ``model_type`` ``"clip"``; the projected
  ``get_text_features``) or ``CLIPTextModelWithProjection`` (``"clip_text_model"``; ``text_embeds``), with the
  tokenizer saved beside it. ``"clip"`` is ``clip:openai/clip-vit-base-patch32`` from the local cache.
- ``"open_clip:<ref>"``: ``ref`` is a local directory holding ``open_clip_config.json`` and the weights (the layout of
  ``open_clip``'s ``local-dir:`` and ``hf-hub:`` models), ``hf-hub:<org/repo>`` (or ``<org/repo>``) in the local
  Hugging Face cache, or ``<ARCH>:<TAG>`` for a pretrained tag of ``open_clip.list_pretrained()`` whose weights are
  in the local Hugging Face cache.

Both have a 77-token window (BOS + 75 content tokens + EOS for the OpenAI vocabulary); long descriptions are chunked
at sentence boundaries by :class:`~llmvem.text.encoders.TextEncoder` unless the policy is ``"truncate"``. The
embeddings are the projected text features (the space shared with the image tower), float32, not normalised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from llmvem.devices import check_device
from llmvem.errors import BackendError
from llmvem.store import weights_sha256
from llmvem.text.encoders import (
    _PREFIXES,
    TEXT_ENCODERS,
    HFTokenizerMixin,
    TextEncoder,
    model_file_hashes,
    resolve_model_dir,
)

CLIP_PREFIX = "clip:"
OPEN_CLIP_PREFIX = "open_clip:"
_HF_TYPES = {"clip": "CLIPModel", "clip_text_model": "CLIPTextModelWithProjection"}


# --------------------------------------------------------------------------- Hugging Face CLIP
class HFClipTextEncoder(HFTokenizerMixin, TextEncoder):
    """The text tower of a Hugging Face CLIP model: texts → (n, projection_dim) float32.

    Args:
        name: registry name (``"clip:<ref>"``).
        model_dir: directory with ``config.json``, the weights and the tokenizer files.
        identity: name, source, file hashes, window (JSON-able).
        max_tokens: the window (``max_position_embeddings`` of the text config, 77 for OpenAI CLIP).
        model_type: ``"clip"`` or ``"clip_text_model"``.
        dim: the projection dimension.
    """

    def __init__(
        self,
        name: str,
        model_dir: Path,
        identity: dict[str, Any],
        max_tokens: int,
        model_type: str,
        dim: int,
        device: str = "cpu",
    ):
        super().__init__(name, identity, max_tokens, device)
        self.model_dir = model_dir
        self.model_type = model_type
        self._dim = dim
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            try:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
            except Exception as exc:
                raise BackendError(f"cannot load the tokenizer of {self.name!r} from {self.model_dir}: {exc}") from exc
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The loaded ``CLIPModel`` / ``CLIPTextModelWithProjection`` (eval mode, on ``device``)."""
        if self._model is None:
            check_device(self.device)
            try:
                import transformers
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                cls = getattr(transformers, _HF_TYPES[self.model_type])
                self._model = cls.from_pretrained(str(self.model_dir), local_files_only=True).eval().to(self.device)
            except Exception as exc:
                raise BackendError(f"cannot load text encoder {self.name!r} from {self.model_dir}: {exc}") from exc
        return self._model

    def load(self) -> None:
        self.model  # noqa: B018
        self.tokenizer  # noqa: B018

    def token_embedding(self) -> Any:
        """The token-embedding layer (``nn.Embedding``) that every input id passes through."""
        text_model = getattr(self.model, "text_model", self.model)
        return text_model.embeddings.token_embedding

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt", verbose=False
        )
        batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            if self.model_type == "clip":
                out = self.model.get_text_features(**batch)
                feats = out if isinstance(out, torch.Tensor) else out.pooler_output
            else:
                feats = self.model(**batch).text_embeds
        return feats.float().cpu().numpy()


def clip_text_encoder(ref: str, device: str = "cpu") -> HFClipTextEncoder:
    """The text tower of a Hugging Face CLIP model in a local directory or the local HF cache (``ref``)."""
    name = f"{CLIP_PREFIX}{ref}"
    model_dir, source = resolve_model_dir(ref, name, default_org="openai")
    cfg_path = model_dir / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackendError(f"text encoder {name!r}: cannot read {cfg_path} ({exc})") from exc
    model_type = cfg.get("model_type")
    if model_type not in _HF_TYPES:
        raise BackendError(
            f"text encoder {name!r}: {model_dir} holds a {model_type!r} model; expected a CLIP model "
            f"(model_type {' or '.join(map(repr, _HF_TYPES))})"
        )
    text_cfg = cfg.get("text_config", {}) if model_type == "clip" else cfg
    max_tokens = int(text_cfg.get("max_position_embeddings", 77))
    dim = int(cfg.get("projection_dim", text_cfg.get("projection_dim", 512)))
    identity = {
        "name": name,
        "kind": _HF_TYPES[model_type],
        **source,
        "files": model_file_hashes(model_dir),
        "max_tokens": max_tokens,
    }
    return HFClipTextEncoder(name, model_dir, identity, max_tokens, model_type, dim, device)


@TEXT_ENCODERS.register("clip")
def clip_vit_b32(device: str = "cpu") -> TextEncoder:
    """OpenAI CLIP ViT-B/32 text tower (512-d, 77 tokens) from the local Hugging Face cache."""
    return clip_text_encoder("openai/clip-vit-base-patch32", device=device)


# --------------------------------------------------------------------------- open_clip
class OpenClipTextEncoder(TextEncoder):
    """The text tower of an open_clip model (``model.encode_text``): texts → (n, embed_dim) float32.

    Args:
        name: registry name (``"open_clip:<ref>"``).
        create: how to build the model and tokenizer: ``{"model_name": ..., "pretrained": ...}`` for
            ``open_clip.create_model`` and ``{"tokenizer": ...}`` for ``open_clip.get_tokenizer``.
        identity: name, source, file hashes, window (JSON-able).
        max_tokens: the context length (77 for CLIP models).
        dim: the embedding dimension.
    """

    def __init__(
        self,
        name: str,
        create: dict[str, Any],
        identity: dict[str, Any],
        max_tokens: int,
        dim: int,
        device: str = "cpu",
    ):
        super().__init__(name, identity, max_tokens, device)
        self.create = create
        self._dim = dim
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def tokenizer(self) -> Any:
        """The open_clip tokenizer (``SimpleTokenizer`` for CLIP models; ``HFTokenizer`` for others)."""
        if self._tokenizer is None:
            open_clip = _import_open_clip()
            try:
                self._tokenizer = open_clip.get_tokenizer(self.create["tokenizer"])
            except Exception as exc:
                raise BackendError(f"cannot build the tokenizer of {self.name!r}: {exc}") from exc
        return self._tokenizer

    @property
    def model(self) -> Any:
        if self._model is None:
            check_device(self.device)
            open_clip = _import_open_clip()
            try:
                model = open_clip.create_model(
                    self.create["model_name"], pretrained=self.create.get("pretrained"), device=self.device
                )
            except Exception as exc:
                raise BackendError(f"cannot load text encoder {self.name!r}: {exc}") from exc
            self._model = model.eval()
        return self._model

    def load(self) -> None:
        self.model  # noqa: B018
        self.tokenizer  # noqa: B018

    def token_embedding(self) -> Any:
        """The token-embedding layer every input id passes through."""
        return self.model.token_embedding

    def _hf(self) -> Any | None:
        tok = self.tokenizer
        return getattr(tok, "tokenizer", None) if not hasattr(tok, "encoder") else None

    def count_tokens(self, texts: list[str] | Any) -> list[int]:
        hf = self._hf()
        if hf is not None:
            enc = hf(list(texts), add_special_tokens=False, truncation=False, verbose=False)
            return [len(ids) for ids in enc["input_ids"]]
        return [len(self.tokenizer.encode(t)) for t in texts]

    def _n_special(self) -> int:
        hf = self._hf()
        return 2 if hf is None else int(hf.num_special_tokens_to_add(pair=False))

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(texts).to(self.device)
        with torch.inference_mode():
            feats = self.model.encode_text(tokens)
        return feats.float().cpu().numpy()


def _import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise BackendError("open_clip text encoders need open_clip (pip install open_clip_torch)") from exc
    return open_clip


def open_clip_text_encoder(ref: str, device: str = "cpu") -> OpenClipTextEncoder:
    """An open_clip text tower from a local directory, a cached ``hf-hub:`` repo, or ``ARCH:TAG`` (cached weights)."""
    name = f"{OPEN_CLIP_PREFIX}{ref}"
    if ref.startswith("local-dir:"):
        ref = ref[len("local-dir:") :]
    hub = ref.startswith("hf-hub:")
    if hub:
        ref = ref[len("hf-hub:") :]
    path = Path(ref).expanduser()
    if not hub and not path.is_dir() and ":" in ref:
        return _open_clip_pretrained(name, ref, device)
    model_dir, source = resolve_model_dir(ref, name)
    cfg_path = model_dir / "open_clip_config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        model_cfg = cfg["model_cfg"]
    except (OSError, ValueError, KeyError) as exc:
        raise BackendError(f"text encoder {name!r}: {model_dir} has no readable open_clip_config.json ({exc})") from exc
    text_cfg = model_cfg.get("text_cfg", {})
    max_tokens = int(text_cfg.get("context_length", 77))
    identity = {"name": name, **source, "files": model_file_hashes(model_dir), "max_tokens": max_tokens}
    spec = f"local-dir:{model_dir}"
    return OpenClipTextEncoder(
        name, {"model_name": spec, "tokenizer": spec}, identity, max_tokens, int(model_cfg["embed_dim"]), device
    )


def _open_clip_pretrained(name: str, ref: str, device: str) -> OpenClipTextEncoder:
    """``ARCH:TAG`` with the weights file in the local Hugging Face cache (never downloaded)."""
    open_clip = _import_open_clip()
    arch, _, tag = ref.partition(":")
    model_cfg = open_clip.get_model_config(arch)
    pre = open_clip.get_pretrained_cfg(arch, tag)
    if model_cfg is None or not pre:
        raise BackendError(
            f"text encoder {name!r}: {arch!r}/{tag!r} is not an open_clip architecture and pretrained tag; "
            "see open_clip.list_pretrained()"
        )
    weights: Path | None = None
    hub_id = str(pre.get("hf_hub", "")).rstrip("/")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            hit = try_to_load_from_cache(hub_id, fname)
            if isinstance(hit, str):
                weights = Path(hit)
                break
    if weights is None:
        raise BackendError(
            f"text encoder {name!r}: the weights of {arch} {tag} ({hub_id or pre.get('url')}) are not in the local "
            "Hugging Face cache and nothing is downloaded here; download them where there is network access, or "
            "pass a local open_clip directory"
        )
    text_cfg = model_cfg.get("text_cfg", {})
    max_tokens = int(text_cfg.get("context_length", 77))
    identity = {
        "name": name,
        "model": arch,
        "pretrained": tag,
        "config": model_cfg,
        "files": {weights.name: weights_sha256(weights)},
        "max_tokens": max_tokens,
    }
    create = {"model_name": arch, "pretrained": str(weights), "tokenizer": arch}
    return OpenClipTextEncoder(name, create, identity, max_tokens, int(model_cfg["embed_dim"]), device)


_PREFIXES[CLIP_PREFIX] = clip_text_encoder
_PREFIXES[OPEN_CLIP_PREFIX] = open_clip_text_encoder
