"""Directions in parameter space: random, filter-normalized, orthogonalized, eigenvectors.

A direction is a flat vector shaped by an Objective's :class:`~probecore.Layout`. Random
directions are drawn from an explicit ``rng`` in a framework-independent order, so the
same seed gives the same direction for the same architecture in PyTorch and in JAX;
filter normalization (Li et al. 2018) rescales each output filter of every weight block
to the norm of the corresponding filter of the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from probecore._contract.layout import Block, Layout
from probecore._contract.objective import Objective, require_objective
from probecore._contract.results import ResultBase, register
from probecore._contract.validation import as_rng, check_bool, check_int, check_option, check_vector

__all__ = [
    "Directions",
    "eigen_directions",
    "filter_normalize",
    "orthogonalize",
    "random_directions",
]

NORMALIZATIONS = ("filter", "layer", "none")
ONE_DIM = ("zero", "weights")


@register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class Directions(ResultBase):
    """Directions for a landscape probe, with what it takes to reproduce them.

    Attributes
    ----------
    vectors : numpy.ndarray
        The directions as rows, shape ``(k, dim)``.
    kind : str
        ``"random"`` (Gaussian) or ``"hessian"`` (top Hessian eigenvectors).
    normalization : str
        ``"filter"``, ``"layer"`` or ``"none"``.
    bias, norm : str
        What bias and normalization blocks hold: ``"zero"`` or ``"weights"`` (see
        :func:`filter_normalize`), or ``"kept"`` for eigenvectors (their own entries).
    orthogonal : bool
        Whether the rows were Gram-Schmidt orthogonalized (after normalization).
    seed : int or dict or None
        Seed (or generator state) of the random draws.
    eigenvalues : numpy.ndarray or None
        For ``kind="hessian"``: the eigenvalue of each row.
    n_matvecs : int
        Hessian-vector products spent (``kind="hessian"``).
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("vectors", "eigenvalues")

    vectors: np.ndarray
    kind: str
    normalization: str
    bias: str = "zero"
    norm: str = "zero"
    orthogonal: bool = False
    seed: Any = None
    eigenvalues: np.ndarray | None = None
    n_matvecs: int = 0
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def __getitem__(self, i: int) -> np.ndarray:
        return self.vectors[i]

    def select(self, i: int) -> Directions:
        """Row ``i`` as a one-direction :class:`Directions` (keeps the recipe for storage)."""
        i = check_int("i", i, lo=-len(self), hi=len(self) - 1)
        return Directions(
            vectors=self.vectors[i : i + 1] if i >= 0 else self.vectors[i:][:1],
            kind=self.kind,
            normalization=self.normalization,
            bias=self.bias,
            norm=self.norm,
            orthogonal=self.orthogonal,
            seed=self.seed,
            eigenvalues=None if self.eigenvalues is None else self.eigenvalues[[i]],
            n_matvecs=0,
            metadata={**self.metadata, "row": i % len(self)},
        )

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (everything but the vectors)."""
        out = {
            **({"row": self.metadata["row"]} if "row" in self.metadata else {}),
            "kind": self.kind,
            "normalization": self.normalization,
            "bias": self.bias,
            "norm": self.norm,
            "orthogonal": self.orthogonal,
            "seed": self.seed,
            "n_directions": len(self),
        }
        if self.eigenvalues is not None:
            out["eigenvalues"] = self.eigenvalues.tolist()
        return out


def _filter_major(block: Block, a: np.ndarray) -> np.ndarray:
    """``a`` (a block's entries) as ``(n_filters, -1)`` with the filter axis first."""
    t = a.reshape(block.shape)
    if t.ndim == 0:
        return t.reshape(1, 1)
    return np.moveaxis(t, block.filter_axis, 0).reshape(t.shape[block.filter_axis], -1)


def _from_filter_major(block: Block, m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_filter_major`, flattened in the block's own order."""
    if len(block.shape) == 0:
        return m.reshape(-1)
    axis = block.filter_axis % len(block.shape)
    moved = (block.shape[axis], *(s for i, s in enumerate(block.shape) if i != axis))
    return np.moveaxis(m.reshape(moved), 0, axis).reshape(-1)


def _draw_axes(block: Block) -> list[int]:
    """Axis order in which a block is drawn: output filters, then inputs, then the rest.

    PyTorch lays weights out as ``(out, in, *spatial)`` (filter axis 0); Flax as
    ``(*spatial, in, out)`` (filter axis -1). Both are drawn as ``(out, in, *spatial)``.
    """
    nd = len(block.shape)
    if nd == 0:
        return []
    fa = block.filter_axis % nd
    if nd >= 2 and fa == nd - 1:
        return [nd - 1, nd - 2, *range(nd - 2)]
    return [fa, *(i for i in range(nd) if i != fa)]


def _gaussian(layout: Layout, gen: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    """One Gaussian direction in a framework-independent order.

    Weight blocks are drawn first, then the others, each in layout order, and each block
    in the order ``(out, in, *spatial)`` whatever its memory layout. PyTorch's
    ``(out, in, kh, kw)`` and Flax's ``(kh, kw, in, out)`` kernels of the same layer
    therefore get the same numbers, and so do parameter trees that order biases before
    weights.
    """
    d = np.empty(layout.dim, dtype=np.float64)
    order = [b for b in layout if b.role == "weight"] + [b for b in layout if b.role != "weight"]
    for b in order:
        axes = _draw_axes(b)
        g = gen.standard_normal([b.shape[i] for i in axes])
        d[b.slice] = np.transpose(g, np.argsort(axes)).reshape(-1) if axes else g.reshape(-1)
    return d.astype(dtype)


def filter_normalize(
    direction: np.ndarray,
    x: np.ndarray,
    layout: Layout,
    *,
    normalization: str = "filter",
    bias: str = "zero",
    norm: str = "zero",
) -> np.ndarray:
    r"""Rescale a direction to the scale of the weights (Li et al. 2018).

    For every block with role ``"weight"``, and each output filter :math:`f` of it (the
    slices along its ``filter_axis``), ``normalization="filter"`` sets

    .. math:: d_f \leftarrow \frac{d_f}{\lVert d_f\rVert}\,\lVert x_f\rVert ,

    so a step of 1 along ``d`` moves each filter by its own norm; ``"layer"`` does the same
    with whole blocks; ``"none"`` leaves weight blocks as they are. A filter whose
    direction is zero stays zero. The reference implementation divides by
    ``‖d_f‖ + 1e-10`` instead, which differs by less than ``1e-10/‖d_f‖`` relative.

    Bias and normalization blocks (roles ``"bias"``, ``"other"`` and ``"norm"``) follow
    ``bias`` (biases and other non-weight blocks) and ``norm`` (normalization layers):
    ``"zero"`` sets them to zero, as the reference code's ``--xignore biasbn`` and the
    paper's figures do, so those parameters stay at ``x``; ``"weights"`` copies ``x``
    into them, as the reference code does without that flag (a step of 1 then doubles
    them).

    Parameters
    ----------
    direction, x : numpy.ndarray
        Flat vectors of length ``layout.dim``: the raw direction and the point (weights).
    layout : Layout
        The blocks of the parameter vector.
    normalization : {"filter", "layer", "none"}
        How weight blocks are rescaled.
    bias, norm : {"zero", "weights"}
        What bias and normalization blocks become.

    Returns
    -------
    numpy.ndarray
        A new direction in ``x``'s dtype.
    """
    if not isinstance(layout, Layout):
        raise TypeError(f"`layout` must be a probecore.Layout; got {type(layout).__name__}.")
    x = check_vector("x", x, dim=layout.dim)
    direction = check_vector("direction", direction, dim=layout.dim)
    normalization = check_option("normalization", normalization, NORMALIZATIONS)
    bias = check_option("bias", bias, ONE_DIM)
    norm = check_option("norm", norm, ONE_DIM)
    out = np.array(direction, dtype=np.float64)
    xs = x.astype(np.float64)
    for b in layout:
        if b.role != "weight":
            rule = norm if b.role == "norm" else bias
            out[b.slice] = 0.0 if rule == "zero" else xs[b.slice]
            continue
        if normalization == "none":
            continue
        if normalization == "layer":
            dn = np.linalg.norm(out[b.slice])
            out[b.slice] = 0.0 if dn == 0 else out[b.slice] * (np.linalg.norm(xs[b.slice]) / dn)
            continue
        D = _filter_major(b, out[b.slice])
        W = _filter_major(b, xs[b.slice])
        dn = np.linalg.norm(D, axis=1, keepdims=True)
        scale = np.divide(
            np.linalg.norm(W, axis=1, keepdims=True), dn, where=dn > 0, out=np.zeros_like(dn)
        )
        out[b.slice] = _from_filter_major(b, D * scale)
    return out.astype(x.dtype)


def orthogonalize(directions: np.ndarray, *, keep_norms: bool = True) -> np.ndarray:
    """Gram-Schmidt: each row made orthogonal to the rows before it (float64, twice).

    Parameters
    ----------
    directions : numpy.ndarray
        Rows to orthogonalize, shape ``(k, dim)``.
    keep_norms : bool
        Rescale each orthogonalized row to its original norm (so filter-normalized
        directions keep their overall scale); otherwise rows come back with unit norm.

    Raises
    ------
    ValueError
        If a row is zero or (numerically) a combination of the rows before it.
    """
    D = np.asarray(directions)
    if D.ndim != 2 or D.shape[0] < 1 or D.dtype.kind != "f":
        raise ValueError(
            f"`directions` must be a float array of shape (k, dim); got {D.dtype} {D.shape}."
        )
    keep_norms = check_bool("keep_norms", keep_norms)
    out = D.astype(np.float64)
    Q = np.zeros_like(out)
    for i in range(out.shape[0]):
        n0 = np.linalg.norm(out[i])
        v = out[i].copy()
        for _ in range(2):
            v -= Q[:i].T @ (Q[:i] @ v)
        nv = np.linalg.norm(v)
        if n0 == 0 or nv <= 1e-10 * n0:
            raise ValueError(
                f"`directions` row {i} is zero or lies in the span of the rows before it "
                f"(norm {nv:.3g} left of {n0:.3g}); it cannot be orthogonalized."
            )
        Q[i] = v / nv
        out[i] = Q[i] * (n0 if keep_norms else 1.0)
    return out.astype(D.dtype)


def random_directions(
    objective: Objective | Layout,
    k: int = 2,
    *,
    x: np.ndarray | None = None,
    normalization: str = "filter",
    bias: str = "zero",
    norm: str = "zero",
    orthogonal: bool = False,
    rng: int | np.random.Generator | None = None,
) -> Directions:
    """``k`` Gaussian directions shaped by an objective's layout, normalized as asked.

    Parameters
    ----------
    objective : Objective or Layout
        Supplies the layout (and ``x0``, the default point, and the dtype).
    k : int
        Number of directions (2 for a plane, 1 for a line).
    x : numpy.ndarray, optional
        Weights that filter normalization matches (default ``objective.x0``).
    normalization : {"filter", "layer", "none"}
        See :func:`filter_normalize`.
    bias, norm : {"zero", "weights"}
        Bias and normalization blocks; see :func:`filter_normalize`.
    orthogonal : bool
        Gram-Schmidt the directions after normalizing them, keeping each one's norm. Two
        random directions in high dimension are already nearly orthogonal (cosine about
        ``1/sqrt(dim)``); Li et al. do not orthogonalize.
    rng : int, numpy.random.Generator or None
        Source of the Gaussian draws.

    Returns
    -------
    Directions
        The rows and their recipe. With the same seed and an architecture whose blocks
        have the same roles and shapes in the same order (up to the filter axis), PyTorch
        and JAX objectives get the same directions.

    Raises
    ------
    ValueError
        If a direction comes out zero (all weight blocks of ``x`` zero, or no weight block
        and ``bias``/``norm`` "zero"): a plane along it would be flat.

    Examples
    --------
    >>> from probecore.analytic import digits_logistic_regression
    >>> obj = digits_logistic_regression()
    >>> x = obj.minimize()                      # filter-normalize to the trained weights
    >>> d = random_directions(obj, k=2, x=x, rng=0)
    >>> d.vectors.shape, d.normalization
    ((2, 650), 'filter')
    """
    layout = objective if isinstance(objective, Layout) else getattr(objective, "layout", None)
    if not isinstance(layout, Layout):
        raise TypeError(
            "`objective` must be an Objective (with a layout) or a Layout; got "
            f"{type(objective).__name__}."
        )
    k = check_int("k", k, lo=1)
    normalization = check_option("normalization", normalization, NORMALIZATIONS)
    bias = check_option("bias", bias, ONE_DIM)
    norm = check_option("norm", norm, ONE_DIM)
    orthogonal = check_bool("orthogonal", orthogonal)
    if x is None:
        x = getattr(objective, "x0", None)
        if x is None:
            if normalization != "none" or bias == "weights" or norm == "weights":
                raise TypeError("`x` is required to normalize directions given only a layout.")
            x = np.zeros(layout.dim)
    x = check_vector("x", x, dim=layout.dim)
    dtype = np.dtype(getattr(objective, "dtype", x.dtype))
    gen, seed = as_rng(rng)
    rows = []
    for _ in range(k):
        d = _gaussian(layout, gen, np.dtype(np.float64))
        d = filter_normalize(
            d, x.astype(np.float64), layout, normalization=normalization, bias=bias, norm=norm
        )
        rows.append(d)
    V = np.array(rows)
    zero = [i for i, row in enumerate(V) if not np.any(row)]
    if zero:
        raise ValueError(
            f"direction {zero[0]} is zero after normalization: every block was rescaled to "
            "a zero weight or set to zero (bias/norm='zero'). Pass the trained weights as "
            "`x` (filter normalization matches their norms), or normalization='none' with "
            "bias='weights' for an objective without weight blocks."
        )
    if orthogonal:
        V = orthogonalize(V, keep_norms=True)
    return Directions(
        vectors=V.astype(dtype),
        kind="random",
        normalization=normalization,
        bias=bias,
        norm=norm,
        orthogonal=orthogonal,
        seed=seed,
    )


def eigen_directions(
    objective: Objective,
    k: int = 2,
    *,
    x: np.ndarray | None = None,
    which: str = "LA",
    rng: int | np.random.Generator | None = None,
    **lanczos_kwargs: Any,
) -> Directions:
    """The top (``which="LA"``) or bottom Hessian eigenvectors at ``x`` as directions.

    Unit vectors, not filter-normalized: along eigenvector ``i`` the loss is
    ``L(x) + (gᵀv_i)·a + ½·λ_i·a²`` to second order, so plots in these axes show the
    curvature ``λ_i`` directly. Extra keyword arguments go to :func:`probecore.lanczos`.

    Examples
    --------
    >>> from probecore.analytic import Quadratic
    >>> q = Quadratic.from_spectrum([1.0, 2.0, 5.0, 9.0], rng=0)
    >>> d = eigen_directions(q, k=2, rng=0)
    >>> d.eigenvalues.round(8).tolist()
    [9.0, 5.0]
    """
    from probecore._linalg.eigen import lanczos

    require_objective(objective, "hvp", "x0" if x is None else "hvp")
    point = objective.x0 if x is None else x
    r = lanczos((objective, point), k=k, which=which, rng=rng, **lanczos_kwargs)
    return Directions(
        vectors=np.ascontiguousarray(r.eigenvectors.T),
        kind="hessian",
        normalization="none",
        bias="kept",
        norm="kept",
        seed=r.seed,
        eigenvalues=r.eigenvalues,
        n_matvecs=r.n_matvecs,
        metadata={"which": which, "residual_norms": r.residual_norms.tolist()},
    )
