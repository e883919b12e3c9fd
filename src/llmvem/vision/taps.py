"""Named-layer feature taps: pooled features of any module of a backbone, through a forward hook.

``tap_layer(backbone, "layer3")`` returns a new :class:`~llmvem.vision.backbones.Backbone` whose features are the
pooled output of the module called ``"layer3"`` (names as in ``module.named_modules()``): ``"_blocks.9"`` of
EfficientNet-Lite0, ``"layer3"`` / ``"layer3.1"`` of a timm ResNet, ``"blocks.9"`` of a ViT/DeiT, ``"stages.2"`` of a
ConvNeXt, ``"encoder.layers.5"`` of a CLIP vision tower (the transformers 4.x name
``"vision_model.encoder.layers.5"`` is accepted too). The layer and its pooling are part of the identity, so features
of different layers are cached apart.

Pooling of the tapped output:

- (B, C, H, W) (convolutional maps, taken as channels first): ``"avg"`` (default) or ``"max"`` over H × W;
- (B, N, C) (transformer tokens): ``"cls"`` (token 0; the default when the model has a class token), ``"avg"`` or
  ``"max"`` over the patch tokens (class/register tokens excluded);
- (B, D): used as it is.

A tuple or model output (transformers) is tapped at its first tensor. A module called several times in one forward
pass (a shared activation) is tapped at its last call.

Example
-------
>>> bb = tap_layer(load_backbone("timm:resnet18"), "layer3")  # doctest: +SKIP
>>> bb.feature_dim, bb.identity["layer"]  # doctest: +SKIP
(256, 'layer3')
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from llmvem.errors import BackendError
from llmvem.vision.backbones import POOLINGS, Backbone

if TYPE_CHECKING:
    import torch


def layer_names(backbone: Backbone, max_depth: int | None = None) -> list[str]:
    """Names of the backbone's modules, in definition order (root excluded); ``max_depth`` keeps names with at most
    that many dot-separated parts (``"layer3"`` has 1, ``"layer3.1"`` 2)."""
    names = [n for n, _ in backbone.module.named_modules() if n]
    if max_depth is not None:
        names = [n for n in names if n.count(".") < max_depth]
    return names


def resolve_layer(backbone: Backbone, layer: str) -> str:
    """The module name ``layer`` stands for (an alias such as ``vision_model.`` is rewritten).

    Raises:
        BackendError: no such module; the message lists close names and the top-level names.
    """
    modules = dict(backbone.module.named_modules())
    if layer in modules and layer:
        return layer
    for old, new in backbone.layer_aliases.items():
        if layer.startswith(old) and (new + layer[len(old) :]) in modules:
            return new + layer[len(old) :]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.6)
    shallow = [n for n in names if n.count(".") < 2]
    listing = ", ".join(shallow[:40]) + (f" ... ({len(shallow)} in all)" if len(shallow) > 40 else "")
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise BackendError(
        f"backbone {backbone.name!r} has no layer {layer!r}; {hint}valid names include: {listing} "
        f"({len(names)} modules in all; see llmvem.vision.layer_names(backbone))"
    )


def _first_tensor(out: Any) -> torch.Tensor:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict) or hasattr(out, "to_tuple"):  # transformers ModelOutput
        values = list(out.values())
    elif isinstance(out, (tuple, list)):
        values = list(out)
    else:
        values = []
    for v in values:
        if isinstance(v, torch.Tensor):
            return v
    raise BackendError(f"the tapped layer returned {type(out).__name__}, not a tensor")


def default_pooling(ndim: int, num_prefix_tokens: int) -> str:
    """The pooling used when none is asked for: ``cls`` for token sequences with a class token, else ``avg``."""
    return "cls" if ndim == 3 and num_prefix_tokens > 0 else "avg"


def pool_output(x: torch.Tensor, pooling: str, num_prefix_tokens: int) -> torch.Tensor:
    """Pool a layer output to (B, D): (B, C, H, W) over H × W, (B, N, C) over patch tokens or token 0, (B, D) as is.

    Raises:
        BackendError: a pooling that does not apply (``cls`` of a feature map or of tokens without a class token).
    """
    if x.ndim == 2:
        return x
    if x.ndim == 4:
        if pooling == "cls":
            raise BackendError("pooling 'cls' needs a token sequence (B, N, C); this layer gives a (B, C, H, W) map")
        return x.mean(dim=(2, 3)) if pooling == "avg" else x.amax(dim=(2, 3))
    if x.ndim == 3:
        if pooling == "cls":
            if num_prefix_tokens < 1:
                raise BackendError("pooling 'cls' needs a class token; this model has none (use avg or max)")
            return x[:, 0]
        tokens = x[:, num_prefix_tokens:]
        return tokens.mean(dim=1) if pooling == "avg" else tokens.amax(dim=1)
    raise BackendError(f"cannot pool a layer output of shape {tuple(x.shape)} (expected 2, 3 or 4 dimensions)")


def tap_layer(backbone: Backbone, layer: str, pooling: str | None = None) -> Backbone:
    """A backbone whose features (B, D) are the pooled output of its module ``layer``.

    One forward pass of a blank image (``backbone.input_size``) finds the output shape, hence D and the pooling.

    Args:
        backbone: any :class:`~llmvem.vision.backbones.Backbone` (it is left unchanged; the module is shared).
        layer: a module name (see :func:`layer_names`).
        pooling: ``"avg"``, ``"max"`` or ``"cls"``; ``None`` for :func:`default_pooling`.

    Raises:
        BackendError: unknown layer (close names are listed), a layer the forward pass never reaches, a pooling
            that does not apply to the layer's output.
    """
    import torch

    if pooling is not None and pooling not in POOLINGS:
        raise BackendError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    name = resolve_layer(backbone, layer)
    base_forward = backbone._forward
    prefix = backbone.num_prefix_tokens

    def capture(module: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        target = module.get_submodule(name)
        seen: list[Any] = []
        handle = target.register_forward_hook(lambda _m, _i, out: seen.append(out))
        try:
            base_forward(module, batch)
        finally:
            handle.remove()
        if not seen:
            raise BackendError(
                f"layer {name!r} of {backbone.name!r} is not reached by the backbone's feature forward pass "
                "(it comes after the pooled features, e.g. a classifier); tap an earlier layer"
            )
        return _first_tensor(seen[-1])

    module = backbone.module
    was_training = module.training
    module.eval()
    with torch.inference_mode():
        probe = capture(module, torch.zeros((1, *backbone.input_size), device=backbone.device))
    module.train(was_training)
    mode = pooling or default_pooling(probe.ndim, prefix)
    pooled = pool_output(probe, mode, prefix)
    shape = ["B", *(int(s) for s in probe.shape[1:])]
    if probe.ndim == 2:
        desc = f"none: layer {name} gives (B, {probe.shape[1]})"
    elif probe.ndim == 4:
        desc = f"{mode} over H x W of layer {name} output (B, C, H, W) = {shape}"
    else:
        desc = f"{mode} of layer {name} tokens (B, N, C) = {shape}, {prefix} prefix token(s)"

    def forward(module: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return pool_output(capture(module, batch), mode, prefix)

    identity = {**backbone.identity, "layer": name, "pooling": desc}
    return Backbone(
        name=f"{backbone.name}@{name}",
        feature_dim=int(pooled.shape[1]),
        identity=identity,
        preprocess=backbone._preprocess,
        forward=forward,
        module=module,
        device=backbone.device,
        input_size=backbone.input_size,  # type: ignore[arg-type]
        num_prefix_tokens=prefix,
        layer_aliases=backbone.layer_aliases,
    )
