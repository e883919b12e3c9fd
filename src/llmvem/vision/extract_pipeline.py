"""Pipelined feature passes: images decoded and preprocessed by worker threads while the model runs.

:func:`image_batches` keeps up to ``2 × workers`` batches of per-image tasks (decode with
:meth:`~llmvem.data.stimuli.StimulusSet.load`, then the backbone's preprocessing) in flight in a thread pool, and
yields the batches in order, stacked (into pinned memory when the model is on CUDA). PIL's decoders and resampling
and torch's tensor ops release the GIL, so the threads run in parallel with each other and with the forward pass;
threads (unlike ``DataLoader`` processes) need no pickling of the preprocessing and re-raise a worker's error as it
is. ``workers=0`` decodes in the calling thread, batch by batch (the sequential reference).

:func:`run_pass` drives the forward passes (``torch.inference_mode``, optional autocast to ``bfloat16`` or
``float16``): the batch is copied to the device with ``non_blocking=True``; on CUDA the outputs are copied back
into pinned memory asynchronously and handed to the consumer one batch later, so the copy overlaps the next
forward. The numbers are those of a sequential loop over the same batches (the batch boundaries are the same).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from llmvem.errors import ConfigError, DataError, LlmvemError
from llmvem.progress import progress_bar

if TYPE_CHECKING:
    import torch

    from llmvem.data.stimuli import StimulusSet
    from llmvem.vision.backbones import Backbone

PRECISIONS = ("float32", "bfloat16", "float16")
#: decode threads when none are asked for (measured on 2 cores: see benchmarks/README.md, ``features``)
DEFAULT_MAX_WORKERS = 4

Heads = Mapping[str, Callable[["torch.Tensor"], "torch.Tensor"]]
Consumer = Callable[[list[int], dict[str, "torch.Tensor"]], None]


def default_workers() -> int:
    """Decode threads by default: one per CPU core, at most :data:`DEFAULT_MAX_WORKERS`."""
    return max(1, min(DEFAULT_MAX_WORKERS, os.cpu_count() or 1))


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`.

    Raises:
        ConfigError: another value.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def _where(stimuli: StimulusSet, k: int) -> str:
    return str(stimuli.paths[k]) if stimuli.paths else f"{stimuli.name}[{stimuli.ids[k]}]"


def _prepare(stimuli: StimulusSet, preprocess: Callable[[Any], torch.Tensor], k: int) -> torch.Tensor:
    """Decode and preprocess image ``k``: (3, H, W) float32; any failure is a DataError naming the image."""
    try:
        return preprocess(stimuli.load(k))
    except LlmvemError:
        raise
    except Exception as exc:  # PIL / torchvision errors of a decodable but unusable image
        raise DataError(f"{_where(stimuli, k)}: cannot preprocess image ({type(exc).__name__}: {exc})") from exc


def _stack(tensors: list[torch.Tensor], pin: bool) -> torch.Tensor:
    import torch

    if not pin:
        return torch.stack(tensors)
    out = torch.empty((len(tensors), *tensors[0].shape), dtype=tensors[0].dtype, pin_memory=True)
    return torch.stack(tensors, out=out)


def image_batches(
    stimuli: StimulusSet,
    preprocess: Callable[[Any], torch.Tensor],
    positions: Sequence[int],
    batch_size: int,
    workers: int,
    pin: bool = False,
) -> Generator[tuple[list[int], torch.Tensor], None, None]:
    """Batches ``(positions, (B, 3, H, W) float32)`` of the images at ``positions``, in order.

    Raises:
        DataError: an image cannot be read, decoded or preprocessed (the message names it).
    """
    chunks = [list(positions[i : i + batch_size]) for i in range(0, len(positions), batch_size)]
    if workers <= 0:
        for chunk in chunks:
            yield chunk, _stack([_prepare(stimuli, preprocess, k) for k in chunk], pin)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llmvem-decode")
    pending: deque[tuple[list[int], list[Future[torch.Tensor]]]] = deque()
    todo = iter(chunks)
    try:
        for _ in range(2 * workers):
            _submit(pool, pending, todo, stimuli, preprocess)
        while pending:
            chunk, futures = pending.popleft()
            _submit(pool, pending, todo, stimuli, preprocess)
            yield chunk, _stack([f.result() for f in futures], pin)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _submit(
    pool: ThreadPoolExecutor,
    pending: deque[tuple[list[int], list[Future[torch.Tensor]]]],
    todo: Iterator[list[int]],
    stimuli: StimulusSet,
    preprocess: Callable[[Any], torch.Tensor],
) -> None:
    chunk = next(todo, None)
    if chunk is not None:
        pending.append((chunk, [pool.submit(_prepare, stimuli, preprocess, k) for k in chunk]))


def autocast(device: str, precision: str) -> Any:
    """The autocast context of ``precision`` on ``device`` (a null context for float32)."""
    import torch

    if check_precision(precision) == "float32":
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=getattr(torch, precision))


def run_pass(
    stimuli: StimulusSet,
    backbone: Backbone,
    heads: Heads | None,
    consume: Consumer,
    positions: Sequence[int],
    *,
    batch_size: int,
    workers: int,
    precision: str = "float32",
    calls: Mapping[str, int] | None = None,
    progress: bool = True,
    label: str = "features",
) -> None:
    """One pass over ``positions``: every batch forwarded once, its outputs given to ``consume(positions, outputs)``.

    Args:
        heads: module name → head (applied in the module's forward hook, see
            :func:`~llmvem.vision.taps.capture_layers`); ``None`` for the backbone's own features (key ``""``).
        consume: receives float32 CPU tensors (B, D) per head, in order of ``positions``.
        calls: module → calls per forward (from the taps' probe), to stop each forward after the deepest tap.
    """
    import torch

    from llmvem.vision.taps import capture_layers

    device = backbone.device
    cuda = torch.device(device).type == "cuda"
    module = backbone.module  # build before the progress bar starts
    was_training = module.training
    module.eval()
    held: tuple[list[int], dict[str, torch.Tensor], Any] | None = None
    batches = image_batches(stimuli, backbone.preprocess, positions, batch_size, workers, pin=cuda)
    try:
        with progress_bar(label, total=len(positions), enabled=progress) as advance, torch.inference_mode():
            for chunk, batch in batches:
                x = batch.to(device, non_blocking=True)
                with autocast(device, precision):
                    out = {"": backbone.features(x)} if heads is None else capture_layers(backbone, heads, x, calls)
                ready = {k: _to_host(v, cuda) for k, v in out.items()}
                event = torch.cuda.Event() if cuda else None
                if event is not None:
                    event.record()
                if held is not None:
                    _hand_over(held, consume, advance)
                held = (chunk, ready, event)
            if held is not None:
                _hand_over(held, consume, advance)
    finally:
        batches.close()
        module.train(was_training)


def _to_host(x: torch.Tensor, cuda: bool) -> torch.Tensor:
    import torch

    x = x.float()
    if not cuda:
        return x.cpu()
    out = torch.empty(x.shape, dtype=torch.float32, pin_memory=True)
    return out.copy_(x, non_blocking=True)


def _hand_over(
    held: tuple[list[int], dict[str, torch.Tensor], Any], consume: Consumer, advance: Callable[[int], None]
) -> None:
    chunk, ready, event = held
    if event is not None:
        event.synchronize()
    consume(chunk, ready)
    advance(len(chunk))
