"""`head_outputs` rebuilds a trained model's projection / task head from its weights alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmvem.align.finetune import build_model, head_outputs
from llmvem.config import FinetuneConfig
from llmvem.errors import DataError


class _Split:  # the smallest thing build_model needs: a top and its feature size
    def __init__(self, d: int) -> None:
        self.top = torch.nn.Identity()
        self.feature_dim = d


@pytest.mark.parametrize("projection", ["linear", "mlp", "mlp_bn"])
def test_head_outputs_equal_the_model_heads(projection: str) -> None:
    torch.manual_seed(0)
    cfg = FinetuneConfig(projection=projection)
    model = build_model(_Split(12), cfg, text_dim=5, n_labels=3, task="multilabel")
    model.train()
    x = torch.randn(32, 12)
    for _ in range(3):  # move BatchNorm's running statistics away from their initial values
        model(x * 3 + 1)
    model.eval()
    with torch.inference_mode():
        out = model(x)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    feats = x.numpy()
    np.testing.assert_allclose(head_outputs(state, "project", feats, projection), out["projection"].numpy(), atol=1e-5)
    np.testing.assert_allclose(head_outputs(state, "task", feats), out["task"].numpy(), atol=1e-5)


def test_head_outputs_missing_head() -> None:
    model = build_model(_Split(4), FinetuneConfig(), text_dim=None, n_labels=2, task="multilabel")  # a twin
    with pytest.raises(DataError, match="no 'project' head"):
        head_outputs(model.state_dict(), "project", np.zeros((2, 4), np.float32))
