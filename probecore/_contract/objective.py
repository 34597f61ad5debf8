"""The Objective contract: a scalar function of one flat parameter vector.

Every algorithm in probecore talks to a model only through this contract, so the core
never needs to know which framework (if any) computes the loss.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from probecore._contract.layout import Layout
from probecore._contract.validation import check_matrix, check_vector

__all__ = ["AbstractObjective", "Objective", "require_objective"]


@runtime_checkable
class Objective(Protocol):
    """A scalar loss of a flat parameter vector, with exact derivatives.

    Backends (PyTorch, JAX, analytic, third-party) produce objects with these members;
    every probecore algorithm consumes them. :class:`AbstractObjective` implements the
    optional members for anyone who writes only ``loss``, ``grad`` and ``hvp``.

    Attributes
    ----------
    dim : int
        Length of the parameter vector.
    dtype : numpy.dtype
        ``float32`` or ``float64``; inputs and outputs use it.
    layout : Layout
        Named blocks of the vector (for filter normalization and per-block reports).
    x0 : numpy.ndarray
        The model's own parameters, flat.
    n_examples : int or None
        Size of the data set the loss averages over (None for data-free objectives).
    """

    @property
    def dim(self) -> int: ...

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def layout(self) -> Layout: ...

    @property
    def x0(self) -> np.ndarray: ...

    @property
    def n_examples(self) -> int | None: ...

    def loss(self, x: np.ndarray) -> float:
        """Mean loss over the whole data set, weighted by example count."""
        ...

    def grad(self, x: np.ndarray) -> np.ndarray:
        """Gradient of :meth:`loss` at ``x``."""
        ...

    def loss_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient in one pass."""
        ...

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Exact Hessian-vector product ``H(x) @ v``."""
        ...

    def hvp_many(self, x: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Hessian times each row of ``V`` (shape ``(k, dim)``); returns ``(k, dim)``."""
        ...

    def losses_in_span(
        self, origin: np.ndarray, basis: np.ndarray, coeffs: np.ndarray
    ) -> np.ndarray:
        """Losses at ``origin + coeffs @ basis`` for each row of ``coeffs``."""
        ...

    def metrics(self, x: np.ndarray) -> dict[str, float]:
        """Optional extra numbers at ``x`` (accuracy, ...); may be empty."""
        ...

    def subset(self, indices: np.ndarray) -> Objective:
        """The same objective on the examples ``indices`` of its data set."""
        ...


class AbstractObjective:
    """Base class that completes an objective from ``loss``, ``grad`` and ``hvp``.

    Subclasses set ``dim``, ``dtype``, ``layout`` and ``x0`` (as attributes or
    properties) and implement :meth:`loss`, :meth:`grad` and :meth:`hvp`. The other
    members of :class:`Objective` get correct, if unhurried, default implementations:
    ``hvp_many`` loops, ``losses_in_span`` forms and evaluates one point at a time, so
    that memory stays ``O(dim)`` however many points a chunk holds.
    """

    # set by subclasses (attributes or properties); declared for type checkers
    dim: int
    dtype: np.dtype
    layout: Layout
    x0: np.ndarray
    n_examples: int | None = None
    chunk_size: int = 64

    def loss(self, x: np.ndarray) -> float:  # pragma: no cover - abstract
        """Mean loss at ``x``."""
        raise NotImplementedError

    def grad(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Gradient at ``x``."""
        raise NotImplementedError

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Hessian-vector product at ``x``."""
        raise NotImplementedError

    def loss_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at ``x`` (two calls unless a subclass fuses them)."""
        return self.loss(x), self.grad(x)

    def hvp_many(self, x: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Hessian-vector products for each row of ``V``."""
        V = check_matrix("V", V, dim=self.dim, dtype=self.dtype)
        out = np.empty_like(V)
        for i in range(V.shape[0]):
            out[i] = self.hvp(x, V[i])
        return out

    def losses_in_span(
        self, origin: np.ndarray, basis: np.ndarray, coeffs: np.ndarray
    ) -> np.ndarray:
        """Losses at ``origin + coeffs @ basis``, one point at a time (:func:`span_point`).

        Memory is one vector of ``dim`` whatever the number of points: the point in the
        objective's dtype (and two float64 blocks of scratch).
        """
        origin, basis, coeffs = check_span(self, origin, basis, coeffs)
        out = np.empty(coeffs.shape[0], dtype=np.float64)
        work: dict[str, np.ndarray] = {}
        for j, c in enumerate(coeffs):  # one point at a time: O(dim) memory
            # a new array per point (a loss may keep the array it was given)
            out[j] = self.loss(span_point(origin, basis, c, work=work))
        return out

    def metrics(self, x: np.ndarray) -> dict[str, float]:
        """No extra metrics by default."""
        return {}

    def subset(self, indices: np.ndarray) -> Objective:
        """Refuse: this objective has no data set to take a subset of."""
        raise TypeError(
            f"{type(self).__name__} has no data set, so it has no subsets; "
            "`subset` applies to objectives built from data."
        )


def require_objective(objective: Any, *members: str, name: str = "objective") -> Objective:
    """``objective`` itself, after checking that it has ``dim``, ``dtype`` and ``members``.

    The one check of an objective argument that every algorithm uses: structural (the
    members it needs, as :class:`Objective` is a protocol), so that partial objectives
    that provide what an algorithm uses are accepted.

    Raises
    ------
    TypeError
        Naming the parameter, the first missing member and the type received.
    """
    for member in ("dim", "dtype", *members):
        if not hasattr(objective, member):
            raise TypeError(
                f"`{name}` must be a probecore Objective (it has no {member!r}); got "
                f"{type(objective).__name__}. For a model, pass "
                "`probecore.objective(model, loss_fn, data)`."
            )
    return objective


def check_span(
    objective: Any, origin: Any, basis: Any, coeffs: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``losses_in_span``'s arguments checked against ``objective``: origin, basis, coeffs.

    ``origin`` a vector and ``basis`` a ``(k, dim)`` matrix of the objective's size and
    dtype, ``coeffs`` a float64 ``(n_points, k)`` array; anything else raises naming it.
    """
    origin = check_vector("origin", origin, dim=objective.dim, dtype=objective.dtype)
    basis = check_matrix("basis", basis, dim=objective.dim, dtype=objective.dtype)
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if coeffs.ndim != 2 or coeffs.shape[1] != basis.shape[0]:
        raise ValueError(
            f"`coeffs` must have shape (n_points, {basis.shape[0]}); got {coeffs.shape}."
        )
    return origin, basis, coeffs


_SPAN_BLOCK = 1 << 15  # entries per block: 256 KiB of float64 scratch, whatever dim is


def span_point(
    origin: np.ndarray,
    basis: np.ndarray,
    c: np.ndarray,
    *,
    work: dict[str, np.ndarray] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``origin + (c @ basis).astype(origin.dtype)``, in one vector of memory.

    ``c @ basis`` with a float32 ``basis`` and float64 ``c`` would first copy the whole
    basis to float64 (``k`` vectors of ``dim``); here the combination is accumulated row
    by row in float64, skipping zero coefficients, then rounded once to ``origin``'s dtype
    and added to ``origin``, as the batched expression does -- block by block of
    ``2**15`` entries, so that the only vector allocated is the point itself (float64
    scratch of at most two blocks, reused; a float64 point is accumulated in place). The
    arithmetic of every entry is the same as the whole-vector expression's, so the
    result does not depend on the blocking.

    Parameters
    ----------
    origin : numpy.ndarray
        ``(dim,)``, in the objective's dtype.
    basis : numpy.ndarray
        ``(k, dim)``.
    c : numpy.ndarray
        ``(k,)`` coefficients (float64).
    work : dict, optional
        Scratch blocks, made on first need and reused by later calls that pass the same
        dict.
    out : numpy.ndarray, optional
        Where to write the point (``origin``'s shape and dtype; not ``origin`` itself):
        a backend's parameter buffer. Default: a new array.

    Returns
    -------
    numpy.ndarray
        The point: ``out``, or a new array of ``origin``'s dtype.
    """
    work = {} if work is None else work
    out = np.empty_like(origin) if out is None else out
    nonzero = [
        (float(ci), row)
        for ci, row in zip(np.asarray(c, np.float64), basis, strict=True)
        if ci != 0.0
    ]
    size = min(_SPAN_BLOCK, origin.size)
    in_place = out.dtype == np.float64
    for name, needed in (("acc", not in_place), ("term", len(nonzero) > 1)):
        if needed and (name not in work or work[name].size < size):
            work[name] = np.empty(size)
    for start in range(0, origin.size, _SPAN_BLOCK):
        stop = min(start + _SPAN_BLOCK, origin.size)
        block = out[start:stop]
        a = block if in_place else work["acc"][: stop - start]
        t = work["term"][: stop - start] if len(nonzero) > 1 else a
        if not nonzero:
            a.fill(0.0)
        for n, (ci, row) in enumerate(nonzero):
            if n == 0:
                np.multiply(row[start:stop], ci, out=a, dtype=np.float64)
            else:
                np.multiply(row[start:stop], ci, out=t, dtype=np.float64)
                a += t
        if not in_place:
            np.copyto(block, a, casting="same_kind")
        block += origin[start:stop]
    return out


SPAN_ROWS_NUMBERS = 1 << 17  # numbers in a block of points formed together (span_points)


def span_points(
    origin: np.ndarray, basis: np.ndarray, coeffs: np.ndarray, *, out: np.ndarray
) -> np.ndarray:
    """The points ``origin + c @ basis`` for each row ``c`` of ``coeffs``, into ``out``.

    Row for row bitwise equal to :func:`span_point` (the same float64 products and sums,
    zero coefficients skipped, one rounding to ``origin``'s dtype, then ``origin``
    added), formed with a few whole-block array operations instead of several per
    point: on the 2,410-parameter MLP of ``docs/benchmarks.md`` a point cost 6 µs this
    way against 12 µs one at a time. Scratch is two float64 blocks of ``out``'s size,
    so a caller bounds the memory through the rows it passes: at most
    ``SPAN_ROWS_NUMBERS // dim`` rows keeps it independent of the number of points.

    Parameters
    ----------
    origin : numpy.ndarray
        ``(dim,)``, in the objective's dtype.
    basis : numpy.ndarray
        ``(k, dim)``.
    coeffs : numpy.ndarray
        ``(n, k)`` coefficients (float64).
    out : numpy.ndarray
        ``(n, dim)`` in ``origin``'s dtype, where the points are written.

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if coeffs.ndim != 2 or coeffs.shape[1] != basis.shape[0]:
        raise ValueError(
            f"`coeffs` must have shape (n_points, {basis.shape[0]}); got {coeffs.shape}."
        )
    if np.may_share_memory(out, origin) or np.may_share_memory(out, basis):
        raise ValueError("`out` must not overlap `origin` or `basis`: it is written block-wise.")
    if out.shape != (coeffs.shape[0], origin.size) or out.dtype != origin.dtype:
        raise ValueError(
            f"`out` must be a {origin.dtype} array of shape {(coeffs.shape[0], origin.size)}; "
            f"got {out.dtype} {out.shape}."
        )
    if coeffs.shape[0] == 0:
        return out
    # rows that skip the same coefficients share their arithmetic: one pass per pattern
    nonzero = coeffs != 0.0
    if nonzero.shape[1] <= 62:  # each row's pattern as the bits of one integer
        codes = nonzero @ (1 << np.arange(nonzero.shape[1], dtype=np.int64))
    else:
        codes = np.unique(nonzero, axis=0, return_inverse=True)[1].ravel()
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        pattern = nonzero[rows[0]]
        every = len(rows) == coeffs.shape[0]
        c = coeffs if every else coeffs[rows]
        cols = np.flatnonzero(pattern)
        if len(cols) == 0:  # the origin itself (plus zero, as span_point adds it)
            acc = np.zeros((len(rows), origin.size))
        for n, col in enumerate(cols):
            term = np.multiply(c[:, col : col + 1], basis[col], dtype=np.float64)
            if n == 0:
                acc = term
            else:
                acc += term
        if every:
            np.copyto(out, acc, casting="same_kind")
            out += origin
        else:
            block = acc.astype(origin.dtype)
            block += origin
            out[rows] = block
    return out
