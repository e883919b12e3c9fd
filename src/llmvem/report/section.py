"""One section of a run's HTML report (:func:`llmvem.report.html.write_html_report` draws it).

>>> Section("Encoding", "r per ROI").text
['r per ROI']
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Section:
    """One report section: a title, paragraphs, and optionally a table, images and a preformatted block.

    Attributes:
        title: section heading.
        text: paragraphs of plain text (a single string is one paragraph); escaped on output.
        table: a DataFrame shown as an HTML table (index not shown; floats with 3 decimals).
        images: image files embedded as data URIs; a relative path is looked up in the run directory first, then
            relative to the working directory.
        code: text shown verbatim in a ``<pre>`` block (e.g. a YAML config).
        highlight: positional rows of ``table`` shown in bold (e.g. the best model per ROI).
    """

    title: str
    text: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None
    images: list[Path] = field(default_factory=list)
    code: str | None = None
    highlight: Collection[int] = ()

    def __post_init__(self) -> None:
        if isinstance(self.text, str):
            self.text = [self.text]
        self.images = [Path(p) for p in self.images]
