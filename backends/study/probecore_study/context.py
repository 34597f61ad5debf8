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

import probecore as pc
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


@dataclass
class Context:
    """One run: its folder, settings and stores, and what the stages measured and trained."""

    out: str
    settings: Settings
    seed: int
    progress: Progress
    raw: RawStore
    results: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    data: Any = None

    def path(self, *parts: str) -> str:
        """A path inside the output folder, its parent folders created."""
        p = os.path.join(self.out, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p


# --------------------------------------------------------------------------- training


def training_data(ctx: Context) -> Any:
    """The digits split every trained network uses (loaded once)."""
    if ctx.data is None:
        ctx.data = load_kit().digits(seed=0)  # the split is fixed; --seed moves the training
    return ctx.data


def small_mlp(ctx: Context, seed: int, batch: int) -> dict:
    """The batch stage's MLP trained at ``batch`` from ``seed`` (trained once, cached)."""
    key = ("mlp", seed, batch)
    if key not in ctx.cache:
        kit, S = load_kit(), ctx.settings
        data = training_data(ctx)
        t0 = time.perf_counter()
        run = kit.train_sgd(
            kit.mlp(hidden=S.hidden, seed=seed),
            data,
            lr=S.batch_lr,
            batch_size=batch,
            target_loss=S.batch_target,
            max_epochs=S.batch_max_epochs,
            seed=seed,
        )
        ctx.timings[f"train mlp seed {seed} batch {batch}"] = time.perf_counter() - t0
        train, test = kit.objectives(run.model, data)
        ctx.cache[key] = {"run": run, "train": train, "test": test}
    return ctx.cache[key]


def save_all(ctx: Context, stage: str, name: str, results: dict, metadata: dict) -> None:
    """Every probecore result of one model as ``raw/<stage>/<name>_<label>.npz``."""
    for label, r in results.items():
        pc.save(r, ctx.path("raw", stage, f"{name}_{label}"), metadata=metadata)


def trained_record(run: Any, obj: Any, test: Any) -> dict:
    """What every trained model records: size, training outcome, losses and accuracies."""
    x = obj.x0
    return {
        "dim": obj.dim,
        "reached": run.reached,
        "diverged": run.diverged,
        "epochs": run.epochs,
        "steps": run.steps,
        "train_loss": obj.loss(x),
        "train_accuracy": obj.metrics(x)["accuracy"],
        "test_accuracy": test.metrics(x)["accuracy"],
    }


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
