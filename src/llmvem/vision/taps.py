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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmvem.errors import BackendError
from llmvem.vision.backbone import POOLINGS, Backbone

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


def block_layers(backbone: Backbone) -> list[str]:
    """The backbone's blocks, in forward order: what ``layers="all"`` taps.

    Its family says (:meth:`~llmvem.vision.families.BackboneFamily.block_layers`): the blocks
    :func:`~llmvem.vision.trainable.split_backbone` cuts between — every residual block of a ResNet (``layer1.0``
    … ``layer4.1``), each MBConv block of EfficientNet-Lite (``_blocks.0`` …), every transformer block of a
    ViT/DeiT (``blocks.N``), CLIP/SigLIP tower (``encoder.layers.N``) or open_clip tower
    (``transformer.resblocks.N``), each block of a ConvNeXt stage — or, for a network its family cannot split (and a
    backbone no family owns), :func:`~llmvem.vision.families.structural_blocks` of its module.

    Raises:
        BackendError: no blocks (name the layers instead).
    """
    from llmvem.errors import RegistryError
    from llmvem.vision.families import FAMILIES, BackboneFamily

    try:
        family, _ = FAMILIES.resolve(backbone.name)
    except RegistryError:
        family = BackboneFamily()  # (no family: the module tree's blocks)
    return family.block_layers(backbone)


def resolve_layers(backbone: Backbone, layers: str | Sequence[str]) -> list[str]:
    """Module names of ``layers``: ``"all"`` (:func:`block_layers`), ``"a,b,c"`` or a list of names (each through
    :func:`resolve_layer`; duplicates dropped, order kept).

    Raises:
        BackendError: an unknown name (close names listed), or no names at all.
    """
    items = [layers] if isinstance(layers, str) else list(layers)
    names: list[str] = []
    for item in items:
        for part in (p.strip() for p in str(item).split(",")):
            if not part:
                continue
            for name in block_layers(backbone) if part == "all" else [resolve_layer(backbone, part)]:
                if name not in names:
                    names.append(name)
    if not names:
        raise BackendError(f"no layers given for {backbone.name!r}: name modules (a,b,c) or 'all'")
    return names


class _StopForward(Exception):
    """Raised by the last hook of :func:`capture_layers` once every tapped module has given its output."""


def capture_layers(
    backbone: Backbone,
    heads: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    batch: torch.Tensor,
    calls: Mapping[str, int] | None = None,
) -> dict[str, torch.Tensor]:
    """One forward pass of ``batch`` through ``backbone`` with a hook on each module of ``heads``.

    Each hook applies its head (e.g. pooling) to the module's output (its first tensor) at once, so only the head's
    result is kept. A module called several times is taken at its last call. With ``calls`` (module → number of
    calls in one forward, from a probe) the forward pass stops as soon as every module has had all its calls, so
    the layers after the deepest tap are not computed.

    Returns:
        module name → head output, for every module the forward pass reached.
    """
    seen: dict[str, torch.Tensor] = {}
    count = dict.fromkeys(heads, 0)
    module = backbone.module
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def run(_m: Any, _i: Any, out: Any) -> None:
            seen[name] = heads[name](_first_tensor(out))
            count[name] += 1
            if calls is not None and all(count[n] >= calls.get(n, 1) for n in heads):
                raise _StopForward

        return run

    for name in heads:
        handles.append(module.get_submodule(name).register_forward_hook(hook(name)))
    try:
        backbone.features(batch)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    return seen


@dataclass(frozen=True)
class LayerTap:
    """One tapped module: its name, raw output shape (without the batch), pooling mode and the single-layer
    :class:`~llmvem.vision.backbones.Backbone` whose identity keys its cache entry (as :func:`tap_layer`'s)."""

    name: str
    shape: tuple[int, ...]
    mode: str
    backbone: Backbone
    calls: int

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *shape) → (B, D) pooled, float32."""
        return pool_output(x.float(), self.mode, self.backbone.num_prefix_tokens)


def tap_layers(backbone: Backbone, layers: str | Sequence[str], pooling: str | None = None) -> list[LayerTap]:
    """Taps of several modules (``"all"``, ``"a,b"`` or names), probed with one forward pass of a blank image.

    Each tap's backbone equals ``tap_layer(backbone, name, pooling)`` (same identity, hence the same cache key).

    Raises:
        BackendError: as :func:`tap_layer`, for any of the layers.
    """
    import torch

    if pooling is not None and pooling not in POOLINGS:
        raise BackendError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    names = resolve_layers(backbone, layers)
    module = backbone.module
    was_training = module.training
    module.eval()
    calls = dict.fromkeys(names, 0)
    shapes: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def head(x: torch.Tensor) -> torch.Tensor:
            calls[name] += 1
            return x

        return head

    try:
        with torch.inference_mode():
            probe = torch.zeros((1, *backbone.input_size), device=backbone.device)
            shapes = capture_layers(backbone, {n: keep(n) for n in names}, probe)
    finally:
        module.train(was_training)
    missing = [n for n in names if n not in shapes]
    if missing:
        raise BackendError(
            f"layer {missing[0]!r} of {backbone.name!r} is not reached by the backbone's feature forward pass "
            "(it comes after the pooled features, e.g. a classifier); tap an earlier layer"
        )
    return [_layer_tap(backbone, n, shapes[n], pooling, calls[n]) for n in names]


def _layer_tap(backbone: Backbone, name: str, probe: torch.Tensor, pooling: str | None, calls: int) -> LayerTap:
    """The :class:`LayerTap` of module ``name`` whose probe output is ``probe`` (1, ...)."""
    prefix = backbone.num_prefix_tokens
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
        del module
        out = capture_layers(backbone, {name: lambda x: x}, batch)
        if name not in out:
            raise BackendError(f"layer {name!r} of {backbone.name!r} was not reached by the forward pass")
        return pool_output(out[name], mode, prefix)

    tapped = Backbone(
        name=f"{backbone.name}@{name}",
        feature_dim=int(pooled.shape[1]),
        identity={**backbone.identity, "layer": name, "pooling": desc},
        preprocess=backbone._preprocess,
        forward=forward,
        module=backbone.module,
        device=backbone.device,
        input_size=backbone.input_size,  # type: ignore[arg-type]
        num_prefix_tokens=prefix,
        layer_aliases=backbone.layer_aliases,
    )
    return LayerTap(name=name, shape=tuple(int(s) for s in probe.shape[1:]), mode=mode, backbone=tapped, calls=calls)


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
    return tap_layers(backbone, [resolve_layer(backbone, layer)], pooling=pooling)[0].backbone
