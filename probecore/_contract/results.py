"""Frozen result objects and their storage on disk.

Results are keyword-only frozen dataclasses whose array fields are read-only copies. Each
carries its cost (``n_matvecs``: Hessian-vector products, or loss evaluations), how it
ended (``converged``), the randomness that reproduces it (``seed``) and its error
estimates. Every result class derives from :class:`ResultBase` and is registered with
:func:`register`, so that :func:`save` and :func:`load` know it.

:func:`save` writes a result to a NumPy ``.npz`` archive (no pickle) holding every array
and a JSON record of the scalar fields, the result type, the probecore version and any
metadata the caller adds; :func:`load` reads it back into the same type.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, ClassVar

import numpy as np

from probecore._version import __version__

__all__ = ["ResultBase", "load", "register", "save"]

_REGISTRY: dict[str, type] = {}
_FORMAT = "probecore-result/1"


def register(cls: type) -> type:
    _REGISTRY[cls.__name__] = cls
    return cls


class ResultBase:
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
    >>> from probecore import TraceResult
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
    payload: dict[str, Any] = {"__probecore__": np.array(header), **arrays}
    np.savez(tmp, **payload)
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
        for name in getattr(cls, "_array_fields", ()):
            if name in data:
                kwargs[name] = data[name]
    return cls(**kwargs)
