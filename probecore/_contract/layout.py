"""Where each parameter tensor sits in the flat vector: :class:`Block` and :class:`Layout`.

Filter normalization and per-block reports read the layout; backends build it from the
model's structure.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from probecore._contract.validation import check_int, check_option, check_vector

__all__ = ["ROLES", "Block", "Layout", "override_layout", "uncovered_by_override"]

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

    def __getitem__(self, index):
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


def _override_spec(key: str, value: Any, param: str) -> dict[str, Any]:
    """``{"role": ..., "filter_axis": ...}`` (either may be missing) from one override."""
    if isinstance(value, str):
        return {"role": check_option(f"role for {key!r} in {param}", value, ROLES)}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"role": "weight", "filter_axis": value}
    if isinstance(value, tuple) and len(value) == 2:
        role, axis = value
        return {
            "role": check_option(f"role for {key!r} in {param}", role, ROLES),
            "filter_axis": axis,
        }
    if isinstance(value, Mapping) and value and set(value) <= {"role", "filter_axis"}:
        spec = dict(value)
        if "role" in spec:
            check_option(f"role for {key!r} in {param}", spec["role"], ROLES)
        return spec
    raise TypeError(
        f"`{param}`[{key!r}] must be a role ({', '.join(map(repr, ROLES))}), a filter axis "
        "(an int: a weight whose output units lie along that axis), a (role, filter_axis) "
        f"pair or a dict with keys 'role' and/or 'filter_axis'; got {value!r}."
    )


def override_layout(layout: Layout, override: Any, *, param: str = "layout") -> Layout:
    """``layout`` with the roles and filter axes a user chose in ``override``.

    Every backend's ``layout=`` option goes through this function, so that the override
    means the same in every framework.

    Parameters
    ----------
    layout : Layout
        The layout the backend derived from the model's structure.
    override : None, Layout or Mapping
        ``None``: ``layout`` unchanged. A :class:`Layout`: used as is, after checking that
        it has the same block names, shapes and offsets. A mapping from a block name, or a
        shell-style pattern of names (``"encoder.*.weight"``, see :mod:`fnmatch`), to the
        block's role (``"weight"``, ``"bias"``, ``"norm"``, ``"other"``), to an ``int``
        (a ``"weight"`` whose output units lie along that axis: ``0`` for
        ``(out, in, ...)``, ``-1`` for ``(..., in, out)``), to a ``(role, filter_axis)``
        pair, or to a dict with keys ``"role"`` and/or ``"filter_axis"``. Entries apply in
        order; a later entry overrides an earlier one for the blocks both match. Every
        entry must match at least one block.
    param : str
        The name the caller's users know the option by, for messages.

    Returns
    -------
    Layout

    Raises
    ------
    TypeError, ValueError
        For an override of the wrong kind, a pattern that matches no block, an unknown
        role, or a filter axis outside the block's dimensions.

    Examples
    --------
    >>> layout = Layout.from_shapes([("w", (3, 2), "weight"), ("b", (2,), "bias")])
    >>> new = override_layout(layout, {"w": -1})
    >>> new["w"].filter_axis, new["b"].role
    (-1, 'bias')
    """
    if override is None:
        return layout
    if isinstance(override, Layout):
        mine = [(b.name, b.shape, b.offset) for b in layout]
        theirs = [(b.name, b.shape, b.offset) for b in override]
        if mine != theirs:
            diff = next(
                (f"{m} vs {t}" for m, t in zip(mine, theirs, strict=False) if m != t),
                f"{len(mine)} blocks vs {len(theirs)}",
            )
            raise ValueError(
                f"`{param}` must have the model's blocks (names, shapes and offsets, in "
                f"order); the first difference (model's vs given): {diff}. Start from the "
                f"objective's own layout, or pass a mapping of names to roles and axes."
            )
        return override
    if not isinstance(override, Mapping):
        raise TypeError(
            f"`{param}` must be None, a probecore.Layout or a mapping of block names (or "
            f"patterns) to roles and filter axes; got {type(override).__name__}."
        )
    specs: dict[str, dict[str, Any]] = {b.name: {} for b in layout}
    for key, value in override.items():
        if not isinstance(key, str):
            raise TypeError(f"`{param}` keys must be block names or patterns; got {key!r}.")
        spec = _override_spec(key, value, param)
        hits = [b.name for b in layout if _matches(b.name, key)]
        if not hits:
            names = [b.name for b in layout]
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise ValueError(
                f"`{param}` entry {key!r} matches no block of the model; its blocks are {shown}."
            )
        for name in hits:
            specs[name].update(spec)
    blocks = []
    for b in layout:
        spec = specs[b.name]
        role = spec.get("role", b.role)
        axis = spec.get("filter_axis", b.filter_axis)
        if role == "weight" and len(b.shape) < 1:
            raise ValueError(f"`{param}`: block {b.name!r} is a scalar; it cannot be a weight.")
        blocks.append(Block(b.name, b.shape, b.offset, role, axis))
    return Layout(blocks)


def _matches(name: str, key: str) -> bool:
    """Whether an override entry ``key`` (a name or a shell pattern) names block ``name``."""
    return name == key or fnmatch.fnmatchcase(name, key)


def uncovered_by_override(names: Sequence[str], override: Any) -> list[str]:
    """The block ``names`` that a ``layout=`` override does not mention.

    A backend warns about blocks whose filter axis it had to assume; an override entry
    that names a block (exactly or by pattern, as :func:`override_layout` matches them)
    settles it, and a whole :class:`Layout` settles every block.

    Examples
    --------
    >>> uncovered_by_override(["enc.w", "head.w"], {"enc.*": -1})
    ['head.w']
    """
    if override is None:
        return list(names)
    if not isinstance(override, Mapping):  # a whole Layout: the user chose every block
        return []
    keys = [k for k in override if isinstance(k, str)]
    return [n for n in names if not any(_matches(n, k) for k in keys)]
