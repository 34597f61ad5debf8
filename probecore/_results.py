"""Frozen result objects and their storage on disk.

Results are keyword-only frozen dataclasses whose array fields are read-only copies. Each
carries its cost (``n_matvecs``: Hessian-vector products), how it ended (``converged``),
the randomness that reproduces it (``seed``) and its error estimates.

:func:`save` writes a result to a NumPy ``.npz`` archive (no pickle) holding every array
and a JSON record of the scalar fields, the result type, the probecore version and any
metadata the caller adds; :func:`load` reads it back into the same type.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from probecore._version import __version__

__all__ = [
    "EigResult",
    "PowerIterationResult",
    "SpectralDensity",
    "TraceResult",
    "load",
    "save",
]

_REGISTRY: dict[str, type] = {}
_FORMAT = "probecore-result/1"


def _register(cls: type) -> type:
    _REGISTRY[cls.__name__] = cls
    return cls


class _ResultBase:
    """Shared behaviour: read-only array fields and a compact repr."""

    __slots__ = ()

    _array_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in self._array_fields:
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.array(value, copy=True)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        if hasattr(self, "metadata"):
            object.__setattr__(self, "metadata", dict(self.metadata or {}))

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                text = f"array(shape={value.shape}, dtype={value.dtype})"
                if value.size <= 6:
                    text = np.array2string(value, precision=6, separator=", ")
            elif isinstance(value, dict) and len(repr(value)) > 60:
                text = "{...}"
            else:
                text = repr(value)
            parts.append(f"{f.name}={text}")
        return f"{type(self).__name__}({', '.join(parts)})"


@_register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class PowerIterationResult(_ResultBase):
    """Dominant (largest-magnitude) eigenpair found by power iteration.

    Attributes
    ----------
    eigenvalue : float
        Rayleigh quotient of the final vector.
    eigenvector : numpy.ndarray
        Unit vector, shape ``(dim,)``.
    residual_norm : float
        ``‖Hv − λv‖`` for the returned pair. Some eigenvalue of ``H`` lies within this
        distance of ``eigenvalue`` (Bauer-Fike for symmetric matrices).
    eigenvalue_change : float
        ``|λ_k − λ_{k−1}|`` at the last iteration.
    history : numpy.ndarray
        Rayleigh quotient at every iteration.
    n_iter : int
        Iterations run.
    n_matvecs : int
        Hessian-vector products used.
    converged : bool
        Whether every enabled stopping criterion was met.
    seed : int or dict or None
        Seed (or generator state) of the random start vector.
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("eigenvector", "history")

    eigenvalue: float
    eigenvector: np.ndarray
    residual_norm: float
    eigenvalue_change: float
    history: np.ndarray
    n_iter: int
    n_matvecs: int
    converged: bool
    seed: Any = None
    metadata: dict = field(default_factory=dict)


@_register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class EigResult(_ResultBase):
    """Eigenvalues and eigenvectors from Lanczos or ARPACK.

    Attributes
    ----------
    eigenvalues : numpy.ndarray
        ``(k,)`` eigenvalue estimates (Ritz values), sorted by ``which``: largest first for
        ``"LA"``/``"LM"``, smallest first for ``"SA"``.
    eigenvectors : numpy.ndarray
        ``(dim, k)`` orthonormal Ritz vectors, column ``i`` paired with ``eigenvalues[i]``.
    residual_norms : numpy.ndarray
        ``‖H y_i − θ_i y_i‖`` for each pair; an eigenvalue of ``H`` lies within this
        distance of each Ritz value.
    which : str
        ``"LA"``, ``"SA"`` or ``"LM"``.
    method : str
        ``"lanczos"`` (probecore's thick-restart Lanczos) or ``"eigsh"`` (ARPACK).
    n_matvecs : int
        Hessian-vector products used, including any spent on verification.
    n_restarts : int
        Restart cycles of probecore's Lanczos (0 for ``"eigsh"``: ARPACK does not
        report its count).
    converged : bool
        Whether all ``k`` residuals met the tolerance.
    tol : float
        Requested relative residual tolerance.
    seed : int or dict or None
        Seed (or generator state) of the start vector(s).
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("eigenvalues", "eigenvectors", "residual_norms")

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residual_norms: np.ndarray
    which: str
    method: str
    n_matvecs: int
    n_restarts: int
    converged: bool
    tol: float
    seed: Any = None
    metadata: dict = field(default_factory=dict)


@_register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class SpectralDensity(_ResultBase):
    """Spectral density estimated by stochastic Lanczos quadrature.

    Attributes
    ----------
    grid : numpy.ndarray
        Points where the smoothed density is evaluated.
    density : numpy.ndarray
        Gaussian-broadened density on ``grid`` (integrates to about 1).
    nodes : numpy.ndarray
        ``(n_probes, n_steps)`` quadrature nodes (Ritz values) of each probe.
    weights : numpy.ndarray
        ``(n_probes, n_steps)`` quadrature weights; each row sums to 1. Rows of probes that
        found an invariant subspace early end in zero weights.
    sigma : float
        Width of the Gaussian broadening.
    dim : int
        Dimension of the operator (to turn densities into eigenvalue counts).
    n_matvecs : int
        Hessian-vector products used.
    converged : bool
        Always True (SLQ runs a fixed number of steps); kept for a uniform interface.
    seed : int or dict or None
        Seed (or generator state) of the probe vectors.
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("grid", "density", "nodes", "weights")

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    dim: int
    n_matvecs: int
    converged: bool = True
    seed: Any = None
    metadata: dict = field(default_factory=dict)

    @property
    def n_probes(self) -> int:
        """Number of probe vectors."""
        return int(self.nodes.shape[0])

    def moment(self, p: int) -> tuple[float, float]:
        """Estimate of ``tr(H^p)/dim`` and its standard error across probes.

        Gauss quadrature with ``m`` nodes is exact for polynomials of degree ``2m − 1``,
        so for ``p <= 2m − 1`` each probe's value is exactly ``vᵀ H^p v`` and the only
        error is the Monte Carlo error over probes, which the standard error measures.
        The standard error is itself estimated from ``n_probes`` samples: with the default
        5 probes on a spectrum dominated by a few outliers (``vᵀH²v`` is then heavy-tailed)
        it can be off by a factor of two or more; use 20 or more probes when the moments
        matter.
        """
        if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 0:
            raise ValueError(f"`p` must be a non-negative integer; got {p!r}.")
        per_probe = np.sum(self.weights * self.nodes.astype(np.float64) ** p, axis=1)
        mean = float(per_probe.mean())
        se = (
            float(per_probe.std(ddof=1) / np.sqrt(per_probe.size))
            if per_probe.size > 1
            else float("nan")
        )
        return mean, se

    def pooled(self) -> tuple[np.ndarray, np.ndarray]:
        """All nodes and weights pooled into one discrete measure (weights sum to 1)."""
        w = self.weights.ravel() / self.n_probes
        return self.nodes.ravel().astype(np.float64), w


@_register
@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TraceResult(_ResultBase):
    """Stochastic trace estimate with its standard error.

    Attributes
    ----------
    estimate : float
        Estimate of ``tr(H)``.
    std_error : float
        Standard error of ``estimate`` (sample standard deviation of the stochastic part
        over ``sqrt(n_samples)``). For Hutch++ it is conditional on the sketched subspace,
        whose contribution is exact.
    samples : numpy.ndarray
        Per-probe values of the stochastic part.
    method : str
        ``"hutchinson"`` or ``"hutch++"``.
    n_matvecs : int
        Hessian-vector products used.
    converged : bool
        Always True (fixed budget); kept for a uniform interface.
    seed : int or dict or None
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("samples",)

    estimate: float
    std_error: float
    samples: np.ndarray
    method: str
    n_matvecs: int
    converged: bool = True
    seed: Any = None
    metadata: dict = field(default_factory=dict)

    def confidence_interval(self, z: float = 1.96) -> tuple[float, float]:
        """``estimate ± z·std_error``."""
        return self.estimate - z * self.std_error, self.estimate + z * self.std_error


def _to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return {"__float__": repr(value)}
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def save(result: Any, path: str | os.PathLike, *, metadata: dict | None = None) -> str:
    """Write a probecore result to ``path`` (a ``.npz`` file; the suffix is added if missing).

    Parameters
    ----------
    result : result object
        Any probecore result (``EigResult``, ``SpectralDensity``, ...).
    path : str or os.PathLike
        Destination file.
    metadata : dict, optional
        Extra JSON-serialisable information (model name, data size, ...), merged into the
        result's own ``metadata`` when read back.

    Returns
    -------
    str
        The path written.

    Examples
    --------
    >>> import tempfile, os
    >>> r = TraceResult(estimate=3.0, std_error=0.1, samples=np.ones(4), method="hutchinson",
    ...                 n_matvecs=4)
    >>> p = save(r, os.path.join(tempfile.mkdtemp(), "trace"), metadata={"model": "toy"})
    >>> load(p).metadata["model"]
    'toy'
    """
    cls = type(result)
    if _REGISTRY.get(cls.__name__) is not cls:
        raise TypeError(f"`result` must be a probecore result object; got {cls.__name__}.")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"`metadata` must be a dict; got {type(metadata).__name__}.")
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if f.name in cls._array_fields:
            if value is not None:
                arrays[f.name] = np.asarray(value)
        else:
            scalars[f.name] = value
    scalars["metadata"] = {**scalars.get("metadata", {}), **(metadata or {})}
    record = {
        "format": _FORMAT,
        "type": cls.__name__,
        "probecore_version": __version__,
        "fields": _to_json(scalars),
    }
    try:
        header = json.dumps(record, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`metadata` must be JSON-serialisable: {exc}") from exc
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    tmp = path + ".tmp.npz"
    np.savez(tmp, __probecore__=np.array(header), **arrays)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written result
    return path


def load(path: str | os.PathLike) -> Any:
    """Read a result written by :func:`save` (arrays read-only, metadata restored)."""
    data = np.load(os.fspath(path), allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{os.fspath(path)!r} is not a probecore result file (not an .npz archive)."
        )
    with data:
        if "__probecore__" not in data:
            raise ValueError(f"{os.fspath(path)!r} is not a probecore result file.")
        record = json.loads(str(data["__probecore__"]))
        if record.get("format") != _FORMAT:
            raise ValueError(f"unsupported result format {record.get('format')!r}.")
        cls = _REGISTRY.get(record["type"])
        if cls is None:
            raise ValueError(f"unknown result type {record['type']!r} in {os.fspath(path)!r}.")
        kwargs = _from_json(record["fields"])
        kwargs["metadata"] = {
            **kwargs.get("metadata", {}),
            "saved_with_probecore": record["probecore_version"],
        }
        for name in cls._array_fields:
            if name in data:
                kwargs[name] = data[name]
    return cls(**kwargs)
