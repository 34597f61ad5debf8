"""Coverage of probecore's 95% intervals over probes: Student-t against a normal z.

Run by hand:  python benchmarks/interval_coverage.py   (about 1 minute)

On a 300-dimensional quadratic with an NN-like spectrum (``nn_like_spectrum(300,
rng=0)``, exact trace and moments known), counts over seeds how often the interval holds
the exact value: Hutchinson with 5 probes and Hutch++ with 30 HVPs (300 seeds each,
``TraceResult.confidence_interval()`` against ``z=1.96``), and the first two SLQ moments
with 5 probes (200 seeds, ``SpectralDensity.moment_interval`` against ±1.96 standard
errors). The figures are quoted in ``docs/algorithms.md``.
"""

from __future__ import annotations

import numpy as np

import probecore as pc
from probecore.analytic import Quadratic, nn_like_spectrum


def main() -> None:
    """Print the coverage table."""
    lam = nn_like_spectrum(300, rng=0)
    q = Quadratic.from_spectrum(lam, rng=0)
    H = (q, q.x0)
    exact = {"trace": lam.sum(), 1: lam.mean(), 2: np.mean(lam**2)}
    rows = []
    for name, run in (
        ("Hutchinson, 5 probes", lambda s: pc.hutchinson(H, n_probes=5, rng=s)),
        ("Hutch++, 30 HVPs", lambda s: pc.hutchpp(H, n_matvecs=30, rng=s)),
    ):
        t = z = 0
        for seed in range(300):
            r = run(seed)
            lo, hi = r.confidence_interval()
            t += lo <= exact["trace"] <= hi
            lo, hi = r.confidence_interval(z=1.96)
            z += lo <= exact["trace"] <= hi
        rows.append((f"{name}: trace", t / 300, z / 300))
    hits = {(p, k): 0 for p in (1, 2) for k in ("t", "z")}
    for seed in range(200):
        d = pc.spectral_density(H, n_probes=5, rng=seed)
        for p in (1, 2):
            lo, hi = d.moment_interval(p)
            hits[p, "t"] += lo <= exact[p] <= hi
            est, se = d.moment(p)
            hits[p, "z"] += abs(est - exact[p]) <= 1.96 * se
    for p in (1, 2):
        rows.append((f"SLQ, 5 probes: moment {p}", hits[p, "t"] / 200, hits[p, "z"] / 200))
    print("| estimate | Student-t | z = 1.96 |\n|---|---|---|")
    for name, t, z in rows:
        print(f"| {name} | {t:.1%} | {z:.1%} |")


if __name__ == "__main__":
    main()
