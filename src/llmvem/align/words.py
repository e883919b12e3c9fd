"""The vocabulary head of a fine-tuned run directory (``finetune.loss: visual_words``): logits, words, PIF features
of any images. Used by ``llmvem words`` and ``llmvem features --pif``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmvem.errors import ConfigError, DataError
from llmvem.visualwords.vocab import Vocabulary, load_vocabulary

#: a visual-words run's training words of several tokens (word → token ids), written by the NSD pipeline
PIECES_FILE = "visual_words_pieces.json"

if TYPE_CHECKING:
    from llmvem.config import ExperimentConfig


def run_vocabulary(run_dir: str | Path, weights: str) -> tuple[Vocabulary, dict[str, Any]]:
    """The vocabulary of a visual-words run and the state dict of its model ``weights``.

    Raises:
        DataError: the run was not trained with ``finetune.loss: visual_words``, the model has no vocabulary head
            (a twin), or its head and the vocabulary differ in size.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from llmvem.config import load_config

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise DataError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")  # the one config reader: YAML, UTF-8 and every key checked
    if cfg.finetune.loss != "visual_words":
        raise DataError(
            f"run {run_dir} was trained with finetune.loss={cfg.finetune.loss!r}: its models have no vocabulary "
            "head. Train with --set finetune.loss=visual_words to read out visual words."
        )
    path = run_dir / "models" / f"{weights}.safetensors"
    if not path.is_file():
        have = sorted(p.stem for p in (run_dir / "models").glob("*.safetensors"))
        raise DataError(f"no model {weights!r} in {run_dir}; available: {have or 'none (is this a training run?)'}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise DataError(f"model file {path}: cannot read it ({exc}); train the run again or restore the file") from None
    if "project.weight" not in state:
        raise DataError(f"model {weights!r} of {run_dir} has no vocabulary head (a twin, λ = 0); use an aligned model")
    vocab = load_vocabulary(cfg.finetune.vocabulary)
    vocab.check_size(state["project.weight"].shape[0], f"the vocabulary head of {weights!r}")
    return vocab, state


def logits_from_run(
    stimuli: Any, run_dir: str | Path, weights: str = "aligned-seed0", batch_size: int = 32, device: str = "cpu",
    progress: bool = False,
) -> tuple[np.ndarray, Vocabulary]:  # fmt: skip
    """Vocabulary logits (n, V) float32 of ``stimuli`` from a visual-words run's model (its ``project`` head on its
    pooled features, :class:`~llmvem.align.network.TrainedNetwork`), and its vocabulary."""
    from llmvem.align.network import TrainedNetwork

    vocab, _ = run_vocabulary(run_dir, weights)
    net = TrainedNetwork.from_run(run_dir, weights, device)
    feats = net.image_features(stimuli, batch_size, progress, label=f"features ({weights})")
    return net.head("project", feats), vocab


def words_from_run(
    stimuli: Any, run_dir: str | Path, weights: str = "aligned-seed0", k: int = 10, **kw: Any
) -> dict[str, list[str]]:
    """``{image file name: [k words, best first]}`` for ``stimuli`` from a visual-words run's model.

    Words split into several tokens are read as words (:func:`~llmvem.visualwords.top_words_merged`) when the run
    saved its training words (``visual_words_pieces.json``); runs made before that read single tokens.
    """
    import json

    from llmvem.visualwords.readout import top_words, top_words_merged

    logits, vocab = logits_from_run(stimuli, run_dir, weights, **kw)
    pieces_file = Path(run_dir) / PIECES_FILE
    if pieces_file.is_file():
        try:
            pieces = json.loads(pieces_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{pieces_file}: not readable JSON ({exc}); delete it to read single tokens") from None
        words = top_words_merged(logits, vocab, pieces, k)
    else:
        words = top_words(logits, vocab, k)
    return dict(zip((Path(p).name for p in stimuli.paths), words, strict=True))


def pif_from_run(stimuli: Any, run_dir: str | Path, weights: str = "aligned-seed0", **kw: Any) -> np.ndarray:
    """PIF features (n, E) float32 of ``stimuli``: softmax(vocabulary head) @ token embeddings."""
    from llmvem.visualwords.pif import pif_features

    logits, vocab = logits_from_run(stimuli, run_dir, weights, **kw)
    return pif_features(logits, vocab.embeddings)


def words_from_config(cfg: ExperimentConfig, images: str | Path) -> dict[str, list[str]]:
    """``{image file name: [words.top_k words]}`` of a folder of images from the visual-words model of
    ``features.model`` (``llmvem words``).

    Raises:
        ConfigError: no ``features.model``; a run not trained with ``finetune.loss=visual_words``.
    """
    from llmvem.data.stimuli import StimulusSet

    f = cfg.features
    if f.model is None:
        raise ConfigError("say which model: --model RUN_DIR (a run trained with --set finetune.loss=visual_words)")
    stim = StimulusSet.from_folder(images)
    return words_from_run(stim, f.model, f.weights, cfg.words.top_k, batch_size=f.batch_size, device=cfg.device,
                          progress=cfg.progress)  # fmt: skip


def save_words(path: str | Path, words: dict[str, list[str]]) -> Path:
    """Write ``{image: [word, ...]}`` as JSON to ``path`` atomically; returns the path."""
    import json

    from llmvem.store import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(words, indent=1, ensure_ascii=False) + "\n")
    return path
