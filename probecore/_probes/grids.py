"""Losses on grids: along a line, between two points, on a plane (Li et al. 2018)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from probecore._contract.objective import Objective
from probecore._contract.validation import all_finite, check_points_budget, check_vector
from probecore._probes.directions import Directions
from probecore._probes.engine import (
    PointPlan,
    check_executor,
    check_point,
    evaluate_plan,
    metric_discovery_evals,
    metric_names,
)
from probecore._probes.results import LineResult, PlaneResult

__all__ = ["interpolate", "line", "plane"]

# --------------------------------------------------------------------------- validation


def _grid(name: str, values: Any, default_n: int, lo: float, hi: float) -> np.ndarray:
    if values is None:
        return np.linspace(lo, hi, default_n)
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be a 1-D array of numbers; got {values!r:.60}.") from exc
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D; got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"`{name}` must hold at least one value; got an empty array.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite; got {arr[~np.isfinite(arr)][0]}.")
    steps = np.diff(arr)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(
            f"`{name}` must be strictly increasing; {name}[{i + 1}] = {arr[i + 1]:g} does not "
            f"exceed {name}[{i}] = {arr[i]:g}."
        )
    return arr


def _rows(name: str, directions: Any, k: int, dim: int, dtype: np.dtype) -> np.ndarray:
    if isinstance(directions, Directions):
        directions = directions.vectors
    if not isinstance(directions, np.ndarray):
        if isinstance(directions, list | tuple):
            directions = np.asarray(directions)
        else:
            raise TypeError(
                f"`{name}` must be a Directions result or an array of shape ({k}, {dim}); "
                f"got {type(directions).__name__}."
            )
    D = directions.reshape(1, -1) if (k == 1 and directions.ndim == 1) else directions
    if D.ndim != 2 or D.shape != (k, dim):
        hint = ""
        if k == 1 and D.ndim == 2 and D.shape[1] == dim:
            hint = " Pick one: directions.select(i) for a Directions result, or array[i]."
        raise ValueError(f"`{name}` must have shape ({k}, {dim}); got {directions.shape}.{hint}")
    if D.dtype.kind != "f":
        raise TypeError(f"`{name}` must have a floating dtype; got {D.dtype}.")
    if not all_finite(D):  # one dot product: no (k, dim) mask of bools
        raise ValueError(f"`{name}` must be finite.")
    return np.ascontiguousarray(D, dtype=dtype)


def _check_line_budget(n: int, n_metrics: int) -> None:
    """Refuse a line whose arrays would not fit in memory (see ``check_points_budget``).

    Per point: the ``t`` grid (also the plan's coefficients), one float64 array per
    recorded field (the loss and ``n_metrics`` metrics), the result's copy of the metrics
    and the done mask.
    """
    n_fields = 1 + n_metrics
    check_points_budget(
        "`coords`",
        n,
        floats_per_point=1 + n_fields + n_metrics,
        advice="Use fewer `coords`, or evaluate the line in pieces, one call per slice "
        "of `coords` (with `store=` each piece resumes on its own).",
    )


def _check_plane_budget(a: np.ndarray, b: np.ndarray, n_metrics: int) -> None:
    """Refuse a plane whose arrays would not fit in memory (see ``check_points_budget``).

    Per point: the two meshgrid coordinates and the plan's two coefficients, one float64
    array per recorded field (the loss and ``n_metrics`` metrics), the result's copy of
    the metrics and the done mask.
    """
    n_fields = 1 + n_metrics
    check_points_budget(
        f"`alphas` × `betas` ({a.size:,} × {b.size:,})",
        a.size * b.size,
        floats_per_point=4 + n_fields + n_metrics,
        advice="Use a coarser grid (fewer `alphas` or `betas`), or evaluate the plane in "
        "tiles, one call per block of the grid: plane(..., alphas=alphas[i:j], "
        "betas=betas[k:l]) (with `store=` each tile resumes on its own).",
    )


def _describe_directions(directions: Any) -> dict:
    if isinstance(directions, Directions):
        return directions.describe()
    return {"kind": "given"}


# --------------------------------------------------------------------------- probes


def line(
    objective: Objective,
    direction: Any,
    *,
    x: np.ndarray | None = None,
    coords: Any = None,
    metrics: bool | Sequence[str] = False,
    chunk_size: int | None = None,
    executor: Executor | None = None,
    objective_factory: Callable[[], Any] | None = None,
    store: str | os.PathLike | None = None,
    progress: bool | None = None,
    metadata: dict | None = None,
) -> LineResult:
    """Loss (and metrics) along ``x + t·direction``.

    Parameters
    ----------
    objective : Objective
        The loss.
    direction : Directions or numpy.ndarray
        One direction (``(dim,)``, ``(1, dim)`` or a one-row :class:`Directions`).
    x : numpy.ndarray, optional
        The origin (default ``objective.x0``).
    coords : array-like, optional
        Strictly increasing ``t`` values (default 51 points in ``[-1, 1]``).
    metrics : bool or sequence of str
        Also record ``objective.metrics`` at each point (all of them with True; one more
        evaluation per point).
    chunk_size : int, optional
        Points per unit of work (default ``objective.chunk_size``, else 64).
    executor : concurrent.futures.Executor, optional
        Runs the chunks (a process pool, or ``dask.distributed.Client.get_executor()``).
        The objective is pickled to the workers, unless ``objective_factory`` is given.
    objective_factory : callable, optional
        With an executor: a picklable zero-argument callable that builds the objective;
        each worker calls it once and reuses the result.
    store : path, optional
        Zarr directory where each chunk is written as it finishes; rerunning with the same
        arguments and path resumes, computing only the missing chunks.
    progress : bool, optional
        Progress bar on stderr (default: only when stderr is a terminal).
    metadata : dict, optional
        Recorded with the result (and in the store).

    Returns
    -------
    LineResult

    Raises
    ------
    ValueError
        If the run's per-point arrays (grid, loss and metric values, done mask) would
        take more memory than the budget: ``PROBECORE_MAX_GRID_BYTES`` bytes if set, else
        half the physical memory. Refused before allocating them, naming the size.

    Examples
    --------
    >>> from probecore.analytic import Quadratic
    >>> q = Quadratic.from_spectrum([1.0, 4.0], rng=0)
    >>> d = np.linalg.eigh(q.hessian())[1][:, 1]      # eigenvector of eigenvalue 4
    >>> r = line(q, d, coords=[-1.0, 0.0, 1.0])
    >>> (r.losses - q.loss(q.x0)).round(10).tolist()   # ½·4·t²
    [2.0, 0.0, 2.0]
    """
    origin = check_point(objective, x)
    dtype = origin.dtype
    D = _rows("direction", direction, 1, objective.dim, dtype)
    # the memory check comes before any array of len(coords) values (but coords), and
    # before the metrics cost an evaluation; it is repeated once their number is known
    _check_line_budget(51 if coords is None else int(np.size(coords)), 0)
    t = _grid("coords", coords, 51, -1.0, 1.0)
    names = metric_names(objective, metrics, origin)
    _check_line_budget(t.size, len(names))
    check_executor(executor, objective_factory, objective)
    plan = PointPlan(
        kind="line",
        origin=origin,
        basis=D,
        coeffs=t[:, None],
        fixed={"coords": t},
        identity={"directions": _describe_directions(direction), "metrics": list(names)},
    )
    out = evaluate_plan(
        objective,
        plan,
        metric_names=names,
        chunk_size=chunk_size,
        executor=executor,
        objective_factory=objective_factory,
        store=store,
        progress=progress,
        metadata={"directions": _describe_directions(direction), "user": dict(metadata or {})},
    )
    return LineResult(
        coords=t,
        losses=out.losses,
        computed=out.computed,
        metric_names=names,
        metric_values=out.metric_values(),
        n_loss_evals=out.n_loss_evals,
        n_metric_evals=out.n_metric_evals + metric_discovery_evals(metrics),
        metadata=out.metadata,
    )


def interpolate(
    objective: Objective,
    x_a: np.ndarray,
    x_b: np.ndarray,
    *,
    coords: Any = None,
    **kwargs: Any,
) -> LineResult:
    """Loss along the straight path ``(1 − t)·x_a + t·x_b`` (default 26 points in [0, 1]).

    ``t = 0`` is ``x_a`` and ``t = 1`` is ``x_b``; values outside ``[0, 1]`` extrapolate.

    Parameters
    ----------
    objective : Objective
        The loss.
    x_a, x_b : numpy.ndarray
        The two points.
    coords : array-like, optional
        Strictly increasing ``t`` values (default 26 points in ``[0, 1]``).
    **kwargs
        ``metrics``, ``chunk_size``, ``executor``, ``objective_factory``, ``store``,
        ``progress``, ``metadata``: as for :func:`line`.

    Returns
    -------
    LineResult
        A line from ``x_a`` along ``x_b − x_a``.

    See Also
    --------
    probecore.evaluate_path : the same segment (or a curve) with barrier heights.

    Examples
    --------
    >>> from probecore.analytic import Quadratic
    >>> q = Quadratic.from_spectrum([2.0, 2.0], rng=0)
    >>> a, b = q.x0 + np.array([1.0, 0.0]), q.x0 - np.array([1.0, 0.0])
    >>> interpolate(q, a, b, coords=[0.0, 0.5, 1.0]).losses.round(10).tolist()
    [1.0, 0.0, 1.0]
    """
    if "x" in kwargs:
        raise TypeError("`interpolate` takes its origin as `x_a`; it does not accept `x`.")
    a = check_point(objective, x_a)
    b = check_vector("x_b", x_b, dim=objective.dim, dtype=a.dtype)
    t = _grid("coords", coords, 26, 0.0, 1.0)
    return line(objective, b - a, x=a, coords=t, **kwargs)


def plane(
    objective: Objective,
    directions: Any,
    *,
    x: np.ndarray | None = None,
    alphas: Any = None,
    betas: Any = None,
    metrics: bool | Sequence[str] = False,
    chunk_size: int | None = None,
    executor: Executor | None = None,
    objective_factory: Callable[[], Any] | None = None,
    store: str | os.PathLike | None = None,
    progress: bool | None = None,
    metadata: dict | None = None,
) -> PlaneResult:
    """Loss (and metrics) on the grid ``x + a·d1 + b·d2`` (Li et al. 2018).

    Parameters
    ----------
    objective : Objective
        The loss.
    directions : Directions or numpy.ndarray
        Two directions, shape ``(2, dim)`` (see :func:`random_directions`, filter-normalized
        by default, or :func:`eigen_directions`).
    x : numpy.ndarray, optional
        The centre (default ``objective.x0``).
    alphas, betas : array-like, optional
        Strictly increasing coordinates along ``d1`` and ``d2`` (default 51 points in
        ``[-1, 1]`` each).
    metrics, chunk_size, executor, objective_factory, store, progress, metadata
        As for :func:`line`. Points are visited row by row (``b`` outer, ``a`` inner).

    Returns
    -------
    PlaneResult
        ``losses[i, j]`` is the loss at ``a = alphas[j]``, ``b = betas[i]``.

    Raises
    ------
    ValueError
        If the grid's arrays would take more memory than the budget (as for
        :func:`line`): refused before allocating them, naming the size it would take. A
        larger plane can be evaluated in tiles, one call per block of ``alphas`` and
        ``betas``.

    Examples
    --------
    >>> from probecore.analytic import Quadratic
    >>> q = Quadratic.from_spectrum([1.0, 3.0], rng=0)
    >>> r = plane(q, np.eye(2), alphas=[-1.0, 0.0, 1.0], betas=[0.0, 1.0])
    >>> r.losses.shape, r.n_loss_evals
    ((2, 3), 6)
    """
    origin = check_point(objective, x)
    D = _rows("directions", directions, 2, objective.dim, origin.dtype)
    a = _grid("alphas", alphas, 51, -1.0, 1.0)
    b = _grid("betas", betas, 51, -1.0, 1.0)
    _check_plane_budget(a, b, 0)  # before the meshgrid, and the metrics' evaluation
    names = metric_names(objective, metrics, origin)
    _check_plane_budget(a, b, len(names))
    check_executor(executor, objective_factory, objective)
    A, B = np.meshgrid(a, b)  # (nb, na): row i is b = betas[i]
    coeffs = np.column_stack([A.ravel(), B.ravel()])
    plan = PointPlan(
        kind="plane",
        origin=origin,
        basis=D,
        coeffs=coeffs,
        fixed={"alphas": a, "betas": b},
        identity={"directions": _describe_directions(directions), "metrics": list(names)},
    )
    out = evaluate_plan(
        objective,
        plan,
        metric_names=names,
        chunk_size=chunk_size,
        executor=executor,
        objective_factory=objective_factory,
        store=store,
        progress=progress,
        metadata={"directions": _describe_directions(directions), "user": dict(metadata or {})},
    )
    shape = (b.size, a.size)
    return PlaneResult(
        alphas=a,
        betas=b,
        losses=out.losses.reshape(shape),
        computed=out.computed.reshape(shape),
        metric_names=names,
        metric_values=out.metric_values(shape),
        n_loss_evals=out.n_loss_evals,
        n_metric_evals=out.n_metric_evals + metric_discovery_evals(metrics),
        metadata=out.metadata,
    )
