"""benchmarks/gpu_check.py's dry run (toy sizes, CPU, no install): the script that waits for a GPU cannot rot."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def load_script_module():
    """gpu_check.py as a module (it is a script in benchmarks/, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    tmp = tmp_path_factory.mktemp("gpu-check")
    out = tmp / "figures.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--cache", str(tmp / "cache"),
                           "--timeout-per-part", "120"], cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_dry_run_reports_every_figure_measured(dry_run):
    document, stdout = dry_run
    gpu_check = load_script_module()
    assert document["dry_run"] is True
    assert document["device"].startswith("cpu")
    expected = [r.name for part in gpu_check.PARTS for r in gpu_check.ROWS[part]] + [gpu_check.TOTAL.name]
    assert sorted(f["name"] for f in document["figures"]) == sorted(expected)
    by_name = {f["name"]: f for f in document["figures"]}
    assert by_name["install (venv + pip)"]["status"] == "n/a: skipped (--dry-run)"
    assert "install: skipped (--dry-run)" in stdout
    for figure in document["figures"]:
        if figure["status"].startswith("n/a"):  # install skipped; no memory_stats on the CPU
            assert figure["value"] is None and figure["met"] is None, figure
            continue
        assert figure["status"] == "ok", figure
        value = figure["value"]
        assert isinstance(value, (int, float)) and math.isfinite(value), figure
        assert value >= 0 if figure["unit"] == "tests" else value > 0, figure
    # on the CPU the gpu-marked tests are collected and skipped, none fails
    assert by_name["gpu-marked tests skipped"]["value"] >= 2
    assert by_name["gpu-marked tests failed"]["value"] == 0
    # the projected epoch is the RGZ image count over the measured rate
    rate = by_name["SOM RGZ online float32: training rate"]["value"]
    projected = by_name["SOM RGZ online float32: full RGZ epoch (176,750 images), projected"]["value"]
    assert projected == pytest.approx(176_750 / rate)


def test_dry_run_met_column_follows_goal_and_value(dry_run):
    document, stdout = dry_run
    goals = {f["name"]: (f["op"], f["goal"]) for f in document["figures"] if f["goal"] is not None}
    assert goals["SOM RGZ online bfloat16: training rate"] == (">=", 20_000)
    assert goals["SOM RGZ online float32: training rate"] == (">=", 10_000)
    assert goals["SOM RGZ batch bfloat16: training rate"] == (">=", 70_000)
    assert goals["SOM RGZ batch tf32: training rate"] == (">=", 50_000)
    assert goals["CNN bf16 fed by zarr_batches (local disk): training rate"] == (">=", 60_000)
    assert goals["total wall time, install included"] == ("<=", 360)
    assert sum(name.endswith("compile time") and goal == ("<", 30) for name, goal in goals.items()) == 8
    compare = {">=": lambda v, g: v >= g, "<": lambda v, g: v < g, "<=": lambda v, g: v <= g}
    for figure in document["figures"]:
        if figure["goal"] is None or figure["value"] is None:
            assert figure["met"] is None, figure
        else:
            assert figure["met"] is compare[figure["op"]](figure["value"], figure["goal"]), figure
    table = stdout[stdout.index("device  ") :]
    assert len([line for line in table.splitlines() if line.startswith("cpu")]) == len(document["figures"])


def test_goal_met_and_table_by_hand():
    gpu_check = load_script_module()
    assert gpu_check.goal_met(20_000.0, 20_000.0, ">=") is True
    assert gpu_check.goal_met(19_999.0, 20_000.0, ">=") is False
    assert gpu_check.goal_met(30.0, 30.0, "<") is False
    assert gpu_check.goal_met(5.0, None, None) is None
    figure = gpu_check.Figure("x rate", "images/s", goal=100.0, op=">=").measured(150.0)
    assert figure.met is True and figure.status == "ok"
    text = gpu_check.table([figure], "cuda:0 H100")
    assert text.splitlines()[2].split() == ["cuda:0", "H100", "x", "rate", "150", "images/s", ">=", "100", "images/s",
                                            "yes"]  # fmt: skip
