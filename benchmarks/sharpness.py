"""Sharpness of small-batch and large-batch minima on digits (Keskar et al. 2017, redone small).

Run by hand:  python benchmarks/sharpness.py [--seeds 0 1 2] [--target 0.02]
(prints Markdown tables for docs/sharpness.md; about 1 minute on 2 CPU cores). Needs torch,
scikit-learn and probecore-torch.

For each seed, the same MLP (64-32-10, ReLU, same initialization) is trained with Adam
(learning rate 1e-3) at batch size 32 and at batch size 512 on the digits training split
(``train_test_split(..., test_size=0.25, stratify=y, random_state=0)``: 1,347 training and
450 test images), each until the **full training loss first falls below the same
target**. The training loss is evaluated on the whole training split after every step, so
both models stop at (nearly) the same loss. At each trained point, on the float64
objective of the whole training split:

* λmax: ``probecore.lanczos(obj, k=1)``;
* trace: ``probecore.hutchpp(obj, n_matvecs=102)`` with its standard error;
* ε-sharpness at ε = 1e-3 and 5e-4, Keskar's box and the adaptive box (η = 0), with the
  default (converging) settings, and Keskar's box with ``maxiter=10`` as in the paper.

Costs are HVPs for λmax and the trace, ``loss_and_grad`` calls for ε-sharpness; times are
wall-clock seconds on this machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import numpy as np

HIDDEN = 32
LR = 1e-3
MAX_EPOCHS = 5000


def data():
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.25, stratify=y, random_state=0)
    f64, long = torch.float64, torch.long
    return (
        torch.as_tensor(Xtr, dtype=f64),
        torch.as_tensor(ytr, dtype=long),
        torch.as_tensor(Xte, dtype=f64),
        torch.as_tensor(yte, dtype=long),
    )


def mlp(seed):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10)).double()


def train(seed, batch, target, Xtr, ytr):
    """Adam at ``batch`` until the full training loss first falls below ``target``."""
    import torch
    import torch.nn.functional as F

    model = mlp(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(1000 + seed)
    n = Xtr.shape[0]
    steps = 0
    for _ in range(MAX_EPOCHS):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            opt.zero_grad()
            F.cross_entropy(model(Xtr[idx]), ytr[idx]).backward()
            opt.step()
            steps += 1
            with torch.no_grad():
                full = float(F.cross_entropy(model(Xtr), ytr))
            if full < target:
                return model, full, steps, steps * batch / n
    raise RuntimeError(f"batch {batch} did not reach training loss {target}")


def accuracy(model, X, y):
    import torch

    with torch.no_grad():
        return float((model(X).argmax(1) == y).double().mean())


def timed(f, *args, **kwargs):
    t0 = time.perf_counter()
    out = f(*args, **kwargs)
    return out, time.perf_counter() - t0


def measure(model, Xtr, ytr):
    import torch
    import torch.nn.functional as F

    import probecore as pc
    from probecore import epsilon_sharpness

    obj = pc.objective(model, F.cross_entropy, (Xtr, ytr), dtype=torch.float64)
    out = {"loss0": obj.loss(obj.x0), "dim": obj.dim}
    out["lam"], out["t_lam"] = timed(pc.lanczos, obj, k=1, rng=0)
    out["tr"], out["t_tr"] = timed(pc.hutchpp, obj, n_matvecs=102, rng=0)
    for eps in (1e-3, 5e-4):
        for adaptive in (False, True):
            out[eps, adaptive], out["t", eps, adaptive] = timed(
                epsilon_sharpness, obj, eps=eps, adaptive=adaptive
            )
    out["k10"], out["t_k10"] = timed(epsilon_sharpness, obj, eps=1e-3, maxiter=10)
    return out


def machine():
    """The machine description of benchmarks/backends.py."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from backends import machine as describe

    return describe()


def sharp(r, t):
    flag = "" if r.converged else " (not converged)"
    return f"{r.percent:.4g} ({r.n_loss_evals} / {r.n_iter}, {t:.1f} s){flag}"


def main():
    import torch

    import probecore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", type=float, default=0.02)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    Xtr, ytr, Xte, yte = data()
    rows = []
    for seed in args.seeds:
        for batch in (32, 512):
            model, _, steps, epochs = train(seed, batch, args.target, Xtr, ytr)
            rows.append((seed, batch, steps, epochs, model, measure(model, Xtr, ytr)))

    print(
        f"Measured {datetime.date.today()} on {machine()}, torch {torch.__version__}, "
        f"numpy {np.__version__}, probecore {probecore.__version__}; "
        f"`python benchmarks/sharpness.py --seeds {' '.join(map(str, args.seeds))} "
        f"--target {args.target}` ({time.perf_counter() - t_start:.0f} s). "
        f"MLP 64-{HIDDEN}-10 (d = {rows[0][-1]['dim']}), Adam lr {LR}, "
        f"stopped when the full training loss first fell below {args.target}.\n"
    )
    print(
        "| seed | batch | steps (epochs) | train loss | train / test acc. | "
        "λmax (HVPs, s) | trace ± s.e. (HVPs, s) |"
    )
    print("|---|---|---|---|---|---|---|")
    for seed, batch, steps, epochs, model, m in rows:
        lam, tr = m["lam"], m["tr"]
        print(
            f"| {seed} | {batch} | {steps} ({epochs:.0f}) | {m['loss0']:.5f} | "
            f"{accuracy(model, Xtr, ytr):.3f} / {accuracy(model, Xte, yte):.3f} | "
            f"{lam.eigenvalues[0]:.3f} ({lam.n_matvecs}, {m['t_lam']:.2f} s) | "
            f"{tr.estimate:.2f} ± {tr.std_error:.2f} ({tr.n_matvecs}, {m['t_tr']:.2f} s) |"
        )
    print()
    print(
        "ε-sharpness, 100·φ (`loss_and_grad` calls / L-BFGS-B iterations, seconds), "
        "one start, default tolerances, `maxiter=1000` unless marked:\n"
    )
    print(
        "| seed | batch | Keskar ε=1e-3 | Keskar ε=5e-4 | adaptive ε=1e-3 | adaptive ε=5e-4 | "
        "Keskar ε=1e-3, `maxiter=10` |"
    )
    print("|---|---|---|---|---|---|---|")
    for seed, batch, *_, m in rows:
        cells = [sharp(m[eps, a], m["t", eps, a]) for a in (False, True) for eps in (1e-3, 5e-4)]
        cells.append(sharp(m["k10"], m["t_k10"]))
        print(f"| {seed} | {batch} | " + " | ".join(cells) + " |")
    print()
    for seed, batch, *_, m in rows:
        msgs = {m[eps, a].message for a in (False, True) for eps in (1e-3, 5e-4)}
        print(f"seed {seed} batch {batch}: L-BFGS-B stopped with {sorted(msgs)}")


if __name__ == "__main__":
    main()
