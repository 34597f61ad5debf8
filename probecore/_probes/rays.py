"""Monte Carlo ray probing: curvature along random unit rays by central differences."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from probecore._contract.objective import Objective
from probecore._contract.validation import as_rng, check_float, check_int
from probecore._probes.engine import (
    RunState,
    check_executor,
    check_point,
    chunking,
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
        gen = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(i),)))
        D[row] = gen.standard_normal(int(dim))
    return D / np.linalg.norm(D, axis=1, keepdims=True)


def _ray_chunk(
    spec: Any, origin: np.ndarray, entropy: int, start: int, n: int, eps: float
) -> dict[str, np.ndarray]:
    """Losses at ``origin ± eps·d_i`` for rays ``start, ..., start + n - 1``.

    The chunk task of :func:`rays`: the directions are drawn here, in the worker, so a
    task carries a seed instead of ``n × dim`` numbers.
    """
    obj = resolve(spec)
    D = ray_directions(entropy, np.arange(start, start + n), origin.size)
    coeffs = np.concatenate([eps * np.eye(n), -eps * np.eye(n)])
    losses = np.asarray(
        obj.losses_in_span(origin, D.astype(origin.dtype), coeffs), dtype=np.float64
    )
    return {"loss_plus": losses[:n], "loss_minus": losses[n:]}


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
    origin = check_point(objective, x)
    n_rays = check_int("n_rays", n_rays, lo=1)
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
    # L(x) through the same route as L(x ± εd), so that both round alike
    zero = np.zeros((1, origin.size), dtype=origin.dtype)
    loss0 = float(objective.losses_in_span(origin, zero, np.zeros((1, 1)))[0])
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
        metadata=meta,
    )
    if state.store is not None and state.store.resumed:  # stored losses go with stored L(x)
        loss0 = float(state.store.metadata["loss0"])
        meta["loss0"] = loss0
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
