"""Provenance of a probe run: what it records about its objective and the software."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import platform
import sys
from typing import Any

import numpy as np

from probecore._contract.objective import Objective
from probecore._version import __version__

__all__ = ["objective_record", "versions"]


def versions(objective: Objective) -> dict[str, str]:
    """Versions of probecore, numpy, Python, the objective's package and loaded frameworks."""
    out = {"probecore": __version__, "numpy": np.__version__, "python": platform.python_version()}
    out.update(_distribution_versions(type(objective).__module__.split(".")[0]))
    for framework in ("torch", "jax"):
        mod = sys.modules.get(framework)  # recorded when loaded, never imported here
        if mod is not None and hasattr(mod, "__version__"):
            out[framework] = mod.__version__
    return out


@functools.lru_cache(maxsize=64)
def _distribution_versions(root: str) -> tuple[tuple[str, str], ...]:
    """The installed versions of the distribution named like the package ``root``.

    Read once a process: reading the metadata took about 0.6 ms, a point's worth of
    work on a small model, at every run.
    """
    out = []
    for dist in sorted({root.replace("_", "-"), root}):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out.append((dist, importlib.metadata.version(dist)))
    return tuple(out)


def objective_record(objective: Objective) -> dict[str, Any]:
    """What a run records about its objective: type, dim, dtype, data size, versions.

    An objective made by ``subset`` (or :func:`probecore.sample_examples`) adds
    ``subset``: the examples it holds, as positions in the full data set.
    """
    record: dict[str, Any] = {
        "type": f"{type(objective).__module__}.{type(objective).__qualname__}",
        "dim": int(objective.dim),
        "dtype": str(np.dtype(objective.dtype)),
        "n_examples": getattr(objective, "n_examples", None),
        "versions": versions(objective),
    }
    subset = getattr(objective, "data_subset", None)
    if subset:
        record["subset"] = subset
    return record
