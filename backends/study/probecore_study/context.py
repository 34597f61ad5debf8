"""What the stages of one run share: progress lines, the raw store, the trained models.

The PyTorch kit (:mod:`probecore_study.kit`) is loaded by :func:`load_kit`, only when a
stage that trains a network runs: the spectrum stage needs no torch.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probecore_study.settings import Settings


class Progress:
    """One line per finished step: ``[ 3/26]   12.4 s  text``."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the run began."""
        return time.perf_counter() - self.t0

    def step(self, text: str) -> None:
        """Count a finished step and print its line (unless quiet)."""
        self.done += 1
        if not self.quiet:
            width = len(str(self.total))
            print(
                f"[{self.done:>{width}}/{self.total}] {self.elapsed():6.1f} s  {text}", flush=True
            )


def load_kit() -> Any:
    """The PyTorch kit, or an ImportError that names what to install."""
    # torch's OpenMP threads spin while numpy works between torch calls; on a small or
    # shared machine that made the landscape probes 10× slower. Set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import probecore_torch  # noqa: F401  (the kit needs the backend, not just torch)

        from probecore_study import kit
    except ImportError as exc:
        raise ImportError(
            "the batch, architecture and connectivity stages train PyTorch models and need "
            "the PyTorch backend: python3 -m pip install ./backends/torch torch==2.13.0 "
            f"(or run --stages spectrum only); import failed with: {exc}"
        ) from exc
    return kit


def out_path(out: str, *parts: str) -> str:
    """A path inside the run's folder ``out``, its parent folders created."""
    p = os.path.join(out, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


class RawStore:
    """Per-model arrays and scalars in one Zarr group (``raw/study.zarr``)."""

    def __init__(self, path: str) -> None:
        import zarr

        self.group = zarr.open_group(path, mode="w")

    def put(self, name: str, arrays: dict[str, Any], scalars: dict[str, Any]) -> None:
        """Store ``arrays`` and ``scalars`` (as attributes) in the subgroup ``name``."""
        sub = self.group.require_group(name)
        for key, value in arrays.items():
            arr = np.asarray(value)
            sub.create_array(key, shape=arr.shape, dtype=arr.dtype, overwrite=True)[...] = arr
        sub.attrs.update(json.loads(json.dumps(scalars, default=float)))


# --------------------------------------------------------------------------- work


class Runner:
    """Runs a stage's units, in this process (``jobs=1``) or in ``jobs`` worker processes.

    Every unit runs on one torch thread, wherever it runs, and the results come back in
    the order the units were given: the numbers do not depend on ``jobs`` or on which
    unit finished first. The progress lines are printed as units finish.
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.pool: Any = None

    def submit(self, fn: Any, calls: list[dict]) -> tuple:
        """Start ``fn(**c)`` for every ``c`` in worker processes (``jobs=1``: later, here)."""
        if self.jobs == 1:
            return (fn, calls, None)
        if self.pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            from probecore_study.units import init_worker

            # spawn, not fork: a forked child of a process that has started torch's and
            # OpenMP's threads can hang
            self.pool = ProcessPoolExecutor(
                max_workers=self.jobs,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker,
            )
        return (fn, calls, [self.pool.submit(fn, **c) for c in calls])

    def collect(self, pending: tuple, progress: Progress) -> list[dict]:
        """The results of :meth:`submit`'s units in their order; lines printed as they finish."""
        fn, calls, futures = pending
        if futures is None:
            return [self._here(fn, c, progress) for c in calls]
        from concurrent.futures import as_completed

        try:
            for f in as_completed(futures):
                progress.step(f.result()["line"])
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return [f.result() for f in futures]

    @staticmethod
    def _here(fn: Any, call: dict, progress: Progress) -> dict:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            out = fn(**call)
        finally:
            torch.set_num_threads(threads)
        progress.step(out["line"])
        return out

    def close(self) -> None:
        """Shut the worker processes down (their CPU time is then counted as children's)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


@dataclass
class Context:
    """One run: its folder, settings and stores, and what the stages measured and trained."""

    out: str
    settings: Settings
    seed: int
    progress: Progress
    raw: RawStore
    runner: Runner
    results: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    keep: dict = field(default_factory=dict)  # what the figures draw, by (kind, network, seed)
    states: dict = field(default_factory=dict)  # trained weights, by (network, seed)
    figures: list = field(default_factory=list)  # number, file and caption of each figure

    def path(self, *parts: str) -> str:
        """A path inside the output folder, its parent folders created."""
        return out_path(self.out, *parts)

    def submit(self, fn: Any, calls: list[dict]) -> tuple:
        """Start units of work (:mod:`probecore_study.units`); :meth:`collect` files them."""
        return self.runner.submit(fn, calls)

    def run(self, fn: Any, calls: list[dict]) -> list[dict]:
        """Run units of work now: :meth:`submit`, then :meth:`collect`."""
        return self.collect(self.submit(fn, calls))

    def collect(self, pending: tuple) -> list[dict]:
        """The results of submitted units, in their order, filed.

        Each unit's raw arrays and record go to ``raw/study.zarr`` and its timings to
        :attr:`timings`, in the order the units were submitted.
        """
        outs = self.runner.collect(pending, self.progress)
        for o in outs:
            if "raw" in o:
                name, arrays = o["raw"]
                self.raw.put(name, arrays, o["record"])
            self.timings.update(o.get("timings", {}))
        return outs


def stored(path: str, probe: Any) -> Any:
    """``probe(store=path)``: resumes a run left in ``path``, replaces one of another run.

    The study owns its output folder: a store from a run with other settings, other
    trained weights or other data (a changed torch, say), or in an older format, is
    stale, and recomputing it is the only right answer.
    """
    stale = ("holds a different run", "holds a run of another objective", "holds format")
    try:
        return probe(path)
    except ValueError as exc:
        # Replaced: a store of other settings, another objective, or an older format.
        # Not replaced: a store that another process is writing, or a damaged one.
        if not any(reason in str(exc) for reason in stale):
            raise
        shutil.rmtree(path)
        return probe(path)


def count_spikes(losses: np.ndarray) -> int:
    """Epochs whose end-of-epoch training loss exceeds the previous epoch's by over 50%."""
    lo = np.asarray(losses)
    return int(np.sum(lo[1:] > 1.5 * lo[:-1]))
