"""The GPU figures in one command (issue 15): install, device, gpu tests, SOM and CNN rates, one table.

Run from the repository root on a fresh GPU machine with only Python (``make gpu-check``)::

    python3 benchmarks/gpu_check.py                  # the real run: <= 6 minutes on an H100, install included
    python3 benchmarks/gpu_check.py --dry-run        # every part at toy sizes on the CPU, no install (CI)
    python3 benchmarks/gpu_check.py --download-wheels  # fill .whl/ for a device without network (make gpu-wheels)

Parts, each in its own subprocess with its own timeout (a part that fails or times out is
recorded as such and the script goes on):

1. ``install``: reuse ``.venv-gpu`` or make it (``--system-site-packages`` when the system Python
   already has a CUDA JAX, which then stands in for the ``gpu`` extra) and install hipsml
   editable with its test extra: from the package registry when it answers within seconds, else
   from the wheelhouse ``.whl/`` (``--no-index``). Its seconds count against the budget.
2. ``device``: ``jax.devices()``, the driver, JAX's version, free device memory.
3. ``tests``: the ``gpu``-marked tests (``pytest -m gpu``).
4. ``som-online``, ``som-batch``: PINK's Radio Galaxy Zoo configuration (hexagonal 21x21 = 331
   neurons of 64x64, 124x124 synthetic inputs, numrot 360 + flip): online in float32 and with
   bf16 distances, then ``SOM.map``; batch (B = 256) in float32, TF32 and bf16. Rates are the
   second of two epochs; compile time is what ``jax.monitoring`` reports (trace, lowering,
   backend compile) during the call; peak device memory is the part's process so far.
5. ``cnn-data`` (in the background, beside the SOM parts), ``cnn-model``, ``cnn-zarr``,
   ``cnn-sky``: the default CNN on 64x64x4 in bf16 with float32 master weights: the model
   alone (``train_step`` on data already on the device), ``train_cnn`` fed by ``zarr_batches``
   from a dataset on local disk, and by ``sky_batches`` (``source="sky"``).

It prints one table (device, figure, value, goal, met?) and writes it to ``--out``
(``gpu-figures.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-gpu"
WHEELHOUSE = ROOT / ".whl"
STAMP = ".gpu-check-installed"
RGZ_IMAGES = 176_750
WALL_GOAL_S = 360.0
COMPILE_GOAL_S = 30.0
FIGURE_PREFIX = "FIGURE "
# what the GPU machine has preinstalled (beside Python 3.12): never downloaded into the wheelhouse,
# so that no CPU jaxlib or second numpy shadows the CUDA ones
DEVICE_HAS = frozenset({
    "jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt", "ml-dtypes",
    "opt-einsum", "numpy", "numba", "llvmlite", "scipy", "pyarrow", "pillow", "matplotlib", "contourpy",
    "fonttools", "kiwisolver", "pandas", "equinox", "optax", "chex", "jaxtyping", "pytest", "pytest-timeout",
    "pyyaml", "requests", "tqdm", "xarray", "torch",
})  # fmt: skip
# left out of an offline install (and the wheelhouse): used only where there is a network or a browser
OFFLINE_SKIP = {"astroquery": "VizieR and TAP target lists", "selenium": "the SOM explorer's browser tests"}


@dataclass(frozen=True)
class Figure:
    """One row of the table: a measured value and, where there is one, its goal.

    ``op`` is how the value must compare with ``goal`` (``">="`` or ``"<"``); ``met`` is None
    without a goal or without a value. ``status`` is ``"ok"``, ``"n/a: why"`` (no value on this
    device), ``"failed: one line"`` or ``"timed out after N s"``.
    """

    name: str
    unit: str
    value: float | None = None
    goal: float | None = None
    op: str | None = None
    met: bool | None = None
    status: str = "ok"
    part: str = ""

    def measured(self, value: float | None, status: str = "ok") -> Figure:
        return replace(self, value=value, status=status, met=goal_met(value, self.goal, self.op))


def goal_met(value: float | None, goal: float | None, op: str | None) -> bool | None:
    """Whether ``value op goal`` holds; None without a goal or a value."""
    if goal is None or op is None or value is None:
        return None
    return {">=": value >= goal, "<": value < goal, "<=": value <= goal}[op]


@dataclass(frozen=True)
class Sizes:
    """The sizes of one run: the real one on a GPU, or the dry run's toys on the CPU."""

    som: dict[str, Any]  # the SOM configuration (train_som options)
    som_side: int  # input side
    som_distinct: int  # distinct synthetic images, repeated to fill an epoch
    som_online_images: int
    som_batch_images: int
    som_batch_size: int
    cnn_sources: int  # synthetic sky sources, one cutout each
    cnn_radius: float  # of the synthetic sky's cone (deg)
    cnn_batch_size: int
    cnn_model: dict[str, Any]  # CNNConfig's architecture options: {} is the default model
    cnn_epochs: int  # train_cnn epochs; the rate is over those after the first
    cnn_model_seconds: float  # timed window of the model alone
    test_timeout: int


GPU = Sizes(som=dict(layout="hexagonal", width=21, height=21, neuron_dim=64, numrot=360, flip=True), som_side=124,
            som_distinct=2048, som_online_images=16_384, som_batch_images=32_768, som_batch_size=256,
            cnn_sources=24_000, cnn_radius=1.0, cnn_batch_size=128, cnn_model={}, cnn_epochs=5, cnn_model_seconds=3.0, test_timeout=150)  # fmt: skip
DRY = Sizes(som=dict(layout="hexagonal", width=3, height=3, neuron_dim=12, numrot=8, flip=True), som_side=16,
            som_distinct=16, som_online_images=32, som_batch_images=32, som_batch_size=8,
            cnn_sources=120, cnn_radius=0.2, cnn_batch_size=16,
            cnn_model=dict(stem_channels=8, widths=(8,)), cnn_epochs=2, cnn_model_seconds=0.3, test_timeout=90)  # fmt: skip

# every figure each part reports, with its goal: a part that fails still has all its rows
SOM_ONLINE = ("float32", "bfloat16")
SOM_BATCH = ("float32", "tf32", "bfloat16")
RATE_GOALS = {("online", "float32"): 10_000.0, ("online", "bfloat16"): 20_000.0, ("batch", "tf32"): 50_000.0,
              ("batch", "bfloat16"): 70_000.0}  # fmt: skip
CNN_ZARR_GOAL = 60_000.0


def som_rows(mode: str, precision: str) -> list[Figure]:
    label = f"SOM RGZ {mode} {precision}"
    return [Figure(f"{label}: training rate", "images/s", goal=RATE_GOALS.get((mode, precision)),
                   op=">=" if (mode, precision) in RATE_GOALS else None),
            Figure(f"{label}: compile time", "s", goal=COMPILE_GOAL_S, op="<"),
            Figure(f"{label}: peak device memory", "MiB"),
            Figure(f"{label}: full RGZ epoch ({RGZ_IMAGES:,} images), projected", "s")]  # fmt: skip


def cnn_rows(feed: str, goal: float | None = None) -> list[Figure]:
    label = f"CNN bf16 {feed}"
    return [Figure(f"{label}: training rate", "images/s", goal=goal, op=">=" if goal else None),
            Figure(f"{label}: compile time", "s", goal=COMPILE_GOAL_S, op="<"),
            Figure(f"{label}: peak device memory", "MiB")]  # fmt: skip


ROWS: dict[str, list[Figure]] = {
    "install": [Figure("install (venv + pip)", "s")],
    "device": [Figure("free device memory", "MiB")],
    "tests": [Figure("gpu-marked tests passed", "tests"), Figure("gpu-marked tests failed", "tests", goal=0, op="<="),
              Figure("gpu-marked tests skipped", "tests")],
    "som-online": [r for p in SOM_ONLINE for r in som_rows("online", p)]
    + [Figure("SOM RGZ map (float32): mapping rate", "images/s")],
    "som-batch": [r for p in SOM_BATCH for r in som_rows("batch", p)],
    "cnn-data": [Figure("CNN dataset build (sky + extraction, beside the SOM parts)", "s")],
    "cnn-model": cnn_rows("model alone (data on device)"),
    "cnn-zarr": cnn_rows("fed by zarr_batches (local disk)", CNN_ZARR_GOAL),
    "cnn-sky": cnn_rows("fed by sky_batches"),
}  # fmt: skip
PARTS = tuple(ROWS)
TOTAL = Figure("total wall time, install included", "s", goal=WALL_GOAL_S, op="<=", part="total")


def row(part: str, name_start: str) -> Figure:
    """The row of ``part`` whose name starts with ``name_start``."""
    return next(r for r in ROWS[part] if r.name.startswith(name_start))


# ---------------------------------------------------------------------------------------------
# measurements (run in a child process: ``gpu_check.py --child PART``)


def emit(figure: Figure) -> None:
    """Hand one measured figure to the parent process (a line on stdout)."""
    print(FIGURE_PREFIX + json.dumps(asdict(figure)), flush=True)


def peak_device_mib() -> tuple[float | None, str]:
    """Peak device memory of this process so far (MiB), or None and why where the device keeps no count."""
    import jax

    stats = jax.devices()[0].memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None, f"n/a: {jax.devices()[0].platform} keeps no memory_stats"
    return stats["peak_bytes_in_use"] / 2**20, "ok"


class CompileClock:
    """Seconds JAX spends tracing, lowering and compiling inside a ``with`` block (``jax.monitoring``)."""

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")  # fmt: skip
    _active: list[CompileClock] = []
    _registered = False

    def __init__(self) -> None:
        self.seconds = 0.0
        if not CompileClock._registered:
            import jax.monitoring

            jax.monitoring.register_event_duration_secs_listener(CompileClock._listen)
            CompileClock._registered = True

    @staticmethod
    def _listen(event: str, duration: float, **_: Any) -> None:
        if event in CompileClock.EVENTS:
            for clock in CompileClock._active:
                clock.seconds += duration

    def __enter__(self) -> CompileClock:
        CompileClock._active.append(self)
        return self

    def __exit__(self, *_: object) -> None:
        CompileClock._active.remove(self)


def som_images(sizes: Sizes, count: int) -> Any:
    """``count`` synthetic two-lobed sources (bench_som's), ``sizes.som_distinct`` distinct ones repeated."""
    import numpy as np
    from bench_som import synthetic_sources

    distinct = synthetic_sources(min(sizes.som_distinct, count), sizes.som_side, seed=1)
    return np.resize(distinct, (count, *distinct.shape[1:]))


def measure_som(sizes: Sizes, mode: str, precisions: tuple[str, ...], *, then_map: bool = False) -> None:
    """Train two epochs per precision and emit rate (second epoch), compile time, peak memory, projection."""
    from hipsml.train import train_som

    count = sizes.som_online_images if mode == "online" else sizes.som_batch_images
    images = som_images(sizes, count)
    options = dict(sizes.som, mode=mode, init="random", epochs=2, progress=False)
    if mode == "batch":
        options["batch_size"] = sizes.som_batch_size
    for precision in precisions:
        with CompileClock() as clock:
            som = train_som(images, precision=precision, **options)
        rate = som.history[-1].images_per_second
        rate_row, compile_row, memory_row, epoch_row = som_rows(mode, precision)
        print(f"  {mode} {precision}: {rate:,.0f} images/s (epoch 2 of {count:,} images: {som.history[-1].seconds:.2f} s; "
              f"epoch 1 {som.history[0].seconds:.2f} s), compile {clock.seconds:.1f} s", flush=True)  # fmt: skip
        emit(rate_row.measured(rate))
        emit(compile_row.measured(clock.seconds))
        emit(memory_row.measured(*peak_device_mib()))
        emit(epoch_row.measured(RGZ_IMAGES / rate))
        if then_map and precision == "float32":
            measure_map(som, images[: min(len(images), 4 * sizes.som_distinct)])


def measure_map(som: Any, images: Any) -> None:
    """``SOM.map``'s images/s: the better of two calls after one that compiles."""
    som.map(images)
    best = math.inf
    for _ in range(2):
        started = time.perf_counter()
        som.map(images)
        best = min(best, time.perf_counter() - started)
    print(f"  map: {len(images) / best:,.0f} images/s ({len(images):,} images)", flush=True)
    emit(row("som-online", "SOM RGZ map").measured(len(images) / best))


def cnn_dataset(sizes: Sizes, cache: Path) -> Any:
    """bench_cnn's synthetic four-band 64x64 dataset (built once per size in ``cache``)."""
    from bench_cnn import build_dataset

    return build_dataset(
        cache, sizes.cnn_sources, 0, radius=sizes.cnn_radius, workers=min(8, os.cpu_count() or 1), progress=False
    )


def measure_cnn_data(sizes: Sizes, cache: Path) -> None:
    started = time.perf_counter()
    ds = cnn_dataset(sizes, cache)
    seconds = time.perf_counter() - started
    print(f"  dataset: {len(ds):,} cutouts {tuple(ds.images.shape[1:])} in {seconds:.1f} s", flush=True)
    emit(ROWS["cnn-data"][0].measured(seconds))


def measure_cnn_model(sizes: Sizes) -> None:
    """The default model's ``train_step`` in bf16 on batches already on the device."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    from hipsml.train import CNNConfig, ModelSpec, build_model, train_step

    config = CNNConfig(batch_size=sizes.cnn_batch_size, **sizes.cnn_model)
    spec = ModelSpec(in_channels=4, num_classes=4, stem_channels=config.stem_channels,
                     stem_stride=config.stem_stride, widths=config.widths, blocks=config.blocks, groups=config.groups)  # fmt: skip
    key = jax.random.PRNGKey(0)
    model = build_model(spec, key=key)
    # unit-rate AdamW updates scaled by the learning rate, as train_cnn's optimiser
    optimizer = optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(config.weight_decay), optax.scale(-1.0))
    state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    batches = 8
    images = jax.random.normal(key, (batches, config.batch_size, 4, 64, 64), jnp.float32)
    labels = jax.random.randint(key, (batches, config.batch_size), 0, 4)
    weights, lr = jnp.ones(4, jnp.float32), jnp.asarray(config.learning_rate, jnp.float32)

    def steps(model: Any, state: Any, count: int) -> tuple[Any, Any]:
        for i in range(count):
            model, state, loss, _ = train_step(model, state, images[i % batches], labels[i % batches], weights, lr,
                                               key=jax.random.fold_in(key, i), optimizer=optimizer, augmented=True,
                                               dtype=jnp.bfloat16)  # fmt: skip
        jax.block_until_ready(loss)
        return model, state

    rows = ROWS["cnn-model"]
    with CompileClock() as clock:
        model, state = steps(model, state, 1)
    started = time.perf_counter()
    model, state = steps(model, state, 5)
    per_step = (time.perf_counter() - started) / 5
    count = max(5, min(5000, int(sizes.cnn_model_seconds / per_step)))
    started = time.perf_counter()
    model, state = steps(model, state, count)
    rate = count * config.batch_size / (time.perf_counter() - started)
    print(f"  model alone: {rate:,.0f} images/s ({count} steps of {config.batch_size}), compile {clock.seconds:.1f} s",
          flush=True)  # fmt: skip
    emit(rows[0].measured(rate))
    emit(rows[1].measured(clock.seconds))
    emit(rows[2].measured(*peak_device_mib()))


def measure_cnn_training(sizes: Sizes, cache: Path, part: str) -> None:
    """``train_cnn`` in bf16 (float32 master weights), fed from the stored cutouts or cut from the sky."""
    from bench_cnn import training_rate

    from hipsml.train import train_cnn

    ds = cnn_dataset(sizes, cache)
    options = {"epochs": sizes.cnn_epochs, "patience": None, "batch_size": sizes.cnn_batch_size, "precision": "bfloat16",
               **sizes.cnn_model,
               "threads": min(8, os.cpu_count() or 1), "source": "sky" if part == "cnn-sky" else "dataset"}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gpu-check-cnn-") as run, CompileClock() as clock:
        result = train_cnn(ds, options, workdir=Path(run) / "run")
    rate = training_rate(result.history)
    seconds = ", ".join(f"{r['seconds']:.2f}" for r in result.history)
    print(f"  {part}: {rate:,.0f} images/s after the first epoch (epochs of {seconds} s), compile {clock.seconds:.1f} s",
          flush=True)  # fmt: skip
    rows = ROWS[part]
    emit(rows[0].measured(rate))
    emit(rows[1].measured(clock.seconds))
    emit(rows[2].measured(*peak_device_mib()))


def measure_device() -> None:
    import jax

    device = jax.devices()[0]
    print(f"  jax.devices(): {jax.devices()}")
    print(f"  JAX {jax.__version__}, backend {jax.default_backend()}, device kind {device.device_kind}")
    print(f"  driver: {gpu_driver()}")
    stats = device.memory_stats()
    if stats and "bytes_limit" in stats:
        free = (stats["bytes_limit"] - stats.get("bytes_in_use", 0)) / 2**20
        print(f"  free device memory: {free:,.0f} MiB of {stats['bytes_limit'] / 2**20:,.0f} MiB", flush=True)
        emit(ROWS["device"][0].measured(free))
    else:
        emit(ROWS["device"][0].measured(None, f"n/a: {device.platform} keeps no memory_stats"))
    print("DEVICE " + json.dumps(f"{device.platform}:{device.id} {device.device_kind}"), flush=True)


def gpu_driver() -> str:
    """The NVIDIA driver and GPU names from nvidia-smi, or why there are none."""
    if shutil.which("nvidia-smi") is None:
        return "n/a (no nvidia-smi)"
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.free", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    return out.stdout.strip() or f"n/a (nvidia-smi: {out.stderr.strip()})"


def run_child(part: str, sizes: Sizes, cache: Path) -> None:
    """The body of one part, in this (child) process."""
    sys.path.insert(0, str(Path(__file__).parent))  # bench_som, bench_cnn
    if part == "device":
        measure_device()
    elif part == "som-online":
        measure_som(sizes, "online", SOM_ONLINE, then_map=True)
    elif part == "som-batch":
        measure_som(sizes, "batch", SOM_BATCH)
    elif part == "cnn-data":
        measure_cnn_data(sizes, cache)
    elif part == "cnn-model":
        measure_cnn_model(sizes)
    elif part in ("cnn-zarr", "cnn-sky"):
        measure_cnn_training(sizes, cache, part)
    else:
        raise SystemExit(f"gpu_check: no child part {part!r}")


# ---------------------------------------------------------------------------------------------
# the parent: install, then each part in a subprocess with a timeout


@dataclass
class PartResult:
    figures: list[Figure]
    seconds: float
    device: str | None = None
    lines: list[str] = field(default_factory=list)


def run_part(command: list[str], part: str, timeout: float, *, env: dict[str, str] | None = None) -> PartResult:
    """Run one part's command, echo its output, collect its figures; failures and timeouts become statuses."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env, start_new_session=True)  # fmt: skip
    result = PartResult([], 0.0)
    reader = threading.Thread(target=collect, args=(process, result), daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=timeout)
        status = "ok" if code == 0 else f"failed: {last_error(result.lines) or f'exit code {code}'}"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        status = f"timed out after {timeout:.0f} s"
    reader.join(timeout=10)
    result.seconds = time.perf_counter() - started
    got = {f.name: f for f in result.figures}
    # every row of the part is present; those it did not measure carry the part's status
    result.figures = [replace(got[r.name], part=part) if r.name in got
                      else replace(r, part=part, status=status if status != "ok" else "failed: not measured")
                      for r in ROWS.get(part, [])]  # fmt: skip
    print(f"[{part}] {status} in {result.seconds:.1f} s", flush=True)
    return result


def collect(process: subprocess.Popen[str], result: PartResult) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip("\n")
        if line.startswith(FIGURE_PREFIX):
            result.figures.append(Figure(**json.loads(line[len(FIGURE_PREFIX) :])))
        elif line.startswith("DEVICE "):
            result.device = json.loads(line[len("DEVICE ") :])
        else:
            result.lines.append(line)
            print(line, flush=True)


def last_error(lines: list[str]) -> str:
    """The one line that says why a part failed: the last exception line of its output."""
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Exit|Interrupt)\b|^E\s+\w+Error", line.strip()):
            return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else ""


def pytest_part(python: str, timeout: float) -> PartResult:
    """``pytest -m gpu`` on the test files that hold gpu-marked tests; counts from pytest's summary."""
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                   if re.search(r"mark\.gpu\b", p.read_text(encoding="utf-8")))  # fmt: skip
    result = run_part([python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files], "tests", timeout)
    summary = "\n".join(result.lines[-5:])
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", summary)}
    if not counts:  # nothing parsed: the rows keep the part's status (failed or timed out)
        return result
    values = [counts.get("passed", 0), counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0),
              counts.get("skipped", 0)]  # fmt: skip
    result.figures = [replace(r.measured(float(v)), part="tests") for r, v in zip(ROWS["tests"], values, strict=True)]
    return result


def has_cuda_jax(python: str) -> str | None:
    """The name and version of the CUDA JAX plugin installed for ``python`` (None if none); no JAX import."""
    code = ("import importlib.metadata as m\n"
            "print(next((d.metadata['Name'] + ' ' + d.version for d in m.distributions()\n"
            "            if (d.metadata['Name'] or '').lower().startswith('jax-cuda') or\n"
            "            (d.metadata['Name'] or '').lower().startswith('jax_cuda')), ''))")  # fmt: skip
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or None


def registry_reachable(python: str) -> bool:
    """Whether pip's default package registry answers within a few seconds (one tiny download)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            out = subprocess.run([python, "-m", "pip", "download", "--isolated", "--no-deps", "--retries", "0",
                                  "--timeout", "3", "--no-cache-dir", "-q", "-d", tmp, "wheel"],
                                 capture_output=True, timeout=12)  # fmt: skip
        except subprocess.TimeoutExpired:
            return False
    return out.returncode == 0


def requirements(*, offline: bool) -> list[str]:
    """hipsml's dependencies and its test extra; offline, less those only its online paths use."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    return [r for r in wanted if not (offline and canonical(requirement_name(r)) in OFFLINE_SKIP)]


def see_parent_site(python: str) -> None:
    """Let the venv of ``python`` see this interpreter's site-packages (a ``.pth`` file).

    ``--system-site-packages`` gives a venv the *base* Python's site; when this script runs from a
    venv (the GPU machine's ``python3`` is one, holding the CUDA JAX), its packages are in that venv.
    """
    import site

    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()  # fmt: skip
    (Path(purelib) / "_gpu_check_parent_site.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    print(
        f"install: {VENV.name} also sees {', '.join(site.getsitepackages())} (this interpreter is a venv)", flush=True
    )


def install(timeout: float, *, offline: bool) -> tuple[str, Figure]:
    """Reuse or make ``.venv-gpu`` and install hipsml editable; the venv's python and the install figure."""
    started = time.perf_counter()
    python = str(VENV / "bin" / "python")
    figure = ROWS["install"][0]
    if (VENV / STAMP).is_file() and Path(python).exists():
        seconds = time.perf_counter() - started
        print(f"install: reusing {VENV.name} ({(VENV / STAMP).read_text().strip()}); {seconds:.1f} s", flush=True)
        return python, replace(figure.measured(seconds), part="install")
    cuda = has_cuda_jax(sys.executable)
    command = [sys.executable, "-m", "venv", *(["--system-site-packages"] if cuda else []), str(VENV)]
    print(f"install: {' '.join(command)}" + (f"  (the system's CUDA JAX: {cuda})" if cuda else ""), flush=True)
    subprocess.run(command, check=True, timeout=120)
    if cuda and sys.prefix != sys.base_prefix:
        see_parent_site(python)
    # with a CUDA JAX in the system site, it stands in for the gpu extra (jax[cuda12] would fetch CUDA 12 wheels)
    extras = "test" if cuda else "gpu,test"
    online = not offline and registry_reachable(python)
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if online:
        links = ["--find-links", str(WHEELHOUSE)] if WHEELHOUSE.is_dir() else []
        commands = [[*pip, *links, "-e", f".[{extras}]"]]
    elif not WHEELHOUSE.is_dir():
        raise SystemExit(f"gpu_check: no package registry and no wheelhouse {WHEELHOUSE}: run "
                         f"`make gpu-wheels` on a machine with the registry and copy .whl/ here")  # fmt: skip
    else:  # hipsml itself, then its dependencies less those only its online paths use
        links = ["--no-index", "--find-links", str(WHEELHOUSE)]
        commands = [[*pip, *links, "--no-deps", "-e", "."], [*pip, *links, *requirements(offline=True)]]
        print(f"install: left out offline: {', '.join(f'{k} ({v})' for k, v in OFFLINE_SKIP.items())}", flush=True)
    print(f"install: registry {'reachable' if online else 'unreachable or --offline: wheelhouse ' + WHEELHOUSE.name}",
          flush=True)  # fmt: skip
    for command in commands:
        print("install: " + " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, cwd=ROOT, timeout=timeout)
    how = f"extras [{extras}], {'registry' if online else 'wheelhouse'}" + (f", system {cuda}" if cuda else "")
    (VENV / STAMP).write_text(how + "\n")
    seconds = time.perf_counter() - started
    print(f"install: done in {seconds:.1f} s ({how})", flush=True)
    return python, replace(figure.measured(seconds), part="install")


def run_all(args: argparse.Namespace) -> tuple[list[Figure], str]:
    """Every chosen part in turn (cnn-data in the background beside the SOM parts); the rows and the device."""
    started = time.perf_counter()
    sizes = DRY if args.dry_run else GPU
    figures: list[Figure] = []
    if "install" in args.parts and not args.dry_run:
        try:
            python, figure = install(args.install_timeout, offline=args.offline)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, SystemExit) as error:
            print(f"install failed: {error}", flush=True)
            status = f"failed: {str(error).splitlines()[0]}"
            rows = [replace(r, part=p, status=status if p == "install" else "failed: not run, the install failed")
                    for p in args.parts for r in ROWS[p]]  # fmt: skip
            return [*rows, TOTAL.measured(time.perf_counter() - started)], "?"
        figures.append(figure)
    else:
        python = sys.executable
        reason = "--dry-run" if args.dry_run else "not in --parts"
        print(f"install: skipped ({reason}); using {python}", flush=True)
        figures.append(replace(ROWS["install"][0], part="install", status=f"n/a: skipped ({reason})"))
    cache = Path(args.cache)
    child = [python, str(Path(__file__).resolve()), "--cache", str(cache), *(["--dry-run"] if args.dry_run else [])]
    device = "?"
    background: tuple[threading.Thread, list[PartResult]] | None = None
    if "cnn-data" in args.parts:
        done: list[PartResult] = []
        thread = threading.Thread(
            target=lambda: done.append(
                run_part([*child, "--child", "cnn-data"], "cnn-data", args.timeout_per_part * 2)
            ),
            daemon=True,
        )
        thread.start()
        background = (thread, done)
    for part in args.parts:
        if part in ("install", "cnn-data"):
            continue
        if part.startswith("cnn-") and background is not None:  # the CNN parts need the dataset
            background[0].join()
            figures.extend(background[1][0].figures if background[1] else [])
            background = None
        print(f"\n[{part}]", flush=True)
        if part == "tests":
            result = pytest_part(python, min(args.timeout_per_part, sizes.test_timeout) if args.dry_run
                                 else args.timeout_per_part)  # fmt: skip
        else:
            result = run_part([*child, "--child", part], part, args.timeout_per_part)
        device = result.device or device
        figures.extend(result.figures)
    if background is not None:
        background[0].join()
        figures.extend(background[1][0].figures if background[1] else [])
    wall = time.perf_counter() - started
    figures.append(TOTAL.measured(wall))
    return figures, device


def format_value(figure: Figure) -> str:
    if figure.value is None:
        return figure.status
    text = f"{figure.value:,.0f}" if abs(figure.value) >= 100 else f"{figure.value:.3g}"
    return f"{text} {figure.unit}"


def table(figures: list[Figure], device: str) -> str:
    """The one table: device, figure, value, goal, met?"""
    rows = [("device", "figure", "value", "goal", "met?")]
    for f in figures:
        goal = f"{f.op} {f.goal:,.0f} {f.unit}" if f.goal is not None else ""
        met = {True: "yes", False: "NO", None: ""}[f.met]
        rows.append((device, f.name, format_value(f), goal, met))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def download_wheels(target: Path) -> None:
    """Fill ``target`` with Python 3.12 x86-64 wheels of hipsml's dependencies that the GPU machine lacks."""
    import tomllib

    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]  # pip builds hipsml
    missing = [r for r in [*requirements(offline=True), *build] if canonical(requirement_name(r)) not in DEVICE_HAS]
    target.mkdir(exist_ok=True)
    for old in target.glob("*.whl"):  # a fresh resolution, no stale versions beside it
        old.unlink()
    platforms = [a for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                             "manylinux_2_5_x86_64", "linux_x86_64") for a in ("--platform", p)]  # fmt: skip
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", "3.12",
               "--implementation", "cp", *platforms, "-d", str(target), *missing]  # fmt: skip
    print("pip download " + " ".join(missing), flush=True)
    subprocess.run(command, check=True)
    for wheel in sorted(target.glob("*.whl")):  # what pip resolved but the device has: it must not shadow those
        if canonical(wheel.name.split("-")[0]) in DEVICE_HAS:
            print(f"  removed {wheel.name} (the GPU machine has it)")
            wheel.unlink()
    wheels = sorted(target.glob("*.whl"))
    for wheel in wheels:
        print(f"  {wheel.stat().st_size / 2**20:6.2f} MiB  {wheel.name}")
    total = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"{len(wheels)} wheels, {total:.1f} MiB in {target}")


def requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="every part at toy sizes on the CPU, no install")
    parser.add_argument("--out", default="gpu-figures.json", help="the table as JSON (default gpu-figures.json)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    parser.add_argument("--timeout-per-part", type=float, default=150.0, help="seconds (default 150)")
    parser.add_argument("--install-timeout", type=float, default=240.0, help="seconds for pip (default 240)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "hipsml-gpu-check"),
                        help="where the CNN dataset is built (reused when there)")  # fmt: skip
    parser.add_argument(
        "--offline", action="store_true", help=f"install from {WHEELHOUSE.name}/ without trying the registry"
    )
    parser.add_argument("--download-wheels", action="store_true", help=f"fill {WHEELHOUSE.name}/ and stop")
    parser.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.download_wheels:
        download_wheels(WHEELHOUSE)
        return
    if args.child:
        run_child(args.child, DRY if args.dry_run else GPU, Path(args.cache))
        return
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    print(f"gpu_check{' --dry-run (toy sizes, CPU, install skipped)' if args.dry_run else ''}: "
          f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)  # fmt: skip
    figures, device = run_all(args)
    print("\n" + table(figures, device))
    document = {"device": device, "dry_run": args.dry_run, "figures": [asdict(f) for f in figures]}
    Path(args.out).write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
