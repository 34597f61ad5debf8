"""The Objective contract: a scalar function of one flat parameter vector.

Every algorithm in probecore talks to a model only through this contract, so the core
never needs to know which framework (if any) computes the loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from probecore._validation import check_int, check_matrix, check_option, check_vector

__all__ = ["ROLES", "AbstractObjective", "Block", "Layout", "Objective"]

ROLES = ("weight", "bias", "norm", "other")


@dataclass(frozen=True, slots=True)
class Block:
    """One named parameter tensor inside the flat vector.

    Attributes
    ----------
    name : str
        Name of the tensor, e.g. ``"layer1.weight"``.
    shape : tuple of int
        Shape of the tensor. For weight blocks, axis ``filter_axis`` indexes output
        filters, which is what filter normalization uses.
    offset : int
        Index of the block's first entry in the flat vector.
    role : {"weight", "bias", "norm", "other"}
        What the tensor is, so that filter normalization can treat biases and
        normalization parameters as the user asks.
    filter_axis : int
        Axis of ``shape`` that indexes output filters (0 for PyTorch's ``(out, in, ...)``
        weights; -1 for Flax kernels ``(..., in, out)``).
    """

    name: str
    shape: tuple[int, ...]
    offset: int
    role: str = "weight"
    filter_axis: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"`name` must be a non-empty string; got {self.name!r}.")
        shape = tuple(self.shape)
        for s in shape:
            check_int(f"shape of block {self.name!r}", s, lo=0)
        object.__setattr__(self, "shape", tuple(int(s) for s in shape))
        check_int(f"offset of block {self.name!r}", self.offset, lo=0)
        check_option(f"role of block {self.name!r}", self.role, ROLES)
        ndim = max(len(shape), 1)
        check_int(f"filter_axis of block {self.name!r}", self.filter_axis, lo=-ndim, hi=ndim - 1)

    @property
    def size(self) -> int:
        """Number of entries of the block."""
        return math.prod(self.shape)

    @property
    def slice(self) -> slice:
        """Slice of the flat vector that holds this block."""
        return slice(self.offset, self.offset + self.size)


class Layout(Sequence[Block]):
    """Ordered, contiguous named blocks that tile a flat parameter vector.

    Parameters
    ----------
    blocks : sequence of Block
        Blocks in order; each must start where the previous one ends, the first at 0.

    Examples
    --------
    >>> layout = Layout.from_shapes([("w", (3, 2), "weight"), ("b", (3,), "bias")])
    >>> layout.dim
    9
    >>> [b.offset for b in layout]
    [0, 6]
    """

    __slots__ = ("_blocks", "_by_name")

    def __init__(self, blocks: Sequence[Block]) -> None:
        blocks = tuple(blocks)
        if not blocks:
            raise ValueError("`blocks` must hold at least one block; got none.")
        offset = 0
        names: dict[str, Block] = {}
        for block in blocks:
            if not isinstance(block, Block):
                raise TypeError(f"`blocks` must hold Block objects; got {type(block).__name__}.")
            if block.offset != offset:
                raise ValueError(
                    f"block {block.name!r} must start at offset {offset} to keep the layout "
                    f"contiguous; got offset {block.offset}."
                )
            if block.name in names:
                raise ValueError(f"block names must be unique; {block.name!r} appears twice.")
            names[block.name] = block
            offset += block.size
        self._blocks = blocks
        self._by_name = names

    @classmethod
    def from_shapes(cls, specs: Sequence[tuple]) -> Layout:
        """Build a layout from ``(name, shape, role[, filter_axis])`` laid out back to back."""
        blocks = []
        offset = 0
        for name, shape, role, *axis in specs:
            block = Block(name, tuple(shape), offset, role, *axis)
            blocks.append(block)
            offset += block.size
        return cls(blocks)

    @classmethod
    def single(cls, dim: int, name: str = "x", role: str = "other") -> Layout:
        """A layout with a single block covering the whole vector."""
        return cls([Block(name, (dim,), 0, role)])

    @property
    def dim(self) -> int:
        """Total length of the flat vector."""
        last = self._blocks[-1]
        return last.offset + last.size

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, str):
            return self._by_name[index]
        return self._blocks[index]

    def __len__(self) -> int:
        return len(self._blocks)

    def __iter__(self) -> Iterator[Block]:
        return iter(self._blocks)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and self._blocks == other._blocks

    def __hash__(self) -> int:
        return hash(self._blocks)

    def __repr__(self) -> str:
        inner = ", ".join(f"{b.name}{list(b.shape)}:{b.role}" for b in self._blocks)
        return f"Layout({inner})"

    def views(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Reshaped views of ``x`` (no copies), one per block, keyed by name."""
        x = check_vector("x", x, dim=self.dim)
        return {b.name: x[b.slice].reshape(b.shape) for b in self._blocks}

    def to_json(self) -> list[dict[str, Any]]:
        """A JSON-serialisable description (used in saved results)."""
        return [
            {
                "name": b.name,
                "shape": list(b.shape),
                "offset": b.offset,
                "role": b.role,
                "filter_axis": b.filter_axis,
            }
            for b in self._blocks
        ]

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]]) -> Layout:
        """Inverse of :meth:`to_json`."""
        return cls(
            [
                Block(d["name"], tuple(d["shape"]), d["offset"], d["role"], d.get("filter_axis", 0))
                for d in data
            ]
        )


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
    ``hvp_many`` loops, ``losses_in_span`` evaluates ``chunk_size`` points at a time so
    that memory stays ``O(chunk_size * dim)``.
    """

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
        """Losses at ``origin + coeffs @ basis``, evaluated ``chunk_size`` points at a time."""
        origin = check_vector("origin", origin, dim=self.dim, dtype=self.dtype)
        basis = check_matrix("basis", basis, dim=self.dim, dtype=self.dtype)
        coeffs = np.asarray(coeffs, dtype=np.float64)
        if coeffs.ndim != 2 or coeffs.shape[1] != basis.shape[0]:
            raise ValueError(
                f"`coeffs` must have shape (n_points, {basis.shape[0]}); got {coeffs.shape}."
            )
        out = np.empty(coeffs.shape[0], dtype=np.float64)
        for start in range(0, coeffs.shape[0], self.chunk_size):
            chunk = coeffs[start : start + self.chunk_size]
            points = origin + (chunk @ basis).astype(self.dtype, copy=False)
            for j, point in enumerate(points):
                out[start + j] = self.loss(point)
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
