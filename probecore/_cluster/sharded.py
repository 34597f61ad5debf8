"""A sharded objective on Dask: one objective per shard of the data, kept on a worker.

Each shard is built once, on a worker, by a factory (any objective: analytic, PyTorch,
JAX...) and stays in that worker's memory; a call ships only the vectors it needs and
combines the shards' answers weighted by their example counts. A worker that dies takes
its shards with it: Dask rebuilds them from their factories elsewhere, and the build
token every answer carries tells the client that it happened, so that a rebuilt shard is
used only after its identity was checked against the original's -- a lost worker never
gives a wrong number.

Dask is imported when an objective is built, never by this module.
"""

from __future__ import annotations

import numbers
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from probecore._cluster import tasks
from probecore._contract.fingerprint import digest, record_subset
from probecore._contract.layout import Layout
from probecore._contract.objective import check_span
from probecore._contract.validation import check_matrix, check_option, check_vector

__all__ = ["ShardLostError", "ShardedObjective"]

WORKER_LOSS = ("rebuild", "raise")
_INSTALL = 'pip install "dask[distributed]"'
_POLL_S = 1.0  # seconds between checks that a pinned task's worker is still there


class ShardLostError(RuntimeError):
    """A shard was lost with its worker and its answers can no longer be trusted.

    Raised instead of a number when a rebuilt shard differs from the original (other
    data, model, dtype or loss at ``x0``), when ``on_worker_loss="raise"`` and a shard
    was rebuilt, and when Dask gave up on a shard's task because every worker that ran it
    died (Dask's ``KilledWorker``). A call that raises returns nothing, never a partial
    sum; an objective that raised keeps raising.

    Attributes
    ----------
    shard : int or None
        The shard's index (its factory's position).
    worker : str or None
        The address of the worker involved: where the shard was rebuilt, or the last
        worker that died running its task.
    """

    def __init__(self, message: str, shard: int | None = None, worker: str | None = None):
        super().__init__(message)
        self.shard = shard
        self.worker = worker

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.args[0], self.shard, self.worker)


def _distributed() -> Any:
    """``distributed``, or an ImportError that says how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "ShardedObjective runs its shards on a Dask cluster and needs Dask's "
            f"distributed scheduler: {_INSTALL}."
        ) from exc
    return distributed


def _difference(original: dict[str, Any], rebuilt: dict[str, Any]) -> str:
    """Where two identities differ, entry by entry, in words ('' when they are equal)."""
    keys = sorted(k for k in set(original) | set(rebuilt) if original.get(k) != rebuilt.get(k))
    return "; ".join(
        f"its {k} is {rebuilt.get(k)!r} (the original's {original.get(k)!r})" for k in keys
    )


def _x0_difference(x0: np.ndarray, first: np.ndarray) -> str:
    """Where ``x0`` differs bitwise from ``first``, in words ('' when equal)."""
    if x0.dtype != first.dtype or x0.shape != first.shape:
        return f"{x0.dtype} {x0.shape} against {first.dtype} {first.shape}"
    a, b = np.ascontiguousarray(x0), np.ascontiguousarray(first)
    if a.tobytes() == b.tobytes():
        return ""
    j = int(np.flatnonzero(a.view(np.uint8) != b.view(np.uint8))[0]) // a.itemsize
    return f"entry {j} is {a[j]!r}, shard 0's {b[j]!r}"


class ShardedObjective:
    """An objective whose data set is split into shards, each kept on a Dask worker.

    Factory ``i`` runs on a worker and returns shard ``i``'s objective (any
    :class:`~probecore.Objective`); the shards are built once, spread over the cluster's
    workers by Dask, and stay in their memory. Every call ships only its vectors
    (``x``, ``v``, ``V``, or ``origin``, ``basis`` and ``coeffs``) to each shard, and
    returns the shards' answers weighted by their example counts: with ``n_i`` examples
    in shard ``i`` and ``N = Σ n_i``, ``loss = Σ (n_i/N) loss_i``, and the same for the
    gradient, Hessian products, losses in a span and each metric, summed in shard order
    (0, 1, ...) in float64 so that results are deterministic, then returned in the
    objective's dtype. A Hessian-vector product moves ``3·dim`` numbers per shard
    (``x`` and ``v`` to it, ``Hv`` back); the data never moves.

    Parameters
    ----------
    client : distributed.Client
        A running (synchronous) client of the cluster.
    factories : sequence of callables
        Zero-argument, picklable callables; factory ``i``, called on a worker, returns
        shard ``i``'s objective. The shards must agree on ``dim``, ``dtype``, ``layout``
        and ``x0`` (bitwise), and each must report a positive int ``n_examples``.
    on_worker_loss : {"rebuild", "raise"}
        What to do when a shard's worker dies and Dask rebuilds the shard from its
        factory on another worker. ``"rebuild"``: use the rebuilt shard if its identity
        (fingerprint, ``n_examples``, bitwise loss at ``x0``, ``x0`` and layout) equals
        the original's, counting it in :attr:`n_rebuilds`, else raise
        :class:`ShardLostError`. ``"raise"``: raise :class:`ShardLostError` as soon as a
        rebuild is seen.

    Attributes
    ----------
    dim, dtype, layout, x0
        The shards' (all equal).
    n_examples : int
        Examples in all shards.
    n_shards : int
    shard_sizes : tuple of int
        Each shard's ``n_examples``.
    shard_workers : tuple of str
        Where each shard was last seen (worker addresses).
    n_rebuilds : int
        Rebuilt shards that were checked and used.

    Raises
    ------
    ShardLostError
        From any call, when a shard was lost with its worker and its rebuild cannot be
        trusted (or ``on_worker_loss="raise"``), or when Dask gave up on a shard's task
        (``KilledWorker``): never a partial sum.

    Notes
    -----
    Objectives built from data weight shards exactly as one objective on all the data
    averages its examples: for a mean loss plus a penalty on the parameters (the same in
    every shard), the weighted sum is the loss on all the data. Metrics are averaged the
    same way, which suits means such as an accuracy.

    The objective itself cannot be pickled (it holds the client and the shards'
    futures): run probes on it without an ``executor``; its shards already run in
    parallel. Its shards are released when it is garbage-collected.

    Examples
    --------
    .. code-block:: python

        from distributed import Client, LocalCluster
        client = Client(LocalCluster(n_workers=2, threads_per_worker=1))
        objective = probecore.ShardedObjective(
            client, [functools.partial(make_shard, i) for i in range(2)]
        )
        probecore.lanczos(objective, k=3, rng=0)
    """

    def __init__(
        self,
        client: Any,
        factories: Sequence[Callable[[], Any]],
        *,
        on_worker_loss: str = "rebuild",
    ) -> None:
        distributed = _distributed()
        self._setup(distributed, client, on_worker_loss)
        if isinstance(factories, str | bytes) or not isinstance(factories, Sequence):
            raise TypeError(
                "`factories` must be a sequence (list or tuple) of zero-argument callables, "
                f"one per shard; got {type(factories).__name__}."
            )
        if len(factories) == 0:
            raise ValueError("`factories` must hold at least one factory; got an empty sequence.")
        from distributed.protocol import pickle

        for i, factory in enumerate(factories):
            if not callable(factory):
                raise TypeError(
                    f"`factories[{i}]` must be a zero-argument callable that returns shard "
                    f"{i}'s Objective; got {type(factory).__name__}."
                )
            try:
                pickle.dumps(factory)
            except Exception as exc:
                raise TypeError(
                    f"`factories[{i}]` must be picklable (Dask sends it to a worker); "
                    f"pickling it failed: {type(exc).__name__}: {exc}"
                ) from exc
        # No worker restrictions: Dask spreads the builds over the workers, and rebuilds a
        # lost shard on any worker -- even one that joins after all were lost, which a
        # task restricted to a worker's address would wait for forever (a restriction
        # outlives its worker, allow_other_workers or not, once no worker is left).
        tag = uuid.uuid4().hex
        shards = [
            client.submit(tasks.build, factory, i, key=f"probecore-shard-{i}-{tag}", pure=False)
            for i, factory in enumerate(factories)
        ]
        self._attach(shards, "`factories[{}]`")

    def _setup(self, distributed: Any, client: Any, on_worker_loss: str) -> None:
        """Check the client and ``on_worker_loss``; set the call state."""
        if not isinstance(client, distributed.Client):
            raise TypeError(
                "`client` must be a dask.distributed.Client (for example "
                "`Client(LocalCluster())`); got "
                f"{type(client).__name__}."
            )
        if client.asynchronous:
            raise TypeError("`client` must be a synchronous Client; got an asynchronous one.")
        if client.status != "running":
            raise ValueError(f"`client` must be running; its status is {client.status!r}.")
        self._on_worker_loss = check_option("on_worker_loss", on_worker_loss, WORKER_LOSS)
        self._client = client
        self._killed_worker = distributed.KilledWorker
        self._where: list[str | None] = []
        self._lock = threading.Lock()
        self.n_rebuilds = 0

    def _attach(self, shards: list[Any], name: str) -> None:
        """Learn each built shard's record and check that the shards agree."""
        self._shards = shards
        self._tokens: list[str | None] = [None] * len(shards)
        records = self._gather([(tasks.describe, (s,)) for s in shards])
        first = records[0]
        for i, rec in enumerate(records):
            n = rec["n_examples"]
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n <= 0:
                raise ValueError(
                    f"{name.format(i)} built a {rec['type']} whose n_examples is {n!r}; a "
                    "ShardedObjective weights its shards by their example counts, so each "
                    "must report a positive int."
                )
            for key in ("dim", "dtype", "layout"):
                if rec[key] != first[key]:
                    raise ValueError(
                        f"{name.format(i)} built a shard whose {key} is {rec[key]!r}, but "
                        f"shard 0's is {first[key]!r}; every shard must have the same "
                        "dim, dtype, layout and x0."
                    )
            detail = _x0_difference(rec["x0"], first["x0"])
            if detail:
                raise ValueError(
                    f"{name.format(i)} built a shard whose x0 differs from shard 0's "
                    f"({detail}); every shard must start from the same parameters, bitwise."
                )
        self._tokens = [rec["token"] for rec in records]
        self._identity = [rec["identity"] for rec in records]
        self._where = [rec["worker"] for rec in records]
        self._counts = tuple(int(rec["n_examples"]) for rec in records)
        total = sum(self._counts)
        self._weights = [n / total for n in self._counts]
        self._offsets = np.cumsum((0, *self._counts))
        self.dim = int(first["dim"])
        self.dtype = np.dtype(first["dtype"])
        self.layout: Layout = first["layout"]
        self.x0 = np.array(first["x0"], dtype=self.dtype)
        self.n_examples = total

    # ------------------------------------------------------------------ calls

    def _submit(self, i: int, fn: Callable[..., Any], args: tuple, worker: str | None) -> Any:
        """Task ``fn(*args)`` for shard ``i``, on ``worker`` only, or where Dask decides."""
        key = f"probecore-{fn.__name__}-{i}-{uuid.uuid4().hex}"
        pin = {"workers": [worker], "allow_other_workers": False} if worker else {}
        return self._client.submit(fn, *args, key=key, pure=False, **pin)

    def _gather(self, jobs: list[tuple[Any, tuple]], workers: list | None = None) -> list[Any]:
        """Each task's result (task ``i`` for shard ``i``), or an error naming its shard.

        A task pinned to the worker that holds its shard (``workers[i]``; a task that
        depends on a shard runs where the shard is anyway, but only a pinned one is never
        moved to an idle worker, shard and all, by Dask's work stealing) is sent again
        unpinned if that worker is gone: a lost shard is rebuilt elsewhere, where the
        pinned task could never run. The check runs each ``_POLL_S`` seconds of waiting; it
        decides where a task runs, never its result.
        """
        pins = list(workers) if workers is not None else [None] * len(jobs)
        futures = [
            self._submit(i, fn, args, w)
            for i, ((fn, args), w) in enumerate(zip(jobs, pins, strict=True))
        ]
        out = []
        for i in range(len(futures)):
            while True:
                try:
                    out.append(futures[i].result(timeout=_POLL_S))
                    break
                except Exception as exc:
                    if not isinstance(exc, TimeoutError) or futures[i].status == "error":
                        error = self._failure(i, exc)
                        if error is exc:
                            raise
                        raise error from exc
                alive = set(self._client.scheduler_info()["workers"]) if any(pins) else set()
                for j, w in enumerate(pins):
                    if w and w not in alive and not futures[j].done():
                        pins[j] = None
                        futures[j] = self._submit(j, *jobs[j], None)
        return out

    def _failure(self, i: int, exc: BaseException) -> BaseException:
        """What to raise for shard ``i``'s failed task: ``exc``, or a ShardLostError."""
        if isinstance(exc, self._killed_worker):
            last = getattr(getattr(exc, "last_worker", None), "address", None)
            return ShardLostError(
                f"shard {i}: Dask gave up on its task after every worker that ran it died "
                f"(the last was {last}); no result is returned, not even a partial sum. "
                f"Dask's message: {exc}",
                shard=i,
                worker=last,
            )
        if self._where and self._shards[i].status == "error":
            return ShardLostError(
                f"shard {i} was lost with its worker {self._where[i]} and could not be "
                f"rebuilt: its factory raised {type(exc).__name__}: {exc}",
                shard=i,
                worker=self._where[i],
            )
        exc.add_note(f"(in shard {i} of a ShardedObjective, on a Dask worker)")
        return exc

    def _call(self, method: str, *args: Any) -> list[Any]:
        """``method(*args)`` on every shard: one answer per shard, each checked."""
        with self._lock:
            tokens, where = list(self._tokens), list(self._where)
        jobs = [
            (tasks.run, (shard, tokens[i], method, args)) for i, shard in enumerate(self._shards)
        ]
        results = self._gather(jobs, where)
        for i, (token, worker, record, _) in enumerate(results):
            if token != tokens[i]:
                self._rebuilt(i, token, record)
            with self._lock:
                if token == self._tokens[i]:
                    self._where[i] = worker
        return [value for *_, value in results]

    def _rebuilt(self, i: int, token: str, record: dict[str, Any]) -> None:
        """Accept shard ``i``'s rebuild (counted) if allowed and identical; raise if not."""
        with self._lock:
            if token == self._tokens[i]:  # another thread accepted it
                return
            lost, now = self._where[i], record["worker"]
            what = f"shard {i} was lost with its worker {lost} and rebuilt by Dask on {now}"
            if self._on_worker_loss == "raise":
                raise ShardLostError(
                    f"{what}; on_worker_loss='raise' refuses rebuilt shards. Build a new "
                    "ShardedObjective, or pass on_worker_loss='rebuild' to use rebuilt shards "
                    "that are identical to the original.",
                    shard=i,
                    worker=now,
                )
            difference = _difference(self._identity[i], record["identity"])
            if difference:
                raise ShardLostError(
                    f"{what}, but the rebuilt shard is not the original: {difference}. Its "
                    "values would be mixed with the other shards', so none is returned; "
                    f"factory {i} must build the same objective every time (same data, "
                    "model, loss function and dtype).",
                    shard=i,
                    worker=now,
                )
            self._tokens[i] = token
            self.n_rebuilds += 1

    def _combine(self, method: str, values: list[Any]) -> np.ndarray:
        """``Σ (n_i/N) values[i]`` in float64, in shard order."""
        first = np.shape(values[0])
        total = np.zeros(first)
        for i, (w, v) in enumerate(zip(self._weights, values, strict=True)):
            if np.shape(v) != first:
                raise ValueError(
                    f"shard {i}'s {method} has shape {np.shape(v)}, shard 0's {first}."
                )
            total += w * np.asarray(v, dtype=np.float64)
        return total

    def loss(self, x: np.ndarray) -> float:
        """Loss at ``x``: the shards' losses weighted by their example counts."""
        x = check_vector("x", x, dim=self.dim, dtype=self.dtype)
        return float(self._combine("loss", self._call("loss", x)))

    def grad(self, x: np.ndarray) -> np.ndarray:
        """Gradient at ``x``."""
        x = check_vector("x", x, dim=self.dim, dtype=self.dtype)
        return self._combine("grad", self._call("grad", x)).astype(self.dtype)

    def loss_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at ``x`` in one call per shard."""
        x = check_vector("x", x, dim=self.dim, dtype=self.dtype)
        pairs = self._call("loss_and_grad", x)
        loss = float(self._combine("loss", [p[0] for p in pairs]))
        return loss, self._combine("grad", [p[1] for p in pairs]).astype(self.dtype)

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Hessian-vector product ``H(x) @ v``."""
        x = check_vector("x", x, dim=self.dim, dtype=self.dtype)
        v = check_vector("v", v, dim=self.dim, dtype=self.dtype)
        return self._combine("hvp", self._call("hvp", x, v)).astype(self.dtype)

    def hvp_many(self, x: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Hessian times each row of ``V`` (``(k, dim)``), one call per shard."""
        x = check_vector("x", x, dim=self.dim, dtype=self.dtype)
        V = check_matrix("V", V, dim=self.dim, dtype=self.dtype)
        return self._combine("hvp_many", self._call("hvp_many", x, V)).astype(self.dtype)

    def losses_in_span(
        self, origin: np.ndarray, basis: np.ndarray, coeffs: np.ndarray
    ) -> np.ndarray:
        """Losses at ``origin + coeffs @ basis``, each point's shard losses weighted."""
        origin, basis, coeffs = check_span(self, origin, basis, coeffs)
        values = self._call("losses_in_span", origin, basis, coeffs)
        return self._combine("losses_in_span", values)

    def metrics(self, x: np.ndarray) -> dict[str, float]:
        """Each metric at ``x``, weighted like the loss; the shards must report the same."""
        x = check_vector("x", x, dim=self.dim, dtype=self.dtype)
        values = self._call("metrics", x)
        names = list(values[0])
        for i, m in enumerate(values):
            if set(m) != set(names):
                raise ValueError(
                    f"shard {i} reports the metrics {sorted(m)}, shard 0 {sorted(names)}; a "
                    "ShardedObjective averages each metric over its shards, so all must "
                    "report the same ones."
                )
        return {k: float(self._combine(k, [m[k] for m in values])) for k in names}

    def subset(self, indices: np.ndarray) -> ShardedObjective:
        """The same objective on the examples ``indices`` (positions in all the shards).

        Example ``j`` is example ``j - offset`` of the shard that holds it (shards in
        order, each after the previous one's examples). Each shard's subset is built on
        its worker (from the shard, so that Dask can rebuild it after a loss); shards
        without a selected example are left out, and the examples are kept in data-set
        order.
        """
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
            raise ValueError(
                f"`indices` must be a non-empty 1-D integer array; got {idx.dtype} "
                f"of shape {idx.shape}."
            )
        if idx.min() < 0 or idx.max() >= self.n_examples:
            raise ValueError(
                f"`indices` must lie in [0, {self.n_examples - 1}]; got range "
                f"[{idx.min()}, {idx.max()}]."
            )
        idx = np.sort(idx)
        parts = []
        for i, (lo, hi) in enumerate(zip(self._offsets[:-1], self._offsets[1:], strict=True)):
            local = idx[(idx >= lo) & (idx < hi)] - lo
            if local.size:
                parts.append(self._submit(i, tasks.subset, (self._shards[i], local), None))
        sub = object.__new__(ShardedObjective)
        sub._setup(_distributed(), self._client, self._on_worker_loss)
        sub._attach(parts, "the subset of shard {}")
        return record_subset(self, sub, idx)

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this objective to a run store: its shards' identities."""
        out: dict[str, Any] = {"n_shards": self.n_shards, "shards": digest(self._identity)}
        data = [ident.get("data") for ident in self._identity]
        if all(isinstance(d, str) for d in data):
            out["data"] = digest(data)
        return out

    @property
    def n_shards(self) -> int:
        """Number of shards."""
        return len(self._shards)

    @property
    def shard_sizes(self) -> tuple[int, ...]:
        """Each shard's ``n_examples``."""
        return self._counts

    @property
    def shard_workers(self) -> tuple[str | None, ...]:
        """Where each shard was last seen (worker addresses)."""
        return tuple(self._where)

    def __getstate__(self) -> Any:
        raise TypeError(
            "A ShardedObjective holds a Dask client and its shards' futures, and cannot be "
            "pickled; run probes on it without an `executor` (its shards already run in "
            "parallel on the cluster)."
        )

    def __repr__(self) -> str:
        return (
            f"ShardedObjective(n_shards={self.n_shards}, dim={self.dim}, dtype={self.dtype}, "
            f"n_examples={self.n_examples}, on_worker_loss={self._on_worker_loss!r})"
        )
