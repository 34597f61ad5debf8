"""Principal components of a ``(T, dim)`` history without a ``dim × dim`` matrix.

The scatter matrix ``CᵀC`` (``C`` the centred history) and the ``T × T`` Gram matrix
``CCᵀ`` have the same non-zero eigenvalues; the principal directions are ``Cᵀu / σ`` for
the Gram eigenvectors ``u``. Work goes in blocks of at most ``BLOCK_ENTRIES`` float64
entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from probecore._contract.validation import (
    all_finite,
)

__all__ = [
    "BLOCK_ENTRIES",
    "SHARE_TOL",
    "as_history",
    "col_blocks",
    "descending",
    "first_reaching",
    "row_blocks",
    "row_eigh",
    "scatter_block",
    "scatter_pca",
]

# d_eff is the smallest k whose cumulative ratio reaches ``share - SHARE_TOL``: a share
# reached exactly in exact arithmetic (9 of 10 equal components for 0.9) is not missed
# because rounding left the computed ratio at 0.8999999999999999.
SHARE_TOL = 1e-10
# Scratch blocks hold at most this many float64 entries (32 MiB).
BLOCK_ENTRIES = 1 << 22


# ---------------------------------------------------------------------------- helpers


def as_history(name: str, A: Any, *, min_rows: int = 2) -> np.ndarray:
    """A finite float ``(T, dim)`` array with ``T >= min_rows`` (kept in its own dtype)."""
    if not isinstance(A, np.ndarray):
        if isinstance(A, list | tuple) or hasattr(A, "__array__"):
            A = np.asarray(A)
        else:
            raise TypeError(
                f"`{name}` must be a 2-D array of shape (T, dim) (one flattened vector per "
                f"row) or a GradientSketch; got {type(A).__name__}."
            )
    if A.dtype.kind != "f":
        raise TypeError(f"`{name}` must have a floating dtype; got {A.dtype}.")
    if A.ndim != 2:
        raise ValueError(
            f"`{name}` must be 2-D, shape (T, dim) with one flattened vector per row; "
            f"got shape {A.shape}."
        )
    if A.shape[0] < min_rows or A.shape[1] < 1:
        raise ValueError(
            f"`{name}` must have at least {min_rows} rows and 1 column; got shape {A.shape}."
        )
    if not all_finite(A):
        bad = np.flatnonzero(~np.all(np.isfinite(A), axis=1))
        raise ValueError(
            f"`{name}` must be finite; row {int(bad[0])} has a non-finite entry "
            f"({bad.size} such rows in all)."
        )
    return A


def col_blocks(T: int, dim: int) -> Iterator[slice]:
    step = max(1, BLOCK_ENTRIES // T)
    for j in range(0, dim, step):
        yield slice(j, min(j + step, dim))


def row_blocks(T: int, dim: int) -> Iterator[slice]:
    step = max(1, BLOCK_ENTRIES // dim)
    for i in range(0, T, step):
        yield slice(i, min(i + step, T))


def scatter_block(A: np.ndarray, rows: slice, cols: slice, shift: np.ndarray | None) -> np.ndarray:
    """``A[rows, cols] − shift[cols]`` in float64 (a new array or a read-only view)."""
    C = np.asarray(A[rows, cols], dtype=np.float64)
    return C - shift[cols] if shift is not None else C


def descending(w: np.ndarray) -> np.ndarray:
    return np.maximum(w[::-1], 0.0)  # PSD: negative values are rounding


def scatter_pca(A: np.ndarray, shift: Any, n_vectors: int = 0) -> tuple[np.ndarray, Any]:
    """Eigenvalues of ``CᵀC`` (``C = A − shift``) and optionally its top eigenvectors.

    Works on the smaller of the Gram matrix ``CCᵀ`` (``T × T``) and ``CᵀC``
    (``dim × dim``), accumulated in float64 over blocks, so no ``dim × dim`` matrix is
    formed unless ``dim <= T`` and no float64 copy of ``A`` is made. Returns
    ``min(T, dim)`` eigenvalues (descending, clipped at 0) and, if ``n_vectors > 0``, a
    ``(dim, n_vectors)`` array of orthonormal principal directions.
    """
    T, dim = A.shape
    every = slice(None)
    if dim <= T:
        S = np.zeros((dim, dim))
        for rows in row_blocks(T, dim):
            C = scatter_block(A, rows, every, shift)
            S += C.T @ C
        if not n_vectors:
            return descending(np.linalg.eigvalsh(S)), None
        w, V = np.linalg.eigh(S)
        return descending(w), V[:, ::-1][:, :n_vectors]
    G = np.zeros((T, T))
    for cols in col_blocks(T, dim):
        C = scatter_block(A, every, cols, shift)
        G += C @ C.T
    if not n_vectors:
        return descending(np.linalg.eigvalsh(G)), None
    w, U = np.linalg.eigh(G)
    U = U[:, ::-1][:, :n_vectors]
    # Directions Cᵀu, then a Rayleigh-Ritz step: an orthonormal basis Q of their span and
    # the SVD of the small C·Q (T × k) rotate them to the best directions in that span.
    W = np.empty((dim, n_vectors))
    for cols in col_blocks(T, dim):
        W[cols] = scatter_block(A, every, cols, shift).T @ U
    Q, _ = np.linalg.qr(W)
    P = np.zeros((T, n_vectors))
    for cols in col_blocks(T, dim):
        P += scatter_block(A, every, cols, shift) @ Q[cols]
    _, _, Zt = np.linalg.svd(P, full_matrices=False)
    return descending(w), Q @ Zt.T


def row_eigh(B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, clipped at 0) and eigenvectors of the small ``BBᵀ``.

    They give the SVD of a short, wide ``B``: ``σᵢ² = λᵢ`` and ``σᵢvᵢ = Bᵀuᵢ``, at a
    fraction of the cost of ``numpy.linalg.svd`` when ``dim`` is large.
    """
    w, U = np.linalg.eigh(B @ B.T)
    return np.maximum(w[::-1], 0.0), U[:, ::-1]


def first_reaching(cum: np.ndarray, target: float) -> int | None:
    idx = np.flatnonzero(cum >= target)
    return int(idx[0]) + 1 if idx.size else None
