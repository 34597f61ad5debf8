"""HVPs needed to reach 1e-6 relative error on λmax: power iteration, Lanczos, ARPACK.

Run by hand:  python benchmarks/spectrum.py  (prints a Markdown table for docs/benchmarks.md)

For each spectrum and start seed, each method is run at a ladder of tolerances and the
cheapest run whose λmax is within 1e-6 (relative) of the exact value counts. Power
iteration is read off its own history (one HVP per iterate). Counts include every HVP the
method spent: probecore's Lanczos counts its final residual check (1 HVP) and, with
``verify=True`` (the default), the steps that certify no eigenvalue was missed (for
``k=1`` from a random start, 1–4 past convergence; ``benchmarks/lambda_max_cost.py``).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

import probecore as pc
from probecore.analytic import Quadratic, digits_logistic_regression, nn_like_spectrum

TARGET = 1e-6
TOLS = [10.0**-e for e in np.arange(1, 12.5, 0.5)]


def power_hvps(A, lam_max, seed):
    r = pc.power_iteration(
        A, tol=0.0, residual_tol=None, maxiter=20_000, rng=seed, raise_on_failure=False
    )
    ok = np.flatnonzero(np.abs(r.history - lam_max) <= TARGET * abs(lam_max))
    return int(ok[0]) + 1 if ok.size else np.inf


def lanczos_hvps(A, lam_max, seed, verify):
    for tol in TOLS:
        r = pc.lanczos(A, k=1, tol=tol, rng=seed, verify=verify, raise_on_failure=False)
        if abs(r.eigenvalues[0] - lam_max) <= TARGET * abs(lam_max):
            return r.n_matvecs
    return np.inf


def eigsh_hvps(A, lam_max, seed):
    n = A.shape[0]
    v0 = np.random.default_rng(seed).standard_normal(n)
    for tol in TOLS:
        count = [0]

        def mv(v, count=count):
            count[0] += 1
            return A @ v

        op = LinearOperator((n, n), matvec=mv, dtype=np.float64)
        theta = eigsh(op, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
        if abs(theta[0] - lam_max) <= TARGET * abs(lam_max):
            return count[0]
    return np.inf


def cases():
    for seed in range(3):
        lam = nn_like_spectrum(2000, rng=seed)
        yield f"NN-like, d=2000, seed {seed} (λ2/λ1 = {lam[-2] / lam[-1]:.2f})", lam
    lam = nn_like_spectrum(2000, rng=0)
    lam[-2] = 0.99 * lam[-1]
    yield "NN-like, d=2000, close top pair (λ2/λ1 = 0.99)", lam
    obj = digits_logistic_regression()
    x = obj.minimize()
    yield "digits logistic regression at its minimum (d=650)", obj.hessian(x)


def main():
    rows = []
    for name, data in cases():
        A = data if data.ndim == 2 else Quadratic.from_spectrum(data, rng=1).hessian()
        lam_max = np.linalg.eigvalsh(A)[-1]
        res = {k: [] for k in ("power", "lanczos", "lanczos_noverify", "eigsh")}
        for seed in range(5):
            res["power"].append(power_hvps(A, lam_max, seed))
            res["lanczos"].append(lanczos_hvps(A, lam_max, seed, True))
            res["lanczos_noverify"].append(lanczos_hvps(A, lam_max, seed, False))
            res["eigsh"].append(eigsh_hvps(A, lam_max, seed))
        med = {k: float(np.median(v)) for k, v in res.items()}
        rows.append((name, med))
        print(name, med, flush=True)
    print()
    print(
        "| spectrum | power iteration | Lanczos (default, verify) | Lanczos (verify=False) "
        "| ARPACK eigsh | power / Lanczos |"
    )
    print("|---|---|---|---|---|---|")
    for name, m in rows:
        print(
            f"| {name} | {m['power']:.0f} | {m['lanczos']:.0f} | {m['lanczos_noverify']:.0f} "
            f"| {m['eigsh']:.0f} | {m['power'] / m['lanczos']:.1f}× |"
        )


if __name__ == "__main__":
    main()
