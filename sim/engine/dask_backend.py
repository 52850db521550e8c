"""backend="dask" of sim.engine.run_chunks: the same chunk function on a dask.distributed
cluster (a LocalCluster, or a running scheduler), each chunk one task."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .chunk import _run_chunk, failure_reason
from .store import chunk_filename, write_chunk

#: the optional dependencies of backend="dask" (pyproject.toml)
DASK_EXTRA = "cluster"


def _import_distributed():
    """dask.distributed, or an ImportError saying which extra to install."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(f"backend='dask' needs dask.distributed, which is not installed: "
                          f"pip install 'sim[{DASK_EXTRA}]' ({failure_reason(exc)})") from None
    return distributed


def check_scheduler_address(address: str) -> None:
    """ValueError saying what is wrong with a dask scheduler address (no network access): a known
    scheme, and host:port where the scheme has them (``tcp://host:8786``, ``host:8786``)."""
    from distributed.comm.addressing import get_address_host_port, parse_address
    from distributed.comm.registry import get_backend

    if not isinstance(address, str) or not address or any(ch.isspace() for ch in address):
        raise ValueError(f"not an address: {address!r}")
    scheme, _ = parse_address(address)
    get_backend(scheme)  # unknown scheme -> ValueError listing the known ones
    if scheme in ("tcp", "tls", "ws", "wss"):
        get_address_host_port(address)


@contextlib.contextmanager
def _quiet_dask_logs(level: int = logging.ERROR) -> Iterator[None]:
    """dask.distributed logs every worker start and stop at INFO: keep the terminal to errors
    while this run's cluster is up (a logger set more quietly by the user is left so)."""
    logger = logging.getLogger("distributed")
    old = logger.level
    logger.setLevel(max(level, old))
    try:
        yield
    finally:
        logger.setLevel(old)


@contextlib.contextmanager
def _dask_client(scheduler: Any, workers: int) -> Iterator[Any]:
    """A client of the scheduler; what this function started (client, LocalCluster) it closes."""
    distributed = _import_distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    with _quiet_dask_logs(), contextlib.ExitStack() as stack:
        target = scheduler
        if scheduler is None:
            target = stack.enter_context(distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR))
        try:
            client = distributed.Client(target, set_as_default=False)
        except OSError as exc:
            raise ConnectionError(f"cannot connect to the dask scheduler at {scheduler!r}: {failure_reason(exc)}") from None
        stack.callback(client.close)
        yield client


def _cluster_threads(client: Any) -> int:
    """Worker threads the cluster has now (0 if none has joined yet)."""
    try:
        return int(sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001 - only sizes the default chunks
        return 0


def _dask_results(client: Any, simulate: Callable, plans: Sequence[Any], streams: Sequence[tuple[int, ...]],
                  tasks: Sequence[tuple[int, int, int]], seed: int, chunks_dir: Path) -> Iterator[dict]:
    """Submit one dask task per chunk (each condition's plan sent to the cluster once) and yield the
    payloads as they finish, writing those whose file the workers could not write. The rows always
    come back: a worker may see a run directory of the same name that this process does not. Pending
    tasks are cancelled if the caller stops early (an error, Ctrl-C)."""
    from distributed import as_completed

    needed = sorted({c for c, _, _ in tasks})
    plan_refs = dict(zip(needed, client.scatter([plans[c] for c in needed], hash=False)))
    cdir = str(chunks_dir)
    pending = {client.submit(_run_chunk, simulate, plan_refs[c], c, streams[c], f, l, seed, cdir, "if_shared",
                             pure=False) for c, f, l in tasks}
    try:
        for future in as_completed(pending, loop=client.loop):
            pending.discard(future)
            payload = future.result()
            del future  # the cluster may forget the result now
            if not (chunks_dir / chunk_filename(payload["condition"], payload["first"], payload["last"])).is_file():
                write_chunk(chunks_dir, payload)
            yield payload
    finally:
        client.cancel([*pending, *plan_refs.values()])
