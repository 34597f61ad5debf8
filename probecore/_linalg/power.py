"""Hessian eigenvalues by power iteration.

Takes anything :func:`probecore.as_operator` accepts: a dense symmetric array, a scipy
``LinearOperator``, an :class:`~probecore.Objective` (its Hessian at ``x0``) or an
``(objective, x)`` pair, and returns a frozen result that carries the number of
Hessian-vector products it used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probecore._contract.errors import ConvergenceError
from probecore._contract.validation import as_rng, check_bool, check_float, check_int
from probecore._linalg.eigen import _start_vector
from probecore._linalg.operators import Counted, as_operator, recorded
from probecore._linalg.results import PowerIterationResult

__all__ = ["power_iteration"]

_NULL_RESTARTS = 2  # fresh Gaussian starts after an exact null-space hit, before H = 0


def power_iteration(
    A: Any,
    *,
    tol: float | None = 1e-6,
    residual_tol: float | None = 1e-3,
    maxiter: int = 1000,
    v0: np.ndarray | None = None,
    rng: int | np.random.Generator | None = None,
    raise_on_failure: bool = True,
    progress: bool | None = None,
) -> PowerIterationResult:
    r"""Largest-magnitude eigenpair by power iteration.

    Parameters
    ----------
    A : array, LinearOperator, Objective or (Objective, x)
        Symmetric operator (see :func:`probecore.as_operator`).
    tol : float or None
        Stop when the Rayleigh quotient changes by at most ``tol·|λ|`` between iterations
        (None disables this criterion).
    residual_tol : float or None
        ... and the residual ``‖Hv − λv‖`` is at most ``residual_tol·|λ|`` (None
        disables it). At least one criterion must be enabled; all enabled ones must hold.
    maxiter : int
        Maximum number of iterations (one HVP each).
    v0 : numpy.ndarray, optional
        Start vector (default: Gaussian from ``rng``).
    rng : int, numpy.random.Generator or None
        Source of the start vector.
    raise_on_failure : bool
        Raise :class:`ConvergenceError` if ``maxiter`` is reached; otherwise return the
        partial result with ``converged=False``.

    progress : bool or None
        A progress bar counting the Hessian-vector products: True always, False never,
        None (default) only when stderr is a terminal.

    Returns
    -------
    PowerIterationResult

    Raises
    ------
    ConvergenceError
        If the criteria are not met within ``maxiter`` and ``raise_on_failure``.

    Notes
    -----
    The eigenvalue error of the Rayleigh quotient shrinks like
    :math:`|\lambda_2/\lambda_1|^{2k}` and the residual like :math:`|\lambda_2/\lambda_1|^k`,
    so power iteration is slow when the top two eigenvalues are close in magnitude; prefer
    :func:`lanczos`. An eigenvalue of ``H`` always lies within ``residual_norm`` of the
    returned value. A start vector in the null space of ``H`` (``H v = 0`` exactly) is
    replaced by a Gaussian one, twice at most; only then is λ = 0 reported, ``H`` being
    zero on random vectors.

    Examples
    --------
    >>> A = np.diag([5.0, 1.0, -2.0])
    >>> r = power_iteration(A, rng=0)
    >>> round(r.eigenvalue, 6), r.converged
    (5.0, True)
    """
    op = as_operator(A)
    n, dtype = op.shape[0], np.dtype(op.dtype)
    if tol is None and residual_tol is None:
        raise ValueError("`tol` and `residual_tol` must not both be None; enable at least one.")
    if tol is not None:
        tol = check_float("tol", tol, lo=0.0)
    if residual_tol is not None:
        residual_tol = check_float("residual_tol", residual_tol, lo=0.0)
    maxiter = check_int("maxiter", maxiter, lo=1)
    raise_on_failure = check_bool("raise_on_failure", raise_on_failure)
    gen, seed = as_rng(rng)
    # a count without a total: it stops when converged, usually long before maxiter
    matvec = Counted(op, progress=progress, desc="power_iteration", total=None)

    v = _start_vector("v0", v0, n, dtype, gen).astype(np.float64)
    w = matvec(v).astype(np.float64)
    theta = float(v @ w)
    history = [theta]
    change = np.inf
    residual = float(np.linalg.norm(w - theta * v))
    converged = False
    restarts = 0
    it = 0
    for it in range(1, maxiter + 1):
        wnorm = np.linalg.norm(w)
        if wnorm == 0.0:  # H v = 0 exactly: v lies in the null space of H
            if restarts == _NULL_RESTARTS:  # random starts too: H is zero (almost surely)
                converged = True
                break
            # A start in the null space (a v0 given so, or an unlucky one) says nothing of
            # the dominant eigenvalue: start again from a Gaussian vector.
            restarts += 1
            w = gen.standard_normal(n)
            wnorm = np.linalg.norm(w)
            change = np.inf
        else:
            scale = abs(theta)
            ok_change = tol is None or (it > 1 and change <= tol * scale)
            ok_res = residual_tol is None or residual <= residual_tol * scale
            if ok_change and ok_res:
                converged = True
                break
        if it == maxiter:
            break
        v = w / wnorm
        w = matvec(v).astype(np.float64)
        new = float(v @ w)
        change = abs(new - theta)
        theta = new
        history.append(theta)
        residual = float(np.linalg.norm(w - theta * v))
    result = PowerIterationResult(
        eigenvalue=theta,
        eigenvector=v.astype(dtype),
        residual_norm=residual,
        eigenvalue_change=float(change),
        history=np.asarray(history),
        n_iter=len(history),
        n_matvecs=matvec.count,
        converged=converged,
        seed=seed,
        metadata=recorded(op),
    )
    if not converged and raise_on_failure:
        raise ConvergenceError(
            f"power iteration did not converge in {maxiter} iterations: eigenvalue change "
            f"{change:.3g}, residual {residual:.3g} at λ = {theta:.6g}. Raise `maxiter`, "
            "loosen `tol`/`residual_tol`, or use lanczos().",
            result,
        )
    return result
