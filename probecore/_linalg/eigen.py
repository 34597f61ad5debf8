"""Hessian eigenvalues: thick-restart Lanczos and ARPACK (power iteration: ``power.py``).

Both functions take anything :func:`probecore.as_operator` accepts: a dense symmetric
array, a scipy ``LinearOperator``, an :class:`~probecore.Objective` (its Hessian at
``x0``) or an ``(objective, x)`` pair. They return frozen results that carry the number
of Hessian-vector products they used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from probecore._contract.errors import ConvergenceError
from probecore._contract.validation import (
    as_rng,
    check_bool,
    check_float,
    check_int,
    check_option,
    check_vector,
)
from probecore._linalg.lanczos import (
    Krylov,
    expand,
    min_component,
    miss_certified,
    orthogonalize,
    unit_complement,
)
from probecore._linalg.operators import Counted, as_operator, recorded
from probecore._linalg.results import EigResult

__all__ = ["eigenvalues", "lanczos"]

WHICH = ("LA", "SA", "LM")
_GROW_EVERY = 5
_BASIS_ENTRIES = 2**28  # default cap on ncv·dim: 2 GiB in float64, 1 GiB in float32
# Lanczos keeps the images H·v of its basis vectors while they fit in this many bytes, so
# that the true residuals of the Ritz pairs cost no further HVP (else k HVPs at the end).
_IMAGE_BYTES = 2**28
METHODS = ("lanczos", "eigsh")
# `verify`: accepted probability that a random start hides a missed eigenvalue (see
# miss_certified), and the most steps a k = 1 run adds past convergence to reach it.
_MISS_PROBABILITY = 1e-2
_CERT_STEPS = 4
# When the Ritz estimates pass but the true residuals (from the kept images) do not, the
# estimates' tolerance is tightened and the run goes on, at most this many times.
_TIGHTEN = 4


def _default_tol(dtype: np.dtype) -> float:
    return 1e-8 if dtype == np.float64 else 1e-4


def _start_vector(name: str, v0: Any, n: int, dtype: np.dtype, rng: np.random.Generator):
    if v0 is None:
        v = rng.standard_normal(n)
    else:
        v = check_vector(name, v0, dim=n).astype(np.float64)
        if not np.any(v):
            raise ValueError(f"`{name}` must be non-zero.")
    return (v / np.linalg.norm(v)).astype(dtype)


# --------------------------------------------------------------------------- lanczos


def _check_step(size: int, k: int, m: int) -> bool:
    """Whether to solve the projected eigenproblem after ``size`` columns.

    Every step for small bases, every ``m // 16`` steps for large ones, so that the
    ``O(j³)`` projected eigenproblem stays negligible next to an HVP.
    """
    return not (size < k or size >= m or (m > 64 and size % max(m // 16, 1)))


def _converged_early(T, j, beta, k, which, tol, anorm, m) -> bool:
    """Whether the wanted Ritz pairs of the first ``j + 1`` columns already converged."""
    size = j + 1
    if not _check_step(size, k, m):
        return False
    theta, S = scipy.linalg.eigh(T[:size, :size])
    scale = max(anorm, float(np.max(np.abs(theta))))
    want = _order(theta, which)[:k]
    return bool(np.all(np.abs(beta * S[j, want]) <= tol * scale))


def _order(theta: np.ndarray, which: str) -> np.ndarray:
    if which == "LA":
        return np.argsort(-theta, kind="stable")
    if which == "SA":
        return np.argsort(theta, kind="stable")
    return np.argsort(-np.abs(theta), kind="stable")


def _beyond(value: float, margin: float, which: str) -> tuple[float, ...]:
    """Where an eigenvalue would come before ``value`` by more than ``margin``."""
    if which == "LA":
        return (value + margin,)
    if which == "SA":
        return (value - margin,)
    return (abs(value) + margin, -abs(value) - margin)


def _better(a: float, b: float, which: str) -> bool:
    """Whether eigenvalue ``a`` comes before ``b`` in the ordering ``which``."""
    if which == "LA":
        return a > b
    if which == "SA":
        return a < b
    return abs(a) > abs(b)


def _thick_restart(
    matvec: Counted,
    k: int,
    which: str,
    ncv: int,
    tol: float,
    maxiter: int,
    v: np.ndarray,
    D: np.ndarray,
    gen: np.random.Generator,
    anorm: float,
    max_ncv: int,
    certify: bool = False,
    worst: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, int, bool, float, bool]:
    """Thick-restart Lanczos (Wu & Simon 2000) with full reorthogonalization.

    Works in the orthogonal complement of the orthonormal rows of ``D``. Every
    ``_GROW_EVERY`` restarts without convergence the basis doubles, up to ``max_ncv``
    (restarting discards information; slow convergence means the basis is too small).
    Returns Ritz values (ordered by ``which``), Ritz vectors as rows, their images
    ``H·y`` as rows (combined from the stored images of the basis vectors; None when
    those did not fit in ``_IMAGE_BYTES``), Lanczos residual estimates, the number of
    restarts, whether the ``k`` wanted pairs converged, the operator norm estimate, and
    whether the first cycle certified (:func:`miss_certified`, ``v`` random) that no
    eigenvalue comes before ``worst`` (if given; the run ends there, converged or not) or,
    with ``certify``, before the converged Ritz value, by more than ``tol·‖H‖``.
    """
    n, dtype = matvec.n, matvec.dtype
    m = ncv
    V = np.zeros((m + 1, n), dtype=dtype)
    # images H·V[j] exactly as the operator returned them (before orthogonalization)
    W = np.zeros((m, n), dtype=dtype) if m * n * dtype.itemsize <= _IMAGE_BYTES else None
    T = np.zeros((m, m))
    tnorm = np.zeros(1)  # ‖T̂‖₁ of all cycles, for the kernel's breakdown test
    v, _ = orthogonalize(v.astype(dtype), D)
    V[0] = v / np.linalg.norm(v)
    start = 0  # first column to expand in this cycle
    restarts = 0
    certify = certify or worst is not None
    certified = False
    extra = 0  # steps past convergence spent on the certificate
    gmin = min_component(n - D.shape[0], _MISS_PROBABILITY)
    eps = float(np.finfo(dtype).eps)
    # The Ritz estimates |β·s| stop the run at `target`·‖H‖. In a float32 basis they can
    # pass while the true residuals ‖H y − θ y‖ that lanczos() certifies are a few
    # percent above tol·‖H‖ (a cond-1e4 matrix, k = 2 smallest: 4% of runs): with the
    # images kept, the truth is checked before stopping and the target tightened.
    target, tightened, last_r = tol, 0, np.inf

    def true_ok(Y: np.ndarray, HY: np.ndarray, theta_w: np.ndarray, scale: float) -> bool:
        # Ritz vectors and their images as rows; scale: the ‖H‖ estimate lanczos() will
        # hold, Ritz values included
        nonlocal target, tightened, last_r
        if tightened >= _TIGHTEN:
            return True
        R = HY.astype(np.float64) - Y.astype(np.float64) * theta_w[:, None]
        worst_r = float(np.max(np.linalg.norm(R, axis=1), initial=0.0))
        bound = max(tol, 10.0 * np.sqrt(n) * eps) * scale  # as lanczos() applies it
        if worst_r <= bound or worst_r > 0.9 * last_r:
            # passed, or a floor that tightening did not lower (an operator accurate only
            # to about worst_r: noisy or lower-precision products): stop, and let
            # lanczos() certify or not
            return True
        last_r = worst_r
        target *= max(0.1, min(0.5, bound / worst_r))
        tightened += 1
        return False

    def fresh(i: int, j: int) -> np.ndarray | None:
        # invariant subspace: continue with a random direction if any is left
        return unit_complement(gen.standard_normal(n).astype(dtype), D, V[: j + 1])

    def early(j: int, broke: np.ndarray) -> bool:
        # after every step: ‖H‖ estimate; end the cycle if the wanted pairs converged
        # (and, when asked, once no eigenvalue is likely to hide beyond them)
        nonlocal anorm, certified, extra
        anorm = max(anorm, float(np.max(np.abs(T[: j + 1, j]))))
        if broke[0]:
            return False
        conv = _converged_early(T, j, K.beta[0, j], k, which, target, anorm, m)
        if conv and W is not None and tightened < _TIGHTEN:
            th, Sj = scipy.linalg.eigh(T[: j + 1, : j + 1])
            w = _order(th, which)[:k]
            Sw = Sj[:, w].T.astype(dtype)
            scale = max(anorm, float(np.max(np.abs(th))))
            conv = true_ok(Sw @ V[: j + 1], Sw @ W[: j + 1], th[w], scale)
        if not certify or restarts or not _check_step(j + 1, k, m) or (worst is None and not conv):
            return conv
        theta, S = scipy.linalg.eigh(T[: j + 1, : j + 1])
        value = theta[_order(theta, which)[0]] if worst is None else worst
        targets = _beyond(value, tol * anorm, which)
        rounding = 10.0 * np.sqrt(j + 1) * eps * anorm  # assumed ‖xᵀF_j‖ (see docs)
        certified = miss_certified(theta, S, float(K.beta[0, j]), targets, gmin, rounding)
        if certified or worst is not None:
            return certified or conv
        extra += 1  # converged, not yet certified: a few more steps, unless hopeless
        hopeless = not miss_certified(theta, S, 0.0, targets, gmin, rounding)
        return hopeless or extra > _CERT_STEPS

    while True:
        K = Krylov(
            V=V[None],
            T=T[None],
            beta=np.zeros((1, m)),
            tnorm=tnorm,
            active=np.ones(1, dtype=bool),
            deflate=D,
            images=None if W is None else W[None],
        )
        m_eff = int(expand(matvec, K, start, m, check=True, fresh=fresh, done=early)[0])
        beta_m = float(K.beta[0, m_eff - 1])
        theta, S = scipy.linalg.eigh(T[:m_eff, :m_eff])
        anorm = max(anorm, float(np.max(np.abs(theta))))
        res = np.abs(beta_m * S[m_eff - 1, :])
        order = _order(theta, which)
        want = order[:k]
        passed = bool(np.all(res[want] <= target * anorm))
        last = m_eff < m or restarts >= maxiter
        if passed or last:
            # S in the basis dtype: a float32 basis is not upcast (memory of dim × m)
            Sw = S[:, want].T.astype(dtype)
            Y = Sw @ V[:m_eff]
            HY = None if W is None else Sw @ W[:m_eff]
            if last or HY is None or true_ok(Y, HY, theta[want], anorm):
                converged = bool(np.all(res[want] <= tol * anorm))
                return theta[want], Y, HY, res[want], restarts, converged, anorm, certified
        # keep the best l Ritz pairs and continue from the residual direction
        restarts += 1
        n_keep = min(k + max((m - k) // 2, 1), m - 1)
        keep = order[:n_keep]
        V[:n_keep] = S[:, keep].T.astype(dtype) @ V[:m]
        if W is not None:
            W[:n_keep] = S[:, keep].T.astype(dtype) @ W[:m]
        V[n_keep] = V[m]
        coupling = beta_m * S[m - 1, keep]
        if restarts % _GROW_EVERY == 0 and m < max_ncv:
            m = min(max_ncv, 2 * m)
            V = np.concatenate([V[: n_keep + 1], np.zeros((m - n_keep, n), dtype=dtype)])
            if W is not None and m * n * dtype.itemsize <= _IMAGE_BYTES:
                W = np.concatenate([W[:n_keep], np.zeros((m - n_keep, n), dtype=dtype)])
            else:
                W = None
            T = np.zeros((m, m))
        T[:] = 0.0
        T[np.arange(n_keep), np.arange(n_keep)] = theta[keep]
        T[n_keep, :n_keep] = coupling
        T[:n_keep, n_keep] = coupling
        start = n_keep


def lanczos(
    A: Any,
    *,
    k: int = 6,
    which: str = "LA",
    method: str = "lanczos",
    tol: float | None = None,
    ncv: int | None = None,
    max_ncv: int | None = None,
    maxiter: int = 1000,
    v0: np.ndarray | None = None,
    rng: int | np.random.Generator | None = None,
    verify: bool = True,
    raise_on_failure: bool = True,
    progress: bool | None = None,
) -> EigResult:
    r"""The ``k`` extreme eigenvalues (and eigenvectors) of a symmetric operator.

    Parameters
    ----------
    A : array, LinearOperator, Objective or (Objective, x)
        Symmetric operator (see :func:`probecore.as_operator`).
    k : int
        Number of eigenpairs, ``1 <= k <= dim`` (``k < dim`` for ``method="eigsh"``).
    which : {"LA", "SA", "LM"}
        Largest algebraic, smallest algebraic, or largest magnitude.
    method : {"lanczos", "eigsh"}
        ``"lanczos"``: probecore's thick-restart Lanczos with full reorthogonalization.
        ``"eigsh"``: scipy's ARPACK on the same operator.
    tol : float, optional
        Relative residual tolerance: pairs converge when ``‖Hy − θy‖ <= tol·‖H‖`` (``‖H‖``
        estimated by the largest Ritz value seen). Default ``1e-8`` in float64 and ``1e-4``
        in float32. ARPACK uses ``tol·|θ|`` instead.
    ncv : int, optional
        Initial size of the Krylov basis kept in memory (``ncv`` vectors of length
        ``dim``). Default ``min(dim, max(2k + 1, 20))``.
    max_ncv : int, optional
        The basis doubles every 5 restarts without convergence, up to ``max_ncv``
        (restarting throws information away; on hard spectra, such as the smallest
        eigenvalues of an ill-conditioned matrix, only a larger basis converges). Default:
        the largest size with ``max_ncv·dim <= 2**28`` entries (2 GiB in float64), at most
        ``dim``. Set ``max_ncv=ncv`` to keep memory fixed. Only for ``method="lanczos"``.
    maxiter : int
        Maximum number of restart cycles (ARPACK: Arnoldi update iterations).
    v0 : numpy.ndarray, optional
        Start vector (default Gaussian from ``rng``). A good approximation of the wanted
        eigenvector saves most of the products: for example the eigenvector of a float32
        run, refined in float64 (``docs/backends.md``, mixed precision).
    rng : int, numpy.random.Generator or None
        Source of start vectors.
    verify : bool
        Check that no eigenvalue that belongs among the ``k`` was missed (a copy of a
        repeated one, which a single Krylov sequence cannot see in exact arithmetic, or
        one a given ``v0`` is orthogonal to): for ``k=1`` from a random start, the run's
        own sequence certifies in up to 4 more steps (room for them is added to ``ncv``)
        that, with probability ``1 − 1e-2``, none lies ``tol·‖H‖`` beyond; else a deflated
        Lanczos from a fresh random vector runs until it certifies that (stop) or finds
        such an eigenvalue (swap it in, search again). Only for ``method="lanczos"``.
    raise_on_failure : bool
        Raise :class:`ConvergenceError` (carrying the partial result) on non-convergence,
        or return the result with ``converged=False``.

    progress : bool or None
        A progress bar counting the Hessian-vector products: True always, False never,
        None (default) only when stderr is a terminal.

    Returns
    -------
    EigResult
        Eigenvalues ordered by ``which``, eigenvectors as columns, and the *true*
        residual norms ``‖H y_i − θ_i y_i‖``. Lanczos keeps the products ``H v`` of its
        basis vectors while they fit in 256 MiB and combines them into ``H y_i`` (no extra
        HVP); with a larger basis, and for ``method="eigsh"``, they cost ``k`` extra HVPs.

    Raises
    ------
    ConvergenceError
        If ``raise_on_failure`` and not all ``k`` pairs converged.

    Notes
    -----
    For symmetric ``H`` each returned value lies within its residual norm of an
    eigenvalue, and usually much closer (``‖r‖²/gap``). The tridiagonal projection and
    Ritz extraction run in float64 whatever the operator's dtype.

    References
    ----------
    K. Wu and H. Simon, "Thick-restart Lanczos method for large symmetric eigenvalue
    problems", SIAM J. Matrix Anal. Appl. 22(2), 2000.

    Examples
    --------
    >>> A = np.diag(np.arange(1.0, 101.0))
    >>> r = lanczos(A, k=3, rng=0)
    >>> np.round(r.eigenvalues, 8).tolist()
    [100.0, 99.0, 98.0]
    """
    op = as_operator(A)
    n, dtype = op.shape[0], np.dtype(op.dtype)
    method = check_option("method", method, METHODS)
    which = check_option("which", which, WHICH)
    k = check_int("k", k, lo=1, hi=n - 1 if method == "eigsh" else n)
    tol = _default_tol(dtype) if tol is None else check_float("tol", tol, lo=0.0)
    maxiter = check_int("maxiter", maxiter, lo=1)
    verify = check_bool("verify", verify)
    raise_on_failure = check_bool("raise_on_failure", raise_on_failure)
    if ncv is None:
        ncv = min(n, max(2 * k + 1, 20))
    else:
        ncv = check_int("ncv", ncv, lo=k + 1 if k < n else n, hi=n)
    if max_ncv is None:
        max_ncv = min(n, max(ncv, _BASIS_ENTRIES // n))
    else:
        max_ncv = check_int("max_ncv", max_ncv, lo=ncv, hi=n)
    gen, seed = as_rng(rng)
    matvec = Counted(op, progress=progress, desc="lanczos", total=None)
    v = _start_vector("v0", v0, n, dtype, gen)

    HY = None
    if method == "eigsh":
        theta, Y, restarts, converged = _eigsh(op, matvec, k, which, tol, ncv, maxiter, v)
        anorm = float(np.max(np.abs(theta), initial=0.0))
    else:
        theta, Y, HY, restarts, converged, anorm = _lanczos(
            matvec, k, which, tol, ncv, max_ncv, maxiter, v, gen, verify, v0 is None
        )

    # Certify: true residuals ‖H y − θ y‖, from the images Lanczos kept (H is linear, so
    # H·y is the same combination of the basis images as y is of the basis), otherwise
    # with one block of k HVPs.
    Yc = np.ascontiguousarray(Y.T, dtype=dtype)  # (n, k), in the operator's dtype
    HYc = matvec(Yc) if HY is None else HY.T
    R = HYc.astype(np.float64) - Yc.astype(np.float64) * theta
    residuals = np.linalg.norm(R, axis=0)
    anorm = max(anorm, float(np.max(np.abs(theta), initial=0.0)), np.finfo(float).tiny)
    # One meaning of `converged` for both methods: every true residual within the bound
    # actually applied, tol·‖H‖ or the rounding floor of the HVPs themselves, whichever
    # is larger (recorded as `tol_applied`, relative to ‖H‖).
    floor = 10 * np.sqrt(n) * np.finfo(dtype).eps * anorm
    bound = max(tol * anorm, floor)
    converged = converged and bool(np.all(residuals <= bound))
    result = EigResult(
        eigenvalues=theta,
        eigenvectors=Yc,
        residual_norms=residuals,
        which=which,
        method=method,
        n_matvecs=matvec.count,
        n_restarts=restarts,
        converged=converged,
        tol=tol,
        tol_applied=bound / anorm,
        seed=seed,
        metadata=recorded(op),
    )
    if not converged and raise_on_failure:
        applied = "" if bound == tol * anorm else f" (applied: {bound / anorm:.2g}, the floor)"
        raise ConvergenceError(
            f"{method} did not converge to tol={tol:g}{applied} for k={k} ({which}) within "
            f"maxiter={maxiter}; largest residual "
            f"{np.max(residuals) if residuals.size else float('nan'):.3g}. "
            "Raise `maxiter` or `ncv`, loosen `tol`, or pass raise_on_failure=False to take "
            "the partial result.",
            result,
        )
    return result


def _lanczos(matvec, k, which, tol, ncv, max_ncv, maxiter, v, gen, verify, random_start):
    n = matvec.n
    # k = 1 from a random start: the run itself can rule out a hidden top eigenvalue (a
    # copy of the one found changes nothing); otherwise a second, deflated pass must.
    # It may take _CERT_STEPS steps past convergence: the first cycle has room for them.
    certify = verify and random_start and k == 1 < n
    D, args = np.zeros((0, n), matvec.dtype), (tol, maxiter)
    m = min(ncv + _CERT_STEPS, max_ncv) if certify else ncv
    theta, Y, HY, _, restarts, converged, anorm, certified = _thick_restart(
        matvec, k, which, m, *args, v, D, gen, 0.0, max_ncv, certify
    )
    if not (verify and converged and k < n) or certified:
        return theta, Y, HY, restarts, converged, anorm
    # Search the complement of the found eigenvectors for an eigenvalue that belongs
    # among the k wanted ones (missed copies of repeated eigenvalues); stop as soon as
    # the search rules that out, or converges to a value that does not belong there.
    for _ in range(n - k):
        room, worst = n - Y.shape[0], theta[-1]
        sizes = (min(ncv, room), *args, gen.standard_normal(n), Y, gen, anorm, min(max_ncv, room))
        extra, y, hy, res, more, ok, anorm, clear = _thick_restart(
            matvec, 1, which, *sizes, worst=worst
        )
        restarts += more
        if clear:  # certified: nothing in the complement belongs among the k
            break
        converged = converged and ok
        if not (ok and _better(extra[0], worst, which) and abs(extra[0] - worst) > res[0]):
            break
        theta = np.concatenate([theta, extra])
        Y = np.vstack([Y, y])
        HY = None if HY is None or hy is None else np.vstack([HY, hy])
        order = _order(theta, which)[:k]
        theta, Y = theta[order], Y[order]
        HY = None if HY is None else HY[order]
        if Y.shape[0] >= n:
            break
    return theta, Y, HY, restarts, converged, anorm


def _eigsh(op, matvec, k, which, tol, ncv, maxiter, v):
    counted = LinearOperator(
        op.shape, matvec=matvec, matmat=matvec, rmatvec=matvec, dtype=matvec.dtype
    )
    try:
        theta, Y = eigsh(counted, k=k, which=which, tol=tol, ncv=ncv, maxiter=maxiter, v0=v)
        converged = True
    except ArpackNoConvergence as exc:
        theta, Y = exc.eigenvalues, exc.eigenvectors
        converged = False
        if theta.size == 0:
            Y = np.zeros((op.shape[0], 0), dtype=matvec.dtype)
    order = _order(theta, which)
    return theta[order], Y[:, order].T, 0, converged


def eigenvalues(A: Any, **kwargs: Any) -> np.ndarray:
    """Shortcut for ``lanczos(A, **kwargs).eigenvalues``."""
    return lanczos(A, **kwargs).eigenvalues
