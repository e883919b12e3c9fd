"""``llmvem``: describe → embed → features → train → evaluate → report, from one command line.

A command that configures a run lists the config keys it offers (``config_command(..., keys)``): each key's option
is generated from its config field (:mod:`llmvem.cli.options`), and ``--set key.path=value`` reaches every other
key. Each command calls one library function and prints its result; errors are one line
(:mod:`llmvem.cli.boundary`). Heavy libraries are imported inside the commands, so ``llmvem --help`` answers at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from llmvem.cli.boundary import OneLineErrorsGroup, fail, guarded
from llmvem.cli.options import COMMAND_FLAGS, config_command, flag_key, flags_command, option, resolve

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from llmvem.config import ExperimentConfig

__all__ = ["COMMAND_FLAGS", "app", "flag_key", "main", "resolve"]

app = typer.Typer(
    cls=OneLineErrorsGroup,
    name="llmvem",
    help="Vision and brain-encoding models aligned with language: describe → embed → features → train → evaluate → "
    "report.\n\nStart with [bold]llmvem demo[/bold] (offline, ~2 minutes on a laptop CPU).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
cache_app = typer.Typer(help="Inspect and clean the artifact store.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


class _RunByDefaultGroup(TyperGroup):
    """A command group whose first argument, when it names no subcommand, goes to its ``run`` subcommand:
    ``llmvem describe IMAGES`` = ``describe run IMAGES``, ``llmvem evaluate CONFIG`` = ``evaluate run CONFIG``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] != "--help":
            args = ["run", *args]
        return super().parse_args(ctx, args)


describe_app = typer.Typer(cls=_RunByDefaultGroup, no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(describe_app, name="describe")
evaluate_app = typer.Typer(cls=_RunByDefaultGroup, no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(evaluate_app, name="evaluate")
plot_app = typer.Typer(help="Draw results: brain maps of per-voxel / per-vertex result files.", no_args_is_help=True)
app.add_typer(plot_app, name="plot")


def command(
    group: typer.Typer, name: str, keys: Sequence[str], path: str | None = None, config_argument: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """:func:`~llmvem.cli.options.config_command` behind the CLI's error boundary."""
    return config_command(group, name, keys, path=path, config_argument=config_argument, guard=guarded)


#: where a run's inputs, cache and outputs are, and how it runs: the keys of every experiment command
WHERE = ["data_dir", "cache_dir", "output_dir", "device", "progress"]
#: the brain data and ROIs scored by `evaluate encoding|rsa|decode`
BRAINS = ["evaluate.inputs.brain", "evaluate.inputs.rois", "evaluate.inputs.subject"]
RUN_NAMING = ["seed", "name", "output_dir", "progress"]
NSD_IMAGES = ["features.subset", "features.design"]  # which images of nsd_stimuli.hdf5: one key for every stage
ImagesArg = Annotated[Path, typer.Argument(help="folder of images, or NSD's nsd_stimuli.hdf5")]
DataDirOpt = Annotated[Path | None, option("data_dir")]
TextsArg = Annotated[
    Path | None,
    typer.Argument(
        help="JSONL/CSV with an image (or id) column and a text column (optional model, prompt columns); "
        "default: every description in the artifact store (from llmvem describe)",
        show_default=False,
    ),
]
EmbeddingsOut = Annotated[Path, typer.Option("--out", "-o", help="embeddings .npy (ids go to <out>.ids.txt)")]
FeaturesOut = Annotated[Path, typer.Option("--out", "-o", help="features .npy (ids go to <out>.ids.txt)")]
DescriptionsOut = Annotated[Path, typer.Option("--out", "-o", help="descriptions to write (.jsonl or .parquet)")]
CacheDirOpt = Annotated[Path | None, option("cache_dir")]


#: the demo's options: study parameters of the built-in studies and paths (each one a config key, read from its field)
DEMO_KEYS = ["dataset.n_images", "train.epochs", "train.lambda_align", "seed", "device", "progress", "data_dir",
             "cache_dir", "output_dir"]  # fmt: skip
_STUDIES = ", ".join(sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "studies").glob("*.yaml")))
StudyArg = Annotated[str | None, typer.Argument(help=f"a built-in study ({_STUDIES}) or a study YAML file")]
OldDatasetOpt = Annotated[str | None, typer.Option("--dataset", help="the study (old name of the argument)")]
OldConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="an old experiment YAML config")]
StudySetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override any study key: --set stimuli.demo.n_images=120")
]


@flags_command(app, "demo", DEMO_KEYS, guard=guarded)
def demo(
    study: StudyArg = None,
    dataset: OldDatasetOpt = None,
    *,
    given: dict[str, Any],
    config: OldConfigOpt = None,
    set_: StudySetOpt = None,
) -> None:
    """Run a study (stimuli → targets → models → evaluations) and write its tables, plots and report.

    [bold]demo[/bold] (default): a generated stimulus set with a simulated visual cortex, offline, no data needed.
    [bold]objects92[/bold]: RSA against human IT/EVC on the real 92-object set (needs --data-dir or LLMVEM_DATA).
    [bold]doerig-controls[/bold]: description embeddings vs word, order and label controls on objects92.
    --set reaches any study key (stimuli.demo.n_images=120) or setting (train.loss=cosine).

    Examples:
      llmvem demo
      llmvem demo objects92 --data-dir ../shared/data
      llmvem demo --n-images 120 --epochs 50 --set train.loss=cosine
    """
    from llmvem.pipeline.studies import run_demo_study

    run_demo_study(study or dataset, given, config, set_)


COMMAND_FLAGS["demo"]["--dataset"] = "dataset.name"  # the old name of STUDY


@describe_app.callback()
def describe_group() -> None:
    """Describe images with a multimodal LLM (served, local or imported); cached, resumable, exportable.

    [bold]llmvem describe IMAGES[/bold] is short for [bold]llmvem describe run IMAGES[/bold] (see its --help for
    every option); [bold]llmvem describe export OUT[/bold] writes the stored descriptions to JSONL or Parquet.

    Examples:
      llmvem describe images/ --backend openai --base-url http://localhost:11434/v1 --model qwen2.5vl:7b
      llmvem describe images/ --backend transformers --model HuggingFaceTB/SmolVLM-256M-Instruct --prompt detailed
      llmvem describe export all.parquet --model qwen2.5vl:7b
    """


DESCRIBE = ["describe.backend", "describe.model", "describe.prompt", "describe.source", "describe.labels",
            "describe.n_samples", "describe.temperature", "describe.max_tokens", "seed", "describe.base_url",
            "describe.api_key_env", "describe.revision", "describe.concurrency", "describe.batch_size",
            "describe.dtype", "device", "describe.timeout_s", "describe.max_retries", "describe.max_side",
            "describe.image_splitting", "describe.clean", "cache_dir", "progress"]  # fmt: skip


@command(describe_app, "run", [*NSD_IMAGES, *DESCRIBE], path="describe")
def describe(
    cfg: ExperimentConfig,
    images: ImagesArg,
    out: DescriptionsOut = Path("descriptions.jsonl"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only say how many requests remain")] = False,
) -> None:
    """Describe every image with a describer backend; results are cached and the job resumes if interrupted.

    Failed requests are listed at the end and the exit code is 1 (a re-run retries only them); 0 means every
    image was described. The API key is read from the environment (--api-key-env), never from a flag.

    Examples:
      llmvem describe images/ --backend openai --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-VL-7B-Instruct
      llmvem describe images/ --backend openai --model gpt-4o-mini --base-url https://api.openai.com/v1 --dry-run
      llmvem describe images/ --backend transformers --model ./smolvlm --device cuda --dtype bfloat16
      llmvem describe images/ --backend import --source captions.jsonl --model coco -o desc.parquet
      llmvem describe images/ --backend import --source gemma3_12b.jsonl --model gemma3_12b --clean preamble
      llmvem describe nsd/nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5 --subset shared1000 --backend openai ...

    Images of NSD (and Algonauts 2023) folders get NSD's canonical ids (nsd-NNNNN, the 1-based 73k id).
    """
    from llmvem.describe.from_config import describe_to_file

    done = describe_to_file(cfg, images, out, dry_run=dry_run, warn=lambda w: typer.echo(f"warning: {w}", err=True))
    typer.echo(done.summary)
    if done.failures:
        _print_failures(done.failures)
        raise typer.Exit(1)


def _print_failures(failures: list[str], shown: int = 50) -> None:
    """The failed requests of a describe job on stderr, one unwrapped line each (the first ``shown``)."""
    from rich.console import Console

    con = Console(stderr=True, highlight=False, soft_wrap=True)
    con.print(f"[bold red]{len(failures)} request(s) failed[/bold red] (a re-run retries them):")
    for f in failures[:shown]:
        con.print(f"  - {f}", markup=False)
    if len(failures) > shown:
        con.print(f"  ... and {len(failures) - shown} more (llmvem describe export --failures)")


ExportImagesOpt = Annotated[
    Path | None, typer.Option("--images", help="only these images (matched by content), named by their ids")
]
CleanOpt = Annotated[
    list[str] | None, typer.Option("--clean", help="clean the texts: preamble, closing (raw_text kept); repeatable")
]


@describe_app.command("export")
def describe_export(
    out: Annotated[Path, typer.Argument(help="file to write: .jsonl or .parquet")],
    format: Annotated[str | None, typer.Option("--format", help="jsonl or parquet (default: from suffix)")] = None,
    images: ExportImagesOpt = None,
    backend: Annotated[str | None, typer.Option("--backend", help="only this backend")] = None,
    model: Annotated[str | None, typer.Option("--model", help="only this model")] = None,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="only these prompts (name or text)")] = None,
    clean: CleanOpt = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Export the descriptions stored in the artifact store (every run) to JSONL or Parquet.

    Rows have image, model, prompt, text, backend, prompt_name, sample, params, image_hash, timings, token counts
    and image notes.

    Examples:
      llmvem describe export descriptions.parquet
      llmvem describe export qwen.jsonl --model qwen2.5vl:7b --images ../shared/data/objects92/images
      llmvem describe export gemma.jsonl --model gemma3_12b --clean preamble
    """

    def go() -> None:
        from llmvem.describe import export_descriptions
        from llmvem.store import ArtifactStore

        n = export_descriptions(out, ArtifactStore(cache_dir), format=format, backend=backend, model=model,
                                prompt=prompt, images=images, clean=clean)  # fmt: skip
        typer.echo(f"{n} descriptions → {out}")

    guarded(go)


EMBED = ["embed.encoder", "embed.policy", "embed.aggregate", "embed.select_model", "embed.select_prompt",
         "embed.normalize", "describe.clean", "cache_dir", "device", "progress"]  # fmt: skip


@command(app, "embed", EMBED)
def embed(cfg: ExperimentConfig, texts: TextsArg = None, out: EmbeddingsOut = Path("embeddings.npy")) -> None:
    """Embed texts with a text encoder; cached by text content, encoder identity and long-text policy.

    Several texts of one image (captions, samples) are averaged (--aggregate mean) or kept (--aggregate all).
    Writes OUT (.npy, float32, one row per image or text) and OUT.ids.txt (the image id of each row).

    Examples:
      llmvem embed desc.jsonl --encoder minilm -o desc.npy
      llmvem embed captions.jsonl --encoder mpnet --aggregate mean -o coco_mpnet.npy
      llmvem embed --select-model qwen2.5vl:7b --select-prompt detailed -o desc.npy   # from the describe store
      llmvem embed captions.csv --encoder glove-nouns -o nouns.npy                     # a Doerig control
      llmvem embed gemma.jsonl --clean preamble -o gemma.npy      # without "Here's a description of the image:"
    """
    from llmvem.text.from_config import save_embeddings

    saved = save_embeddings(cfg, texts, out)
    for line in [*saved.notes, saved.summary]:
        typer.echo(line)


FEATURES = ["features.backbone", "features.layer", "features.layers", "features.pooling", "features.reduce",
            "features.reduce_seed", "features.reduce_fit_n", "features.precision", "features.workers",
            "features.batch_size", "features.model", "features.weights", "features.pif", "features.head",
            *NSD_IMAGES, "cache_dir", "device", "progress"]  # fmt: skip


@command(app, "features", FEATURES)
def features(cfg: ExperimentConfig, images: ImagesArg, out: FeaturesOut = Path("features.npy")) -> None:
    """Extract pooled image features with a pretrained backbone or a fine-tuned model of a run directory.

    --layer taps any named module (an unknown name lists the close and valid ones); features are cached per
    backbone, layer and pooling. --layers a,b,c (or all: the backbone's blocks) taps them in one forward pass and,
    with -o f.npy, writes f.<layer>.npy for each layer plus one f.ids.txt; a layer extracted this way is the same
    cache entry as with --layer. --reduce srp:K|pca:K keeps the whole map of each tapped layer, reduced to K values
    (seeded; in the cache key), instead of pooling it.

    The ids written to <out>.ids.txt are canonical NSD ids (nsd-NNNNN, 1-based) when every file name is an NSD
    image name (sharedNNNN_nsdNNNNN, Algonauts train-XXXX_nsd-NNNNN / test-XXXX_nsd-NNNNN, whose number is 0-based)
    and the file stems otherwise. NSD's nsd_stimuli.hdf5 is read directly, without exporting images: --subset picks
    the images (the design file is found from the NSD root layout, or --design).

    Examples:
      llmvem features ../shared/data/objects92/images -o obj92.npy
      llmvem features subj01/training_split/training_images -o f.npy
      llmvem features nsd/nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5 --subset shared1000 -o shared.npy
      llmvem features images/ --backbone timm:resnet50 --layer layer3 -o layer3.npy
      llmvem features images/ --backbone timm:resnet50 --layers layer1,layer2,layer3,layer4 -o r50.npy
      llmvem features images/ --layers all --reduce srp:4096 -o lite0.npy   # lite0._blocks.0.npy ... + lite0.ids.txt
      llmvem features images/ --backbone hf_clip:openai/clip-vit-base-patch32 --layer encoder.layers.5 --pooling avg
      llmvem features my_images/ --model runs/nsd-objects92-20261122-101500 --weights aligned-seed0 -o aligned.npy
      llmvem features my_images/ --model runs/nsd-objects92-20261122-101500 --head project -o text_space.npy
    """
    from llmvem.align.from_config import save_features

    for line in save_features(cfg, images, out).lines():
        typer.echo(line)


@command(app, "words", ["features.model", "features.weights", "words.top_k", "device", "progress"])
def words(
    cfg: ExperimentConfig,
    images: Annotated[Path, typer.Argument(help="folder of images")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON file {image file name: [word, ...]}")] = Path(
        "words.json"
    ),
) -> None:
    """Which words does each image "say"? The top visual words of a visual_words model's vocabulary head.

    The model must come from a run trained with --set finetune.loss=visual_words (VW-LMM's vocabulary head);
    stop words and special tokens are never listed, and a word split into several tokens is read as the whole word
    (skateboard, not skate).

    Examples:
      llmvem demo nsd-objects92-words --data-dir ../shared/data
      llmvem words ../shared/data/objects92/images --model runs/nsd-objects92-words-20261122-1015 --top 10 --out w.json
    """
    from llmvem.align.words import save_words, words_from_config

    result = words_from_config(cfg, images)
    save_words(out, result)
    first, some = next(iter(result.items()))
    typer.echo(f"{cfg.words.top_k} words for each of {len(result)} images → {out} (e.g. {first}: "
               f"{', '.join(some[:5])} ...)")  # fmt: skip


@command(app, "train", ["train.epochs", "train.lambda_align", "train.loss", *WHERE], config_argument=True)
def train(cfg: ExperimentConfig) -> None:
    """Train the baseline and language-aligned models of an experiment; they are cached in the artifact store.

    Examples:
      llmvem train configs/demo.yaml --epochs 300 --lambda-align 0.3
      llmvem train configs/nsd-objects92.yaml --data-dir ../shared/data --set finetune.seeds=[0,1,2,3,4]
    """
    from llmvem.pipeline.studies import run_experiment

    run_experiment(cfg, until="train")


@evaluate_app.callback()
def evaluate_group() -> None:
    """Score representations against the brain: an experiment config, or your own feature files.

    [bold]llmvem evaluate CONFIG[/bold] (= [bold]evaluate run CONFIG[/bold]) evaluates an experiment;
    [bold]evaluate encoding[/bold], [bold]evaluate rsa[/bold] and [bold]evaluate decode[/bold] score .npy feature or
    embedding files (with their .ids.txt, as `llmvem features` / `llmvem embed` write them) against brain data
    (.npz from llmvem.data.files.save_brain, an Algonauts 2023 subject folder or an NSD root) or RDMs.

    Examples:
      llmvem evaluate configs/demo.yaml --cv loo
      llmvem evaluate encoding --features clip=clip.npy --features effnet=eff.npy --brain subj01.npz
      llmvem evaluate rsa --features desc.npy --rdms objects92:cichy_it --rdms objects92:kriegeskorte_hit
      llmvem evaluate decode --brain subj01.npz --embeddings captions.npy --captions corpus.jsonl
    """


@command(evaluate_app, "run", ["evaluate.encoding.cv", *WHERE], path="evaluate", config_argument=True)
def evaluate(cfg: ExperimentConfig) -> None:
    """Evaluate an experiment: encoding accuracy per ROI with noise ceilings, or RSA (earlier stages come from cache).

    Examples:
      llmvem evaluate experiment.yaml --set evaluate.rsa.method=pearson
    """
    from llmvem.pipeline.studies import run_experiment

    run_experiment(cfg, until="evaluate")


ENCODING = [
    "evaluate.encoding.cv",
    "evaluate.encoding.test_fraction",
    "evaluate.encoding.permutations",
    "evaluate.encoding.partition",
    "evaluate.encoding.layer_sweep",
    "evaluate.encoding.sweep_validation_fraction",
]


@command(evaluate_app, "encoding", ["evaluate.inputs.features", *BRAINS, *ENCODING, *RUN_NAMING],
         path="evaluate encoding")  # fmt: skip
def evaluate_encoding(cfg: ExperimentConfig) -> None:
    """Voxelwise ridge encoding of feature files on brain data: r per voxel and ROI, noise ceilings, plots, report.

    Fits on the data's 'train' split and scores on 'test' (or a seeded --test-fraction hold-out). Writes
    encoding.csv (mean over subjects), encoding_subjects.csv, encoding_voxel_r.npz, encoding.png,
    encoding_r_histograms.png, metrics.json and report.html into a new run directory, and per-voxel r, score and α
    in each brain's own space (maps/<brain>/<model>/: r.nii.gz in the subject's volume, lh.r.mgh / rh.r.mgh on
    fsaverage; NaN outside).

    Examples:
      llmvem evaluate encoding -f effnet=eff.npy -f minilm=desc.npy -b subj01.npz -b subj02.npz --permutations 1000
      llmvem evaluate encoding -f feats.npy -b algonauts/subj01 --roi FFA-1 --roi PPA --cv 5
      llmvem evaluate encoding -f feats.npy -b "nsd:/data/nsd?subject=1-8&space=fsaverage&rois=streams" --cv gcv
      llmvem evaluate encoding -f f._blocks.3.npy -f f._blocks.9.npy -f f._blocks.15.npy -b subj01.npz --layer-sweep
    """
    from llmvem.pipeline.studies import run_file_evaluation

    run_file_evaluation("encoding", cfg)


RSA = [
    "evaluate.inputs.features",
    "evaluate.inputs.rdms",
    *BRAINS,
    "evaluate.rsa.metric",
    "evaluate.rsa.method",
    "evaluate.rsa.searchlight",
    "evaluate.rsa.searchlight_radius",
    "evaluate.rsa.layer_sweep",
    "evaluate.rsa.sweep_validation_fraction",
    "evaluate.encoding.test_fraction",
]


@command(evaluate_app, "rsa", [*RSA, *RUN_NAMING, "data_dir"], path="evaluate rsa")
def evaluate_rsa(cfg: ExperimentConfig) -> None:
    """RSA of feature files against target RDMs (per-subject scores, noise ceilings, bootstrap CI, plots, report).

    Targets: dataset RDM sets, RDM files, and/or the ROIs of several --brain sources (each source a subject).

    Examples:
      llmvem evaluate rsa -f desc=desc.npy -f eff=eff.npy --rdms objects92:cichy_it --data-dir ../shared/data
      llmvem evaluate rsa -f feats.npy -b subj01.npz -b subj02.npz -b subj03.npz --roi IT --method pearson
      llmvem evaluate rsa -f desc=desc.npy -b "nsd:/data/nsd?subject=1&rois=nsdgeneral" --searchlight
    """
    from llmvem.pipeline.studies import run_file_evaluation

    run_file_evaluation("rsa", cfg)


DECODE = ["evaluate.inputs.brain", "evaluate.inputs.embeddings", "evaluate.inputs.captions", "embed.encoder",
          "evaluate.decode.top_k", "evaluate.inputs.references", "evaluate.inputs.nsd_stim_info",
          "evaluate.decode.caption_metrics",
          "evaluate.decode.exclude_own", "evaluate.inputs.rois", "evaluate.inputs.subject", "evaluate.encoding.cv",
          "evaluate.encoding.test_fraction", *RUN_NAMING, "cache_dir", "device"]  # fmt: skip


@command(evaluate_app, "decode", DECODE, path="evaluate decode")
def evaluate_decode(cfg: ExperimentConfig) -> None:
    """Decode text embeddings from brain data: identification, nearest-caption retrieval and caption metrics.

    Examples:
      llmvem evaluate decode -b subj01.npz -e captions.npy --captions corpus.jsonl --encoder minilm --top-k 5
      llmvem evaluate decode -b subj01.npz -e emb.npy --captions coco.jsonl --references special100_captions.json
      llmvem evaluate decode -b "nsd:/data/nsd?subject=1" -e emb.npy --captions coco.jsonl
          --references captions_train2017.json --references captions_val2017.json
          --nsd-stim-info /data/nsd/nsddata/experiments/nsd/nsd_stim_info_merged.csv
    """
    from llmvem.pipeline.studies import run_file_evaluation

    run_file_evaluation("decode", cfg)


CAPTIONS = ["evaluate.inputs.features", *BRAINS, "evaluate.inputs.captions", "embed.encoder",
            "evaluate.voxel_captions.top_k", "evaluate.voxel_captions.temperature",
            "evaluate.voxel_captions.summary_model", "describe.base_url", "evaluate.encoding.cv",
            "evaluate.encoding.test_fraction", *RUN_NAMING, "cache_dir"]  # fmt: skip


@command(evaluate_app, "captions", CAPTIONS, path="evaluate captions")
def evaluate_captions(cfg: ExperimentConfig) -> None:
    """Captions for every voxel and ROI: encoding weights on text embeddings read out in a caption corpus.

    A ridge from the stimuli's text embeddings (-f) to the voxels; each voxel's and ROI's weight direction projected
    onto the corpus (BrainSCUBA) and read out as its nearest captions (roi_captions.csv, voxel_captions.jsonl), with
    one sentence per ROI from --summary-model when given (cached like descriptions).

    Examples:
      llmvem evaluate captions -f desc=minilm.npy -b subj01.npz --captions corpus.jsonl --encoder minilm
      llmvem evaluate captions -f minilm.npy -b subj01.npz --captions coco.jsonl --summary-model qwen2.5:7b
    """
    from llmvem.pipeline.studies import run_file_evaluation

    run_file_evaluation("captions", cfg)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """(Re)build the self-contained HTML report of a run directory.

    Examples:
      llmvem report runs/demo-20261122-101500
    """

    def go() -> None:
        from llmvem.report import build_report

        typer.echo(str(build_report(run_dir)))

    guarded(go)


@plot_app.command("map")
def plot_map(
    result: Annotated[Path, typer.Argument(help="lh.NAME.mgh / rh.NAME.mgh, NAME.nii(.gz), or a 2×n .npy (lh, rh)")],
    space: Annotated[
        str, typer.Option("--space", help="fsaverage (full resolution with $SUBJECTS_DIR), fsaverage5, volume, auto")
    ] = "auto",
    threshold: Annotated[float | None, typer.Option("--threshold", help="leave |value| below it uncoloured")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="PNG to write (default: beside RESULT)")] = None,
    title: Annotated[str | None, typer.Option("--title", help="figure title")] = None,
) -> None:
    """Draw a per-voxel result on the cortex (inflated and flat views of both hemispheres) or as volume slices.

    Examples:
      llmvem plot map runs/evaluate-encoding-*/maps/subj01/desc/lh.r.mgh --threshold 0.1
      llmvem plot map maps/subj01/desc/r.nii.gz --space volume -o r.png
    """

    def go() -> None:
        from llmvem.report.brain_plots import plot_map_file

        fig = plot_map_file(result, out, space=space, threshold=threshold, title=title or result.name)
        typer.echo(f"{fig.path} ({'; '.join(fig.notes)})")

    guarded(go)


@app.command()
def compare(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="run directories of any study (demo, folder, nsd-objects92, ...)")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for compare.csv and compare.png")] = Path("compare"),
    label: Annotated[
        list[str] | None, typer.Option("--label", help="a name per run, in order (default: the folder names)")
    ] = None,
    representation: Annotated[
        str, typer.Option("--representation", help="the representation plotted: aligned, aligned_head, twin …")
    ] = "aligned_head",
) -> None:
    """Put runs of any studies side by side: one table of every evaluation's whole-model scores (RSA, paired
    differences, encoding r, held-out accuracy ...: compare.csv), and one representation's scores as bars, one per
    run (compare.png: RSA per brain set, else mean r / top-1 / accuracy per target).

    Examples:
      llmvem compare runs/nsd-objects92-A runs/nsd-objects92-B --label "λ=0.03" --label "λ=0.1" -o compare/
    """

    def go() -> None:
        from llmvem.report.compare import write_comparison

        csv, png = write_comparison(run_dirs, out, label or None, representation)
        typer.echo(f"{len(run_dirs)} runs → {csv}, {png}")

    guarded(go)


@app.command()
def datasets(data_dir: DataDirOpt = None) -> None:
    """List the known datasets and whether their files are present in the data directory.

    Examples:
      llmvem datasets --data-dir ../shared/data
    """

    def go() -> None:
        from rich.table import Table

        from llmvem.data.datasets import dataset_status

        table = Table("dataset", "status", "description")
        for row in dataset_status(data_dir):
            status = "[green]present[/green]" if row["present"] else f"[red]missing {len(row['missing'])} file(s)[/red]"
            table.add_row(row["name"], status, row["description"])
        _print_table(table, prose="description")

    guarded(go)


@cache_app.command("ls")
def cache_ls(
    kind: Annotated[
        str | None, typer.Option("--kind", help="only this kind (image_features, text_embeddings ...)")
    ] = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """List the entries of the artifact store, and count the describe record logs and generated demo sets.

    The record logs (descriptions/*.jsonl: every description and failure of `llmvem describe`, possibly paid API
    output) are not entries: they are counted on their own line, and `cache clean --all` keeps them.

    Examples:
      llmvem cache ls --kind image_features
    """
    guarded(lambda: _list_store(kind, cache_dir))


def _list_store(kind: str | None, cache_dir: Path | None) -> None:
    """Print the store's entries as a table, then its record logs, demo sets and totals (``cache ls``)."""
    from rich.table import Table

    from llmvem.store import RECORD_LOG_DIR, ArtifactStore, count_lines

    store = ArtifactStore(cache_dir)
    entries = store.entries(kind)
    table = Table("kind", "key", "size", "created", "spec")
    for e in entries:
        table.add_row(e.kind, e.key[:12], _size(e.size_bytes), e.created, e.summary)
    typer.echo(f"artifact store {store.root}")
    _print_table(table, prose="spec")
    logs, sets = store.record_logs(), store.demo_sets()
    if logs:
        n_rec, size = sum(count_lines(p) for p in logs), _size(sum(p.stat().st_size for p in logs))
        typer.echo(f"describe record logs: {len(logs)} ({n_rec} records, {size}) in {store.root / RECORD_LOG_DIR}; "
                   f"kept by `cache clean --all`, removed only by `cache clean --kind {RECORD_LOG_DIR}`")  # fmt: skip
    if sets:
        typer.echo(f"generated demo sets: {len(sets)} in {store.root / 'demo_sets'}")
    stale = store.stale_temporaries()
    typer.echo(
        f"{len(entries)} entries, {_size(sum(e.size_bytes for e in entries))}"
        + (f"; {len(stale)} unfinished temporary write(s)" if stale else "")
    )


@cache_app.command("clean")
def cache_clean(
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="only entries of this kind; 'descriptions': the describe record logs"),
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="only entries (or logs) whose key starts with this")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="every entry and generated demo set; the describe record logs are kept")
    ] = False,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Remove entries of the artifact store (and unfinished temporary writes older than an hour).

    The describe record logs (descriptions/*.jsonl: every description `llmvem describe` made, possibly paid API
    output) are removed only when asked for by name, with --kind descriptions; --all keeps them.

    Examples:
      llmvem cache clean --kind twin
      llmvem cache clean --all
      llmvem cache clean --kind descriptions --key 3fa2
    """
    if not (kind or key or all_):
        fail("say what to remove: --kind KIND, --key PREFIX or --all (record logs only with --kind descriptions)")
    guarded(lambda: _clean_store(kind, key, all_, cache_dir))


def _clean_store(kind: str | None, key: str | None, all_: bool, cache_dir: Path | None) -> None:
    """Remove what ``cache clean`` was asked to and say what went (and which record logs were kept)."""
    from llmvem.store import RECORD_LOG_DIR, ArtifactStore

    store = ArtifactStore(cache_dir)
    if kind == RECORD_LOG_DIR:
        n_logs = store.remove_record_logs(key)
        typer.echo(f"removed {n_logs} describe record log(s) from {store.root / RECORD_LOG_DIR}")
        return
    n = store.clean(kind=kind, key_prefix=key)
    extra = ""
    if all_ and not (kind or key):
        others = store.clean_others()  # generated demo sets, the hash memo, fine-tuning checkpoints
        extra = f" and {others} other item(s) (demo sets, checkpoints, hash memo)" if others else ""
        kept = store.record_logs()
        extra += f"; kept {len(kept)} describe record log(s) (remove with --kind {RECORD_LOG_DIR})" if kept else ""
    typer.echo(f"removed {n} entr{'y' if n == 1 else 'ies'}{extra} from {store.root}")


def _print_table(table: Any, prose: str) -> None:
    """Print a rich table whose cells are never cut short ("imag…") or split mid-word, however narrow the terminal:
    only the ``prose`` column wraps (between words); the console is widened to fit when it must."""
    from rich.console import Console
    from rich.text import Text

    def width(column: Any) -> int:
        texts = [Text.from_markup(str(c)).plain for c in [column.header, *column.cells]]
        words = [w for t in texts for w in t.split()] if column.header == prose else texts
        return max(map(len, words), default=1)

    for column in table.columns:
        column.no_wrap = column.header != prose
    need = sum(width(c) for c in table.columns) + 3 * len(table.columns) + 1  # cell padding and rules
    console = Console()
    (console if need <= console.width else Console(width=need)).print(table)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def main() -> None:
    """Entry point of the ``llmvem`` script."""
    app(prog_name="llmvem")


if __name__ == "__main__":
    main()
