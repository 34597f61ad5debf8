"""Curves between two parameter vectors (Garipov et al. 2018).

A curve is a pure function of flat vectors: its points are fixed linear combinations of
control points ``P_0 = start, P_1 … P_n, P_{n+1} = end``, with coefficients that depend
only on ``t`` (Bernstein polynomials for a Bezier curve, hat functions for a polygonal
chain). Nothing depends on the architecture, so any backend's models connect the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from probecore._contract.objective import Objective
from probecore._contract.results import ResultBase, register
from probecore._contract.validation import (
    check_option,
    check_vector,
)

__all__ = ["KINDS", "Curve", "check_endpoint", "coefficients", "linear_curve"]

KINDS = ("line", "chain", "bezier")


# --------------------------------------------------------------------------- curves


def coefficients(kind: str, n_bends: int, t: np.ndarray) -> np.ndarray:
    """``(len(t), n_bends + 2)`` coefficients of the control points at each ``t``."""
    t = np.asarray(t, dtype=np.float64)
    n = n_bends + 1  # number of segments (chain) or polynomial order (Bezier)
    if kind == "line":
        return np.stack([1.0 - t, t], axis=1)
    if kind == "bezier":
        k = np.arange(n + 1)
        binom = np.array([math.comb(n, int(i)) for i in k], dtype=np.float64)
        return binom * t[:, None] ** k * (1.0 - t[:, None]) ** (n - k)
    # polygonal chain: knots at i/n, piecewise-linear hat functions
    s = np.clip(t, 0.0, 1.0) * n
    seg = np.minimum(np.floor(s).astype(int), n - 1)
    frac = s - seg
    C = np.zeros((t.size, n + 1))
    rows = np.arange(t.size)
    C[rows, seg] = 1.0 - frac
    C[rows, seg + 1] += frac
    return C


@register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Curve(ResultBase):
    """A curve ``φ(t) = Σ_k c_k(t)·P_k``, ``t ∈ [0, 1]``, between two fixed endpoints.

    Attributes
    ----------
    kind : {"line", "chain", "bezier"}
        ``"line"``: the straight segment. ``"chain"``: a polygonal chain through the
        bends at ``t = k/(n+1)``. ``"bezier"``: a Bezier curve of order ``n + 1`` (one
        bend: quadratic).
    points : numpy.ndarray
        ``(n_bends + 2, dim)`` control points; the first and last are the endpoints.

    Examples
    --------
    >>> c = Curve(kind="bezier", points=np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 0.0]]))
    >>> c.point(0.5).tolist()
    [1.0, 1.0]
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("points",)

    kind: str
    points: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_option("kind", self.kind, KINDS)
        ResultBase.__post_init__(self)
        if self.points.ndim != 2 or self.points.shape[0] < 2:
            raise ValueError(
                f"`points` must have shape (n_bends + 2, dim); got {self.points.shape}."
            )
        if not np.issubdtype(self.points.dtype, np.floating) or not np.all(
            np.isfinite(self.points)
        ):
            raise ValueError("`points` must be finite floats (a control point holds NaN or inf).")
        if self.kind == "line" and self.points.shape[0] != 2:
            raise ValueError("a 'line' curve has exactly two points (its endpoints).")

    @property
    def n_bends(self) -> int:
        """Number of free control points."""
        return self.points.shape[0] - 2

    @property
    def dim(self) -> int:
        """Length of the parameter vectors."""
        return self.points.shape[1]

    def coefficients(self, t: Any) -> np.ndarray:
        """``(len(t), n_bends + 2)`` weights of the control points at each ``t``."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        if t.ndim != 1 or not np.all(np.isfinite(t)) or t.min() < 0.0 or t.max() > 1.0:
            raise ValueError("`t` must be finite values in [0, 1].")
        return coefficients(self.kind, self.n_bends, t)

    def point(self, t: float) -> np.ndarray:
        """``φ(t)`` in the dtype of the control points (one ``t``)."""
        if np.ndim(t) != 0:
            raise TypeError(
                "`t` must be one number for `point`; for many, use `coefficients(ts) @ points`."
            )
        c = self.coefficients([t])[0]
        return (c @ self.points.astype(np.float64)).astype(self.points.dtype)


def linear_curve(start: Any, end: Any) -> Curve:
    """The straight segment from ``start`` to ``end`` as a :class:`Curve`."""
    a = np.asarray(start)
    b = check_vector("end", end, dim=a.size, dtype=a.dtype)
    return Curve(kind="line", points=np.stack([a, b]))


def check_endpoint(name: str, value: Any, objective: Objective) -> np.ndarray:
    """A flat endpoint that matches ``objective``: same layout, size and dtype.

    ``value`` is a flat vector or another Objective (its ``x0``, after its layout is
    compared block by block with the objective's).
    """
    dtype = np.dtype(objective.dtype)
    layout = getattr(objective, "layout", None)
    if hasattr(value, "x0") and hasattr(value, "dim"):  # another model's objective
        other = getattr(value, "layout", None)
        if layout is not None and other is not None:
            for i, (a, b) in enumerate(zip(layout, other, strict=False)):
                if (a.name, a.shape) != (b.name, b.shape):
                    raise ValueError(
                        f"`{name}` does not match `objective`: block {i} is {b.name!r} with "
                        f"shape {b.shape} in `{name}` but {a.name!r} with shape {a.shape} in "
                        "`objective`."
                    )
            if len(layout) != len(other):
                extra = (layout if len(layout) > len(other) else other)[
                    min(len(layout), len(other))
                ]
                raise ValueError(
                    f"`{name}` does not match `objective`: block {extra.name!r} is in one "
                    f"and not the other ({len(other)} against {len(layout)} blocks)."
                )
        if np.dtype(value.dtype) != dtype:
            raise ValueError(
                f"`{name}` is {np.dtype(value.dtype)} but `objective` is {dtype}; build both "
                "in the same dtype."
            )
        value = value.x0
    arr = np.asarray(value)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.floating):
        hint = ""
        if hasattr(value, "parameters") or hasattr(value, "apply"):
            hint = " (for a model, pass `probecore.objective(model, loss_fn, data)`)"
        raise TypeError(
            f"`{name}` must be a flat float vector or an Objective{hint}; got "
            f"{type(value).__name__} with shape {getattr(arr, 'shape', None)}."
        )
    if arr.size != objective.dim:
        where = ""
        if layout is not None:
            short = min(arr.size, objective.dim)
            block = next((b for b in layout if b.offset + b.size > short), None)
            if block is not None:
                where = f"; the first block it does not fill is {block.name!r}"
        raise ValueError(
            f"`{name}` has {arr.size} entries but `objective` has dim {objective.dim}{where}."
        )
    if arr.dtype != dtype:
        raise ValueError(
            f"`{name}` is {arr.dtype} but `objective` is {dtype}; convert it first "
            f"(`{name}.astype(np.{dtype})`) or build the objective in {arr.dtype}."
        )
    return check_vector(name, arr, dim=objective.dim, dtype=dtype)
