"""Report pages: :func:`write_report` writes one static page for a dataset, its SOM and its CNN runs."""

from hipsml.report._html import Figure, Section, render_html
from hipsml.report._report import (
    check_report_folder,
    confident_mistakes,
    coverage_per_channel,
    purity_per_neuron,
    write_report,
)

__all__ = [
    "Figure",
    "Section",
    "check_report_folder",
    "confident_mistakes",
    "coverage_per_channel",
    "purity_per_neuron",
    "render_html",
    "write_report",
]
