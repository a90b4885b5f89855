"""The demo's own part of its report page: the synthetic sky and a summary, ahead of the report's sections.

``hipsml demo`` writes its page with :func:`hipsml.report.write_report`, the function behind
``hipsml report`` (one page builder): :func:`demo_intro` is the section it passes as ``intro``,
and the steps' timings go as ``timings``.
"""

from __future__ import annotations

import os
import platform
import shlex
from typing import TYPE_CHECKING

from hipsml.report import Section

if TYPE_CHECKING:  # pragma: no cover
    from hipsml.dataset import Dataset
    from hipsml.demo._steps import CnnStep, SomStep
    from hipsml.sky import SyntheticSky

__all__ = ["demo_intro"]


def demo_intro(shown: str, recipe: str, dataset: Dataset, sky: SyntheticSky, som: SomStep, cnn: CnnStep,
               seconds: float) -> Section:  # fmt: skip
    """The demo's first section: the sky, the recipe, the results in short and the commands that remake them.

    ``shown`` is the demo folder as the user gave it, ``recipe`` the path of its ``demo.yaml``
    and ``seconds`` the time of every step together.
    """
    import jax

    shown_score = cnn.metrics.get("test") or cnn.metrics.get("val")
    score = (
        f"{shown_score['split']} accuracy {shown_score['accuracy']:.3f} on {shown_score['count']:,} cutouts"
        if shown_score
        else "no test split"
    )
    cfg = som.som.config
    intro = [f"A seeded synthetic sky ({sum(sky.class_counts.values()):,} sources, seed {sky.seed}, HiPS order "
             f"{sky.order}, one survey per band, in {shlex.quote(str(sky.root))}) cut into a versioned Zarr training "
             f"set by the demo recipe {shlex.quote(recipe)} (the same recipe as recipes/demo.yaml).",
             f"In short: {len(dataset):,} labelled cutouts ({', '.join(dataset.channels)}); a {cfg.layout} "
             f"{cfg.width} x {cfg.height} SOM with quantisation error {som.mapping.quantisation_error:.4g}; a CNN "
             f"with {score}; {seconds:.0f} s in all, on {platform.machine()} with {os.cpu_count()} cores (JAX on "
             f"{jax.default_backend()}).",
             "The whole demo (sky, dataset, SOM, CNN and this page) is made again by the second command; the "
             "dataset alone by the first."]  # fmt: skip
    return Section(
        "sky",
        "The demo sky",
        intro,
        [],
        commands=[f"hipsml extract {shlex.quote(recipe)}", f"hipsml demo {shlex.quote(shown)}"],
    )
