"""Trace of the Hessian: Hutchinson's estimator and Hutch++, with standard errors."""

from __future__ import annotations

from typing import Any

import numpy as np

from probecore._contract.validation import as_rng, check_int, check_option
from probecore._linalg.operators import Counted, as_operator, recorded, small_dense
from probecore._linalg.results import TraceResult

__all__ = ["hutchinson", "hutchpp"]

DISTRIBUTIONS = ("rademacher", "gaussian")


def _probes(gen: np.random.Generator, n: int, p: int, distribution: str) -> np.ndarray:
    # Drawn probe by probe (rows, then transposed) so that the stream of probes does not
    # depend on how they are batched.
    if distribution == "rademacher":
        return gen.choice(np.array([-1.0, 1.0]), size=(p, n)).T
    return gen.standard_normal((p, n)).T


def _mean_se(samples: np.ndarray) -> tuple[float, float]:
    mean = float(np.mean(samples))
    if samples.size < 2:
        return mean, float("nan")
    return mean, float(np.std(samples, ddof=1) / np.sqrt(samples.size))


def hutchinson(
    A: Any,
    *,
    n_probes: int = 100,
    distribution: str = "rademacher",
    batch_size: int = 32,
    rng: int | np.random.Generator | None = None,
    progress: bool | None = None,
) -> TraceResult:
    r"""Hutchinson's estimator of ``tr(H)`` with its standard error.

    Parameters
    ----------
    A : array, LinearOperator, Objective or (Objective, x)
        Symmetric operator (see :func:`probecore.as_operator`).
    n_probes : int
        Number of probe vectors (HVPs), at least 2 so that a standard error exists.
    distribution : {"rademacher", "gaussian"}
        Law of the probe entries (both have identity covariance).
    batch_size : int
        Probes multiplied per ``matmat`` call (bounds memory to ``batch_size·dim``).
    rng : int, numpy.random.Generator or None

    progress : bool or None
        A progress bar counting the Hessian-vector products: True always, False never,
        None (default) only when stderr is a terminal.

    Returns
    -------
    TraceResult
        ``estimate = mean_i zᵢᵀHzᵢ`` and ``std_error = std_i / sqrt(n_probes)``.

    Notes
    -----
    :math:`\mathbb E[z^\top H z] = \operatorname{tr}(H)` for any ``z`` with identity
    covariance. With Rademacher probes the variance is
    :math:`2(\lVert H\rVert_F^2 - \sum_i H_{ii}^2)`, with Gaussian probes
    :math:`2\lVert H\rVert_F^2`.

    References
    ----------
    M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines", Comm. Stat. Simul. Comput. 19(2), 1990.

    Examples
    --------
    >>> r = hutchinson(np.diag([1.0, 2.0, 3.0]), n_probes=10, rng=0)
    >>> round(r.estimate, 12), r.std_error  # Rademacher probes are exact on diagonals
    (6.0, 0.0)
    """
    op = as_operator(A)
    n = op.shape[0]
    n_probes = check_int("n_probes", n_probes, lo=2)
    distribution = check_option("distribution", distribution, DISTRIBUTIONS)
    batch_size = check_int("batch_size", batch_size, lo=1)
    gen, seed = as_rng(rng)
    matvec = Counted(op, progress=progress, desc="hutchinson", total=n_probes)
    samples = np.empty(n_probes)
    for start in range(0, n_probes, batch_size):
        p = min(batch_size, n_probes - start)
        Z = _probes(gen, n, p, distribution)
        HZ = matvec(Z).astype(np.float64)
        samples[start : start + p] = np.einsum("ij,ij->j", Z, HZ)
    estimate, se = _mean_se(samples)
    return TraceResult(
        estimate=estimate,
        std_error=se,
        samples=samples,
        method="hutchinson",
        n_matvecs=matvec.count,
        seed=seed,
        metadata=recorded(op),
    )


def hutchpp(
    A: Any,
    *,
    n_matvecs: int = 102,
    distribution: str = "rademacher",
    rng: int | np.random.Generator | None = None,
    progress: bool | None = None,
) -> TraceResult:
    r"""Hutch++ estimator of ``tr(H)`` (Meyer et al. 2021) with its standard error.

    A third of the budget sketches the dominant range ``Q`` of ``H`` (``Q = orth(HS)``),
    a third computes ``tr(QᵀHQ)`` exactly, and the rest runs Hutchinson on the deflated
    ``(I − QQᵀ)H(I − QQᵀ)``. On spectra with a few large eigenvalues (as trained networks
    have) its error falls like ``1/m`` instead of ``1/sqrt(m)``.

    Parameters
    ----------
    A : array, LinearOperator, Objective or (Objective, x)
        Symmetric operator.
    n_matvecs : int
        Budget of HVPs (at least 4): ``s = n_matvecs // 3`` sketch vectors, ``s`` for the
        exact part, ``n_matvecs − 2s`` Hutchinson probes. When ``H`` has rank below ``s``
        the sketch keeps only the directions it found and the exact part costs fewer
        HVPs; the result's ``n_matvecs`` is what was spent.
    distribution : {"rademacher", "gaussian"}
        Law of the sketch and probe entries.
    rng : int, numpy.random.Generator or None

    progress : bool or None
        A progress bar counting the Hessian-vector products: True always, False never,
        None (default) only when stderr is a terminal.

    Returns
    -------
    TraceResult
        ``std_error`` is that of the Hutchinson part, conditional on ``Q`` (the sketched
        part is exact given ``Q``); ``samples`` are the deflated per-probe values.

    References
    ----------
    R. A. Meyer, C. Musco, C. Musco and D. P. Woodruff, "Hutch++: Optimal stochastic
    trace estimation", SOSA 2021.

    Examples
    --------
    >>> A = np.diag([100.0, 50.0] + [0.01] * 98)
    >>> r = hutchpp(A, n_matvecs=30, rng=0)
    >>> bool(abs(r.estimate - np.trace(A)) < 3 * r.std_error + 1e-9)
    True
    """
    op = as_operator(A)
    n = op.shape[0]
    n_matvecs = check_int("n_matvecs", n_matvecs, lo=4)
    distribution = check_option("distribution", distribution, DISTRIBUTIONS)
    gen, seed = as_rng(rng)
    matvec = Counted(op, progress=progress, desc="hutchpp", total=n_matvecs)
    s = n_matvecs // 3
    g = n_matvecs - 2 * s
    S = _probes(gen, n, s, distribution)
    Y = matvec(S).astype(np.float64)
    with small_dense(n * s * s):  # one BLAS thread for small sketches (see small_dense)
        Q, R = np.linalg.qr(Y)
    # drop directions the sketch did not reach (rank-deficient H, or s > rank)
    keep = np.abs(np.diag(R)) > np.finfo(np.float64).eps * max(np.abs(R).max(), 1e-300) * s
    Q = Q[:, keep]
    exact = 0.0
    if Q.shape[1]:
        exact = float(np.einsum("ij,ij->", Q, matvec(Q).astype(np.float64)))
    G = _probes(gen, n, g, distribution)
    with small_dense(2 * n * Q.shape[1] * g):
        G = G - Q @ (Q.T @ G)
    samples = np.einsum("ij,ij->j", G, matvec(G).astype(np.float64))
    mean, se = _mean_se(samples)
    return TraceResult(
        estimate=exact + mean,
        std_error=se,
        samples=samples,
        method="hutch++",
        n_matvecs=matvec.count,
        seed=seed,
        metadata={"sketch_rank": int(Q.shape[1]), "exact_part": exact, **recorded(op)},
    )
