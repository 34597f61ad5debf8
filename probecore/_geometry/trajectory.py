"""PCA directions of a weight trajectory (Li et al. 2018, Section 7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from probecore._contract.results import ResultBase, register
from probecore._contract.validation import (
    check_bool,
    check_int,
    check_option,
    check_vector,
)
from probecore._geometry.pca import as_history, col_blocks, scatter_block, scatter_pca
from probecore._probes.directions import Directions

__all__ = ["TrajectoryPCA", "trajectory_directions"]

ORIGINS = ("last", "first", "mean")


@register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TrajectoryPCA(ResultBase):
    """Principal directions of a weight trajectory and the path's coordinates along them.

    Attributes
    ----------
    vectors : numpy.ndarray
        ``(k, dim)`` orthonormal principal directions as rows, largest variance first;
        each row's entry of largest magnitude is positive.
    coords : numpy.ndarray
        ``(T, k)``: ``coords[i] = vectors @ (θ_i − origin)``, the path drawn over
        ``probecore.plane(objective, result.directions, x=result.origin)``.
    explained_variance : numpy.ndarray
        Variance of the trajectory along each direction (as for
        :class:`EffectiveDimension`).
    explained_variance_ratio : numpy.ndarray
        Its share of the trajectory's total variance.
    origin : numpy.ndarray
        The point the coordinates are measured from (float64).
    origin_kind : str
        ``"last"``, ``"first"``, ``"mean"`` or ``"given"``.
    n_samples, dim : int
        Points in the trajectory and their length.
    centered : bool
        Whether the PCA subtracted the trajectory's mean (see
        :func:`trajectory_directions`).
    """

    _array_fields: ClassVar[tuple[str, ...]] = (
        "vectors",
        "coords",
        "explained_variance",
        "explained_variance_ratio",
        "origin",
    )

    vectors: np.ndarray
    coords: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    origin: np.ndarray
    origin_kind: str
    n_samples: int
    dim: int
    centered: bool
    metadata: dict = field(default_factory=dict)

    @property
    def directions(self) -> Directions:
        """The rows of ``vectors`` as a :class:`~probecore.Directions` (``kind="pca"``).

        Unit vectors, not filter-normalized: a step of 1 along one moves the weights by
        Euclidean distance 1, the unit of ``coords``.
        """
        return Directions(
            vectors=self.vectors,
            kind="pca",
            normalization="none",
            bias="kept",
            norm="kept",
            orthogonal=True,
            metadata={
                "explained_variance_ratio": self.explained_variance_ratio.tolist(),
                "centered": self.centered,
            },
        )


def trajectory_directions(
    weights: Any, *, k: int = 2, origin: Any = "last", center: bool = True
) -> TrajectoryPCA:
    """PCA directions of a weight trajectory, for drawing the optimization path (Li et al.).

    Li et al. (2018, section 7) take the matrix ``M`` of ``θ_i − θ_final`` over the saved
    points ``θ_i`` and its two most explanatory directions; their code fits scikit-learn's
    ``PCA`` to ``M``, which subtracts the mean row, so the directions are those of the
    trajectory's covariance whatever the origin. ``center=True`` (default) does the same;
    ``center=False`` uses the top right singular vectors of ``θ_i − origin`` as they are.
    Computed by the Gram route (see :func:`effective_dimension`) with a Rayleigh-Ritz
    refinement; the directions come back orthonormal.

    Parameters
    ----------
    weights : numpy.ndarray
        ``(T, dim)`` flattened weights along training, ``T >= 2``.
    k : int
        Number of directions (2 for a plane), at most ``min(T, dim)`` and at most the
        numerical rank of the trajectory.
    origin : {"last", "first", "mean"} or numpy.ndarray
        Where coordinates are measured from: the final point (default, as Li et al.), the
        first, the mean, or a given vector of length ``dim``.
    center : bool
        Subtract the trajectory's mean before the PCA.

    Returns
    -------
    TrajectoryPCA
        ``directions`` (a :class:`~probecore.Directions`, ``kind="pca"``), ``coords``
        ``(T, k)``, ``explained_variance_ratio`` and ``origin``. Draw the surface with
        ``probecore.plane(objective, r.directions, x=r.origin, ...)`` and the path
        with ``r.coords``; with the trajectory in the span, ``origin + coords @ vectors``
        gives the points back.

    Raises
    ------
    ValueError
        If the trajectory spans fewer than ``k`` directions (to rounding).

    References
    ----------
    H. Li, Z. Xu, G. Taylor, C. Studer and T. Goldstein, "Visualizing the loss landscape
    of neural nets", NeurIPS 2018.

    Examples
    --------
    >>> t = np.linspace(0.0, 1.0, 20)
    >>> u, v = np.eye(30)[0], np.eye(30)[1]
    >>> W = 1.0 + np.outer(np.cos(3 * t), u) + np.outer(t**2, v)   # a path in a plane
    >>> r = trajectory_directions(W)
    >>> r.vectors.shape, r.coords.shape, bool(np.allclose(r.origin + r.coords @ r.vectors, W))
    ((2, 30), (20, 2), True)
    """
    A = as_history("weights", weights)
    T, dim = A.shape
    k = check_int("k", k, lo=1, hi=min(T, dim))
    center = check_bool("center", center)
    if isinstance(origin, str):
        kind = check_option("origin", origin, ORIGINS)
        if kind == "last":
            o = A[-1].astype(np.float64)
        elif kind == "first":
            o = A[0].astype(np.float64)
        else:
            o = np.mean(A, axis=0, dtype=np.float64)
    else:
        if not isinstance(origin, np.ndarray) and hasattr(origin, "__array__"):
            origin = np.asarray(origin)
        kind = "given"
        o = check_vector("origin", origin, dim=dim, dtype=np.dtype(np.float64))
    shift = np.mean(A, axis=0, dtype=np.float64) if center else o
    lam, V = scatter_pca(A, shift, n_vectors=k)
    total = float(lam.sum())
    eps = np.finfo(np.float64).eps
    floor = max(T, dim) * eps * (lam[0] if lam.size else 0.0)
    rank = int(np.count_nonzero(lam > floor)) if total > 0 else 0
    if rank < k:
        raise ValueError(
            f"`weights` spans only {rank} direction(s) "
            + ("about its mean" if center else "from the origin")
            + f" (to rounding), fewer than `k`={k}: the other directions are undefined."
        )
    # Sign: each direction's entry of largest magnitude is positive.
    idx = np.argmax(np.abs(V), axis=0)
    V = V * np.sign(V[idx, np.arange(k)])
    coords = np.zeros((T, k))
    every = slice(None)
    for cols in col_blocks(T, dim):
        coords += scatter_block(A, every, cols, o) @ V[cols]
    norm = T - 1 if center else T
    return TrajectoryPCA(
        vectors=np.ascontiguousarray(V.T),
        coords=coords,
        explained_variance=lam[:k] / norm,
        explained_variance_ratio=lam[:k] / total,
        origin=o,
        origin_kind=kind,
        n_samples=T,
        dim=dim,
        centered=center,
    )
