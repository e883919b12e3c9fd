"""Fine-tuning / image→text targets averaged over several NSD describers and prompts (the text targets of the
runner: :func:`llmvem.text.embed.embed_text_sources` of ``NSDShared1000.description_sets``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmvem.data.nsd_shared1000 import load_nsd_shared1000
from llmvem.errors import DataError
from llmvem.text import embed_texts
from llmvem.text.embed import embed_text_sources

pytestmark = pytest.mark.data


def test_description_sets_and_mean_targets(data_dir: Path, tmp_path: Path) -> None:
    from llmvem.store import ArtifactStore

    nsd = load_nsd_shared1000(data_dir)
    sources, sets = nsd.description_sets("all", "general_description")
    assert sources == [(m, "general_description") for m in nsd.models]
    # qwen2.5vl_32b has no general description of this image: it is not in the all-sources set
    assert "shared0430_nsd31937" not in sets and len(sets) == 999
    assert all(len(v) == len(nsd.models) for v in sets.values())

    emb_kw = {"store": ArtifactStore(tmp_path / "c"), "progress": False}
    ids = ["shared0001_nsd02951", "shared0430_nsd31937", "shared0002_nsd02991", "shared0003_nsd03050"]
    two, two_sets = nsd.description_sets(["gemma3_4b", "qwen2.5vl_7b"], "general_description")
    assert all(i in two_sets for i in ids)  # both of these describers cover every image asked for
    target = embed_text_sources([[two_sets[i][k] for i in ids] for k in range(len(two))], **emb_kw)
    a = embed_texts([nsd.descriptions_for("gemma3_4b", "general_description")[i] for i in ids], **emb_kw)
    b = embed_texts([nsd.descriptions_for("qwen2.5vl_7b", "general_description")[i] for i in ids], **emb_kw)
    mean = (a + b) / np.linalg.norm(a + b, axis=1, keepdims=True)
    np.testing.assert_allclose(target, mean, atol=1e-6)

    # one source: exactly that source's embeddings (the cache key and numbers of single-source runs are unchanged)
    _, one_sets = nsd.description_sets("gemma3_4b", "general_description")
    one = embed_text_sources([[one_sets[i][0] for i in ids]], **emb_kw)
    np.testing.assert_array_equal(one, a)

    with pytest.raises(DataError, match="no descriptions by model 'gpt-9'"):
        nsd.description_sets(["gemma3_4b", "gpt-9"], "all")
    with pytest.raises(DataError, match="no description source"):
        nsd.description_sets([], "all")
