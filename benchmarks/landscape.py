"""Landscape probing measured: plane throughput, a full 51×51 plane, and κ against ε.

Run by hand:  python benchmarks/landscape.py [--quick] [--out DIR]
(prints Markdown tables for docs/benchmarks.md and docs/landscape.md; about 8 minutes on
2 CPU cores, --quick about 2). Needs torch, scikit-learn, zarr, dask[distributed],
matplotlib and probecore-torch; the peer is optional:

    pip install --no-deps loss-landscapes

Parts:

1. Throughput (points per second) of a filter-normalized random plane on the digits CNN
   (float32, the whole training split of 1,347 images, in one batch), on the same grid
   rows for every route: ``probecore.plane`` serial; on 2 local worker processes
   (``ProcessPoolExecutor``, one torch thread each); on a Dask ``LocalCluster`` with 2
   worker processes (``Client.get_executor()``); a plain per-point loop (write the point
   into the model with ``vector_to_parameters``, evaluate the loss); and the
   ``loss-landscapes`` package's ``random_plane`` with a grid of the same size.
2. The full default 51×51 plane, stored as it goes (Zarr), plotted (contour and surface
   PNGs) and read back.
3. Ray curvature κ against the step ε on the same CNN, in float64 and float32.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _one_thread():
    import torch

    torch.set_num_threads(1)


def digits_cnn(dtype="float32"):
    """The CNN of benchmarks/backends.py (trained 50 full-batch Adam steps)."""
    sys.path.insert(0, HERE)
    from backends import digits_cnn as make

    model, X, y, _ = make()
    if dtype == "float64":
        model, X = model.double(), X.double()
    return model, X, y


def make_objective(dtype="float32"):
    """Picklable factory: each worker builds its own objective once."""
    import torch.nn.functional as F

    import probecore as pc

    model, X, y = digits_cnn(dtype)
    return pc.objective(model, F.cross_entropy, (X, y))


def throughput(rows, quick):
    """Points per second of each route, interleaved round by round (median of rounds).

    The machine's speed drifts by up to 2x over minutes (other tenants), so every round
    times every route once, in rotated order, and the median per route is reported.
    """
    import contextlib

    import dask
    import torch
    import torch.nn.functional as F

    import probecore as pc

    model, X, y = digits_cnn()
    obj = pc.objective(model, F.cross_entropy, (X, y))
    D = pc.random_directions(obj, k=2, rng=0)
    alphas = np.linspace(-1, 1, 51)
    betas = np.linspace(-1, 1, 51)[:rows]
    n = alphas.size * betas.size
    grid = dict(alphas=alphas, betas=betas, progress=False)
    warm = dict(alphas=[0.0, 1.0], betas=[0.0, 1.0], chunk_size=1, progress=False)
    threads = torch.get_num_threads()
    results = {}

    params = list(model.parameters())
    x0 = torch.nn.utils.parameters_to_vector(params).detach().clone()
    d1, d2 = (torch.from_numpy(np.array(v)) for v in D.vectors)  # writable copies

    def plain():
        vals = np.empty((betas.size, alphas.size))
        with torch.no_grad():
            for i, b in enumerate(betas):
                for j, a in enumerate(alphas):
                    torch.nn.utils.vector_to_parameters(x0 + a * d1 + b * d2, params)
                    vals[i, j] = float(F.cross_entropy(model(X), y))
            torch.nn.utils.vector_to_parameters(x0, params)
        return vals

    def one_thread_serial():
        torch.set_num_threads(1)
        try:
            return pc.plane(obj, D, **grid)
        finally:
            torch.set_num_threads(threads)

    routes = {
        f"probecore plane, serial ({threads} torch threads)": lambda: pc.plane(obj, D, **grid),
        "probecore plane, serial (1 torch thread)": one_thread_serial,
        "plain per-point loop (vector_to_parameters, loss)": plain,
    }
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(ProcessPoolExecutor(2, initializer=_one_thread))
        pc.plane(obj, D, executor=pool, **warm)  # start and import in the workers, untimed
        routes["probecore plane, 2 local processes"] = lambda: pc.plane(
            obj, D, executor=pool, **grid
        )
        try:
            import distributed

            # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which made each torch
            # loss on this CNN 2.2x slower (28 against 13 ms in a fresh process): unset it.
            stack.enter_context(
                dask.config.set(
                    {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
                )
            )
            os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
                )
            )
            client = stack.enter_context(distributed.Client(cluster))
            client.run(_one_thread)
            dask_ex = client.get_executor()
            pc.plane(obj, D, executor=dask_ex, **warm)
            routes["probecore plane, 2 Dask workers (LocalCluster)"] = lambda: pc.plane(
                obj, D, executor=dask_ex, **grid
            )
        except ImportError as exc:
            print(f"dask not measured: {exc}", file=sys.stderr)
        try:
            import loss_landscapes
            import loss_landscapes.metrics

            steps = int(round(np.sqrt(n)))
            metric = loss_landscapes.metrics.Loss(F.cross_entropy, X, y)
            routes["loss-landscapes random_plane (filter normalization)"] = lambda: (
                loss_landscapes.random_plane(
                    model,
                    metric,
                    distance=1,
                    steps=steps,
                    normalization="filter",
                    deepcopy_model=True,
                )
            )
        except ImportError as exc:
            print(f"loss-landscapes not measured: {exc}", file=sys.stderr)
        counts = {name: n for name in routes}
        if "loss-landscapes random_plane (filter normalization)" in routes:
            counts["loss-landscapes random_plane (filter normalization)"] = steps**2
        names = list(routes)
        times = {name: [] for name in names}
        rounds = 2 if quick else 7
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                t = time.perf_counter()
                results[name] = routes[name]()
                times[name].append(time.perf_counter() - t)
                print(
                    f"[{datetime.datetime.now():%H:%M:%S}] round {r}: {name}: "
                    f"{counts[name] / times[name][-1]:.1f} points/s",
                    file=sys.stderr,
                )
    out = {name: counts[name] / float(np.median(ts)) for name, ts in times.items()}
    # per-round throughput ratios (routes of one round ran seconds apart)
    speed = {name: counts[name] / np.asarray(ts) for name, ts in times.items()}
    out_ratios = {
        ref: {name: _median_ci(speed[name] / speed[ref]) for name in names}
        for ref in (names[0], "plain per-point loop (vector_to_parameters, loss)")
        + tuple(k for k in names if k.startswith("loss-landscapes"))
    }
    serial = results[names[0]]
    loop = results["plain per-point loop (vector_to_parameters, loss)"]
    agree = float(np.max(np.abs(loop - serial.losses)) / np.max(np.abs(loop)))
    pool_eq = float(
        np.max(np.abs(results["probecore plane, 2 local processes"].losses - serial.losses))
    )
    key = "probecore plane, 2 Dask workers (LocalCluster)"
    dask_eq = float(np.max(np.abs(results[key].losses - serial.losses))) if key in results else None
    return out, out_ratios, n, agree, pool_eq, dask_eq, rounds


def _median_ci(r):
    """Median of per-round ratios and a 95% distribution-free interval (binomial order
    statistics; with 7 rounds or fewer, the smallest and largest ratio)."""
    from scipy.stats import binom

    r = np.sort(np.asarray(r, dtype=float))
    n = r.size
    k = int(binom.ppf(0.025, n, 0.5))
    lo, hi = (r[k - 1], r[n - k]) if k >= 1 else (r[0], r[-1])
    return float(np.median(r)), float(lo), float(hi)


def full_plane(outdir, quick):
    import matplotlib

    matplotlib.use("Agg")
    import torch.nn.functional as F

    import probecore as pc
    from probecore import plot

    model, X, y = digits_cnn()
    obj = pc.objective(model, F.cross_entropy, (X, y))
    D = pc.random_directions(obj, k=2, rng=0)
    n = 21 if quick else 51
    path = os.path.join(outdir, f"cnn_plane_{n}.zarr")
    t = time.perf_counter()
    r = pc.plane(
        obj,
        D,
        alphas=np.linspace(-1, 1, n),
        betas=np.linspace(-1, 1, n),
        store=path,
        metrics=["accuracy"],
        progress=False,
    )
    took = time.perf_counter() - t
    back = pc.load_run(path)
    same = bool(np.array_equal(back.losses, r.losses))
    files = {}
    for name, fn in (("contour", plot.contour), ("surface", plot.surface)):
        ax = fn(r)
        f = os.path.join(outdir, f"cnn_plane_{name}.png")
        ax.figure.savefig(f, dpi=110, bbox_inches="tight")
        files[name] = (f, os.path.getsize(f))
    return dict(
        n=n,
        took=took,
        evals=r.n_loss_evals,
        same=same,
        files=files,
        path=path,
        lmin=float(np.min(r.losses)),
        lmax=float(np.max(r.losses)),
        centre=float(r.losses[n // 2, n // 2]),
        acc=float(r.metric("accuracy")[n // 2, n // 2]),
    )


def eps_sweep(quick):
    import probecore as pc

    rows = []
    n_rays = 30 if quick else 100
    for dtype in ("float64", "float32"):
        obj = make_objective(dtype)
        for eps in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0):
            r = pc.rays(obj, n_rays=n_rays, eps=eps, rng=0, progress=False)
            rows.append(
                (
                    dtype,
                    eps,
                    r.mean,
                    r.sem,
                    r.std,
                    r.negative_fraction,
                    r.rounding_error,
                    pc.default_ray_eps(obj.dtype),
                )
            )
        if dtype == "float64":
            t = pc.hutchpp(obj, n_matvecs=60, rng=0)
            trace = (t.estimate / obj.dim, t.std_error / obj.dim)
    return rows, trace, n_rays


def main():
    if "OMP_WAIT_POLICY" not in os.environ:
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None, help="directory for the stored plane and PNGs")
    ap.add_argument("--parts", default="throughput,plane,eps", help="comma-separated subset to run")
    args = ap.parse_args()
    outdir = args.out or tempfile.mkdtemp(prefix="probecore-landscape-")
    os.makedirs(outdir, exist_ok=True)
    import torch

    import probecore as pc

    rows = 4 if args.quick else 6
    print("## Landscape (benchmarks/landscape.py)\n")
    print(
        f"Measured {datetime.date.today().isoformat()}, {os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads in the main process, load average "
        f"{os.getloadavg()[0]:.1f} at start; Python {platform.python_version()}, torch "
        f"{torch.__version__}, probecore {pc.__version__}. Command: "
        f"`python benchmarks/landscape.py{' --quick' if args.quick else ''}`.\n"
    )
    parts = set(args.parts.split(","))
    if "throughput" in parts:
        report_throughput(rows, args.quick)
    if "plane" in parts:
        report_plane(outdir, args.quick)
    if "eps" in parts:
        report_eps(args.quick)


def report_throughput(rows, quick):
    tp, ratios, n, agree, pool_eq, dask_eq, rounds = throughput(rows, quick)
    refs = list(ratios)
    print(
        f"### Throughput: digits CNN, {n} points ({rows} rows of the 51×51 grid), median "
        f"of {rounds} interleaved rounds\n"
    )
    print(
        "Ratios are medians over rounds of the ratio of two routes' throughputs in the same "
        "round, with the range of the middle 95% (binomial order statistics).\n"
    )
    head = " | ".join(f"/ {r}" for r in refs)
    print(f"| route | points/s | {head} |")
    print("|---|---|" + "---|" * len(refs))
    for name, v in tp.items():
        cells = " | ".join("{:.2f} ({:.2f}–{:.2f})".format(*ratios[r][name]) for r in refs)
        print(f"| {name} | {v:.1f} | {cells} |")
    print(
        f"\nLargest relative difference, plain loop against probecore: {agree:.1e}; "
        f"2 processes against serial: {pool_eq:.1e}; Dask against serial: "
        f"{'not run' if dask_eq is None else f'{dask_eq:.1e}'} (absolute).\n"
    )


def report_plane(outdir, quick):
    fp = full_plane(outdir, quick)
    print(f"### Full plane: {fp['n']}×{fp['n']} = {fp['n'] ** 2} points\n")
    print(
        f"{fp['took']:.0f} s serial ({fp['n'] ** 2 / fp['took']:.1f} points/s, losses and "
        f"accuracy), {fp['evals']} loss evaluations, stored in `{fp['path']}`; loss from "
        f"{fp['lmin']:.4g} to {fp['lmax']:.4g}, {fp['centre']:.4g} at the centre (accuracy "
        f"{fp['acc']:.3f}); read back equal: {fp['same']}; PNGs: "
        + ", ".join(f"{k} {s / 1024:.0f} KiB" for k, (_, s) in fp["files"].items())
        + ".\n"
    )


def report_eps(quick):
    sweep, trace, n_rays = eps_sweep(quick)
    print(f"### Ray curvature against ε (digits CNN, {n_rays} rays, seed 0)\n")
    print(f"Hutch++ (60 HVPs, float64): tr(H)/dim = {trace[0]:.4g} ± {trace[1]:.2g}.\n")
    print("| dtype | ε | mean κ | SE | std | negative fraction | rounding error of one κ |")
    print("|---|---|---|---|---|---|---|")
    for dtype, eps, mean, sem, std, neg, rnd, default in sweep:
        star = " (≈ default)" if abs(np.log10(eps / default)) < 0.5 else ""
        print(
            f"| {dtype} | {eps:g}{star} | {mean:.4g} | {sem:.2g} | {std:.3g} | "
            f"{neg:.2f} | {rnd:.2g} |"
        )


if __name__ == "__main__":
    main()
