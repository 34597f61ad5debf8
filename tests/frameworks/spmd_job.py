"""A ``torchrun`` job for the process-group tests (tests/frameworks/test_torch_spmd.py).

``python -m torch.distributed.run --standalone --nproc-per-node 2 spmd_job.py MODE OUT``:
every rank builds the digits objective on its shard (rank r of R holds examples
``[r·n/R, (r+1)·n/R)`` of the first 301), runs the measurements of ``MODE`` and writes
``OUT/rank{r}.npz`` (``OUT/rank{r}.txt`` with the error, if it raised).
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from models_torch import cnn, digits, mlp
from torch.nn import functional as F

import probecore as pc

N = 301


def shard(rank: int, size: int, image: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    X, y = digits(N, image=image)
    lo, hi = rank * N // size, (rank + 1) * N // size
    return X[lo:hi], y[lo:hi]


def measure(out: Path, rank: int, size: int) -> dict[str, np.ndarray]:
    """Every number the tests compare with one process holding all 301 examples."""
    rng = np.random.default_rng(1)
    res: dict[str, np.ndarray] = {}
    for name, model, image in (("mlp", mlp(16), False), ("cnn", cnn(), True)):
        obj = pc.objective(
            model.eval(),
            F.cross_entropy,
            shard(rank, size, image),
            batch_size=64,
            process_group="world",
        )
        x = obj.x0
        v = rng.standard_normal(obj.dim)
        V = rng.standard_normal((3, obj.dim))
        loss, g = obj.loss_and_grad(x)
        res[f"{name}/n_examples"] = np.array(obj.n_examples)
        res[f"{name}/loss"] = np.array(obj.loss(x))
        res[f"{name}/loss_and_grad.loss"] = np.array(loss)
        res[f"{name}/grad"] = obj.grad(x)
        res[f"{name}/loss_and_grad.grad"] = g
        res[f"{name}/hvp"] = obj.hvp(x, v)
        res[f"{name}/hvp_many"] = obj.hvp_many(x, V)
        res[f"{name}/span"] = obj.losses_in_span(x, V[:2], rng.standard_normal((5, 2)) * 0.1)
        res[f"{name}/accuracy"] = np.array(obj.metrics(x)["accuracy"])
        before = obj.collective.bytes_reduced
        obj.hvp(x, v + 1.0)
        res[f"{name}/bytes_per_hvp"] = np.array(obj.collective.bytes_reduced - before)
    # the seeded algorithms, on the MLP
    res["lanczos"] = pc.lanczos(obj_mlp := _mlp(rank, size), k=3, rng=0).eigenvalues
    res["hutchpp"] = np.array(pc.hutchpp(obj_mlp, n_matvecs=30, rng=0).estimate)
    density = pc.spectral_density(obj_mlp, n_probes=2, n_steps=20, rng=0)
    res["slq.nodes"], res["slq.weights"] = density.nodes, density.weights
    # a plane into a store: rank 0 writes, a rerun resumes on every rank
    dirs = pc.random_directions(obj_mlp, 2, rng=0)
    grid = {"alphas": np.linspace(-1, 1, 4), "betas": np.linspace(-1, 1, 3)}
    store = out / "plane.zarr"
    first = pc.plane(obj_mlp, dirs, store=store, chunk_size=5, **grid)
    again = pc.plane(obj_mlp, dirs, store=store, chunk_size=5, **grid)
    res["plane"] = first.losses
    res["plane.resumed"] = again.losses
    res["plane.evals"] = np.array([first.n_loss_evals, again.n_loss_evals])
    res["store_exists"] = np.array(store.exists())
    return res


def _mlp(rank: int, size: int) -> pc.Objective:
    return pc.objective(
        mlp(16).eval(),
        F.cross_entropy,
        shard(rank, size),
        batch_size=64,
        process_group="world",
    )


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group("gloo")
    rank, size = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # as tests/conftest.py sets it for the reference
    try:
        if mode == "measure":
            np.savez(out / f"rank{rank}.npz", **measure(out, rank, size))
        elif mode == "fail":  # rank 1's shard holds a NaN
            X, y = shard(rank, size)
            if rank == 1:
                X[3, 5] = float("nan")
            pc.objective(mlp(16).eval(), F.cross_entropy, (X, y), process_group="world")
        elif mode == "mismatch":  # rank 1's model has other parameters
            pc.objective(
                mlp(16, seed=rank).eval(),
                F.cross_entropy,
                shard(rank, size),
                process_group="world",
            )
        elif mode.startswith("sampler"):  # a DataLoader with a DistributedSampler
            import warnings

            from torch.utils.data import DataLoader, TensorDataset
            from torch.utils.data.distributed import DistributedSampler

            n = {"sampler_pad": N, "sampler_even": 300, "sampler_drop": N}[mode]
            dataset = TensorDataset(*digits(n))
            sampler = DistributedSampler(
                dataset, shuffle=True, seed=0, drop_last=mode == "sampler_drop"
            )
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                obj = pc.objective(
                    mlp(16).eval(),
                    F.cross_entropy,
                    DataLoader(dataset, batch_size=64, sampler=sampler),
                    process_group="world",
                )
            np.savez(
                out / f"rank{rank}.npz",
                loss=obj.loss(obj.x0),
                n_examples=obj.n_examples,
                warnings=np.array([str(w.message) for w in caught] or [""]),
            )
        elif mode == "rng_default":  # each rank draws its own probe vectors
            pc.hutchpp(_mlp(rank, size), n_matvecs=30)
        elif mode == "raise_midrun":  # rank 1 alone is given a bad vector
            obj = _mlp(rank, size)
            v = np.ones(obj.dim)
            if rank == 1:
                v[7] = np.nan
            obj.hvp(obj.x0, v)
        elif mode == "store_rank0":  # the store passed on rank 0 only
            obj = _mlp(rank, size)
            store = out / "plane.zarr" if rank == 0 else None
            grid = np.linspace(-1, 1, 3)
            dirs = pc.random_directions(obj, 2, rng=0)
            res = [pc.plane(obj, dirs, alphas=grid, betas=grid, store=store) for _ in range(2)]
            np.savez(
                out / f"rank{rank}.npz",
                losses=res[0].losses,
                again=res[1].losses,
                evals=[r.n_loss_evals for r in res],
            )
        elif mode == "executor":
            from concurrent.futures import ThreadPoolExecutor

            obj = _mlp(rank, size)
            with ThreadPoolExecutor(1) as ex:
                pc.plane(obj, pc.random_directions(obj, 2, rng=0), executor=ex)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    except Exception as exc:
        (out / f"rank{rank}.txt").write_text(
            f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"
        )
    finally:
        dist.barrier()  # both ranks done before the group is torn down (gloo aborted once)
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
