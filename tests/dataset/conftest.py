"""The dataset tests' shared sky: ``small_sky``'s seeded two-band sky, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_helpers import small_sky


@pytest.fixture(scope="session")
def sky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_sky(tmp_path_factory.mktemp("dataset-sky"))
