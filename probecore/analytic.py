"""Objectives with closed-form answers, for tests, benchmarks and examples.

* :class:`Quadratic` -- ``½ xᵀAx + bᵀx`` with a spectrum you choose (negative, repeated and
  clustered eigenvalues allowed); its Hessian, eigenvalues and trace are known exactly.
* :class:`Rosenbrock` -- the n-dimensional Rosenbrock function with its closed-form
  gradient and tridiagonal Hessian.
* :class:`LogisticRegression` -- multinomial logistic regression with an L2 term on real
  data (scikit-learn's digits via :func:`digits_logistic_regression`); its Hessian
  ``mean_i J_iᵀ (diag(p_i) − p_i p_iᵀ) J_i + λ I_W`` is computed in closed form.

Each has a layout of several named blocks so that per-block tools have something to work on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special

from probecore._errors import ConvergenceError
from probecore._objective import AbstractObjective, Layout
from probecore._validation import (
    as_rng,
    check_dtype,
    check_float,
    check_int,
    check_option,
    check_vector,
)

__all__ = [
    "LogisticRegression",
    "Quadratic",
    "Rosenbrock",
    "Ring",
    "default_layout",
    "digits_logistic_regression",
    "nn_like_spectrum",
]


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


def _check_layout(layout: Layout | None, dim: int) -> Layout:
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
        self.layout = _check_layout(layout, self.dim)
        self.eigenvalues: np.ndarray | None = None
        self.eigenvectors: np.ndarray | None = None

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


class Rosenbrock(AbstractObjective):
    r"""n-dimensional Rosenbrock function.

    .. math::

        f(x) = \sum_{i=1}^{n-1} a\,(x_{i+1} - x_i^2)^2 + (1 - x_i)^2

    with ``a = 100`` by default. Its minimum is ``f(1, ..., 1) = 0`` where the Hessian is
    positive definite; elsewhere it can be indefinite. The Hessian is tridiagonal.

    Parameters
    ----------
    dim : int
        Number of variables (at least 2).
    a : float
        Coupling coefficient.
    x0 : numpy.ndarray, optional
        Default: the classical start ``(-1.2, 1, -1.2, 1, ...)``.
    dtype, layout
        As for :class:`Quadratic`.
    """

    def __init__(
        self,
        dim: int,
        *,
        a: float = 100.0,
        x0: np.ndarray | None = None,
        dtype: Any = np.float64,
        layout: Layout | None = None,
    ) -> None:
        self.dim = check_int("dim", dim, lo=2)
        self.a = check_float("a", a, lo=0.0)
        self.dtype = check_dtype("dtype", dtype)
        if x0 is None:
            x0 = np.where(np.arange(self.dim) % 2 == 0, -1.2, 1.0)
        self.x0 = check_vector("x0", np.asarray(x0, dtype=self.dtype), dim=self.dim)
        self.layout = _check_layout(layout, self.dim)

    def _x(self, x: np.ndarray) -> np.ndarray:
        return check_vector("x", x, dim=self.dim).astype(np.float64)

    def loss(self, x: np.ndarray) -> float:
        """Value at ``x``."""
        x = self._x(x)
        return float(np.sum(self.a * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))

    def grad(self, x: np.ndarray) -> np.ndarray:
        """Closed-form gradient."""
        x = self._x(x)
        r = x[1:] - x[:-1] ** 2
        g = np.zeros_like(x)
        g[:-1] = -4 * self.a * x[:-1] * r - 2 * (1 - x[:-1])
        g[1:] += 2 * self.a * r
        return g.astype(self.dtype)

    def hessian_bands(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Diagonal and off-diagonal of the tridiagonal Hessian at ``x`` (float64)."""
        x = self._x(x)
        a = self.a
        diag = np.zeros_like(x)
        diag[:-1] = 12 * a * x[:-1] ** 2 - 4 * a * x[1:] + 2
        diag[1:] += 2 * a
        off = -4 * a * x[:-1]
        return diag, off

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """Dense Hessian at ``x`` (float64)."""
        diag, off = self.hessian_bands(x)
        return np.diag(diag) + np.diag(off, 1) + np.diag(off, -1)

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Tridiagonal Hessian times ``v``."""
        diag, off = self.hessian_bands(x)
        v = check_vector("v", v, dim=self.dim).astype(np.float64)
        out = diag * v
        out[:-1] += off * v[1:]
        out[1:] += off * v[:-1]
        return out.astype(self.dtype)


class Ring(AbstractObjective):
    r"""A loss whose minimum set is the unit sphere: ``f(x) = (‖x‖² − 1)²``.

    Two opposite points of the sphere are both minima (``f = 0``) and the straight
    segment between them passes through the origin, where ``f = 1``: the linear barrier
    is exactly 1, while a curve along the sphere has none. The test case for mode
    connectivity.

    Parameters
    ----------
    dim : int
        Number of variables (at least 2; default 2, the ring).
    x0 : numpy.ndarray, optional
        Default ``(1, 0, ..., 0)``, a minimum.
    dtype, layout
        As for :class:`Quadratic`.

    Examples
    --------
    >>> r = Ring()
    >>> r.loss(np.array([0.0, 1.0])), r.loss(np.zeros(2))
    (0.0, 1.0)
    """

    def __init__(
        self,
        dim: int = 2,
        *,
        x0: np.ndarray | None = None,
        dtype: Any = np.float64,
        layout: Layout | None = None,
    ) -> None:
        self.dim = check_int("dim", dim, lo=2)
        self.dtype = check_dtype("dtype", dtype)
        if x0 is None:
            x0 = np.eye(1, self.dim)[0]
        self.x0 = check_vector("x0", np.asarray(x0, dtype=self.dtype), dim=self.dim)
        self.layout = _check_layout(layout, self.dim)

    def _x(self, x: np.ndarray) -> np.ndarray:
        return check_vector("x", x, dim=self.dim).astype(np.float64)

    def loss(self, x: np.ndarray) -> float:
        """Value at ``x``."""
        x = self._x(x)
        return float((x @ x - 1.0) ** 2)

    def grad(self, x: np.ndarray) -> np.ndarray:
        """``4(‖x‖² − 1)·x``."""
        x = self._x(x)
        return (4.0 * (x @ x - 1.0) * x).astype(self.dtype)

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """Dense Hessian ``4(‖x‖² − 1)·I + 8·x xᵀ`` (float64)."""
        x = self._x(x)
        return 4.0 * (x @ x - 1.0) * np.eye(self.dim) + 8.0 * np.outer(x, x)

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Hessian times ``v`` in closed form."""
        x = self._x(x)
        v = check_vector("v", v, dim=self.dim).astype(np.float64)
        return (4.0 * (x @ x - 1.0) * v + 8.0 * x * (x @ v)).astype(self.dtype)


class LogisticRegression(AbstractObjective):
    r"""Multinomial logistic regression with an L2 penalty on the weights.

    Parameters are a weight matrix ``W`` of shape ``(n_classes, n_features)`` (block
    ``"weight"``) followed by a bias ``b`` of length ``n_classes`` (block ``"bias"``).

    .. math::

        L(W, b) = \frac1n \sum_i -\log \operatorname{softmax}(W f_i + b)_{y_i}
                  + \frac{\lambda}{2} \lVert W \rVert_F^2

    The Hessian is :math:`\frac1n\sum_i J_i^\top (\operatorname{diag} p_i - p_i p_i^\top)
    J_i + \lambda I_W`, with :math:`J_i` the Jacobian of the logits, computed in closed form
    by :meth:`hessian`.

    Parameters
    ----------
    features : numpy.ndarray
        ``(n, n_features)`` inputs.
    labels : numpy.ndarray
        ``(n,)`` integer class labels in ``[0, n_classes)``.
    n_classes : int, optional
        Default ``labels.max() + 1``.
    l2 : float
        Penalty ``λ`` (non-negative).
    x0 : numpy.ndarray, optional
        Starting parameters (default zero).
    dtype : {float64, float32}
    """

    def __init__(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        n_classes: int | None = None,
        l2: float = 1e-3,
        x0: np.ndarray | None = None,
        dtype: Any = np.float64,
    ) -> None:
        self.dtype = check_dtype("dtype", dtype)
        F = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels)
        if F.ndim != 2 or F.shape[0] == 0:
            raise ValueError(f"`features` must be a non-empty 2-D array; got shape {F.shape}.")
        if y.shape != (F.shape[0],):
            raise ValueError(
                f"`labels` must have shape ({F.shape[0]},) to match `features`; got {y.shape}."
            )
        if y.dtype.kind not in "iu":
            raise TypeError(f"`labels` must be integers; got dtype {y.dtype}.")
        if not np.all(np.isfinite(F)):
            raise ValueError("`features` must be finite.")
        k = int(y.max()) + 1 if n_classes is None else check_int("n_classes", n_classes, lo=2)
        if y.min() < 0 or y.max() >= k:
            raise ValueError(
                f"`labels` must lie in [0, {k - 1}]; got range [{y.min()}, {y.max()}]."
            )
        self.features = F
        self.labels = y.astype(np.int64)
        self.n_classes = k
        self.n_features = F.shape[1]
        self.l2 = check_float("l2", l2, lo=0.0)
        self.layout = Layout.from_shapes(
            [("weight", (k, self.n_features), "weight"), ("bias", (k,), "bias")]
        )
        self.dim = self.layout.dim
        self.x0 = (
            np.zeros(self.dim, self.dtype)
            if x0 is None
            else check_vector("x0", x0, dim=self.dim, dtype=self.dtype)
        )
        self.n_examples = F.shape[0]
        self._onehot = np.eye(k)[self.labels]

    def _unpack(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = check_vector("x", x, dim=self.dim).astype(np.float64)
        nw = self.n_classes * self.n_features
        return x[:nw].reshape(self.n_classes, self.n_features), x[nw:]

    def _probs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        W, b = self._unpack(x)
        logits = self.features @ W.T + b
        return W, logits, special.softmax(logits, axis=1)

    def loss(self, x: np.ndarray) -> float:
        """Mean cross-entropy plus ``λ/2 ‖W‖²``."""
        W, logits, _ = self._probs(x)
        logz = special.logsumexp(logits, axis=1)
        nll = np.mean(logz - logits[np.arange(self.n_examples), self.labels])
        return float(nll + 0.5 * self.l2 * np.sum(W * W))

    def loss_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient in one pass."""
        W, logits, p = self._probs(x)
        logz = special.logsumexp(logits, axis=1)
        nll = np.mean(logz - logits[np.arange(self.n_examples), self.labels])
        r = (p - self._onehot) / self.n_examples
        gW = r.T @ self.features + self.l2 * W
        gb = r.sum(axis=0)
        g = np.concatenate([gW.ravel(), gb]).astype(self.dtype)
        return float(nll + 0.5 * self.l2 * np.sum(W * W)), g

    def grad(self, x: np.ndarray) -> np.ndarray:
        """Closed-form gradient ``mean_i (p_i − e_{y_i}) f̃_iᵀ + λ W``."""
        return self.loss_and_grad(x)[1]

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Closed-form Hessian-vector product."""
        return self.hvp_many(x, check_vector("v", v, dim=self.dim)[None, :])[0]

    def hvp_many(self, x: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Hessian times each row of ``V``, all rows in one pass over the data."""
        _, _, p = self._probs(x)
        V = np.asarray(V, dtype=np.float64)
        if V.ndim != 2 or V.shape[1] != self.dim:
            raise ValueError(f"`V` must have shape (k, {self.dim}); got {V.shape}.")
        k, f = self.n_classes, self.n_features
        VW = V[:, : k * f].reshape(-1, k, f)
        vb = V[:, k * f :]
        dz = np.einsum("nf,mkf->mnk", self.features, VW) + vb[:, None, :]
        u = p * dz - p * np.sum(p * dz, axis=2, keepdims=True)
        u /= self.n_examples
        hW = np.einsum("mnk,nf->mkf", u, self.features) + self.l2 * VW
        hb = u.sum(axis=1)
        return np.concatenate([hW.reshape(V.shape[0], -1), hb], axis=1).astype(self.dtype)

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """Dense Hessian in closed form (float64), in the flat ``[W.ravel(), b]`` order."""
        _, _, p = self._probs(x)
        n, k, f = self.n_examples, self.n_classes, self.n_features
        Ft = np.hstack([self.features, np.ones((n, 1))])  # augmented inputs
        Hz = np.einsum("nc,cd->ncd", p, np.eye(k)) - np.einsum("nc,nd->ncd", p, p)
        H4 = np.einsum("ncd,ni,nj->cidj", Hz, Ft, Ft) / n  # (k, f+1, k, f+1)
        # flat index of (class c, feature i): W -> c*f + i ; bias (i == f) -> k*f + c
        idx = np.empty((k, f + 1), dtype=np.int64)
        idx[:, :f] = np.arange(k)[:, None] * f + np.arange(f)[None, :]
        idx[:, f] = k * f + np.arange(k)
        H = np.empty((self.dim, self.dim))
        flat = idx.ravel()
        H[np.ix_(flat, flat)] = H4.reshape(k * (f + 1), k * (f + 1))
        H[np.arange(k * f), np.arange(k * f)] += self.l2
        return H

    def metrics(self, x: np.ndarray) -> dict[str, float]:
        """Classification accuracy at ``x``."""
        _, logits, _ = self._probs(x)
        return {"accuracy": float(np.mean(np.argmax(logits, axis=1) == self.labels))}

    def subset(self, indices: np.ndarray) -> LogisticRegression:
        """The same model on the examples ``indices``."""
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
            raise ValueError("`indices` must be a non-empty 1-D integer array.")
        if idx.min() < 0 or idx.max() >= self.n_examples:
            raise ValueError(f"`indices` must lie in [0, {self.n_examples - 1}].")
        return LogisticRegression(
            self.features[idx],
            self.labels[idx],
            n_classes=self.n_classes,
            l2=self.l2,
            x0=self.x0,
            dtype=self.dtype,
        )

    def minimize(self, *, tol: float = 1e-10, maxiter: int = 2000) -> np.ndarray:
        """Train to a minimum with L-BFGS and return the point.

        The minimum value is unique for ``λ > 0``, but not the point: the bias is not
        penalised and a shift shared by all biases leaves the softmax unchanged, so the
        Hessian always has a zero eigenvalue along that direction.

        Raises
        ------
        ConvergenceError
            If L-BFGS stops with a gradient norm above ``100·tol``.
        """
        from scipy.optimize import minimize

        res = minimize(
            lambda z: self.loss_and_grad(z),
            self.x0.astype(np.float64),
            jac=True,
            method="L-BFGS-B",
            options={"gtol": tol, "ftol": tol * 1e-3, "maxiter": maxiter},
        )
        gnorm = float(np.max(np.abs(self.grad(res.x))))
        if not res.success and gnorm > 100 * tol:
            raise ConvergenceError(
                f"L-BFGS stopped without converging ({res.message}); max |gradient| {gnorm:.3g}.",
                res,
            )
        return res.x.astype(self.dtype)


def digits_logistic_regression(
    *,
    l2: float = 1e-3,
    dtype: Any = np.float64,
    split: str = "train",
    test_fraction: float = 0.25,
    seed: int = 0,
) -> LogisticRegression:
    """Logistic regression on scikit-learn's handwritten digits (1797 8×8 images).

    Pixel intensities are scaled to ``[0, 1]``; a stratified split with the given
    ``seed`` separates ``"train"`` from ``"test"`` examples (``split="all"`` uses all).
    Needs scikit-learn (``pip install probecore[data]``), which ships the data set.
    """
    check_option("split", split, ("train", "test", "all"))
    test_fraction = check_float("test_fraction", test_fraction, lo=0.0, lo_open=True, hi=0.9)
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "digits_logistic_regression needs scikit-learn, which ships the digits data: "
            "pip install 'probecore[data]'."
        ) from exc
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    if split != "all":
        gen = np.random.default_rng(seed)
        test = np.zeros(len(y), dtype=bool)
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            n_test = int(round(test_fraction * len(members)))
            test[gen.choice(members, n_test, replace=False)] = True
        mask = test if split == "test" else ~test
        X, y = X[mask], y[mask]
    return LogisticRegression(X, y, n_classes=10, l2=l2, dtype=dtype)
