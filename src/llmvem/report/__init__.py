"""Reports of a run: result tables (rich / Markdown), figures (PNG) and a self-contained HTML page.

- :mod:`llmvem.report.tables`: :func:`format_encoding_table`, :func:`format_rsa_table`, :func:`to_markdown`;
- :mod:`llmvem.report.plots`: :func:`plot_encoding`, :func:`plot_rsa`, :func:`plot_decoding`, :func:`plot_rdms`,
  :func:`plot_r_histograms`, :func:`plot_training_curves`, :func:`plot_seed_bars`,
  :func:`plot_partition`, :func:`plot_layer_sweep`;
- :mod:`llmvem.report.html`: :class:`Section`, :func:`write_html_report`, :func:`build_report`.

matplotlib, pandas and rich are imported only inside the functions that use them.
"""

from llmvem.report.html import Section, build_report, write_html_report
from llmvem.report.plots import (
    plot_decoding,
    plot_encoding,
    plot_layer_sweep,
    plot_paired,
    plot_partition,
    plot_r_histograms,
    plot_rdms,
    plot_rsa,
    plot_seed_bars,
    plot_training_curves,
)
from llmvem.report.tables import format_encoding_table, format_rsa_table, to_markdown

__all__ = [
    "Section",
    "build_report",
    "format_encoding_table",
    "format_rsa_table",
    "plot_decoding",
    "plot_encoding",
    "plot_layer_sweep",
    "plot_paired",
    "plot_partition",
    "plot_r_histograms",
    "plot_rdms",
    "plot_rsa",
    "plot_seed_bars",
    "plot_training_curves",
    "to_markdown",
    "write_html_report",
]
