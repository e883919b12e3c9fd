"""timm architectures: ``timm:<architecture>``, ``timm:hf-hub:<org/repo>``, ``timm:local-dir:<folder>``.

The reference goes to ``timm.create_model`` as it is (timm parses its own ``hf-hub:`` / ``local-dir:`` schemas),
with the classifier removed (``num_classes=0``): pooled pre-logit features (B, D). Keywords: ``checkpoint_path``
(a local state dict; a classifier in it is ignored), ``pretrained`` (timm's weights, from the local cache when
offline), ``seed`` (of the random initialisation otherwise), ``model_kwargs`` (``timm.create_model`` keywords such
as ``{"img_size": 64, "depth": 4}``; part of the identity, an ``img_size`` also sets the preprocessing size).
Pooling: ``None`` (the model's default: average for CNNs, the class token for ViT/DeiT), ``avg``, ``max``, ``cls``
(models with a class token; ViT ``avg`` / ``max`` pool the normalised patch tokens, class token excluded).
Preprocessing is timm's evaluation transform for the model's data config. (``hf-hub:`` / ``local-dir:``
weights load with ``pretrained=True``.)

Blocks: the residual blocks of ``layer1`` … ``layer4`` (ResNet), the transformer blocks ``blocks.*`` (ViT/DeiT),
the blocks of ``stages.*`` (ConvNeXt; a stage's downsampling belongs to its first block).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmvem.errors import BackendError, ConfigError
from llmvem.store import weights_sha256
from llmvem.vision.backbone import Backbone
from llmvem.vision.families._base import FAMILIES, BackboneFamily, Blocks, module_names, sequential_blocks

if TYPE_CHECKING:
    import torch
    from PIL import Image

PREFIX = "timm:"
_TIMM_POOL = {"avg": "avg", "max": "max", "cls": "token"}


def _create(architecture: str, pretrained: bool, seed: int, extra: dict[str, Any]) -> Any:
    import timm
    import torch

    try:
        # Seed a private RNG stream so random initialisation is reproducible and the global RNG is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return timm.create_model(architecture, pretrained=pretrained, num_classes=0, **extra)
    except RuntimeError as exc:  # unknown model
        raise BackendError(f"timm cannot build {architecture!r}: {exc}") from exc
    except Exception as exc:  # pretrained weights not downloadable offline, etc.
        raise BackendError(
            f"timm cannot load {'pretrained ' if pretrained else ''}{architecture!r}: {exc}. "
            "Offline, pretrained weights must already be in the Hugging Face cache, or pass checkpoint_path=."
        ) from exc


def _weights(model: Any, architecture: str, checkpoint_path: str | Path | None, pretrained: bool, seed: int) -> Any:
    import timm
    import torch

    if checkpoint_path is not None:
        path = Path(checkpoint_path).expanduser()
        _load_checkpoint(model, path, architecture)
        return {"source": "checkpoint", "file": path.name, "sha256": weights_sha256(path)}
    if pretrained:
        cfg = model.pretrained_cfg
        return {
            "source": "timm pretrained",
            "tag": cfg.get("hf_hub_id") or cfg.get("url") or architecture,
            "timm_version": timm.__version__,
        }
    return {
        "source": "random",
        "random_weights": True,
        "seed": seed,
        "timm_version": timm.__version__,
        "torch_version": torch.__version__.split("+")[0],
    }


def timm_backbone(
    architecture: str,
    device: str = "cpu",
    checkpoint_path: str | Path | None = None,
    pretrained: bool = False,
    seed: int = 0,
    pooling: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Backbone:
    """Any timm architecture with its classifier removed (``num_classes=0``): pooled pre-logit features (B, D).

    See the module docstring for the arguments.
    """
    import timm.data

    if checkpoint_path is not None and pretrained:
        raise BackendError(f"timm:{architecture}: give checkpoint_path or pretrained=True, not both")
    if pooling is not None and pooling not in _TIMM_POOL:
        raise BackendError(f"timm:{architecture}: pooling must be one of {', '.join(_TIMM_POOL)}, got {pooling!r}")
    extra = dict(model_kwargs or {})
    model = _create(architecture, pretrained, seed, extra)
    weights = _weights(model, architecture, checkpoint_path, pretrained, seed)
    pooling_desc = "timm pre-logits (num_classes=0, the model's default global pooling)"
    if pooling is not None:
        _set_pooling(model, architecture, pooling)
        pooling_desc = f"{pooling}: timm global_pool={_TIMM_POOL[pooling]!r}, pre-logits (num_classes=0)"

    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    args = {"input_size": (3, *img_size)} if "img_size" in extra and img_size else {}
    data_cfg = timm.data.resolve_data_config(args, model=model)
    transform = timm.data.create_transform(**data_cfg, is_training=False)
    identity = {
        "name": f"{PREFIX}{architecture}",
        "architecture": architecture,
        "weights": weights,
        "preprocessing": {"timm_data_config": dict(data_cfg), "mode": "RGB"},
        "pooling": pooling_desc,
    }
    if extra:
        identity["model_kwargs"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(extra.items())}

    def preprocess(image: Image.Image) -> torch.Tensor:
        out: torch.Tensor = transform(image.convert("RGB"))
        return out

    return Backbone(
        name=f"{PREFIX}{architecture}",
        feature_dim=int(getattr(model, "head_hidden_size", None) or model.num_features),
        identity=identity,
        preprocess=preprocess,
        forward=lambda module, batch: module(batch),
        module=model,
        device=device,
        input_size=tuple(data_cfg["input_size"]),
        num_prefix_tokens=int(getattr(model, "num_prefix_tokens", 0) or 0),
    )


def _set_pooling(model: Any, architecture: str, pooling: str) -> None:
    """Switch a headless timm model's global pooling to ``pooling`` (``avg``, ``max``, ``cls``)."""
    if pooling == "cls" and getattr(model, "cls_token", None) is None:
        raise BackendError(
            f"timm:{architecture} has no class token: pooling 'cls' is for ViT/DeiT-like models; use 'avg' or 'max'"
        )
    try:
        model.reset_classifier(0, global_pool=_TIMM_POOL[pooling])
    except Exception as exc:  # timm asserts on pooling types a family does not support
        raise BackendError(f"timm:{architecture} does not support pooling {pooling!r}: {exc}") from exc


def _load_checkpoint(model: torch.nn.Module, path: Path, architecture: str) -> None:
    """Load a state dict into a headless timm model; only classifier keys may be left over."""
    from timm.models import load_state_dict

    if not path.is_file():
        raise BackendError(f"timm:{architecture}: checkpoint file not found: {path}")
    try:
        state = load_state_dict(str(path), use_ema=False)
    except Exception as exc:
        raise BackendError(f"timm:{architecture}: cannot read checkpoint {path}: {exc}") from exc
    result = model.load_state_dict(state, strict=False)
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier") or "fc"
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    unexpected = [k for k in result.unexpected_keys if not k.startswith(heads)]
    if result.missing_keys or unexpected:
        raise BackendError(
            f"timm:{architecture}: checkpoint {path} does not match the architecture "
            f"(missing {result.missing_keys[:5]}, unexpected {unexpected[:5]})"
        )


class TimmFamily(BackboneFamily):
    name = "timm"
    prefixes = (PREFIX,)
    syntax = ("timm:<architecture>", "timm:hf-hub:<org/repo>", "timm:local-dir:<folder>")
    keywords = frozenset({"checkpoint_path", "pretrained", "seed", "model_kwargs"})
    poolings = ("avg", "cls", "max")
    splits = "ResNet (resnet*), VisionTransformer (vit_*, deit_* without distillation), ConvNeXt (convnext_*)"

    def load(self, ref: str, *, device: str, pooling: str | None, **kwargs: Any) -> Backbone:
        if not ref:
            raise BackendError(f"backbone {PREFIX!r}: give a timm architecture after 'timm:', e.g. 'timm:resnet18'")
        return timm_backbone(ref, device=device, pooling=pooling, **kwargs)

    def blocks(self, backbone: Backbone) -> Blocks:
        """(stem, blocks, head) of a headless timm ResNet, ViT/DeiT or ConvNeXt; the modules are the model's own."""
        from timm.models.convnext import ConvNeXt
        from timm.models.resnet import ResNet
        from timm.models.vision_transformer import VisionTransformer
        from torch import nn

        from llmvem.vision._split_modules import TimmResNetHead, ViTEmbed, ViTHead

        model = backbone.module
        net: Any = model  # (isinstance would narrow it to timm's classes, whose attributes mypy sees as Tensor)
        if isinstance(model, ResNet):
            stem = nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool)
            units = [blk for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for blk in layer]
            what = "the residual blocks of layer1 ... layer4"
            return sequential_blocks(stem, units, TimmResNetHead(net), what, module_names(net, units))
        if isinstance(model, ConvNeXt):
            units, taps = [], []
            for stage in net.stages:
                blocks = list(stage.blocks)
                units.append(nn.Sequential(stage.downsample, blocks[0]))
                units.extend(blocks[1:])
                taps.extend(blocks)
            head = nn.Sequential(net.norm_pre, net.head)
            return sequential_blocks(net.stem, units, head, "the blocks of stages.*", module_names(net, taps))
        if type(model) is VisionTransformer:  # ViT and DeiT (not the distilled DeiT, with its second token and head)
            units = list(net.blocks)
            what = "the transformer blocks blocks.*"
            return sequential_blocks(ViTEmbed(net), units, ViTHead(net), what, module_names(net, units))
        raise ConfigError(
            f"fine-tuning {backbone.name!r}: {type(net).__name__} is not supported; timm families that can be split "
            f"are {self.splits}"
        )


FAMILIES.register(TimmFamily.name)(TimmFamily())
