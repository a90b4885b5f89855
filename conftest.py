"""The doctests' tiny sky: the package's flagship examples run, rather than being skipped.

Every doctest of ``hipsml/`` runs in a session folder that looks like a user's after ``make demo``
at a small size: ``demo-output/sky`` (a seeded synthetic sky of 120 sources in g, r, i and radio),
``recipes/demo.yaml`` (the repository's demo recipe) and the dataset it builds,
``demo-output/datasets/demo``; for the CNN's examples also ``runs/demo``, a tiny CNN trained one
epoch. An example may write beside them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def doctest_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo folder for the doctests: sky, the demo recipe and its dataset version 1."""
    from hipsml.dataset import extract_dataset
    from hipsml.sky import make_sky

    folder = tmp_path_factory.mktemp("doctests")
    make_sky(folder / "demo-output" / "sky", n_sources=120, seed=0, order=8, tile_width=256,
             center=(150.0, 2.0), radius=0.25)  # fmt: skip
    (folder / "recipes").mkdir()
    shutil.copy(REPOSITORY / "recipes" / "demo.yaml", folder / "recipes" / "demo.yaml")
    extract_dataset(folder / "recipes" / "demo.yaml", progress=False)
    return folder


#: a CNN small enough to train in seconds on two cores (the doctests show calls, not accuracy)
TINY_CNN = {"epochs": 1, "batch_size": 32, "stem_channels": 8, "widths": [8, 16], "groups": 4}


@pytest.fixture(scope="session")
def doctest_cnn_run(doctest_folder: Path) -> Path:
    """``runs/demo`` in the doctests' folder: a tiny CNN trained one epoch on the demo dataset."""
    from hipsml.train import train_cnn

    run = doctest_folder / "runs" / "demo"
    train_cnn(doctest_folder / "demo-output" / "datasets" / "demo", TINY_CNN, workdir=run, progress=False)
    return run


@pytest.fixture(autouse=True)
def _doctests_run_in_the_demo_folder(request: pytest.FixtureRequest) -> Iterator[None]:
    """Doctests of the package run inside :func:`doctest_folder`; other tests are untouched."""
    if not isinstance(request.node, pytest.DoctestItem):
        yield
        return
    folder = request.getfixturevalue("doctest_folder")
    if "hipsml.train.cnn" in request.node.name or "hipsml/train/cnn" in str(request.node.path):
        request.getfixturevalue("doctest_cnn_run")  # the CNN examples read runs/demo
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.chdir(folder)
    try:
        yield
    finally:
        monkeypatch.undo()
