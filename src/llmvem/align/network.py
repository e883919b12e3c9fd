"""A trained network: :class:`TrainedNetwork` answers features, heads and loading from a run directory.

It holds a split network (:class:`~llmvem.vision.trainable.SplitNet`) with the trained weights of its top, and the
heads rebuilt from the weights alone (the kind of each is read off its parameter names): ``project`` (the
projection into the text-embedding space, a visual-words model's vocabulary head) and ``task`` (task logits or voxel
predictions, through the fixed PCA inverse for ``voxels_pca``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from llmvem.errors import ConfigError, DataError

HEADS = ("project", "task")


class TrainedNetwork:
    """A split network with trained top and heads.

    Args:
        split: the :class:`~llmvem.vision.trainable.SplitNet` the run trained (its ``top`` is copied, unless
            ``share``: then the trained weights are loaded into it, and ``split.backbone`` holds them too).
        state: the run's state dict (``top.*``, ``project.*``, ``task.*``), or ``None``: the pretrained network.
        device: where the network runs.
    """

    def __init__(self, split: Any, state: dict[str, Any] | None = None, device: str = "cpu", share: bool = False):
        import torch

        self.split, self.device = split, device
        self.state = {k: torch.as_tensor(v) for k, v in (state or {}).items()}
        self.top = split.top if share else copy.deepcopy(split.top)
        if state is not None:
            self.top.load_state_dict({k[len("top.") :]: v for k, v in self.state.items() if k.startswith("top.")})
        self.top.eval().to(device)
        self._heads: dict[str, Any] = {}

    @classmethod
    def from_run(cls, run_dir: str | Path, weights: str = "aligned-seed0", device: str = "cpu") -> TrainedNetwork:
        """The model ``weights`` (``models/<weights>.safetensors``, e.g. ``"aligned-seed0"``, ``"twin-seed1"``) of a
        fine-tuning run directory (its ``config.yaml`` rebuilds the network).

        Raises:
            DataError: no such model in the run directory (the available ones are named).
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from llmvem.config import load_config
        from llmvem.vision.trainable import split_from_config

        run_dir = Path(run_dir)
        path = run_dir / "models" / f"{weights}.safetensors"
        if not path.is_file():
            have = sorted(p.stem for p in (run_dir / "models").glob("*.safetensors"))
            raise DataError(f"no model {weights!r} in {run_dir}; available: {have or 'none (is this a training run?)'}")
        cfg = load_config(run_dir / "config.yaml")  # the one config reader: UTF-8, YAML and keys checked
        try:
            state = load_file(str(path))
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # a truncated or foreign file
            raise DataError(f"model file {path} is damaged or not safetensors ({exc}); retrain or restore it") from exc
        return cls(split_from_config(cfg.finetune, device=device), state, device, share=True)

    def features(self, activations: Any, batch_size: int = 128) -> np.ndarray:
        """Pooled features (n, D) float32 of the bottom's cached ``activations`` (n, …)."""
        return self.outputs(activations, batch_size, heads=())["features"]

    def outputs(self, activations: Any, batch_size: int = 64, heads: tuple[str, ...] = HEADS) -> dict[str, np.ndarray]:
        """``features`` (n, D) and the outputs of the network's ``heads`` among ``heads`` (``projection`` for
        ``project``, ``task``), float32, on cached ``activations`` (n, …), batch by batch."""
        import torch

        mods = {h: self.head_module(h) for h in heads if self.has_head(h)}
        outs: dict[str, list[np.ndarray]] = {}
        with torch.inference_mode():
            for i in range(0, len(activations), batch_size):
                a = torch.from_numpy(np.ascontiguousarray(activations[i : i + batch_size], dtype=np.float32))
                f = self.top(a.to(self.device))
                outs.setdefault("features", []).append(f.float().cpu().numpy())
                for h, m in mods.items():
                    outs.setdefault("projection" if h == "project" else h, []).append(m(f).float().cpu().numpy())
        return {k: np.concatenate(v).astype(np.float32) for k, v in outs.items()}

    def image_features(
        self, stimuli: Any, batch_size: int = 32, progress: bool = False, layer: str | None = None,
        pooling: str | None = None, label: str = "features",
    ) -> np.ndarray:  # fmt: skip
        """Pooled features (n, D) float32 of images (a stimulus set), or of the named module ``layer`` of the
        trained network (``pooling`` as in :func:`llmvem.vision.taps.tap_layer`; needs ``share=True``, as
        :meth:`from_run` builds it, so the backbone holds the trained weights)."""
        import torch

        from llmvem.progress import progress_bar
        from llmvem.vision.taps import tap_layer

        bb = self.split.backbone  # shares its modules with bottom and top
        if layer is not None and self.top is not self.split.top:
            raise ConfigError("a layer tap needs the network built with share=True (TrainedNetwork.from_run)")
        tapped = tap_layer(bb, layer, pooling=pooling) if layer is not None else None
        out = []
        with progress_bar(label, total=len(stimuli), enabled=progress) as advance, torch.inference_mode():
            for i in range(0, len(stimuli), batch_size):
                rows = range(i, min(i + batch_size, len(stimuli)))
                batch = torch.stack([bb.preprocess(stimuli.load(k)) for k in rows])
                if tapped is not None:
                    out.append(tapped.features(batch).cpu().numpy())
                else:
                    out.append(self.top(self.split.bottom(batch.to(self.device))).cpu().numpy())
                advance(len(batch))
        return np.concatenate(out).astype(np.float32)

    def has_head(self, name: str) -> bool:
        return any(k.startswith(f"{name}.") for k in self.state)

    def head(self, name: str, features: np.ndarray) -> np.ndarray:
        """The head ``name`` (``"project"`` or ``"task"``) applied to pooled ``features`` (n, D): (n, K) float32."""
        return apply_head(self.head_module(name), features, self.device)

    def head_module(self, name: str) -> Any:
        """The head ``name`` as a torch module in eval mode, rebuilt from the weights.

        Raises:
            DataError: the network has no such head (a twin has no projection; an alignment-only model no task).
        """
        if name not in self._heads:
            self._heads[name] = rebuild_head(self.state, name).eval().to(self.device)
        return self._heads[name]


def apply_head(module: Any, features: np.ndarray, device: str = "cpu") -> np.ndarray:
    """A head module (in eval mode, on ``device``) applied to features (n, D): (n, K) float32."""
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(np.asarray(features, dtype=np.float32)).to(device)
        return module(x).float().cpu().numpy().astype(np.float32)


def rebuild_head(state: dict[str, Any], name: str) -> Any:
    """The head ``name`` of a state dict as a module: a ``Linear`` (``weight``, ``bias``), a PCA voxel head
    (``scores.*`` with its fixed ``components`` and ``mean``) or a projection MLP (with BatchNorm when it has
    running statistics); the input size is read off the first layer."""
    import torch

    from llmvem.align.heads import PCAVoxelHead, projection_head

    prefix = f"{name}."
    sub = {k[len(prefix) :]: torch.as_tensor(v) for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        have = sorted({k.split(".")[0] for k in state})
        raise DataError(f"the model has no {name!r} head (its weights hold: {', '.join(have)})")
    if "weight" in sub:  # a linear head
        module: Any = torch.nn.Linear(sub["weight"].shape[1], sub["weight"].shape[0])
    elif "components" in sub:  # a PCA voxel head: its fixed inverse map is in the weights
        pca = PCAVoxelHead.__new__(PCAVoxelHead)
        pca.components, pca.mean = sub["components"].double().numpy(), sub["mean"].double().numpy()
        module = pca.module(sub["scores.weight"].shape[1])
    else:  # a projection MLP: the first Linear gives the input size, the last the output size
        linears = sorted(int(k.split(".")[0]) for k in sub if k.endswith("weight") and sub[k].ndim == 2)
        kind = "mlp_bn" if any(k.endswith("running_mean") for k in sub) else "mlp"
        module = projection_head(kind, sub[f"{linears[0]}.weight"].shape[1], sub[f"{linears[-1]}.weight"].shape[0])
    module.load_state_dict(sub)
    return module
