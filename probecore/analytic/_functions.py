"""Test functions with closed-form Hessians: Rosenbrock and the Ring (a sphere of minima)."""

from __future__ import annotations

from typing import Any

import numpy as np

from probecore._contract.fingerprint import digest
from probecore._contract.layout import Layout
from probecore._contract.objective import AbstractObjective
from probecore._contract.validation import (
    check_dtype,
    check_float,
    check_int,
    check_vector,
)
from probecore.analytic._quadratic import check_layout

__all__ = ["Ring", "Rosenbrock"]


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
        self.layout = check_layout(layout, self.dim)

    def fingerprint(self) -> dict[str, str]:
        """What identifies this function to a run store: its constant ``a``."""
        return {"function": digest("rosenbrock", self.a)}

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
        self.layout = check_layout(layout, self.dim)

    def fingerprint(self) -> dict[str, str]:
        """What identifies this function to a run store (it has no parameters but ``dim``)."""
        return {"function": "ring"}

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
