"""Results of the landscape probes: lines, planes and rays (paths: ``_geometry.paths``)."""

from __future__ import annotations

import math
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
    random unit directions its mean is :math:`\operatorname{tr}(H)/\dim`. With
    ``curvature="hessian"`` (see ``curvature`` below) ``kappa`` is :math:`d_i^\top H d_i`
    itself, from one Hessian-vector product per ray.

    The fields from ``kappa_half`` to ``truncation_bias`` come from ``rays(check=True)``
    (the default for finite differences; see
    :func:`~probecore._probes.ray_checks.ray_errors` and docs/landscape.md, "Errors of
    κ"); they are None or NaN for ``check=False``, for ``curvature="hessian"`` and for a
    run read back by a :func:`~probecore.load_run` that does not pass them on.
    ``mean_total_ci`` and ``negative_fraction_total_ci`` come from the check or from
    ``curvature="hessian"``.

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
        Level of all four intervals.
    n_loss_evals : int
        Loss evaluations spent by this call (``4·n_rays + 2·n_center + 1`` for a checked
        run, ``2·n_rays + 1`` without the check, 1 with ``curvature="hessian"``; 1 when a
        resumed run finds every ray in its store, 0 from :func:`~probecore.load_run`).
    seed : int or dict
        Reproduces the directions (ray ``i`` is drawn from its own stream).

    kappa_half : numpy.ndarray or None
        :math:`\kappa` at step :math:`\varepsilon/2` (same centre :math:`L(x)`).
    kinked : numpy.ndarray or None
        Mask of the rays whose curvature changed between :math:`\varepsilon` and
        :math:`\varepsilon/2` by more than rounding and smooth truncation allow: a kink
        (a ReLU's activation pattern changing) within :math:`\pm\varepsilon`.
    n_kinked : int or None
        Their number (a ``RuntimeWarning`` names it when non-zero).
    n_center : int
        Rays that also carry a jitter pair (``min(n_rays, N_CENTER)`` computed).
    loss_noise : float
        Rounding noise (standard deviation) of one loss value, measured on the jitter
        pairs; at least :math:`\epsilon_{\rm mach}|L(x)|/2`.
    center_shift : float
        Estimated shift that the rounding of :math:`L(x)` gives every ``kappa`` alike;
        the total intervals remove it (``kappa`` and ``mean`` keep it).
    center_error : float
        Standard deviation of what is left of that shift after the correction.
    truncation_bias : float
        Richardson estimate of the bias of the mean from the finite step,
        :math:`\tfrac43\,\mathrm{mean}(\kappa(\varepsilon) - \kappa(\varepsilon/2))`,
        over the rays not kinked.
    mean_total_ci : numpy.ndarray or None
        Interval on :math:`\operatorname{tr}(H)/\dim` that accounts for the sampling
        error, the centre's rounding (corrected, ``center_error`` in quadrature) and the
        truncation bias (``|truncation_bias|`` on each side), over the rays not kinked.
        Conservative; ``mean_ci`` is the sampling error of ``mean`` alone.
    negative_fraction_total_ci : numpy.ndarray or None
        Wilson bounds on the negative share with the same allowances.
    curvature : str
        ``"difference"`` (the above) or ``"hessian"``: ``kappa`` is :math:`d_i^\top H d_i`
        from one Hessian-vector product per ray, exact up to rounding; ``eps`` is 0, the
        loss columns are NaN, ``rounding_error`` estimates the products' rounding as
        :math:`\sqrt{\dim}\,\epsilon_{\rm mach}\max|\kappa|`, and ``mean_total_ci`` is
        ``mean_ci`` widened by it.
    n_hvps : int
        Hessian-vector products spent by this call: with ``curvature="hessian"`` one per
        ray computed by it (``n_rays``; fewer when a resumed run finds rays in its store,
        0 from :func:`~probecore.load_run`), else 0.
    """

    _array_fields: ClassVar[tuple[str, ...]] = (
        "kappa",
        "losses_plus",
        "losses_minus",
        "computed",
        "mean_ci",
        "negative_fraction_ci",
        "kappa_half",
        "kinked",
        "mean_total_ci",
        "negative_fraction_total_ci",
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
    kappa_half: np.ndarray | None = None
    kinked: np.ndarray | None = None
    n_kinked: int | None = None
    n_center: int = 0
    loss_noise: float = math.nan
    center_shift: float = math.nan
    center_error: float = math.nan
    truncation_bias: float = math.nan
    mean_total_ci: np.ndarray | None = None
    negative_fraction_total_ci: np.ndarray | None = None
    curvature: str = "difference"
    n_hvps: int = 0

    @property
    def complete(self) -> bool:
        """Whether every ray was computed."""
        return bool(np.all(self.computed))
