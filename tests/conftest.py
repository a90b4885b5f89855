"""Shared fixtures: paths to the real CDS sample tiles (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hips-samples"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """``../shared/data/hips-samples``: real CDS HiPS tiles; the test is skipped when absent."""
    if not SAMPLES.is_dir():
        pytest.skip(f"real HiPS samples not found at {SAMPLES}")
    return SAMPLES
