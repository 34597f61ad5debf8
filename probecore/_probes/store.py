"""Resumable on-disk runs: a Zarr group written one computed chunk at a time.

A landscape run (line, plane or rays) is a list of points cut into chunks of a fixed
size. Each computed chunk is written to its own Zarr chunk files, then marked in the
``done`` mask; a chunk file is written to a temporary name and renamed, so a process
killed at any moment leaves every chunk either complete or absent. Restarting the same
run on the same path reads the mask and computes only the chunks it does not cover.

Layout of the group (readable with ``zarr.open_group(path)`` or any Zarr v3 reader)::

    attrs["probecore"]   format, kind, identity (what must match to resume), metadata
    done                 bool (n_points,): which points are computed (no sentinel values)
    <value arrays>       float64 (n_points,): "loss", metrics, "loss_plus", ...
    <fixed arrays>       what defines the run: "coords", "origin", "directions", ...
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["RunStore"]

FORMAT = "probecore-run/1"


def _zarr() -> Any:
    try:
        import zarr
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "saving landscape runs needs Zarr: pip install 'probecore[store]' (or zarr>=3.1)."
        ) from exc
    return zarr


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


class RunStore:
    """A run's results on disk, created on first use and resumed afterwards.

    Parameters
    ----------
    path : str or os.PathLike
        Directory of the Zarr group.
    kind : str
        ``"line"``, ``"plane"`` or ``"rays"``.
    n_points : int
        Number of values per field.
    chunk_size : int
        Points per chunk (one Zarr chunk per computed chunk).
    fields : sequence of str
        Names of the float64 value arrays.
    fixed : mapping of str to numpy.ndarray
        Arrays that define the run (grid, origin, directions). On resume they must be
        bitwise equal to the stored ones.
    identity : dict
        JSON-serialisable settings that must match on resume.
    metadata : dict
        Everything else worth recording (backend, versions, data size, ...).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        kind: str,
        n_points: int,
        chunk_size: int,
        fields: list[str],
        fixed: Mapping[str, np.ndarray],
        identity: dict,
        metadata: dict,
    ) -> None:
        zarr = _zarr()
        self.path = os.fspath(path)
        self.n_points = n_points
        self.chunk_size = chunk_size
        self.fields = list(fields)
        identity = _canonical(
            {
                **identity,
                "kind": kind,
                "n_points": n_points,
                "chunk_size": chunk_size,
                "fields": self.fields,
            }
        )
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"`store` {self.path!r} exists and is not a directory.")
        group = zarr.open_group(self.path, mode="a")
        record = group.attrs.asdict().get("probecore")
        if record is not None:
            self._check_same_run(group, record, identity, fixed)
            self.resumed = True
        else:
            # Not initialised (new, or killed during creation): (re)create everything.
            for name, value in fixed.items():
                arr = np.asarray(value)
                group.create_array(
                    name,
                    shape=arr.shape,
                    dtype=arr.dtype,
                    chunks=arr.shape or None,
                    overwrite=True,
                )[...] = arr
            for name in self.fields:
                group.create_array(
                    name,
                    shape=(n_points,),
                    dtype="f8",
                    chunks=(chunk_size,),
                    fill_value=np.nan,
                    overwrite=True,
                )
            group.create_array(
                "done",
                shape=(n_points,),
                dtype="bool",
                chunks=(chunk_size,),
                fill_value=False,
                overwrite=True,
            )
            group.attrs["probecore"] = {
                "format": FORMAT,
                "kind": kind,
                "identity": identity,
                "metadata": _canonical(metadata),
            }
            self.resumed = False
        self.group = group
        self.metadata = group.attrs["probecore"]["metadata"]

    def _check_same_run(self, group: Any, record: dict, identity: dict, fixed: Mapping) -> None:
        if record.get("format") != FORMAT:
            raise ValueError(
                f"`store` {self.path!r} holds format {record.get('format')!r}, not {FORMAT!r}."
            )
        stored = record.get("identity", {})
        names = {
            "fields": "recorded values (loss and `metrics`)",
            "entropy": "seed (`rng`)",
            "chunk_size": "`chunk_size`",
            "n_points": "number of points",
        }
        for key in sorted(set(stored) | set(identity)):
            if stored.get(key) != identity.get(key):
                raise ValueError(
                    f"`store` {self.path!r} holds a different run: its {names.get(key, key)} "
                    f"is {stored.get(key)!r}, this run's is {identity.get(key)!r}. Pass another "
                    "path, or delete the old run to start over."
                )
        for name, value in fixed.items():
            if name not in group or not np.array_equal(group[name][...], np.asarray(value)):
                raise ValueError(
                    f"`store` {self.path!r} holds a different run: its {name!r} array differs "
                    "from this run's. Pass another path, or delete the old run to start over."
                )

    def done(self) -> np.ndarray:
        """Mask of computed points."""
        return np.asarray(self.group["done"][...], dtype=bool)

    def read(self, name: str) -> np.ndarray:
        """A value or fixed array."""
        return np.asarray(self.group[name][...])

    def write(self, start: int, stop: int, values: Mapping[str, np.ndarray]) -> None:
        """Store one computed chunk, then mark it done (the mark is written last)."""
        for name in self.fields:
            self.group[name][start:stop] = np.asarray(values[name], dtype=np.float64)
        self.group["done"][start:stop] = True


def open_run(path: str | os.PathLike) -> tuple[Any, dict]:
    """The Zarr group of a stored run and its probecore record."""
    zarr = _zarr()
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"no stored run at {path!r} (not a directory).")
    group = zarr.open_group(path, mode="r")
    record = group.attrs.asdict().get("probecore")
    if record is None or record.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a probecore run (no {FORMAT!r} record).")
    return group, record
