"""Running work units on Dask: local threads by default, or a ``distributed`` cluster.

``scheduler`` (recipe ``compute.scheduler`` or ``--scheduler``):

``threads``
    Dask's threaded scheduler in this process, ``workers x threads_per_worker`` threads
    (the cutout kernel releases the GIL).
``processes``
    A ``distributed.LocalCluster`` of ``workers`` processes on this machine.
``tcp://host:8786`` (or ``tls://``)
    An existing ``distributed`` scheduler; every worker must see the dataset folder and
    the surveys at the same paths (or read the surveys over HTTP).
``sciserver``
    ``SciServer.Dask.getClient()`` (on SciServer compute).
``slurm``
    ``dask_jobqueue.SLURMCluster(**compute.slurm)`` scaled to ``workers`` jobs.

One task per work unit (thousands of cutouts), never one per cutout.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hipsml.errors import InvalidInputError

__all__ = ["run_tasks", "cluster_client"]

logger = logging.getLogger(__name__)


def check_scheduler(scheduler: str, *, timeout: float = 10.0) -> None:
    """Refuse, before anything is written, a scheduler that cannot be used: an address nobody answers
    at, or ``slurm`` without dask-jobqueue. The local schedulers (``threads``, ``processes``) need no check.

    Raises
    ------
    InvalidInputError
        One line naming the scheduler and why.
    """
    if scheduler in ("threads", "processes", "sciserver"):
        return
    if scheduler == "slurm":
        import importlib.util

        if importlib.util.find_spec("dask_jobqueue") is None:  # an optional extra
            raise InvalidInputError("compute.scheduler: slurm needs dask-jobqueue (pip install dask-jobqueue)")
        return
    from distributed import Client

    try:
        Client(scheduler, timeout=f"{timeout:g}s").close()
    except OSError as exc:
        raise InvalidInputError(f"compute.scheduler: cannot reach {scheduler} ({exc})") from None


@contextlib.contextmanager
def cluster_client(scheduler: str, *, workers: int, threads_per_worker: int, slurm: dict[str, Any]) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler`` (not ``threads``), closed (with its cluster) on exit."""
    from distributed import Client, LocalCluster

    if scheduler == "processes":
        with LocalCluster(
            n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
            dashboard_address=None, silence_logs=logging.ERROR,
        ) as cluster, Client(cluster) as client:  # fmt: skip
            yield client
    elif scheduler == "sciserver":
        try:
            from SciServer import Dask as SciServerDask
        except ImportError:
            raise InvalidInputError(
                "compute.scheduler: sciserver needs the SciServer package (run on SciServer compute)"
            ) from None
        client = SciServerDask.getClient()
        try:
            yield client
        finally:
            client.close()
    elif scheduler == "slurm":
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise InvalidInputError(
                "compute.scheduler: slurm needs dask-jobqueue (pip install dask-jobqueue)"
            ) from None
        try:
            cluster = SLURMCluster(**slurm)
        except TypeError as exc:
            raise InvalidInputError(f"compute.slurm: {exc}") from None
        with cluster, Client(cluster) as client:
            cluster.scale(jobs=workers)
            yield client
    else:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as exc:
            raise InvalidInputError(f"compute.scheduler: cannot reach {scheduler} ({exc})") from None
        try:
            yield client
        finally:
            client.close()


def _run_threads(
    fn: Callable[[Any], Any], items: Sequence[Any], threads: int, done: Callable[[Any], None]
) -> list[Any]:
    import dask
    from dask.callbacks import Callback

    tasks = [dask.delayed(fn, pure=False)(item, dask_key_name=f"unit-{i}") for i, item in enumerate(items)]

    class _Progress(Callback):
        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if isinstance(key, str) and key.startswith("unit-"):
                done(result)

    with _Progress():
        return list(dask.compute(*tasks, scheduler="threads", num_workers=threads))


def _run_client(client: Any, fn: Callable[[Any], Any], items: Sequence[Any], done: Callable[[Any], None]) -> list[Any]:
    from distributed import as_completed

    futures = client.map(fn, list(items), pure=False)
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(items)
    try:
        for future in as_completed(futures):
            result = future.result()  # re-raises a task's exception here, with its own type
            results[index[future.key]] = result
            done(result)
    except BaseException:
        client.cancel(futures)
        raise
    return results


def run_tasks(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    scheduler: str = "threads",
    workers: int = 2,
    threads_per_worker: int = 1,
    slurm: dict[str, Any] | None = None,
    done: Callable[[Any], None] = lambda result: None,
) -> list[Any]:
    """``[fn(item) for item in items]`` on Dask; ``done(result)`` is called as each finishes.

    Results come back in item order. A task's exception is raised here with its own type.
    """
    if not items:
        return []
    if scheduler == "threads":
        return _run_threads(fn, items, workers * threads_per_worker, done)
    with cluster_client(scheduler, workers=workers, threads_per_worker=threads_per_worker, slurm=slurm or {}) as client:
        logger.info("running %d tasks on %s", len(items), client)
        return _run_client(client, fn, items, done)
