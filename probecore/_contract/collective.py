"""Objectives that several processes evaluate together (SPMD): who writes, who follows.

Under ``torchrun`` (or any single-program, multiple-data launch) every process builds the
same objective on its own shard of the data, runs the same seeded algorithm and receives
the same numbers: the objective all-reduces each loss, gradient and HVP. Such an
objective carries a ``collective`` (anything with the members of :class:`Collective`);
the probes then let only its rank 0 open a run store and show progress, and hand rank 0's
view of the store (which points are done) to the other ranks, so that every rank
evaluates the same points in the same order: the all-reduces inside the objective must
match one for one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "Collective",
    "agreed_store",
    "collective_of",
    "is_lead",
    "refuse_executor",
    "shared",
]

T = TypeVar("T")


@runtime_checkable
class Collective(Protocol):
    """The processes that evaluate one objective together.

    Attributes
    ----------
    rank : int
        This process's rank in the group (0 writes stores and reports).
    size : int
        Number of processes.
    """

    rank: int
    size: int

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable objects; collective: all ranks call)."""
        ...


def collective_of(objective: Any) -> Collective | None:
    """The objective's :class:`Collective`, or None for an objective of one process."""
    coll = getattr(objective, "collective", None)
    if coll is None or getattr(coll, "size", 1) <= 1:
        return None
    if not isinstance(coll, Collective):
        raise TypeError(
            f"{type(objective).__name__}.collective must have `rank`, `size` and "
            f"`broadcast(obj)`; got {type(coll).__name__}."
        )
    return coll


def is_lead(objective: Any) -> bool:
    """Whether this process writes stores and shows progress (rank 0, or not SPMD)."""
    coll = collective_of(objective)
    return coll is None or coll.rank == 0


def refuse_executor(objective: Any, executor: Any) -> None:
    """Refuse an executor with an SPMD objective, whose calls must stay in lockstep.

    Every rank must call the objective in the same order (each call is an all-reduce);
    an executor's workers would call it concurrently, or in copies that no other rank
    joins.
    """
    coll = collective_of(objective)
    if coll is not None and executor is not None:
        raise ValueError(
            f"`executor` cannot run an objective shared by {coll.size} processes "
            f"({type(objective).__name__} with a process group): every call is a collective "
            "operation that all ranks must make in the same order. Pass executor=None; the "
            "ranks already divide the work of each evaluation between them."
        )


def shared(collective: Collective | None, compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, and its result on every rank.

    Rank 0's error is raised on rank 0 and reported on the others as a RuntimeError
    naming it, rather than leaving them waiting for a result that never comes.
    """
    if collective is None:
        return compute()
    if collective.rank == 0:
        try:
            value = compute()
        except BaseException as exc:
            collective.broadcast(("error", f"{type(exc).__name__}: {exc}"))
            raise
        collective.broadcast(("ok", value))
        return value
    status, value = collective.broadcast(None)
    if status == "error":
        raise RuntimeError(f"rank 0 of the objective's process group failed: {value}")
    return value


def agreed_store(objective: Any, store: Any) -> Any:
    """The run store every rank uses: rank 0's (its path on every rank), or None.

    Whether a run keeps a store decides which collective calls it makes (the objective's
    loss at the origin identifies it to the store), so the ranks must agree: rank 0's
    ``store`` decides, whatever the other ranks passed, and only rank 0 opens it.
    """
    coll = collective_of(objective)
    if coll is None:
        return store
    return coll.broadcast(None if store is None else os.fspath(store))
