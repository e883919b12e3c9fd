"""open_clip vision towers: ``open_clip:<architecture>``, ``open_clip:<folder>``, ``open_clip:local-dir:<folder>``,
``open_clip:hf-hub:<org/repo>``.

An architecture (``ViT-B-32``) builds from open_clip's own config with seeded random weights, or with its
``pretrained=<tag>`` weights (offline: only from the local cache). A folder holds ``open_clip_config.json``
(``model_cfg`` and ``preprocess_cfg``) and the weights, as open_clip's ``local-dir:`` schema reads it; a hub id is
that folder in the local Hugging Face cache (nothing is downloaded). Only the vision tower (``model.visual``) is
kept. Features: the tower's image embedding (B, embed_dim), pooled and projected as the model was trained (no other
pooling; tap a layer to pool its tokens). Preprocessing: open_clip's evaluation transform of the model's
``preprocess_cfg``.

Blocks: the residual attention blocks ``transformer.resblocks.*`` of a ``VisionTransformer`` tower; stem = patch
embedding + class token + positions + ``ln_pre``; head = ``ln_post``, pooling and ``proj``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from llmvem.errors import BackendError, ConfigError
from llmvem.vision.backbone import Backbone
from llmvem.vision.families._base import FAMILIES, BackboneFamily, Blocks, module_names, sequential_blocks
from llmvem.vision.families.references import local_model_dir, parse_reference

if TYPE_CHECKING:
    import torch
    from PIL import Image

PREFIX = "open_clip:"


def _folder_files_sha256(folder: Path) -> dict[str, str]:
    from llmvem.store import weights_sha256

    suffixes = (".safetensors", ".bin", ".pth", ".pt", ".json")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in suffixes)
    if not (folder / "open_clip_config.json").is_file():
        raise BackendError(f"{folder} is not an open_clip model folder: it has no open_clip_config.json")
    return {p.name: weights_sha256(p) for p in files}


def _create(model_name: str, pretrained: str | None, seed: int, name: str) -> tuple[Any, Any]:
    import open_clip
    import torch

    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    except Exception as exc:
        raise BackendError(
            f"open_clip cannot build {name!r}: {exc}. Architectures: open_clip.list_models(); offline, pretrained "
            "weights must already be in the local cache"
        ) from exc
    return model.visual.eval(), preprocess


class OpenClipFamily(BackboneFamily):
    name = "open_clip"
    prefixes = (PREFIX,)
    syntax = ("open_clip:<architecture|folder|local-dir:folder|hf-hub:org/repo>",)
    keywords = frozenset({"pretrained", "seed"})
    poolings: tuple[str, ...] = ()
    layer_aliases: ClassVar[dict[str, str]] = {"visual.": ""}  # names as in the whole CLIP model
    splits = "VisionTransformer towers"

    def load(
        self, ref: str, *, device: str, pooling: str | None, pretrained: str | None = None, seed: int = 0
    ) -> Backbone:
        import open_clip
        import torch

        name = f"{PREFIX}{ref}"
        if not ref:
            raise BackendError(f"backbone {name!r}: give an open_clip architecture or folder, e.g. 'open_clip:RN50'")
        if pooling is not None:
            raise BackendError(
                f"backbone {name!r} pools as the model was trained (its image embedding); for avg, max or cls of "
                "its tokens tap a layer (layer=..., e.g. transformer.resblocks.11)"
            )
        parsed = parse_reference(ref)
        source: dict[str, Any]
        if parsed.kind == "name":
            visual, preprocess = _create(parsed.value, pretrained, seed, name)
            if pretrained:
                weights: dict[str, Any] = {"source": "open_clip pretrained", "tag": pretrained}
            else:
                weights = {"source": "random", "random_weights": True, "seed": seed}
            weights.update(open_clip_version=open_clip.__version__, torch_version=torch.__version__.split("+")[0])
            source = {"architecture": parsed.value}
        else:
            if pretrained:
                raise BackendError(f"backbone {name!r}: a folder or hub id brings its weights; drop pretrained=")
            folder, source = local_model_dir(parsed, name)
            weights = {"files": _folder_files_sha256(folder)}
            visual, preprocess = _create(f"local-dir:{folder}", None, seed, name)
        identity = {
            "name": name,
            **source,
            "weights": weights,
            "preprocessing": {"open_clip_preprocess_cfg": dict(getattr(visual, "preprocess_cfg", {})), "mode": "RGB"},
            "pooling": "open_clip image embedding: the tower's own pooling and projection",
        }

        def transform(image: Image.Image) -> torch.Tensor:
            out: torch.Tensor = preprocess(image.convert("RGB"))
            return out

        size = visual.image_size if isinstance(visual.image_size, tuple) else (visual.image_size,) * 2
        return Backbone(
            name=name,
            feature_dim=int(visual.output_dim),
            identity=identity,
            preprocess=transform,
            forward=lambda module, batch: module(batch),
            module=visual,
            device=device,
            input_size=(3, int(size[0]), int(size[1])),
            num_prefix_tokens=1 if hasattr(visual, "class_embedding") else 0,
            layer_aliases=self.layer_aliases,
        )

    def blocks(self, backbone: Backbone) -> Blocks:
        from open_clip.transformer import VisionTransformer

        from llmvem.vision._split_modules import OpenClipBlock, OpenClipEmbed, OpenClipHead

        visual: Any = backbone.module
        if not isinstance(visual, VisionTransformer):
            raise ConfigError(
                f"fine-tuning {backbone.name!r}: a {type(visual).__name__} tower is not supported; open_clip towers "
                f"that can be split are {self.splits}"
            )
        batch_first = bool(getattr(visual.transformer, "batch_first", True))
        units = [OpenClipBlock(b, batch_first) for b in visual.transformer.resblocks]
        what = "the residual attention blocks transformer.resblocks.*"
        names = module_names(visual, visual.transformer.resblocks)
        return sequential_blocks(OpenClipEmbed(visual), units, OpenClipHead(visual), what, names)


FAMILIES.register(OpenClipFamily.name)(OpenClipFamily())
