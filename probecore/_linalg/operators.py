"""The Hessian of an objective at a point as a scipy ``LinearOperator``."""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from probecore._contract.collective import is_lead
from probecore._contract.objective import Objective
from probecore._contract.progress import progress_bar
from probecore._contract.provenance import objective_record
from probecore._contract.validation import check_vector

__all__ = ["HessianOperator", "as_operator", "recorded", "small_dense"]

# Dense work below this many flops runs in one BLAS thread (see small_dense): 1e8 flops
# take about 10 ms on one core, where a second thread saves little.
SMALL_DENSE_FLOPS = 1e8
_BLAS: list[Any] = []  # threadpoolctl's controller, made on first use ([None] without it)


def small_dense(flops: float) -> AbstractContextManager[Any]:
    """A context in which numpy's BLAS uses one thread, for ``flops`` of small dense work.

    LAPACK's QR of a tall ``(dim, s)`` block calls BLAS-2 kernels column by column, and
    OpenBLAS spreads each over all its threads once the block holds more than about 10⁴
    entries, so every column waits until the other threads are scheduled. On the 2-core
    development machine under load, the QR of Hutch++'s ``(2410, 33)`` sketch took
    0.1–1.2 s in 2 threads and 1–20 ms in one (``docs/benchmarks.md``, small models).
    Work of ``SMALL_DENSE_FLOPS`` or more keeps every thread, as does everything when
    ``threadpoolctl`` (a dependency of probecore) is missing. The thread count is
    restored on exit. The QR factors came out bitwise equal in one and two threads; a
    matrix product may differ in its last bits (OpenBLAS splits it differently), as it
    does between machines with other numbers of cores.

    Parameters
    ----------
    flops : float
        The work's size, e.g. ``dim * s**2`` for the QR of a ``(dim, s)`` block.

    Examples
    --------
    >>> with small_dense(1e4):
    ...     q, r = np.linalg.qr(np.eye(3))
    """
    if flops >= SMALL_DENSE_FLOPS:
        return nullcontext()
    if not _BLAS:
        try:  # optional, and untyped: imported by name
            threadpoolctl = importlib.import_module("threadpoolctl")
        except ImportError:  # pragma: no cover - a declared dependency of probecore
            _BLAS.append(None)
        else:
            _BLAS.append(threadpoolctl.ThreadpoolController())
    controller = _BLAS[0]
    if controller is None:  # pragma: no cover - see above
        return nullcontext()
    return controller.limit(limits=1, user_api="blas")


class HessianOperator(LinearOperator):
    """``H(x)``, the Hessian of ``objective`` at ``x``, as a counted linear operator.

    The dtype is the objective's, so scipy never spends an HVP probing it. ``matmat``
    goes through :meth:`Objective.hvp_many`, so block methods batch their products.

    Parameters
    ----------
    objective : Objective
        Supplies ``hvp``/``hvp_many``.
    x : numpy.ndarray, optional
        Point where the Hessian is taken (default ``objective.x0``).

    Attributes
    ----------
    n_hvps : int
        Hessian-vector products performed through this operator so far.

    Examples
    --------
    >>> from probecore.analytic import Quadratic
    >>> q = Quadratic.from_spectrum([1.0, 2.0, 3.0], rng=0)
    >>> H = HessianOperator(q)
    >>> v = H @ np.ones(3)
    >>> H.n_hvps
    1
    """

    def __init__(self, objective: Objective, x: np.ndarray | None = None) -> None:
        if not isinstance(objective, Objective):
            raise TypeError(
                "`objective` must implement the probecore.Objective protocol; "
                f"got {type(objective).__name__}."
            )
        dim = int(objective.dim)
        dtype = np.dtype(objective.dtype)
        point = objective.x0 if x is None else x
        self.x = check_vector("x", point, dim=dim, dtype=dtype)
        self.objective = objective
        self.n_hvps = 0
        super().__init__(dtype=dtype, shape=(dim, dim))

    def _matvec(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v).reshape(-1)
        self.n_hvps += 1
        return np.asarray(self.objective.hvp(self.x, v.astype(self.dtype, copy=False)))

    def _matmat(self, V: np.ndarray) -> np.ndarray:
        V = np.asarray(V)
        self.n_hvps += V.shape[1]
        rows = np.ascontiguousarray(V.T, dtype=self.dtype)
        return np.asarray(self.objective.hvp_many(self.x, rows)).T

    def _rmatvec(self, v: np.ndarray) -> np.ndarray:
        return self._matvec(v)  # symmetric

    def _adjoint(self) -> HessianOperator:
        return self


def as_operator(A: Any) -> LinearOperator:
    """Turn what a user passes for "the matrix" into a square ``LinearOperator``.

    Accepts a square ndarray (used as a dense symmetric matrix), any scipy
    ``LinearOperator``, an :class:`Objective` (Hessian at its ``x0``), or an
    ``(objective, x)`` pair. Anything else raises ``TypeError``.
    """
    if isinstance(A, LinearOperator):
        op = A
    elif isinstance(A, tuple) and len(A) == 2 and isinstance(A[0], Objective):
        op = HessianOperator(A[0], A[1])
    elif isinstance(A, Objective):
        op = HessianOperator(A)
    elif isinstance(A, np.ndarray):
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"`A` must be a square matrix; got shape {A.shape}.")
        if A.dtype.kind != "f":
            raise TypeError(f"`A` must have a floating dtype; got {A.dtype}.")
        op = aslinearoperator(A)
    else:
        raise TypeError(
            "`A` must be a square ndarray, a scipy LinearOperator, an Objective or an "
            f"(objective, x) pair; got {type(A).__name__}."
        )
    if op.shape[0] != op.shape[1] or op.shape[0] == 0:
        raise ValueError(f"`A` must be a non-empty square operator; got shape {op.shape}.")
    if op.dtype is None or np.dtype(op.dtype).kind != "f":
        raise TypeError(f"`A` must have a real floating dtype; got {op.dtype}.")
    return op


class Counted:
    """Applies an operator to column blocks and counts the columns it multiplies.

    Parameters
    ----------
    op : LinearOperator
        The operator.
    progress : bool or None
        A progress bar counting the products (True: always, None: on a terminal, False:
        never; see :func:`~probecore._contract.progress.progress_bar`); it closes when
        this object is freed, as the algorithm returns.
    desc : str
        The bar's label.
    total : int, optional
        The products expected (the budget), if known.
    """

    def __init__(
        self,
        op: LinearOperator,
        *,
        progress: bool | None = False,
        desc: str = "HVPs",
        total: int | None = None,
    ) -> None:
        self.op = op
        self.n = op.shape[0]
        self.dtype = np.dtype(op.dtype)
        self.count = 0
        lead = is_lead(getattr(op, "objective", None))  # SPMD: rank 0 alone shows it
        self.bar = progress_bar(total, 0, desc, progress if lead else False, unit="HVP")

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=self.dtype)
        k = 1 if X.ndim == 1 else X.shape[1]
        self.count += k
        out = (
            np.asarray(self.op.matvec(X), dtype=self.dtype).reshape(-1)
            if X.ndim == 1
            else np.asarray(self.op.matmat(X), dtype=self.dtype)
        )
        self.bar.update(k)
        return out


def recorded(op: LinearOperator) -> dict[str, Any]:
    """What a result records about the operator it was computed from.

    For the Hessian of an objective: ``{"objective": ...}``, the objective's type, size,
    dtype, number of examples, the examples it holds when it is a subset
    (``probecore.sample_examples``) and the software versions, as probe runs record them.
    Nothing for a matrix or another operator.
    """
    if isinstance(op, HessianOperator):
        return {"objective": objective_record(op.objective)}
    return {}
