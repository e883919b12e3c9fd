"""The ``transformers`` backend: a local Hugging Face vision-language model, batched generation.

Any model that ``AutoModelForImageTextToText`` loads: chat models (Qwen2/2.5-VL, Gemma 3, SmolVLM/Idefics3, LLaVA
and its successors; the prompt goes through the processor's chat template) and captioners without a chat template
(BLIP, BLIP-2, GIT: the prompt ``caption`` or ``""`` asks for an unconditional caption, any other text is the
start of the caption the model continues, e.g. ``"a picture of"``; instruction prompts are refused). The model is a
hub id (read from the local Hugging Face cache when ``HF_HUB_OFFLINE=1``) or a local folder written by
``save_pretrained``. The stored text is only what the model generated: the prompt (chat template, caption prefix,
BLIP-2 query tokens) is cut off by its length, which a logits processor reads at the first generation step.

Batching: chat models generate a whole batch at once, left-padded; captioners one call per distinct prompt (their
``generate`` rewrites the first prompt token and drops the last, so a padded prefix would break). Processors that
want one list of images per prompt (Idefics3/SmolVLM in older transformers) get them.

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
from llmvem.describe.prompts import PROMPTS, resolve_prompt
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
        image_splitting: for processors that tile large images (Idefics3/SmolVLM ``do_image_splitting``): ``False``
            sends one global image (several times fewer image tokens: faster), ``True`` tiles; ``None`` keeps the
            processor's default. Part of the identity when set.
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
        image_splitting: bool | None = None,
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
        self.image_splitting = image_splitting
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
        ident: dict[str, Any] = {
            "backend": self.backend,
            "model": self.model,
            "weights_sha256": weights,
            "dtype": self.dtype,
            "max_side": self.max_side,
        }
        if self.image_splitting is not None:  # only when set: jobs that never set it keep their keys
            ident["image_splitting"] = self.image_splitting
        return ident

    # ------------------------------------------------------------------ model
    def processor(self) -> Any:
        """The model's processor (``AutoProcessor``), loaded on first use; cheap next to the model."""
        with self._lock:
            if self._processor is None:
                from transformers import AutoProcessor

                try:
                    processor = AutoProcessor.from_pretrained(self._path, trust_remote_code=self.trust_remote_code)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise BackendError(f"cannot load the processor of {self.model!r}: {exc}") from None
                image_processor = getattr(processor, "image_processor", None)
                if self.image_splitting is not None and not hasattr(image_processor, "do_image_splitting"):
                    raise ConfigError(
                        f"image_splitting is set, but the image processor of {self.model!r} "
                        f"({type(image_processor).__name__}) does not split images; leave it unset"
                    )
                self._processor = processor
            return self._processor

    @property
    def is_captioner(self) -> bool:
        """``True`` for models without a chat template (BLIP, BLIP-2, GIT): the prompt is a caption prefix."""
        return not getattr(self.processor(), "chat_template", None)

    def resolve_prompt(self, prompt: str, label: str | None = None) -> tuple[str, str]:
        """(name, text) of ``prompt`` for this model.

        Chat models take any prompt (names of ``PROMPTS`` or free text). A captioner has no chat template and
        cannot follow an instruction: ``"caption"`` becomes the empty prompt (an unconditional caption), any other
        text is the start of the caption it continues (``"a picture of"``), and the other named prompts are refused.

        Raises:
            ConfigError: an instruction prompt (``detailed``, ``class_conditioned``) for a captioner.
        """
        if not self.is_captioner:
            return prompt, resolve_prompt(prompt, label)
        if prompt == "caption":
            return prompt, ""
        if prompt in PROMPTS:
            raise ConfigError(
                f"{self.model!r} has no chat template (a captioner such as BLIP): it cannot follow the instruction "
                f"prompt {prompt!r}; use --prompt caption (an unconditional caption) or the start of a caption "
                "for it to continue, e.g. --prompt 'a picture of'"
            )
        return prompt, resolve_prompt(prompt, label)

    def load(self) -> tuple[Any, Any]:
        """(model, processor), loaded on first use."""
        processor = self.processor()
        with self._lock:
            if self._net is None:
                import torch
                from transformers import AutoModelForImageTextToText

                try:
                    dtype: Any = "auto" if self.dtype == "auto" else getattr(torch, self.dtype)
                    net = AutoModelForImageTextToText.from_pretrained(
                        self._path, dtype=dtype, trust_remote_code=self.trust_remote_code
                    )
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
                self._net = net
            return self._net, processor

    def describe(self, image: ImageRequest, prompt: str, params: Mapping[str, Any], sample: int) -> Generation:
        res = self.describe_batch([(image, prompt, sample)], params)[0]
        if isinstance(res, BaseException):
            raise res
        return res

    def describe_batch(
        self, items: Sequence[tuple[ImageRequest, str, int]], params: Mapping[str, Any]
    ) -> list[Generation | BaseException]:
        """Describe ``items`` (image, prompt, sample); unreadable images fail alone.

        Chat models run one ``generate`` call per batch (prompts of different lengths are left-padded);
        captioners one per distinct prompt, since their prompt is a caption prefix that padding would break.
        """
        out: list[Generation | BaseException] = [DescribeFailure("not run")] * len(items)
        good: list[tuple[int, PreparedImage, str, int]] = []
        for i, (img, prompt, sample) in enumerate(items):
            try:
                good.append((i, prepare_image(img.path, self.max_side), prompt, sample))
            except DescribeFailure as exc:
                out[i] = exc
        if not good:
            return out
        net, processor = self.load()
        if self.is_captioner:
            groups: dict[str, list[tuple[int, PreparedImage, str, int]]] = {}
            for g in good:
                groups.setdefault(g[2], []).append(g)
            runs = list(groups.values())
        else:
            runs = [good]
        for run in runs:
            with self._generate_lock:
                texts = self._generate(net, processor, run, params)
            for (i, prep, _, _), gen in zip(run, texts, strict=True):
                gen.image_notes = prep.notes
                out[i] = gen
        return out

    def _inputs(self, net: Any, processor: Any, images: list[Any], prompts: list[str]) -> dict[str, Any]:
        """The processor's tensors for ``images`` and ``prompts``, on the model's device and dtype."""
        import torch

        kw: dict[str, Any] = {"return_tensors": "pt"}
        if self.image_splitting is not None:
            kw["do_image_splitting"] = self.image_splitting
        enc_dec = bool(getattr(net.config, "is_encoder_decoder", False))
        if self.is_captioner:
            # no text asks a decoder-only captioner for its own start ([DEC], <s>); an encoder-decoder one (BLIP-2
            # with T5) gets "" instead: its generate would look for a bos_token_id that T5 configs lack
            texts: list[str] | None = prompts if any(prompts) or enc_dec else None
        else:
            texts = [
                processor.apply_chat_template(
                    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
                    add_generation_prompt=True,
                    tokenize=False,
                )
                for p in prompts
            ]
        if texts is not None:
            kw["padding"] = True
            if not enc_dec:
                kw["padding_side"] = "left"
        try:
            inputs = processor(images=images, text=texts, **kw)
        except (ValueError, TypeError):  # processors that want one list of images per text (older Idefics3)
            inputs = processor(images=[[im] for im in images], text=texts, **kw)
        # floating inputs (pixels) take the dtype of the weights that read them: the input embeddings' dtype, not
        # ``net.dtype``, which may name a module kept in float32 (BLIP-2's Q-Former)
        try:
            dtype = net.get_input_embeddings().weight.dtype
        except (AttributeError, NotImplementedError):  # pragma: no cover - models without input embeddings
            dtype = net.dtype
        return {
            k: (v.to(net.device, dtype=dtype) if torch.is_floating_point(v) else v.to(net.device))
            for k, v in inputs.items()
            if hasattr(v, "to")
        }

    def _generate(
        self, net: Any, processor: Any, good: list[tuple[int, PreparedImage, str, int]], params: Mapping[str, Any]
    ) -> list[Generation]:
        import torch
        from transformers import LogitsProcessorList

        inputs = self._inputs(net, processor, [g[1].image for g in good], [g[2] for g in good])
        temperature = float(params.get("temperature") or 0.0)
        probe = _prompt_length_probe()
        gen_kw: dict[str, Any] = {
            "max_new_tokens": int(params.get("max_tokens") or 256),
            "logits_processor": LogitsProcessorList([probe]),
        }
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
        # generate returns the prompt the language model saw (chat template, BLIP's [DEC] prefix, BLIP-2's query
        # tokens, an encoder-decoder's start token) followed by the new tokens: the probe saw its length
        n_prompt = probe.length if probe.length is not None else 0
        new = out[:, n_prompt:]
        decoded = processor.batch_decode(new, skip_special_tokens=True)
        stop = _stop_ids(net, processor)
        mask = inputs.get("attention_mask")
        enc_dec = bool(getattr(net.config, "is_encoder_decoder", False))
        gens = []
        for r, text in enumerate(decoded):
            row = new[r].tolist()
            ended = next((j for j, t in enumerate(row) if t in stop), None)
            if mask is not None and (enc_dec or mask.shape[1] == n_prompt):
                prompt_tokens: int | None = int(mask[r].sum())
            elif not enc_dec and (mask is None or bool(mask.all())):
                prompt_tokens = n_prompt  # no padding: every prompt position is the row's own
            else:
                prompt_tokens = None
            gens.append(
                Generation(
                    text=text.strip(),
                    prompt_tokens=prompt_tokens,
                    completion_tokens=ended if ended is not None else len(row),
                    finish_reason="stop" if ended is not None else "length",
                    info={"batch_size": len(good), **({"seed": int(seed) + good[0][3]} if seed is not None else {})},
                )
            )
        return gens


def _prompt_length_probe() -> Any:
    """A logits processor that records the length of the sequence at the first step: the prompt's length."""
    from transformers import LogitsProcessor

    class PromptLength(LogitsProcessor):
        def __init__(self) -> None:
            self.length: int | None = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.length is None:
                self.length = int(input_ids.shape[1])
            return scores

    return PromptLength()


def _stop_ids(net: Any, processor: Any) -> set[int]:
    """Token ids that end a generated row: end-of-sequence and padding ids of the generation config and tokenizer."""
    tok = getattr(processor, "tokenizer", processor)
    gc = getattr(net, "generation_config", None)
    ids: set[int] = set()
    for v in (
        getattr(gc, "eos_token_id", None),
        getattr(gc, "pad_token_id", None),
        getattr(tok, "eos_token_id", None),
        getattr(tok, "pad_token_id", None),
    ):
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(int(x) for x in v)
    return ids


@DESCRIBERS.register("transformers")
def _make_transformers(model: str, **kwargs: Any) -> TransformersDescriber:
    return TransformersDescriber(model, **kwargs)
