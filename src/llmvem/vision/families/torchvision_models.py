"""torchvision classification models: ``torchvision:<name>`` (``resnet50``, ``vgg16``, ``efficientnet_b0`` ...).

Built with ``torchvision.models.get_model``; the last linear layer of the classifier (``fc``, ``classifier``,
``heads``) is removed, so the features are the pre-logits (B, D). Keywords: ``weights`` (``None``: seeded random
weights; a torchvision weights name such as ``"DEFAULT"`` or ``"IMAGENET1K_V2"``, loaded through torch.hub's cache —
offline it must be there already), ``checkpoint_path`` (a local state dict; its classifier is ignored), ``seed``,
``model_kwargs`` (``get_model`` keywords). Pooling is the model's own (no other; tap a layer to pool its output).
Preprocessing: the weights' evaluation transform (resize, centre crop, ImageNet mean/std); with random weights
torchvision's default (resize 256 bilinear, crop 224).

Blocks: the residual blocks of ``layer1`` … ``layer4`` (ResNet, ResNeXt, Wide ResNet); the modules of
``features`` after the first (VGG, AlexNet, EfficientNet, MobileNetV3; a stage of several blocks counts each).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmvem.errors import BackendError, ConfigError
from llmvem.vision.backbone import Backbone
from llmvem.vision.families._base import FAMILIES, BackboneFamily, Blocks, module_names, sequential_blocks
from llmvem.vision.families.references import checkpoint_weights

if TYPE_CHECKING:
    import torch
    from PIL import Image

PREFIX = "torchvision:"
_HEADS = ("fc", "classifier", "heads", "head")


def _drop_last_linear(model: Any, name: str) -> tuple[int, str]:
    """Replace the classifier's last ``nn.Linear`` by ``nn.Identity``: (its in_features, its module name)."""
    from torch import nn

    for head in _HEADS:
        module = getattr(model, head, None)
        if module is None:
            continue
        linears = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            continue
        sub, linear = linears[-1]
        full = f"{head}.{sub}" if sub else head
        parent_name, _, leaf = full.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, nn.Identity())
        return int(linear.in_features), full
    raise BackendError(f"{name}: no linear classifier ({', '.join(_HEADS)}) to remove")


def _load_state(model: Any, path: Path, head: str, name: str) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackendError(f"{name}: cannot read checkpoint {path}: {exc}") from exc
    state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(head + ".")]
    if missing or result.unexpected_keys:
        raise BackendError(
            f"{name}: checkpoint {path} does not match the architecture "
            f"(missing {missing[:5]}, unexpected {result.unexpected_keys[:5]})"
        )


def _preprocessing(weights: Any, model_kwargs: dict[str, Any]) -> dict[str, Any]:
    if weights is not None:
        t = weights.transforms()
        crop, resize = list(t.crop_size), list(t.resize_size)
        mean, std, interp = list(t.mean), list(t.std), str(t.interpolation.value)
    else:
        side = int(model_kwargs.get("image_size", 224))
        crop, resize = [side], [round(side * 256 / 224)]
        mean, std, interp = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], "bilinear"
    return {"mode": "RGB", "resize": resize, "crop": crop, "interpolation": interp, "mean": mean, "std": std}


def _transform(prep: dict[str, Any]) -> Any:
    from torchvision import transforms

    interp = transforms.InterpolationMode(prep["interpolation"])
    pipeline = transforms.Compose(
        [
            transforms.Resize(prep["resize"], interpolation=interp, antialias=True),
            transforms.CenterCrop(prep["crop"]),
            transforms.ToTensor(),
            transforms.Normalize(prep["mean"], prep["std"]),
        ]
    )

    def preprocess(image: Image.Image) -> torch.Tensor:
        out: torch.Tensor = pipeline(image.convert("RGB"))
        return out

    return preprocess


class TorchvisionFamily(BackboneFamily):
    name = "torchvision"
    prefixes = (PREFIX,)
    syntax = ("torchvision:<name>",)
    keywords = frozenset({"weights", "checkpoint_path", "seed", "model_kwargs"})
    poolings: tuple[str, ...] = ()
    splits = "ResNet-like (resnet*, resnext*, wide_resnet*) and features-based (vgg*, alexnet, efficientnet_*, ...)"

    def load(
        self,
        ref: str,
        *,
        device: str,
        pooling: str | None,
        weights: str | None = None,
        checkpoint_path: str | Path | None = None,
        seed: int = 0,
        model_kwargs: dict[str, Any] | None = None,
    ) -> Backbone:
        import torch
        import torchvision
        from torchvision import models

        name = f"{PREFIX}{ref}"
        if pooling is not None:
            raise BackendError(f"backbone {name!r} pools as the model does; tap a layer (layer=...) to pool it")
        if weights is not None and checkpoint_path is not None:
            raise BackendError(f"backbone {name!r}: give weights or checkpoint_path, not both")
        extra = dict(model_kwargs or {})
        try:
            weights_enum = models.get_model_weights(ref).verify(weights) if weights is not None else None
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model: Any = models.get_model(ref, weights=weights_enum, **extra)
        except ValueError as exc:
            raise BackendError(f"torchvision cannot build {ref!r}: {exc}") from exc
        except Exception as exc:  # weights not in torch.hub's cache, no network
            raise BackendError(f"torchvision cannot load {name!r} with weights {weights!r}: {exc}") from exc
        dim, head = _drop_last_linear(model, name)
        ident_weights: dict[str, Any]
        if checkpoint_path is not None:
            path, ident_weights = checkpoint_weights(checkpoint_path, name)
            _load_state(model, path, head, name)
        elif weights_enum is not None:
            ident_weights = {"source": "torchvision", "tag": str(weights_enum), "url": weights_enum.url}
        else:
            ident_weights = {"source": "random", "random_weights": True, "seed": seed}
        ident_weights["torchvision_version"] = torchvision.__version__.split("+")[0]
        prep = _preprocessing(weights_enum, extra)
        identity: dict[str, Any] = {
            "name": name,
            "architecture": ref,
            "weights": ident_weights,
            "preprocessing": prep,
            "pooling": f"torchvision pre-logits (the model's own pooling, {head} removed)",
        }
        if extra:
            identity["model_kwargs"] = dict(sorted(extra.items()))
        return Backbone(
            name=name,
            feature_dim=dim,
            identity=identity,
            preprocess=_transform(prep),
            forward=lambda module, batch: module(batch),
            module=model,
            device=device,
            input_size=(3, prep["crop"][0], prep["crop"][-1]),
        )

    def blocks(self, backbone: Backbone) -> Blocks:
        from torch import nn
        from torchvision import models

        net: Any = backbone.module
        if isinstance(net, models.ResNet):
            stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
            units = [blk for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for blk in layer]
            head = nn.Sequential(net.avgpool, nn.Flatten(1), net.fc)
            what = "the residual blocks of layer1 ... layer4"
            return sequential_blocks(stem, units, head, what, module_names(net, units))
        if isinstance(net, (models.VGG, models.AlexNet, models.EfficientNet, models.MobileNetV3)):
            units = []
            for module in list(net.features)[1:]:
                units.extend(module if isinstance(module, nn.Sequential) else [module])
            head = nn.Sequential(net.avgpool, nn.Flatten(1), net.classifier)
            what = "the modules of features.* after the first"
            return sequential_blocks(net.features[0], units, head, what, module_names(net, units))
        raise ConfigError(
            f"fine-tuning {backbone.name!r}: {type(net).__name__} is not supported; torchvision models that can be "
            f"split are {self.splits}"
        )


FAMILIES.register(TorchvisionFamily.name)(TorchvisionFamily())
