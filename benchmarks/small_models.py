"""Small models measured against the peers: a 21×21 plane and Hutch++, side by side.

Run by hand:  python benchmarks/small_models.py [--rounds 7] [--profile]
(prints Markdown tables for docs/benchmarks.md; on 2 busy CPU cores a round took about
4 s on the MLP and 4-10 minutes on the CNN, whose Hutch++ routes dominate). Needs
torch, scikit-learn and probecore-torch; the peers are installed without dependencies
(so that pip does not touch torch):

    pip install --no-deps loss-landscapes curvlinops-for-pytorch einops einconv linear_operator

Two models on scikit-learn's digits, float32 (as users run them), the whole training
split of 1,347 images in one batch:

* the tiny MLP (64-32-10, ReLU, 2,410 parameters) of ``benchmarks/sharpness.py``,
  trained 100 full-batch Adam steps;
* the digits CNN (6,090 parameters) of ``benchmarks/backends.py``.

Routes, each timed as the user calls it (the model, data and peers' metric built once):

* **plane**: ``probecore.random_directions`` (filter-normalized) and ``probecore.plane``
  on a 21×21 grid, against ``loss_landscapes.random_plane(steps=21,
  normalization="filter")`` (also 441 points; it draws its own directions).
* **Hutch++** at 99 HVPs: a fresh ``probecore.objective`` and ``probecore.hutchpp(obj,
  n_matvecs=99)`` against a fresh curvlinops ``HessianLinearOperator`` (its default
  determinism check included) and ``curvlinops.trace.meyer2020hutch.hutchpp_trace(H,
  num_matvecs=99)`` (33 sketch, 33 exact, 33 Hutchinson products on both sides). The
  estimator alone, on an objective (operator) built once, is timed too: probecore then
  reuses the gradient graph it kept at ``x0`` across calls, curvlinops recomputes its
  forward pass at every block product.

The machine's speed drifts by up to 2× over minutes (other tenants), so every round times
every route once, in rotated order, and a ratio is taken within each round: the tables
give the median ratio over rounds and the range of the middle 95% (binomial order
statistics; with 7 rounds, the smallest and the largest ratio).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import os
import platform
import pstats
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GRID = 21
BUDGET = 99


def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    Xtr, _, ytr, _ = train_test_split(
        d.images.astype(np.float32) / 16.0, d.target, test_size=0.25, random_state=0
    )
    return Xtr, ytr


def tiny_mlp():
    """The 64-32-10 MLP (2,410 parameters), float32, 100 full-batch Adam steps."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    Xtr, ytr = digits_split()
    X, y = torch.tensor(Xtr.reshape(len(Xtr), -1)), torch.tensor(ytr)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model, X, y


def digits_cnn():
    """The CNN of benchmarks/backends.py (6,090 parameters, 50 full-batch Adam steps)."""
    sys.path.insert(0, HERE)
    from backends import digits_cnn as make

    model, X, y, _ = make()
    return model, X, y


def routes_for(model, X, y):
    """The timed routes: name -> (operation, callable)."""
    import torch.nn.functional as F

    import probecore as pc

    obj = pc.objective(model, F.cross_entropy, (X, y))
    grid = np.linspace(-1, 1, GRID)
    seeds = iter(range(10**6))
    routes = {}

    def pc_plane():
        D = pc.random_directions(obj, k=2, rng=next(seeds))
        return pc.plane(obj, D, alphas=grid, betas=grid, progress=False).losses

    routes["probecore plane"] = ("plane", pc_plane)

    def pc_hutchpp():
        fresh = pc.objective(model, F.cross_entropy, (X, y))
        return pc.hutchpp(fresh, n_matvecs=BUDGET, rng=next(seeds)).estimate

    routes["probecore objective + hutchpp"] = ("hutchpp", pc_hutchpp)
    routes["probecore hutchpp (objective built once)"] = (
        "hutchpp-warm",
        lambda: pc.hutchpp(obj, n_matvecs=BUDGET, rng=next(seeds)).estimate,
    )
    try:
        import loss_landscapes
        import loss_landscapes.metrics

        metric = loss_landscapes.metrics.Loss(F.cross_entropy, X, y)
        routes["loss-landscapes random_plane"] = (
            "plane",
            lambda: loss_landscapes.random_plane(
                model, metric, distance=1, steps=GRID, normalization="filter", deepcopy_model=True
            ),
        )
    except ImportError as exc:
        print(f"loss-landscapes not measured: {exc}", file=sys.stderr)
    try:
        from curvlinops import HessianLinearOperator
        from curvlinops.trace.meyer2020hutch import hutchpp_trace
        from torch import nn

        params = [p for p in model.parameters() if p.requires_grad]
        data = [(X, y)]
        loss = nn.CrossEntropyLoss()  # curvlinops reads the loss module's reduction
        H = HessianLinearOperator(model, loss, params, data)

        def cl_hutchpp():
            fresh = HessianLinearOperator(model, loss, params, data)
            return float(hutchpp_trace(fresh, num_matvecs=BUDGET))

        routes["curvlinops operator + hutchpp_trace"] = ("hutchpp", cl_hutchpp)
        routes["curvlinops hutchpp_trace (operator built once)"] = (
            "hutchpp-warm",
            lambda: float(hutchpp_trace(H, num_matvecs=BUDGET)),
        )
    except ImportError as exc:
        print(f"curvlinops not measured: {exc}", file=sys.stderr)
    return routes


def median_ci(r):
    """Median of per-round ratios and a 95% distribution-free interval (binomial order
    statistics; with 7 rounds or fewer, the smallest and largest ratio)."""
    from scipy.stats import binom

    r = np.sort(np.asarray(r, dtype=float))
    n = r.size
    k = int(binom.ppf(0.025, n, 0.5))
    lo, hi = (r[k - 1], r[n - k]) if k >= 1 else (r[0], r[-1])
    return float(np.median(r)), float(lo), float(hi)


def measure(name, make, rounds):
    import torch

    torch.manual_seed(0)
    model, X, y = make()
    dim = sum(p.numel() for p in model.parameters())
    routes = routes_for(model, X, y)
    for _, fn in routes.values():  # warm up: imports, allocator, oneDNN kernels
        fn()
    names = list(routes)
    times = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            routes[n][1]()
            times[n].append(time.perf_counter() - t)
        print(
            f"[{datetime.datetime.now():%H:%M:%S}] {name} round {r}: "
            + ", ".join(f"{n} {times[n][-1]:.3f} s" for n in names),
            file=sys.stderr,
        )
    return dim, {n: (routes[n][0], np.asarray(times[n])) for n in names}


PAIRS = {
    "plane": ("probecore plane", "loss-landscapes random_plane"),
    "hutchpp": ("probecore objective + hutchpp", "curvlinops operator + hutchpp_trace"),
    "hutchpp-warm": (
        "probecore hutchpp (objective built once)",
        "curvlinops hutchpp_trace (operator built once)",
    ),
}


def report(name, dim, times, rounds):
    print(f"### {name} (d = {dim:,}), {rounds} interleaved rounds\n")
    print("| route | median time | points or HVPs per second |")
    print("|---|---|---|")
    for route, (op, ts) in times.items():
        n = GRID * GRID if op == "plane" else BUDGET
        print(f"| {route} | {np.median(ts) * 1e3:.0f} ms | {n / np.median(ts):.0f} |")
    print()
    print("| operation | probecore / peer | ratio, median (95% range) |")
    print("|---|---|---|")
    for op, (ours, peer) in PAIRS.items():
        if ours not in times or peer not in times:
            continue
        if op == "plane":  # throughput: higher is better, so peer time / our time
            r, what = times[peer][1] / times[ours][1], "plane throughput (points/s)"
        else:
            r, what = times[ours][1] / times[peer][1], f"Hutch++ time at {BUDGET} HVPs"
            if op == "hutchpp-warm":
                what += ", estimator only"
        print("| {} | {} / {} | {:.2f} ({:.2f}–{:.2f}) |".format(what, ours, peer, *median_ci(r)))
    print()


def profile(make):
    """cProfile of probecore's two calls on one model (after a warm-up)."""
    import torch.nn.functional as F

    import probecore as pc

    model, X, y = make()
    grid = np.linspace(-1, 1, GRID)
    obj = pc.objective(model, F.cross_entropy, (X, y))
    D = pc.random_directions(obj, k=2, rng=0)
    pc.plane(obj, D, alphas=grid, betas=grid, progress=False)
    for label, fn in (
        ("plane", lambda: pc.plane(obj, D, alphas=grid, betas=grid, progress=False)),
        (
            "objective + hutchpp",
            lambda: pc.hutchpp(
                pc.objective(model, F.cross_entropy, (X, y)), n_matvecs=BUDGET, rng=0
            ),
        ),
    ):
        prof = cProfile.Profile()
        prof.enable()
        fn()
        prof.disable()
        print(f"--- {label}", file=sys.stderr)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(18)


def main():
    if "OMP_WAIT_POLICY" not in os.environ:
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp, cnn")
    ap.add_argument("--profile", action="store_true", help="cProfile probecore's calls instead")
    args = ap.parse_args()
    import torch

    import probecore as pc

    makers = {"mlp": ("Tiny MLP 64-32-10", tiny_mlp), "cnn": ("Digits CNN", digits_cnn)}
    chosen = [makers[m] for m in args.models.split(",")]
    if args.profile:
        for _, make in chosen:
            profile(make)
        return
    start = time.perf_counter()
    results = [(label, *measure(label, make, args.rounds)) for label, make in chosen]

    def version(dist):
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as v

        try:
            return v(dist)
        except PackageNotFoundError:
            return "not installed"

    print("## Small models (`benchmarks/small_models.py`)\n")
    print(
        f"Measured {datetime.date.today().isoformat()}, {os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f} at "
        f"the end; Python {platform.python_version()}, torch {torch.__version__}, probecore "
        f"{pc.__version__}, loss-landscapes {version('loss-landscapes')}, curvlinops "
        f"{version('curvlinops-for-pytorch')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY') or '(unset)'}. Command: "
        f"`python benchmarks/small_models.py --rounds {args.rounds} --models {args.models}` "
        f"({time.perf_counter() - start:.0f} s).\n"
    )
    for label, dim, times in results:
        report(label, dim, times, args.rounds)


if __name__ == "__main__":
    main()
