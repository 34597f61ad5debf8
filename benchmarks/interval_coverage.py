"""Coverage of probecore's 95% intervals over probes, against the exact values.

Run by hand:  python benchmarks/interval_coverage.py [--seeds-mlp 100] [--seeds-quad 200]
(about 4 minutes; needs the PyTorch backend and scikit-learn for the MLP rows).

Two Hessians whose exact trace and moments are known:

* ``quadratic``: the 300-dimensional quadratic with an NN-like spectrum
  (``nn_like_spectrum(300, rng=0)``);
* ``MLP``: a float64 64-16-10 tanh MLP (1,210 parameters) trained for 200 full-batch Adam
  steps on scikit-learn's 1,797 digits, through ``probecore_torch.TorchObjective``; the
  exact spectrum is ``numpy.linalg.eigvalsh`` of the dense Hessian assembled from HVPs
  with the identity's columns. Its ten largest eigenvalues carry 90% of ``tr(H²)``.

Counted over seeds: how often the interval holds the exact value, for Hutchinson with 5
probes and Hutch++ with 30 HVPs (quadratic, ``TraceResult.confidence_interval()``
against ``z=1.96``), and for the first two SLQ moments with 5 and 20 probes
(``SpectralDensity.moment_interval``, a scaled chi-square fit with the plug-in variance of
sphere probes, against the former Student-t interval ``moment(p)`` ± ``t·se``), with the
mean width of the new interval relative to the Student-t one. The figures are quoted in
``docs/algorithms.md``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

import probecore as pc
from probecore.analytic import Quadratic, nn_like_spectrum


def mlp_hessian() -> tuple[object, np.ndarray, np.ndarray, np.ndarray]:
    """The trained digits MLP as ``(objective, x)``, its dense Hessian and eigenvalues."""
    import torch
    from probecore_torch import TorchObjective
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    inputs = torch.tensor(X / 16.0, dtype=torch.float64)
    targets = torch.tensor(y)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10)
    ).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        opt.step()
    obj = TorchObjective(model, torch.nn.functional.cross_entropy, (inputs, targets))
    x = obj.x0
    H = 0.5 * (lambda M: M + M.T)(obj.hvp_many(x, np.eye(obj.dim)))
    return obj, x, H, np.linalg.eigvalsh(H)


def slq_rows(name: str, A: object, lam: np.ndarray, seeds: int) -> list[tuple]:
    """Coverage of the first two moments, new against Student-t, with 5 and 20 probes."""
    exact = {1: float(np.mean(lam)), 2: float(np.mean(lam**2))}
    rows = []
    for n_probes in (5, 20):
        t = stats.t.ppf(0.975, n_probes - 1)
        hits = {(p, k): 0 for p in (1, 2) for k in ("new", "t")}
        width = {(p, k): 0.0 for p in (1, 2) for k in ("new", "t")}
        for seed in range(seeds):
            d = pc.spectral_density(A, n_probes=n_probes, rng=seed)
            for p in (1, 2):
                est, se = d.moment(p)
                for k, (lo, hi) in (
                    ("new", d.moment_interval(p)),
                    ("t", (est - t * se, est + t * se)),
                ):
                    hits[p, k] += lo <= exact[p] <= hi
                    width[p, k] += hi - lo
        for p in (1, 2):
            rows.append(
                (
                    f"{name}, SLQ {n_probes} probes: moment {p}",
                    seeds,
                    hits[p, "new"] / seeds,
                    hits[p, "t"] / seeds,
                    width[p, "new"] / width[p, "t"],
                )
            )
    return rows


def main() -> None:
    """Print the coverage tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds-quad", type=int, default=200)
    parser.add_argument("--seeds-mlp", type=int, default=100)
    parser.add_argument("--skip-mlp", action="store_true")
    parser.add_argument(
        "--mlp-operator",
        choices=("matrix", "objective"),
        default="matrix",
        help="SLQ on the MLP's dense Hessian (its HVPs, formed once; fast) or through "
        "the objective's HVPs (the same products to rounding; about 25 s a seed here)",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    lam = nn_like_spectrum(300, rng=0)
    q = Quadratic.from_spectrum(lam, rng=0)
    H = (q, q.x0)
    rows = []
    for name, run in (
        ("Hutchinson, 5 probes", lambda s: pc.hutchinson(H, n_probes=5, rng=s)),
        ("Hutch++, 30 HVPs", lambda s: pc.hutchpp(H, n_matvecs=30, rng=s)),
    ):
        t = z = 0
        for seed in range(300):
            r = run(seed)
            lo, hi = r.confidence_interval()
            t += lo <= lam.sum() <= hi
            lo, hi = r.confidence_interval(z=1.96)
            z += lo <= lam.sum() <= hi
        rows.append((f"quadratic, {name}: trace", 300, t / 300, z / 300))
    print("| estimate | seeds | Student-t | z = 1.96 |\n|---|---|---|---|")
    for name, seeds, t, z in rows:
        print(f"| {name} | {seeds} | {t:.1%} | {z:.1%} |")
    slq = slq_rows("quadratic", H, lam, args.seeds_quad)
    if not args.skip_mlp:
        obj, x, H_mlp, lam_mlp = mlp_hessian()
        top = np.sort(lam_mlp**2)[-10:].sum() / np.sum(lam_mlp**2)
        print(
            f"\nMLP: dim {obj.dim}, loss {obj.loss(x):.4f}, eigenvalues "
            f"[{lam_mlp[0]:.4g}, {lam_mlp[-1]:.4g}], ten largest carry {top:.0%} of tr(H²)"
        )
        A = H_mlp if args.mlp_operator == "matrix" else (obj, x)
        slq += slq_rows(f"MLP ({args.mlp_operator})", A, lam_mlp, args.seeds_mlp)
    print(
        "\n| SLQ moment | seeds | moment_interval | Student-t (old) | mean width new/old |"
        "\n|---|---|---|---|---|"
    )
    for name, seeds, new, old, ratio in slq:
        print(f"| {name} | {seeds} | {new:.1%} | {old:.1%} | {ratio:.2f} |")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
