"""The Lanczos kernel: one expansion loop for several Krylov sequences at once.

Thick-restart Lanczos (:func:`probecore.lanczos`, one sequence, restarts, a deflation
set) and stochastic Lanczos quadrature (:func:`probecore.spectral_density`, one sequence
per probe) grow their Krylov bases with :func:`expand`: apply the operator to the current
vector of every active sequence in one block product, orthogonalize, record the projected
coefficients, decide breakdown relative to the norm of the projected matrix, normalize.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.special

from probecore._linalg.operators import Counted

__all__ = [
    "Krylov",
    "breakdown_threshold",
    "expand",
    "miss_certified",
    "min_component",
    "orthogonalize",
    "unit_complement",
]

_TINY = float(np.finfo(float).tiny)


def orthogonalize(w: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove from ``w`` its components along the orthonormal rows of ``B``, twice.

    Classical Gram–Schmidt applied twice ("twice is enough": the second pass removes what
    the rounding of the first left along the rows).

    Parameters
    ----------
    w : numpy.ndarray
        Vector of length ``n``.
    B : numpy.ndarray
        ``(r, n)`` orthonormal rows (``r`` may be 0).

    Returns
    -------
    w : numpy.ndarray
        The projected vector.
    h : numpy.ndarray
        The coefficients removed, summed over both passes (length ``r``).
    """
    if B.shape[0] == 0:
        return w, np.zeros(0)
    h = B @ w
    w = w - h @ B
    h2 = B @ w
    w = w - h2 @ B
    return w, h + h2


def unit_complement(w: np.ndarray, D: np.ndarray, B: np.ndarray) -> np.ndarray | None:
    """Unit vector along the part of ``w`` orthogonal to the rows of ``D`` and ``B``.

    Parameters
    ----------
    w : numpy.ndarray
        Vector of length ``n``.
    D, B : numpy.ndarray
        Orthonormal rows (either may have none).

    Returns
    -------
    numpy.ndarray or None
        None when that part is rounding noise: after normalising, a further projection must
        keep at least half of the norm (the DGKS criterion), otherwise the vector was
        (numerically) inside the span and would corrupt the basis.
    """
    for attempt in range(2):
        w, _ = orthogonalize(w, D)
        w, _ = orthogonalize(w, B)
        norm = float(np.linalg.norm(w))
        if norm == 0.0 or not np.isfinite(norm) or (attempt == 1 and norm < 0.5):
            return None
        w = w / norm
    return w


def breakdown_threshold(j: int, tnorm: float, eps: float, full: bool) -> float:
    """The breakdown threshold ``δ_j`` of step ``j`` (0-based); see :func:`expand`.

    Parameters
    ----------
    j : int
        Step: the new vector is orthogonalized against ``j + 1`` basis vectors.
    tnorm : float
        Running estimate ``‖T̂_j‖₁`` of the projected matrix's norm.
    eps : float
        Machine epsilon of the working precision.
    full : bool
        Full reorthogonalization (``s = j + 1`` vectors per pass) or the three-term
        recurrence (``s = 2``).

    Returns
    -------
    float
        ``δ_j = 2 (1 + √s) ε ‖T̂_j‖₁``.
    """
    s = j + 1 if full else 2
    return 2.0 * (1.0 + math.sqrt(s)) * eps * max(tnorm, _TINY)


@dataclass
class Krylov:
    """State of ``p`` Lanczos sequences that :func:`expand` grows in lockstep.

    Attributes
    ----------
    V : numpy.ndarray
        ``(p, rows, n)`` basis vectors in the operator's dtype; ``V[i, j]`` is ``q_j`` of
        sequence ``i``. Full reorthogonalization reads rows ``0..j``, so ``rows`` must
        exceed the last step; the three-term recurrence reads only ``q_{j−1}`` and
        ``q_j``, and then ``rows`` may be 3: row ``j`` is ``V[i, j % rows]``.
    T : numpy.ndarray
        ``(p, m, m)`` float64 projected matrices; step ``j`` fills column and row ``j``
        up to the diagonal (all coefficients with full reorthogonalization, ``α_j`` and
        ``β_{j−1}`` with the three-term recurrence).
    beta : numpy.ndarray
        ``(p, m)`` float64: ``β_j = ‖w‖`` of step ``j``, the coupling to ``q_{j+1}``; 0
        where step ``j`` broke down.
    tnorm : numpy.ndarray
        ``(p,)`` running estimates ``‖T̂_j‖₁`` (updated by every step).
    active : numpy.ndarray
        ``(p,)`` bool: sequences still expanding.
    full : bool
        Full reorthogonalization (twice, against the sequence's own basis and ``deflate``)
        or the local three-term recurrence.
    deflate : numpy.ndarray
        ``(k, n)`` orthonormal rows every new vector is kept orthogonal to (full mode).
    images : numpy.ndarray or None
        ``(p, m, n)``: where given, step ``j`` stores ``H q_j`` as the operator returned it.
    """

    V: np.ndarray
    T: np.ndarray
    beta: np.ndarray
    tnorm: np.ndarray
    active: np.ndarray
    full: bool = True
    deflate: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    images: np.ndarray | None = None

    @classmethod
    def start(cls, Q: np.ndarray, m: int, dtype: np.dtype, *, full: bool = True) -> Krylov:
        """Fresh sequences from the unit rows of ``Q`` (``(p, n)``), room for ``m`` steps.

        Parameters
        ----------
        Q : numpy.ndarray
            ``(p, n)`` unit start vectors.
        m : int
            Number of steps.
        dtype : numpy.dtype
            Working precision of the basis.
        full : bool
            Full reorthogonalization (keeps ``m + 1`` vectors per sequence) or the
            three-term recurrence (keeps 3).

        Returns
        -------
        Krylov
        """
        p, n = Q.shape
        V = np.zeros((p, m + 1 if full else 3, n), dtype=dtype)
        V[:, 0] = Q
        return cls(
            V=V,
            T=np.zeros((p, m, m)),
            beta=np.zeros((p, m)),
            tnorm=np.zeros(p),
            active=np.ones(p, dtype=bool),
            full=full,
            deflate=np.zeros((0, n), dtype=dtype),
        )


def expand(
    matvec: Counted,
    K: Krylov,
    start: int,
    stop: int,
    *,
    check: bool = False,
    fresh: Callable[[int, int], np.ndarray | None] | None = None,
    done: Callable[[int, np.ndarray], bool] | None = None,
) -> np.ndarray:
    r"""Lanczos steps ``start, …, stop − 1`` on every active sequence of ``K``.

    Step ``j`` of sequence ``i``: ``w = H q_j`` (one block product for all active
    sequences; a plain vector product when ``K`` holds one sequence), then either full
    reorthogonalization (classical Gram–Schmidt twice against ``K.deflate``, then twice
    against ``q_0, …, q_j``; the coefficients ``h`` fill column ``j`` of ``T``, so a
    thick-restart arrowhead column comes out right) or the three-term recurrence
    ``w − α_j q_j − β_{j−1} q_{j−1}``. With ``β_j = ‖w‖`` the step breaks down when
    ``β_j ≤ δ_j`` (or, with ``check``, when the normalised ``w`` fails the DGKS test of
    :func:`unit_complement`); otherwise ``q_{j+1} = w/β_j``.

    Parameters
    ----------
    matvec : Counted
        The operator.
    K : Krylov
        Sequences to expand; ``V[:, start]`` must hold their current unit vectors.
    start, stop : int
        First and one-past-last step.
    check : bool
        Also require the DGKS test (full reorthogonalization only; the eigensolver's Ritz
        vectors need an orthonormal basis, the quadrature needs only the coefficients).
    fresh : callable, optional
        ``fresh(i, j)`` after a breakdown of sequence ``i`` at step ``j < stop − 1``: a unit
        vector orthogonal to its basis to continue with (``β_j = 0``), or None to stop the
        sequence. Without it a sequence stops at its breakdown.
    done : callable, optional
        ``done(j, broke)`` after every step, ``broke`` the sequences that broke down at
        it; True ends the expansion.

    Returns
    -------
    numpy.ndarray
        ``(p,)`` int: the number of columns each sequence has filled (``stop`` unless it
        stopped at a breakdown or ``done`` ended the expansion).

    Notes
    -----
    **The breakdown threshold** is relative to the projected matrix, not to ``√n``:

    .. math:: \delta_j = 2\,(1 + \sqrt{s})\,\varepsilon\,\lVert\hat T_j\rVert_1,

    with ``s = j + 1`` under full reorthogonalization and ``s = 2`` for the three-term
    recurrence, ``ε`` the machine epsilon of the basis dtype and
    ``‖T̂_j‖₁ = max_{i≤j} (‖h^{(i)}‖₁ + β_i)``, the largest column sum of the projected
    matrix bordered by the row ``β_j e_jᵀ`` (``|α_i| + β_{i−1} + β_i`` for a tridiagonal
    one), kept in ``K.tnorm``; ``‖T̂_j‖₂ ≤ ‖T̂_j‖₁`` and ``‖T̂_j‖₂ ≤ ‖H‖``.

    *Derivation.* At an invariant subspace the exact ``β_j`` is 0 and the computed one is
    the rounding left in ``w``. One Gram–Schmidt pass ``w − Σᵢ hᵢ qᵢ`` over ``s`` vectors:
    the errors in the coefficients ``hᵢ`` lie along the ``qᵢ``, where the next pass
    removes them; what no pass removes is the rounding of the accumulation itself. Its
    ``s`` partial sums have norm at most ``‖h‖₂`` (orthonormal ``qᵢ``), each rounds with
    relative error at most ``ε``, and ``s`` errors of random sign add to about
    ``√s·ε‖h‖₂`` (``s·ε‖h‖₂`` in the worst case, which this test does not assume); the
    subtraction from ``w`` adds ``ε‖w‖``. With ``‖w‖ = ‖Hq_j‖ = ‖(h, β_j)‖₂``, which the
    current column ``‖(h, β_j)‖₁ ≤ ‖T̂_j‖₁`` bounds, one pass leaves about
    ``(1 + √s) ε ‖T̂_j‖₁``. The factor 2 allows the same again for the second pass (in
    practice far less: it acts on a ``w`` of size ``β_j``), which also covers the rounding
    of ``q_j`` to the working precision and that of a diagonal or sparse product ``Hq_j``
    (about ``(ε/2)‖H‖`` each); for the three-term recurrence, which has no second pass,
    it covers those two. Deflation passes act on a ``w`` whose components along
    ``K.deflate`` are as small as those vectors' residuals, and add rounding of that
    order times ``ε``. The constant has no ``√n``: a dense product's own rounding can
    reach ``√n·ε‖H‖``, but counting it would truncate sequences at large ``n`` in float32
    (at ``n = 3·10⁵``, ``100√n·ε`` is 0.65% of ``‖H‖``, larger than the couplings inside
    a network's bulk).

    *Why a low threshold is harmless and a high one is not.* When noise above ``δ_j`` is
    taken for a new vector, ``q_{j+1}`` starts a new Krylov sequence coupled to ``T_j`` by
    ``β_j``, the size of the rounding in ``w`` (the step's own, ``O(ε‖T̂_j‖)``, plus the
    product's, up to about ``√n·ε‖H‖`` for a dense one): the old Ritz values move by
    ``O(β_j)`` and the new nodes carry
    quadrature weight ``(e₁ᵀs)² = O(β_j²/gap²)`` (or share the weight of an
    old node at the same place), and the eigensolver, which normalises and projects it
    once more (``check``), uses it exactly like the fresh random vector it draws after a
    breakdown, as a restart direction. A threshold above the couplings that carry
    information instead ends a probe early, and its quadrature keeps only ``j + 1`` nodes.

    ``δ_j`` bounds the rounding of the step itself. The rounding of earlier steps left
    components outside the exact Krylov space in ``q_j``; the recurrence carries them
    along, and where Ritz values have converged to eigenvalues of multiplicity above one
    it amplifies them (by factors of order ``‖T‖/gap``): at an invariant subspace of a tight cluster
    of repeated eigenvalues ``β_j`` can then exceed any ``O(ε‖T‖)`` threshold, and the
    sequence continues as above. So does one whose product rounds by more than ``δ_j``
    (a dense ``n × n`` product, an HVP): on such an operator with few distinct
    eigenvalues a probe may run all its steps, at the cost asked for, and its measure is
    still that of ``H`` (nodes within rounding of the eigenvalues, each eigenvalue's
    weight shared among copies of its node). With a diagonal operator and a few well
    separated eigenvalues of comparable weight it stops after as many steps
    (``tests/test_lanczos_kernel.py`` checks both).
    """
    V, T, beta, tnorm, active = K.V, K.T, K.beta, K.tnorm, K.active
    p, rows, _ = V.shape
    if K.full and rows <= stop:
        raise ValueError(f"full reorthogonalization needs {stop + 1} basis rows; got {rows}.")
    if check and not K.full:
        raise ValueError("the DGKS check needs full reorthogonalization.")
    dtype = V.dtype
    eps = float(np.finfo(dtype).eps)
    D = K.deflate
    steps = np.full(p, start)
    for j in range(start, stop):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        r, r_next = j % rows, (j + 1) % rows
        if p == 1:
            HQ = matvec(V[0, r])[None]
        else:
            HQ = np.ascontiguousarray(matvec(V[idx, r].T).T)
        broke = np.zeros(p, dtype=bool)
        for w, i in zip(HQ, idx.tolist(), strict=True):
            if K.images is not None:
                K.images[i, j] = w
            if K.full:
                w, _ = orthogonalize(w, D)
                w, h = orthogonalize(w, V[i, : j + 1])
                T[i, : j + 1, j] = h
                T[i, j, : j + 1] = h
            else:
                q = V[i, r]
                a = float(q @ w)
                b_prev = float(beta[i, j - 1]) if j > 0 else 0.0
                w = w - a * q
                if b_prev:
                    w = w - b_prev * V[i, (j - 1) % rows]
                h = np.array([b_prev, a])
                T[i, j, j] = a
                if j > 0:
                    T[i, j - 1, j] = T[i, j, j - 1] = b_prev
            b = float(np.linalg.norm(w))
            tnorm[i] = max(tnorm[i], float(np.abs(h).sum()) + b)
            steps[i] = j + 1
            u = None
            if b > breakdown_threshold(j, tnorm[i], eps, K.full):
                u = unit_complement(w / b, D, V[i, : j + 1]) if check else (w / b)
            if u is not None:
                V[i, r_next] = u
                beta[i, j] = b
                continue
            broke[i] = True
            beta[i, j] = 0.0
            if j + 1 == stop:
                continue
            u = None if fresh is None else fresh(i, j)
            if u is None:
                active[i] = False
            else:
                V[i, r_next] = u
        if done is not None and done(j, broke):
            break
    return steps


def min_component(dim: int, delta: float) -> float:
    """The ``delta``-quantile of ``|xᵀv|`` for ``v`` uniform on the unit sphere of ``R^dim``.

    For any fixed unit vector ``x``, ``(xᵀv)² ~ Beta(1/2, (dim − 1)/2)``, so
    ``P(|xᵀv| < min_component(dim, delta)) = delta`` (about ``delta·√(π/(2·dim))``).

    Parameters
    ----------
    dim : int
        Dimension of the sphere's space.
    delta : float
        Probability in ``(0, 1)``.

    Returns
    -------
    float
    """
    if dim <= 1:
        return 1.0
    return math.sqrt(float(scipy.special.betaincinv(0.5, (dim - 1) / 2.0, delta)))


def miss_certified(
    theta: np.ndarray,
    S: np.ndarray,
    beta: float,
    targets: tuple[float, ...],
    gamma_min: float,
    rounding: float,
) -> bool:
    r"""Whether a Lanczos sequence from a random start rules out eigenvalues past ``targets``.

    Parameters
    ----------
    theta, S : numpy.ndarray
        Eigen-decomposition of the ``(j+1) × (j+1)`` projected matrix ``T_j`` of a
        sequence whose first basis vector is its (random) start vector ``q_0``.
    beta : float
        ``β_j``, the coupling to the next basis vector.
    targets : tuple of float
        Points outside ``[min θ, max θ]``; each stands for the half-line beyond it.
    gamma_min : float
        :func:`min_component` of the start vector's sphere at the chosen probability.
    rounding : float
        Bound on ``‖xᵀF_j‖``, the rounding of the Lanczos relation along an eigenvector.

    Returns
    -------
    bool
        True when every eigenvalue ``λ`` beyond a target would need
        ``|xᵀq_0| < gamma_min`` for its eigenvector ``x`` (for a uniform ``q_0``, an event
        of the probability ``gamma_min`` was chosen for).

    Notes
    -----
    The Lanczos relation ``H Q_j = Q_j T_j + β_j q_{j+1} e_jᵀ + F_j`` multiplied by the
    eigenvector ``xᵀ`` gives ``c (λ − T_j) = β_j (xᵀq_{j+1}) e_jᵀ + xᵀF_j`` for
    ``c = xᵀQ_j``, whose first entry is ``xᵀq_0``:

    .. math:: |x^\top q_0| \le \beta_j\,\Bigl|\sum_i \frac{S_{ji} S_{0i}}{\lambda -
              \theta_i}\Bigr| + \lVert x^\top F_j\rVert\,
              \Bigl(\sum_i \frac{S_{0i}^2}{(\lambda - \theta_i)^2}\Bigr)^{1/2}.

    For a tridiagonal ``T_j`` the first sum is ``β_0⋯β_{j−1}/det(λ − T_j)``, and both
    terms shrink monotonically as ``λ`` moves away from the Ritz values, so checking
    the bound at a target covers the whole half-line beyond it (van Dorsselaer,
    Hochstenbach & van der Vorst 2000 use the same polynomial for probabilistic bounds).
    """
    lo, hi = float(np.min(theta)), float(np.max(theta))
    for lam in targets:
        if lo <= lam <= hi:
            return False
        d = lam - theta
        g = abs(float(np.sum(S[-1] * S[0] / d)))
        r = float(np.sqrt(np.sum((S[0] / d) ** 2)))
        if beta * g + rounding * r >= gamma_min:
            return False
    return True
