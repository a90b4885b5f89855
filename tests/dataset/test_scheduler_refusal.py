"""An extraction whose scheduler cannot be reached is refused before anything is created."""

from __future__ import annotations

import socket

from dataset_helpers import recipe_data, write_recipe

from hipsml.cli import main


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_scheduler_leaves_nothing_behind(tmp_path, sky, capsys):
    out = tmp_path / "nested" / "ds"
    recipe = write_recipe(tmp_path / "r.yaml", recipe_data(sky, out))
    code = main(["-q", "extract", str(recipe), "--scheduler", f"tcp://127.0.0.1:{_closed_port()}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "compute.scheduler: cannot reach tcp://127.0.0.1:" in err
    assert "finished work units" not in err  # none ran: nothing is said to be kept
    assert not out.exists()  # no lock, no staging folder, no dataset folder
