"""Results of the landscape probes: lines, planes and rays (paths: ``_geometry.paths``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from probecore._contract.results import ResultBase, register

__all__ = ["GridBase", "LineResult", "PlaneResult", "RayResult", "WithMetrics"]

# --------------------------------------------------------------------------- results


class WithMetrics(ResultBase):
    """Results with ``metric_names`` and matching rows of ``metric_values``."""

    __slots__ = ()
    if TYPE_CHECKING:  # fields of the dataclasses below
        metric_names: tuple
        metric_values: Any

    def metric(self, name: str) -> np.ndarray:
        """Values of one metric (NaN where not computed)."""
        names = list(self.metric_names)
        if name not in names:
            raise KeyError(f"no metric {name!r}; this result has {names}.")
        return self.metric_values[names.index(name)]


class GridBase(WithMetrics):
    """Results on a fixed set of points, with a ``computed`` mask (lines, planes, paths)."""

    __slots__ = ()
    if TYPE_CHECKING:
        computed: Any

    @property
    def complete(self) -> bool:
        """Whether every point was computed."""
        return bool(np.all(self.computed))


@register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class LineResult(GridBase):
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
        Loss evaluations spent by this call (0 for points read back from a store; with a
        store, one more at the origin, which identifies the objective to the store).
    n_metric_evals : int
        Metric evaluations spent by this call: one per evaluated point, plus the one at the
        origin that finds the metrics' names (whenever ``metrics`` is asked for).
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


@register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class PlaneResult(GridBase):
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
        Metric evaluations spent by this call: one per evaluated point, plus the one at the
        origin that finds the metrics' names (whenever ``metrics`` is asked for).
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


@register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RayResult(ResultBase):
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
        Reproduces the directions (ray ``i`` is drawn from its own stream).
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
