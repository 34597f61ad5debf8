"""Multinomial logistic regression with an L2 term, on real data (scikit-learn's digits)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from probecore._contract.errors import ConvergenceError
from probecore._contract.fingerprint import digest, record_subset
from probecore._contract.layout import Layout
from probecore._contract.objective import AbstractObjective
from probecore._contract.validation import (
    check_dtype,
    check_float,
    check_int,
    check_option,
    check_vector,
)

__all__ = ["LogisticRegression", "digits_logistic_regression"]


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

    n_examples: int  # always known: the data set is given

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

    def fingerprint(self) -> dict[str, str]:
        """What identifies this objective to a run store: digests of the data and of ``l2``."""
        return {
            "data": digest(self.features, self.labels),
            "function": digest(self.l2, self.n_classes),
        }

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
        sub = LogisticRegression(
            self.features[idx],
            self.labels[idx],
            n_classes=self.n_classes,
            l2=self.l2,
            x0=self.x0,
            dtype=self.dtype,
        )
        return record_subset(self, sub, idx)

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
