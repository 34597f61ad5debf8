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
        ``max_t L(φ(t)) − max(L(start), L(end))`` (Garipov et al.'s definition).
    barrier_mean : float
        ``max_t L(φ(t)) − (L(start) + L(end))/2`` (Frankle et al. 2020).
    t_max : float
        Where the loss is largest.
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
    **fields: Any,
) -> PathResult:
    """A PathResult with its barriers: NaN unless every point was computed."""
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
    # a non-finite loss on the path (overflow far from the minima) is an infinite barrier
    ranked = np.where(np.isfinite(losses), losses, np.inf)
    peak = float(ranked.max())
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
        t_max=float(ts[int(np.argmax(ranked))]),
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
                "BatchNorm, build the objective with batchnorm='batch' (statistics recomputed "
                "at every point), or the barrier is measured with one model's statistics.",
                stacklevel=3,
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


def evaluate_path(
    objective: Objective,
    path: Any,
    end: Any = None,
    *,
    ts: Any = None,
    n_points: int = 31,
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
        build it with ``batchnorm="batch"`` (PyTorch backend) to recompute the
        normalization statistics from the data at each ``t``, as Garipov et al. do: the
        running statistics of either endpoint do not suit points between them.
    path : Curve, or a start point (flat vector or Objective)
        The curve; or, with ``end``, the start of the straight segment.
    end : flat vector or Objective, optional
        End of the straight segment when ``path`` is a point.
    ts : array of floats in [0, 1], optional
        Where to evaluate (sorted; ``0`` and ``1`` are added when missing). Default:
        ``n_points`` equally spaced values.
    n_points : int
        Number of points when ``ts`` is not given (at least 2).
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
    check_executor(executor, objective_factory)
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
    return _path_result(
        ts,
        out.losses,
        out.computed,
        names,
        out.metric_values(),
        kind=curve.kind,
        n_loss_evals=out.n_loss_evals,
        n_metric_evals=out.n_metric_evals + metric_discovery_evals(metrics),
        metadata=out.metadata,
    )
