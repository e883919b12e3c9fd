"""Hugging Face vision models: ``hf:<folder|org/repo[@rev]|hf-hub:…|local-dir:…>`` (CLIP, SigLIP, DINOv2, ViT).

The model type comes from the folder's ``config.json``: ``clip`` / ``clip_vision_model`` load as
``CLIPVisionModel`` (a whole ``CLIPModel`` checkpoint works too), ``siglip`` / ``siglip_vision_model`` as
``SiglipVisionModel``, ``dinov2`` as ``Dinov2Model``, ``vit`` as ``ViTModel`` (without its pooler). Folders load
from disk, hub ids from the local Hugging Face cache (nothing is downloaded). ``hf_clip:<…>`` is the earlier name of
the CLIP part of this family (CLIP models only; ``hf_clip`` alone is ``hf_clip:openai/clip-vit-base-patch32``).

Pooling: ``cls`` (default with a class token: CLIP's ``pooler_output``, the post-layernorm class token; the
normalised class token of DINOv2 and ViT), ``avg`` / ``max`` over the patch tokens of ``last_hidden_state`` (class
token excluded), or SigLIP's default, its attention-pooling head (``pooler_output``; SigLIP has no class token).
Preprocessing follows the model's ``preprocessor_config.json`` (else the type's defaults): RGB, the shorter side
resized and the centre cropped (CLIP, DINOv2) or resized to height × width (SigLIP, ViT), ``x / 255`` normalised by
its mean and std.

Blocks: the encoder layers (``encoder.layers.*`` of CLIP and SigLIP, ``encoder.layer.*`` of DINOv2, ``layers.*`` of
ViT); stem = the embeddings (+ CLIP's ``pre_layrnorm``); head = the final norm and pooling.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from llmvem.errors import BackendError, ConfigError
from llmvem.vision.backbone import Backbone
from llmvem.vision.families._base import FAMILIES, BackboneFamily, Blocks, module_names, sequential_blocks
from llmvem.vision.families.references import local_model_dir, model_files_sha256, parse_reference

if TYPE_CHECKING:
    import torch
    from PIL import Image

DEFAULT_HF_CLIP = "openai/clip-vit-base-patch32"
_OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_HALF = (0.5, 0.5, 0.5)
_PIL_RESAMPLE = {2: "PIL bilinear", 3: "PIL bicubic"}


@dataclass(frozen=True)
class _HFType:
    """What differs between the Hugging Face vision architectures of this family."""

    model_class: str
    config_class: str
    class_token: bool
    resize: str  # "shorter" (shorter side + centre crop) or "exact" (height x width) when no preprocessor config
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resample: int = 3
    load_kwargs: dict[str, Any] = field(default_factory=dict)


_CLIP = _HFType("CLIPVisionModel", "CLIPVisionConfig", True, "shorter", _OPENAI_CLIP_MEAN, _OPENAI_CLIP_STD)
_SIGLIP = _HFType("SiglipVisionModel", "SiglipVisionConfig", False, "exact", _HALF, _HALF)
_DINOV2 = _HFType("Dinov2Model", "Dinov2Config", True, "shorter", _IMAGENET_MEAN, _IMAGENET_STD)
_VIT = _HFType("ViTModel", "ViTConfig", True, "exact", _HALF, _HALF, 2, {"add_pooling_layer": False})
TYPES = {
    "clip": _CLIP,
    "clip_vision_model": _CLIP,
    "siglip": _SIGLIP,
    "siglip_vision_model": _SIGLIP,
    "dinov2": _DINOV2,
    "vit": _VIT,
}
_CLIP_TYPES = ("clip", "clip_vision_model")


def _side(value: Any, default: int) -> tuple[int, int]:
    """(height, width) of an image-processor size entry: an int, or a dict with shortest_edge / height+width."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"]), int(value["shortest_edge"])
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
    return default, default


def hf_preprocessing(model_dir: Path, image_size: int, spec: _HFType) -> dict[str, Any]:
    """The image-processor settings of ``model_dir`` (``preprocessor_config.json``, else the type's defaults)."""
    proc: dict[str, Any] = {}
    proc_path = model_dir / "preprocessor_config.json"
    if proc_path.is_file():
        try:
            proc = json.loads(proc_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise BackendError(f"cannot parse {proc_path}: {exc}") from exc
    size = proc.get("size")
    exact = (isinstance(size, dict) and "height" in size and not proc.get("do_center_crop", False)) or (
        size is None and spec.resize == "exact"
    )
    geometry: dict[str, Any]
    if exact and spec is not _CLIP:  # (CLIP keeps the settings of earlier versions: their cache keys stay valid)
        geometry = {"resize": list(_side(size, image_size))}
    else:
        geometry = {
            "resize_shorter_side": _side(size, image_size)[0],
            "crop": list(_side(proc.get("crop_size", size if spec is not _CLIP else None), image_size)),
        }
    return {
        "mode": "RGB",
        **geometry,
        "resample": _PIL_RESAMPLE.get(3 if spec is _CLIP else int(proc.get("resample", spec.resample)), "PIL bicubic"),
        "mean": [float(v) for v in proc.get("image_mean", spec.mean)],
        "std": [float(v) for v in proc.get("image_std", spec.std)],
        "scale": "x / 255, then (x - mean) / std",
    }


def hf_transform(prep: dict[str, Any]) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image → float32 (3, H, W) as ``prep`` (from :func:`hf_preprocessing`) says."""

    def preprocess(image: Image.Image) -> torch.Tensor:
        import numpy as np
        import torch
        from PIL import Image as PILImage

        resample = PILImage.Resampling.BILINEAR if prep["resample"] == "PIL bilinear" else PILImage.Resampling.BICUBIC
        image = image.convert("RGB")
        if "resize" in prep:
            h, w = prep["resize"]
            image = image.resize((w, h), resample)
        else:
            short = int(prep["resize_shorter_side"])
            w, h = image.size
            nw, nh = (short, max(1, round(short * h / w))) if w <= h else (max(1, round(short * w / h)), short)
            image = image.resize((nw, nh), resample)
            ch, cw = prep["crop"]
            left, top = round((nw - cw) / 2.0), round((nh - ch) / 2.0)
            image = image.crop((left, top, left + cw, top + ch))
        x = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(prep["mean"], dtype=torch.float32)[:, None, None]
        std = torch.tensor(prep["std"], dtype=torch.float32)[:, None, None]
        return (x - mean) / std

    return preprocess


def _forward(pooling: str, spec: _HFType) -> Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]:
    prefix = int(spec.class_token)

    def forward(module: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        out = module(pixel_values=batch)
        if pooling == "head" or (pooling == "cls" and spec is not _VIT):
            return out.pooler_output  # CLIP / DINOv2: the normalised class token; SigLIP: the attention head
        if pooling == "cls":
            return out.last_hidden_state[:, 0]
        tokens = out.last_hidden_state[:, prefix:]  # (B, patches, hidden)
        return tokens.mean(dim=1) if pooling == "avg" else tokens.amax(dim=1)

    return forward


def _build(model_dir: Path, name: str, spec: _HFType) -> torch.nn.Module:
    try:
        import transformers
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise BackendError("Hugging Face backbones need transformers (pip install transformers)") from exc
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a full CLIPModel checkpoint reports its text tower as unexpected keys
    hf_logging.disable_progress_bar()
    try:
        cls = getattr(transformers, spec.model_class)
        loaded: Any = cls.from_pretrained(
            str(model_dir), local_files_only=True, output_loading_info=True, **spec.load_kwargs
        )
        model, info = loaded
    except Exception as exc:
        raise BackendError(f"cannot load the {spec.model_class} of {name!r} from {model_dir}: {exc}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise BackendError(f"{name!r}: {model_dir} lacks vision-tower weights ({missing[:5]} ...); wrong model type?")
    return model


_POOLING_DESC = {
    "cls": "cls: pooler_output (post-layernorm class token)",
    "avg": "avg: mean of last_hidden_state over patch tokens (class token excluded)",
    "max": "max: maximum of last_hidden_state over patch tokens (class token excluded)",
    "head": "head: pooler_output (attention-pooling head)",
}


class HFVisionFamily(BackboneFamily):
    name = "hf"
    prefixes = ("hf:",)
    syntax = ("hf:<folder|org/repo|hf-hub:org/repo|local-dir:folder>",)
    keywords: frozenset[str] = frozenset()
    #: transformers 4.x names (CLIPVisionModel.vision_model.*)
    layer_aliases: ClassVar[dict[str, str]] = {"vision_model.": ""}
    splits = "CLIP, SigLIP, DINOv2 and ViT encoders"
    model_types: tuple[str, ...] = tuple(TYPES)

    def load(self, ref: str, *, device: str, pooling: str | None, **kwargs: Any) -> Backbone:
        """The vision model in ``ref``: pooled features (B, hidden_size) (see the module docstring)."""
        name = f"{self.prefixes[0]}{ref}"
        if not ref:
            raise BackendError(f"backbone {name!r}: give a hub id or a folder after {self.prefixes[0]!r}")
        model_dir, source = local_model_dir(parse_reference(ref, bare_hub_ids=True), name)
        model_type, spec = self._model_type(model_dir, name)
        pooling = pooling or ("cls" if spec.class_token else "head")
        if pooling == "cls" and not spec.class_token:
            raise BackendError(f"backbone {name!r}: a {model_type} model has no class token; use avg or max")
        config = _read_config(model_dir, spec)
        prep = hf_preprocessing(model_dir, int(config.image_size), spec)
        identity = {
            "name": name,
            **source,
            "architecture": spec.model_class,
            "weights": {"files": model_files_sha256(model_dir)},
            "preprocessing": prep,
            "pooling": _POOLING_DESC[pooling],
        }
        side = prep["resize"] if "resize" in prep else prep["crop"]
        return Backbone(
            name=name,
            feature_dim=int(config.hidden_size),
            identity=identity,
            preprocess=hf_transform(prep),
            forward=_forward(pooling, spec),
            build=lambda: _build(model_dir, name, spec),
            device=device,
            input_size=(3, *side),
            num_prefix_tokens=int(spec.class_token),
            layer_aliases=self.layer_aliases,
        )

    def _model_type(self, model_dir: Path, name: str) -> tuple[str, _HFType]:
        try:
            model_type = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError) as exc:
            raise BackendError(f"backbone {name!r}: cannot read {model_dir / 'config.json'} ({exc})") from exc
        if model_type not in self.model_types:
            raise BackendError(
                f"backbone {name!r}: {model_dir} holds a {model_type!r} model; expected a "
                f"{'CLIP' if self.model_types == _CLIP_TYPES else 'vision'} model "
                f"(model_type {' or '.join(map(repr, self.model_types))})"
            )
        return model_type, TYPES[model_type]

    def blocks(self, backbone: Backbone) -> Blocks:
        """(stem, encoder layers, norm + pooling head) of the loaded vision model."""
        from torch import nn

        from llmvem.vision._split_modules import ClipHead, ClipLayer, NormPoolHead

        net: Any = backbone.module
        root: Any = getattr(net, "vision_model", net)  # transformers 4.x nests the tower
        path, layers = _layer_list(root, backbone.name)
        pooling = backbone.pooling.partition(":")[0]
        kind = type(net).__name__
        if kind == "CLIPVisionModel":
            stem: nn.Module = nn.Sequential(root.embeddings, root.pre_layrnorm)
            head: nn.Module = ClipHead(root.post_layernorm, pooling)
        elif kind == "SiglipVisionModel":
            stem, head = root.embeddings, NormPoolHead(root.post_layernorm, pooling, 0, getattr(root, "head", None))
        else:  # DINOv2, ViT
            stem, head = root.embeddings, NormPoolHead(root.layernorm, pooling, 1)
        units = [ClipLayer(layer) for layer in layers]
        names = module_names(net, layers)
        return sequential_blocks(stem, units, head, f"the encoder layers {path}.*", names)


def _read_config(model_dir: Path, spec: _HFType) -> Any:
    import transformers
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return getattr(transformers, spec.config_class).from_pretrained(str(model_dir), local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)


def _layer_list(root: Any, name: str) -> tuple[str, Any]:
    for path in ("encoder.layers", "encoder.layer", "layers"):
        try:
            return path, root.get_submodule(path)
        except AttributeError:
            continue
    raise ConfigError(f"backbone {name!r}: no encoder layer list (encoder.layers, encoder.layer, layers) to split")


class HFClipFamily(HFVisionFamily):
    """``hf_clip:<…>``: the CLIP models of :class:`HFVisionFamily` under their earlier name."""

    name = "hf_clip"
    names = ("hf_clip",)
    prefixes = ("hf_clip:",)
    syntax = ("hf_clip:<hub id|folder>",)
    model_types = _CLIP_TYPES
    splits = "CLIP vision towers"

    def parse(self, name: str) -> str | None:
        return DEFAULT_HF_CLIP if name == "hf_clip" else super().parse(name)

    def load(self, ref: str, *, device: str, pooling: str | None, **kwargs: Any) -> Backbone:
        if pooling is not None and pooling not in ("avg", "cls", "max"):
            raise BackendError(f"backbone 'hf_clip:{ref}': pooling must be one of avg, cls, max, got {pooling!r}")
        return super().load(ref, device=device, pooling=pooling, **kwargs)


FAMILIES.register(HFClipFamily.name)(HFClipFamily())
FAMILIES.register(HFVisionFamily.name)(HFVisionFamily())
