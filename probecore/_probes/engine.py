"""The probe engine: a plan of points, evaluated in chunks, through an executor, into a store.

Every probe that evaluates fixed points (lines, planes, paths) describes them as a
:class:`PointPlan`, the points ``origin + coeffs[i] @ basis``, and hands it to
:func:`evaluate_plan`. The engine

1. cuts the plan into chunks of ``chunk_size`` points (:func:`chunking`);
2. opens the run's store, if any, and reads back the chunks it holds (:class:`RunState`);
3. evaluates the missing chunks (:func:`span_chunk`: one
   :meth:`Objective.losses_in_span` call, whose default forms one point at a time, so
   memory ``O(dim)`` however large the plan), serially or on any
   :class:`concurrent.futures.Executor`, the objective pickled or built once per worker
   by a factory (:func:`run_chunks`);
4. writes each finished chunk to the store as it arrives and advances a progress bar.

Rays draw their directions inside each chunk, so they bring their own chunk task but go
through the same :class:`RunState` and :func:`run_chunks`.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probecore._contract.collective import Collective, agreed_store, collective_of, is_lead, shared
from probecore._contract.fingerprint import objective_fingerprint
from probecore._contract.objective import Objective, span_point
from probecore._contract.progress import progress_bar
from probecore._probes.checks import (
    check_executor,
    check_point,
    chunking,
    metric_discovery_evals,
    metric_names,
    origin_loss,
)
from probecore._probes.provenance import objective_record
from probecore._probes.store import RunStore

__all__ = [
    "IN_FLIGHT",
    "Factory",
    "PlanValues",
    "PointPlan",
    "RunState",
    "check_executor",
    "check_point",
    "chunking",
    "evaluate_plan",
    "metric_discovery_evals",
    "metric_names",
    "origin_loss",
    "progress_bar",
    "resolve",
    "run_chunks",
    "stack_metrics",
    "span_chunk",
    "task_spec",
]

# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, eq=False)
class PointPlan:
    """The points a probe evaluates: ``origin + coeffs[i] @ basis`` for each row ``i``.

    Attributes
    ----------
    kind : str
        What the points are (``"line"``, ``"plane"``, ``"path"``): the store's kind and
        the progress bar's label.
    origin : numpy.ndarray
        ``(dim,)``, in the objective's dtype.
    basis : numpy.ndarray
        ``(k, dim)``, same dtype as ``origin``.
    coeffs : numpy.ndarray
        ``(n_points, k)`` float64 coordinates of the points in ``basis``.
    fixed : mapping of str to numpy.ndarray
        Arrays stored with the run (the grid, the path's ``ts``); with ``origin``,
        ``basis`` and ``coeffs`` they must be bitwise equal for a store to resume.
    identity : mapping
        JSON-serialisable settings that must also match to resume (directions' recipe,
        curve kind, metric names).

    Examples
    --------
    >>> plan = PointPlan(kind="line", origin=np.zeros(3), basis=np.eye(3)[:1],
    ...                  coeffs=np.array([[-1.0], [0.0], [1.0]]))
    >>> plan.n_points, plan.points(2, 3).tolist()
    (3, [[1.0, 0.0, 0.0]])
    """

    kind: str
    origin: np.ndarray
    basis: np.ndarray
    coeffs: np.ndarray
    fixed: Mapping[str, np.ndarray] = field(default_factory=dict)
    identity: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        origin, basis = np.asarray(self.origin), np.asarray(self.basis)
        coeffs = np.asarray(self.coeffs, dtype=np.float64)
        if origin.ndim != 1 or basis.ndim != 2 or basis.shape[1] != origin.size:
            raise ValueError(
                f"a plan needs origin (dim,) and basis (k, dim); got {origin.shape} and "
                f"{basis.shape}."
            )
        if coeffs.ndim != 2 or coeffs.shape[1] != basis.shape[0]:
            raise ValueError(
                f"a plan's coeffs must have shape (n_points, {basis.shape[0]}); got {coeffs.shape}."
            )
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "basis", basis)
        object.__setattr__(self, "coeffs", coeffs)

    @property
    def n_points(self) -> int:
        """Number of points."""
        return int(self.coeffs.shape[0])

    def points(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Points ``start:stop`` as rows, in the origin's dtype (materialised: small plans)."""
        c = self.coeffs[start:stop]
        return self.origin + (c @ self.basis).astype(self.origin.dtype, copy=False)


@dataclass(frozen=True, eq=False)
class PlanValues:
    """What :func:`evaluate_plan` returns: the values at every point of a plan.

    Attributes
    ----------
    values : dict of str to numpy.ndarray
        ``"loss"`` and each metric, float64 of shape ``(n_points,)``; NaN where not
        computed.
    computed : numpy.ndarray
        Mask of the points computed (by this call or read from the store).
    metric_names : tuple of str
        The metrics recorded besides the loss.
    n_evaluated : int
        Points evaluated by this call (0 for points read from a store).
    metadata : dict
        The objective's record, the caller's metadata and the store's path.
    n_origin_evals : int
        Loss evaluations at the origin that identify the objective to a store (1 with a
        store, else 0).
    """

    values: dict[str, np.ndarray]
    computed: np.ndarray
    metric_names: tuple[str, ...]
    n_evaluated: int
    metadata: dict
    n_origin_evals: int = 0

    @property
    def n_loss_evals(self) -> int:
        """Loss evaluations spent by this call: the points, and the origin for a store."""
        return self.n_evaluated + self.n_origin_evals

    @property
    def losses(self) -> np.ndarray:
        """The loss at each point."""
        return self.values["loss"]

    @property
    def n_metric_evals(self) -> int:
        """Metric evaluations spent by this call (one per evaluated point, if any metrics)."""
        return self.n_evaluated if self.metric_names else 0

    def metric_values(self, shape: Sequence[int] | None = None) -> np.ndarray:
        """Metric values as ``(n_metrics, *shape)``, ``shape`` default ``(n_points,)``."""
        return stack_metrics(
            self.values, self.metric_names, self.computed.shape if shape is None else shape
        )


def stack_metrics(
    values: Mapping[str, np.ndarray], names: Sequence[str], shape: Sequence[int]
) -> np.ndarray:
    """The metrics ``names`` of ``values``, each reshaped to ``shape``, as one array.

    Returns
    -------
    numpy.ndarray
        ``(len(names), *shape)``; ``(0, *shape)`` without metrics.
    """
    shape = tuple(shape)
    rows = [values[m].reshape(shape) for m in names]
    return np.array(rows).reshape(len(names), *shape)


# --------------------------------------------------------------------------- execution


class Factory:
    """A picklable recipe that workers call once to build their own objective.

    Parameters
    ----------
    fn : callable
        Zero-argument function that returns the objective.
    expected : dict, optional
        The fingerprint of the objective the run was given
        (:func:`~probecore._contract.fingerprint.objective_fingerprint`): a worker refuses
        to evaluate an objective that ``fn`` built differently (other data, model, dtype),
        whose values would otherwise be mixed silently with the run's.
    """

    def __init__(self, fn: Callable[[], Any], expected: dict | None = None) -> None:
        self.fn = fn
        self.expected = expected
        self.token = uuid.uuid4().hex


WORKER_OBJECTIVES: dict[str, Any] = {}
_RESOLVE_LOCK = threading.Lock()
IN_FLIGHT = 16  # chunks submitted to an executor at any one time


def resolve(spec: Any) -> Any:
    """The objective a task runs on: ``spec``, or a Factory's build (once per worker and run).

    A worker's threads (Dask's) share the build: the first builds it, holding a lock, and
    the others wait for it rather than build their own.
    """
    if isinstance(spec, Factory):
        with _RESOLVE_LOCK:
            obj = WORKER_OBJECTIVES.get(spec.token)
            if obj is None:
                WORKER_OBJECTIVES.clear()  # one run's objective per worker at a time
                obj = spec.fn()
                _check_build(spec, obj)
                WORKER_OBJECTIVES[spec.token] = obj
        return obj
    return spec


def _check_build(spec: Factory, obj: Any) -> None:
    """Refuse a factory's build whose fingerprint is not the given objective's."""
    if spec.expected is None:
        return
    built = objective_fingerprint(obj)
    for key in sorted(set(built) | set(spec.expected)):
        if built.get(key) != spec.expected.get(key):
            raise ValueError(
                f"`objective_factory` built another objective than the one passed: "
                f"its {key!r} is {built.get(key)!r}, the objective's is "
                f"{spec.expected.get(key)!r}. The factory must build, in each "
                "worker, the objective the probe was given (same model, data, "
                "loss function and dtype)."
            )


def span_chunk(
    spec: Any, origin: np.ndarray, basis: np.ndarray, coeffs: np.ndarray, metric_names: tuple
) -> dict[str, np.ndarray]:
    """Losses (and metrics) at ``origin + coeffs @ basis``: one unit of work.

    Parameters
    ----------
    spec : Objective or Factory
        The objective, or the recipe a worker builds it from (:func:`resolve`).
    origin, basis, coeffs : numpy.ndarray
        The chunk's points, as in :class:`PointPlan`.
    metric_names : tuple of str
        Metrics to record at each point (one ``objective.metrics`` call per point).

    Returns
    -------
    dict of str to numpy.ndarray
        ``"loss"`` and each metric, float64 (NaN for a metric the objective did not report).
    """
    obj = resolve(spec)
    out = {"loss": np.asarray(obj.losses_in_span(origin, basis, coeffs), dtype=np.float64)}
    if metric_names:
        values = {name: np.full(len(coeffs), np.nan) for name in metric_names}
        work: dict[str, np.ndarray] = {}
        for i, c in enumerate(coeffs):
            point = span_point(origin, basis, c, work=work)
            for name, value in obj.metrics(point).items():
                if name in values:
                    values[name][i] = value
        out.update(values)
    return out


@dataclass(eq=False)
class RunState:
    """A run's values so far: the value arrays, the done mask and the store they go to.

    Attributes
    ----------
    values : dict of str to numpy.ndarray
        One float64 array per field, NaN where not done.
    done : numpy.ndarray
        Mask of the points done.
    store : RunStore or None
        Where each finished chunk is written.
    """

    values: dict[str, np.ndarray]
    done: np.ndarray
    store: RunStore | None = None
    resumed: bool = False
    stored: dict | None = None

    @classmethod
    def start(
        cls,
        store: str | os.PathLike | None,
        *,
        kind: str,
        n_points: int,
        chunk_size: int,
        fields: Sequence[str],
        fixed: Mapping[str, np.ndarray],
        identity: dict,
        objective: dict | None,
        metadata: dict,
        collective: Collective | None = None,
    ) -> RunState:
        """Empty values, or what the store at ``store`` holds of the same run.

        Parameters
        ----------
        store : path or None
            The run's Zarr directory (created if missing); None keeps nothing on disk.
        kind, n_points, chunk_size, fields, fixed, identity, objective, metadata
            As for :class:`~probecore._probes.store.RunStore` (``objective`` may be None
            without a store).
        collective : Collective, optional
            The processes of an SPMD objective: only rank 0 opens the store; the others
            receive what it read (the same points then remain to be done on every rank)
            and keep nothing on disk.

        Returns
        -------
        RunState
            Holding the store's lock, if any, until :meth:`close`.
        """
        values = {name: np.full(n_points, np.nan) for name in fields}
        done = np.zeros(n_points, dtype=bool)
        if store is None:
            return cls(values, done)
        opened: list[RunStore] = []

        def open_store() -> tuple:
            rs = RunStore(
                store,
                kind=kind,
                n_points=n_points,
                chunk_size=chunk_size,
                fields=list(fields),
                fixed=fixed,
                identity=identity,
                objective=objective or {},
                metadata=metadata,
            )
            opened.append(rs)
            try:
                read = rs.read_verified() if rs.resumed else (done, values)
            except BaseException:
                rs.close()
                raise
            return (*read, rs.resumed, dict(rs.metadata) if rs.resumed else None)

        done, values, resumed, stored = shared(collective, open_store)
        return cls(values, done, opened[0] if opened else None, resumed, stored)

    def close(self) -> None:
        """Release the store, if any, to other writers."""
        if self.store is not None:
            self.store.close()

    def record(self, start: int, stop: int, out: Mapping[str, np.ndarray]) -> None:
        """Keep one finished chunk: values, then the store, then the done mask.

        Parameters
        ----------
        start, stop : int
            The chunk's points.
        out : mapping of str to numpy.ndarray
            The chunk task's values.
        """
        for name, arr in self.values.items():
            arr[start:stop] = out[name]
        if self.store is not None:
            self.store.write(start // self.store.chunk_size, start, stop, out)
        self.done[start:stop] = True


def task_spec(objective: Objective, executor: Any, objective_factory: Any) -> Any:
    """What each task carries: the objective, or a :class:`Factory` when one is given."""
    if executor is not None and objective_factory is not None:
        return Factory(objective_factory, expected=objective_fingerprint(objective))
    return objective


def run_chunks(
    chunks: list[tuple[int, int]],
    task: Callable[..., dict[str, np.ndarray]],
    args_of: Callable[[int, int, int], tuple],
    spec: Any,
    state: RunState,
    *,
    executor: Executor | None,
    progress: bool | None,
    desc: str,
) -> int:
    """Evaluate the chunks not yet done; record each as it finishes.

    Parameters
    ----------
    chunks : list of (int, int)
        ``(start, stop)`` of every chunk of the run (:func:`chunking`).
    task : callable
        ``task(spec, *args_of(i, start, stop))`` evaluates chunk ``i`` and returns its
        values by field; it must be picklable (a module-level function) for an executor.
    args_of : callable
        The task's arguments for chunk ``i``, points ``start:stop``.
    spec : Objective or Factory
        From :func:`task_spec`.
    state : RunState
        Values so far; chunks whose points are all done are skipped.
    executor : concurrent.futures.Executor or None
        None: serial, here. Otherwise at most :data:`IN_FLIGHT` chunks are submitted at a
        time, and each is recorded as it finishes (in any order).
    progress : bool or None
        As for :func:`progress_bar`.
    desc : str
        The progress bar's label.

    Returns
    -------
    int
        Number of points (rays) evaluated by this call.
    """
    todo = [(i, s, e) for i, (s, e) in enumerate(chunks) if not np.all(state.done[s:e])]
    bar = progress_bar(len(chunks), len(chunks) - len(todo), desc, progress)

    def record(s: int, e: int, out: dict[str, np.ndarray]) -> None:
        state.record(s, e, out)
        bar.update(1)

    try:
        if executor is None:
            for i, s, e in todo:
                record(s, e, task(spec, *args_of(i, s, e)))
        else:
            # At most IN_FLIGHT chunks are submitted at a time: each task carries the
            # objective (or its factory) and the chunk's inputs, so memory stays bounded.
            pending = iter(todo)
            futures: dict[Any, tuple[int, int]] = {}

            def submit_next() -> None:
                item = next(pending, None)
                if item is not None:
                    i, s, e = item
                    futures[executor.submit(task, spec, *args_of(i, s, e))] = (s, e)

            for _ in range(IN_FLIGHT):
                submit_next()
            try:
                while futures:
                    finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        s, e = futures.pop(fut)
                        try:
                            out = fut.result()
                        except Exception as exc:
                            if "pickl" in f"{type(exc).__name__} {exc}".lower():
                                raise TypeError(
                                    "the objective could not be sent to the executor's "
                                    f"workers ({type(exc).__name__}: {exc}). Pass "
                                    "objective_factory=, a picklable function that builds the "
                                    "objective in each worker."
                                ) from exc
                            raise
                        record(s, e, out)
                        submit_next()
            finally:
                for fut in futures:
                    fut.cancel()
    finally:
        bar.close()
    return sum(e - s for _, s, e in todo)


# --------------------------------------------------------------------------- entry point


def evaluate_plan(
    objective: Objective,
    plan: PointPlan,
    *,
    metric_names: Sequence[str] = (),
    chunk_size: int | None = None,
    executor: Executor | None = None,
    objective_factory: Callable[[], Any] | None = None,
    store: str | os.PathLike | None = None,
    progress: bool | None = None,
    metadata: dict | None = None,
) -> PlanValues:
    """Loss (and metrics) at every point of ``plan``: chunks → executor → store → progress.

    Parameters
    ----------
    objective : Objective
        The loss; ``origin`` and ``basis`` must be in its dtype.
    plan : PointPlan
        The points.
    metric_names : sequence of str
        Metrics to record (checked by the caller, see :func:`metric_names`).
    chunk_size : int, optional
        Points per unit of work (default ``objective.chunk_size``, else 64).
    executor : concurrent.futures.Executor, optional
        Runs the chunks; the objective is pickled with each, unless ``objective_factory``.
    objective_factory : callable, optional
        With an executor: builds the objective once per worker.
    store : path, optional
        Zarr directory (new, empty, or a store of this run); each chunk is written as it
        finishes, and a rerun of the same plan with the same objective on the same path
        computes only the chunks it does not hold. The objective is identified by its
        fingerprint and its loss at the origin (one more loss evaluation).
    progress : bool, optional
        Progress bar over chunks (default: only when stderr is a terminal).
    metadata : dict, optional
        Recorded with the run, beside the objective's record.

    Returns
    -------
    PlanValues

    Examples
    --------
    >>> from probecore.analytic import Quadratic
    >>> q = Quadratic.from_spectrum([1.0, 4.0], rng=0)
    >>> plan = PointPlan(kind="line", origin=q.x0, basis=np.eye(2)[:1],
    ...                  coeffs=np.linspace(-1, 1, 5)[:, None])
    >>> out = evaluate_plan(q, plan, chunk_size=2)
    >>> out.n_evaluated, bool(out.computed.all()), out.losses.shape
    (5, True, (5,))
    """
    check_executor(executor, objective_factory, objective)
    store = agreed_store(objective, store)
    names = tuple(metric_names)
    n = plan.n_points
    chunk_size, chunks = chunking(n, chunk_size, objective)
    meta = {"objective": objective_record(objective), **(metadata or {})}
    fingerprint = None
    if store is not None:  # the store recognises its objective by this, on resume
        fingerprint = objective_fingerprint(objective, origin_loss(objective, plan.origin))
    state = RunState.start(
        store,
        kind=plan.kind,
        n_points=n,
        chunk_size=chunk_size,
        fields=["loss", *names],
        fixed={**plan.fixed, "coeffs": plan.coeffs, "origin": plan.origin, "basis": plan.basis},
        identity=dict(plan.identity),
        objective=fingerprint,
        metadata=meta,
        collective=collective_of(objective),
    )
    origin, basis, coeffs = plan.origin, plan.basis, plan.coeffs
    try:
        n_evaluated = run_chunks(
            chunks,
            span_chunk,
            lambda i, s, e: (origin, basis, coeffs[s:e], names),
            task_spec(objective, executor, objective_factory),
            state,
            executor=executor,
            progress=progress if is_lead(objective) else False,
            desc=plan.kind,
        )
    finally:
        state.close()
    meta["store"] = None if store is None else os.fspath(store)
    return PlanValues(
        values=state.values,
        computed=state.done,
        metric_names=names,
        n_evaluated=n_evaluated,
        metadata=meta,
        n_origin_evals=0 if store is None else 1,
    )
