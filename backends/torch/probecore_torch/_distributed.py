"""One objective over the data shards of several processes (``torchrun``, SPMD).

Every rank builds the objective on its own shard and runs the same seeded algorithm; each
loss, gradient and Hessian-vector product is the rank's example-weighted partial sum
(weights: its batches' example counts over the examples of all ranks), all-reduced, so
that every rank receives the same numbers: those of one process holding all the data, up
to the order of the float sums.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from probecore.backend import caller_stacklevel, digest
from probecore_torch._objective import TorchObjective, _serialized

__all__ = ["DistributedTorchObjective", "ProcessGroupCollective"]


class ProcessGroupCollective:
    """The ranks of a ``torch.distributed`` process group, as probecore's probes see them.

    Parameters
    ----------
    group : torch.distributed.ProcessGroup
        An initialized group (gloo: tensors on the CPU; nccl: on the current CUDA device).

    Attributes
    ----------
    rank, size : int
        This process's rank in ``group`` and the group's size.
    bytes_reduced : int
        Bytes this rank has all-reduced so far (what each call sends: the payload leaves
        and returns about once per rank with ring all-reduce).
    """

    def __init__(self, group: Any) -> None:
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self._src = dist.get_global_rank(group, 0)
        backend = str(dist.get_backend(group)).lower()
        self.device = (
            torch.device("cuda", torch.cuda.current_device())
            if "nccl" in backend
            else torch.device("cpu")
        )
        self.bytes_reduced = 0

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=self._src, group=self.group, device=self.device)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def sum(self, array: np.ndarray) -> np.ndarray:
        """The sum over the ranks of ``array`` (same shape and dtype on every rank)."""
        t = torch.from_numpy(np.array(array, copy=True, order="C")).to(self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)
        self.bytes_reduced += t.numel() * t.element_size()
        return t.cpu().numpy()


def _check_group(process_group: Any) -> Any:
    """``process_group``: an initialized group, or ``"world"`` for the default one."""
    if not dist.is_available():
        raise ValueError("`process_group` needs torch.distributed, which this torch build lacks.")
    if not dist.is_initialized():
        raise ValueError(
            "`process_group` needs an initialized process group: launch with `torchrun "
            "--nproc-per-node N script.py` and call torch.distributed.init_process_group"
            '("gloo") (CPU) or ("nccl") (GPU) before building the objective.'
        )
    if isinstance(process_group, str) and process_group == "world":
        return dist.group.WORLD
    if not isinstance(process_group, dist.ProcessGroup):
        raise TypeError(
            "`process_group` must be a torch.distributed.ProcessGroup or 'world' (the "
            f"default group); got {type(process_group).__name__}."
        )
    return process_group


def _distributed_sampler(data: Any, collective: ProcessGroupCollective) -> Any:
    """``data``'s DistributedSampler, checked against the group, or None without one."""
    from torch.utils.data.distributed import DistributedSampler

    sampler = getattr(data, "sampler", None)
    if not isinstance(sampler, DistributedSampler):
        return None
    if (sampler.num_replicas, sampler.rank) != (collective.size, collective.rank):
        raise ValueError(
            f"`data`'s DistributedSampler splits the data set for rank {sampler.rank} of "
            f"{sampler.num_replicas}, but this is rank {collective.rank} of the process "
            f"group's {collective.size}."
        )
    if not sampler.drop_last and sampler.total_size > len(sampler.dataset):
        extra = sampler.total_size - len(sampler.dataset)
        raise ValueError(
            f"`data`'s DistributedSampler pads the ranks to {sampler.num_samples} examples "
            f"each by repeating {extra} of the data set's {len(sampler.dataset)}: the loss "
            "would count those twice. Give each rank its own slice instead (rank r of R: "
            "torch.utils.data.Subset(dataset, range(r * n // R, (r + 1) * n // R)) in a "
            "DataLoader), or pass drop_last=True to the sampler to leave "
            f"{len(sampler.dataset) % sampler.num_replicas} examples out."
        )
    return sampler


def _check_union(counts: list[int], dataset_sizes: list[int | None], rank: int) -> None:
    """Warn (on rank 0) when DistributedSamplers leave examples of the data set out."""
    if None in dataset_sizes or len(set(dataset_sizes)) != 1:
        return
    n = dataset_sizes[0]
    if sum(counts) < n and rank == 0:
        warnings.warn(
            f"the ranks' DistributedSamplers give {sum(counts)} of the data set's {n} "
            "examples (drop_last=True): the objective is the loss on those. Give each rank "
            "its own slice (torch.utils.data.Subset) to measure all of them.",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )


def _arguments_hash(args: tuple) -> int:
    """A 20-bit hash of a call's arguments, to compare ranks.

    An array is hashed by its shape and at most 4,096 of its entries, evenly strided:
    microseconds for ``dim`` in the millions, and enough to tell the vectors of two
    random generators apart.
    """
    h = 0
    for a in args:
        if isinstance(a, np.ndarray):
            flat = a.reshape(-1)
            sample = np.ascontiguousarray(flat[:: max(1, flat.size // 4096)])
            h = zlib.crc32(repr((a.shape, a.dtype.str)).encode(), h)
            h = zlib.crc32(sample.view(np.uint8), h)
        else:
            h = zlib.crc32(repr(a).encode(), h)
    return h & 0xFFFFF


def _in_step(self: DistributedTorchObjective, name: str, args: tuple, compute: Callable) -> Any:
    """``compute()`` on this rank, once every rank is known to have succeeded on the same call.

    One small all-reduce after the local work carries each rank's failure bit and a hash
    of its arguments, so a rank that raises (bad input, data that changed, out of memory)
    stops every rank with its reason rather than leaving them waiting in the next
    all-reduce, and ranks that were given different points or vectors (an ``rng`` left to
    draw its own seed on each rank) are refused rather than summed.
    """
    coll = self.collective
    error: Exception | None = None
    try:
        out = compute()
    except Exception as exc:  # the other ranks must hear of it
        out, error = None, exc
    h = float(_arguments_hash(args))
    failed, s1, s2 = coll.sum(np.array([0.0 if error is None else 2.0**coll.rank, h, h * h]))
    if failed:
        ranks = [r for r in range(coll.size) if int(failed) >> r & 1]
        if error is not None:
            raise error
        raise RuntimeError(
            f"rank(s) {', '.join(map(str, ranks))} of the process group failed in {name}; "
            "this rank stops too (their error says why)."
        )
    if coll.size * s2 != s1 * s1:  # Cauchy-Schwarz: equal only when every hash is
        raise ValueError(
            f"the ranks of the process group called {name} with different arguments: every "
            "rank must run the same algorithm on the same points. Pass the same integer "
            "`rng=` seed on every rank (a default rng draws its own seed in each process) "
            "and the same directions, points and options."
        )
    return out


def _reduced(name: str) -> Callable[..., Any]:
    """The TorchObjective method ``name`` on this rank's shard, summed over the ranks.

    Nested calls (``grad`` calling ``loss_and_grad``, a span evaluation calling ``loss``)
    stay local: only the outermost call all-reduces, once (after :func:`_in_step`).
    """
    local = getattr(TorchObjective, name)

    @functools.wraps(local)
    def method(self: DistributedTorchObjective, *args: Any) -> Any:
        with self._lock:
            if self._nested:
                return local(self, *args)
            if self.collective.size == 1:
                return local(self, *args)
            self._nested = True
            try:
                out = _in_step(self, name, args, lambda: local(self, *args))
            finally:
                self._nested = False
            total = self.collective.sum
            if name == "loss":
                return float(total(np.array([out]))[0])
            if name == "loss_and_grad":
                return float(total(np.array([out[0]]))[0]), total(out[1])
            return total(out)

    return method


class DistributedTorchObjective(TorchObjective):
    """A :class:`TorchObjective` whose data is sharded over the ranks of a process group.

    Built by ``probecore.objective(model, loss_fn, data, process_group=...)`` on every
    rank, each with its own shard as ``data`` (any form :class:`TorchObjective` takes) and
    the same model parameters. The loss is the example-weighted mean over the examples of
    all ranks; ``loss``, ``grad``, ``hvp``, ``hvp_many``, ``losses_in_span`` and
    ``metrics`` each cost one all-reduce of their result (a vector of ``dim`` for a
    gradient or HVP) and return the same numbers on every rank, so every rank runs the
    same seeded algorithm to the same result. Run stores are written by rank 0 only, which
    also alone shows progress bars; executors are refused (the ranks must call the
    objective in lockstep).

    Construction is collective too: every rank learns whether every other built its shard,
    and all raise if one fails (its error named), rather than wait for it forever. The
    ranks must hold the same parameters (bitwise), dtype and layout.

    Not available on a process group: ``batchnorm="recompute"`` and :meth:`statistics_at`
    (their statistics would be those of one rank's shard), and :meth:`subset`.
    """

    def __init__(
        self,
        model: Any,
        loss_fn: Any = None,
        data: Any = None,
        *,
        process_group: Any,
        **options: Any,
    ) -> None:
        group = _check_group(process_group)
        self.collective = ProcessGroupCollective(group)
        self._nested = False
        failure: BaseException | None = None
        try:
            if options.get("batchnorm") == "recompute":
                raise ValueError(
                    "batchnorm='recompute' is not available with `process_group`: its "
                    "statistics would be those of each rank's shard. Use 'running' or 'batch'."
                )
            sampler = _distributed_sampler(data, self.collective)
            with warnings.catch_warnings():
                if sampler is not None:  # each rank reads its part: judged over all below
                    warnings.filterwarnings("ignore", message=r"`data` gave \d+ of its data")
                super().__init__(model, loss_fn, data, **options)
            facts: Any = (
                self._counts,
                None if sampler is None else len(sampler.dataset),
                self.dim,
                str(self.dtype),
                hashlib.sha256(self.x0.tobytes()).hexdigest(),
                digest(self.layout.to_json()),
                super().fingerprint(),
            )
        except Exception as exc:  # the other ranks must hear of it
            failure, facts = exc, f"{type(exc).__name__}: {exc}"
        everyone = self.collective.gather(facts)
        failed = [(r, f) for r, f in enumerate(everyone) if isinstance(f, str)]
        if failure is not None:
            raise failure
        if failed:
            rank, message = failed[0]
            raise RuntimeError(
                f"rank {rank} of the process group could not build its objective ({message}); "
                "no rank can evaluate without it."
            )
        self._join(everyone)

    def _join(self, everyone: list[Any]) -> None:
        """Check that the ranks agree, then weight this rank's batches by the global count."""
        names = ("dim", "dtype", "parameters (sha256 of x0)", "layout")
        for i, what in enumerate(names, start=2):
            values = [f[i] for f in everyone]
            if len(set(values)) > 1:
                raise ValueError(
                    f"the ranks of the process group hold different {what}: "
                    + ", ".join(f"rank {r}: {str(v)[:16]}" for r, v in enumerate(values))
                    + ". Every rank must build the objective from the same model "
                    "(load the same checkpoint, or broadcast rank 0's parameters first)."
                )
        self.rank_examples = [int(sum(f[0])) for f in everyone]
        self.n_examples = int(sum(self.rank_examples))
        self._weights = [c / self.n_examples for c in self._counts]
        _check_union(self.rank_examples, [f[1] for f in everyone], self.collective.rank)
        prints = [f[6] for f in everyone]
        self._fingerprint = {
            **prints[0],
            "data": digest([p["data"] for p in prints]),
            "ranks": str(self.collective.size),
        }
        self._options = {**self._options, "process_group": self.collective.group}

    loss = _serialized(_reduced("loss"))
    loss_and_grad = _serialized(_reduced("loss_and_grad"))
    grad = _reduced("grad")
    hvp = _serialized(_reduced("hvp"))
    hvp_many = _serialized(_reduced("hvp_many"))
    losses_in_span = _serialized(_reduced("losses_in_span"))

    @_serialized
    def metrics(self, x: np.ndarray) -> dict[str, float]:
        """As :meth:`TorchObjective.metrics`, over the examples of all ranks.

        Accuracy sums the correct predictions and the examples of every rank;
        ``metrics_fn``'s means are weighted by every rank's example counts.
        """
        if self.metrics_fn is not None:
            local = _in_step(self, "metrics", (x,), lambda: self._user_metrics(self._to_tensor(x)))
            keys = self.collective.gather(sorted(local))
            if any(k != keys[0] for k in keys):
                raise ValueError(
                    "`metrics_fn` returned different metric names on different ranks: "
                    + ", ".join(f"rank {r}: {k}" for r, k in enumerate(keys))
                    + "."
                )
            values = self.collective.sum(np.array([local[k] for k in keys[0]], dtype=float))
            return dict(zip(keys[0], (float(v) for v in values), strict=True))
        counts = _in_step(self, "metrics", (x,), lambda: self._accuracy_counts(self._to_tensor(x)))
        correct, seen, found = self.collective.sum(
            np.array([*(counts or (0.0, 0)), counts is not None], dtype=np.float64)
        )
        if 0 < found < self.collective.size:
            raise ValueError(
                "the model's outputs give accuracy on some ranks and not on others; pass "
                "`metrics_fn` to say what to measure."
            )
        return {"accuracy": float(correct / seen)} if found and seen else {}

    def fingerprint(self) -> dict[str, str]:
        """:meth:`TorchObjective.fingerprint` over every rank's data, and the rank count."""
        return dict(self._fingerprint or {})

    def statistics_at(self, x: np.ndarray) -> TorchObjective:
        """Refused: the statistics would be those of this rank's shard only."""
        raise TypeError(
            "statistics_at is not available with `process_group`: the recomputed "
            "statistics would be those of this rank's shard only."
        )

    def subset(self, indices: np.ndarray) -> TorchObjective:
        """Refused: a subset of the examples of all ranks is not defined here."""
        raise TypeError(
            "subset is not available with `process_group`; build the objective on each "
            "rank's part of the subset instead (curve fitting: pass batch_size=None for "
            "full-batch steps)."
        )

    def __reduce__(self) -> Any:
        """Refused: a process group does not travel to another process."""
        raise TypeError(
            "an objective on a process group cannot be pickled: each rank builds its own."
        )
