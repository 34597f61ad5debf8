"""Stored runs read back as results.

:func:`load_run` reads a run's store into a :class:`StoredRun` and hands it to the reader
registered for the run's kind. Lines, planes and rays are read here; modules above this
layer register their own kinds with :func:`register_reader` (``"path"``:
``probecore._geometry.paths``), so that this module never imports them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from probecore._contract.fingerprint import digest
from probecore._probes.engine import stack_metrics
from probecore._probes.rays import hessian_ray_result, ray_result
from probecore._probes.results import LineResult, PlaneResult, RayResult
from probecore._probes.store import open_run, verified_chunks

__all__ = ["READERS", "StoredRun", "load_run", "register_reader"]


@dataclass(frozen=True, eq=False)
class StoredRun:
    """A run as its store holds it, before it becomes a result.

    Attributes
    ----------
    kind : str
        ``"line"``, ``"plane"``, ``"rays"``, ``"path"``, ...
    values : dict of str to numpy.ndarray
        Every value field (``"loss"``, metrics, ...), NaN where not computed.
    computed : numpy.ndarray
        Mask of the points computed.
    identity : dict
        The settings a resume must match (``fields``, ``chunk_size``, the kind's own).
    metadata : dict
        What the run recorded, with ``"store"``: the path.
    group : zarr.Group
        The store itself, for the fixed arrays (:meth:`array`).
    fixed_digests : dict
        The record's digest of each fixed array, verified when it is read.
    """

    kind: str
    values: dict[str, np.ndarray]
    computed: np.ndarray
    identity: dict
    metadata: dict
    group: Any
    fixed_digests: dict

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The value fields other than ``"loss"``, in stored order."""
        return tuple(f for f in self.identity["fields"] if f != "loss")

    def array(self, name: str) -> np.ndarray:
        """A fixed array of the run (``"coords"``, ``"ts"``, ``"origin"``, ...), verified.

        Parameters
        ----------
        name : str
            The array's name in the store.

        Returns
        -------
        numpy.ndarray
        """
        path = self.metadata["store"]
        try:
            value = np.asarray(self.group[name][...])
        except Exception as exc:
            raise ValueError(
                f"`store` {path!r} is damaged: its {name!r} array cannot be read "
                f"({type(exc).__name__}: {exc})."
            ) from None
        if digest(value) != self.fixed_digests.get(name):
            raise ValueError(
                f"`store` {path!r} is damaged: its {name!r} array does not match the digest "
                "in its record."
            )
        return value

    def metric_values(self, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Metric values stacked as ``(n_metrics, *shape)`` (``shape`` default ``(n_points,)``).

        Parameters
        ----------
        shape : tuple of int, optional
            Shape of one metric's values.

        Returns
        -------
        numpy.ndarray
        """
        return stack_metrics(
            self.values, self.metric_names, self.computed.shape if shape is None else shape
        )


READERS: dict[str, Callable[[StoredRun], Any]] = {}


def register_reader(kind: str) -> Callable[[Callable[[StoredRun], Any]], Callable]:
    """Decorator: ``reader(run: StoredRun) -> result`` reads stored runs of ``kind``.

    Parameters
    ----------
    kind : str
        The store's kind (the ``kind`` of the run's :class:`PointPlan`).

    Returns
    -------
    callable
        The decorator; it returns the reader unchanged.
    """

    def add(reader: Callable[[StoredRun], Any]) -> Callable[[StoredRun], Any]:
        READERS[kind] = reader
        return reader

    return add


# --------------------------------------------------------------------------- reload


def load_run(path: str | os.PathLike) -> Any:
    """Read a stored line, plane, ray or path run back as its result (complete or not).

    Points not computed are NaN in the values and False in ``computed``; the counts of
    evaluations are 0 (nothing was evaluated to read the run).

    Parameters
    ----------
    path : str or os.PathLike
        The ``store=`` directory of :func:`line`, :func:`interpolate`, :func:`plane`,
        :func:`rays` or :func:`probecore.evaluate_path`.

    Returns
    -------
    LineResult, PlaneResult, RayResult or PathResult
        By the run's kind.
    """
    group, record = open_run(path)
    kind = record["kind"]
    reader = READERS.get(kind)
    if reader is None:
        raise ValueError(
            f"{os.fspath(path)!r} holds a {kind!r} run, which this probecore cannot read "
            f"(it reads {sorted(READERS)})."
        )
    ident = record["identity"]
    fields = list(ident["fields"])
    done, values = verified_chunks(
        group,
        os.fspath(path),
        fields,
        int(ident["chunk_size"]),
        int(ident["n_points"]),
        action="reported as not computed",
    )
    run = StoredRun(
        kind=kind,
        values=values,
        computed=done,
        identity=record["identity"],
        metadata={**record["metadata"], "store": os.fspath(path)},
        group=group,
        fixed_digests=record["fixed"],
    )
    return reader(run)


@register_reader("line")
def _line(run: StoredRun) -> LineResult:
    return LineResult(
        coords=run.array("coords"),
        losses=run.values["loss"],
        computed=run.computed,
        metric_names=run.metric_names,
        metric_values=run.metric_values(),
        metadata=run.metadata,
    )


@register_reader("plane")
def _plane(run: StoredRun) -> PlaneResult:
    a, b = run.array("alphas"), run.array("betas")
    shape = (b.size, a.size)
    return PlaneResult(
        alphas=a,
        betas=b,
        losses=run.values["loss"].reshape(shape),
        computed=run.computed.reshape(shape),
        metric_names=run.metric_names,
        metric_values=run.metric_values(shape),
        metadata=run.metadata,
    )


@register_reader("rays")
def _rays(run: StoredRun) -> RayResult:
    if run.identity.get("curvature") == "hessian":
        return hessian_ray_result(
            run.values["curvature"],
            run.computed,
            loss0=float(run.metadata["loss0"]),
            dim=int(run.metadata["objective"]["dim"]),
            dtype=np.dtype(run.metadata["objective"]["dtype"]),
            confidence=float(run.metadata.get("confidence", 0.95)),
            seed=run.identity["entropy"],
            metadata=run.metadata,
        )
    return ray_result(
        run.values,
        run.computed,
        loss0=float(run.metadata["loss0"]),
        eps=float(run.identity["eps"]),
        dtype=np.dtype(run.metadata["objective"]["dtype"]),
        confidence=float(run.metadata.get("confidence", 0.95)),
        seed=run.identity["entropy"],
        metadata=run.metadata,
    )
