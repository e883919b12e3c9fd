"""The frozen image model that every backbone family builds (:mod:`llmvem.vision.backbones` loads one by name).

>>> POOLINGS
('avg', 'cls', 'max')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL import Image

#: pooling options accepted by ``load_backbone(..., pooling=)`` (not every backbone supports every one)
POOLINGS = ("avg", "cls", "max")


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
            import torch

            assert self._build is not None
            # (built outside inference mode even on first use inside it: its parameters stay usable for training)
            with torch.inference_mode(False):
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
