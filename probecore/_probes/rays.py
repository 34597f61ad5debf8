"""Monte Carlo ray probing: curvature along random unit rays by central differences."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from probecore._contract.fingerprint import objective_fingerprint
from probecore._contract.objective import Objective
from probecore._contract.validation import (
    as_rng,
    check_float,
    check_int,
    check_points_budget,
)
from probecore._probes.engine import (
    RunState,
    check_executor,
    check_point,
    chunking,
    origin_loss,
    resolve,
    run_chunks,
    task_spec,
)
from probecore._probes.provenance import objective_record
from probecore._probes.results import RayResult

__all__ = ["default_ray_eps", "ray_directions", "ray_stats", "rays"]

# --------------------------------------------------------------------------- directions


def ray_directions(seed: int, indices: Any, dim: int) -> np.ndarray:
    """The unit directions of rays ``indices`` of a :func:`rays` run with ``rng=seed``.

    Ray ``i`` is drawn from its own stream, ``SeedSequence(seed, spawn_key=(i,))``, so it
    does not depend on chunking, executors or the order in which rays are evaluated.

    Parameters
    ----------
    seed : int
        The run's seed (``RayResult.seed``).
    indices : int or array-like of int
        Which rays.
    dim : int
        Length of each direction.

    Returns
    -------
    numpy.ndarray
        ``(len(indices), dim)`` float64 rows of unit norm.

    Examples
    --------
    >>> ray_directions(0, [0, 1], 5).shape
    (2, 5)
    """
    idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
    D = np.empty((idx.size, int(dim)))
    for row, i in enumerate(idx):
        D[row] = _ray_direction(seed, i, dim)
    return D


def _ray_direction(seed: int, index: int, dim: int) -> np.ndarray:
    """Direction of ray ``index``, ``(dim,)`` float64: row of :func:`ray_directions`.

    Drawn and normalised in place, bit for bit as ``ray_directions`` always has (the
    norm is ``np.linalg.norm`` over the row's axis of a ``(1, dim)`` array, as it was
    over each row of the whole block): at most two float64 vectors at a time, the
    direction and the squares inside ``np.linalg.norm``.
    """
    gen = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index),)))
    d = gen.standard_normal(int(dim))
    row = d[None]  # a view: the norm and the division see the (1, dim) block
    np.divide(row, np.linalg.norm(row, axis=1, keepdims=True), out=row)
    return d


def _ray_chunk(
    spec: Any, origin: np.ndarray, entropy: int, start: int, n: int, eps: float
) -> dict[str, np.ndarray]:
    """Losses at ``origin ± eps·d_i`` for rays ``start, ..., start + n - 1``.

    The chunk task of :func:`rays`: the directions are drawn here, in the worker, so a
    task carries a seed instead of ``n × dim`` numbers. One ray at a time: its direction
    is drawn, cast to the objective's dtype, evaluated at ``origin + eps·d`` and at
    ``origin - eps·d`` (one point per ``losses_in_span`` call, the route of ``L(x)``) and
    dropped before the next is drawn, so that memory is a few vectors of ``dim`` whatever
    ``n`` (see :func:`_ray_losses`).
    """
    obj = resolve(spec)
    plus = np.empty(n, dtype=np.float64)
    minus = np.empty(n, dtype=np.float64)
    for k in range(n):
        plus[k], minus[k] = _ray_losses(obj, origin, entropy, start + k, eps)
    return {"loss_plus": plus, "loss_minus": minus}


def _ray_losses(
    obj: Objective, origin: np.ndarray, entropy: int, index: int, eps: float
) -> tuple[float, float]:
    """``L(origin + eps·d)`` and ``L(origin - eps·d)`` for ray ``index``.

    Each point is one ``losses_in_span`` call with one coefficient, the route of ``L(x)``.
    The values are those of the batched call ``losses_in_span(origin, D, [eps·I; -eps·I])``
    that chunks made before: a coefficient row with one non-zero entry forms the point
    ``origin + (eps·d).astype(dtype)`` exactly, whatever the other rows. Backends that
    evaluate the points of a call together (JAX's vmap) can round the loss differently in
    the last bits for another number of points; one point per call is how they evaluate
    ``L(x)``.

    Memory beyond ``origin`` (the peak of a whole :func:`rays` run, whatever its chunk
    size): the float64 direction and its squares while drawing (2 float64 vectors); then
    the direction in the objective's dtype and what ``losses_in_span`` forms for one point.
    With the default :meth:`~probecore.AbstractObjective.losses_in_span` in float32 that is
    5 float32 vectors: the direction, and inside ``coeffs @ basis`` the basis cast to
    float64 and the float64 product (tests/test_rays_memory.py, docs/benchmarks.md).
    """
    basis = _ray_direction(entropy, index, origin.size).astype(origin.dtype, copy=False)[None]
    up = obj.losses_in_span(origin, basis, np.array([[eps]]))
    down = obj.losses_in_span(origin, basis, np.array([[-eps]]))
    return (
        float(np.asarray(up, dtype=np.float64)[0]),
        float(np.asarray(down, dtype=np.float64)[0]),
    )


# --------------------------------------------------------------------------- rays


def default_ray_eps(dtype: Any) -> float:
    """``eps_mach ** 0.25`` of ``dtype``: 1.2e-4 in float64, 1.9e-2 in float32.

    The central second difference has rounding error about ``4·δ/ε²`` (``δ`` the error of
    one loss value, ``≈ eps_mach·|L|``) and truncation error ``ε²·|L''''|/12``; they
    balance at ``ε ∝ eps_mach^{1/4}`` when the loss and its fourth derivative along a unit
    direction are of order one. See docs/landscape.md for ``κ`` against ``ε`` on a real
    model.

    Parameters
    ----------
    dtype : numpy dtype or str
        The objective's dtype.

    Returns
    -------
    float

    Examples
    --------
    >>> round(default_ray_eps("float32"), 4)
    0.0186
    """
    return float(np.finfo(np.dtype(dtype)).eps ** 0.25)


def ray_stats(kappa: np.ndarray, confidence: float) -> dict[str, Any]:
    """Summary of ray curvatures: mean, spread and the intervals of :class:`RayResult`.

    Parameters
    ----------
    kappa : numpy.ndarray
        Curvatures of the computed rays (non-finite ones are left out).
    confidence : float
        Level of the Student-t interval on the mean and the Wilson interval on the
        negative fraction.

    Returns
    -------
    dict
        ``n_finite``, ``mean``, ``std``, ``sem``, ``mean_ci``, ``negative_fraction``,
        ``negative_fraction_ci`` (NaN where too few rays).
    """
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
    objective: Objective,
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
        Source of the directions. Ray ``i`` is drawn from its own stream
        (``SeedSequence(seed, spawn_key=(i,))``), so a resumed or parallel run draws the
        same rays.
    chunk_size, executor, objective_factory, store, progress, metadata
        As for :func:`line`; a chunk is ``chunk_size`` rays (``2·chunk_size`` points),
        the unit of work, storage and resume. The directions are drawn by the worker that
        evaluates them, one ray at a time, and never stored (the seed reproduces them):
        memory is a few parameter vectors per worker whatever ``chunk_size``.

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
    origin = check_point(objective, x)
    n_rays = check_int("n_rays", n_rays, lo=1)
    # κ, L(x+εd), L(x−εd), their stored copies and the result's: about 7 floats per ray
    check_points_budget(
        f"`n_rays` = {n_rays}", n_rays, floats_per_point=7,
        advice="Draw fewer rays (the interval on the mean shrinks like 1/√n_rays).",
    )
    eps = default_ray_eps(origin.dtype) if eps is None else check_float("eps", eps, lo=0.0)
    if eps <= 0:
        raise ValueError(f"`eps` must be positive; got {eps}.")
    confidence = check_float("confidence", confidence, lo=0.0, hi=1.0)
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must lie strictly between 0 and 1; got {confidence}.")
    check_executor(executor, objective_factory)
    if store is not None and (isinstance(rng, bool) or not isinstance(rng, numbers.Integral)):
        raise TypeError(
            "`rng` must be an int seed when `store` is given, so that a rerun draws the same "
            f"rays and can resume; got {type(rng).__name__}."
        )
    gen, seed = as_rng(rng)
    entropy = int(seed) if isinstance(seed, int) else int(gen.integers(2**63))
    chunk_size, chunks = chunking(n_rays, chunk_size, objective)
    loss0 = origin_loss(objective, origin)  # the route of L(x ± εd): both round alike
    meta = {
        "objective": objective_record(objective),
        "entropy": entropy,
        "loss0": loss0,
        "confidence": confidence,
        "user": dict(metadata or {}),
    }
    state = RunState.start(
        store,
        kind="rays",
        n_points=n_rays,
        chunk_size=chunk_size,
        fields=["loss_plus", "loss_minus"],
        fixed={"origin": origin},
        identity={"eps": eps, "entropy": entropy},
        objective=None if store is None else objective_fingerprint(objective, loss0),
        metadata=meta,
    )
    if state.store is not None and state.store.resumed:  # stored losses go with stored L(x)
        loss0 = float(state.store.metadata["loss0"])
        meta["loss0"] = loss0
    try:
        n_evals = 1 + 2 * run_chunks(
            chunks,
            _ray_chunk,
            lambda i, s, e: (origin, entropy, s, e - s, eps),
            task_spec(objective, executor, objective_factory),
            state,
            executor=executor,
            progress=progress,
            desc="rays",
        )
    finally:
        state.close()
    values, done = state.values, state.done
    kappa = np.full(n_rays, np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        kappa[done] = (values["loss_plus"][done] - 2 * loss0 + values["loss_minus"][done]) / eps**2
    st = ray_stats(kappa[done], confidence)
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
