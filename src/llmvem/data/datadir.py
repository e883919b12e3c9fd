"""Where real datasets live: ``--data-dir`` / ``$LLMVEM_DATA``.

Real data is never copied into the project or the store; loaders read it in place from the data directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from llmvem.errors import DatasetNotFoundError

ENV_DATA = "LLMVEM_DATA"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$LLMVEM_DATA``.

    Raises:
        DatasetNotFoundError: if neither is set or the directory does not exist.
    """
    if data_dir is None:
        env = os.environ.get(ENV_DATA)
        if not env:
            raise DatasetNotFoundError(
                f"no data directory given: pass --data-dir DIR or set {ENV_DATA}=DIR "
                "(the folder that holds e.g. objects92/ and nsd_shared1000/)"
            )
        data_dir = env
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DatasetNotFoundError(f"data directory {path} does not exist (from --data-dir or ${ENV_DATA})")
    return path
