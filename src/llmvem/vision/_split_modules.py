"""torch modules that re-assemble timm and CLIP networks into a bottom and a top (see :mod:`.trainable`).

They hold the original model's submodules and parameters (shared, not copied), so ``bottom`` then ``top`` computes
the same as the backbone's own forward pass. Imported only when a backbone is split (this module imports torch).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class TimmResNetHead(nn.Module):
    """timm ResNet ``forward_head(pre_logits=True)``: global pooling (+ dropout at ``drop_rate``)."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.global_pool = net.global_pool
        self.drop_rate = float(net.drop_rate or 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.global_pool(x)
        return F.dropout(x, p=self.drop_rate, training=self.training) if self.drop_rate else x


class ViTEmbed(nn.Module):
    """timm ViT patch embedding, class/register tokens, position embedding, ``norm_pre``: images → (B, N, C)."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.patch_embed = net.patch_embed
        self.cls_token = net.cls_token
        self.reg_token = net.reg_token
        self.pos_embed = net.pos_embed
        self.pos_drop = net.pos_drop
        self.patch_drop = net.patch_drop
        self.norm_pre = net.norm_pre
        self.no_embed_class = net.no_embed_class
        self.dynamic_img_size = net.dynamic_img_size
        self.num_prefix_tokens = net.num_prefix_tokens
        self._pos_embed_fn = type(net)._pos_embed  # timm's own code, called on this module's (shared) parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = self._pos_embed_fn(self, x)
        x = self.patch_drop(x)
        return self.norm_pre(x)


class ViTHead(nn.Module):
    """timm ViT ``norm`` + ``forward_head(pre_logits=True)``: tokens (B, N, C) → pooled (B, C)."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.norm = net.norm
        self.attn_pool = net.attn_pool
        self.fc_norm = net.fc_norm
        self.head_drop = net.head_drop
        self.global_pool = net.global_pool
        self.num_prefix_tokens = net.num_prefix_tokens
        self.pool_include_prefix = getattr(net, "pool_include_prefix", False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from timm.layers import global_pool_nlc  # timm is imported with the model already

        x = self.norm(x)
        if self.attn_pool is not None:
            x = self.attn_pool(x if self.pool_include_prefix else x[:, self.num_prefix_tokens :])
        else:
            x = global_pool_nlc(
                x,
                pool_type=self.global_pool,
                num_prefix_tokens=self.num_prefix_tokens,
                reduce_include_prefix=self.pool_include_prefix,
            )
        return self.head_drop(self.fc_norm(x))


class ClipLayer(nn.Module):
    """A CLIP encoder layer called without attention mask: (B, N, C) → (B, N, C)."""

    def __init__(self, layer: Any) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x, None)
        return out[0] if isinstance(out, tuple) else out


class ClipHead(nn.Module):
    """CLIP pooling: ``post_layernorm`` of the class token (``cls``), or avg / max of the patch tokens."""

    def __init__(self, post_layernorm: Any, pooling: str) -> None:
        super().__init__()
        self.post_layernorm = post_layernorm
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return self.post_layernorm(x[:, 0])
        tokens = x[:, 1:]
        return tokens.mean(dim=1) if self.pooling == "avg" else tokens.amax(dim=1)


class NormPoolHead(nn.Module):
    """Final norm, then pooling of tokens (B, N, C) → (B, C): ``cls`` (token 0), ``avg`` / ``max`` over the tokens
    after ``prefix`` class tokens, or ``head`` (an attention-pooling module, SigLIP's)."""

    def __init__(self, norm: Any, pooling: str, prefix: int, pool_head: Any = None) -> None:
        super().__init__()
        self.norm = norm
        self.pool_head = pool_head if pooling == "head" else None
        self.pooling = pooling
        self.prefix = prefix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if self.pool_head is not None:
            return self.pool_head(x)
        if self.pooling == "cls":
            return x[:, 0]
        tokens = x[:, self.prefix :]
        return tokens.mean(dim=1) if self.pooling == "avg" else tokens.amax(dim=1)


class OpenClipEmbed(nn.Module):
    """open_clip ``VisionTransformer._embeds``: patch embedding, class token, positions, ``ln_pre``: → (B, N, C)."""

    def __init__(self, visual: Any) -> None:
        super().__init__()
        self.conv1 = visual.conv1
        self.class_embedding = visual.class_embedding
        self.positional_embedding = visual.positional_embedding
        self.patch_dropout = visual.patch_dropout
        self.ln_pre = visual.ln_pre
        self._embeds_fn = type(visual)._embeds  # open_clip's own code, on this module's (shared) parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self._embeds_fn(self, x)
        return out


class OpenClipBlock(nn.Module):
    """An open_clip residual attention block on batch-first tokens (B, N, C)."""

    def __init__(self, block: Any, batch_first: bool) -> None:
        super().__init__()
        self.block = block
        self.batch_first = batch_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_first:
            out: torch.Tensor = self.block(x)
            return out
        return self.block(x.transpose(0, 1)).transpose(0, 1)


class OpenClipHead(nn.Module):
    """open_clip ``VisionTransformer._pool`` + projection: tokens (B, N, C) → the image embedding (B, D)."""

    def __init__(self, visual: Any) -> None:
        super().__init__()
        for attr in ("attn_pool", "attn_pool_contrastive", "ln_post"):
            setattr(self, attr, getattr(visual, attr, None))
        self.proj = visual.proj
        self.attn_pool_type = getattr(visual, "attn_pool_type", None)
        self.final_ln_after_pool = visual.final_ln_after_pool
        self.pool_type = visual.pool_type
        self._pool_fn = type(visual)._pool
        self._global_pool_fn = type(visual)._global_pool

    def _global_pool(self, x: torch.Tensor) -> Any:  # called by open_clip's _pool
        return self._global_pool_fn(self, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled, _ = self._pool_fn(self, x)
        return pooled @ self.proj if self.proj is not None else pooled
