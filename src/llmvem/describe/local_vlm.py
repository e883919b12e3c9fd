"""The ``transformers`` backend: a local Hugging Face vision-language model, batched generation.

Any model that ``AutoModelForImageTextToText`` loads: chat models (Qwen2/2.5-VL, Gemma 3, SmolVLM/Idefics3, LLaVA
and its successors; the prompt goes through the processor's chat template) and captioners without a chat template
(BLIP, BLIP-2, GIT: the prompt, if not empty, is the text the caption continues, e.g. ``"a picture of"``; pass
``prompt=""`` for an unconditional caption). The model is a hub id (read from the local Hugging Face cache when
``HF_HUB_OFFLINE=1``) or a local folder written by ``save_pretrained``.

Identity: the SHA-256 of every weights file (free for hub snapshots, whose blobs are named by it; memoised for
local folders), the dtype and the image preprocessing. Greedy decoding (temperature 0) is deterministic; sampled
outputs are seeded per batch (``seed`` + the batch's first sample index), so they reproduce for the same batching.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmvem.describe.base import DESCRIBERS, DescribeFailure, Generation, ImageRequest
from llmvem.describe.images import DEFAULT_MAX_SIDE, PreparedImage, prepare_image
from llmvem.errors import BackendError, ConfigError

DTYPES = ("auto", "float32", "bfloat16", "float16")
_WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class TransformersDescriber:
    """Describes images with a local vision-language model.

    Args:
        model: hub id (``"HuggingFaceTB/SmolVLM-256M-Instruct"``) or a local ``save_pretrained`` folder.
        device: torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
        dtype: ``"auto"`` (the checkpoint's; float32 on CPU), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        batch_size: images per ``generate`` call.
        max_side: images are downscaled to this longer side first (the processor resizes further).
        revision: hub revision (branch, tag or commit).
        trust_remote_code: allow model code shipped with the checkpoint.
    """

    backend = "transformers"

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        dtype: str = "auto",
        batch_size: int = 4,
        max_side: int | None = DEFAULT_MAX_SIDE,
        revision: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if dtype not in DTYPES:
            raise ConfigError(f"describe.dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if batch_size < 1:
            raise ConfigError(f"describe.batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.device = device
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.max_side = max_side
        self.revision = revision
        self.trust_remote_code = trust_remote_code
        self._path = self._resolve(model, revision)
        self._net: Any = None
        self._processor: Any = None
        self._lock = threading.Lock()
        self._generate_lock = threading.Lock()

    # ------------------------------------------------------------------ identity
    @staticmethod
    def _resolve(model: str, revision: str | None) -> Path:
        p = Path(model).expanduser()
        if p.is_dir():
            return p
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(model, revision=revision, local_files_only=True))
        except Exception:
            pass
        import os

        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
            raise BackendError(
                f"model {model!r} is neither a local folder nor in the Hugging Face cache, and HF_HUB_OFFLINE is "
                "set; download it first (huggingface-cli download) or pass a folder"
            )
        try:
            from huggingface_hub import snapshot_download

            return Path(
                snapshot_download(
                    model,
                    revision=revision,
                    allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"],
                )
            )
        except Exception as exc:
            raise BackendError(f"cannot fetch model {model!r}: {exc}") from None

    def identity(self) -> dict[str, Any]:
        from llmvem.store import weights_sha256

        weights: dict[str, str] = {}
        for pattern in _WEIGHT_FILES:
            for f in sorted(self._path.glob(pattern)):
                target = f.resolve()
                weights[f.name] = target.name if f.is_symlink() and _HEX64.fullmatch(target.name) else weights_sha256(f)
        if not weights:
            raise BackendError(f"no weights files ({', '.join(_WEIGHT_FILES)}) in {self._path}")
        return {
            "backend": self.backend,
            "model": self.model,
            "weights_sha256": weights,
            "dtype": self.dtype,
            "max_side": self.max_side,
        }

    # ------------------------------------------------------------------ model
    def load(self) -> tuple[Any, Any]:
        """(model, processor), loaded on first use."""
        with self._lock:
            if self._net is None:
                import torch
                from transformers import AutoModelForImageTextToText, AutoProcessor

                kw: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
                try:
                    processor = AutoProcessor.from_pretrained(self._path, **kw)
                    dtype: Any = "auto" if self.dtype == "auto" else getattr(torch, self.dtype)
                    net = AutoModelForImageTextToText.from_pretrained(self._path, dtype=dtype, **kw)
                except (OSError, ValueError, KeyError) as exc:
                    raise BackendError(
                        f"cannot load {self.model!r} as an image-text-to-text model with its processor: {exc}"
                    ) from None
                if self.dtype == "auto" and str(self.device).startswith("cpu") and net.dtype != torch.float32:
                    net = net.float()  # half precision on CPU is slow and lossy
                try:
                    net = net.to(self.device).eval()  # type: ignore[arg-type]
                except (RuntimeError, AssertionError) as exc:
                    raise BackendError(f"cannot move the model to device {self.device!r}: {exc}") from None
                tok = getattr(processor, "tokenizer", None)
                if tok is not None and not getattr(net.config, "is_encoder_decoder", False):
                    tok.padding_side = "left"  # decoder-only batched generation
                    if tok.pad_token is None and tok.eos_token is not None:
                        tok.pad_token = tok.eos_token
                self._net, self._processor = net, processor
            return self._net, self._processor

    def describe(self, image: ImageRequest, prompt: str, params: Mapping[str, Any], sample: int) -> Generation:
        res = self.describe_batch([(image, prompt, sample)], params)[0]
        if isinstance(res, BaseException):
            raise res
        return res

    def describe_batch(
        self, items: Sequence[tuple[ImageRequest, str, int]], params: Mapping[str, Any]
    ) -> list[Generation | BaseException]:
        """Describe ``items`` (image, prompt, sample) in one ``generate`` call; unreadable images fail alone."""
        out: list[Generation | BaseException] = [DescribeFailure("not run")] * len(items)
        good: list[tuple[int, PreparedImage, str, int]] = []
        for i, (img, prompt, sample) in enumerate(items):
            try:
                good.append((i, prepare_image(img.path, self.max_side), prompt, sample))
            except DescribeFailure as exc:
                out[i] = exc
        if good:
            net, processor = self.load()
            with self._generate_lock:
                texts = self._generate(net, processor, good, params)
            for (i, prep, _, _), gen in zip(good, texts, strict=True):
                gen.image_notes = prep.notes
                out[i] = gen
        return out

    def _generate(
        self, net: Any, processor: Any, good: list[tuple[int, PreparedImage, str, int]], params: Mapping[str, Any]
    ) -> list[Generation]:
        import torch

        images = [g[1].image for g in good]
        prompts = [g[2] for g in good]
        chat = getattr(processor, "chat_template", None)
        if chat:
            texts: list[str] | None = [
                processor.apply_chat_template(
                    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
                    add_generation_prompt=True,
                    tokenize=False,
                )
                for p in prompts
            ]
        else:
            texts = prompts if any(prompts) else None
        try:
            inputs = processor(images=images, text=texts, return_tensors="pt", padding=True)
        except (ValueError, TypeError):
            inputs = processor(images=[[im] for im in images], text=texts, return_tensors="pt", padding=True)
        inputs = {
            k: (v.to(net.device, dtype=net.dtype) if torch.is_floating_point(v) else v.to(net.device))
            for k, v in inputs.items()
            if hasattr(v, "to")
        }
        temperature = float(params.get("temperature") or 0.0)
        gen_kw: dict[str, Any] = {"max_new_tokens": int(params.get("max_tokens") or 256)}
        if temperature > 0:
            gen_kw.update(do_sample=True, temperature=temperature)
            if params.get("top_p") is not None:
                gen_kw["top_p"] = float(params["top_p"])
        else:
            gen_kw["do_sample"] = False
        seed = params.get("seed")
        if seed is not None:
            torch.manual_seed(int(seed) + good[0][3])
        with torch.inference_mode():
            out = net.generate(**inputs, **gen_kw)
        ids = inputs.get("input_ids")
        n_in = 0 if ids is None else ids.shape[1]
        if ids is not None and out.shape[1] > n_in and torch.equal(out[:, :n_in].cpu(), ids.cpu()):
            new = out[:, n_in:]
        else:
            new = out
        decoded = processor.batch_decode(new, skip_special_tokens=True)
        tok = getattr(processor, "tokenizer", processor)
        stop = {t for t in (getattr(tok, "eos_token_id", None), getattr(tok, "pad_token_id", None)) if t is not None}
        mask = inputs.get("attention_mask")
        gens = []
        for r, text in enumerate(decoded):
            row = new[r].tolist()
            ended = next((j for j, t in enumerate(row) if t in stop), None)
            gens.append(
                Generation(
                    text=text.strip(),
                    prompt_tokens=int(mask[r].sum()) if mask is not None else None,
                    completion_tokens=ended if ended is not None else len(row),
                    finish_reason="stop" if ended is not None else "length",
                    info={"batch_size": len(good), **({"seed": int(seed) + good[0][3]} if seed is not None else {})},
                )
            )
        return gens


@DESCRIBERS.register("transformers")
def _make_transformers(model: str, **kwargs: Any) -> TransformersDescriber:
    return TransformersDescriber(model, **kwargs)
