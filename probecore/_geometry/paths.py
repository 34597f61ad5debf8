"""Loss, metrics and barriers along a path between two minima (mode connectivity).

The points of a path are evaluated by the probe engine (:func:`evaluate_plan`): in
chunks, on an executor if given, into a resumable store if given, with a progress bar.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from probecore._contract.errors import caller_stacklevel
from probecore._contract.objective import Objective, require_objective
from probecore._contract.results import ResultBase, register
from probecore._contract.validation import check_int, check_points_budget
from probecore._geometry.curve_fit import CurveFit
from probecore._geometry.curves import Curve, check_endpoint, linear_curve
from probecore._probes.engine import (
    PointPlan,
    check_executor,
    evaluate_plan,
    metric_discovery_evals,
    metric_names,
)
from probecore._probes.results import GridBase
from probecore._probes.runs import StoredRun, register_reader

__all__ = ["PathResult", "evaluate_path"]


@register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class PathResult(GridBase):
    """Loss and metrics along a curve, with its barrier heights.

    Attributes
    ----------
    ts : numpy.ndarray
        The ``t`` values (increasing, ``0`` and ``1`` included).
    losses : numpy.ndarray
        ``L(φ(t))`` at each ``t`` (NaN where not computed).
    computed : numpy.ndarray
        Mask of the points computed: all True, except for an interrupted stored run read
        back with :func:`probecore.load_run`, whose barriers are then NaN.
    barrier : float
        ``max_t L(φ(t)) − max(L(start), L(end))``: how far the path rises above the higher
        endpoint (zero when it never does).
    barrier_mean : float
        ``max_t L(φ(t)) − (L(start) + L(end))/2``, the barrier height of Frankle et al.
        (2020) (who measure it on the error).
    barrier_interp : float
        ``max_t [L(φ(t)) − ((1 − t)·L(start) + t·L(end))]``, the loss barrier of Entezari
        et al. (2022): the largest excess over the linear interpolation of the endpoint
        losses.
    t_max : float
        Where the loss is largest.
    refined : bool
        Whether the maxima were refined between grid points (golden-section search in
        the two grid intervals around each grid maximum; ``refine`` evaluations each,
        counted in ``n_loss_evals``). False for a stored run read back, whose barriers
        are read off its grid.
    metric_names : tuple of str
    metric_values : numpy.ndarray
        ``(n_metrics, len(ts))``.
    metric_barriers : dict
        For each metric (higher is better, such as accuracy): ``min(m(start), m(end)) −
        min_t m(φ(t))``, the largest drop below the worse endpoint.
    kind : str
        The curve's kind.
    n_loss_evals, n_metric_evals : int
        Evaluations spent by this call (0 for points read back from a store; with a store,
        one more loss at the start, which identifies the objective to the store); metrics
        also count the one evaluation at the start that finds their names.
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("ts", "losses", "computed", "metric_values")

    ts: np.ndarray
    losses: np.ndarray
    barrier: float
    barrier_mean: float
    t_max: float
    barrier_interp: float = float("nan")
    refined: bool = False
    metric_names: tuple = ()
    metric_values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    metric_barriers: dict = field(default_factory=dict)
    kind: str = "line"
    n_loss_evals: int = 0
    n_metric_evals: int = 0
    computed: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric_names", tuple(self.metric_names))
        if self.computed is None:  # results saved before paths could be stored
            object.__setattr__(self, "computed", np.ones(np.shape(self.ts), dtype=bool))
        ResultBase.__post_init__(self)


def _path_result(
    ts: np.ndarray,
    losses: np.ndarray,
    computed: np.ndarray,
    names: tuple,
    values: np.ndarray,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
    **fields: Any,
) -> PathResult:
    """A PathResult with its barriers: NaN unless every point was computed.

    ``extra`` holds the ``(t, loss)`` of refinement points, which count for the maxima.
    """
    if not np.all(computed):
        nan = float("nan")
        return PathResult(
            ts=ts,
            losses=losses,
            computed=computed,
            barrier=nan,
            barrier_mean=nan,
            t_max=nan,
            metric_names=names,
            metric_values=values,
            metric_barriers={name: nan for name in names},
            **fields,
        )
    ends = losses[[0, -1]]
    at, vals = (
        (ts, losses)
        if extra is None
        else (
            np.concatenate([ts, extra[0]]),
            np.concatenate([losses, extra[1]]),
        )
    )
    # a non-finite loss on the path (overflow far from the minima) is an infinite barrier
    ranked = np.where(np.isfinite(vals), vals, np.inf)
    peak = float(ranked.max())
    excess = ranked - ((1.0 - at) * ends[0] + at * ends[1]) if np.isfinite(peak) else ranked
    barriers = {
        name: float(np.min(values[i, [0, -1]]) - np.min(values[i])) for i, name in enumerate(names)
    }
    return PathResult(
        ts=ts,
        losses=losses,
        computed=computed,
        # an infinite peak is an infinite barrier, even at an endpoint (not inf − inf = NaN)
        barrier=peak if np.isinf(peak) else float(peak - np.max(ends)),
        barrier_mean=peak if np.isinf(peak) else float(peak - np.mean(ends)),
        barrier_interp=peak if np.isinf(peak) else float(excess.max()),
        t_max=float(at[int(np.argmax(ranked))]),
        refined=extra is not None,
        metric_names=names,
        metric_values=values,
        metric_barriers=barriers,
        **fields,
    )


@register_reader("path")
def _path_from_store(run: StoredRun) -> PathResult:
    """A stored path run as a PathResult (barriers recomputed from the stored values)."""
    return _path_result(
        run.array("ts"),
        run.values["loss"],
        run.computed,
        run.metric_names,
        run.metric_values(),
        kind=run.identity["curve"],
        metadata=run.metadata,
    )


# --------------------------------------------------------------------------- evaluate


def _check_endpoint_losses(own: list, given: list, ends: np.ndarray, dtype: np.dtype) -> None:
    """Warn when an endpoint objective disagrees with ``objective`` at its own point.

    The usual cause is BatchNorm: an objective in running-statistics mode evaluates every
    point with the statistics of the model it was built from, so the other model's end
    (and everything between) is evaluated with the wrong statistics.
    """
    tol = 1e3 * float(np.finfo(dtype).eps)
    for i, e in enumerate(given):
        if e is None or not any(e is o for o in own):
            continue
        theirs = float(e.loss(e.x0))
        ours = float(ends[i])
        if abs(theirs - ours) > tol * max(1.0, abs(theirs)):
            which = "start" if i == 0 else "end"
            warnings.warn(
                f"evaluate_path: `objective` gives {ours:.6g} at the {which} point, where the "
                f"{which} model's own objective gives {theirs:.6g}. For models with "
                "BatchNorm, build the objective with batchnorm='recompute' (PyTorch: running "
                "statistics recomputed over the data at every point, as Garipov et al. do), "
                "or the barrier is measured with one model's statistics.",
                stacklevel=caller_stacklevel(),
            )


def _check_path_budget(what: str, n_points: int, n_coeffs: int, n_metrics: int) -> None:
    """Refuse a path whose arrays would not fit in memory (see ``check_points_budget``).

    Per point: ``ts``, the curve's ``n_coeffs`` coefficients, one float64 array per
    recorded field (the loss and ``n_metrics`` metrics), the result's copy of the
    metrics and the done mask.
    """
    n_fields = 1 + n_metrics
    check_points_budget(
        what,
        n_points,
        floats_per_point=1 + n_coeffs + n_fields + n_metrics,
        advice="Use fewer points, or evaluate the path in pieces, one call per slice of "
        "`ts` (0 and 1 are added to each).",
    )


_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def _refine_maxima(
    loss_at: Callable[[float], float], ts: np.ndarray, losses: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Golden-section refinement of the loss maximum and of the interpolation excess.

    For each of the two functions of ``t`` whose maxima define the barriers, ``L(φ(t))``
    and ``L(φ(t)) − ((1 − t)·L(0) + t·L(1))``, searches the two grid intervals around the
    grid maximum with ``n >= 2`` loss evaluations each (after the first two, each one
    shrinks the bracket by 0.618). A smooth peak between grid points is then located to
    about ``0.618**(n - 1)`` of two grid steps; the grid's own values stay among the
    candidates, so refinement never lowers a barrier.
    """
    ends = losses[[0, -1]]
    found_t: list[float] = []
    found_l: list[float] = []
    for shift in (False, True):

        def score(t: float, value: float, shift: bool = shift) -> float:
            return value - ((1.0 - t) * ends[0] + t * ends[1]) if shift else value

        grid = np.array([score(t, v) for t, v in zip(ts, losses, strict=True)])
        i = int(np.argmax(grid))
        lo, hi = float(ts[max(i - 1, 0)]), float(ts[min(i + 1, ts.size - 1)])

        def evaluate(t: float, score: Callable[[float, float], float] = score) -> float:
            value = loss_at(t)
            found_t.append(t)
            found_l.append(value)
            return score(t, value)

        c, d = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
        fc, fd = evaluate(c), evaluate(d)
        for _ in range(n - 2):
            if fc >= fd:  # the maximum lies in [lo, d]
                hi, d, fd = d, c, fc
                c = hi - _GOLDEN * (hi - lo)
                fc = evaluate(c)
            else:  # in [c, hi] (also when a value is NaN)
                lo, c, fc = c, d, fd
                d = lo + _GOLDEN * (hi - lo)
                fd = evaluate(d)
    return np.asarray(found_t, dtype=np.float64), np.asarray(found_l, dtype=np.float64)


def evaluate_path(
    objective: Objective,
    path: Any,
    end: Any = None,
    *,
    ts: Any = None,
    n_points: int = 31,
    refine: int = 8,
    metrics: Any = True,
    chunk_size: int | None = None,
    executor: Executor | None = None,
    objective_factory: Callable[[], Any] | None = None,
    store: str | os.PathLike | None = None,
    progress: bool | None = None,
    metadata: dict | None = None,
) -> PathResult:
    """Loss and metrics along a curve (or the straight segment between two points).

    Parameters
    ----------
    objective : Objective
        Evaluates the loss (and ``metrics``) at each point. For a model with BatchNorm,
        build it with ``batchnorm="recompute"`` (PyTorch backend; the default to use for
        paths): the running statistics are recomputed over the data at each ``t`` and the
        network evaluated in eval mode, as Garipov et al.'s ``update_bn`` does; the running
        statistics of either endpoint do not suit points between them.
        ``batchnorm="batch"`` (per-batch statistics, the training loss) is the option
        when that is the loss wanted; it depends on the batch size.
    path : Curve, or a start point (flat vector or Objective)
        The curve; or, with ``end``, the start of the straight segment.
    end : flat vector or Objective, optional
        End of the straight segment when ``path`` is a point.
    ts : array of floats in [0, 1], optional
        Where to evaluate (sorted; ``0`` and ``1`` are added when missing). Default:
        ``n_points`` equally spaced values.
    n_points : int
        Number of points when ``ts`` is not given (at least 2).
    refine : int
        Loss evaluations spent locating each barrier's maximum between grid points
        (golden-section search around the grid maximum; two searches: the loss and its
        excess over the interpolated endpoint losses). 0 reads the barriers off the grid;
        otherwise at least 2. Done in this process, after the grid, and not stored.
    metrics : bool, str or sequence of str
        Which of ``objective.metrics`` to record (True: all, False: none).
    chunk_size : int, optional
        Points per unit of work (default ``objective.chunk_size``, else 64): one
        ``losses_in_span`` call each (memory ``O(dim)`` with the default one).
    executor : concurrent.futures.Executor, optional
        Runs the chunks (a process pool, or ``dask.distributed.Client.get_executor()``);
        the objective is pickled to the workers, unless ``objective_factory`` is given.
    objective_factory : callable, optional
        With an executor: a picklable zero-argument callable that builds the objective;
        each worker calls it once and reuses the result.
    store : path, optional
        Zarr directory where each chunk is written as it finishes; rerunning with the same
        arguments and path resumes, computing only the missing chunks.
        :func:`probecore.load_run` reads it back as a PathResult.
    progress : bool, optional
        Progress bar on stderr (default: only when stderr is a terminal).
    metadata : dict, optional
        Recorded with the result (and in the store) under ``"user"``.

    Returns
    -------
    PathResult
        Losses, metrics, barrier heights and the number of evaluations this call spent
        (points read back from ``store`` cost none).

    Raises
    ------
    ValueError
        If the arrays for ``n_points`` (or ``ts``) would take more memory than the
        budget: ``PROBECORE_MAX_GRID_BYTES`` bytes if set, else half the physical memory.
        Refused before allocating them, naming the size.

    Examples
    --------
    >>> from probecore.analytic import Ring
    >>> ring = Ring()
    >>> r = evaluate_path(ring, np.array([1.0, 0.0]), np.array([-1.0, 0.0]), n_points=5)
    >>> r.losses.round(6).tolist(), r.barrier
    ([0.0, 0.5625, 1.0, 0.5625, 0.0], 1.0)
    """
    require_objective(objective, "loss_and_grad", "losses_in_span")
    if isinstance(path, CurveFit):
        path = path.curve
    own = [e for e in (path, end) if hasattr(e, "loss") and hasattr(e, "x0")]
    if isinstance(path, Curve):
        if end is not None:
            raise TypeError("`end` is only for a straight segment; `path` is already a Curve.")
        if path.dim != objective.dim:
            raise ValueError(f"`path` has dim {path.dim} but `objective` has dim {objective.dim}.")
        curve = path
        for name, p in (("start", curve.points[0]), ("end", curve.points[-1])):
            check_endpoint(f"path's {name}", p.astype(objective.dtype), objective)
    else:
        if end is None:
            raise TypeError("`end` is required when `path` is a point and not a Curve.")
        curve = linear_curve(
            check_endpoint("path", path, objective), check_endpoint("end", end, objective)
        )
    # the memory check comes before any array of n_points values, and before the metrics
    # cost an evaluation; it is repeated once the number of metrics is known
    refine = check_int("refine", refine, lo=0)
    if refine == 1:
        raise ValueError("`refine` must be 0 (no refinement) or at least 2; got 1.")
    n_coeffs = int(curve.points.shape[0])
    if ts is None:
        n_points = check_int("n_points", n_points, lo=2)
        what = "`n_points`"
        _check_path_budget(what, n_points, n_coeffs, 0)
        ts = np.linspace(0.0, 1.0, n_points)
    else:
        what = "`ts`"
        _check_path_budget(what, np.size(ts), n_coeffs, 0)
    ts = np.asarray(ts, dtype=np.float64)
    if ts.ndim != 1 or ts.size == 0 or not np.all(np.isfinite(ts)):
        raise ValueError(f"`ts` must be a non-empty 1-D array of finite values; got {ts!r}.")
    if ts.min() < 0.0 or ts.max() > 1.0:
        raise ValueError(f"`ts` must lie in [0, 1]; got values from {ts.min()} to {ts.max()}.")
    ts = np.unique(np.concatenate([[0.0, 1.0], ts]))
    check_executor(executor, objective_factory, objective)
    dtype = np.dtype(objective.dtype)
    P = curve.points.astype(dtype)
    names = metric_names(objective, metrics, P[0])
    _check_path_budget(what, ts.size, n_coeffs, len(names))
    # the coefficients sum to one, so φ(t) = P_0 + Σ_{k≥1} c_k(t)·(P_k − P_0)
    plan = PointPlan(
        kind="path",
        origin=P[0],
        basis=P[1:] - P[0],
        coeffs=curve.coefficients(ts)[:, 1:],
        fixed={"ts": ts},
        identity={"curve": curve.kind, "metrics": list(names)},
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
        metadata={
            "curve": {"kind": curve.kind, "n_bends": int(curve.points.shape[0] - 2)},
            "user": dict(metadata or {}),
        },
    )
    _check_endpoint_losses(own, [path, end], out.losses[[0, -1]], dtype)
    extra = None
    if refine and np.all(out.computed) and np.all(np.isfinite(out.losses)):

        def loss_at(t: float) -> float:
            coeffs = curve.coefficients(np.array([t]))[:, 1:]
            return float(objective.losses_in_span(plan.origin, plan.basis, coeffs)[0])

        extra = _refine_maxima(loss_at, ts, out.losses, refine)
    return _path_result(
        ts,
        out.losses,
        out.computed,
        names,
        out.metric_values(),
        extra=extra,
        kind=curve.kind,
        n_loss_evals=out.n_loss_evals + (0 if extra is None else extra[0].size),
        n_metric_evals=out.n_metric_evals + metric_discovery_evals(metrics),
        metadata=out.metadata,
    )
