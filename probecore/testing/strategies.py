"""Hypothesis strategies that draw symmetric matrices by their spectrum.

Drawing the eigenvalues (not the entries) bounds the condition number and makes shrunk
counterexamples meaningful: a smaller dimension, a milder condition number, fewer
negative or repeated eigenvalues. Needs ``hypothesis``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

__all__ = ["spectra", "symmetric_matrices"]


@st.composite
def spectra(
    draw: Any,
    *,
    min_n: int = 2,
    max_n: int = 50,
    max_cond: float = 1e8,
    allow_negative: bool = True,
    allow_repeats: bool = True,
) -> np.ndarray:
    """Eigenvalue lists with magnitudes in ``[s, s·cond]``, ``cond <= max_cond``.

    The largest and smallest magnitudes are always present, so the drawn ``cond`` is the
    exact ratio ``max|λ|/min|λ|``. Signs are negative with a drawn probability, and a drawn
    number of entries are copies of others (repeated eigenvalues).

    Returns
    -------
    numpy.ndarray
        Float64 eigenvalues in ascending order.
    """
    n = draw(st.integers(min_n, max_n))
    log_cond = draw(st.floats(0.0, float(np.log10(max_cond)), allow_nan=False))
    log_scale = draw(st.floats(-3.0, 3.0, allow_nan=False))
    neg = draw(st.floats(0.0, 1.0)) if allow_negative else 0.0
    n_distinct = draw(st.integers(max(1, min(2, n)), n)) if allow_repeats else n
    seed = draw(st.integers(0, 2**32 - 1))
    gen = np.random.default_rng(seed)
    logs = gen.uniform(0.0, log_cond, n_distinct)
    logs[0] = 0.0
    if n_distinct > 1:
        logs[1] = log_cond
    values = 10.0 ** (logs + log_scale)
    values = np.where(gen.random(n_distinct) < neg, -values, values)
    copies = gen.integers(0, n_distinct, n - n_distinct)
    return np.sort(np.concatenate([values, values[copies]]))


@st.composite
def symmetric_matrices(draw: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(A, eigenvalues)`` with ``A = Q diag(λ) Qᵀ`` and ``Q`` Haar-random (seeded).

    Keyword arguments are those of :func:`spectra`.
    """
    lam = draw(spectra(**kwargs))
    seed = draw(st.integers(0, 2**32 - 1))
    n = lam.size
    Q, R = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    Q *= np.sign(np.diag(R))
    A = (Q * lam) @ Q.T
    return (A + A.T) / 2, lam
