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


# --- browser: a real headless chromium for the static pages (SOM explorer, demo report) ---
import os  # noqa: E402
import shutil  # noqa: E402

CHROMIUM = [
    os.environ.get("HIPSML_CHROMIUM", ""),
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    shutil.which("chromium") or "",
    shutil.which("google-chrome") or "",
]
DRIVER = [os.environ.get("HIPSML_CHROMEDRIVER", ""), "/usr/bin/chromedriver", shutil.which("chromedriver") or ""]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by chromedriver through selenium; skipped only when none is found."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    binary = next((p for p in CHROMIUM if p and os.access(p, os.X_OK)), None)
    driver_path = next((p for p in DRIVER if p and os.access(p, os.X_OK)), None)
    if binary is None or driver_path is None:
        pytest.skip("no chromium and chromedriver found (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    options.binary_location = binary
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


def _has_gpu() -> bool:
    import jax

    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` (selected with ``-m gpu``) skip where JAX sees no GPU."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu") is not None]
    if gpu_tests and not _has_gpu():
        skip = pytest.mark.skip(reason="needs a GPU (JAX sees none)")
        for item in gpu_tests:
            item.add_marker(skip)
