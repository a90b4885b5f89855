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


# --- hips_server: a real HTTP server for remote-HiPS tests (tests/hips_server.py) ---
from collections.abc import Callable, Iterator  # noqa: E402

from hips_server import Fault, HipsServer  # noqa: E402


@pytest.fixture
def hips_server() -> Iterator[Callable[..., HipsServer]]:
    """Factory for real HTTP servers on 127.0.0.1 serving a directory, with fault injection.

    Call it as ``hips_server(directory, faults={"Norder3/*": [Fault.status(503)]})``; it
    returns a started :class:`hips_server.HipsServer` (``.url`` is the base URL,
    ``.count(path)`` the requests received, ``.inject(...)`` plans more faults). Every
    server it started is shut down after the test. See ``tests/hips_server.py``.
    """
    servers: list[HipsServer] = []

    def start(
        directory: Path, faults: dict[str, list[Fault]] | None = None, *, tls: tuple[Path, Path] | None = None
    ) -> HipsServer:
        server = HipsServer(directory, tls=tls)
        servers.append(server)
        for pattern, plan in (faults or {}).items():
            server.inject(pattern, *plan)
        return server

    yield start
    for server in servers:
        server.close()
