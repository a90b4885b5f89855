"""Report pages: :func:`write_report` writes one static page for a dataset, its SOM and its CNN runs."""

from hipsml.report._report import (
    confident_mistakes,
    coverage_per_channel,
    purity_per_neuron,
    write_report,
)

__all__ = ["confident_mistakes", "coverage_per_channel", "purity_per_neuron", "write_report"]
