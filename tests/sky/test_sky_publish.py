"""Publishing a synthetic sky over an existing one: a failed final rename leaves the old sky in place."""

from __future__ import annotations

import os

import pytest

from hipsml.errors import OutputError
from hipsml.sky import make_sky


def test_failed_publish_restores_the_previous_sky(tmp_path, monkeypatch):
    target = tmp_path / "sky"
    make_sky(target, n_sources=5, order=5, tile_width=64, radius=0.1, seed=1)
    before = sorted(p.relative_to(target) for p in target.rglob("*"))
    catalogue = (target / "catalogue.ecsv").read_bytes()
    real_rename = os.rename

    def failing_rename(src, dst, *args, **kwargs):
        # the staging folder's final rename onto the sky fails (a full or read-only file system)
        if os.fspath(dst) == os.fspath(target) and ".tmp-" in os.fspath(src):
            raise OSError(28, "No space left on device")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OutputError, match="cannot publish"):
        make_sky(target, n_sources=7, order=5, tile_width=64, radius=0.1, seed=2, overwrite=True)
    monkeypatch.undo()
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before
    assert (target / "catalogue.ecsv").read_bytes() == catalogue
    assert [p.name for p in tmp_path.iterdir()] == ["sky"]  # no staging or moved-aside folder left
