"""The catalogue of real datasets: what files each needs, where they come from, and how to load it.

Datasets are read in place from the data directory (``--data-dir`` / ``$LLMVEM_DATA``), one folder per dataset::

    DATA_DIR/objects92/...         (see OBJECTS92 below)
    DATA_DIR/nsd_shared1000/...

Example
-------
>>> from llmvem.data.datasets import DATASETS
>>> DATASETS.names()
['nsd_shared1000', 'objects92']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmvem.data.datadir import resolve_data_dir
from llmvem.errors import DatasetNotFoundError
from llmvem.registry import Registry, lazy


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and load one dataset.

    Attributes:
        name: registry name, also the dataset's folder under the data directory.
        description: one line for ``llmvem datasets``.
        required_files: paths or glob patterns relative to the dataset folder.
        sources: where a user gets each file (public, with licence).
        load: ``load(data_dir) -> dataset object``; ``data_dir`` is the data directory (or the dataset folder).
        counts: for glob patterns, how many files must match (default: at least one).
    """

    name: str
    description: str
    required_files: tuple[str, ...]
    sources: tuple[str, ...]
    load: Callable[[Path], Any]
    counts: Mapping[str, int] = field(default_factory=dict)

    def root(self, data_dir: str | Path) -> Path:
        """The dataset folder: ``data_dir/name`` if that exists, else ``data_dir`` if it holds the files itself."""
        data_dir = Path(data_dir).expanduser()
        sub = data_dir / self.name
        if not sub.is_dir() and data_dir.is_dir() and not self.missing(data_dir):
            return data_dir
        return sub

    def missing(self, root: Path) -> list[str]:
        """Required files (or globs, with found/expected counts) absent from the dataset folder ``root``."""
        out: list[str] = []
        for pattern in self.required_files:
            if _is_glob(pattern):
                found = len(list(root.glob(pattern))) if root.is_dir() else 0
                want = self.counts.get(pattern, 1)
                if found < want:
                    out.append(f"{pattern} (found {found} of {want})" if pattern in self.counts else pattern)
            elif not (root / pattern).is_file():
                out.append(pattern)
        return out

    def require(self, root: Path) -> None:
        """Raise :class:`DatasetNotFoundError` if any required file is missing from ``root``."""
        missing = self.missing(root)
        if missing:
            raise DatasetNotFoundError(self.not_found_message(root, missing))

    def not_found_message(self, root: Path, missing: list[str]) -> str:
        """What is missing, what is expected where, and where to get it."""
        lines = [f"dataset {self.name!r} is not complete in {root}/", f"missing ({len(missing)}):"]
        lines += [f"  - {m}" for m in missing[:20]]
        if len(missing) > 20:
            lines.append(f"  ... and {len(missing) - 20} more")
        lines.append(f"expected files under {root}/:")
        for p in self.required_files:
            n = self.counts.get(p)
            lines.append(f"  - {p}" + (f"  ({n} files)" if n else ""))
        lines.append("public sources:")
        lines += [f"  - {s}" for s in self.sources]
        lines.append(
            f"Put the files in {root}/ (the data directory is --data-dir or $LLMVEM_DATA; "
            f"it holds one folder per dataset, e.g. {self.name}/)."
        )
        return "\n".join(lines)


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


DATASETS: Registry[DatasetSpec] = Registry("dataset")


OBJECTS92 = DatasetSpec(
    name="objects92",
    description="92 object images (Kriegeskorte 2008; Cichy 2014) with human/monkey IT, EVC, behaviour and model RDMs",
    required_files=(
        "images/image_[0-9][0-9].jpg",
        "cichy2014/fmri_EVC_RDMs.npz",
        "cichy2014/fmri_IT_RDMs.npz",
        "kriegeskorte2008/92_brainRDMs.mat",
        "kriegeskorte2008/92_behavRDMs.mat",
        "kriegeskorte2008/92_modelRDMs.mat",
        "kriegeskorte2008/Kriegeskorte_Neuron2008_supplementalData.mat",
        "descriptions.jsonl",
    ),
    counts={"images/image_[0-9][0-9].jpg": 92},
    sources=(
        "images/ and kriegeskorte2008/*.mat: rsatoolbox (MIT licence), demos/92imageData "
        "(https://github.com/rsagroup/rsatoolbox); images/image_NN.jpg are the 92 stimuli in the .mat order",
        "cichy2014/*.npz (key Net_RDM, 15x92x92): Net2Brain (BSD-3) input_data, from the Algonauts 2019 release "
        "of Cichy et al. 2014 (https://github.com/cvai-roig-lab/Net2Brain)",
        "descriptions.jsonl: one multimodal-LLM description per image (fields image, prompt, text), made for llmvem",
    ),
    load=lazy("llmvem.data.objects92", "load_objects92"),  # that module imports this one
)

NSD_SHARED1000 = DatasetSpec(
    name="nsd_shared1000",
    description="the 1,000 NSD images all 8 subjects saw, with VLM descriptions, HED tags and special100 captions",
    required_files=(
        "images/shared[0-9][0-9][0-9][0-9]_nsd[0-9][0-9][0-9][0-9][0-9].jpg",
        "descriptions/prompts.json",
        "descriptions/*.jsonl",
        "shared1000_HED.tsv",
        "special100_captions.json",
    ),
    counts={"images/shared[0-9][0-9][0-9][0-9]_nsd[0-9][0-9][0-9][0-9][0-9].jpg": 1000},
    sources=(
        "images/: the NSD shared1000 images (Natural Scenes Dataset, https://naturalscenesdataset.org; "
        "COCO-derived), saved as sharedNNNN_nsdNNNNN.jpg",
        "descriptions/: neuromechanist/image-annotation (CC BY-NC-SA 4.0), one <model>.jsonl per VLM "
        "(fields image, nsd_id, prompt, text) and prompts.json",
        "shared1000_HED.tsv: MultimodalNeuroimagingLab/nsd_hed_labels (MIT)",
        "special100_captions.json: adriendoerig/visuo_llm (MIT), COCO and GPT-4 captions of the special100 images",
    ),
    load=lazy("llmvem.data.nsd_shared1000", "load_nsd_shared1000"),
)

for _spec in (OBJECTS92, NSD_SHARED1000):
    DATASETS.register(_spec.name)(_spec)


def load_dataset(name: str, data_dir: str | Path | None = None) -> Any:
    """Load the dataset ``name`` from ``data_dir`` (default ``$LLMVEM_DATA``).

    Raises:
        RegistryError: unknown name (the message lists the known ones).
        DatasetNotFoundError: no data directory, or files missing (the message lists them and their sources).
    """
    spec = DATASETS.get(name)
    root = spec.root(resolve_data_dir(data_dir))
    spec.require(root)
    return spec.load(root)


def check_dataset(name: str, data_dir: str | Path | None = None) -> list[str]:
    """The required files of ``name`` missing from the data directory (empty if complete)."""
    spec = DATASETS.get(name)
    return spec.missing(spec.root(resolve_data_dir(data_dir)))


def dataset_status(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One dict per registered dataset: ``name``, ``description``, ``path``, ``present``, ``missing``, ``sources``.

    Raises:
        DatasetNotFoundError: if no data directory is given or set, or it does not exist.
    """
    base = resolve_data_dir(data_dir)
    rows = []
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        root = spec.root(base)
        missing = spec.missing(root)
        rows.append(
            {
                "name": name,
                "description": spec.description,
                "path": str(root),
                "present": not missing,
                "missing": missing,
                "sources": list(spec.sources),
            }
        )
    return rows
