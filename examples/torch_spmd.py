"""The Hessian of a model whose data is split over processes: ``torchrun`` and gloo.

    torchrun --nproc-per-node 2 examples/torch_spmd.py     # two ranks, half the data each
    python examples/torch_spmd.py                          # one process, all the data

Every rank builds the objective on its own shard with ``process_group="world"`` and runs
the same seeded algorithms; each HVP is an all-reduce of the ranks' products, so every rank
gets the numbers one process holding all the data would get (to the order of the float
sums). Only rank 0 prints. On GPUs: ``init_process_group("nccl")``, ``device=`` the rank's
GPU and ``torch.cuda.set_device`` first.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

import probecore as pc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_digits import mlp  # the 64-32-10 MLP, float64


def main() -> None:
    """The top eigenvalues and the trace of the Hessian, on one process or several."""
    spmd = "RANK" in os.environ  # launched by torchrun
    if spmd:
        dist.init_process_group("gloo")
    rank, size = (dist.get_rank(), dist.get_world_size()) if spmd else (0, 1)
    torch.set_num_threads(1)
    target = mlp()  # the same trained model on every rank (fixed seeds)
    X, y = target["data"]
    lo, hi = rank * len(y) // size, (rank + 1) * len(y) // size
    obj = pc.objective(
        target["model"],
        target["loss_fn"],
        (X[lo:hi], y[lo:hi]),
        process_group="world" if spmd else None,
        **target["options"],
    )
    top = pc.lanczos(obj, k=3, rng=0)
    trace = pc.hutchpp(obj, n_matvecs=60, rng=0)
    if rank == 0:
        print(f"{size} process(es), {obj.n_examples} examples, {obj.dim} parameters")
        print("top eigenvalues:", " ".join(f"{v:.12g}" for v in top.eigenvalues))
        print(f"trace: {trace.estimate:.12g} ± {trace.std_error:.2g} (standard error)")
    if spmd:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
