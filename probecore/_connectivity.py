"""Mode connectivity: curves between two parameter vectors, fitted and evaluated.

A curve is a pure function of flat vectors (Garipov et al. 2018): its points are fixed
linear combinations of control points ``P_0 = start, P_1 … P_n, P_{n+1} = end``, with
coefficients that depend only on ``t`` (Bernstein polynomials for a Bezier curve, hat
functions for a polygonal chain). Nothing depends on the architecture: fitting uses only
``Objective.loss_and_grad`` at points of the curve and the chain rule through the
coefficients, so any backend's models connect the same way.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from probecore._landscape import _metric_names, _progress_bar, _WithMetrics
from probecore._results import _register, _ResultBase
from probecore._validation import as_rng, check_float, check_int, check_option, check_vector

__all__ = [
    "Curve",
    "CurveFit",
    "PathResult",
    "curve_loss_and_grad",
    "evaluate_path",
    "fit_curve",
    "linear_curve",
]

KINDS = ("line", "chain", "bezier")
OPTIMIZERS = ("sgd", "adam")


# --------------------------------------------------------------------------- curves


def _coefficients(kind: str, n_bends: int, t: np.ndarray) -> np.ndarray:
    """``(len(t), n_bends + 2)`` coefficients of the control points at each ``t``."""
    t = np.asarray(t, dtype=np.float64)
    n = n_bends + 1  # number of segments (chain) or polynomial order (Bezier)
    if kind == "line":
        return np.stack([1.0 - t, t], axis=1)
    if kind == "bezier":
        k = np.arange(n + 1)
        binom = np.array([math.comb(n, int(i)) for i in k], dtype=np.float64)
        return binom * t[:, None] ** k * (1.0 - t[:, None]) ** (n - k)
    # polygonal chain: knots at i/n, piecewise-linear hat functions
    s = np.clip(t, 0.0, 1.0) * n
    seg = np.minimum(np.floor(s).astype(int), n - 1)
    frac = s - seg
    C = np.zeros((t.size, n + 1))
    rows = np.arange(t.size)
    C[rows, seg] = 1.0 - frac
    C[rows, seg + 1] += frac
    return C


@_register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Curve(_ResultBase):
    """A curve ``φ(t) = Σ_k c_k(t)·P_k``, ``t ∈ [0, 1]``, between two fixed endpoints.

    Attributes
    ----------
    kind : {"line", "chain", "bezier"}
        ``"line"``: the straight segment. ``"chain"``: a polygonal chain through the
        bends at ``t = k/(n+1)``. ``"bezier"``: a Bezier curve of order ``n + 1`` (one
        bend: quadratic).
    points : numpy.ndarray
        ``(n_bends + 2, dim)`` control points; the first and last are the endpoints.

    Examples
    --------
    >>> c = Curve(kind="bezier", points=np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 0.0]]))
    >>> c.point(0.5).tolist()
    [1.0, 1.0]
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("points",)

    kind: str
    points: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_option("kind", self.kind, KINDS)
        _ResultBase.__post_init__(self)
        if self.points.ndim != 2 or self.points.shape[0] < 2:
            raise ValueError(
                f"`points` must have shape (n_bends + 2, dim); got {self.points.shape}."
            )
        if not np.issubdtype(self.points.dtype, np.floating) or not np.all(
            np.isfinite(self.points)
        ):
            raise ValueError("`points` must be finite floats (a control point holds NaN or inf).")
        if self.kind == "line" and self.points.shape[0] != 2:
            raise ValueError("a 'line' curve has exactly two points (its endpoints).")

    @property
    def n_bends(self) -> int:
        """Number of free control points."""
        return self.points.shape[0] - 2

    @property
    def dim(self) -> int:
        """Length of the parameter vectors."""
        return self.points.shape[1]

    def coefficients(self, t: Any) -> np.ndarray:
        """``(len(t), n_bends + 2)`` weights of the control points at each ``t``."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        if t.ndim != 1 or not np.all(np.isfinite(t)) or t.min() < 0.0 or t.max() > 1.0:
            raise ValueError("`t` must be finite values in [0, 1].")
        return _coefficients(self.kind, self.n_bends, t)

    def point(self, t: float) -> np.ndarray:
        """``φ(t)`` in the dtype of the control points (one ``t``)."""
        if np.ndim(t) != 0:
            raise TypeError(
                "`t` must be one number for `point`; for many, use `coefficients(ts) @ points`."
            )
        c = self.coefficients([t])[0]
        return (c @ self.points.astype(np.float64)).astype(self.points.dtype)


def linear_curve(start: Any, end: Any) -> Curve:
    """The straight segment from ``start`` to ``end`` as a :class:`Curve`."""
    a = np.asarray(start)
    b = check_vector("end", end, dim=a.size, dtype=a.dtype)
    return Curve(kind="line", points=np.stack([a, b]))


# --------------------------------------------------------------------------- results


@_register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class CurveFit(_ResultBase):
    """A curve fitted to minimize ``E_{t~U(0,1)} L(φ(t))``, with its training history.

    Attributes
    ----------
    kind : str
        ``"bezier"`` or ``"chain"``.
    points : numpy.ndarray
        Control points of the fitted curve, endpoints (unchanged) first and last; the
        curve itself is :attr:`curve`.
    history_t, history_loss : numpy.ndarray
        The ``t`` drawn at each step and the mini-batch loss ``L(φ(t))`` (before that
        step's update).
    epochs : int
        Passes over the data (or ``steps_per_epoch`` steps for objectives without data).
    n_grad_evals : int
        ``loss_and_grad`` calls.
    n_examples_seen : int
        Examples whose gradients were computed (the sum of the mini-batch sizes; 0 for
        objectives without data).
    optimizer, lr, momentum, weight_decay, schedule : as given
    batch_size : int or None
        The mini-batch size used (None for full-batch steps).
    steps_per_epoch : int
        Steps per epoch.
    seed : int or dict or None
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("points", "history_t", "history_loss")

    kind: str
    points: np.ndarray
    history_t: np.ndarray
    history_loss: np.ndarray
    epochs: int
    n_grad_evals: int
    n_examples_seen: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int | None
    schedule: str = "garipov"
    steps_per_epoch: int = 0
    seed: Any = None
    metadata: dict = field(default_factory=dict)

    @property
    def curve(self) -> Curve:
        """The fitted :class:`Curve`."""
        return Curve(kind=self.kind, points=self.points)


@_register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class PathResult(_WithMetrics):
    """Loss and metrics along a curve, with its barrier heights.

    Attributes
    ----------
    ts : numpy.ndarray
        The ``t`` values (increasing, ``0`` and ``1`` included).
    losses : numpy.ndarray
        ``L(φ(t))`` at each ``t``.
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
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("ts", "losses", "metric_values")

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
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric_names", tuple(self.metric_names))
        _ResultBase.__post_init__(self)


# --------------------------------------------------------------------------- checks


def _check_objective(objective: Any) -> None:
    for member in ("loss_and_grad", "losses_in_span", "dim", "dtype"):
        if not hasattr(objective, member):
            raise TypeError(
                f"`objective` must be a probecore Objective (it has no {member!r}); got "
                f"{type(objective).__name__}."
            )


def _endpoint(name: str, value: Any, objective: Any) -> np.ndarray:
    """A flat endpoint that matches ``objective``: same layout, size and dtype.

    ``value`` is a flat vector or another Objective (its ``x0``, after its layout is
    compared block by block with the objective's).
    """
    dtype = np.dtype(objective.dtype)
    layout = getattr(objective, "layout", None)
    if hasattr(value, "x0") and hasattr(value, "dim"):  # another model's objective
        other = getattr(value, "layout", None)
        if layout is not None and other is not None:
            for i, (a, b) in enumerate(zip(layout, other, strict=False)):
                if (a.name, a.shape) != (b.name, b.shape):
                    raise ValueError(
                        f"`{name}` does not match `objective`: block {i} is {b.name!r} with "
                        f"shape {b.shape} in `{name}` but {a.name!r} with shape {a.shape} in "
                        "`objective`."
                    )
            if len(layout) != len(other):
                extra = (layout if len(layout) > len(other) else other)[
                    min(len(layout), len(other))
                ]
                raise ValueError(
                    f"`{name}` does not match `objective`: block {extra.name!r} is in one "
                    f"and not the other ({len(other)} against {len(layout)} blocks)."
                )
        if np.dtype(value.dtype) != dtype:
            raise ValueError(
                f"`{name}` is {np.dtype(value.dtype)} but `objective` is {dtype}; build both "
                "in the same dtype."
            )
        value = value.x0
    arr = np.asarray(value)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.floating):
        hint = ""
        if hasattr(value, "parameters") or hasattr(value, "apply"):
            hint = " (for a model, pass `probecore.objective(model, loss_fn, data)`)"
        raise TypeError(
            f"`{name}` must be a flat float vector or an Objective{hint}; got "
            f"{type(value).__name__} with shape {getattr(arr, 'shape', None)}."
        )
    if arr.size != objective.dim:
        where = ""
        if layout is not None:
            short = min(arr.size, objective.dim)
            block = next((b for b in layout if b.offset + b.size > short), None)
            if block is not None:
                where = f"; the first block it does not fill is {block.name!r}"
        raise ValueError(
            f"`{name}` has {arr.size} entries but `objective` has dim {objective.dim}{where}."
        )
    if arr.dtype != dtype:
        raise ValueError(
            f"`{name}` is {arr.dtype} but `objective` is {dtype}; convert it first "
            f"(`{name}.astype(np.{dtype})`) or build the objective in {arr.dtype}."
        )
    return check_vector(name, arr, dim=objective.dim, dtype=dtype)


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


def evaluate_path(
    objective: Any,
    path: Any,
    end: Any = None,
    *,
    ts: Any = None,
    n_points: int = 31,
    metrics: Any = True,
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

    Returns
    -------
    PathResult
        Losses, metrics, barrier heights and the number of evaluations.

    Examples
    --------
    >>> from probecore.analytic import Ring
    >>> ring = Ring()
    >>> r = evaluate_path(ring, np.array([1.0, 0.0]), np.array([-1.0, 0.0]), n_points=5)
    >>> r.losses.round(6).tolist(), r.barrier
    ([0.0, 0.5625, 1.0, 0.5625, 0.0], 1.0)
    """
    _check_objective(objective)
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
            _endpoint(f"path's {name}", p.astype(objective.dtype), objective)
    else:
        if end is None:
            raise TypeError("`end` is required when `path` is a point and not a Curve.")
        curve = linear_curve(_endpoint("path", path, objective), _endpoint("end", end, objective))
    if ts is None:
        ts = np.linspace(0.0, 1.0, check_int("n_points", n_points, lo=2))
    ts = np.asarray(ts, dtype=np.float64)
    if ts.ndim != 1 or ts.size == 0 or not np.all(np.isfinite(ts)):
        raise ValueError(f"`ts` must be a non-empty 1-D array of finite values; got {ts!r}.")
    if ts.min() < 0.0 or ts.max() > 1.0:
        raise ValueError(f"`ts` must lie in [0, 1]; got values from {ts.min()} to {ts.max()}.")
    ts = np.unique(np.concatenate([[0.0, 1.0], ts]))
    dtype = np.dtype(objective.dtype)
    P = curve.points.astype(dtype)
    C = curve.coefficients(ts)
    # the coefficients sum to one, so φ(t) = P_0 + Σ_{k≥1} c_k(t)·(P_k − P_0)
    losses = np.asarray(
        objective.losses_in_span(P[0], (P[1:] - P[0]).astype(dtype), C[:, 1:]), dtype=np.float64
    )
    names = _metric_names(objective, metrics, P[0])
    values = np.full((len(names), ts.size), np.nan)
    if names:
        P64 = curve.points.astype(np.float64)
        for j, c in enumerate(C):
            m = objective.metrics((c @ P64).astype(dtype))
            for i, name in enumerate(names):
                values[i, j] = m.get(name, np.nan)
    ends = losses[[0, -1]]
    _check_endpoint_losses(own, [path, end], ends, dtype)
    # a non-finite loss on the path (overflow far from the minima) is an infinite barrier
    ranked = np.where(np.isfinite(losses), losses, np.inf)
    peak = float(ranked.max())
    barriers = {
        name: float(np.min(values[i, [0, -1]]) - np.min(values[i])) for i, name in enumerate(names)
    }
    return PathResult(
        ts=ts,
        losses=losses,
        barrier=float(peak - np.max(ends)),
        barrier_mean=float(peak - np.mean(ends)),
        t_max=float(ts[int(np.argmax(ranked))]),
        metric_names=names,
        metric_values=values,
        metric_barriers=barriers,
        kind=curve.kind,
        n_loss_evals=int(ts.size),
        n_metric_evals=int(ts.size) if names else 0,
    )


# --------------------------------------------------------------------------- fit


def _loss_and_grad(objective, kind, ends, theta, t, dtype):
    """``L(φ(t))`` and its gradient with respect to the free control points.

    Chain rule: ``∂L(φ(t))/∂θ_k = c_k(t)·∇L(φ(t))``.
    """
    c = _coefficients(kind, theta.shape[0], np.array([t]))[0]
    x = (c[0] * ends[0] + c[-1] * ends[1] + c[1:-1] @ theta).astype(dtype)
    value, g = objective.loss_and_grad(x)
    return float(value), c[1:-1, None] * np.asarray(g, dtype=np.float64)


def curve_loss_and_grad(objective: Any, curve: Curve, t: float) -> tuple[float, np.ndarray]:
    """The loss at ``φ(t)`` and its gradient with respect to the free control points.

    The gradient has shape ``(n_bends, dim)``; it is what :func:`fit_curve` follows, one
    ``t`` at a time.

    Examples
    --------
    >>> from probecore.analytic import Ring
    >>> c = Curve(kind="bezier", points=np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]]))
    >>> value, g = curve_loss_and_grad(Ring(), c, 0.5)
    >>> value, g.tolist()
    (0.0, [[0.0, 0.0]])
    """
    _check_objective(objective)
    if not isinstance(curve, Curve) or curve.kind == "line":
        raise TypeError("`curve` must be a 'bezier' or 'chain' Curve (a line has no free points).")
    t = check_float("t", t, lo=0.0, hi=1.0)
    P = curve.points.astype(np.float64)
    return _loss_and_grad(objective, curve.kind, P[[0, -1]], P[1:-1], t, np.dtype(objective.dtype))


def _schedule_factor(schedule: str, frac: float) -> float:
    """Step-size factor at fraction ``frac`` of the run (Garipov et al.'s schedule)."""
    if schedule == "constant" or frac <= 0.5:
        return 1.0
    if frac <= 0.9:
        return 1.0 - 0.99 * (frac - 0.5) / 0.4
    return 0.01


def _batches(objective: Any, batch_size: int | None, gen: np.random.Generator) -> list:
    """Objectives on a fixed random partition of the data (built once), or the objective."""
    n = getattr(objective, "n_examples", None)
    if batch_size is None or n is None or batch_size >= n:
        return [objective]
    perm = gen.permutation(n)
    try:
        return [
            objective.subset(np.sort(perm[i : i + batch_size])) for i in range(0, n, batch_size)
        ]
    except (TypeError, NotImplementedError, AttributeError) as exc:
        raise TypeError(
            f"fit_curve's mini-batches (batch_size={batch_size}) need `objective.subset`, "
            f"which {type(objective).__name__} does not provide ({exc}); pass batch_size=None "
            "for full-batch steps, or implement `subset(indices)`."
        ) from exc


def fit_curve(
    objective: Any,
    start: Any,
    end: Any,
    *,
    kind: str = "bezier",
    n_bends: int = 1,
    epochs: int = 20,
    batch_size: int | None = 128,
    steps_per_epoch: int = 50,
    optimizer: str = "adam",
    lr: float = 1e-2,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "garipov",
    init: Any = "midpoint",
    rng: int | np.random.Generator | None = None,
    progress: bool | None = None,
) -> CurveFit:
    r"""Fit a curve between two minima that keeps the loss low all along it.

    Minimizes :math:`\mathbb{E}_{t\sim U(0,1)} L(\varphi_\theta(t))` over the free
    control points :math:`\theta` (Garipov et al. 2018) by stochastic gradient: each step
    draws one ``t`` (stratified: over an epoch of ``m`` steps, one draw in each interval
    ``[i/m, (i+1)/m)``, in random order), evaluates ``objective.loss_and_grad`` (on a mini-batch) at
    :math:`\varphi_\theta(t)` and moves control point ``k`` along
    :math:`c_k(t)\,\nabla L(\varphi_\theta(t))` (the chain rule through the curve's
    coefficients). The endpoints stay fixed.

    Parameters
    ----------
    objective : Objective
        The loss. Mini-batches are objectives on subsets of its data
        (``objective.subset``), made once from a random partition of size ``batch_size``
        and visited in a new random order every epoch.
    start, end : flat vector or Objective
        The endpoints (for two trained models, their objectives or their ``x0``). They
        must match ``objective``: the same blocks, size and dtype (the first differing
        block is named otherwise).
    kind : {"bezier", "chain"}
        Bezier curve of order ``n_bends + 1`` (quadratic by default) or polygonal chain
        with ``n_bends`` bends.
    n_bends : int
        Number of free control points (at least 1).
    epochs : int
        Passes over the data.
    batch_size : int or None
        Examples per step. None (or at least the data size), and objectives without data
        (analytic ones), take ``steps_per_epoch`` full-batch steps per epoch.
    steps_per_epoch : int
        Steps per epoch of full-batch fits.
    optimizer : {"adam", "sgd"}
        Adam, or SGD with (heavy-ball) ``momentum``.
    lr : float
        Step size.
    momentum : float
        Momentum of SGD, in [0, 1).
    weight_decay : float
        L2 penalty ``weight_decay/2 · Σ_k ‖θ_k‖²`` on the free control points.
    schedule : {"garipov", "constant"}
        Step size over the run. ``"garipov"`` (Garipov et al.'s schedule): ``lr`` for the
        first half, then falling linearly to ``lr/100`` at 90% of the steps, and
        ``lr/100`` to the end; the small final steps let the control points settle where
        the expected loss is lowest instead of wandering with the noise of the drawn
        ``t``. ``"constant"``: ``lr`` throughout.
    init : "midpoint" or array
        ``"midpoint"``: the bends start on the straight segment (for one bend, at its
        midpoint, as in the seed); or an ``(n_bends, dim)`` array. On a loss symmetric
        about the segment (such as :class:`probecore.analytic.Ring`) the segment is a
        stationary set of the fit: start off it.
    rng : int, numpy.random.Generator or None
        Draws ``t``, the partition and the batch order.
    progress : bool or None
        Progress bar (None: only on a terminal).

    Returns
    -------
    CurveFit
        The curve, the per-step ``t`` and loss, and the number of gradient evaluations.

    References
    ----------
    T. Garipov, P. Izmailov, D. Podoprikhin, D. Vetrov and A. G. Wilson, "Loss surfaces,
    mode connectivity, and fast ensembling of DNNs", NeurIPS 2018.

    Examples
    --------
    >>> from probecore.analytic import Ring
    >>> a, b = np.array([1.0, 0.0]), np.array([-1.0, 0.0])
    >>> fit = fit_curve(Ring(), a, b, epochs=100, init=[[0.0, 0.1]], rng=0)
    >>> r = evaluate_path(Ring(), fit.curve, n_points=101)
    >>> fit.points[1].round(2).tolist(), round(r.barrier, 4), fit.n_grad_evals
    ([0.0, 2.12], 0.0497, 5000)
    """
    _check_objective(objective)
    kind = check_option("kind", kind, ("bezier", "chain"))
    n_bends = check_int("n_bends", n_bends, lo=1)
    epochs = check_int("epochs", epochs, lo=1)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, lo=1)
    steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, lo=1)
    optimizer = check_option("optimizer", optimizer, OPTIMIZERS)
    schedule = check_option("schedule", schedule, ("garipov", "constant"))
    lr = check_float("lr", lr, lo=0.0, lo_open=True)
    momentum = check_float("momentum", momentum, lo=0.0, hi=1.0)
    if momentum == 1.0:
        raise ValueError("`momentum` must be < 1; got 1.0.")
    weight_decay = check_float("weight_decay", weight_decay, lo=0.0)
    dtype = np.dtype(objective.dtype)
    a = _endpoint("start", start, objective)
    b = _endpoint("end", end, objective)
    gen, seed = as_rng(rng)
    if isinstance(init, str):
        check_option("init", init, ("midpoint",))
        s = np.arange(1, n_bends + 1) / (n_bends + 1)
        theta = (1.0 - s)[:, None] * a.astype(np.float64) + s[:, None] * b.astype(np.float64)
    else:
        theta = np.asarray(init, dtype=np.float64)
        if theta.shape != (n_bends, objective.dim) or not np.all(np.isfinite(theta)):
            raise ValueError(
                f"`init` must be 'midpoint' or a finite array of shape ({n_bends}, "
                f"{objective.dim}); got shape {theta.shape}."
            )
        theta = theta.copy()
    batches = _batches(objective, batch_size, gen)
    data_free = getattr(objective, "n_examples", None) is None
    full_batch = data_free or len(batches) == 1
    per_epoch = steps_per_epoch if full_batch else len(batches)
    total = epochs * per_epoch
    sizes = [getattr(o, "n_examples", None) or 0 for o in batches]
    ends = np.stack([a, b]).astype(np.float64)
    m1 = np.zeros_like(theta)
    m2 = np.zeros_like(theta)
    beta1, beta2, adam_eps = 0.9, 0.999, 1e-8
    hist_t, hist_loss = [], []
    seen = 0
    step = 0
    bar = _progress_bar(epochs, 0, "fit_curve", progress)
    try:
        for _ in range(epochs):
            order = gen.permutation(len(batches)) if not full_batch else [0] * per_epoch
            # stratified t: one draw in each of per_epoch equal bins, in random order;
            # unbiased like i.i.d. uniform draws, with far less noise over an epoch
            strata = (gen.permutation(per_epoch) + gen.uniform(size=per_epoch)) / per_epoch
            for j, i in enumerate(order):
                t = float(strata[j])
                batch = batches[int(i)]
                value, G = _loss_and_grad(batch, kind, ends, theta, t, dtype)
                if not (np.isfinite(value) and np.all(np.isfinite(G))):
                    raise FloatingPointError(
                        f"the loss or its gradient is not finite at t={t:.4f} after {step} "
                        f"steps (loss {value}); lower `lr` (now {lr:g})."
                    )
                G += weight_decay * theta
                rate = lr * _schedule_factor(schedule, step / total)
                step += 1
                if optimizer == "sgd":
                    m1 = momentum * m1 + G
                    theta -= rate * m1
                else:
                    m1 = beta1 * m1 + (1.0 - beta1) * G
                    m2 = beta2 * m2 + (1.0 - beta2) * G * G
                    mh = m1 / (1.0 - beta1**step)
                    vh = m2 / (1.0 - beta2**step)
                    theta -= rate * mh / (np.sqrt(vh) + adam_eps)
                hist_t.append(t)
                hist_loss.append(float(value))
                seen += sizes[int(i)]
            bar.update(1)
    finally:
        bar.close()
    points = np.concatenate([ends[:1], theta, ends[1:]]).astype(dtype)
    return CurveFit(
        kind=kind,
        points=points,
        history_t=np.asarray(hist_t),
        history_loss=np.asarray(hist_loss),
        epochs=epochs,
        n_grad_evals=step,
        n_examples_seen=seen,
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        batch_size=None if full_batch else batch_size,
        schedule=schedule,
        steps_per_epoch=per_epoch,
        seed=seed,
        metadata={"init": init if isinstance(init, str) else "array"},
    )
