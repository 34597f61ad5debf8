"""Sharpness of a point: ε-sharpness (Keskar et al. 2017) and its scale-invariant variant.

The two Hessian measures of sharpness come from the spectrum and trace modules:
``lanczos(objective, k=1)`` gives λmax and ``hutchpp(objective)`` the trace, each with its
cost in HVPs. This module adds the loss-based measure of Keskar et al.: the largest loss
increase in a small box around the point, found with scipy's L-BFGS-B, and the adaptive
box of Kwon et al. (2021) that makes it invariant under rescalings of the parameters that
leave the network function unchanged.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.optimize

from probecore._contract.collective import is_lead
from probecore._contract.errors import caller_stacklevel
from probecore._contract.objective import Objective, require_objective
from probecore._contract.progress import progress_bar
from probecore._contract.results import ResultBase, register
from probecore._contract.validation import (
    as_rng,
    check_bool,
    check_dtype,
    check_float,
    check_int,
    check_vector,
)

__all__ = ["SharpnessResult", "epsilon_sharpness"]


@register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class SharpnessResult(ResultBase):
    """ε-sharpness of a point, with the perturbation that attains it and its cost.

    Attributes
    ----------
    value : float
        ``φ = (max_loss − loss0) / (1 + loss0)``, as a fraction (Keskar et al. report
        ``100·φ``, see :attr:`percent`). A lower bound on the true maximum over the box:
        it is the loss actually evaluated at ``x + perturbation``.
    max_loss : float
        The largest loss found in the box, ``L(x + perturbation)``.
    loss0 : float
        ``L(x)``.
    eps : float
        The box size ``ε``.
    adaptive : bool
        Whether the box is the scale-invariant one, ``|y_i| <= ε(|x_i| + η)``.
    eta : float
        The offset ``η`` of the half-widths ``ε(|x_i| + η)``: 1 for Keskar's box,
        the ``eta`` argument for the adaptive box.
    perturbation : numpy.ndarray
        The maximizing ``y`` (inside the box), in the objective's dtype.
    n_loss_evals : int
        Calls of ``objective.loss_and_grad`` (one at ``x``, the rest by the optimizer).
    n_iter : int
        L-BFGS-B iterations, summed over the starts.
    converged : bool
        Whether L-BFGS-B met its convergence test from the start that found the maximum.
    message : str
        L-BFGS-B's message for that start.
    n_starts : int
        Number of starts (the first deterministic, the others random in the box).
    seed : int or dict or None
        Seed (or generator state) of the random starts; None when ``n_starts == 1``.
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("perturbation",)

    value: float
    max_loss: float
    loss0: float
    eps: float
    adaptive: bool
    eta: float
    perturbation: np.ndarray
    n_loss_evals: int
    n_iter: int
    converged: bool
    message: str
    n_starts: int
    seed: Any = None
    metadata: dict = field(default_factory=dict)

    @property
    def percent(self) -> float:
        """``100·value``, the number Keskar et al. report."""
        return 100.0 * self.value


def _default_tols(dtype: np.dtype) -> tuple[float, float]:
    """``(gtol, ftol)`` relative to ``φ``: well above the rounding of the loss in ``dtype``."""
    return (1e-5, 1e-7) if dtype == np.float64 else (1e-4, 1e-5)


class _Ascent:
    """``u ↦ −φ(x + w⊙u)/φ_ref`` and its gradient for L-BFGS-B; counts calls, keeps the best.

    Dividing by ``φ_ref`` (the value at the first start) makes L-BFGS-B's tolerances
    relative to ``φ``. The last evaluation is cached, so that L-BFGS-B's first call at a
    point already evaluated costs nothing.
    """

    def __init__(
        self,
        objective: Objective,
        x: np.ndarray,
        w: np.ndarray,
        free: np.ndarray,
        loss0: float,
        progress: bool | None = False,
    ) -> None:
        lead = is_lead(objective)  # SPMD: rank 0 alone shows it
        self.bar = progress_bar(
            None, 1, "epsilon_sharpness", progress if lead else False, unit="eval"
        )
        self.objective = objective
        self.x = x
        self.w = w  # float64 half-widths of the free coordinates
        self.free = free
        self.loss0 = loss0
        self.scale = 1.0 + loss0
        self.ref = 1.0
        self.count = 0
        self.best_loss = loss0
        self.best_y = np.zeros_like(x)
        self._cache: tuple[np.ndarray, float, np.ndarray] | None = None

    def perturbation(self, u: np.ndarray) -> np.ndarray:
        y = np.zeros_like(self.x)
        # |w·u| <= w, and rounding to the dtype is monotone, so y stays inside the box.
        y[self.free] = self.w * np.clip(u, -1.0, 1.0)
        return y

    def phi(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        """``φ`` at ``x + w⊙u`` and its gradient with respect to ``u``."""
        if self._cache is not None and np.array_equal(self._cache[0], u):
            return self._cache[1], self._cache[2]
        y = self.perturbation(u)
        loss, g = self.objective.loss_and_grad(self.x + y)
        self.count += 1
        self.bar.update(1)
        loss = float(loss)
        g = np.asarray(g, dtype=np.float64)
        if not np.isfinite(loss) or not np.all(np.isfinite(g)):
            raise FloatingPointError(
                f"the loss or its gradient is not finite at x + y (loss {loss}, "
                f"max |y_i| {float(np.max(np.abs(y))):.3g}); the box is too large for this "
                "objective, reduce `eps`."
            )
        if loss > self.best_loss:
            self.best_loss, self.best_y = loss, y
        phi, dphi = (loss - self.loss0) / self.scale, self.w * g[self.free] / self.scale
        self._cache = (np.array(u, dtype=np.float64), phi, dphi)
        return phi, dphi

    def __call__(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        phi, dphi = self.phi(u)
        return -phi / self.ref, -dphi / self.ref


def epsilon_sharpness(
    objective: Objective,
    *,
    x: np.ndarray | None = None,
    eps: float = 1e-3,
    adaptive: bool = False,
    eta: float = 0.0,
    maxiter: int = 1000,
    n_starts: int = 1,
    gtol: float | None = None,
    ftol: float | None = None,
    rng: int | np.random.Generator | None = None,
    progress: bool | None = None,
) -> SharpnessResult:
    r"""ε-sharpness of ``objective`` at ``x`` (Keskar et al. 2017, Metric 2.1 with ``A = I``).

    .. math::

        \phi_{x,\varepsilon} = \frac{\max_{y \in C_\varepsilon} L(x + y) - L(x)}{1 + L(x)},
        \qquad C_\varepsilon = \{y : |y_i| \le \varepsilon(|x_i| + 1)\}.

    The maximum is sought with scipy's L-BFGS-B on ``−L``, in box coordinates
    ``u = y / w ∈ [−1, 1]^d`` (``w_i = ε(|x_i| + 1)`` the half-widths) and on the scale of
    ``φ``, divided by ``φ₁``, the value at the first start (1 if that is 0), so that
    ``gtol`` and ``ftol`` are tolerances relative to ``φ`` whatever the size of the box
    and of the loss. L-BFGS-B is a local method, so the value is a lower bound on the
    true maximum: the loss actually evaluated at ``x + perturbation``, the largest seen
    over all evaluations.

    Parameters
    ----------
    objective : Objective
        Supplies ``loss_and_grad`` (one call per function-and-gradient evaluation). The
        loss must satisfy ``1 + L(x) > 0`` (losses are assumed non-negative).
    x : numpy.ndarray, optional
        The point (default ``objective.x0``).
    eps : float
        Box size ``ε > 0``. Keskar et al. use ``1e-3`` and ``5e-4``.
    adaptive : bool
        Use the scale-invariant box ``|y_i| <= ε(|x_i| + η)`` (the normalization operator
        of ASAM, Kwon et al. 2021) instead of Keskar's ``ε(|x_i| + 1)``. With ``η = 0`` the
        value is unchanged by any rescaling ``x → Dx`` (``D`` diagonal, no zero entry) that leaves
        the loss unchanged, ``L(Dz) = L(z)`` for all ``z``, such as multiplying the incoming
        weights of a ReLU unit by ``α > 0`` and its outgoing weights by ``1/α``; Keskar's
        box is not invariant (its ``+1`` does not scale). Coordinates with zero width are
        held fixed.
    eta : float
        The offset ``η >= 0`` of the adaptive box (ASAM uses 0.01); ``η = 1`` reproduces
        Keskar's box. Only with ``adaptive=True``.
    maxiter : int
        Maximum L-BFGS-B iterations per start. The default (1000) lets the optimizer
        converge: on the digits MLPs of ``docs/sharpness.md`` every run stopped by its own
        test, after 25 to 584 iterations. Keskar et al. ran 10 iterations; pass
        ``maxiter=10`` to do the same (the result then usually reports
        ``converged=False``).
    n_starts : int
        Number of starts. The first is the box vertex along the sign of the gradient at
        ``x`` (``y_i = sign(g_i)·w_i``, with ``+w_i`` where ``g_i = 0``): it maximizes the
        first-order model ``L(x) + gᵀy`` over the box, and on a convex separable loss it
        is the exact maximizer. The centre ``y = 0`` would be a poor start: at a minimum
        its gradient vanishes and L-BFGS-B would stop there at once. Further starts are
        uniform in the box, drawn from ``rng``; the best over all starts is kept.
    gtol, ftol : float, optional
        L-BFGS-B's ``pgtol`` and ``factr·epsmch`` for ``−φ/φ₁``: it stops when the largest
        projected gradient ``|∂φ/∂u_i|`` is at most ``gtol·φ₁``, or when an iteration
        raises ``φ`` by at most ``ftol·max(|φ|, φ₁)``. Defaults ``gtol=1e-5, ftol=1e-7``
        in float64, ``1e-4, 1e-5`` in float32 (above the rounding of the loss).
    rng : int, numpy.random.Generator or None
        Source of the random starts (unused when ``n_starts == 1``).
    progress : bool or None
        A progress bar counting loss-and-gradient evaluations: True always, False never,
        None (default) only when stderr is a terminal.

    Returns
    -------
    SharpnessResult
        ``value`` (``φ``; ``percent`` is ``100·φ``), ``max_loss``, ``loss0``, the
        maximizing ``perturbation``, the number of ``loss_and_grad`` calls
        (``n_loss_evals``), L-BFGS-B's ``converged`` and ``message`` for the best start;
        ``metadata`` holds the settings used (``maxiter``, ``gtol``, ``ftol``), ``φ₁``
        (``phi_ref``), the number of free coordinates (``n_free``), and each start's
        value, ``converged``, message and iterations (``starts``; ``best_start`` indexes
        it).

    Raises
    ------
    TypeError, ValueError
        For invalid arguments, or ``1 + L(x) <= 0``.
    FloatingPointError
        If the loss or its gradient is not finite somewhere in the box.

    Notes
    -----
    The box and the evaluation points are in the objective's dtype (the perturbation is
    rounded towards the box, never out of it); ``φ`` and the optimizer run in float64.
    ``φ`` depends on ``ε``: about ``ε·Σ|g_i|(|x_i|+1)/(1+L)`` where the gradient
    dominates, about ``ε²`` times a curvature at a smooth minimum, so values are
    comparable only at the same ``ε``. For Keskar's box it also depends on the
    parameterization: rescaling a network into an equivalent one changes it, which the
    adaptive box removes. On piecewise-smooth losses (ReLU networks) L-BFGS-B needs many
    more iterations than on smooth ones, and ``maxiter=10`` can underestimate ``φ`` by
    nearly half (``docs/sharpness.md``).

    References
    ----------
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang, "On
    large-batch training for deep learning: generalization gap and sharp minima", ICLR
    2017; J. Kwon, J. Kim, H. Park and I. K. Choi, "ASAM: Adaptive sharpness-aware
    minimization for scale-invariant learning of deep neural networks", ICML 2021;
    R. H. Byrd, P. Lu, J. Nocedal and C. Zhu, "A limited memory algorithm for bound
    constrained optimization", SIAM J. Sci. Comput. 16(5), 1995.

    Examples
    --------
    On ``L(z) = z₁² + ½z₂² + 1`` at ``x = (1, −2)`` the maximum sits at the vertex along the
    gradient ``(2, −2)``: ``y = (0.2, −0.3)`` for ``ε = 0.1``.

    >>> from probecore.analytic import Quadratic
    >>> q = Quadratic(np.diag([2.0, 1.0]), c=1.0, x0=np.array([1.0, -2.0]))
    >>> r = epsilon_sharpness(q, eps=0.1)
    >>> r.perturbation, round(r.max_loss - r.loss0, 12), r.converged
    (array([ 0.2, -0.3]), 1.085, True)
    >>> round(r.value, 12) == round(1.085 / (1 + q.loss(q.x0)), 12)
    True
    """
    require_objective(objective, "x0", "loss_and_grad")
    dim = int(objective.dim)
    dtype = check_dtype("objective.dtype", objective.dtype)
    x = check_vector("x", objective.x0 if x is None else x, dim=dim, dtype=dtype)
    eps = check_float("eps", eps, lo=0.0, lo_open=True)
    adaptive = check_bool("adaptive", adaptive)
    eta = check_float("eta", eta, lo=0.0)
    if not adaptive and eta != 0.0:
        raise ValueError(
            f"`eta` applies only with adaptive=True (Keskar's box uses |x_i| + 1); got eta={eta}."
        )
    maxiter = check_int("maxiter", maxiter, lo=1)
    n_starts = check_int("n_starts", n_starts, lo=1)
    default_gtol, default_ftol = _default_tols(dtype)
    gtol = default_gtol if gtol is None else check_float("gtol", gtol, lo=0.0)
    ftol = default_ftol if ftol is None else check_float("ftol", ftol, lo=0.0)
    if n_starts > 1:
        gen, seed = as_rng(rng)
    else:
        if rng is not None:
            as_rng(rng)  # validate even when unused
        gen, seed = None, None
    offset = eta if adaptive else 1.0

    loss0, g0 = objective.loss_and_grad(x)
    loss0 = float(loss0)
    g0 = np.asarray(g0, dtype=np.float64)
    if not np.isfinite(loss0) or not np.all(np.isfinite(g0)):
        raise ValueError(f"the loss and its gradient must be finite at `x`; the loss is {loss0}.")
    if not 1.0 + loss0 > 0.0:
        raise ValueError(
            "ε-sharpness divides by 1 + L(x), so it needs L(x) > -1 (a non-negative loss); "
            f"got L(x) = {loss0}."
        )
    # Half-widths in the objective's dtype, then exactly in float64 for the optimizer.
    widths = (eps * (np.abs(x.astype(np.float64)) + offset)).astype(dtype).astype(np.float64)
    free = widths > 0
    # coordinates the box cannot move in this dtype (x ± w rounds back to x)
    x64 = x.astype(np.float64)
    frozen = free & ((x64 + widths).astype(dtype) == x) & ((x64 - widths).astype(dtype) == x)
    n_frozen = int(frozen.sum())
    if n_frozen:
        warnings.warn(
            f"ε-sharpness: for {n_frozen} of {int(free.sum())} coordinates the box "
            f"(eps={eps:g}) is below the rounding of x in {dtype}, so they cannot move and the "
            "value underestimates the sharpness; use a larger `eps` or a float64 objective.",
            stacklevel=caller_stacklevel(),
        )
    ascent = _Ascent(objective, x, widths[free], free, loss0, progress)
    ascent.count = 1  # the evaluation at x
    n_free = int(free.sum())

    starts = []
    if n_free:
        starts.append(np.where(g0[free] < 0, -1.0, 1.0))
        phi_first = ascent.phi(starts[0])[0]
        ascent.ref = abs(phi_first) if phi_first != 0.0 else 1.0
        for _ in range(n_starts - 1):
            assert gen is not None  # an rng is drawn whenever n_starts > 1
            starts.append(gen.uniform(-1.0, 1.0, n_free))
    per_start: list[dict[str, Any]] = []
    best_start, n_iter = -1, 0
    for i, u0 in enumerate(starts):
        before = ascent.best_loss
        res = scipy.optimize.minimize(
            ascent,
            u0,
            jac=True,
            method="L-BFGS-B",
            bounds=scipy.optimize.Bounds(-np.ones(n_free), np.ones(n_free)),
            options={"maxiter": maxiter, "gtol": gtol, "ftol": ftol},
        )
        n_iter += int(res.nit)
        per_start.append(
            {
                "value": float(-res.fun * ascent.ref),
                "converged": bool(res.success),
                "message": str(res.message),
                "n_iter": int(res.nit),
            }
        )
        if ascent.best_loss > before or best_start < 0:
            best_start = i
    if n_free:
        converged = per_start[best_start]["converged"]
        message = per_start[best_start]["message"]
    else:
        converged, message = True, "the box is a single point (every half-width is zero)"
    ascent.bar.close()
    value = (ascent.best_loss - loss0) / (1.0 + loss0)
    return SharpnessResult(
        value=float(value),
        max_loss=float(ascent.best_loss),
        loss0=loss0,
        eps=eps,
        adaptive=adaptive,
        eta=float(offset),
        perturbation=ascent.best_y,
        n_loss_evals=ascent.count,
        n_iter=n_iter,
        converged=bool(converged),
        message=message,
        n_starts=n_starts,
        seed=seed,
        metadata={
            "maxiter": maxiter,
            "gtol": gtol,
            "ftol": ftol,
            "n_free": n_free,
            "n_frozen": n_frozen,
            "phi_ref": ascent.ref,
            "best_start": best_start,
            "starts": per_start,
        },
    )
