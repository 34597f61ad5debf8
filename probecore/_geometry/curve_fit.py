"""Fitting a low-loss curve between two minima (Garipov et al. 2018).

Fitting uses only ``Objective.loss_and_grad`` at points of the curve and the chain rule
through the curve's coefficients: stochastic gradient on the free control points, with
``t`` drawn uniformly at every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from probecore._contract.collective import is_lead
from probecore._contract.objective import Objective, require_objective
from probecore._contract.progress import progress_bar
from probecore._contract.results import ResultBase, register
from probecore._contract.validation import (
    as_rng,
    check_float,
    check_int,
    check_option,
)
from probecore._geometry.curves import Curve, check_endpoint, coefficients

__all__ = ["CurveFit", "curve_loss_and_grad", "fit_curve", "minibatches"]

OPTIMIZERS = ("sgd", "adam")


# --------------------------------------------------------------------------- results


@register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class CurveFit(ResultBase):
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


# --------------------------------------------------------------------------- fit


def _loss_and_grad(objective, kind, ends, theta, t, dtype):
    """``L(φ(t))`` and its gradient with respect to the free control points.

    Chain rule: ``∂L(φ(t))/∂θ_k = c_k(t)·∇L(φ(t))``.
    """
    c = coefficients(kind, theta.shape[0], np.array([t]))[0]
    x = (c[0] * ends[0] + c[-1] * ends[1] + c[1:-1] @ theta).astype(dtype)
    value, g = objective.loss_and_grad(x)
    return float(value), c[1:-1, None] * np.asarray(g, dtype=np.float64)


def curve_loss_and_grad(objective: Objective, curve: Curve, t: float) -> tuple[float, np.ndarray]:
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
    require_objective(objective, "loss_and_grad", "losses_in_span")
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


def minibatches(objective: Objective, batch_size: int | None, gen: np.random.Generator) -> list:
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
    objective: Objective,
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
    >>> from probecore import evaluate_path
    >>> from probecore.analytic import Ring
    >>> a, b = np.array([1.0, 0.0]), np.array([-1.0, 0.0])
    >>> fit = fit_curve(Ring(), a, b, epochs=100, init=[[0.0, 0.1]], rng=0)
    >>> r = evaluate_path(Ring(), fit.curve, n_points=101)
    >>> fit.points[1].round(2).tolist(), round(r.barrier, 4), fit.n_grad_evals
    ([0.0, 2.12], 0.0497, 5000)
    """
    require_objective(objective, "loss_and_grad", "losses_in_span")
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
    a = check_endpoint("start", start, objective)
    b = check_endpoint("end", end, objective)
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
    batches = minibatches(objective, batch_size, gen)
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
    bar = progress_bar(epochs, 0, "fit_curve", progress and is_lead(objective), unit="epoch")
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
