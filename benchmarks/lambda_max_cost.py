"""HVPs for λmax: default ``probecore.lanczos(k=1)`` against ARPACK at the same ``tol``.

Run by hand:  python benchmarks/lambda_max_cost.py  (prints a Markdown table for
docs/algorithms.md, section "verify"; about two minutes on two cores)

Cases: (a) a float64 MLP (64-16-10, ReLU, cross-entropy) on sklearn ``load_digits``,
trained with Adam until its Hessian's top pair is close (the first checkpoint, every 20
steps, where ``λ2/λ1 >= 0.9``; the ratio printed comes from a dense eigendecomposition of
the Hessian built from ``dim`` HVPs); (b) ``Quadratic.from_spectrum`` on a network-like
spectrum (``nn_like_spectrum(2000)``) whose second eigenvalue is set to ``ratio·λ1`` for
ratio in {0.5, 0.9, 0.93, 0.99}, and one whose top pair is repeated. For each case and
start seed 0..9: the HVPs of ``pc.lanczos(A, k=1, rng=seed)`` (defaults: ``tol=1e-8``,
``verify=True``), of ``verify=False``, and of ``scipy.sparse.linalg.eigsh(k=1,
which="LA", tol=1e-8)`` from the same start vector (counting every product ARPACK
asks for), with the relative error ``|λ − λ_exact|/λ_exact``. Reported: median [min–max].
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

import probecore as pc
from probecore.analytic import Quadratic, nn_like_spectrum

TOL = 1e-8
SEEDS = range(10)
HIDDEN = 16


def mlp_hessian_case():
    """A briefly trained digits MLP with a close top pair: (objective, exact eigenvalues)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from torch import nn

    X, y = load_digits(return_X_y=True)
    X = torch.as_tensor(X / 16.0, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.long)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10)).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(1, 2001):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
        if step % 20:
            continue
        obj = pc.objective(model, F.cross_entropy, (X, y), dtype=torch.float64)
        top = pc.lanczos(obj, k=2, rng=0).eigenvalues
        if top[1] / top[0] >= 0.9:
            break
    H = obj.hvp_many(obj.x0, np.eye(obj.dim))
    lam = np.linalg.eigvalsh((H + H.T) / 2)
    return step, obj, lam


def eigsh_run(A, seed):
    op = pc.as_operator(A)
    n = op.shape[0]
    count = [0]

    def mv(v):
        count[0] += 1
        return op @ np.ravel(v)

    counted = LinearOperator((n, n), matvec=mv, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)
    theta = eigsh(counted, k=1, which="LA", tol=TOL, v0=v0, return_eigenvectors=False)
    return count[0], float(theta[0])


def measure(A, lam_max):
    rows = {"default": [], "verify=False": [], "ARPACK": []}
    for seed in SEEDS:
        for name, verify in (("default", True), ("verify=False", False)):
            r = pc.lanczos(A, k=1, rng=seed, verify=verify)
            rows[name].append((r.n_matvecs, abs(r.eigenvalues[0] - lam_max) / lam_max))
        hvps, theta = eigsh_run(A, seed)
        rows["ARPACK"].append((hvps, abs(theta - lam_max) / lam_max))
    return rows


def fmt(values, spec):
    v = np.asarray(values, dtype=float)
    return f"{np.median(v):{spec}} [{v.min():{spec}}–{v.max():{spec}}]"


def cases():
    step, obj, lam = mlp_hessian_case()
    name = f"digits MLP 64-{HIDDEN}-10, Adam step {step} (d={obj.dim})"
    yield name, lam[-2] / lam[-1], obj, lam[-1]
    base = np.sort(nn_like_spectrum(2000, rng=0))
    for ratio in (0.5, 0.9, 0.93, 0.99, 1.0):
        spec = base.copy()
        spec[-2] = ratio * spec[-1]
        label = "repeated top pair" if ratio == 1.0 else f"λ2/λ1 = {ratio}"
        A = Quadratic.from_spectrum(spec, rng=1).hessian()
        yield f"NN-like quadratic d=2000, {label}", ratio, A, spec[-1]


def main():
    print(
        "| case | λ2/λ1 | HVPs default | HVPs `verify=False` | HVPs ARPACK "
        "| rel. error default | rel. error ARPACK |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, ratio, A, lam_max in cases():
        rows = measure(A, lam_max)
        hv = {k: fmt([h for h, _ in v], ".0f") for k, v in rows.items()}
        err = {k: fmt([e for _, e in v], ".0e") for k, v in rows.items()}
        print(
            f"| {name} | {ratio:.3f} | {hv['default']} | {hv['verify=False']} "
            f"| {hv['ARPACK']} | {err['default']} | {err['ARPACK']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
