"""``llmvem``: describe → embed → features → train → evaluate → report, from one command line.

Each command's flags map to keys of the experiment config (``FLAG_KEYS``); ``--set key.path=value`` reaches every
other key. Heavy libraries are imported inside the commands, so ``llmvem --help`` answers at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from llmvem.config import ExperimentConfig

app = typer.Typer(
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

#: CLI flag → config key. Every flag of every command that configures a run is listed here.
FLAG_KEYS: dict[str, str] = {
    "--dataset": "dataset.name",
    "--n-images": "dataset.n_images",
    "--seed": "seed",
    "--device": "device",
    "--data-dir": "data_dir",
    "--cache-dir": "cache_dir",
    "--output-dir": "output_dir",
    "--name": "name",
    "--backend": "describe.backend",
    "--model": "describe.model",
    "--prompt": "describe.prompt",
    "--source": "describe.source",
    "--labels": "describe.labels",
    "--samples": "describe.n_samples",
    "--temperature": "describe.temperature",
    "--max-tokens": "describe.max_tokens",
    "--base-url": "describe.base_url",
    "--api-key-env": "describe.api_key_env",
    "--revision": "describe.revision",
    "--concurrency": "describe.concurrency",
    "--batch-size": "describe.batch_size",
    "--dtype": "describe.dtype",
    "--timeout": "describe.timeout_s",
    "--max-retries": "describe.max_retries",
    "--max-side": "describe.max_side",
    "--image-splitting/--no-image-splitting": "describe.image_splitting",
    "--clean": "describe.clean",
    "--encoder": "embed.encoder",
    "--policy": "embed.policy",
    "--aggregate": "embed.aggregate",
    "--select-model": "embed.select_model",
    "--select-prompt": "embed.select_prompt",
    "--normalize/--no-normalize": "embed.normalize",
    "--backbone": "features.backbone",
    "--layer": "features.layer",
    "--pooling": "features.pooling",
    "--epochs": "train.epochs",
    "--lambda-align": "train.lambda_align",
    "--loss": "train.loss",
    "--progress/--no-progress": "progress",
    "--cv": "evaluate.encoding.cv",
    "--test-fraction": "evaluate.encoding.test_fraction",
    "--permutations": "evaluate.encoding.permutations",
    "--features": "evaluate.inputs.features",
    "--brain": "evaluate.inputs.brain",
    "--roi": "evaluate.inputs.rois",
    "--subject": "evaluate.inputs.subject",
    "--rdms": "evaluate.inputs.rdms",
    "--embeddings": "evaluate.inputs.embeddings",
    "--captions": "evaluate.inputs.captions",
    "--metric": "evaluate.rsa.metric",
    "--method": "evaluate.rsa.method",
    "--top-k": "evaluate.decode.top_k",
}

#: Per-command exceptions to FLAG_KEYS (the same flag name configuring another stage's key).
COMMAND_FLAG_KEYS: dict[str, dict[str, str]] = {
    "features": {
        "--model": "features.model",
        "--weights": "features.weights",
        "--pif/--no-pif": "features.pif",
        "--head": "features.head",
        "--subset": "features.subset",
        "--design": "features.design",
    },
    "describe": {"--subset": "features.subset", "--design": "features.design"},  # which images: one key per stage
    "words": {"--model": "features.model", "--weights": "features.weights", "--top": "words.top_k"},
}


def flag_key(flag: str, command: str | None = None) -> str:
    """The config key that ``flag`` of ``command`` sets."""
    return COMMAND_FLAG_KEYS.get(command or "", {}).get(flag) or FLAG_KEYS[flag]


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="experiment YAML config", show_default=False)]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override any config key: --set train.lr=3e-4 (repeatable)")
]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="real datasets folder [env: LLMVEM_DATA]")]
CacheDirOpt = Annotated[Path | None, typer.Option("--cache-dir", help="artifact store [env: LLMVEM_CACHE]")]
OutputDirOpt = Annotated[Path | None, typer.Option("--output-dir", help="where run directories go (default runs/)")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="random seed")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="torch device (cpu, cuda, cuda:1)")]
ProgressOpt = Annotated[bool | None, typer.Option("--progress/--no-progress", help="show progress bars")]
NameOpt = Annotated[str | None, typer.Option("--name", help="run name (the run directory's prefix)")]


_MESSAGE_CHARS = 4000  # an error message is cut after this many characters (a message quoting a huge value)


def _fail(message: str, code: int = 2) -> None:
    """Print ``error: MESSAGE`` to stderr on one line, never wrapped (paths stay whole and copyable), and exit."""
    from rich.console import Console
    from rich.markup import escape

    from llmvem.errors import cut

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    console.print(f"[bold red]error:[/bold red] {escape(cut(message, _MESSAGE_CHARS))}")
    raise typer.Exit(code)


def _resolve(
    config: Path | None, sets: list[str] | None, flags: dict[str, Any], command: str | None = None
) -> ExperimentConfig:
    """Config file + ``--set`` overrides + named flags (flags win), validated.

    Only ``--set`` values are read as YAML (``--set train.lr=3e-4``, ``--set describe.prompt=[a, b]``). A named
    flag's value is taken literally: typer has already typed ints, floats, bools and lists, and a string stays the
    string typed (``--model "ok #2"``, a prompt holding ``: `` or ``#``, ``--cache-dir "/x/cc #2"``).
    """
    from llmvem.config import load_config
    from llmvem.errors import ConfigError, short_repr

    overrides: dict[str, Any] = {}
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key.path=value, got {short_repr(item)}")
        k, v = item.split("=", 1)
        overrides[k.strip()] = v
    literal: dict[str, Any] = {}
    for flag, value in flags.items():
        if value is not None:
            literal[flag_key(flag, command)] = _flag_value(value)
    return load_config(config, overrides, literal=literal)


def _flag_value(value: Any) -> Any:
    """A typer-parsed flag value as config data: paths as strings, lists/tuples as lists, the rest unchanged."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_flag_value(v) for v in value]
    return value


def _run(fn: Any) -> Any:
    """Call ``fn`` turning llmvem's own errors into one clear line and exit code 2 (no traceback)."""
    from llmvem.errors import LlmvemError

    try:
        return fn()
    except LlmvemError as exc:
        _fail(str(exc))
    except OSError as exc:  # the file system refused (name too long, disk full, permission): name the file
        from llmvem.errors import short_repr

        files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
        where = f": {' → '.join(short_repr(f) for f in files)}" if files else ""
        _fail(f"{exc.strerror or exc}{where}")
    except MemoryError as exc:  # what llmvem's own estimates did not foresee (brain fits check theirs first)
        detail = f" ({exc})" if str(exc) else ""
        _fail(f"out of memory{detail}; use fewer stimuli, voxels or features, float32, or a machine with more memory")
    except KeyboardInterrupt:
        _fail("interrupted; finished work is kept in the artifact store and a re-run resumes from it", code=130)


@app.command()
def demo(
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="demo (generated, offline) or objects92 (real data)")
    ] = None,
    n_images: Annotated[int | None, typer.Option("--n-images", help="demo: number of generated images")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="twin training epochs")] = None,
    lambda_align: Annotated[float | None, typer.Option("--lambda-align", help="alignment loss weight")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    cache_dir: CacheDirOpt = None,
    output_dir: OutputDirOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Run the whole pipeline on a built-in set and write a report.

    [bold]demo[/bold] (default): a generated stimulus set with a simulated visual cortex, offline, no data needed.
    [bold]objects92[/bold]: RSA against human IT/EVC on the real 92-object set (needs --data-dir or LLMVEM_DATA).

    Examples:
      llmvem demo
      llmvem demo --dataset objects92 --data-dir ../shared/data
      llmvem demo --n-images 120 --epochs 50 --set train.loss=cosine
    """
    flags = {
        "--dataset": dataset,
        "--n-images": n_images,
        "--epochs": epochs,
        "--lambda-align": lambda_align,
        "--data-dir": data_dir,
        "--cache-dir": cache_dir,
        "--output-dir": output_dir,
        "--seed": seed,
        "--device": device,
        "--progress/--no-progress": progress,
    }

    def go() -> None:
        cfg = _resolve(config, set_, flags)
        if cfg.dataset.name == "objects92":
            from llmvem.pipeline import run_objects92_rsa

            if cfg.name == "demo":
                cfg.name = "objects92"
            run_objects92_rsa(cfg)
        elif cfg.dataset.name == "demo":
            from llmvem.pipeline import run_encoding_demo

            run_encoding_demo(cfg)
        else:
            _fail(f"dataset.name={cfg.dataset.name!r} has no demo; use demo or objects92")

    _run(go)


class _RunByDefaultGroup(TyperGroup):
    """A command group whose first argument, when it names no subcommand, goes to its ``run`` subcommand:
    ``llmvem describe IMAGES`` = ``describe run IMAGES``, ``llmvem evaluate CONFIG`` = ``evaluate run CONFIG``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] != "--help":
            args = ["run", *args]
        return super().parse_args(ctx, args)


describe_app = typer.Typer(cls=_RunByDefaultGroup, no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(describe_app, name="describe")


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


@describe_app.command("run")
def describe(
    images: Annotated[Path, typer.Argument(help="folder of images, or NSD's nsd_stimuli.hdf5")],
    out: Annotated[Path, typer.Option("--out", "-o", help="descriptions to write (.jsonl or .parquet)")] = Path(
        "descriptions.jsonl"
    ),
    subset: Annotated[
        str | None,
        typer.Option("--subset", help="nsd_stimuli.hdf5: all, shared1000, shared515, subjNN or a file of ids"),
    ] = None,
    design: Annotated[
        Path | None,
        typer.Option("--design", help="nsd_stimuli.hdf5: nsd_expdesign.mat (default: from the NSD root layout)"),
    ] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="openai, transformers or import")] = None,
    model: Annotated[str | None, typer.Option("--model", help="served model name, hub id/folder, or label")] = None,
    prompt: Annotated[
        list[str] | None,
        typer.Option("--prompt", help="prompt name (caption, detailed, class_conditioned) or text; repeatable"),
    ] = None,
    source: Annotated[Path | None, typer.Option("--source", help="import: JSONL/CSV/COCO JSON of texts")] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="CSV/JSONL of image,label for class_conditioned prompts")
    ] = None,
    samples: Annotated[int | None, typer.Option("--samples", help="descriptions per image and prompt")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", help="sampling temperature")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="longest description (tokens)")] = None,
    seed: SeedOpt = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="openai: API root, e.g. .../v1")] = None,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="openai: env variable holding the API key")
    ] = None,
    revision: Annotated[str | None, typer.Option("--revision", help="model revision or weights tag")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="openai: requests in flight")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="transformers: images per batch")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="transformers: auto, float32, bfloat16, float16")] = None,
    device: DeviceOpt = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="seconds allowed per request")] = None,
    max_retries: Annotated[int | None, typer.Option("--max-retries", help="retries per request")] = None,
    max_side: Annotated[int | None, typer.Option("--max-side", help="downscale images to this side (0: never)")] = None,
    image_splitting: Annotated[
        bool | None,
        typer.Option(
            "--image-splitting/--no-image-splitting",
            help="transformers: tile large images (Idefics3/SmolVLM; off: faster). Default: the processor's",
        ),
    ] = None,
    clean: Annotated[
        list[str] | None,
        typer.Option("--clean", help="clean the texts written to --out: preamble, closing (raw_text kept); repeatable"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only say how many requests remain")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    cache_dir: CacheDirOpt = None,
    progress: ProgressOpt = None,
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
    flags = {
        "--subset": subset,
        "--design": design,
        "--backend": backend,
        "--model": model,
        "--prompt": list(prompt) if prompt else None,
        "--source": source,
        "--labels": labels,
        "--samples": samples,
        "--temperature": temperature,
        "--max-tokens": max_tokens,
        "--seed": seed,
        "--base-url": base_url,
        "--api-key-env": api_key_env,
        "--revision": revision,
        "--concurrency": concurrency,
        "--batch-size": batch_size,
        "--dtype": dtype,
        "--device": device,
        "--timeout": timeout,
        "--max-retries": max_retries,
        "--max-side": max_side,
        "--image-splitting/--no-image-splitting": image_splitting,
        "--clean": list(clean) if clean else None,
        "--cache-dir": cache_dir,
        "--progress/--no-progress": progress,
    }

    def go() -> None:
        from llmvem.data.nsd_stimuli import is_stimulus_file, stimuli_from_path
        from llmvem.describe import build_describer, describe_stimuli, generation_params, plan_descriptions
        from llmvem.describe.run import stimuli_from_folder
        from llmvem.store import ArtifactStore

        cfg = _resolve(config, set_, flags, command="describe")
        d = cfg.describe
        describer = build_describer(d, device=cfg.device)
        if is_stimulus_file(images):
            stim = stimuli_from_path(images, cfg.features.subset, design=cfg.features.design)
        else:
            stim = stimuli_from_folder(images, d.labels)
        params = generation_params(d, cfg.seed)
        store = ArtifactStore(cfg.cache_dir)
        if d.n_samples > 1 and d.backend != "import" and d.temperature == 0:
            typer.echo("warning: --samples > 1 with temperature 0 gives identical samples", err=True)
        if dry_run:
            plan = plan_descriptions(stim, describer, d.prompt, params, d.n_samples, store)
            typer.echo(
                f"{len(plan.todo)} of {plan.n_requests} requests remain ({plan.n_done} finished"
                + (f", {plan.n_failed_before} failed before and will be retried" if plan.n_failed_before else "")
                + f"); log {plan.log_path}"
            )
            return
        conc = d.concurrency if d.backend == "openai" else 1
        desc = describe_stimuli(
            stim,
            describer,
            prompt=d.prompt,
            params=params,
            n_samples=d.n_samples,
            store=store,
            progress=cfg.progress,
            concurrency=conc,
            raise_on_failure=False,
            max_consecutive_failures=d.max_consecutive_failures,
            clean=d.clean,
        )
        desc.write(out)
        typer.echo(f"{len(desc)} descriptions of {len(stim)} images → {out}")
        if desc.failures:
            from rich.console import Console

            con = Console(stderr=True, highlight=False, soft_wrap=True)
            con.print(f"[bold red]{len(desc.failures)} request(s) failed[/bold red] (a re-run retries them):")
            for f in desc.failures[:50]:
                con.print(f"  - {f}", markup=False)
            if len(desc.failures) > 50:
                con.print(f"  ... and {len(desc.failures) - 50} more (llmvem describe export --failures)")
            raise typer.Exit(1)

    _run(go)


@describe_app.command("export")
def describe_export(
    out: Annotated[Path, typer.Argument(help="file to write: .jsonl or .parquet")],
    format: Annotated[str | None, typer.Option("--format", help="jsonl or parquet (default: from suffix)")] = None,
    images: Annotated[
        Path | None, typer.Option("--images", help="only these images (matched by content), named by their ids")
    ] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="only this backend")] = None,
    model: Annotated[str | None, typer.Option("--model", help="only this model")] = None,
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="only these prompts (name or text)")] = None,
    clean: Annotated[
        list[str] | None, typer.Option("--clean", help="clean the texts: preamble, closing (raw_text kept); repeatable")
    ] = None,
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

        n = export_descriptions(
            out,
            ArtifactStore(cache_dir),
            format=format,
            backend=backend,
            model=model,
            prompt=prompt,
            images=images,
            clean=clean,
        )
        typer.echo(f"{n} descriptions → {out}")

    _run(go)


@app.command()
def embed(
    texts: Annotated[
        Path | None,
        typer.Argument(
            help="JSONL/CSV with an image (or id) column and a text column (optional model, prompt columns); "
            "default: every description in the artifact store (from llmvem describe)",
            show_default=False,
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="embeddings .npy (ids go to <out>.ids.txt)")] = Path(
        "embeddings.npy"
    ),
    encoder: Annotated[
        str | None,
        typer.Option(
            "--encoder",
            help="text encoder: minilm, mpnet, sentence-transformers:ID|PATH, clip, clip:ID|PATH, "
            "open_clip:PATH|hf-hub:ID|ARCH:TAG, glove, glove-nouns|verbs|adjectives|adverbs|prepositions",
        ),
    ] = None,
    policy: Annotated[str | None, typer.Option("--policy", help="long texts: chunk or truncate")] = None,
    aggregate: Annotated[
        str | None, typer.Option("--aggregate", help="several texts per image: mean (one row per image) or all")
    ] = None,
    select_model: Annotated[str | None, typer.Option("--select-model", help="only texts by this model")] = None,
    select_prompt: Annotated[str | None, typer.Option("--select-prompt", help="only texts of this prompt")] = None,
    normalize: Annotated[
        bool | None, typer.Option("--normalize/--no-normalize", help="unit-length rows (default: on)")
    ] = None,
    clean: Annotated[
        list[str] | None,
        typer.Option("--clean", help="clean the texts first: preamble, closing (see describe --clean); repeatable"),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    cache_dir: CacheDirOpt = None,
    device: DeviceOpt = None,
    progress: ProgressOpt = None,
) -> None:
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
    flags = {
        "--encoder": encoder,
        "--policy": policy,
        "--aggregate": aggregate,
        "--select-model": select_model,
        "--select-prompt": select_prompt,
        "--normalize/--no-normalize": normalize,
        "--clean": list(clean) if clean else None,
        "--cache-dir": cache_dir,
        "--device": device,
        "--progress/--no-progress": progress,
    }

    def go() -> None:
        from llmvem.describe.clean import clean_steps, clean_text
        from llmvem.describe.imported import read_text_table
        from llmvem.store import ArtifactStore
        from llmvem.text import embed_per_image, read_describe_store

        cfg = _resolve(config, set_, flags)
        store = ArtifactStore(cfg.cache_dir)
        steps = clean_steps(cfg.describe.clean)
        if texts is None:
            table = read_describe_store(store, clean=steps)
        else:
            table = read_text_table(texts)
            if steps:
                table["text"] = [clean_text(str(t), steps) for t in table["text"]]
        e = cfg.embed
        emb = embed_per_image(
            table,
            model=e.select_model,
            prompt=e.select_prompt,
            aggregate=e.aggregate,
            encoder=e.encoder,
            normalize=e.normalize,
            policy=e.policy,
            batch_size=e.batch_size,
            device=cfg.device,
            store=store,
            progress=cfg.progress,
        )
        npy, ids = emb.save(out)
        st = emb.stats
        if st.get("n_truncated") and e.policy == "truncate":
            typer.echo(
                f"{st['n_truncated']} of {st['n_texts']} texts were truncated to the encoder's window "
                f"({st['n_tokens_dropped']} tokens dropped, at most {st['max_dropped']} of one text)"
            )
        if st.get("n_fallback"):
            typer.echo(f"{st['n_fallback']} texts had no word of the kind and were embedded as the fallback word")
        shape = f"{emb.values.shape[0]} × {emb.values.shape[1]}"
        typer.echo(f"{shape} embeddings ({e.encoder}, {e.aggregate}) → {npy}, {ids}")

    _run(go)


@app.command()
def features(
    images: Annotated[Path, typer.Argument(help="folder of images, or NSD's nsd_stimuli.hdf5")],
    out: Annotated[Path, typer.Option("--out", "-o", help="features .npy (ids go to <out>.ids.txt)")] = Path(
        "features.npy"
    ),
    backbone: Annotated[
        str | None,
        typer.Option("--backbone", help="vision backbone: efficientnet_lite0, timm:ARCH, hf_clip:HUB_ID|FOLDER"),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option("--layer", help="tap this named module (e.g. layer3, blocks.9, encoder.layers.5, _blocks.9)"),
    ] = None,
    pooling: Annotated[
        str | None, typer.Option("--pooling", help="avg, max or cls (default: the backbone's or the layer's)")
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="run directory of a fine-tuned model (llmvem train)")
    ] = None,
    weights: Annotated[
        str | None, typer.Option("--weights", help="with --model: which model, e.g. aligned-seed0, twin-seed1")
    ] = None,
    pif: Annotated[
        bool | None,
        typer.Option("--pif/--no-pif", help="with a visual_words --model: PIF features (visual words @ embeddings)"),
    ] = None,
    head: Annotated[
        str | None,
        typer.Option("--head", help="with --model: a head's output: project (text-space projection) or task (logits)"),
    ] = None,
    subset: Annotated[
        str | None,
        typer.Option("--subset", help="nsd_stimuli.hdf5: all, shared1000, shared515, subjNN or a file of ids"),
    ] = None,
    design: Annotated[
        Path | None,
        typer.Option("--design", help="nsd_stimuli.hdf5: nsd_expdesign.mat (default: from the NSD root layout)"),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    cache_dir: CacheDirOpt = None,
    device: DeviceOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Extract pooled image features with a pretrained backbone or a fine-tuned model of a run directory.

    --layer taps any named module (an unknown name lists the close and valid ones); features are cached per
    backbone, layer and pooling. The ids written to <out>.ids.txt are canonical NSD ids (nsd-NNNNN, 1-based) when
    every file name is an NSD image name (sharedNNNN_nsdNNNNN, Algonauts train-XXXX_nsd-NNNNN / test-XXXX_nsd-NNNNN,
    whose number is 0-based) and the file stems otherwise. NSD's nsd_stimuli.hdf5 is read directly, without
    exporting images: --subset picks the images (the design file is found from the NSD root layout, or --design).

    Examples:
      llmvem features ../shared/data/objects92/images -o obj92.npy
      llmvem features subj01/training_split/training_images -o f.npy
      llmvem features nsd/nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5 --subset shared1000 -o shared.npy
      llmvem features images/ --backbone timm:resnet50 --layer layer3 -o layer3.npy
      llmvem features images/ --backbone hf_clip:openai/clip-vit-base-patch32 --layer encoder.layers.5 --pooling avg
      llmvem features my_images/ --model runs/nsd-objects92-20261122-101500 --weights aligned-seed0 -o aligned.npy
      llmvem features my_images/ --model runs/nsd-objects92-20261122-101500 --head project -o text_space.npy
    """
    flags = {
        "--backbone": backbone,
        "--layer": layer,
        "--pooling": pooling,
        "--model": model,
        "--weights": weights,
        "--pif/--no-pif": pif,
        "--head": head,
        "--subset": subset,
        "--design": design,
        "--cache-dir": cache_dir,
        "--device": device,
        "--progress/--no-progress": progress,
    }

    def go() -> None:
        import numpy as np

        from llmvem.data.files import check_writable_ids, write_ids
        from llmvem.data.nsd_stimuli import stimuli_from_path
        from llmvem.store import ArtifactStore
        from llmvem.vision import extract_features

        def save(values: np.ndarray, ids: list[str], what: str) -> None:  # features (.npy) + ids (.ids.txt)
            out.parent.mkdir(parents=True, exist_ok=True)
            np.save(out, values)
            write_ids(out.with_suffix(".ids.txt"), ids, f"features {out}")
            typer.echo(f"{values.shape[0]} × {values.shape[1]} features{what} → {out}")

        cfg = _resolve(config, set_, flags, command="features")
        if cfg.features.pif and cfg.features.model is None:
            _fail("--pif needs --model RUN_DIR of a visual_words run (finetune.loss=visual_words)")
        stim = stimuli_from_path(images, cfg.features.subset, design=cfg.features.design)
        check_writable_ids(stim.ids, f"images of {images}")  # before the work: the .ids.txt must round-trip
        if cfg.features.model is not None:
            from llmvem.align.finetune import features_from_run

            if cfg.features.pif:
                from llmvem.visualwords.run import pif_from_run

                f, run_dir = cfg.features, cfg.features.model
                values = pif_from_run(stim, run_dir, f.weights, batch_size=f.batch_size, device=cfg.device,
                                      progress=cfg.progress)  # fmt: skip
            else:
                f, run_dir = cfg.features, cfg.features.model
                values = features_from_run(stim, run_dir, f.weights, f.batch_size, cfg.device, cfg.progress, f.layer,
                                           f.pooling, head=f.head)  # fmt: skip
            save(values, stim.ids, f" of {cfg.features.weights}")
            return
        fm = extract_features(
            stim,
            backbone=cfg.features.backbone,
            batch_size=cfg.features.batch_size,
            device=cfg.device,
            store=ArtifactStore(cfg.cache_dir),
            progress=cfg.progress,
            layer=cfg.features.layer,
            pooling=cfg.features.pooling,
        )
        save(fm.values, fm.ids, "")

    _run(go)


@app.command()
def words(
    images: Annotated[Path, typer.Argument(help="folder of images")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON file {image file name: [word, ...]}")] = Path(
        "words.json"
    ),
    model: Annotated[
        Path | None, typer.Option("--model", help="run directory of a visual_words fine-tuned model (llmvem train)")
    ] = None,
    weights: Annotated[
        str | None, typer.Option("--weights", help="which model of the run, e.g. aligned-seed0 (default)")
    ] = None,
    top: Annotated[int | None, typer.Option("--top", help="words per image (default 10)")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    device: DeviceOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Which words does each image "say"? The top visual words of a visual_words model's vocabulary head.

    The model must come from a run trained with --set finetune.loss=visual_words (VW-LMM's vocabulary head);
    stop words and special tokens are never listed, and a word split into several tokens is read as the whole word
    (skateboard, not skate).

    Examples:
      llmvem train configs/nsd-objects92.yaml --data-dir ../shared/data --set finetune.loss=visual_words
      llmvem words ../shared/data/objects92/images --model runs/nsd-objects92-20261122-101500 --top 10 --out w.json
    """
    flags = {
        "--model": model,
        "--weights": weights,
        "--top": top,
        "--device": device,
        "--progress/--no-progress": progress,
    }

    def go() -> None:
        import json

        from llmvem.data.stimuli import StimulusSet
        from llmvem.store import atomic_write_text

        cfg = _resolve(config, set_, flags, command="words")
        if cfg.features.model is None:
            _fail("say which model: --model RUN_DIR (a run trained with --set finetune.loss=visual_words)")
        from llmvem.visualwords.run import words_from_run

        stim = StimulusSet.from_folder(images)
        f = cfg.features
        assert f.model is not None
        result = words_from_run(stim, f.model, f.weights, cfg.words.top_k, batch_size=f.batch_size,
                                device=cfg.device, progress=cfg.progress)  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        first = next(iter(result.items()))
        typer.echo(f"{cfg.words.top_k} words for each of {len(result)} images → {out} (e.g. {first[0]}: "
                   f"{', '.join(first[1][:5])} ...)")  # fmt: skip

    _run(go)


def _experiment(config: Path, set_: list[str] | None, flags: dict[str, Any], until: str) -> None:
    cfg = _resolve(config, set_, flags)
    from llmvem.devices import check_device
    from llmvem.pipeline import run_encoding_demo, run_finetune_folder, run_nsd_objects92, run_objects92_rsa

    check_device(cfg.device)  # before a run directory is made (a GPU config on a CPU-only machine, say)

    if cfg.dataset.name == "demo":
        run_encoding_demo(cfg, until=until)
    elif cfg.dataset.name == "folder":
        run_finetune_folder(cfg, until=until)
    elif cfg.dataset.name == "nsd_objects92":
        run_nsd_objects92(cfg, until=until)
    elif cfg.dataset.name == "objects92":
        run_objects92_rsa(cfg, until=until)
    else:
        _fail(f"dataset.name={cfg.dataset.name!r}: training and evaluation on it are not available yet")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="experiment YAML config")],
    set_: SetOpt = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="twin training epochs")] = None,
    lambda_align: Annotated[float | None, typer.Option("--lambda-align", help="alignment loss weight")] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="infonce, infonce_one_way, cosine, byol")] = None,
    data_dir: DataDirOpt = None,
    cache_dir: CacheDirOpt = None,
    output_dir: OutputDirOpt = None,
    device: DeviceOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Train the baseline and language-aligned models of an experiment; they are cached in the artifact store.

    Examples:
      llmvem train configs/demo.yaml --epochs 300 --lambda-align 0.3
      llmvem train configs/nsd-objects92.yaml --data-dir ../shared/data --set finetune.seeds=[0,1,2,3,4]
    """
    flags = {
        "--epochs": epochs,
        "--lambda-align": lambda_align,
        "--loss": loss,
        "--data-dir": data_dir,
        "--cache-dir": cache_dir,
        "--output-dir": output_dir,
        "--device": device,
        "--progress/--no-progress": progress,
    }
    _run(lambda: _experiment(config, set_, flags, until="train"))


evaluate_app = typer.Typer(cls=_RunByDefaultGroup, no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(evaluate_app, name="evaluate")


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


FeaturesOpt = Annotated[
    list[str] | None,
    typer.Option("--features", "-f", help="feature matrix NAME=path.npy or path.npy (+ path.ids.txt); repeatable"),
]
BrainOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--brain",
        "-b",
        help="brain data: .npz, Algonauts subject folder or NSD root, or KIND:PATH?key=value&... with the loader's "
        "options (nsd:/data/nsd?subject=1-8&space=fsaverage&rois=streams; algonauts:subj01?hemispheres=lh); "
        "repeatable",
    ),
]
RoisOpt = Annotated[list[str] | None, typer.Option("--roi", help="keep only these ROIs; repeatable")]
SubjectOpt = Annotated[
    int | None,
    typer.Option("--subject", help="NSD subject (1–8) of NSD roots that name none (or subject= per --brain)"),
]
CvOpt = Annotated[
    str | None,
    typer.Option(
        "--cv",
        help="ridge α per voxel: gcv (fast), loo (exact), K for K-fold, or frac (fractional ridge as Doerig et al.: "
        "the fraction of the OLS weight norm per voxel by 5-fold CV)",
    ),
]
TestFractionOpt = Annotated[
    float | None, typer.Option("--test-fraction", help="held-out share when the data has no test split")
]


@evaluate_app.command("run")
def evaluate(
    config: Annotated[Path, typer.Argument(help="experiment YAML config")],
    set_: SetOpt = None,
    cv: CvOpt = None,
    data_dir: DataDirOpt = None,
    cache_dir: CacheDirOpt = None,
    output_dir: OutputDirOpt = None,
    device: DeviceOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Evaluate an experiment: encoding accuracy per ROI with noise ceilings, or RSA (earlier stages come from cache).

    Examples:
      llmvem evaluate experiment.yaml --set evaluate.rsa.method=pearson
    """
    flags = {
        "--cv": cv,
        "--data-dir": data_dir,
        "--cache-dir": cache_dir,
        "--output-dir": output_dir,
        "--device": device,
        "--progress/--no-progress": progress,
    }
    _run(lambda: _experiment(config, set_, flags, until="evaluate"))


def _evaluate_files(kind: str, config: Path | None, set_: list[str] | None, flags: dict[str, Any]) -> None:
    cfg = _resolve(config, set_, flags)
    if "name" not in cfg.model_fields_set:
        cfg.name = f"evaluate-{kind}"
    from llmvem.pipeline.evaluate_files import run_evaluate_decode, run_evaluate_encoding, run_evaluate_rsa

    {"encoding": run_evaluate_encoding, "rsa": run_evaluate_rsa, "decode": run_evaluate_decode}[kind](cfg)


@evaluate_app.command("encoding")
def evaluate_encoding(
    features: FeaturesOpt = None,
    brain: BrainOpt = None,
    roi: RoisOpt = None,
    subject: SubjectOpt = None,
    cv: CvOpt = None,
    test_fraction: TestFractionOpt = None,
    permutations: Annotated[
        int | None, typer.Option("--permutations", help="permutations for per-voxel p-values (0: off)")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    name: NameOpt = None,
    output_dir: OutputDirOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Voxelwise ridge encoding of feature files on brain data: r per voxel and ROI, noise ceilings, plots, report.

    Fits on the data's 'train' split and scores on 'test' (or a seeded --test-fraction hold-out). Writes
    encoding.csv (mean over subjects), encoding_subjects.csv, voxel_r.npz, encoding.png, r_histograms.png,
    metrics.json and report.html into a new run directory, and per-voxel r, score and α in each brain's own space
    (maps/<brain>/<model>/: r.nii.gz in the subject's volume, lh.r.mgh / rh.r.mgh on fsaverage; NaN outside).

    Examples:
      llmvem evaluate encoding -f effnet=eff.npy -f minilm=desc.npy -b subj01.npz -b subj02.npz --permutations 1000
      llmvem evaluate encoding -f feats.npy -b algonauts/subj01 --roi FFA-1 --roi PPA --cv 5
      llmvem evaluate encoding -f feats.npy -b "nsd:/data/nsd?subject=1-8&space=fsaverage&rois=streams" --cv gcv
    """
    flags = {"--features": features, "--brain": brain, "--roi": roi, "--subject": subject, "--cv": cv,
             "--test-fraction": test_fraction, "--permutations": permutations, "--seed": seed, "--name": name,
             "--output-dir": output_dir, "--progress/--no-progress": progress}  # fmt: skip
    _run(lambda: _evaluate_files("encoding", config, set_, flags))


@evaluate_app.command("rsa")
def evaluate_rsa(
    features: FeaturesOpt = None,
    rdms: Annotated[
        list[str] | None,
        typer.Option("--rdms", help="target RDMs: DATASET:TARGET (objects92:cichy_it) or .npz/.npy; repeatable"),
    ] = None,
    brain: BrainOpt = None,
    roi: RoisOpt = None,
    subject: SubjectOpt = None,
    metric: Annotated[str | None, typer.Option("--metric", help="RDM: correlation, euclidean, cosine")] = None,
    method: Annotated[
        str | None, typer.Option("--method", help="comparison: spearman, pearson, kendall_tau_a, cosine")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    name: NameOpt = None,
    data_dir: DataDirOpt = None,
    output_dir: OutputDirOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """RSA of feature files against target RDMs (per-subject scores, noise ceilings, bootstrap CI, plots, report).

    Targets: dataset RDM sets, RDM files, and/or the ROIs of several --brain sources (each source a subject).

    Examples:
      llmvem evaluate rsa -f desc=desc.npy -f eff=eff.npy --rdms objects92:cichy_it --data-dir ../shared/data
      llmvem evaluate rsa -f feats.npy -b subj01.npz -b subj02.npz -b subj03.npz --roi IT --method pearson
    """
    flags = {"--features": features, "--rdms": rdms, "--brain": brain, "--roi": roi, "--subject": subject,
             "--metric": metric, "--method": method, "--seed": seed, "--name": name, "--data-dir": data_dir,
             "--output-dir": output_dir, "--progress/--no-progress": progress}  # fmt: skip
    _run(lambda: _evaluate_files("rsa", config, set_, flags))


@evaluate_app.command("decode")
def evaluate_decode(
    brain: BrainOpt = None,
    embeddings: Annotated[
        str | None, typer.Option("--embeddings", "-e", help="the stimuli's text embeddings (.npy + .ids.txt)")
    ] = None,
    captions: Annotated[
        Path | None, typer.Option("--captions", help="caption corpus for retrieval (.jsonl/.csv/.txt)")
    ] = None,
    encoder: Annotated[str | None, typer.Option("--encoder", help="text encoder for the caption corpus")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="captions retrieved per test stimulus")] = None,
    roi: RoisOpt = None,
    subject: SubjectOpt = None,
    cv: CvOpt = None,
    test_fraction: TestFractionOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: SeedOpt = None,
    name: NameOpt = None,
    cache_dir: CacheDirOpt = None,
    output_dir: OutputDirOpt = None,
    device: DeviceOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Decode text embeddings from brain data: identification accuracy and nearest-caption retrieval.

    Examples:
      llmvem evaluate decode -b subj01.npz -e captions.npy --captions corpus.jsonl --encoder minilm --top-k 5
    """
    flags = {"--brain": brain, "--embeddings": embeddings, "--captions": captions, "--encoder": encoder,
             "--top-k": top_k, "--roi": roi, "--subject": subject, "--cv": cv, "--test-fraction": test_fraction,
             "--seed": seed, "--name": name, "--cache-dir": cache_dir, "--output-dir": output_dir,
             "--device": device, "--progress/--no-progress": progress}  # fmt: skip
    _run(lambda: _evaluate_files("decode", config, set_, flags))


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """(Re)build the self-contained HTML report of a run directory.

    Examples:
      llmvem report runs/demo-20261122-101500
    """

    def go() -> None:
        from llmvem.report import build_report

        typer.echo(str(build_report(run_dir)))

    _run(go)


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories (of nsd_objects92 / objects92 experiments)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for compare.csv and compare.png")] = Path("compare"),
    label: Annotated[
        list[str] | None, typer.Option("--label", help="a name per run, in order (default: the folder names)")
    ] = None,
    representation: Annotated[
        str, typer.Option("--representation", help="the representation plotted: aligned, aligned_head, twin …")
    ] = "aligned_head",
) -> None:
    """Put several runs side by side: one table of their RSA, paired differences and held-out accuracy
    (compare.csv), and one representation's RSA per brain set as bars, one per run (compare.png).

    Examples:
      llmvem compare runs/nsd-objects92-A runs/nsd-objects92-B --label "λ=0.03" --label "λ=0.1" -o compare/
    """

    def go() -> None:
        from llmvem.report.compare import write_comparison

        csv, png = write_comparison(run_dirs, out, label or None, representation)
        typer.echo(f"{len(run_dirs)} runs → {csv}, {png}")

    _run(go)


@app.command()
def datasets(data_dir: DataDirOpt = None) -> None:
    """List the known datasets and whether their files are present in the data directory.

    Examples:
      llmvem datasets --data-dir ../shared/data
    """

    def go() -> None:
        from rich.console import Console
        from rich.table import Table

        from llmvem.data.datasets import dataset_status

        table = Table("dataset", "status", "description")
        for row in dataset_status(data_dir):
            status = "[green]present[/green]" if row["present"] else f"[red]missing {len(row['missing'])} file(s)[/red]"
            table.add_row(row["name"], status, row["description"])
        Console().print(table)

    _run(go)


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
    from rich.console import Console
    from rich.table import Table

    from llmvem.store import ArtifactStore

    store = ArtifactStore(cache_dir)
    entries = store.entries(kind)
    table = Table("kind", "key", "size", "created", "spec", title=f"artifact store {store.root}")
    for e in entries:
        table.add_row(e.kind, e.key[:12], _size(e.size_bytes), e.created, e.summary)
    Console().print(table)
    logs, sets = _record_logs(store.root), _demo_sets(store.root)
    if logs:
        n_rec = sum(_count_lines(p) for p in logs)
        typer.echo(
            f"describe record logs: {len(logs)} ({n_rec} records, {_size(sum(p.stat().st_size for p in logs))}) in "
            f"{store.root / _LOG_DIR}; kept by `cache clean --all`, removed only by `cache clean --kind {_LOG_DIR}`"
        )
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
    from llmvem.store import ArtifactStore

    if not (kind or key or all_):
        _fail("say what to remove: --kind KIND, --key PREFIX or --all (record logs only with --kind descriptions)")
    store = ArtifactStore(cache_dir)
    if kind == _LOG_DIR:
        logs = [p for p in _record_logs(store.root) if not key or p.name.startswith(key)]
        for p in logs:
            p.unlink()
        typer.echo(f"removed {len(logs)} describe record log(s) from {store.root / _LOG_DIR}")
        return
    n = store.clean(kind=kind, key_prefix=key)
    extra = ""
    if all_ and not (kind or key):
        import shutil

        keep = {_LOG_DIR, ".tmp"}
        others = [p for p in store.root.iterdir() if p.name not in keep] if store.root.is_dir() else []
        others = [p for p in others if not (p.is_dir() and any(p.glob("*/*/meta.json")))]  # entries: counted above
        for p in others:  # generated demo sets, the hash memo, fine-tuning checkpoints
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        extra = f" and {len(others)} other item(s) (demo sets, checkpoints, hash memo)" if others else ""
        kept = _record_logs(store.root)
        extra += f"; kept {len(kept)} describe record log(s) (remove with --kind {_LOG_DIR})" if kept else ""
    typer.echo(f"removed {n} entr{'y' if n == 1 else 'ies'}{extra} from {store.root}")


_LOG_DIR = "descriptions"  # llmvem.describe.run.LOG_DIR (not imported: `cache` stays light)


def _record_logs(root: Path) -> list[Path]:
    d = root / _LOG_DIR
    return sorted(d.glob("*.jsonl")) if d.is_dir() else []


def _demo_sets(root: Path) -> list[Path]:
    d = root / "demo_sets"
    return sorted(d.iterdir()) if d.is_dir() else []


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _usage_error(exc: typer.TyperException) -> int:
    """Print a usage error of typer/click (unknown option, missing argument, bad value) like :func:`_fail` does: the
    usage line, where to find help, and ``error: MESSAGE``, soft-wrapped (typer's own panel hard-wraps at the
    terminal width, cutting paths); returns the exit code."""
    from rich.console import Console
    from rich.markup import escape

    code = int(getattr(exc, "exit_code", 2))
    if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed (as typer does)
        return code
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        console.print(escape(ctx.get_usage()))
        if ctx.command.get_help_option(ctx) is not None:
            console.print(escape(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help."))
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    console.print(f"[bold red]error:[/bold red] {escape(message)}")
    return code


def main() -> None:
    """Entry point of the ``llmvem`` script (and ``python -m llmvem``)."""
    try:
        rv = app(prog_name="llmvem", standalone_mode=False)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        raise SystemExit(1) from None
    except typer.TyperException as exc:
        raise SystemExit(_usage_error(exc)) from None
    raise SystemExit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
