"""Landscape probes: losses along lines, on planes, and curvature along random rays.

Every probe evaluates its points through :meth:`Objective.losses_in_span` in chunks of
``chunk_size`` points, so memory is ``O(chunk_size · dim)`` however large the grid. A
chunk is the unit of work for an executor and of storage: with ``store=path`` each
finished chunk is written to a Zarr group (see :mod:`probecore._store`) and a rerun
computes only what is missing. Results are frozen objects carrying the number of loss
evaluations they cost.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import numbers
import os
import platform
import sys
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from probecore._directions import Directions
from probecore._results import _register, _ResultBase
from probecore._store import RunStore, open_run
from probecore._validation import as_rng, check_bool, check_float, check_int, check_vector
from probecore._version import __version__

__all__ = [
    "LineResult",
    "PlaneResult",
    "RayResult",
    "default_ray_eps",
    "interpolate",
    "line",
    "load_run",
    "plane",
    "ray_directions",
    "rays",
]


# --------------------------------------------------------------------------- results


class _WithMetrics(_ResultBase):
    """Results with ``metric_names`` and matching rows of ``metric_values``."""

    __slots__ = ()

    def metric(self, name: str) -> np.ndarray:
        """Values of one metric (NaN where not computed)."""
        names = list(self.metric_names)
        if name not in names:
            raise KeyError(f"no metric {name!r}; this result has {names}.")
        return self.metric_values[names.index(name)]


class _GridBase(_WithMetrics):
    __slots__ = ()

    @property
    def complete(self) -> bool:
        """Whether every point was computed."""
        return bool(np.all(self.computed))


@_register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class LineResult(_GridBase):
    """Loss (and metrics) along ``origin + t·direction``.

    Attributes
    ----------
    coords : numpy.ndarray
        The ``t`` values, increasing.
    losses : numpy.ndarray
        Loss at each ``t``; non-finite values are kept as they came.
    computed : numpy.ndarray
        Mask of the points computed (all True unless the run was interrupted).
    metric_names : tuple of str
        Names of the extra metrics (e.g. ``("accuracy",)``).
    metric_values : numpy.ndarray
        Shape ``(n_metrics, n)``.
    n_loss_evals : int
        Loss evaluations spent by this call (0 for points read back from a store).
    n_metric_evals : int
        Metric evaluations spent by this call (one per point with ``metrics``).
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("coords", "losses", "computed", "metric_values")

    coords: np.ndarray
    losses: np.ndarray
    computed: np.ndarray
    metric_names: tuple = ()
    metric_values: np.ndarray | None = None
    n_loss_evals: int = 0
    n_metric_evals: int = 0
    metadata: dict = field(default_factory=dict)


@_register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class PlaneResult(_GridBase):
    """Loss (and metrics) on the grid ``origin + a·d1 + b·d2``.

    Attributes
    ----------
    alphas, betas : numpy.ndarray
        Grid coordinates along ``d1`` and ``d2``.
    losses : numpy.ndarray
        Shape ``(len(betas), len(alphas))``: row ``i`` is ``b = betas[i]`` (the layout
        ``matplotlib.contour(alphas, betas, losses)`` expects).
    computed : numpy.ndarray
        Mask of computed points, same shape.
    metric_names, metric_values
        As for :class:`LineResult`; values have shape ``(n_metrics, nb, na)``.
    n_loss_evals : int
        Loss evaluations spent by this call.
    n_metric_evals : int
        Metric evaluations spent by this call.
    """

    _array_fields: ClassVar[tuple[str, ...]] = (
        "alphas",
        "betas",
        "losses",
        "computed",
        "metric_values",
    )

    alphas: np.ndarray
    betas: np.ndarray
    losses: np.ndarray
    computed: np.ndarray
    metric_names: tuple = ()
    metric_values: np.ndarray | None = None
    n_loss_evals: int = 0
    n_metric_evals: int = 0
    metadata: dict = field(default_factory=dict)


@_register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RayResult(_ResultBase):
    r"""Curvature along random unit directions (the seed paper's Method 4).

    For unit directions :math:`d_i`,
    :math:`\kappa_i = (L(x+\varepsilon d_i) - 2L(x) + L(x-\varepsilon d_i))/\varepsilon^2`,
    which tends to :math:`d_i^\top H d_i` as :math:`\varepsilon \to 0`; for uniformly
    random unit directions its mean is :math:`\operatorname{tr}(H)/\dim`.

    Attributes
    ----------
    kappa : numpy.ndarray
        One curvature per ray (NaN where the ray was not computed; ±inf/NaN where a
        loss was not finite).
    losses_plus, losses_minus : numpy.ndarray
        :math:`L(x \pm \varepsilon d_i)`.
    loss0 : float
        :math:`L(x)`.
    eps : float
        Step length.
    mean, std, sem : float
        Mean, standard deviation and standard error of the finite ``kappa``.
    mean_ci : numpy.ndarray
        Student-t confidence interval of the mean at level ``confidence``.
    negative_fraction : float
        Share of finite ``kappa`` below zero.
    negative_fraction_ci : numpy.ndarray
        Wilson score interval of that share at level ``confidence``.
    rounding_error : float
        Floor of the rounding error in one ``kappa``,
        :math:`4\epsilon_{\rm mach}\,|L(x)|/\varepsilon^2`, for losses accurate to machine
        precision. Losses summed over a data set are less accurate (on a digits CNN in
        float64 the observed noise was about 100 times this), so it is a lower bound.
    n_finite : int
        Rays with a finite ``kappa`` (the statistics use these).
    confidence : float
        Level of both intervals.
    n_loss_evals : int
        Loss evaluations spent by this call.
    seed : int or dict
        Reproduces the directions (ray ``i`` is drawn from its chunk's own stream).
    """

    _array_fields: ClassVar[tuple[str, ...]] = (
        "kappa",
        "losses_plus",
        "losses_minus",
        "computed",
        "mean_ci",
        "negative_fraction_ci",
    )

    kappa: np.ndarray
    losses_plus: np.ndarray
    losses_minus: np.ndarray
    computed: np.ndarray
    loss0: float
    eps: float
    mean: float
    std: float
    sem: float
    mean_ci: np.ndarray
    negative_fraction: float
    negative_fraction_ci: np.ndarray
    rounding_error: float
    n_finite: int
    confidence: float
    n_loss_evals: int
    seed: Any = None
    metadata: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every ray was computed."""
        return bool(np.all(self.computed))


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
    if not np.all(np.isfinite(D)):
        raise ValueError(f"`{name}` must be finite.")
    return np.ascontiguousarray(D, dtype=dtype)


def _describe_directions(directions: Any) -> dict:
    if isinstance(directions, Directions):
        return directions.describe()
    return {"kind": "given"}


# --------------------------------------------------------------------------- execution


class _Factory:
    """A picklable recipe that workers call once to build their own objective."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.token = uuid.uuid4().hex


_WORKER_OBJECTIVES: dict[str, Any] = {}
_IN_FLIGHT = 16  # chunks submitted to an executor at any one time


def _resolve(spec: Any) -> Any:
    if isinstance(spec, _Factory):
        obj = _WORKER_OBJECTIVES.get(spec.token)
        if obj is None:
            _WORKER_OBJECTIVES.clear()  # one run's objective per worker at a time
            obj = _WORKER_OBJECTIVES[spec.token] = spec.fn()
        return obj
    return spec


def _span_chunk(
    spec: Any, origin: np.ndarray, basis: np.ndarray, coeffs: np.ndarray, metric_names: tuple
) -> dict[str, np.ndarray]:
    """Losses (and metrics) at ``origin + coeffs @ basis``: one unit of work."""
    obj = _resolve(spec)
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


def ray_directions(seed: int, indices: Any, dim: int) -> np.ndarray:
    """The unit directions of rays ``indices`` of a :func:`rays` run with ``rng=seed``.

    Ray ``i`` is drawn from its own stream, ``SeedSequence(seed, spawn_key=(i,))``, so it
    does not depend on chunking, executors or the order in which rays are evaluated.

    Examples
    --------
    >>> ray_directions(0, [0, 1], 5).shape
    (2, 5)
    """
    idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
    D = np.empty((idx.size, int(dim)))
    for row, i in enumerate(idx):
        gen = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(i),)))
        D[row] = gen.standard_normal(int(dim))
    return D / np.linalg.norm(D, axis=1, keepdims=True)


def _ray_chunk(
    spec: Any, origin: np.ndarray, entropy: int, start: int, n: int, eps: float
) -> dict[str, np.ndarray]:
    """Losses at ``origin ± eps·d_i`` for rays ``start, ..., start + n - 1``."""
    obj = _resolve(spec)
    D = ray_directions(entropy, np.arange(start, start + n), origin.size)
    coeffs = np.concatenate([eps * np.eye(n), -eps * np.eye(n)])
    losses = np.asarray(
        obj.losses_in_span(origin, D.astype(origin.dtype), coeffs), dtype=np.float64
    )
    return {"loss_plus": losses[:n], "loss_minus": losses[n:]}


def _progress_bar(total: int, done: int, desc: str, progress: bool | None) -> Any:
    from tqdm.auto import tqdm

    # disable=None: tqdm turns itself off when stderr is not a terminal
    disable = None if progress is None else not check_bool("progress", progress)
    return tqdm(total=total, initial=done, desc=desc, unit="chunk", disable=disable, leave=False)


def _run_chunks(
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
    bar = _progress_bar(len(chunks), len(chunks) - len(todo), desc, progress)

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
            # At most _IN_FLIGHT chunks are submitted at a time: each task carries the
            # objective (or its factory) and the chunk's inputs, so memory stays bounded.
            pending = iter(todo)
            futures: dict[Any, tuple[int, int]] = {}

            def submit_next() -> None:
                item = next(pending, None)
                if item is not None:
                    i, s, e = item
                    futures[executor.submit(task, spec, *args_of(i, s, e))] = (s, e)

            for _ in range(_IN_FLIGHT):
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


def _check_executor(executor: Any, objective_factory: Any) -> Any:
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


def _spec(objective: Any, executor: Any, objective_factory: Any) -> Any:
    if executor is not None and objective_factory is not None:
        return _Factory(objective_factory)
    return objective


def _versions(objective: Any) -> dict[str, str]:
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


def _objective_record(objective: Any) -> dict[str, Any]:
    return {
        "type": f"{type(objective).__module__}.{type(objective).__qualname__}",
        "dim": int(objective.dim),
        "dtype": str(np.dtype(objective.dtype)),
        "n_examples": getattr(objective, "n_examples", None),
        "versions": _versions(objective),
    }


def _chunking(n: int, chunk_size: int | None, objective: Any) -> tuple[int, list]:
    if chunk_size is None:
        chunk_size = int(getattr(objective, "chunk_size", 64) or 64)
    chunk_size = check_int("chunk_size", chunk_size, lo=1)
    return chunk_size, [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def _point(objective: Any, x: Any) -> np.ndarray:
    for member in ("losses_in_span", "dim", "dtype"):
        if not hasattr(objective, member):
            raise TypeError(
                f"`objective` must be a probecore Objective (it has no {member!r}); got "
                f"{type(objective).__name__}."
            )
    if x is None:
        x = getattr(objective, "x0", None)
        if x is None:
            raise TypeError("`x` is required: the objective has no x0.")
    return check_vector("x", x, dim=objective.dim, dtype=np.dtype(objective.dtype))


def _metric_names(objective: Any, metrics: Any, origin: np.ndarray) -> tuple:
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


def _span_probe(
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
    chunk_size, chunks = _chunking(n, chunk_size, objective)
    fields = ["loss", *metric_names]
    values = {name: np.full(n, np.nan) for name in fields}
    done = np.zeros(n, dtype=bool)
    meta = {"objective": _objective_record(objective), **metadata}
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
    spec = _spec(objective, executor, objective_factory)
    n_evals = _run_chunks(
        chunks,
        _span_chunk,
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


def line(
    objective: Any,
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

    Examples
    --------
    >>> from probecore.analytic import Quadratic
    >>> q = Quadratic.from_spectrum([1.0, 4.0], rng=0)
    >>> d = np.linalg.eigh(q.hessian())[1][:, 1]      # eigenvector of eigenvalue 4
    >>> r = line(q, d, coords=[-1.0, 0.0, 1.0])
    >>> (r.losses - q.loss(q.x0)).round(10).tolist()   # ½·4·t²
    [2.0, 0.0, 2.0]
    """
    origin = _point(objective, x)
    dtype = origin.dtype
    D = _rows("direction", direction, 1, objective.dim, dtype)
    t = _grid("coords", coords, 51, -1.0, 1.0)
    names = _metric_names(objective, metrics, origin)
    _check_executor(executor, objective_factory)
    identity = {"directions": _describe_directions(direction), "metrics": list(names)}
    values, done, n_evals, meta = _span_probe(
        objective,
        origin,
        D,
        t[:, None],
        kind="line",
        fixed={"coords": t},
        identity=identity,
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
        losses=values["loss"],
        computed=done,
        metric_names=names,
        metric_values=np.array([values[m] for m in names]).reshape(len(names), t.size),
        n_loss_evals=n_evals,
        n_metric_evals=n_evals if names else 0,
        metadata=meta,
    )


def interpolate(
    objective: Any,
    x_a: np.ndarray,
    x_b: np.ndarray,
    *,
    coords: Any = None,
    **kwargs: Any,
) -> LineResult:
    """Loss along the straight path ``(1 − t)·x_a + t·x_b`` (default 26 points in [0, 1]).

    ``t = 0`` is ``x_a`` and ``t = 1`` is ``x_b``; values outside ``[0, 1]`` extrapolate.
    Other keyword arguments are those of :func:`line`.

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
    a = _point(objective, x_a)
    b = check_vector("x_b", x_b, dim=objective.dim, dtype=a.dtype)
    t = _grid("coords", coords, 26, 0.0, 1.0)
    return line(objective, b - a, x=a, coords=t, **kwargs)


def plane(
    objective: Any,
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

    Examples
    --------
    >>> from probecore.analytic import Quadratic
    >>> q = Quadratic.from_spectrum([1.0, 3.0], rng=0)
    >>> r = plane(q, np.eye(2), alphas=[-1.0, 0.0, 1.0], betas=[0.0, 1.0])
    >>> r.losses.shape, r.n_loss_evals
    ((2, 3), 6)
    """
    origin = _point(objective, x)
    D = _rows("directions", directions, 2, objective.dim, origin.dtype)
    a = _grid("alphas", alphas, 51, -1.0, 1.0)
    b = _grid("betas", betas, 51, -1.0, 1.0)
    names = _metric_names(objective, metrics, origin)
    _check_executor(executor, objective_factory)
    A, B = np.meshgrid(a, b)  # (nb, na): row i is b = betas[i]
    coeffs = np.column_stack([A.ravel(), B.ravel()])
    identity = {"directions": _describe_directions(directions), "metrics": list(names)}
    values, done, n_evals, meta = _span_probe(
        objective,
        origin,
        D,
        coeffs,
        kind="plane",
        fixed={"alphas": a, "betas": b},
        identity=identity,
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
        losses=values["loss"].reshape(shape),
        computed=done.reshape(shape),
        metric_names=names,
        metric_values=np.array([values[m].reshape(shape) for m in names]).reshape(
            len(names), *shape
        ),
        n_loss_evals=n_evals,
        n_metric_evals=n_evals if names else 0,
        metadata=meta,
    )


# --------------------------------------------------------------------------- rays


def default_ray_eps(dtype: Any) -> float:
    """``eps_mach ** 0.25`` of ``dtype``: 1.2e-4 in float64, 1.9e-2 in float32.

    The central second difference has rounding error about ``4·δ/ε²`` (``δ`` the error of
    one loss value, ``≈ eps_mach·|L|``) and truncation error ``ε²·|L''''|/12``; they
    balance at ``ε ∝ eps_mach^{1/4}`` when the loss and its fourth derivative along a unit
    direction are of order one. See docs/landscape.md for ``κ`` against ``ε`` on a real
    model.
    """
    return float(np.finfo(np.dtype(dtype)).eps ** 0.25)


def _ray_stats(kappa: np.ndarray, confidence: float) -> dict[str, Any]:
    from scipy import stats

    k = kappa[np.isfinite(kappa)]
    n = k.size
    out: dict[str, Any] = {"n_finite": int(n)}
    if n == 0:
        nan2 = np.array([np.nan, np.nan])
        return {
            **out,
            "mean": np.nan,
            "std": np.nan,
            "sem": np.nan,
            "mean_ci": nan2,
            "negative_fraction": np.nan,
            "negative_fraction_ci": nan2,
        }
    mean = float(np.mean(k))
    std = float(np.std(k, ddof=1)) if n > 1 else np.nan
    sem = std / math.sqrt(n) if n > 1 else np.nan
    if n > 1:
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
        ci = np.array([mean - half, mean + half])
    else:
        ci = np.array([np.nan, np.nan])
    neg = int(np.sum(k < 0))
    pci = stats.binomtest(neg, n).proportion_ci(confidence_level=confidence, method="wilson")
    return {
        **out,
        "mean": mean,
        "std": std,
        "sem": sem,
        "mean_ci": ci,
        "negative_fraction": neg / n,
        "negative_fraction_ci": np.array([pci.low, pci.high]),
    }


def rays(
    objective: Any,
    *,
    n_rays: int = 100,
    eps: float | None = None,
    x: np.ndarray | None = None,
    confidence: float = 0.95,
    rng: int | np.random.Generator | None = None,
    chunk_size: int | None = None,
    executor: Executor | None = None,
    objective_factory: Callable[[], Any] | None = None,
    store: str | os.PathLike | None = None,
    progress: bool | None = None,
    metadata: dict | None = None,
) -> RayResult:
    r"""Curvature of the loss along ``n_rays`` uniformly random unit directions.

    ``κ = (L(x + εd) − 2L(x) + L(x − εd)) / ε²`` per ray: ``2·n_rays + 1`` loss
    evaluations, no gradients. For a quadratic ``κ = dᵀHd`` exactly (up to rounding), and
    over uniformly random unit ``d`` its mean is ``tr(H)/dim``.

    Parameters
    ----------
    objective : Objective
        The loss.
    n_rays : int
        Number of random directions.
    eps : float, optional
        Step length along each (unit) direction; default :func:`default_ray_eps`.
    x : numpy.ndarray, optional
        The point (default ``objective.x0``).
    confidence : float
        Level of the intervals on the mean and on the negative fraction.
    rng : int, numpy.random.Generator or None
        Source of the directions. Chunk ``i`` draws its rays from its own stream
        (``SeedSequence(seed, spawn_key=(i,))``), so a resumed or parallel run draws the
        same rays.
    chunk_size, executor, objective_factory, store, progress, metadata
        As for :func:`line`; a chunk is ``chunk_size`` rays (``2·chunk_size`` points).
        The directions are drawn by the worker that evaluates them and never stored: the
        seed reproduces them.

    Returns
    -------
    RayResult

    Examples
    --------
    >>> from probecore.analytic import Quadratic
    >>> q = Quadratic.from_spectrum(np.linspace(1.0, 3.0, 50), rng=0)
    >>> r = rays(q, n_rays=400, rng=0)
    >>> bool(r.mean_ci[0] <= 2.0 <= r.mean_ci[1]), r.n_loss_evals     # tr(H)/dim = 2
    (True, 801)
    """
    origin = _point(objective, x)
    n_rays = check_int("n_rays", n_rays, lo=1)
    eps = default_ray_eps(origin.dtype) if eps is None else check_float("eps", eps, lo=0.0)
    if eps <= 0:
        raise ValueError(f"`eps` must be positive; got {eps}.")
    confidence = check_float("confidence", confidence, lo=0.0, hi=1.0)
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must lie strictly between 0 and 1; got {confidence}.")
    _check_executor(executor, objective_factory)
    if store is not None and (isinstance(rng, bool) or not isinstance(rng, numbers.Integral)):
        raise TypeError(
            "`rng` must be an int seed when `store` is given, so that a rerun draws the same "
            f"rays and can resume; got {type(rng).__name__}."
        )
    gen, seed = as_rng(rng)
    entropy = int(seed) if isinstance(seed, int) else int(gen.integers(2**63))
    chunk_size, chunks = _chunking(n_rays, chunk_size, objective)
    fields = ["loss_plus", "loss_minus"]
    values = {name: np.full(n_rays, np.nan) for name in fields}
    done = np.zeros(n_rays, dtype=bool)
    # L(x) through the same route as L(x ± εd), so that both round alike
    zero = np.zeros((1, origin.size), dtype=origin.dtype)
    loss0 = float(objective.losses_in_span(origin, zero, np.zeros((1, 1)))[0])
    meta = {
        "objective": _objective_record(objective),
        "entropy": entropy,
        "loss0": loss0,
        "confidence": confidence,
        "user": dict(metadata or {}),
    }
    rs = None
    if store is not None:
        rs = RunStore(
            store,
            kind="rays",
            n_points=n_rays,
            chunk_size=chunk_size,
            fields=fields,
            fixed={"origin": origin},
            identity={"eps": eps, "entropy": entropy},
            metadata=meta,
        )
        if rs.resumed:  # the stored losses go with the stored L(x)
            loss0 = float(rs.metadata["loss0"])
            meta["loss0"] = loss0
        done[:] = rs.done()
        for name in fields:
            values[name][done] = rs.read(name)[done]
    spec = _spec(objective, executor, objective_factory)
    n_evals = 1 + 2 * _run_chunks(
        chunks,
        _ray_chunk,
        lambda i, s, e: (origin, entropy, s, e - s, eps),
        spec,
        fields,
        values,
        done,
        store=rs,
        executor=executor,
        progress=progress,
        desc="rays",
    )
    kappa = np.full(n_rays, np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        kappa[done] = (values["loss_plus"][done] - 2 * loss0 + values["loss_minus"][done]) / eps**2
    st = _ray_stats(kappa[done], confidence)
    meta["store"] = None if store is None else os.fspath(store)
    return RayResult(
        kappa=kappa,
        losses_plus=values["loss_plus"],
        losses_minus=values["loss_minus"],
        computed=done,
        loss0=loss0,
        eps=eps,
        confidence=confidence,
        rounding_error=4 * float(np.finfo(origin.dtype).eps) * abs(loss0) / eps**2,
        n_loss_evals=n_evals,
        seed=seed,
        metadata=meta,
        **st,
    )


# --------------------------------------------------------------------------- reload


def load_run(path: str | os.PathLike) -> LineResult | PlaneResult | RayResult:
    """Read a stored line, plane or ray run back as its result (complete or not).

    Points not computed are NaN in the values and False in ``computed``.
    """
    group, record = open_run(path)
    kind = record["kind"]
    done = np.asarray(group["done"][...], dtype=bool)
    fields = record["identity"]["fields"]
    meta = {**record["metadata"], "store": os.fspath(path)}
    vals = {name: np.where(done, np.asarray(group[name][...]), np.nan) for name in fields}
    names = tuple(f for f in fields if f != "loss")
    if kind == "line":
        t = np.asarray(group["coords"][...])
        return LineResult(
            coords=t,
            losses=vals["loss"],
            computed=done,
            metric_names=names,
            metric_values=np.array([vals[m] for m in names]).reshape(len(names), t.size),
            metadata=meta,
        )
    if kind == "plane":
        a, b = np.asarray(group["alphas"][...]), np.asarray(group["betas"][...])
        shape = (b.size, a.size)
        return PlaneResult(
            alphas=a,
            betas=b,
            losses=vals["loss"].reshape(shape),
            computed=done.reshape(shape),
            metric_names=names,
            metric_values=np.array([vals[m].reshape(shape) for m in names]).reshape(
                len(names), *shape
            ),
            metadata=meta,
        )
    ident = record["identity"]
    eps, loss0 = float(ident["eps"]), float(record["metadata"]["loss0"])
    kappa = np.full(done.size, np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        kappa[done] = (vals["loss_plus"][done] - 2 * loss0 + vals["loss_minus"][done]) / eps**2
    confidence = float(record["metadata"].get("confidence", 0.95))
    dtype = np.dtype(record["metadata"]["objective"]["dtype"])
    return RayResult(
        kappa=kappa,
        losses_plus=vals["loss_plus"],
        losses_minus=vals["loss_minus"],
        computed=done,
        loss0=loss0,
        eps=eps,
        confidence=confidence,
        rounding_error=4 * float(np.finfo(dtype).eps) * abs(loss0) / eps**2,
        n_loss_evals=0,
        seed=ident["entropy"],
        metadata=meta,
        **_ray_stats(kappa[done], confidence),
    )
