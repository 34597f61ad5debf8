"""Effective dimension of the gradients of a plain and a residual MLP trained on digits.

Run by hand:  python benchmarks/dimension.py   (prints a Markdown table for
docs/subspace.md; about a minute, on one thread). Needs torch and scikit-learn.

Both networks have the same layers, so the same parameter count (the skip connections
add none): ``Linear(64, 64)``, then ``DEPTH`` hidden ``Linear(64, 64)`` layers with
ReLU, then ``Linear(64, 10)``; the residual one computes ``h + relu(W h + b)`` in each
hidden layer where the plain one computes ``relu(W h + b)``. Both start from the same
weights (the same seed builds them) and see the same mini-batches. Two initializations
are run, because each suits one of the two networks: PyTorch's default for
``nn.Linear`` (weights uniform in ``±1/sqrt(fan_in)``, too small for ten plain ReLU
layers) and He's (``kaiming_normal_``, ReLU gain, zero biases, which makes the residual
sums grow with depth).

Training: scikit-learn's ``load_digits`` (pixels / 16), a fixed split
(``train_test_split(test_size=0.25, random_state=0)``: 1,347 training and 450 test
images), plain SGD (learning rate ``LR``, no momentum, no weight decay), mini-batches of
``BATCH`` for ``EPOCHS`` epochs, float64. At every step two flattened gradients are
recorded at the current weights, before the update: the mini-batch gradient that the
step uses, and the full-batch gradient of the training loss. Each history goes to the
exact Gram route of ``probecore.effective_dimension`` and, streamed one step at a time,
to a ``GradientSketch`` with ``ell = ELL`` rows (a buffer of ``2·ELL``).
"""

from __future__ import annotations

import datetime
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits
from torch import nn

import probecore as pc
from probecore import GradientSketch, effective_dimension

DEPTH, WIDTH = 8, 64
LR, BATCH, EPOCHS = 0.05, 64, 30
ELL = 50
SHARE = 0.9
SEED = 0


class MLP(nn.Module):
    def __init__(self, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.inp = nn.Linear(64, WIDTH)
        self.hidden = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(DEPTH))
        self.out = nn.Linear(WIDTH, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.inp(x))
        for layer in self.hidden:
            h = h + F.relu(layer(h)) if self.residual else F.relu(layer(h))
        return self.out(h)


def _flat_grad(model: nn.Module) -> np.ndarray:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy().copy()


def _accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(X).argmax(dim=1) == y).double().mean())


def run(residual: bool, init: str, data) -> dict:
    Xtr, ytr, Xte, yte = data
    torch.manual_seed(SEED)
    model = MLP(residual)
    if init == "He":
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
    dim = sum(p.numel() for p in model.parameters())
    order = torch.Generator().manual_seed(SEED)
    mini, full = [], []
    sketches = {k: GradientSketch(dim, ell=ELL) for k in ("mini-batch", "full-batch")}
    sketch_time = 0.0
    t0 = time.perf_counter()
    for _ in range(EPOCHS):
        perm = torch.randperm(Xtr.shape[0], generator=order)
        for start in range(0, Xtr.shape[0], BATCH):
            idx = perm[start : start + BATCH]
            model.zero_grad()
            F.cross_entropy(model(Xtr), ytr).backward()
            full.append(_flat_grad(model))
            model.zero_grad()
            F.cross_entropy(model(Xtr[idx]), ytr[idx]).backward()
            mini.append(_flat_grad(model))
            with torch.no_grad():
                for p in model.parameters():
                    p -= LR * p.grad
            s0 = time.perf_counter()
            sketches["mini-batch"].update(mini[-1])
            sketches["full-batch"].update(full[-1])
            sketch_time += time.perf_counter() - s0
    train_time = time.perf_counter() - t0 - sketch_time
    out = {
        "name": "residual MLP" if residual else "plain MLP",
        "init": init,
        "params": dim,
        "steps": len(mini),
        "train_acc": _accuracy(model, Xtr, ytr),
        "test_acc": _accuracy(model, Xte, yte),
        "train_time": train_time,
        "sketch_update_time": sketch_time / 2,
        "rows": [],
    }
    for kind, history in (("mini-batch", mini), ("full-batch", full)):
        H = np.array(history)
        t = time.perf_counter()
        exact = effective_dimension(H, share=SHARE)
        gram_time = time.perf_counter() - t
        t = time.perf_counter()
        fd = effective_dimension(sketches[kind], share=SHARE)
        fd_time = time.perf_counter() - t
        out["rows"].append(
            {
                "kind": kind,
                "d_eff": exact.d_eff,
                "top1": float(exact.explained_variance_ratio[0]),
                "fd": fd,
                "gram_time": gram_time,
                "fd_time": fd_time,
            }
        )
        del H
    return out


def main() -> None:
    torch.set_default_dtype(torch.float64)
    # One thread for torch and for NumPy's BLAS: on a 2-core machine shared with other
    # work, two spinning threads per library ran ten times slower than one.
    torch.set_num_threads(1)
    threadpool_limits(1)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.25, random_state=0)
    data = (
        torch.tensor(Xtr),
        torch.tensor(ytr),
        torch.tensor(Xte),
        torch.tensor(yte),
    )
    results = [
        run(residual, init, data) for init in ("default", "He") for residual in (False, True)
    ]
    print(
        f"{datetime.date.today()}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"torch {torch.__version__}, probecore {pc.__version__}; 1 thread, load average "
        f"{load:.1f} at start; {time.perf_counter() - start:.0f} s in all"
    )
    print(
        f"digits (1,347 train / 450 test), depth {DEPTH} width {WIDTH}, SGD lr {LR}, "
        f"batch {BATCH}, {EPOCHS} epochs, share {SHARE}, sketch ell = {ELL} "
        f"(a buffer of {2 * ELL} rows)\n"
    )
    print(
        "| network | init | parameters | steps | train / test accuracy | gradients "
        "| d_eff (Gram) | d_eff from the sketch [lower, upper] | sketch bound / total variance "
        "| top PC share | train time | Gram time | sketch time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for row in r["rows"]:
            fd = row["fd"]
            upper = "—" if fd.d_eff is None else str(fd.d_eff)
            print(
                f"| {r['name']} | {r['init']} | {r['params']:,} | {r['steps']} "
                f"| {r['train_acc']:.3f} / {r['test_acc']:.3f} | {row['kind']} "
                f"| {row['d_eff']} | [{fd.d_eff_lower}, {upper}] "
                f"| {fd.error_bound / fd.total_variance:.2e} | {row['top1']:.3f} "
                f"| {r['train_time']:.1f} s | {row['gram_time']:.2f} s "
                f"| {r['sketch_update_time'] + row['fd_time']:.1f} s |"
            )


if __name__ == "__main__":
    main()
