"""The transformers backend with a tiny randomly initialised LLaVA built from a config (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llmvem.data.stimuli import StimulusSet
from llmvem.describe import DESCRIBERS, describe_stimuli
from llmvem.describe.local_vlm import TransformersDescriber
from llmvem.errors import BackendError, ConfigError
from llmvem.store import ArtifactStore

WORDS = "a the cat dog red blue green image photo of in on with is and street tree sky person car house".split()  # noqa: SIM905


def build_tiny_llava(folder: Path) -> Path:
    """A 1-layer LLaVA (CLIP vision tower, Llama text model) and its processor, saved with ``save_pretrained``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    specials = ["<unk>", "<pad>", "<s>", "</s>", "<image>", "user:", "assistant:", "describe", "this", "what"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(specials + WORDS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        additional_special_tokens=["<image>"],
    )  # fmt: skip
    template = (
        "{% for m in messages %}user: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
        "{% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %}assistant: "
        "{% endif %}"
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default", chat_template=template,
        num_additional_image_tokens=1,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, projection_dim=32,
        ),
        text_config=LlamaConfig(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=512, pad_token_id=1, bos_token_id=2, eos_token_id=3,
        ),
        image_token_id=vocab["<image>"], vision_feature_select_strategy="default", vision_feature_layer=-1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    with torch.no_grad():  # only ordinary words can win the argmax: non-empty, readable greedy outputs
        model.lm_head.weight[: len(specials)] = 0.0
        model.lm_head.weight[len(specials) :] += 0.5 * model.lm_head.weight[len(specials) :].sign()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


def _images(tmp_path: Path, n: int) -> StimulusSet:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(3)
    for i in range(n):
        size = (20 + 7 * i, 30 + 3 * i, 3)
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(d / f"im{i}.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return StimulusSet.from_paths(sorted(d.iterdir()), verify=False)


def test_batched_generation_matches_one_by_one(tiny_llava: Path, tmp_path: Path) -> None:
    stim = _images(tmp_path, 5)
    store = ArtifactStore(tmp_path / "s")
    params = {"temperature": 0.0, "max_tokens": 6, "seed": 0}
    batched = DESCRIBERS.get("transformers")(str(tiny_llava), batch_size=3, dtype="float32")
    desc = describe_stimuli(
        stim, batched, prompt=["caption", "what is this"], params=params, store=store, progress=False,
        raise_on_failure=False,
    )  # fmt: skip
    assert [f.image for f in desc.failures] == ["broken", "broken"] and desc.failures[0].kind == "input"
    assert len(desc) == 10
    for r in desc.records:
        words = r.text.split()
        assert 1 <= len(words) <= 6 and set(words) <= set(WORDS), r.text
        assert r.completion_tokens == 6 and r.finish_reason == "length" and r.prompt_tokens and r.prompt_tokens > 16
        assert r.backend == "transformers" and r.model == str(tiny_llava) and r.params == params
    single = TransformersDescriber(str(tiny_llava), batch_size=1)
    one = describe_stimuli(
        stim.subset(["im0", "im3"]), single, prompt=["caption", "what is this"], params=params,
        store=ArtifactStore(tmp_path / "s2"), progress=False,
    )  # fmt: skip
    by_key = {(r.image, r.prompt): r.text for r in desc.records}
    assert [r.text for r in one.records] == [by_key[(r.image, r.prompt)] for r in one.records]  # padding is invisible
    assert batched.identity()["weights_sha256"] == single.identity()["weights_sha256"]


def test_identity_follows_the_weights(tiny_llava: Path, tmp_path: Path) -> None:
    import shutil

    copy = shutil.copytree(tiny_llava, tmp_path / "copy")
    a = TransformersDescriber(str(tiny_llava)).identity()
    b = TransformersDescriber(str(copy)).identity()
    assert a["weights_sha256"] == b["weights_sha256"]
    w = copy / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 1
    w.write_bytes(bytes(data))
    assert TransformersDescriber(str(copy)).identity()["weights_sha256"] != a["weights_sha256"]


def test_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackendError, match="HF_HUB_OFFLINE"):
        TransformersDescriber("nobody/no-such-vlm-xyz")
    with pytest.raises(ConfigError, match="dtype"):
        TransformersDescriber(str(tmp_path), dtype="int8")
    with pytest.raises(BackendError, match="no weights files"):
        TransformersDescriber(str(tmp_path)).identity()
