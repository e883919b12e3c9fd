"""Experiment configuration: one YAML file drives a whole run.

The schema is a tree of pydantic models that reject unknown keys. Every CLI flag maps to one dotted key of this tree
(the field's own option: :mod:`llmvem.cli.options`) and ``--set key.path=value`` reaches any other key.

Example
-------
>>> cfg = load_config(overrides={"train.epochs": "50", "dataset.n_images": "120"})
>>> cfg.train.epochs, cfg.dataset.n_images
(50, 120)
>>> load_config(overrides={"train.epoch": "50"})
Traceback (most recent call last):
...
llmvem.errors.ConfigError: invalid config:
  - train.epoch: unknown key; allowed keys of train: ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmvem.errors import ConfigError, short_repr


def cli(flag: str | None = None, short: str | None = None, show_default: bool = True) -> dict[str, Any]:
    """``json_schema_extra`` of a field whose CLI option is not ``--field-name`` (a short flag, another name, no
    default in the help). Options are generated from the fields: :mod:`llmvem.cli.options`."""
    return {"cli": {"flag": flag, "short": short, "show_default": show_default}}


class _Section(BaseModel):
    # allow_inf_nan=False: no setting is meaningful as NaN or ±inf (a timeout of inf never fires);
    # defer_build: the validators are built on first use, so `llmvem --help` (which reads the fields) stays quick
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False, defer_build=True)


class DatasetConfig(_Section):
    """Which stimuli (and brain data) a run uses."""

    name: Literal["demo", "objects92", "nsd_shared1000", "nsd_objects92", "folder"] = Field(
        "demo",
        description="demo (generated, offline), objects92 (real data), nsd_objects92, folder (your images) ...",
        json_schema_extra=cli("--dataset"),
    )
    n_images: int = Field(240, ge=24, le=5000, description="demo only: number of generated images")
    n_voxels_per_roi: int = Field(200, ge=10, le=20000, description="demo only: simulated voxels per ROI")
    n_repeats: int = Field(3, ge=2, le=20, description="demo only: presentations per image")
    images: Path | None = Field(
        None, description="folder: your images; one subfolder per class (ImageNet layout) gives the class labels"
    )
    descriptions: Path | None = Field(
        None, description="folder: JSONL/CSV/JSON of image + text (image matched by file name or stem)"
    )
    labels: Path | None = Field(None, description="folder: CSV/TSV/JSONL of image, label (overrides the subfolders)")
    brain: Path | None = Field(
        None, description="folder: brain data for voxel tasks (.npz from save_brain, Algonauts folder, NSD root)"
    )
    missing_descriptions: Literal["fail", "drop"] = Field(
        "fail", description="folder: images without a description stop the run (fail) or are left out (drop)"
    )
    heldout: str = Field(
        "auto",
        description="folder: held-out images: auto (voxel tasks: the brain data's 'test' split when it names ≥ 2 of "
        "the images; else seeded), seeded (a seeded share finetune.val_fraction), or a split name of the brain data",
    )


class DescribeConfig(_Section):
    """The describe stage: which backend writes the descriptions, with which prompts and parameters."""

    backend: str = Field("import", description="describer backend: openai, transformers or import")
    model: str = Field("ground-truth", description="model name (served name, hub id or folder, or a label)")
    prompt: str | list[str] = Field(
        "caption", description="prompt name (caption, detailed, class_conditioned) or text; several: a list"
    )
    source: Path | None = Field(None, description="import backend: JSONL/CSV/COCO JSON file of texts")
    labels: Path | None = Field(None, description="CSV/JSONL of image, label: the {label} of class_conditioned")
    n_samples: int = Field(
        1, ge=1, le=1000, description="descriptions per image and prompt", json_schema_extra=cli("--samples")
    )
    temperature: float = Field(0.0, ge=0, le=5, description="sampling temperature (0: greedy)")
    max_tokens: int = Field(512, ge=1, description="longest description, in tokens")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling (None: backend default)")
    base_url: str = Field("http://localhost:8000/v1", description="openai backend: API root (vLLM, ollama ...)")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai backend: env variable holding the API key")
    revision: str | None = Field(None, description="model revision / weights tag, part of the cache key")
    concurrency: int = Field(8, ge=1, le=1024, description="openai backend: requests in flight at once")
    batch_size: int = Field(4, ge=1, description="transformers backend: images per generate call")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="transformers backend: dtype of the weights"
    )
    timeout_s: float = Field(120.0, gt=0, description="seconds allowed per request", json_schema_extra=cli("--timeout"))
    max_retries: int = Field(5, ge=0, le=100, description="retries on 429, 5xx, timeouts, dropped connections")
    retry_base_s: float = Field(1.0, ge=0, description="first backoff (doubles per retry, with jitter)")
    max_side: int = Field(1536, ge=0, description="downscale images to this longer side before sending (0: never)")
    max_consecutive_failures: int = Field(50, ge=1, description="stop after this many backend failures in a row")
    image_splitting: bool | None = Field(
        None, description="transformers backend: tile large images (Idefics3/SmolVLM); None: the processor's default"
    )
    clean: str | list[str] = Field(
        default_factory=list, description="cleaning steps for the output texts: preamble, closing (raw text kept)"
    )


class EmbedConfig(_Section):
    """The embed stage: text encoder and how long texts are handled."""

    encoder: str = Field(
        "minilm",
        description="text encoder: minilm, mpnet, sentence-transformers:ID|PATH, clip, clip:ID|PATH, "
        "open_clip:PATH|hf-hub:ID|ARCH:TAG, glove, glove-nouns|verbs|adjectives|adverbs|prepositions",
    )
    normalize: bool = Field(True, description="unit-length rows")
    policy: Literal["chunk", "truncate"] = Field("chunk", description="texts longer than the encoder's window")
    batch_size: int = Field(64, ge=1)
    aggregate: Literal["mean", "all"] = Field("mean", description="several texts per image: average them, or keep all")
    select_model: str | None = Field(None, description="embed only texts by this describer model")
    select_prompt: str | None = Field(None, description="embed only texts made with this prompt")


class FeaturesConfig(_Section):
    """Image features of the vision backbone."""

    backbone: str = Field(
        "efficientnet_lite0",
        description="a backbone family's name: efficientnet_lite0|1|2, timm:ARCH, hf:ID|PATH (CLIP, SigLIP, DINOv2, "
        "ViT), hf_clip:ID|PATH, open_clip:ARCH|PATH, torchvision:NAME (llmvem.vision.families)",
    )
    layer: str | None = Field(None, description="tap this named module (layer3, blocks.9, encoder.layers.5 ...)")
    layers: str | list[str] | None = Field(
        None,
        description="tap several modules in one forward pass: a,b,c or all (the backbone's blocks); each layer is "
        "cached as --layer would be, and -o f.npy writes f.<layer>.npy per layer plus one f.ids.txt",
    )
    pooling: Literal["avg", "cls", "max"] | None = Field(None, description="null: the backbone's (or layer's) default")
    reduce: str = Field(
        "none",
        description="with --layer(s): none (pooled maps), srp:K (seeded sparse random projection of the whole map "
        "to K values) or pca:K (incremental PCA fitted on --reduce-fit-n images)",
    )
    reduce_seed: int = Field(0, description="seed of the srp projection or of the PCA's fit subset")
    reduce_fit_n: int = Field(1000, ge=1, description="images the pca reduction is fitted on (a seeded subset)")
    precision: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="autocast of the forward pass (bfloat16 / float16: faster on GPU; part of the cache key)"
    )
    workers: int | None = Field(
        None, ge=0, description="image decoding threads (null: one per core, at most 4; 0: no overlap with the model)"
    )
    batch_size: int = Field(32, ge=1, description="images per forward pass")
    model: Path | None = Field(
        None, description="run directory of a fine-tuned model (llmvem train); else the pretrained backbone"
    )
    weights: str = Field("aligned-seed0", description="which of the run's models/<name>.safetensors to use")
    pif: bool = Field(False, description="with a visual_words model: PIF features softmax(vocab head) @ embeddings")
    head: Literal["project", "task"] | None = Field(
        None, description="with --model: the output of a head (project: text-space projection, task: task logits)"
    )
    subset: str | None = Field(
        None, description="nsd_stimuli.hdf5 only: all (default), shared1000, shared515, subjNN or a text file of ids"
    )
    design: Path | None = Field(
        None, description="nsd_stimuli.hdf5 only: nsd_expdesign.mat (default: found from the NSD root layout)"
    )


class TrainConfig(_Section):
    """Baseline and language-aligned twins trained on frozen backbone features.

    Both twins share architecture, data, seed and schedule; the aligned twin adds ``lambda_align`` × the alignment
    loss between its projected embedding and the description embedding.
    """

    embed_dim: int = Field(256, ge=2, description="width of the trained image embedding")
    hidden_dim: int = Field(512, ge=2)
    epochs: int = Field(150, ge=1, description="twin training epochs")
    batch_size: int = Field(64, ge=4)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    loss: Literal["infonce", "infonce_one_way", "cosine", "byol"] = Field("infonce", description="alignment loss")
    temperature: float = Field(0.1, gt=0)
    lambda_align: float = Field(1.0, ge=0, description="weight of the alignment loss in the aligned twin")
    task: Literal["voxels", "none"] = Field("voxels", description="task head: voxel regression, or none (Doerig)")


class FinetuneConfig(_Section):
    """Fine-tuning a pretrained backbone with a language target against its twin (``llmvem train``).

    The aligned model minimises ``task + λ(epoch) · alignment``; its twin is identical but trained on the task alone
    (λ = 0). Only the last ``trainable_blocks`` blocks train; the frozen bottom's activations are cached.
    """

    backbone: str = Field(
        "efficientnet_lite0",
        description="a backbone its family can split: efficientnet_lite0|1|2, timm:<resnet*|vit_*|deit_*|convnext_*>, "
        "hf:ID|PATH, hf_clip:ID, open_clip:<ViT tower>, torchvision:<resnet*|vgg*|efficientnet_*|...>",
    )
    pooling: Literal["avg", "max", "cls"] | None = Field(None, description="the backbone's pooling (null: its default)")
    checkpoint_path: Path | None = Field(
        None, description="timm, torchvision, efficientnet_lite: local weights file (else the family's default)"
    )
    trainable_blocks: int | None = Field(3, ge=0, description="blocks at the top that train (null: all)")
    augment: Literal["none", "flip", "crop_flip"] = Field(
        "none", description="trainable_blocks null only: per-sample random resized crop and/or horizontal flip"
    )
    augment_min_scale: float = Field(0.25, gt=0, le=1, description="crop_flip: smallest crop, as a share of the area")
    mixup_alpha: float = Field(0.0, ge=0, description="trainable_blocks null only: mixup Beta(α, α) (0: off)")
    cutmix_alpha: float = Field(0.0, ge=0, description="trainable_blocks null only: CutMix Beta(α, α) (0: off)")
    mix_prob: float = Field(1.0, ge=0, le=1, description="share of training batches mixed (mixup/CutMix on)")
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="timm / torchvision backbones: model-constructor keywords (img_size, drop_path_rate ...)",
    )
    projection: Literal["linear", "mlp", "mlp_bn"] = "mlp_bn"
    aligned_task: Literal["none", "multilabel"] = Field(
        "multilabel", description="task loss kept in the aligned model: none (alignment only) or HED labels"
    )
    task: Literal["auto", "classifier", "multilabel", "voxels", "voxels_pca", "none"] = Field(
        "auto",
        description="dataset folder: task of both the aligned model and its twin (auto: voxels with brain data, else "
        "classifier with labels, else none = alignment only, no twin); nsd_objects92 uses aligned_task",
    )
    pca_components: int = Field(100, ge=1, description="task voxels_pca: PCA components of the training voxels")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    loss: Literal["infonce", "infonce_one_way", "cosine", "byol", "visual_words"] = Field(
        "infonce", description="visual_words: a vocabulary head fit to the descriptions' bag of words (VW-LMM)"
    )
    vocabulary: str = Field("minilm", description="visual_words: tokenizer/model whose vocabulary the head predicts")
    vocab_head_init: Literal["random", "embeddings"] = Field(
        "embeddings", description="visual_words: head rows from the token embeddings, or random"
    )
    bow_weighting: Literal["tf", "tfidf"] = Field(
        "tfidf", description="visual_words: description word counts (tf) or tf-idf over the training descriptions"
    )
    temperature: float = Field(0.1, gt=0)
    learn_temperature: bool = False
    lambda_align: float = Field(1.0, ge=0)
    lambda_schedule: Literal["constant", "linear_warmup"] = "constant"
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    epochs: int = Field(10, ge=1)
    warmup_epochs: int = Field(1, ge=0)
    batch_size: int = Field(64, ge=2)
    grad_accum: int = Field(1, ge=1, description="batches per optimizer step")
    amp: bool = Field(True, description="bfloat16 autocast on CUDA (ignored on CPU)")
    early_stopping_patience: int = Field(0, ge=0, description="epochs without validation improvement (0: off)")
    sync_batchnorm: bool = Field(True, description="torchrun on GPUs: BatchNorm statistics of the global batch")
    tensorboard: bool = Field(True, description="also log the metrics as TensorBoard scalars in <checkpoints>/tb")
    val_fraction: float = Field(0.15, gt=0, lt=0.9, description="held-out share of the training images")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    n_images: int = Field(1000, ge=20, le=1000, description="NSD images used (first n)")

    def needs_whole_network(self, trains_whole_network: bool) -> str | None:
        """The one rule "augmentation and mixing need the whole network": with a frozen bottom the inputs are cached
        activations, which cannot be cropped, flipped or mixed. Returns the message when this config breaks it for
        a network that trains whole (``trainable_blocks: null``, or a split built so by hand) or not, else None;
        the validator below raises it as a config error, :func:`llmvem.align.finetune.check_inputs` for a split
        given to the Python API."""
        if trains_whole_network:
            return None
        where = f"with trainable_blocks={self.trainable_blocks}" if self.trainable_blocks is not None else (
            "with a frozen bottom")  # fmt: skip
        asked = ((f"augment={self.augment!r}", "needs", "it needs", "cropped or flipped", self.augment != "none"),
                 ("mixup_alpha / cutmix_alpha", "need", "they need", "mixed",
                  self.mixup_alpha > 0 or self.cutmix_alpha > 0))  # fmt: skip
        for what, verb, pronoun, done, on in asked:
            if on:
                return (f"finetune.{what} {verb} trainable_blocks: null ({pronoun} the whole network to train): "
                        f"{where} the inputs are cached activations, which cannot be {done}")  # fmt: skip
        return None

    @model_validator(mode="after")
    def _augment_needs_images(self) -> FinetuneConfig:
        problem = self.needs_whole_network(self.trainable_blocks is None)
        if problem is not None:
            raise ValueError(problem)
        if self.model_kwargs:
            from llmvem.vision.families import FAMILIES  # (the family says which keywords it takes)

            problem = FAMILIES.keyword_error(self.backbone, ["model_kwargs"])
            if problem is not None:
                raise ValueError(problem)
        return self


class EncodingConfig(_Section):
    """Voxelwise ridge encoding."""

    alphas: list[float] = Field(default_factory=lambda: [10.0**k for k in range(-2, 7)])
    cv: Literal["gcv", "loo", "frac"] | int = Field(
        "loo",
        description="α per voxel by exact leave-one-out (default), GCV (~n_alphas× faster: for NSD-scale data), "
        "K-fold CV (an int ≥ 2), or 'frac': fractional ridge (Rokem & Kay 2020, as Doerig et al.), the fraction of "
        "the OLS weight norm per voxel by 5-fold held-out R² over `fractions`",
    )
    fractions: list[float] = Field(
        default_factory=lambda: [k * (1 / 19) + 0.05 for k in range(19)] + [1.05],  # = np.linspace's values
        description="cv: frac — fractions of the OLS weight norm, strictly increasing in (0, 1.1]; default Doerig "
        "et al.'s np.linspace(0.05, 1.05, 20)",
    )
    ridge_backend: Literal["auto", "numpy", "torch"] = Field("auto", description="ridge arrays: torch on CUDA if auto")
    ridge_dtype: Literal["float32", "float64"] = "float32"
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="held-out share when the brain data has no 'test' split (seeded by `seed`)"
    )
    permutations: int = Field(
        0, ge=0, description="permutations per voxel for p-values (ROI fraction significant, FDR); 0: off"
    )
    draw_maps: bool = Field(
        True, description="draw the r and partition maps of brains with a space as PNGs (maps/…/r.png) in the report"
    )
    partition: bool = Field(
        False,
        description="evaluate encoding: also partition held-out R² between the 2–3 feature spaces of "
        "evaluate.inputs.features (unique part per space, shared parts, joint; banded ridge, GCV) per voxel and ROI: "
        "partition.csv, partition/<brain>/, partition.png",
    )
    layer_sweep: bool = Field(
        False,
        description="evaluate encoding: the feature sets of evaluate.inputs.features are the layers of one model, "
        "in depth order; choose the best layer per ROI on a seeded validation split of the training images, report "
        "the curve and the chosen layer's test score: layer_sweep.csv, layer_sweep_subjects.csv, layer_sweep.png",
    )
    sweep_validation_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="encoding layer sweeps: share of the training images the layer is chosen on (seeded by "
        "`seed`; never the test images); a ridge is fitted on the other training images",
    )


class RSAConfig(_Section):
    """Representational similarity analysis."""

    metric: Literal["correlation", "euclidean", "cosine"] = Field("correlation", description="RDM dissimilarity")
    method: Literal["spearman", "pearson", "kendall_tau_a", "cosine"] = Field("spearman", description="RDM comparison")
    searchlight: bool = Field(
        False, description="evaluate rsa: also a volumetric searchlight map per feature set on each volume brain source"
    )
    searchlight_radius: float = Field(
        6.0, gt=0, le=50, description="searchlight sphere radius in voxels (Doerig et al.: 6; ≥ 50 % in the mask)"
    )
    layer_sweep: bool = Field(
        False,
        description="evaluate rsa: the feature sets are the layers of one model, in depth order; choose the best "
        "layer per RDM target on the RDMs of the training images (RSA fits nothing; never the test images), score "
        "it on the test images' RDMs: layer_sweep.csv, layer_sweep_subjects.csv, layer_sweep.png",
    )
    sweep_validation_fraction: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="RSA layer sweeps: choose on this seeded share of the training images only; None (default): "
        "on all of them (RSA fits nothing, so none leak; never the test images)",
    )
    targets: list[str] = Field(default_factory=lambda: ["cichy_it", "cichy_evc", "kriegeskorte_hit"])
    align_images: int = Field(
        1000, ge=50, le=1000, description="objects92: NSD images used to learn the image→text map"
    )
    align_model: str | list[str] = Field(
        "qwen2.5vl_7b",
        description="NSD describer(s) of the image→text map / fine-tuning target: a name, a list or 'all' "
        "(several: the mean of their unit-length embeddings)",
    )
    align_prompt: str | list[str] = Field("general_description", description="NSD prompt(s): a name, a list or 'all'")


CaptionMetric = Literal["bleu", "meteor", "rouge_l", "cider_d", "embedding"]


class DecodeConfig(_Section):
    """Brain → embedding decoding (``llmvem evaluate decode``)."""

    metric: Literal["correlation", "cosine"] = Field(
        "correlation", description="similarity for identification and caption retrieval"
    )
    top_k: int = Field(5, ge=1, description="captions retrieved per test stimulus")
    caption_metrics: list[CaptionMetric] = Field(
        default_factory=lambda: list(get_args(CaptionMetric)),
        description="metrics of the decoded captions against the human references (needs --captions and "
        "references; [] for none): BLEU-1..4, METEOR, ROUGE-L, CIDEr-D (coco-caption, Java) and embedding cosine",
        json_schema_extra=cli("--caption-metric"),
    )
    exclude_own: bool = Field(
        True, description="the decoded caption is the nearest corpus caption that is not one of the stimulus's own"
    )


def _check_brain_source(value: str | dict[str, Any]) -> str | dict[str, Any]:
    """A brain source string or mapping, parsed (:func:`llmvem.data.brain_sources.parse_brain_source`) to check it;
    kept as written."""
    from pydantic_core import PydanticCustomError

    from llmvem.data.brain_sources import parse_brain_source
    from llmvem.errors import DataError

    try:
        parse_brain_source(value)
    except DataError as exc:
        reason = str(exc)
        if isinstance(value, str):  # the message ends with (got '<the source>'): name it once
            reason = reason.removeprefix(f"brain source {short_repr(value.strip())}: ")
        raise PydanticCustomError("brain_source", "{reason}", {"reason": reason}) from None
    return value


BrainSourceSpec = Annotated[str | dict[str, Any], AfterValidator(_check_brain_source)]


class EvaluateInputs(_Section):
    """Files scored by ``llmvem evaluate encoding|rsa|decode`` (formats: :mod:`llmvem.data.files`)."""

    features: list[str] = Field(
        default_factory=list,
        description="feature matrix NAME=path.npy or path.npy (+ path.ids.txt)",
        json_schema_extra=cli(short="-f"),
    )
    brain: list[BrainSourceSpec] = Field(
        default_factory=list,
        description="brain sources: a path (.npz from save_brain, Algonauts subject folder, NSD root), "
        "'KIND:PATH?key=value&...' (nsd, algonauts, npz; keys: the loader's keyword arguments, e.g. "
        "'nsd:/data/nsd?subject=1-8&space=fsaverage&rois=streams') or a mapping {kind, path, key: value}",
        json_schema_extra=cli(short="-b"),
    )
    subject: int | None = Field(
        None, ge=1, le=8, description="NSD subject of NSD sources that name none (default 1; or subject= per source)"
    )
    rois: list[str] = Field(
        default_factory=list, description="keep only these ROIs (empty: all)", json_schema_extra=cli("--roi")
    )
    rdms: list[str] = Field(
        default_factory=list, description="target RDMs: DATASET:TARGET (objects92:cichy_it) or .npz/.npy files"
    )
    embeddings: str | None = Field(
        None, description="decode: the stimuli's text embeddings (.npy + .ids.txt)", json_schema_extra=cli(short="-e")
    )
    captions: Path | None = Field(None, description="decode: caption corpus for retrieval (.jsonl/.csv/.txt)")
    references: Path | list[Path] | None = Field(
        None,
        description="decode: human captions per stimulus for caption metrics (.jsonl/.csv/.tsv rows of id and "
        "text, a special100-style .json, or COCO caption files captions_train2017.json / captions_val2017.json "
        "with --nsd-stim-info); default: the corpus captions of each test stimulus",
    )
    nsd_stim_info: Path | None = Field(
        None,
        description="decode: NSD's nsd_stim_info_merged.csv (nsddata/experiments/nsd/), mapping NSD images to the "
        "COCO image ids of COCO caption --references",
    )


class WordsConfig(_Section):
    """Visual-word readouts (``llmvem words``, the visual-words sections of reports)."""

    top_k: int = Field(10, ge=1, le=1000, description="words per image, voxel or ROI", json_schema_extra=cli("--top"))
    n_shuffles: int = Field(1000, ge=10, description="permutations of the shuffled-description baseline")


class VoxelCaptionsConfig(_Section):
    """Captions for voxels and ROIs (``llmvem evaluate captions``; BrainSCUBA's projection onto a caption corpus)."""

    top_k: int = Field(5, ge=1, le=100, description="nearest corpus captions per voxel and ROI")
    temperature: float = Field(
        1.0 / 150.0, gt=0, le=10, description="softmax temperature of the projection onto the corpus (BrainSCUBA)"
    )
    summary_model: str | None = Field(
        None,
        description="served model (openai backend at describe.base_url) that writes one sentence per ROI from its "
        "captions; None: no summaries",
    )
    summary_prompt: str | None = Field(
        None, description="instruction for the summaries, with {captions} (None: llmvem's default)"
    )


class EvaluateConfig(_Section):
    encoding: EncodingConfig = Field(default_factory=EncodingConfig)
    rsa: RSAConfig = Field(default_factory=RSAConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    voxel_captions: VoxelCaptionsConfig = Field(default_factory=VoxelCaptionsConfig)
    inputs: EvaluateInputs = Field(default_factory=EvaluateInputs)

    @model_validator(mode="after")
    def _partition_needs_spaces(self) -> EvaluateConfig:
        # The count only: that the files exist, hold ≥ 2 finite columns and the brain's stimuli is checked when they
        # are read (llmvem.brain.partition.check_partition_spaces), before the run directory is made.
        if self.encoding.partition:
            from llmvem.brain.partition import MAX_PARTITION_SPACES

            n = len(self.inputs.features)
            if not 2 <= n <= MAX_PARTITION_SPACES:
                raise ValueError(
                    f"encoding.partition needs 2–{MAX_PARTITION_SPACES} feature spaces in inputs.features "
                    f"(--features NAME=path.npy, one per space), got {n}"
                    + (f" ({2**n - 1} parts could not be read; group spaces first)" if n > MAX_PARTITION_SPACES else "")
                )
        return self


class ExperimentConfig(_Section):
    """The whole experiment (one run)."""

    name: str = Field(
        "demo", description="run name (the run directory's prefix)", json_schema_extra=cli(show_default=False)
    )
    seed: int = Field(0, description="random seed")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1 ...")
    data_dir: Path | None = Field(None, description="real datasets folder (else $LLMVEM_DATA)")
    cache_dir: Path | None = Field(None, description="artifact store (else $LLMVEM_CACHE or ~/.cache/llmvem)")
    output_dir: Path = Field(Path("runs"), description="where run directories are created")
    progress: bool = Field(True, description="show progress bars")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    describe: DescribeConfig = Field(default_factory=DescribeConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    words: WordsConfig = Field(default_factory=WordsConfig)


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, list[str]]:
    """The section path and allowed keys at the parent of ``loc``."""
    cur: type[BaseModel] = model
    parts: list[str] = []
    for part in loc[:-1]:
        field = cur.model_fields.get(str(part))
        ann = field.annotation if field is not None else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            cur = ann
            parts.append(str(part))
        else:
            break
    return ".".join(parts) or "the top level", sorted(cur.model_fields)


def format_validation_error(exc: ValidationError, model: type[BaseModel] = ExperimentConfig) -> str:
    """One line per problem: the dotted key path, what was wrong, and what is allowed."""
    lines = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        path = ".".join(str(p) for p in loc) or "(root)"
        if err.get("type") == "extra_forbidden":
            section, allowed = _allowed_keys(model, loc)
            lines.append(f"  - {path}: unknown key; allowed keys of {section}: {', '.join(allowed)}")
        else:
            got = err.get("input")
            got_s = f" (got {short_repr(got)})" if not isinstance(got, dict) else ""
            lines.append(f"  - {path}: {err.get('msg')}{got_s}")
    return "invalid config:\n" + "\n".join(lines)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"invalid config key {dotted!r}")
    cur = tree
    for p in parts[:-1]:
        nxt = cur.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"config key {dotted!r}: {p!r} is a value, not a section")
        cur = nxt
    cur[parts[-1]] = value


def _parse_value(text: Any) -> Any:
    """CLI override values are YAML scalars/lists: '3' → 3, 'true' → True, '[1, 2]' → [1, 2], 'null' → None."""
    import yaml

    if not isinstance(text, str):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def literal_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """Config key → typed flag value, for :func:`load_config`'s ``literal``: flags not given (``None``, an empty
    repeatable) left out; paths as strings, tuples as lists; strings kept as typed.

    >>> literal_overrides({"features.model": Path("runs/a"), "describe.prompt": ("a", "b"), "seed": None})
    {'features.model': 'runs/a', 'describe.prompt': ['a', 'b']}
    """

    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        return [plain(x) for x in v] if isinstance(v, list | tuple) else v

    return {k: plain(v) for k, v in values.items() if v is not None and v != () and v != []}


def parse_sets(items: Sequence[str] | None) -> dict[str, str]:
    """``--set key.path=value`` items → {key: YAML text} (the value parsed later, by :func:`load_config`).

    >>> parse_sets(["train.epochs=3", " seed =1=2"])
    {'train.epochs': '3', 'seed': '1=2'}

    Raises:
        ConfigError: an item without ``=``.
    """
    bad = [item for item in items or [] if "=" not in item]
    if bad:
        raise ConfigError(f"--set expects key.path=value, got {bad[0]!r}")
    return {k.strip(): v for k, v in (item.split("=", 1) for item in items or [])}


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None, literal: Mapping[str, Any] | None = None
) -> ExperimentConfig:
    """Read a YAML config (or start from defaults), apply dotted-key overrides, validate.

    Args:
        path: the YAML file (``None``: defaults).
        overrides: dotted key → value; a string value is read as YAML (``"3"`` → 3, ``"[a, b]"`` → a list): the
            ``--set key=value`` syntax.
        literal: dotted key → value taken as it is, applied after ``overrides``: named CLI flags, whose strings
            are never YAML (``--model "ok #2"`` is ``ok #2``, a prompt with ``: `` stays text); typed values (ints,
            floats, bools, lists) arrive typed.

    Raises:
        ConfigError: unreadable YAML, unknown keys, or invalid values — the message names each bad key path.
    """
    import yaml

    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of keys, got {type(loaded).__name__}")
        tree = loaded
    for key, value in (overrides or {}).items():
        _set_dotted(tree, key, _parse_value(value))
    for key, value in (literal or {}).items():
        _set_dotted(tree, key, value)
    _check_encodable(tree, "")
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def _check_encodable(value: Any, key: str, seen: set[int] | None = None) -> None:
    """Raise :class:`ConfigError` at the first string that is not valid UTF-8 text: a command-line argument with bytes
    that are not UTF-8 arrives holding lone surrogates, which no record, request or saved config can encode.

    Each list or mapping is visited once (``seen``): YAML aliases share them, so a billion-laughs value or a
    self-referencing one is walked in linear time, not expanded."""
    seen = set() if seen is None else seen
    if isinstance(value, dict | list | tuple):
        if id(value) in seen:
            return
        seen.add(id(value))
    if isinstance(value, dict):
        for k, v in value.items():
            _check_encodable(v, f"{key}.{k}" if key else str(k), seen)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_encodable(v, f"{key}[{i}]", seen)
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start].encode("utf-8", "surrogateescape")
            raise ConfigError(
                f"{key}: not valid UTF-8 text (byte 0x{bad[0]:02x} at character {exc.start}); give it as UTF-8"
            ) from None


def dump_config(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML (every key, defaults included; credentials in ``describe.base_url`` removed)."""
    import yaml

    data = cfg.model_dump(mode="json")
    data["describe"]["base_url"] = split_url_credentials(data["describe"]["base_url"])[0]
    return yaml.safe_dump(data, sort_keys=False)


def split_url_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``"http://user:key@host/v1"`` → ``("http://host/v1", "user", "key")``; a URL without credentials is returned
    as it is with ``(None, None)``. The one place credentials are taken out of a URL, so that no message, record or
    saved config shows them.

    >>> split_url_credentials("https://me:s3cret@api.example.com:8443/v1")
    ('https://api.example.com:8443/v1', 'me', 's3cret')
    """
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, unquote(user) or None, unquote(password) or None


def redact_url_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it masked (``scheme://user:key@host`` → ``scheme://***@host``),
    for text that is recorded as it was typed (a run's command line).

    >>> redact_url_credentials("--set describe.base_url=https://me:s3cret@api.example.com/v1")
    '--set describe.base_url=https://***@api.example.com/v1'
    """
    import re

    return re.sub(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@", r"\1***@", text)  # up to the netloc's last @


def config_keys(model: type[BaseModel] = ExperimentConfig, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the schema (for docs and ``--set`` completion)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(config_keys(ann, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys
