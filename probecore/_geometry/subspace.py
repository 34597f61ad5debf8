"""Effective dimension of a gradient history: exact (Gram route) or streamed (Frequent Directions).

A history of ``T`` flattened gradients of dimension ``dim`` is a ``(T, dim)`` matrix.
Its effective dimension is the number of principal components that explain a chosen
share of its variance (:mod:`probecore._geometry.pca` computes them without a
``dim × dim`` matrix). Histories too long to keep go through :class:`GradientSketch`, a
Frequent Directions sketch with a proven spectral-norm error bound. The core never
imports a framework: record gradients as NumPy arrays
(``tensor.detach().cpu().numpy()``, ``np.asarray(jax_array)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from probecore._contract.results import ResultBase, register
from probecore._contract.validation import (
    check_bool,
    check_dtype,
    check_float,
    check_int,
    check_vector,
)
from probecore._geometry.pca import SHARE_TOL, as_history, first_reaching, row_eigh, scatter_pca

__all__ = ["EffectiveDimension", "GradientSketch", "effective_dimension"]


@register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class EffectiveDimension(ResultBase):
    """Effective dimension of a gradient history and its explained-variance curve.

    Attributes
    ----------
    d_eff : int or None
        The smallest ``k`` with ``cumulative[k - 1] >= share - 1e-10`` (the tolerance keeps
        rounding from missing a share that is reached exactly). From a sketch it is an
        upper bound on the exact value, and ``None`` when the sketch's ``ell`` components
        do not reach ``share`` (use a larger ``ell``).
    d_eff_lower : int
        A proven lower bound on the exact ``d_eff`` (equal to ``d_eff`` for the exact
        Gram route); the exact value lies in ``[d_eff_lower, d_eff]``.
    share : float
        The share of the variance that ``d_eff`` components explain.
    explained_variance : numpy.ndarray
        Variance along each principal direction, descending: the eigenvalues of the sample
        covariance ``CᵀC/(T − 1)`` (centered) or of the second-moment matrix ``AᵀA/T``
        (not centered). ``min(T, dim)`` values for the Gram route (trailing ones may be
        zero), ``min(ell, dim)`` for a sketch.
    explained_variance_ratio : numpy.ndarray
        ``explained_variance / total_variance``.
    cumulative : numpy.ndarray
        Cumulative sum of ``explained_variance_ratio``. It reaches 1 for the Gram route;
        from a sketch it stays below the exact curve at every ``k``, by at most
        ``k·error_bound/total_variance``.
    total_variance : float
        Trace of the covariance (exact, also for a sketch, which tracks it).
    n_samples, dim : int
        Gradients in the history and their length.
    centered : bool
        Whether the mean gradient was subtracted.
    method : str
        ``"gram"`` (exact) or ``"frequent-directions"`` (from a :class:`GradientSketch`).
    error_bound : float
        Each ``explained_variance`` value lies within this of the exact one (0 for the
        Gram route), in the same units.
    """

    _array_fields: ClassVar[tuple[str, ...]] = (
        "explained_variance",
        "explained_variance_ratio",
        "cumulative",
    )

    d_eff: int | None
    d_eff_lower: int
    share: float
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    cumulative: np.ndarray
    total_variance: float
    n_samples: int
    dim: int
    centered: bool
    method: str
    error_bound: float = 0.0
    metadata: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- sketch


class GradientSketch:
    r"""Streaming Frequent Directions sketch of a gradient history (Liberty 2013).

    Keeps a buffer of ``2·ell`` rows of length ``dim`` (memory ``O(ell·dim)`` whatever
    the number of gradients). Rows are appended until the buffer is full; then its SVD
    ``UΣVᵀ`` is taken (from the eigen-decomposition of the small ``2ℓ × 2ℓ`` Gram matrix
    of the buffer, in float64), every squared singular value is lowered by
    ``δ = σ_ell²`` (the ``ell``-th largest), ``σᵢ² ← max(σᵢ² − δ, 0)``, and the rows
    ``Σ'Vᵀ`` (at most ``ell − 1`` non-zero) replace the buffer (Ghashami, Liberty, Phillips
    & Woodruff 2016, the variant with a ``2ℓ``-row buffer). A shrink costs
    ``O(ℓ²·dim)`` and comes at most every ``ℓ + 1`` rows: ``O(ℓ·dim)`` per gradient.

    **Centering.** With ``center=True`` the sketch receives, for each new gradient ``a_t``,
    the row ``sqrt((t − 1)/t)·(a_t − μ_{t−1})`` (``μ`` the running mean): Welford's update
    ``S_t = S_{t−1} + (t−1)/t·(a_t − μ_{t−1})(a_t − μ_{t−1})ᵀ`` makes the rows ``R`` satisfy
    ``RᵀR = AᵀA − T·μμᵀ``, the centered scatter matrix, exactly (blocks use the
    equivalent pairwise formula of Chan, Golub & LeVeque). The error bound is then relative
    to the centered variance, not to ``‖A‖_F²``, which a large mean gradient would dominate.
    With ``center=False`` the rows are the gradients, and ``RᵀR = AᵀA``.

    **Error bound.** ``error_bound`` is ``Δ = Σ_t δ_t`` (the shrinkage amounts), plus
    ``σ_{ell+1}²`` of the buffer when more than ``ell`` rows are occupied and ``sketch``
    truncates them. For the returned ``B`` (in exact arithmetic)

    .. math:: 0 \preceq R^\top R - B^\top B \preceq \Delta\, I,
       \qquad \Delta \le \lVert R\rVert_F^2 / \ell ,

    since each shrink changes ``RᵀR − BᵀB`` by ``V diag(min(σᵢ², δ)) Vᵀ`` and removes at
    least ``ℓδ`` of ``‖B‖_F²``. The tracked ``Δ`` is usually far below ``‖R‖_F²/ℓ``; before
    any truncation it also obeys ``Δ <= ‖R − R_k‖_F²/(ℓ − k)`` for every ``k < ℓ``.

    Parameters
    ----------
    dim : int
        Length of each flattened gradient.
    ell : int
        Rows of the returned sketch (the buffer holds ``2·ell``).
    center : bool
        Sketch the centered history (see above).
    dtype : numpy dtype
        Storage of the buffer, float64 (default) or float32. Shrinks run in float64; in
        float32 the stored rows are rounded, and the bound holds up to that rounding.

    References
    ----------
    E. Liberty, "Simple and deterministic matrix sketching", KDD 2013.
    M. Ghashami, E. Liberty, J. M. Phillips and D. P. Woodruff, "Frequent Directions:
    simple and deterministic matrix sketching", SIAM J. Comput. 45(5), 2016.
    T. F. Chan, G. H. Golub and R. J. LeVeque, "Updating formulae and a pairwise algorithm
    for computing sample variances", COMPSTAT 1982.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> basis = np.linalg.qr(rng.standard_normal((500, 3)))[0].T       # a 3-D subspace
    >>> sk = GradientSketch(500, ell=10)
    >>> for _ in range(200):
    ...     sk.update(rng.standard_normal(3) @ basis + 1e-3 * rng.standard_normal(500))
    >>> sk.n_samples, sk.sketch.shape
    (200, (10, 500))
    >>> effective_dimension(sk, share=0.99).d_eff
    3
    """

    def __init__(self, dim: int, *, ell: int, center: bool = True, dtype: Any = np.float64):
        self._dim = check_int("dim", dim, lo=1)
        self._ell = check_int("ell", ell, lo=1)
        self._center = check_bool("center", center)
        self._dtype = check_dtype("dtype", dtype)
        self._buffer = np.zeros((2 * self._ell, self._dim), dtype=self._dtype)
        self._rows = 0  # occupied rows of the buffer
        self._count = 0  # gradients seen
        self._mean = np.zeros(self._dim)
        self._mass = 0.0  # ‖R‖_F²: trace of the (centered) scatter matrix
        self._shrinkage = 0.0  # Σ δ over shrinks
        self._n_shrinks = 0
        self._cache: tuple[np.ndarray, float] | None = None

    # ------------------------------------------------------------------ properties

    @property
    def dim(self) -> int:
        """Length of each gradient."""
        return self._dim

    @property
    def ell(self) -> int:
        """Rows of the sketch."""
        return self._ell

    @property
    def center(self) -> bool:
        """Whether the centered history is sketched."""
        return self._center

    @property
    def dtype(self) -> np.dtype:
        """Storage dtype of the buffer."""
        return self._dtype

    @property
    def n_samples(self) -> int:
        """Gradients seen so far."""
        return self._count

    @property
    def n_shrinks(self) -> int:
        """Shrink steps taken so far."""
        return self._n_shrinks

    @property
    def mean(self) -> np.ndarray:
        """Running mean of the gradients (float64 copy)."""
        return self._mean.copy()

    @property
    def sketch(self) -> np.ndarray:
        """The ``(ell, dim)`` sketch ``B`` (a copy; zero rows where fewer were kept)."""
        return self._sketch()[0].copy()

    @property
    def error_bound(self) -> float:
        """Proven bound on ``‖RᵀR − BᵀB‖₂`` for ``B = sketch`` (see the class notes)."""
        return self._sketch()[1]

    # -------------------------------------------------------------------- updates

    def update(self, g: Any) -> None:
        """Add one flattened gradient of length ``dim``."""
        if not isinstance(g, np.ndarray) and hasattr(g, "__array__"):
            g = np.asarray(g)
        g = check_vector("g", g, dim=self._dim)
        self._add(g[None, :])

    def extend(self, G: Any) -> None:
        """Add a block of gradients, shape ``(n, dim)`` (processed ``ell`` rows at a time)."""
        G = as_history("G", G, min_rows=0)
        if G.shape[1] != self._dim:
            raise ValueError(f"`G` must have shape (n, {self._dim}); got {G.shape}.")
        for start in range(0, G.shape[0], self._ell):
            self._add(G[start : start + self._ell])

    def _add(self, X: np.ndarray) -> None:
        X = np.asarray(X, dtype=np.float64)
        m = X.shape[0]
        n0 = self._count
        block_mean = X.mean(axis=0)
        d = block_mean - self._mean
        self._mean += (m / (n0 + m)) * d
        self._count = n0 + m
        if not self._center:
            self._append(X)
            return
        # Chan-Golub-LeVeque: S = S_old + S_block + n0·m/(n0 + m)·d dᵀ
        if m > 1:
            self._append(X - block_mean)
        if n0:
            self._append((np.sqrt(n0 * m / (n0 + m)) * d)[None, :])

    def _append(self, rows: np.ndarray) -> None:
        self._cache = None
        self._mass += float(np.einsum("ij,ij->", rows, rows))
        cap = self._buffer.shape[0]
        i = 0
        while i < rows.shape[0]:
            take = min(cap - self._rows, rows.shape[0] - i)
            self._buffer[self._rows : self._rows + take] = rows[i : i + take]
            self._rows += take
            i += take
            if self._rows == cap:
                self._shrink()

    def _shrink(self) -> None:
        B = np.asarray(self._buffer, dtype=np.float64)
        s2, U = row_eigh(B)
        delta = float(s2[self._ell - 1])
        kept = np.maximum(s2 - delta, 0.0)
        r = int(np.count_nonzero(kept > 0))
        # Row i of the result is sqrt(σᵢ² − δ)·vᵢ with vᵢ = Uᵢᵀ B / σᵢ.
        rows = (U[:, :r] * np.sqrt(kept[:r] / s2[:r])).T @ B
        self._buffer[:] = 0
        self._buffer[:r] = rows
        self._rows = r
        self._shrinkage += delta
        self._n_shrinks += 1

    def _sketch(self) -> tuple[np.ndarray, float]:
        if self._cache is None:
            ell = self._ell
            if self._rows <= ell:
                self._cache = (self._buffer[:ell].copy(), self._shrinkage)
            else:
                # Truncate to the top ell rows: adds the first dropped σ² to the bound.
                B = np.asarray(self._buffer[: self._rows], dtype=np.float64)
                s2, U = row_eigh(B)
                top = np.zeros((ell, self._dim), dtype=self._dtype)
                top[:] = U[:, :ell].T @ B
                self._cache = (top, self._shrinkage + float(s2[ell]))
        return self._cache

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (
            f"GradientSketch(dim={self._dim}, ell={self._ell}, center={self._center}, "
            f"dtype={self._dtype.name}, n_samples={self._count}, n_shrinks={self._n_shrinks})"
        )


# ----------------------------------------------------------------- public functions


def effective_dimension(
    gradients: Any, *, share: float = 0.9, center: bool = True
) -> EffectiveDimension:
    r"""Number of principal components that explain ``share`` of the gradient variance.

    With the rows of ``C`` the gradients minus their mean (``center=True``) or the
    gradients themselves, the principal variances are the eigenvalues of ``CᵀC``. They are
    computed from the ``T × T`` Gram matrix ``CCᵀ`` in float64 (the same non-zero
    eigenvalues: both are the squared singular values of ``C``), or from ``CᵀC`` itself
    when ``dim <= T``, so no ``dim × dim`` matrix is formed for long gradients. ``d_eff``
    is the smallest ``k`` whose cumulative explained-variance ratio reaches
    ``share − 1e-10``; the tolerance keeps rounding from missing a share reached exactly
    (9 of 10 equal components for 0.9).

    Parameters
    ----------
    gradients : numpy.ndarray or GradientSketch
        A ``(T, dim)`` history, one flattened gradient per row (``T >= 2``, finite, any
        float dtype; accumulated in float64), or a :class:`GradientSketch` of one.
    share : float
        Share of the variance to explain, in ``(0, 1]``.
    center : bool
        Subtract the mean gradient (PCA of the covariance). For a sketch it must match
        the sketch's own ``center``.

    Returns
    -------
    EffectiveDimension
        ``d_eff`` and the full explained-variance curve. From a sketch: ``d_eff`` is an
        upper bound on the exact value (the sketch never overstates a variance) and
        ``d_eff_lower`` a lower bound; ``error_bound`` bounds the error of each variance.

    Raises
    ------
    ValueError
        Bad shapes or values, a history with zero variance (all rows equal when
        centered), or a sketch built with another ``center``.

    References
    ----------
    G. Gur-Ari, D. A. Roberts and E. Dyer, "Gradient descent happens in a tiny
    subspace", arXiv:1812.04754, 2018.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> basis = np.linalg.qr(rng.standard_normal((1000, 4)))[0].T   # 4 orthonormal rows
    >>> G = rng.standard_normal((50, 4)) @ basis + 1e-4 * rng.standard_normal((50, 1000))
    >>> r = effective_dimension(G, share=0.99)
    >>> r.d_eff, r.method, r.explained_variance.shape
    (4, 'gram', (50,))
    """
    if isinstance(share, int | float) and 2.0 <= share <= 100.0:  # a percentage
        raise ValueError(
            f"`share` is a fraction in (0, 1]; got {share} (for {share:g}% pass {share / 100:g})."
        )
    share = check_float("share", share, lo=0.0, hi=1.0, lo_open=True)
    center = check_bool("center", center)
    target = share - SHARE_TOL
    if isinstance(gradients, GradientSketch):
        return _sketch_dimension(gradients, share, center)
    A = as_history("gradients", gradients)
    T, dim = A.shape
    shift = np.mean(A, axis=0, dtype=np.float64) if center else None
    lam, _ = scatter_pca(A, shift)
    total = float(lam.sum())
    if not total > 0:
        raise ValueError(
            "`gradients` has zero variance"
            + (" (all rows are equal)" if center else " (all rows are zero)")
            + "; the effective dimension is undefined."
        )
    norm = T - 1 if center else T
    ratio = lam / total
    cum = np.minimum(np.cumsum(lam) / total, 1.0)
    d = first_reaching(cum, target)
    if d is None:  # unreachable: the curve ends at 1 up to rounding
        d = lam.size
    return EffectiveDimension(
        d_eff=d,
        d_eff_lower=d,
        share=share,
        explained_variance=lam / norm,
        explained_variance_ratio=ratio,
        cumulative=cum,
        total_variance=total / norm,
        n_samples=T,
        dim=dim,
        centered=center,
        method="gram",
        error_bound=0.0,
        metadata={"gram_size": int(min(T, dim))},
    )


def _sketch_dimension(sk: GradientSketch, share: float, center: bool) -> EffectiveDimension:
    if center != sk.center:
        raise ValueError(
            f"`center`={center} does not match the GradientSketch, which was built with "
            f"center={sk.center}; a sketch holds one of the two spectra only (build it "
            f"with GradientSketch(..., center={center}))."
        )
    T = sk.n_samples
    if T < 2:
        raise ValueError(
            f"`gradients` is a GradientSketch that has seen {T} gradient(s); at least 2 are needed."
        )
    B, bound = sk._sketch()
    total = sk._mass
    if not total > 0:
        raise ValueError(
            "`gradients` has zero variance"
            + (" (all gradients are equal)" if center else " (all gradients are zero)")
            + "; the effective dimension is undefined."
        )
    lam, _ = scatter_pca(B, None)
    lam = lam[: min(sk.ell, sk.dim)]
    norm = T - 1 if center else T
    target = (share - SHARE_TOL) * total
    cum_hat = np.cumsum(lam)
    d = first_reaching(cum_hat, target)
    # Upper curve: each exact variance exceeds the sketch's by at most `bound`, and all
    # the excesses together sum to the variance the sketch lost.
    lost = max(total - float(cum_hat[-1]), 0.0)
    ks = np.arange(1, lam.size + 1)
    lower = first_reaching(cum_hat + np.minimum(ks * bound, lost), target)
    if lower is None:  # only past the sketch's rows: k·bound must cover the rest
        need = target - float(cum_hat[-1])
        lower = max(lam.size + 1, int(np.ceil(need / bound))) if bound > 0 else lam.size
    lower = min(lower, (T - 1 if center else T), sk.dim)
    if d is not None:
        lower = min(lower, d)
    return EffectiveDimension(
        d_eff=d,
        d_eff_lower=int(lower),
        share=share,
        explained_variance=lam / norm,
        explained_variance_ratio=lam / total,
        cumulative=np.minimum(cum_hat / total, 1.0),
        total_variance=total / norm,
        n_samples=T,
        dim=sk.dim,
        centered=center,
        method="frequent-directions",
        error_bound=bound / norm,
        metadata={
            "ell": sk.ell,
            "n_shrinks": sk.n_shrinks,
            "lost_variance": lost / norm,
        },
    )
