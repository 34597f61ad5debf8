"""Coverage of the intervals of ``probecore.rays`` on digits MLPs, against an exact trace.

Run by hand:  python benchmarks/rays_coverage.py [--seeds 50] [--rays 100] [--quick]
(prints a Markdown table for docs/landscape.md, "Errors of κ"; about 20 minutes on 2 busy
CPU cores, --quick (10 seeds, the ReLU rows in float32 only) about 2). Needs torch, scikit-learn and
probecore-torch.

The models are MLPs 64-32-10 (2,410 parameters) with ReLU or tanh on all 1,797
scikit-learn digits (pixels / 16), cross-entropy, in float32: at initialisation
(``torch.manual_seed(0)``) and after 200 full-batch Adam steps (learning rate 1e-2). The
truth is the mean curvature over uniformly random unit directions, ``tr(H)/dim``, of the
float64 copy of the same model, from the dense Hessian (``dim`` HVPs of the probecore-torch
objective on the unit vectors). Each row runs ``probecore.rays`` with ``--seeds`` seeds
(``rng=0..``) at one step ``ε`` and counts how often each interval holds the truth:
``mean_ci`` (Student-t, sampling error only) and ``mean_total_ci`` (sampling, centre
rounding and truncation bias, kinked rays left out). The float32 rows also run
``curvature="hessian"`` (dᵀHd from one HVP per ray), and the script prints how far its
float32 values are from float64's along the same rays, against ``rounding_error``. It
also reports the median number of kinked rays, the mean widths and the mean of
``center_error`` and ``|truncation_bias|``.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import numpy as np

TRAIN_STEPS = 200


def _models(act: str, trained: bool):
    """(float32 objective, float64 objective) of the MLP with activation ``act``."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    import probecore as pc

    digits = load_digits()
    X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    layer = torch.nn.ReLU if act == "relu" else torch.nn.Tanh
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), layer(), torch.nn.Linear(32, 10))
    if trained:
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(TRAIN_STEPS):
            opt.zero_grad()
            F.cross_entropy(model(X), y).backward()
            opt.step()
    o32 = pc.objective(model, F.cross_entropy, (X, y))
    o64 = pc.objective(copy.deepcopy(model).double(), F.cross_entropy, (X.double(), y))
    return o32, o64


def _truth(o64) -> float:
    """``tr(H)/dim`` in float64 from the dense Hessian."""
    H = np.asarray(o64.hvp_many(o64.x0, np.eye(o64.dim)))
    return float(np.trace(H)) / o64.dim


def _row(obj, truth, eps, seeds, n_rays, curvature="difference"):
    import probecore as pc

    rs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the kink warning: counted below
        for seed in range(seeds):
            rs.append(
                pc.rays(obj, n_rays=n_rays, eps=eps, rng=seed, progress=False, curvature=curvature)
            )
    inside = sum(r.mean_ci[0] <= truth <= r.mean_ci[1] for r in rs)
    total = [r.mean_total_ci for r in rs]
    finite = [t for t in total if np.all(np.isfinite(t))]
    inside_total = sum(t[0] <= truth <= t[1] for t in finite)
    return {
        "eps": rs[0].eps,
        "mean": np.mean([r.mean for r in rs]),
        "inside": inside,
        "inside_total": inside_total,
        "n_total": len(finite),
        "kinked": float(np.median([r.n_kinked or 0 for r in rs])),
        "half": np.mean([(r.mean_ci[1] - r.mean_ci[0]) / 2 for r in rs]),
        "half_total": np.mean([(t[1] - t[0]) / 2 for t in finite]) if finite else np.nan,
        "center": np.mean([r.center_error for r in rs]),
        "bias": np.mean([abs(r.truncation_bias) for r in rs]),
        "shift": np.mean([r.center_shift for r in rs]),
        "evals": rs[0].n_loss_evals,
        "hvps": rs[0].n_hvps,
        "first": rs[0],
    }


def _hessian_rounding(r32, o64) -> str:
    """How far float32 dᵀHd is from float64 dᵀHd along the same rays, against its estimate."""
    import probecore as pc

    r64 = pc.rays(o64, n_rays=r32.kappa.size, rng=r32.seed, curvature="hessian", progress=False)
    dev = float(np.max(np.abs(r32.kappa - r64.kappa)))
    return (
        f"float32 dᵀHd against float64 along the same {r32.kappa.size} rays: max deviation "
        f"{dev:.2e} ({dev / float(np.max(np.abs(r64.kappa))):.1e} of max|κ|), "
        f"`rounding_error` {r32.rounding_error:.2e}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=None, help="default 50 (10 with --quick)")
    ap.add_argument("--rays", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="ReLU rows in float32 only")
    args = ap.parse_args()
    import torch

    import probecore as pc

    torch.set_num_threads(1)
    seeds = args.seeds if args.seeds is not None else (10 if args.quick else 50)
    cases = [("relu", False), ("relu", True)]
    if not args.quick:
        cases += [("tanh", False), ("tanh", True)]
    print(
        f"{seeds} seeds x {args.rays} rays per row; truth tr(H)/dim from the float64 "
        "dense Hessian\n"
    )
    print(
        "| model | dtype | ε | tr(H)/dim | mean κ | `mean_ci` covers | `mean_total_ci` covers "
        "| kinked rays (median) | half-width `mean_ci` | half-width total | `center_error` "
        "| \\|`truncation_bias`\\| | loss evals |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    t0 = time.time()
    notes: list[str] = []
    for act, trained in cases:
        o32, o64 = _models(act, trained)
        truth = _truth(o64)
        name = f"{act} {'trained' if trained else 'init'} (L = {o64.loss(o64.x0):.3g})"
        # float32: eps_mach**0.25 (the default before 0.1.0's check) and the default, 0.1;
        # float64 (ReLU): eps_mach**0.25 = 1.2e-4 and the default, 1e-5
        rows = [
            (o32, float(np.finfo(np.float32).eps ** 0.25), "difference"),
            (o32, None, "difference"),
            (o32, None, "hessian"),
        ]
        if act == "relu" and not args.quick:
            rows += [
                (o64, float(np.finfo(np.float64).eps ** 0.25), "difference"),
                (o64, None, "difference"),
            ]
        for obj, eps, curvature in rows:
            r = _row(obj, truth, eps, seeds, args.rays, curvature)
            total = f"{r['inside_total']}/{r['n_total']}"
            if curvature == "hessian":
                step, cost = 'dᵀHd (`curvature="hessian"`)', f"1 + {r['hvps']} HVPs"
                notes.append(f"{name}: " + _hessian_rounding(r["first"], o64))
            else:
                step = f"{r['eps']:.3g}{' (default)' if eps is None else ''}"
                cost = str(r["evals"])
            print(
                f"| {name} | {obj.dtype} | {step} "
                f"| {truth:.5f} | {r['mean']:.5f} | {r['inside']}/{seeds} | {total} "
                f"| {r['kinked']:g} | {r['half']:.2e} | {r['half_total']:.2e} "
                f"| {r['center']:.1e} | {r['bias']:.1e} | {cost} |",
                flush=True,
            )
    for line in notes:
        print(f"\n{line}")
    print(f"\n{time.time() - t0:.0f} s; probecore {pc.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
