"""Where a model's files come from, parsed once: ``hf-hub:org/repo[@rev]``, ``local-dir:/path``, a folder, a name.

Every family reads its reference through :func:`parse_reference` (as timm's and open_clip's ``create_model`` parse
``hf-hub:`` / ``local-dir:``), so the rules are the same everywhere: an existing folder is a local model; a
``hf-hub:`` id, or a bare ``org/repo`` where the family takes hub ids, is looked up in the local Hugging Face cache
(nothing is downloaded); anything else is a name of the family's own (an architecture).

Example
-------
>>> parse_reference("hf-hub:timm/resnet18.a1_in1k@main")
Reference(kind='hub', value='timm/resnet18.a1_in1k', revision='main')
>>> parse_reference("resnet18")
Reference(kind='name', value='resnet18', revision='')
>>> parse_reference("org/repo", bare_hub_ids=True).kind
'hub'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmvem.errors import BackendError
from llmvem.store import weights_sha256

HUB_SCHEMA = "hf-hub:"
DIR_SCHEMA = "local-dir:"


@dataclass(frozen=True)
class Reference:
    """A parsed model reference.

    Attributes:
        kind: ``"hub"`` (a Hugging Face hub id), ``"dir"`` (a local folder) or ``"name"`` (the family's own name).
        value: the hub id, the folder (as given) or the name.
        revision: a hub revision after ``@`` (``""``: the cached default).
    """

    kind: str
    value: str
    revision: str = ""


def parse_reference(ref: str, bare_hub_ids: bool = False) -> Reference:
    """Parse ``ref``: ``hf-hub:org/repo[@rev]``, ``local-dir:/path``, an existing folder, else a name.

    Args:
        ref: the text after the family prefix.
        bare_hub_ids: read ``org/repo[@rev]`` without schema as a hub id (Hugging Face families), and paths
            (``./x``, ``/x``, ``~/x``) as folders even when missing, so the error says so.
    """
    ref = ref.strip()
    if ref.startswith(HUB_SCHEMA):
        repo, _, revision = ref[len(HUB_SCHEMA) :].partition("@")
        return Reference("hub", repo.strip(), revision.strip())
    if ref.startswith(DIR_SCHEMA):
        return Reference("dir", ref[len(DIR_SCHEMA) :].strip())
    if Path(ref).expanduser().is_dir() or (bare_hub_ids and ref.startswith((".", "/", "~"))):
        return Reference("dir", ref)
    if bare_hub_ids and "/" in ref.partition("@")[0]:
        repo, _, revision = ref.partition("@")
        return Reference("hub", repo, revision)
    return Reference("name", ref)


def local_model_dir(ref: Reference, name: str) -> tuple[Path, dict[str, Any]]:
    """The folder of a ``dir`` or ``hub`` reference, and its source for an identity (``{"model": ...}``).

    Raises:
        BackendError: no such folder, or the hub id is not in the local cache (nothing is downloaded).
    """
    if ref.kind == "dir":
        path = Path(ref.value).expanduser()
        if not path.is_dir():
            raise BackendError(f"backbone {name!r}: no model folder at {path}")
        path = path.resolve()
        return path, {"model": str(path)}
    if ref.kind != "hub" or "/" not in ref.value:
        raise BackendError(f"backbone {name!r}: no model folder at {ref.value} (and it is not an org/repo hub id)")
    try:
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(ref.value, revision=ref.revision or None, local_files_only=True))
    except Exception as exc:
        raise BackendError(
            f"backbone {name!r}: {ref.value} is not in the local Hugging Face cache and nothing is downloaded here "
            f"({type(exc).__name__}). Download it where there is network access (`huggingface-cli download "
            f"{ref.value}`) and copy the cache, or pass a local model folder."
        ) from exc
    return local, {"model": ref.value, "revision": local.name}


def resolve_hf_model_dir(ref: str, name: str) -> tuple[Path, dict[str, Any]]:
    """:func:`local_model_dir` of ``ref`` read with hub ids allowed (a folder, ``org/repo[@rev]``, ``hf-hub:``)."""
    return local_model_dir(parse_reference(ref, bare_hub_ids=True), name)


def model_files_sha256(model_dir: Path) -> dict[str, str]:
    """SHA-256 of the weights and configuration files at the top of a model folder: file name → digest.

    Raises:
        BackendError: the folder holds no weights file.
    """
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"))
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        raise BackendError(f"no weights (*.safetensors, *.bin) in {model_dir}")
    return {p.name: weights_sha256(p) for p in files}


def checkpoint_weights(path: str | Path, name: str) -> tuple[Path, dict[str, Any]]:
    """A local weights file and its identity entry (``{"source": "checkpoint", "file", "sha256"}``).

    Raises:
        BackendError: no such file.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise BackendError(f"{name}: checkpoint file not found: {file}")
    return file, {"source": "checkpoint", "file": file.name, "sha256": weights_sha256(file)}
