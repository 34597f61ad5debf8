"""The probe engine: a plan of points, evaluated in chunks, through an executor, into a store.

Every probe (lines, planes, rays, paths) hands the engine an origin, a basis and the
coefficients of its points. The engine cuts them into chunks of ``chunk_size`` points,
evaluates each chunk through :meth:`Objective.losses_in_span` (memory
``O(chunk_size · dim)`` however large the plan), serially or on any
:class:`concurrent.futures.Executor` (the objective pickled, or built once per worker by
a factory), writes each finished chunk to a :class:`~probecore._probes.store.RunStore`
when asked, skips chunks a store already holds, and shows a progress bar.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from typing import Any

import numpy as np

from probecore._contract.objective import require_objective
from probecore._contract.validation import check_bool, check_int, check_vector
from probecore._probes.store import RunStore
from probecore._version import __version__

__all__ = [
    "Factory",
    "check_executor",
    "check_point",
    "chunking",
    "metric_names",
    "objective_record",
    "progress_bar",
    "resolve",
    "run_chunks",
    "span_probe",
    "task_spec",
]

# --------------------------------------------------------------------------- execution


class Factory:
    """A picklable recipe that workers call once to build their own objective."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.token = uuid.uuid4().hex


WORKER_OBJECTIVES: dict[str, Any] = {}
IN_FLIGHT = 16  # chunks submitted to an executor at any one time


def resolve(spec: Any) -> Any:
    if isinstance(spec, Factory):
        obj = WORKER_OBJECTIVES.get(spec.token)
        if obj is None:
            WORKER_OBJECTIVES.clear()  # one run's objective per worker at a time
            obj = WORKER_OBJECTIVES[spec.token] = spec.fn()
        return obj
    return spec


def span_chunk(
    spec: Any, origin: np.ndarray, basis: np.ndarray, coeffs: np.ndarray, metric_names: tuple
) -> dict[str, np.ndarray]:
    """Losses (and metrics) at ``origin + coeffs @ basis``: one unit of work."""
    obj = resolve(spec)
    out = {"loss": np.asarray(obj.losses_in_span(origin, basis, coeffs), dtype=np.float64)}
    if metric_names:
        values = {name: np.full(len(coeffs), np.nan) for name in metric_names}
        for i, c in enumerate(coeffs):
            point = origin + (c @ basis).astype(origin.dtype, copy=False)
            for name, value in obj.metrics(point).items():
                if name in values:
                    values[name][i] = value
        out.update(values)
    return out



def progress_bar(total: int, done: int, desc: str, progress: bool | None) -> Any:
    from tqdm.auto import tqdm

    # disable=None: tqdm turns itself off when stderr is not a terminal
    disable = None if progress is None else not check_bool("progress", progress)
    return tqdm(total=total, initial=done, desc=desc, unit="chunk", disable=disable, leave=False)


def run_chunks(
    chunks: list[tuple[int, int]],
    task: Callable[..., dict[str, np.ndarray]],
    args_of: Callable[[int, int, int], tuple],
    spec: Any,
    fields: list[str],
    values: dict[str, np.ndarray],
    done: np.ndarray,
    *,
    store: RunStore | None,
    executor: Executor | None,
    progress: bool | None,
    desc: str,
) -> int:
    """Evaluate the chunks not yet done; record each as it finishes.

    Returns the number of points (rays) evaluated. Points already done (read from a
    store) are not evaluated again.
    """
    todo = [(i, s, e) for i, (s, e) in enumerate(chunks) if not np.all(done[s:e])]
    bar = progress_bar(len(chunks), len(chunks) - len(todo), desc, progress)

    def record(s: int, e: int, out: dict[str, np.ndarray]) -> None:
        for name in fields:
            values[name][s:e] = out[name]
        if store is not None:
            store.write(s, e, out)
        done[s:e] = True
        bar.update(1)

    try:
        if executor is None:
            for i, s, e in todo:
                record(s, e, task(spec, *args_of(i, s, e)))
        else:
            # At most IN_FLIGHT chunks are submitted at a time: each task carries the
            # objective (or its factory) and the chunk's inputs, so memory stays bounded.
            pending = iter(todo)
            futures: dict[Any, tuple[int, int]] = {}

            def submit_next() -> None:
                item = next(pending, None)
                if item is not None:
                    i, s, e = item
                    futures[executor.submit(task, spec, *args_of(i, s, e))] = (s, e)

            for _ in range(IN_FLIGHT):
                submit_next()
            try:
                while futures:
                    finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        s, e = futures.pop(fut)
                        try:
                            out = fut.result()
                        except Exception as exc:
                            if "pickl" in f"{type(exc).__name__} {exc}".lower():
                                raise TypeError(
                                    "the objective could not be sent to the executor's "
                                    f"workers ({type(exc).__name__}: {exc}). Pass "
                                    "objective_factory=, a picklable function that builds the "
                                    "objective in each worker."
                                ) from exc
                            raise
                        record(s, e, out)
                        submit_next()
            finally:
                for fut in futures:
                    fut.cancel()
    finally:
        bar.close()
    return sum(e - s for _, s, e in todo)


def check_executor(executor: Any, objective_factory: Any) -> Any:
    if executor is not None and not isinstance(executor, Executor):
        raise TypeError(
            "`executor` must be a concurrent.futures.Executor (a process pool, or "
            f"dask.distributed.Client.get_executor()); got {type(executor).__name__}."
        )
    if objective_factory is not None and not callable(objective_factory):
        raise TypeError(
            f"`objective_factory` must be callable; got {type(objective_factory).__name__}."
        )
    if objective_factory is not None and executor is None:
        raise ValueError(
            "`objective_factory` builds the objective in executor workers; pass an "
            "`executor` too (without one the objective is evaluated here, as given)."
        )
    return executor


def task_spec(objective: Any, executor: Any, objective_factory: Any) -> Any:
    if executor is not None and objective_factory is not None:
        return Factory(objective_factory)
    return objective


def versions(objective: Any) -> dict[str, str]:
    out = {"probecore": __version__, "numpy": np.__version__, "python": platform.python_version()}
    root = type(objective).__module__.split(".")[0]
    for dist in {root.replace("_", "-"), root}:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    for framework in ("torch", "jax"):
        mod = sys.modules.get(framework)  # recorded when loaded, never imported here
        if mod is not None and hasattr(mod, "__version__"):
            out[framework] = mod.__version__
    return out


def objective_record(objective: Any) -> dict[str, Any]:
    return {
        "type": f"{type(objective).__module__}.{type(objective).__qualname__}",
        "dim": int(objective.dim),
        "dtype": str(np.dtype(objective.dtype)),
        "n_examples": getattr(objective, "n_examples", None),
        "versions": versions(objective),
    }


def chunking(n: int, chunk_size: int | None, objective: Any) -> tuple[int, list]:
    if chunk_size is None:
        chunk_size = int(getattr(objective, "chunk_size", 64) or 64)
    chunk_size = check_int("chunk_size", chunk_size, lo=1)
    return chunk_size, [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def check_point(objective: Any, x: Any) -> np.ndarray:
    require_objective(objective, "losses_in_span")
    if x is None:
        x = getattr(objective, "x0", None)
        if x is None:
            raise TypeError("`x` is required: the objective has no x0.")
    return check_vector("x", x, dim=objective.dim, dtype=np.dtype(objective.dtype))


def metric_names(objective: Any, metrics: Any, origin: np.ndarray) -> tuple:
    if metrics is False or metrics is None:
        return ()
    if metrics is True:
        return tuple(sorted(objective.metrics(origin)))
    if isinstance(metrics, str):
        metrics = (metrics,)
    names = tuple(metrics)
    available = set(objective.metrics(origin))
    missing = [m for m in names if m not in available]
    if missing:
        raise ValueError(
            f"`metrics` names {missing} that the objective does not report; it reports "
            f"{sorted(available)}."
        )
    return names


# --------------------------------------------------------------------------- span probes


def span_probe(
    objective,
    origin,
    basis,
    coeffs,
    *,
    kind,
    fixed,
    identity,
    metric_names,
    chunk_size,
    executor,
    objective_factory,
    store,
    progress,
    metadata,
):
    n = coeffs.shape[0]
    chunk_size, chunks = chunking(n, chunk_size, objective)
    fields = ["loss", *metric_names]
    values = {name: np.full(n, np.nan) for name in fields}
    done = np.zeros(n, dtype=bool)
    meta = {"objective": objective_record(objective), **metadata}
    rs = None
    if store is not None:
        rs = RunStore(
            store,
            kind=kind,
            n_points=n,
            chunk_size=chunk_size,
            fields=fields,
            fixed={**fixed, "coeffs": coeffs, "origin": origin, "basis": basis},
            identity=identity,
            metadata=meta,
        )
        done[:] = rs.done()
        for name in fields:
            values[name][done] = rs.read(name)[done]
    spec = task_spec(objective, executor, objective_factory)
    n_evals = run_chunks(
        chunks,
        span_chunk,
        lambda i, s, e: (origin, basis, coeffs[s:e], metric_names),
        spec,
        fields,
        values,
        done,
        store=rs,
        executor=executor,
        progress=progress,
        desc=kind,
    )
    meta["store"] = None if store is None else os.fspath(store)
    return values, done, n_evals, meta
