"""Monte Carlo ray probing: curvature along random unit rays by central differences."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from probecore._contract.collective import agreed_store, collective_of, is_lead
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
from probecore._probes.ray_checks import (
    CHECK_FIELDS,
    JITTER,
    N_CENTER,
    negative_share_bounds,
    ray_errors,
)
from probecore._probes.results import RayResult

__all__ = [
    "default_ray_eps",
    "hessian_ray_result",
    "ray_directions",
    "ray_result",
    "ray_stats",
    "rays",
]

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
    spec: Any,
    origin: np.ndarray,
    entropy: int,
    start: int,
    n: int,
    eps: float,
    n_center: int | None = None,
) -> dict[str, np.ndarray]:
    """Losses along rays ``start, ..., start + n - 1``: the chunk task of :func:`rays`.

    The directions are drawn here, in the worker, so a task carries a seed instead of
    ``n × dim`` numbers. One ray at a time: its direction is drawn, cast to the objective's
    dtype, evaluated at ``origin ± eps·d`` (and, when ``n_center`` is given, at
    ``origin ± eps/2·d`` and, for rays below ``n_center``, at ``origin ± eps·JITTER·d``:
    see :func:`rays`), one point per ``losses_in_span`` call, the route of ``L(x)``, and
    dropped before the next is drawn, so that memory is a few vectors of ``dim`` whatever
    ``n`` (see :func:`_ray_losses`).
    """
    obj = resolve(spec)
    fields = _fields(n_center is not None)
    out = {name: np.full(n, np.nan) for name in fields}
    for k in range(n):
        index = start + k
        steps = [eps, eps / 2]
        if n_center is not None and index < n_center:
            steps.append(eps * JITTER)
        values = _ray_losses(obj, origin, entropy, index, steps[: 1 if n_center is None else 3])
        for name, value in zip(fields, values, strict=False):
            out[name][k] = value
    return out


def _hessian_ray_chunk(
    spec: Any, origin: np.ndarray, entropy: int, start: int, n: int
) -> dict[str, np.ndarray]:
    """``dᵀHd`` along rays ``start, ..., start + n - 1``: the chunk task of ``curvature="hessian"``.

    One Hessian-vector product per ray at ``origin``, in the objective's dtype, the
    direction drawn as for the finite differences and cast to that dtype first; the
    Rayleigh quotient ``dᵀHd / dᵀd`` of the cast direction is formed in float64. Memory:
    the direction, its product and their float64 copies, whatever ``n``.
    """
    obj = resolve(spec)
    out = np.full(n, np.nan)
    for k in range(n):
        d = _ray_direction(entropy, start + k, origin.size).astype(origin.dtype, copy=False)
        hd = np.asarray(obj.hvp(origin, d), dtype=np.float64)
        d64 = d.astype(np.float64, copy=False)
        out[k] = float(np.dot(d64, hd) / np.dot(d64, d64))
    return {"curvature": out}


def _fields(check: bool) -> list[str]:
    """Stored columns of a rays run: ``±ε``, and with ``check`` ``±ε/2`` and the jitter."""
    base = ["loss_plus", "loss_minus"]
    return [*base, *CHECK_FIELDS] if check else base


def _ray_losses(
    obj: Objective, origin: np.ndarray, entropy: int, index: int, steps: list[float]
) -> list[float]:
    """``L(origin + h·d)`` and ``L(origin - h·d)`` for ray ``index``, for each ``h`` of ``steps``.

    Each point is one ``losses_in_span`` call with one coefficient, the route of ``L(x)``.
    The values are those of the batched call ``losses_in_span(origin, D, [eps·I; -eps·I])``
    that chunks made before: a coefficient row with one non-zero entry forms the point
    ``origin + (eps·d).astype(dtype)`` exactly, whatever the other rows. Backends that
    evaluate the points of a call together (JAX's vmap) can round the loss differently in
    the last bits for another number of points; one point per call is how they evaluate
    ``L(x)``.

    Memory beyond ``origin`` (the peak of a whole :func:`rays` run, whatever its chunk
    size): the float64 direction and its squares while drawing (2 float64 vectors); then
    the direction in the objective's dtype and what ``losses_in_span`` forms for one point
    (:func:`~probecore.backend.span_point`: the point, one vector, or none where a backend
    forms it in its own parameter buffer, as PyTorch's does; tests/test_rays_memory.py,
    docs/benchmarks.md).
    """
    basis = _ray_direction(entropy, index, origin.size).astype(origin.dtype, copy=False)[None]
    out = []
    for h in steps:
        for c in (h, -h):
            value = obj.losses_in_span(origin, basis, np.array([[c]]))
            out.append(float(np.asarray(value, dtype=np.float64)[0]))
    return out


# --------------------------------------------------------------------------- rays


def default_ray_eps(dtype: Any) -> float:
    """Default step of :func:`rays`: 1e-5 in float64, 0.1 in float32, else ``eps_mach ** 0.25``.

    The central second difference has rounding error about ``2·δ/ε²`` per ray (``δ`` the
    error of one loss value, ``≈ eps_mach·|L|``) and truncation error ``ε²·|L⁗|/12``; they
    balance at ``ε ∝ eps_mach^{1/4}`` when the loss and its fourth derivative along a unit
    direction are of order one. A third error grows with ``ε``: on a piecewise-linear
    network (ReLU) a step crosses kinks, about ``ε ×`` (pre-activations per unit step) of
    them per ray, and each adds ``O(1/ε)`` to ``κ``. In float64 the rounding term is small
    down to ``ε = 1e-5`` (``2·2.2e-16·|L|/1e-10 = 4.4e-6·|L|`` per ray; the check of
    :func:`rays` measures it and corrects the part that every ray shares), so the default
    is 1e-5, 12 times shorter than ``eps_mach ** 0.25``: 12 times fewer kinks. In float32
    the rounding term forbids a shorter step, and on the digits MLPs of
    benchmarks/rays_coverage.py ``ε = 0.1`` beat ``eps_mach ** 0.25 = 1.9e-2``: the shared
    rounding of ``L(x)`` 28 times smaller, truncation still below the sampling error, and
    (ReLU) fewer kinks' worth of bias. See docs/landscape.md ("Choosing ε", "Errors of κ").

    Parameters
    ----------
    dtype : numpy dtype or str
        The objective's dtype.

    Returns
    -------
    float

    Examples
    --------
    >>> default_ray_eps("float32"), default_ray_eps("float64")
    (0.1, 1e-05)
    """
    dt = np.dtype(dtype)
    chosen = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 0.1}
    return chosen.get(dt, float(np.finfo(dt).eps ** 0.25))


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
    check: bool = True,
    curvature: str = "difference",
    rng: int | np.random.Generator | None = None,
    chunk_size: int | None = None,
    executor: Executor | None = None,
    objective_factory: Callable[[], Any] | None = None,
    store: str | os.PathLike | None = None,
    progress: bool | None = None,
    metadata: dict | None = None,
) -> RayResult:
    r"""Curvature of the loss along ``n_rays`` uniformly random unit directions.

    ``κ = (L(x + εd) − 2L(x) + L(x − εd)) / ε²`` per ray, no gradients. For a quadratic
    ``κ = dᵀHd`` exactly (up to rounding), and over uniformly random unit ``d`` its mean
    is ``tr(H)/dim``.

    With ``check`` (the default) each ray is also evaluated at ``±ε/2``, and the first
    ``min(n_rays, N_CENTER)`` rays at ``±ε·JITTER`` as well, which measures the errors
    that the Student-t interval ``mean_ci`` does not see (docs/landscape.md, "Errors of
    κ"): the rounding noise of one loss value (``loss_noise``), the shift that the
    rounding of ``L(x)`` gives every ``κ`` alike (``center_shift``, corrected, and what
    is left of it, ``center_error``), the truncation bias of the mean
    (``truncation_bias``, Richardson: ``4/3·mean(κ(ε) − κ(ε/2))``) and the rays whose
    curvature changes between ``ε`` and ``ε/2`` by more than rounding and smooth
    truncation allow (``kinked``: a ReLU's activation pattern changing within ``±ε``;
    a warning names them). ``mean_total_ci`` and ``negative_fraction_total_ci`` account
    for all of it. Cost: ``4·n_rays + 2·min(n_rays, N_CENTER) + 1`` loss evaluations;
    ``check=False``: ``2·n_rays + 1`` and no such fields.

    ``curvature="hessian"`` measures ``κ = dᵀHd`` of the same directions exactly instead,
    with one Hessian-vector product per ray (``n_hvps = n_rays``, one loss evaluation
    for ``loss0``) and no step: no rounding floor and no kinks, so it is the route for
    float32 models of piecewise-linear (ReLU) networks, where every step that float32
    rounding allows crosses activation changes that the Hessian does not see
    (docs/landscape.md, "Errors of κ"). Beside sampling its error is the rounding of the
    products, estimated by ``rounding_error``: ``mean_total_ci`` is ``mean_ci`` widened by
    it. ``check`` does not apply.

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
    check : bool
        Evaluate the half steps and the jitter that estimate rounding, truncation and kinks
        (``curvature="difference"`` only).
    curvature : {"difference", "hessian"}
        ``"difference"``: the central second difference of the loss at step ``eps`` (loss
        evaluations only, the seed paper's method). ``"hessian"``: ``dᵀHd`` from the
        objective's ``hvp`` (``eps`` must be left unset).
    rng : int, numpy.random.Generator or None
        Source of the directions. Ray ``i`` is drawn from its own stream
        (``SeedSequence(seed, spawn_key=(i,))``), so a resumed or parallel run draws the
        same rays.
    chunk_size, executor, objective_factory, store, progress, metadata
        As for :func:`line`; a chunk is ``chunk_size`` rays, the unit of work, storage and
        resume. The directions are drawn by the worker that evaluates them, one ray at a
        time, and never stored (the seed reproduces them): memory is a few parameter
        vectors per worker whatever ``chunk_size``.

    Returns
    -------
    RayResult

    Examples
    --------
    >>> from probecore.analytic import Quadratic
    >>> q = Quadratic.from_spectrum(np.linspace(1.0, 3.0, 50), rng=0)
    >>> r = rays(q, n_rays=400, rng=0)
    >>> bool(r.mean_total_ci[0] <= 2.0 <= r.mean_total_ci[1]), r.n_loss_evals, r.n_kinked
    (True, 1665, 0)
    """
    origin = check_point(objective, x)
    n_rays = check_int("n_rays", n_rays, lo=1)
    if curvature not in ("difference", "hessian"):
        raise ValueError(f"`curvature` must be 'difference' or 'hessian'; got {curvature!r}.")
    hessian = curvature == "hessian"
    if not isinstance(check, bool | np.bool_):
        raise TypeError(f"`check` must be True or False; got {type(check).__name__}.")
    if hessian and eps is not None:
        raise ValueError(
            f"`eps` is the step of curvature='difference'; curvature='hessian' takes no step "
            f"(dᵀHd from one HVP per ray); got eps={eps!r}. Leave `eps` unset."
        )
    if hessian:
        check = False
    # κ, κ(ε/2), six losses, their stored copies and the result's: about 16 floats per ray
    check_points_budget(
        f"`n_rays` = {n_rays}",
        n_rays,
        floats_per_point=16 if check is True else 7,
        advice="Draw fewer rays (the interval on the mean shrinks like 1/√n_rays).",
    )
    if hessian:
        eps = 0.0
    else:
        eps = default_ray_eps(origin.dtype) if eps is None else check_float("eps", eps, lo=0.0)
        if eps <= 0:
            raise ValueError(f"`eps` must be positive; got {eps}.")
    confidence = check_float("confidence", confidence, lo=0.0, hi=1.0)
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must lie strictly between 0 and 1; got {confidence}.")
    check = bool(check)
    check_executor(executor, objective_factory, objective)
    store = agreed_store(objective, store)
    if store is not None and (isinstance(rng, bool) or not isinstance(rng, numbers.Integral)):
        raise TypeError(
            "`rng` must be an int seed when `store` is given, so that a rerun draws the same "
            f"rays and can resume; got {type(rng).__name__}."
        )
    gen, seed = as_rng(rng)
    entropy = int(seed) if isinstance(seed, int) else int(gen.integers(2**63))
    chunk_size, chunks = chunking(n_rays, chunk_size, objective)
    n_center = min(n_rays, N_CENTER) if check else None
    loss0 = origin_loss(objective, origin)  # the route of L(x ± εd): both round alike
    meta = {
        "objective": objective_record(objective),
        "entropy": entropy,
        "loss0": loss0,
        "confidence": confidence,
        "user": dict(metadata or {}),
    }
    # identity without `check` is that of the runs before it: their stores still resume
    identity: dict[str, Any] = {"eps": eps, "entropy": entropy}
    if check:
        identity.update(check=True, n_center=n_center, jitter=JITTER)
    if hessian:
        identity["curvature"] = "hessian"
    state = RunState.start(
        store,
        kind="rays",
        n_points=n_rays,
        chunk_size=chunk_size,
        fields=["curvature"] if hessian else _fields(check),
        fixed={"origin": origin},
        identity=identity,
        objective=None if store is None else objective_fingerprint(objective, loss0),
        metadata=meta,
        collective=collective_of(objective),
    )
    if state.resumed and state.stored is not None:  # stored losses go with stored L(x)
        loss0 = float(state.stored["loss0"])
        meta["loss0"] = loss0
    before = state.done.copy()
    try:
        run_chunks(
            chunks,
            _hessian_ray_chunk if hessian else _ray_chunk,
            (lambda i, s, e: (origin, entropy, s, e - s))
            if hessian
            else (lambda i, s, e: (origin, entropy, s, e - s, eps, n_center)),
            task_spec(objective, executor, objective_factory),
            state,
            executor=executor,
            progress=progress if is_lead(objective) else False,
            desc="rays",
        )
    finally:
        state.close()
    new = state.done & ~before
    meta["store"] = None if store is None else os.fspath(store)
    if hessian:
        return hessian_ray_result(
            state.values["curvature"],
            state.done,
            loss0=loss0,
            dim=origin.size,
            dtype=origin.dtype,
            confidence=confidence,
            n_hvps=int(new.sum()),
            n_loss_evals=1,
            seed=seed,
            metadata=meta,
        )
    n_evals = 1 + (4 if check else 2) * int(new.sum()) + 2 * int(new[: n_center or 0].sum())
    return ray_result(
        state.values,
        state.done,
        loss0=loss0,
        eps=eps,
        dtype=origin.dtype,
        confidence=confidence,
        n_loss_evals=n_evals,
        seed=seed,
        metadata=meta,
    )


def hessian_ray_result(
    kappa: np.ndarray,
    done: np.ndarray,
    *,
    loss0: float,
    dim: int,
    dtype: Any,
    confidence: float,
    n_hvps: int = 0,
    n_loss_evals: int = 0,
    seed: Any = None,
    metadata: dict | None = None,
) -> RayResult:
    """The :class:`RayResult` of a ``curvature="hessian"`` run (by :func:`rays` and stored runs).

    ``kappa`` holds ``dᵀHd`` per ray (NaN where not computed). There is no step: ``eps``
    is 0 and the loss columns are NaN. Beside sampling, the error is the rounding of the
    products, estimated (not bounded) by ``rounding_error`` = ``√dim·eps_mach·max|κ|``
    (``dim`` the objective's), which widens ``mean_ci`` into ``mean_total_ci`` and the
    negative share's bounds alike (both NaN with fewer than 2 rays, as ``mean_ci``).
    """
    kappa = np.where(done, kappa, np.nan)
    base = ray_stats(kappa[done], confidence)
    k = kappa[done & np.isfinite(kappa)]
    u = float(np.finfo(np.dtype(dtype)).eps)
    rounding = math.sqrt(int(dim)) * u * float(np.max(np.abs(k))) if k.size else math.nan
    total = base["mean_ci"] + np.array([-rounding, rounding])
    neg_total = np.array([math.nan, math.nan])
    if k.size >= 2:
        neg_total = negative_share_bounds(k, rounding, confidence)
    nan = np.full(done.size, np.nan)
    return RayResult(
        kappa=kappa,
        losses_plus=nan,
        losses_minus=nan.copy(),
        computed=done,
        loss0=loss0,
        eps=0.0,
        confidence=confidence,
        rounding_error=rounding,
        n_loss_evals=n_loss_evals,
        n_hvps=n_hvps,
        curvature="hessian",
        seed=seed,
        metadata=dict(metadata or {}),
        mean_total_ci=total,
        negative_fraction_total_ci=neg_total,
        **base,
    )


def ray_result(
    values: dict[str, np.ndarray],
    done: np.ndarray,
    *,
    loss0: float,
    eps: float,
    dtype: Any,
    confidence: float,
    n_loss_evals: int = 0,
    seed: Any = None,
    metadata: dict | None = None,
) -> RayResult:
    """The :class:`RayResult` of a run's stored columns (by :func:`rays` and stored runs).

    Parameters
    ----------
    values : dict of str to numpy.ndarray
        The run's columns (``loss_plus``, ``loss_minus``, and with ``check`` the half-step
        and jitter columns), NaN where not computed.
    done : numpy.ndarray
        Mask of the rays computed.
    loss0, eps, dtype, confidence, n_loss_evals, seed, metadata
        The run's ``L(x)``, step, the objective's dtype and the result's fields.

    Returns
    -------
    RayResult
    """
    kappa = np.full(done.size, np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        kappa[done] = (values["loss_plus"][done] - 2 * loss0 + values["loss_minus"][done]) / eps**2
    errors: dict[str, Any] = {}
    if all(name in values for name in CHECK_FIELDS):
        errors = ray_errors(
            values, done, kappa, loss0=loss0, eps=eps, dtype=dtype, confidence=confidence
        )
    return RayResult(
        kappa=kappa,
        losses_plus=values["loss_plus"],
        losses_minus=values["loss_minus"],
        computed=done,
        loss0=loss0,
        eps=eps,
        confidence=confidence,
        rounding_error=4 * float(np.finfo(dtype).eps) * abs(loss0) / eps**2,
        n_loss_evals=n_loss_evals,
        seed=seed,
        metadata=dict(metadata or {}),
        **ray_stats(kappa[done], confidence),
        **errors,
    )
