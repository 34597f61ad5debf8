"""Argument checks and small helpers the probes share: executors, chunking, the origin, metrics."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

import numpy as np

from probecore._contract.collective import refuse_executor
from probecore._contract.objective import Objective, require_objective
from probecore._contract.validation import check_int, check_vector

__all__ = [
    "check_executor",
    "check_point",
    "chunking",
    "metric_discovery_evals",
    "metric_names",
    "origin_loss",
]


def check_executor(executor: Any, objective_factory: Any, objective: Any = None) -> Any:
    """Check ``executor`` and ``objective_factory`` (a factory needs an executor).

    An executor is refused with an SPMD ``objective`` (:func:`refuse_executor`).
    """
    refuse_executor(objective, executor)
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


def chunking(n: int, chunk_size: int | None, objective: Objective) -> tuple[int, list]:
    """The chunk size (None: ``objective.chunk_size``, else 64) and each ``(start, stop)``."""
    if chunk_size is None:
        chunk_size = int(getattr(objective, "chunk_size", 64) or 64)
    chunk_size = check_int("chunk_size", chunk_size, lo=1)
    return chunk_size, [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def check_point(objective: Objective, x: Any) -> np.ndarray:
    """A probe's origin, ``(dim,)`` in the objective's dtype: ``x`` checked, or ``objective.x0``."""
    require_objective(objective, "losses_in_span")
    if x is None:
        x = getattr(objective, "x0", None)
        if x is None:
            raise TypeError("`x` is required: the objective has no x0.")
    return check_vector("x", x, dim=objective.dim, dtype=np.dtype(objective.dtype))


def metric_names(objective: Objective, metrics: Any, origin: np.ndarray) -> tuple:
    """Metrics to record: all of ``objective.metrics(origin)`` (True), none, or those named."""
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


def origin_loss(objective: Objective, origin: np.ndarray) -> float:
    """``L(origin)`` through ``losses_in_span``, the route of every probed point.

    So that it rounds as the points do: rays difference against it, and a store compares it
    on resume (:func:`~probecore._contract.fingerprint.objective_fingerprint`).
    """
    zero = np.zeros((1, origin.size), dtype=origin.dtype)
    return float(objective.losses_in_span(origin, zero, np.zeros((1, 1)))[0])


def metric_discovery_evals(metrics: Any) -> int:
    """Metric evaluations :func:`metric_names` spends on finding the names: one, if any."""
    return 0 if metrics is False or metrics is None else 1
