"""The tasks a ShardedObjective runs on Dask workers: build, describe and call a shard.

A shard lives in a worker's memory as a :class:`Shard`: its objective, a token new at
every build, and what identifies the build. Dask imports this module on the workers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from probecore._contract.fingerprint import digest, objective_fingerprint
from probecore._contract.objective import require_objective

__all__ = ["Shard", "build", "describe", "run", "subset", "worker_address"]

# What a shard tells Dask it weighs, at least: Dask measures custom objects shallowly and
# would otherwise think a shard free to copy to another worker with a task that reads it.
MIN_NBYTES = 16 << 20
MEMBERS = (
    "layout", "x0", "loss", "grad", "loss_and_grad", "hvp", "hvp_many", "losses_in_span",
    "metrics",
)  # fmt: skip


def worker_address() -> str | None:
    """The address of the Dask worker running the caller (None outside a worker)."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


class Shard:
    """One shard's objective in a worker's memory, with what identifies its build.

    ``token`` is new at every build, so that an answer tells which build computed it;
    ``identity`` (the objective's fingerprint, its exact loss at ``x0``, a digest of
    ``x0`` and its layout) is what a rebuild must reproduce.
    """

    def __init__(self, objective: Any, name: str) -> None:
        require_objective(objective, *MEMBERS, name=name)
        self.objective = objective
        self.token = uuid.uuid4().hex
        x0 = np.asarray(objective.x0)
        loss = float(objective.loss(x0))
        self.identity = {
            **objective_fingerprint(objective),
            "loss at x0": repr(loss),  # repr round-trips: equal strings, equal bits
            "x0": digest(x0),
            "layout": repr(objective.layout),
        }
        try:
            from dask.sizeof import sizeof

            nbytes = int(sizeof(vars(objective)))
        except (ImportError, TypeError):  # no __dict__
            nbytes = 0
        self.nbytes = max(MIN_NBYTES, nbytes)

    def __sizeof__(self) -> int:
        return self.nbytes

    def record(self) -> dict[str, Any]:
        """What the client learns of a build: token, identity and where it runs now."""
        return {"token": self.token, "identity": self.identity, "worker": worker_address()}


def build(factory: Callable[[], Any], index: int) -> Shard:
    """Shard ``index``, built by its factory (a task; Dask reruns it after a worker loss)."""
    return Shard(factory(), f"factories[{index}]()")


def subset(shard: Shard, indices: np.ndarray) -> Shard:
    """The shard's objective on its examples ``indices``, built where the shard lives."""
    return Shard(shard.objective.subset(indices), "subset")


def describe(shard: Shard) -> dict[str, Any]:
    """What the client needs to know of a shard: its record, sizes, dtype, layout and x0."""
    o = shard.objective
    return {
        **shard.record(),
        "dim": o.dim,
        "dtype": np.dtype(o.dtype),
        "layout": o.layout,
        "x0": np.asarray(o.x0),
        "n_examples": getattr(o, "n_examples", None),
        "type": type(o).__name__,
    }


def run(shard: Shard, known: str, method: str, args: tuple) -> tuple[str, Any, Any, Any]:
    """``shard.objective.method(*args)`` with the build token, worker and (if new) record."""
    value = getattr(shard.objective, method)(*args)
    record = None if shard.token == known else shard.record()
    return shard.token, worker_address(), record, value
