"""Quadratics ``½ xᵀAx + bᵀx`` with a chosen spectrum, and the default block layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from probecore._contract.fingerprint import digest
from probecore._contract.layout import Layout
from probecore._contract.objective import AbstractObjective
from probecore._contract.validation import (
    as_rng,
    check_dtype,
    check_float,
    check_int,
    check_vector,
)

__all__ = ["Quadratic", "check_layout", "default_layout", "nn_like_spectrum"]


def default_layout(dim: int) -> Layout:
    """A layout shaped like one dense layer: a weight matrix, a bias and a remainder.

    For ``dim >= 6`` the vector is split into ``"weight"`` of shape ``(rows, cols)``, a
    ``"bias"`` of length ``rows`` and, if anything is left, an ``"other"`` block. Smaller
    vectors are a single block.
    """
    dim = check_int("dim", dim, lo=1)
    if dim < 6:
        return Layout.single(dim)
    rows = max(2, int(np.sqrt(dim / 2)))
    cols = (dim - rows) // rows
    specs: list[tuple[str, Sequence[int], str]] = [
        ("weight", (rows, cols), "weight"),
        ("bias", (rows,), "bias"),
    ]
    rest = dim - rows * cols - rows
    if rest:
        specs.append(("other", (rest,), "other"))
    return Layout.from_shapes(specs)


def check_layout(layout: Layout | None, dim: int) -> Layout:
    if layout is None:
        return default_layout(dim)
    if not isinstance(layout, Layout):
        raise TypeError(f"`layout` must be a probecore.Layout; got {type(layout).__name__}.")
    if layout.dim != dim:
        raise ValueError(f"`layout` must cover dim={dim} entries; it covers {layout.dim}.")
    return layout


class Quadratic(AbstractObjective):
    r"""The quadratic :math:`f(x) = \tfrac12 x^\top A x + b^\top x + c` with symmetric ``A``.

    Parameters
    ----------
    A : numpy.ndarray
        Symmetric ``(dim, dim)`` matrix (the Hessian everywhere).
    b : numpy.ndarray, optional
        Linear term (default zero).
    c : float, optional
        Constant term.
    x0 : numpy.ndarray, optional
        The "model's own" point (default zero).
    dtype : {float64, float32}, optional
    layout : Layout, optional
        Default :func:`default_layout`.

    Attributes
    ----------
    eigenvalues : numpy.ndarray or None
        Exact eigenvalues in ascending order when built by :meth:`from_spectrum`.
    eigenvectors : numpy.ndarray or None
        Matching orthonormal eigenvectors (columns) when built by :meth:`from_spectrum`.

    Examples
    --------
    >>> q = Quadratic.from_spectrum([3.0, -1.0, 0.5], rng=0)
    >>> float(round(np.trace(q.hessian()), 12))
    2.5
    """

    def __init__(
        self,
        A: np.ndarray,
        *,
        b: np.ndarray | None = None,
        c: float = 0.0,
        x0: np.ndarray | None = None,
        dtype: Any = np.float64,
        layout: Layout | None = None,
    ) -> None:
        self.dtype = check_dtype("dtype", dtype)
        A = np.asarray(A)
        if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
            raise ValueError(f"`A` must be a non-empty square matrix; got shape {A.shape}.")
        if not np.all(np.isfinite(A)):
            raise ValueError("`A` must be finite.")
        scale = max(float(np.max(np.abs(A))), 1e-300)
        if np.max(np.abs(A - A.T)) > 1e-12 * scale:
            raise ValueError(
                f"`A` must be symmetric; max |A - Aᵀ| is {float(np.max(np.abs(A - A.T))):.3g}."
            )
        self.dim = A.shape[0]
        self._A64 = np.asarray((A + A.T) / 2, dtype=np.float64)
        self._A = self._A64.astype(self.dtype)
        self.b = (
            np.zeros(self.dim, self.dtype)
            if b is None
            else check_vector("b", b, dim=self.dim, dtype=self.dtype)
        )
        self.c = check_float("c", c)
        self.x0 = (
            np.zeros(self.dim, self.dtype)
            if x0 is None
            else check_vector("x0", x0, dim=self.dim, dtype=self.dtype)
        )
        self.layout = check_layout(layout, self.dim)
        self.eigenvalues: np.ndarray | None = None
        self.eigenvectors: np.ndarray | None = None

    def fingerprint(self) -> dict[str, str]:
        """What identifies this quadratic to a run store: a digest of ``A``, ``b`` and ``c``."""
        return {"function": digest(self._A64, self.b, self.c)}

    @classmethod
    def from_spectrum(
        cls,
        eigenvalues: Sequence[float] | np.ndarray,
        *,
        rng: int | np.random.Generator | None = None,
        linear: bool = False,
        dtype: Any = np.float64,
        layout: Layout | None = None,
    ) -> Quadratic:
        """Quadratic ``A = Q diag(eigenvalues) Qᵀ`` with a Haar-random orthogonal ``Q``.

        Parameters
        ----------
        eigenvalues : array_like
            The exact spectrum (any signs, repeats allowed).
        rng : int or numpy.random.Generator, optional
            Draws ``Q`` (and ``b`` and ``x0`` when ``linear``).
        linear : bool
            If True, also draw a random linear term ``b`` and starting point ``x0``.
        dtype, layout
            As for :class:`Quadratic`.
        """
        lam = np.asarray(eigenvalues, dtype=np.float64)
        if lam.ndim != 1 or lam.size == 0:
            raise ValueError(f"`eigenvalues` must be a non-empty 1-D array; got shape {lam.shape}.")
        if not np.all(np.isfinite(lam)):
            raise ValueError("`eigenvalues` must be finite.")
        gen, _ = as_rng(rng)
        n = lam.size
        Q, R = np.linalg.qr(gen.standard_normal((n, n)))
        Q *= np.sign(np.diag(R))  # Haar measure
        A = (Q * lam) @ Q.T
        kwargs: dict[str, Any] = {}
        if linear:
            kwargs["b"] = gen.standard_normal(n)
            kwargs["x0"] = gen.standard_normal(n)
        out = cls(A, dtype=dtype, layout=layout, **kwargs)
        out.eigenvalues = np.sort(lam)
        out.eigenvectors = Q[:, np.argsort(lam)]
        return out

    def hessian(self, x: np.ndarray | None = None) -> np.ndarray:
        """The (constant) Hessian ``A`` in float64."""
        return self._A64.copy()

    def loss(self, x: np.ndarray) -> float:
        """Value at ``x`` (accumulated in float64)."""
        x = check_vector("x", x, dim=self.dim).astype(np.float64)
        return float(0.5 * x @ (self._A64 @ x) + self.b.astype(np.float64) @ x + self.c)

    def grad(self, x: np.ndarray) -> np.ndarray:
        """``A x + b``."""
        x = check_vector("x", x, dim=self.dim, dtype=self.dtype)
        return self._A @ x + self.b

    def loss_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Value and gradient."""
        return self.loss(x), self.grad(x)

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``A v``."""
        check_vector("x", x, dim=self.dim)
        v = check_vector("v", v, dim=self.dim, dtype=self.dtype)
        return self._A @ v

    def hvp_many(self, x: np.ndarray, V: np.ndarray) -> np.ndarray:
        """``V Aᵀ`` for a stack of row vectors (one matrix product)."""
        check_vector("x", x, dim=self.dim)
        V = np.asarray(V)
        if V.ndim != 2 or V.shape[1] != self.dim:
            raise ValueError(f"`V` must have shape (k, {self.dim}); got {V.shape}.")
        return V.astype(self.dtype, copy=False) @ self._A


def nn_like_spectrum(
    dim: int,
    *,
    n_outliers: int = 10,
    top: float = 100.0,
    bulk_scale: float = 0.05,
    negative_fraction: float = 0.2,
    rng: int | np.random.Generator | None = None,
) -> np.ndarray:
    """A spectrum shaped like a trained network's Hessian.

    A few large, well separated outliers (the top ``n_outliers``, spread log-uniformly in
    ``[top/10, top]``) above a bulk concentrated near zero, a fraction of it slightly
    negative (Papyan 2019; Ghorbani et al. 2019).

    Returns
    -------
    numpy.ndarray
        ``dim`` eigenvalues in ascending order.
    """
    dim = check_int("dim", dim, lo=2)
    n_outliers = check_int("n_outliers", n_outliers, lo=0, hi=dim - 1)
    top = check_float("top", top, lo=0.0, lo_open=True)
    bulk_scale = check_float("bulk_scale", bulk_scale, lo=0.0)
    negative_fraction = check_float("negative_fraction", negative_fraction, lo=0.0, hi=1.0)
    gen, _ = as_rng(rng)
    n_bulk = dim - n_outliers
    bulk = bulk_scale * gen.standard_exponential(n_bulk) * top / 100.0
    neg = gen.random(n_bulk) < negative_fraction
    bulk[neg] *= -0.2
    outliers = top * 10.0 ** (-gen.random(n_outliers))
    if n_outliers:
        outliers[np.argmax(outliers)] = top
    return np.sort(np.concatenate([bulk, outliers]))
