"""Benchmark the rotation- and flip-invariant SOM against PINK 2.5 and a naive numpy reference.

Configurations (synthetic two-lobed "radio sources" at random angles, so no download):

* PINK's Radio Galaxy Zoo setup: hexagonal 21x21 (331 neurons) of 64x64, 124x124 inputs,
  numrot 360 + flip (720 transforms), float32; online and batch modes.
* A 10x10 cartesian map of 64x64 images, numrot 360 + flip, PINK's default neuron and distance
  sides (91 and 45).
* A naive reference measured in the same run: a numpy loop that resamples all 720 transforms of
  each image explicitly (PINK's CPU algorithm, vectorised over neurons).

It prints training images/s, the ratio to PINK 2.5's CPU build measured on this kind of machine
(0.86 images/s for RGZ, 3.1-5.6 for the 10x10 map, 2 threads), the projected time of one
full RGZ epoch (176,750 images), ``SOM.map``'s images/s and the peak resident memory. Training
rates are from the second epoch, mapping rates from the better of two calls after a first one
(the first includes compilation). Run::

    python benchmarks/bench_som.py            # about a minute on 2 cores
    python benchmarks/bench_som.py --images 512 --naive-images 3
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import time

import numpy as np

RGZ_IMAGES = 176_750
PINK_RGZ_RATE = 0.86  # images/s, PINK 2.5 CPU build, 2 threads, this machine type
PINK_10X10_RATES = (3.1, 5.6)


def synthetic_sources(count: int, side: int, *, seed: int) -> np.ndarray:
    """Two-lobed sources with random angle, separation and flux ratio, plus noise: ``(count, 1, side, side)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] - (side - 1) / 2.0
    out = np.empty((count, 1, side, side), np.float32)
    for i in range(count):
        theta = rng.uniform(0, 2 * np.pi)
        sep = rng.uniform(0.08, 0.25) * side
        width = rng.uniform(0.02, 0.05) * side
        u = xx * np.cos(theta) + yy * np.sin(theta)
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        image = np.exp(-((u - sep) ** 2 + v**2) / (2 * width**2))
        image += rng.uniform(0.3, 1.0) * np.exp(-((u + sep) ** 2 + v**2) / (2 * width**2))
        out[i, 0] = image + rng.normal(0, 0.01, image.shape)
    return out


def peak_memory_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def hipsml_rate(images: np.ndarray, **options: object) -> float:
    """images/s of the second of two epochs of ``train_som`` (the first compiles)."""
    from hipsml.train import train_som

    som = train_som(images, epochs=2, init="random", progress=False, **options)
    return som.history[-1].images_per_second


def mapping_rate(images: np.ndarray, **options: object) -> float:
    """images/s of ``SOM.map`` (best neuron, distance, angle and flip) on a SOM trained one epoch on ``images``;
    the better of two timed calls after one that compiles."""
    from hipsml.train import train_som

    som = train_som(images, epochs=1, init="random", progress=False, **options)
    som.map(images)
    best = math.inf
    for _ in range(2):
        started = time.perf_counter()
        som.map(images)
        best = min(best, time.perf_counter() - started)
    return len(images) / best


def naive_rate(images: np.ndarray, *, neurons: int, neuron_dim: int, numrot: int, seed: int = 0) -> float:
    """images/s of a straightforward numpy SOM step: every transform resampled explicitly per image."""
    rng = np.random.default_rng(seed)
    weights = rng.random((neurons, neuron_dim * neuron_dim), dtype=np.float32)
    side = images.shape[-1]
    centre_src, centre_dst = (side - 1) / 2.0, (neuron_dim - 1) / 2.0
    rows, cols = np.meshgrid(np.arange(neuron_dim) - centre_dst, np.arange(neuron_dim) - centre_dst, indexing="ij")
    factors = rng.random(neurons).astype(np.float32) * 0.1
    started = time.perf_counter()
    for image in images[:, 0]:
        transforms = []
        for r in range(numrot):
            angle = 2 * math.pi * r / numrot
            src_r = rows * math.cos(angle) - cols * math.sin(angle) + centre_src
            src_c = rows * math.sin(angle) + cols * math.cos(angle) + centre_src
            r0 = np.clip(np.floor(src_r).astype(int), 0, side - 2)
            c0 = np.clip(np.floor(src_c).astype(int), 0, side - 2)
            fr, fc = src_r - r0, src_c - c0
            rotated = (
                image[r0, c0] * (1 - fr) * (1 - fc)
                + image[r0, c0 + 1] * (1 - fr) * fc
                + image[r0 + 1, c0] * fr * (1 - fc)
                + image[r0 + 1, c0 + 1] * fr * fc
            ).astype(np.float32)
            transforms.append(rotated.ravel())
            transforms.append(rotated[::-1].ravel())
        best = np.full(neurons, np.inf, np.float32)
        best_t = np.zeros(neurons, np.int64)
        for t, transformed in enumerate(transforms):
            d = np.sum((weights - transformed) ** 2, axis=1)
            better = d < best
            best[better], best_t[better] = d[better], t
        targets = np.stack([transforms[t] for t in best_t])
        weights += factors[:, None] * (targets - weights)
    return len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=128, help="images per epoch (default 128)")
    parser.add_argument("--naive-images", type=int, default=1, help="images for the naive reference (default 1)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch mode's batch size (default 64 on CPU)")
    parser.add_argument("--precision", default="float32", choices=("float32", "tf32", "bfloat16"))
    args = parser.parse_args()

    import jax

    device = jax.devices()[0]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}; JAX {jax.__version__} on {device.platform} ({device.device_kind})"
    )

    rgz = dict(layout="hexagonal", width=21, height=21, neuron_dim=64, numrot=360, flip=True, precision=args.precision)
    images = synthetic_sources(args.images, 124, seed=1)
    print(
        f"\nRGZ configuration: hexagonal 21x21 = 331 neurons of 64x64, 124x124 inputs, numrot 360 + flip "
        f"(720 transforms), {args.precision}, {args.images} images per epoch"
    )
    online = hipsml_rate(images, mode="online", **rgz)
    print(
        f"  online : {online:8.2f} images/s  = {online / PINK_RGZ_RATE:5.1f}x PINK 2.5 ({PINK_RGZ_RATE} images/s); "
        f"full RGZ epoch ({RGZ_IMAGES:,} images) {RGZ_IMAGES / online / 3600:.2f} h"
    )
    batch = hipsml_rate(images, mode="batch", batch_size=args.batch_size, **rgz)
    print(
        f"  batch  : {batch:8.2f} images/s  = {batch / PINK_RGZ_RATE:5.1f}x PINK 2.5 (B = {args.batch_size}); "
        f"full RGZ epoch {RGZ_IMAGES / batch / 3600:.2f} h"
    )
    mapped = mapping_rate(images, mode="online", **rgz)
    print(f"  map    : {mapped:8.2f} images/s  (SOM.map: best neuron, distance, angle and flip)")
    naive = naive_rate(images[: args.naive_images], neurons=331, neuron_dim=64, numrot=360)
    print(
        f"  naive numpy reference (720 transforms resampled per image): {naive:.3f} images/s; "
        f"hipsml online / naive = {online / naive:.0f}x"
    )
    print(f"  peak memory so far: {peak_memory_mib():.0f} MiB")

    small = synthetic_sources(args.images, 64, seed=2)
    print("\n10x10 cartesian map, 64x64 inputs, numrot 360 + flip, PINK's default neuron 91 / distance 45")
    online_small = hipsml_rate(
        small, width=10, height=10, numrot=360, flip=True, mode="online", precision=args.precision
    )
    low, high = PINK_10X10_RATES
    print(
        f"  online : {online_small:8.2f} images/s  = {online_small / high:.1f}x-{online_small / low:.1f}x "
        f"PINK 2.5 ({low}-{high} images/s)"
    )
    batch_small = hipsml_rate(
        small,
        width=10,
        height=10,
        numrot=360,
        flip=True,
        mode="batch",
        batch_size=args.batch_size,
        precision=args.precision,
    )
    print(f"  batch  : {batch_small:8.2f} images/s  = {batch_small / high:.1f}x-{batch_small / low:.1f}x PINK 2.5")
    mapped_small = mapping_rate(
        small, width=10, height=10, numrot=360, flip=True, mode="online", precision=args.precision
    )
    print(f"  map    : {mapped_small:8.2f} images/s  (SOM.map)")
    print(f"\npeak memory: {peak_memory_mib():.0f} MiB; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
