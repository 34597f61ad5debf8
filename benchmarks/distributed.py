"""Distributed HVPs: time per Hessian-vector product at 1 and 2 workers, and a cost model.

Two models, float32, one compute thread per worker:

- the digits CNN (1→16→32 channels, 3×3, ReLU; 5,130 parameters... see ``digits_cnn``)
  on all 1,797 scikit-learn digits;
- the CIFAR ResNet-18 of ``benchmarks/scale.py`` (11.2 M parameters) on ``--images``
  CIFAR-shaped images (default 32).

Routes:

- ``torch``: ``torchrun`` with gloo, ``process_group="world"``; rank r of R holds examples
  ``[r·n/R, (r+1)·n/R)``. Each HVP is the rank's double backward on its shard (the
  gradient graph kept, as power iteration and Lanczos use it) and one all-reduce of
  ``dim`` numbers.
- ``dask`` (``--dask``): ``probecore.ShardedObjective`` over a ``LocalCluster`` of 1 or 2
  single-thread worker processes, one shard per worker, each a ``TorchObjective`` built
  on its worker; each HVP ships ``x`` and ``v`` to every shard and its product back.

For each model the script measures, per HVP: the wall time at 1 worker (all the data,
no communication) and at 2; on the torch route also the rank's own double backward and a
lone all-reduce of ``dim`` numbers. The cost model is
``t(n) = t_compute(1) / n + t_comm(n)``: ``t_compute(1)`` measured at one worker,
``t_comm`` the measured all-reduce. Parallel efficiency is ``t(1) / (2 t(2))`` against
single-thread serial (this machine has 2 cores, so two single-thread workers use both).

Usage::

    python benchmarks/distributed.py                 # torch route, both models
    python benchmarks/distributed.py --dask          # and the Dask route
    python benchmarks/distributed.py --quick         # smaller: CI-sized smoke run

Results are printed as Markdown (``docs/distributed.md`` holds a run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# this file is named like Dask's package: its folder must not shadow `import distributed`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]


# --------------------------------------------------------------------------- models


def digits_cnn():
    """The digits CNN (untrained weights, seed 0) and the 1,797 digits, float32."""
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    X, y = load_digits(return_X_y=True)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(128, 10),
    )
    data = torch.tensor(X / 16.0, dtype=torch.float32).view(-1, 1, 8, 8), torch.tensor(y)
    return model.eval(), data


def resnet(images):
    """The ResNet-18 of benchmarks/scale.py (seed 0, eval mode) and ``images`` images."""
    import torch

    sys.path.append(str(HERE))
    from scale import cifar_like, resnet18

    torch.manual_seed(0)
    return resnet18().eval(), cifar_like(images)


def model_and_data(name, images):
    return digits_cnn() if name == "cnn" else resnet(images)


def shard(data, rank, size):
    n = len(data[1])
    lo, hi = rank * n // size, (rank + 1) * n // size
    return data[0][lo:hi], data[1][lo:hi]


def objective_of(name, images, rank, size, **options):
    """A worker's objective on its shard (module level: Dask factories pickle it)."""
    import torch
    import torch.nn.functional as F

    import probecore as pc

    torch.set_num_threads(1)
    model, data = model_and_data(name, images)
    batch = 64 if name == "cnn" else 16
    return pc.objective(
        model, F.cross_entropy, shard(data, rank, size), batch_size=batch, **options
    )


# --------------------------------------------------------------------------- torch route


def torch_child(name, images, reps, out):
    """One rank of the torchrun job: times written to ``out`` by rank 0."""
    import torch.distributed as dist
    from probecore_torch import TorchObjective

    dist.init_process_group("gloo")
    rank, size = dist.get_rank(), dist.get_world_size()
    obj = objective_of(name, images, rank, size, process_group="world")
    gen = np.random.default_rng(0)
    x = obj.x0
    vs = [gen.standard_normal(obj.dim).astype(obj.dtype) for _ in range(reps + 1)]

    def timed(fn):
        times = []
        for v in vs:
            dist.barrier()
            t = time.perf_counter()
            fn(v)
            times.append(time.perf_counter() - t)
        return statistics.median(times[1:])  # the first builds the gradient graph

    before = obj.collective.bytes_reduced
    obj.hvp(x, vs[0])
    per_hvp = obj.collective.bytes_reduced - before
    res = {
        "dim": obj.dim,
        "n_examples": obj.n_examples,
        "ranks": size,
        "bytes_allreduced_per_hvp": per_hvp,
        "hvp_s": timed(lambda v: obj.hvp(x, v)),
        # this rank's double backward alone: the same call without the all-reduce
        "compute_s": timed(lambda v: TorchObjective.hvp(obj, x, v)),
        "allreduce_s": timed(lambda v: obj.collective.sum(v)),
    }
    if rank == 0:
        Path(out).write_text(json.dumps(res))
    dist.destroy_process_group()


def run_torch(name, images, reps, ranks):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "res.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc-per-node={ranks}", __file__, "--child", name]
        cmd += ["--images", str(images), "--reps", str(reps), "--out", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-4000:])
        return json.loads(out.read_text())


# --------------------------------------------------------------------------- dask route


def echo(x, v):
    """A Dask task with an HVP's traffic and no work: ``x`` and ``v`` in, ``v`` out."""
    return v


def dask_environ():
    """Dask's worker environment without its ``MALLOC_TRIM_THRESHOLD_``.

    Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` for its workers, and any value
    there turns off glibc's adaptive mmap threshold: every large temporary of a backward
    pass is then a fresh ``mmap`` and its pages faulted in again. A 1-thread HVP on the
    digits CNN took 0.35-0.45 s in such a worker against 0.14-0.19 s without it.
    """
    import dask

    environ = dask.config.get("distributed.nanny.pre-spawn-environ", {})
    return {k: v for k, v in environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}


def run_dask(name, images, reps, workers):
    import functools

    import dask
    from distributed import Client, LocalCluster

    import probecore as pc

    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": dask_environ()}),
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        factories = [
            functools.partial(objective_of, name, images, r, workers) for r in range(workers)
        ]
        obj = pc.ShardedObjective(client, factories)
        gen = np.random.default_rng(0)
        x = obj.x0
        vs = [gen.standard_normal(obj.dim).astype(obj.dtype) for _ in range(reps + 1)]

        def timed(fn):
            times = []
            for v in vs:
                t = time.perf_counter()
                fn(v)
                times.append(time.perf_counter() - t)
            return statistics.median(times[1:])

        where = obj.shard_workers

        def traffic(v):  # one echo per shard, on its worker, as an HVP's tasks travel
            futures = [client.submit(echo, x, v, pure=False, workers=[w]) for w in where]
            client.gather(futures)

        itemsize = np.dtype(obj.dtype).itemsize
        return {
            "dim": obj.dim,
            "n_examples": obj.n_examples,
            "workers": workers,
            "hvp_s": timed(lambda v: obj.hvp(x, v)),
            "comm_s": timed(traffic),
            # x and v to each shard, its product back
            "bytes_per_hvp": 3 * obj.dim * itemsize * workers,
        }


# --------------------------------------------------------------------------- report


def fit(one, two):
    """The cost model ``t(n) = t_compute(1) / n + t_comm(n)``, its constants and prediction.

    torch: ``t_compute(1)`` is the 1-rank HVP without its all-reduce, ``t_comm(2)`` a lone
    all-reduce of ``dim`` numbers between 2 ranks. Dask: ``t_comm(n)`` is the round trip
    of tasks carrying an HVP's vectors and doing nothing, ``t_compute(1) = t(1) - t_comm(1)``.
    """
    if "compute_s" in one:
        compute, comm = one["compute_s"], two["allreduce_s"]
        nbytes = two["bytes_allreduced_per_hvp"]
    else:
        compute, comm = one["hvp_s"] - one["comm_s"], two["comm_s"]
        nbytes = two["bytes_per_hvp"]
    return {
        "t_compute_1": compute,
        "t_comm_2": comm,
        "bytes_per_hvp": nbytes,
        "MB_per_s": nbytes / comm / 1e6 if comm > 0 else float("inf"),
        "predicted_2": compute / 2 + comm,
        "measured_2": two["hvp_s"],
        "efficiency": one["hvp_s"] / (2 * two["hvp_s"]),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--images", type=int, default=32, help="ResNet-18 images (default 32)")
    p.add_argument("--reps", type=int, default=3, help="timed HVPs per setting (median)")
    p.add_argument("--models", default="cnn,resnet", help="cnn, resnet or both")
    p.add_argument("--dask", action="store_true", help="also the Dask ShardedObjective")
    p.add_argument("--quick", action="store_true", help="cnn only, 2 reps")
    args = p.parse_args(argv)
    if args.child:
        return torch_child(args.child, args.images, args.reps, args.out)
    models = ["cnn"] if args.quick else args.models.split(",")
    reps = 2 if args.quick else args.reps
    start = time.perf_counter()
    print("## Distributed HVPs (`benchmarks/distributed.py`)\n")
    print(
        f"Command: `python benchmarks/distributed.py {' '.join(argv or sys.argv[1:])}`; "
        f"load average before: {os.getloadavg()[0]:.2f}; one thread per worker.\n"
    )
    rows = []
    for name in models:
        one, two = run_torch(name, args.images, reps, 1), run_torch(name, args.images, reps, 2)
        rows.append(("torch gloo", name, one, two, fit(one, two)))
        if args.dask:
            d1, d2 = run_dask(name, args.images, reps, 1), run_dask(name, args.images, reps, 2)
            rows.append(("Dask", name, d1, d2, fit(d1, d2)))
    print(
        "| route | model | dim | examples | t(1) s | t(2) s | t_compute(1) s | t_comm(2) s | "
        "bytes/HVP | MB/s | model t(2) s | efficiency t(1)/2t(2) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for route, name, one, two, f in rows:
        print(
            f"| {route} | {name} | {one['dim']:,} | {one['n_examples']:,} | "
            f"{one['hvp_s']:.3g} | {two['hvp_s']:.3g} | {f['t_compute_1']:.3g} | "
            f"{f['t_comm_2']:.3g} | {f['bytes_per_hvp']:,} | {f['MB_per_s']:.0f} | "
            f"{f['predicted_2']:.3g} | {f['efficiency']:.2f} |"
        )
    print(
        f"\nTotal {time.perf_counter() - start:.0f} s; load average after: "
        f"{os.getloadavg()[0]:.2f}."
    )
    print("\n```json")
    print(
        json.dumps(
            [{"route": r, "model": m, "one": a, "two": b, "fit": f} for r, m, a, b, f in rows],
            indent=1,
        )
    )
    print("```")
    return None


if __name__ == "__main__":
    main()
