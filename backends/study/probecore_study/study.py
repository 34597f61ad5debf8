"""``probecore study``: the seed paper's hypotheses tested on scikit-learn's digits.

Four stages, each a function that measures and returns its report section:

1. **spectrum** — the estimators against the exact Hessian of logistic regression (core
   only, no framework);
2. **batch** — the same MLP trained by SGD at batch 32 and 512 to the same training loss:
   λmax, trace, spectral density, ε-sharpness, accuracy;
3. **architecture** — a deep plain MLP against the same network with skip connections and
   with skip connections and LayerNorm: λmax at initialization and at the end, 2D
   filter-normalized surfaces, Monte Carlo ray curvature, effective dimension of the
   gradients, epochs to the target loss;
4. **connectivity** — pairs of small-batch models from different seeds: the straight
   path against a fitted quadratic Bezier curve, loss and test accuracy along both.

Then every hypothesis is judged (:mod:`probecore_study.verdicts`) and ``report.md`` is written
with its figures, ``results.json`` with every number in the tables, and the raw results:
probecore result files (``.npz``), the landscape runs and per-model arrays as Zarr groups.

The PyTorch side (data, models, training loop) lives in :mod:`probecore_study.kit`,
imported only when a stage that trains a network runs: the spectrum stage needs no torch.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from probecore_study import verdicts as V

STAGES = ("spectrum", "batch", "architecture", "connectivity")
KINDS = ("plain", "residual", "residual-norm")


@dataclass(frozen=True)
class Settings:
    """Everything that defines a study run (recorded in ``results.json``)."""

    seeds_batch: tuple[int, ...] = (0, 1, 2, 3, 4)
    seeds_arch: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_pairs: int = 6  # pairs of small-batch MLPs; plus one pair per deep network
    # batch stage: MLP 64-64-10, plain SGD, the same learning rate for both batch sizes
    hidden: int = 64
    batch_sizes: tuple[int, int] = (32, 512)
    batch_lr: float = 0.5
    batch_target: float = 0.02
    batch_max_epochs: int = 3000
    # architecture stage: stem + 4 blocks of two 64×64 layers + head, He initialization
    width: int = 64
    blocks: int = 4
    arch_lr: float = 0.02
    arch_batch: int = 64
    arch_target: float = 0.02
    arch_max_epochs: int = 150
    grad_window: int = 200
    plane_points: int = 25
    n_rays: int = 200
    # measurements
    trace_matvecs: int = 99
    density_probes: int = 8
    density_steps: int = 60
    sharpness_eps: float = 1e-3
    sharpness_maxiter: int = 1000
    bezier_epochs: int = 30
    path_points: int = 31
    # spectrum stage
    k: int = 5
    l2: float = 1e-3


FULL = Settings()
QUICK = Settings(
    seeds_batch=(0, 1),
    seeds_arch=(0, 1),
    n_pairs=1,
    grad_window=60,
    plane_points=9,
    n_rays=30,
    trace_matvecs=30,
    density_probes=3,
    density_steps=30,
    sharpness_maxiter=20,
    bezier_epochs=5,
    path_points=11,
    k=3,
)


class _Progress:
    """One line per finished step: ``[ 3/26]   12.4 s  text``."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def step(self, text: str) -> None:
        self.done += 1
        if not self.quiet:
            width = len(str(self.total))
            print(
                f"[{self.done:>{width}}/{self.total}] {self.elapsed():6.1f} s  {text}", flush=True
            )


def _plt() -> Any:
    import matplotlib.pyplot as plt

    return plt


def _kit() -> Any:
    # torch's OpenMP threads spin while numpy works between torch calls; on a small or
    # shared machine that made the landscape probes 10× slower. Set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import probecore_torch  # noqa: F401  (the kit needs the backend, not just torch)

        from probecore_study import kit
    except ImportError as exc:
        raise ImportError(
            "the batch, architecture and connectivity stages train PyTorch models and need "
            "the PyTorch backend: python3 -m pip install ./backends/torch torch==2.13.0 "
            f"(or run --stages spectrum only); import failed with: {exc}"
        ) from exc
    return kit


def _g(x: float) -> str:
    return f"{x:.4g}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


class _Raw:
    """Per-model arrays and scalars in one Zarr group (``raw/study.zarr``)."""

    def __init__(self, path: str) -> None:
        import zarr

        self.group = zarr.open_group(path, mode="w")

    def put(self, name: str, arrays: dict[str, Any], scalars: dict[str, Any]) -> None:
        sub = self.group.require_group(name)
        for key, value in arrays.items():
            arr = np.asarray(value)
            sub.create_array(key, shape=arr.shape, dtype=arr.dtype, overwrite=True)[...] = arr
        sub.attrs.update(json.loads(json.dumps(scalars, default=float)))


@dataclass
class _Context:
    out: str
    settings: Settings
    seed: int
    progress: _Progress
    raw: _Raw
    results: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    data: Any = None

    def path(self, *parts: str) -> str:
        p = os.path.join(self.out, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p


def _save_figure(ctx: _Context, fig: Any, name: str) -> str:
    fig.tight_layout()
    fig.savefig(os.path.join(ctx.out, name), dpi=110)
    _plt().close(fig)
    return name


# --------------------------------------------------------------------------- stage 1


def _spectrum_stage(ctx: _Context) -> list[str]:
    from scipy.stats import wasserstein_distance

    import probecore as pc
    from probecore.analytic import digits_logistic_regression

    S, seed = ctx.settings, ctx.seed
    train = digits_logistic_regression(l2=S.l2, split="train", seed=0)
    test = digits_logistic_regression(l2=S.l2, split="test", seed=0)
    x = train.minimize()
    acc_train, acc_test = train.metrics(x)["accuracy"], test.metrics(x)["accuracy"]
    H = train.hessian(x)
    exact = np.linalg.eigvalsh(H)
    op = pc.HessianOperator(train, x)
    rows, res = [], {}
    for method in ("lanczos", "eigsh"):
        r = pc.lanczos(op, k=S.k, method=method, rng=seed)
        err = np.max(np.abs(r.eigenvalues - exact[::-1][: S.k]) / abs(exact[-1]))
        rows.append(
            [f"`lanczos(method={method!r})`", f"{r.eigenvalues[0]:.8g}", f"{err:.2e}", r.n_matvecs]
        )
        res[f"eig_{method}"] = r
    p = pc.power_iteration(op, rng=seed, maxiter=20000, raise_on_failure=False)
    rows.append(
        [
            "`power_iteration`",
            f"{p.eigenvalue:.8g}",
            f"{abs(p.eigenvalue - exact[-1]) / exact[-1]:.2e}",
            p.n_matvecs,
        ]
    )
    res["power"] = p
    true_trace = float(np.trace(H))
    tr_rows = []
    for name, fn in (
        ("hutchinson", lambda: pc.hutchinson(op, n_probes=S.trace_matvecs, rng=seed)),
        ("hutch++", lambda: pc.hutchpp(op, n_matvecs=S.trace_matvecs, rng=seed)),
    ):
        r = fn()
        z = (r.estimate - true_trace) / r.std_error if r.std_error > 0 else 0.0
        tr_rows.append(
            [
                f"`{name}`",
                f"{r.estimate:.6g} ± {r.std_error:.2g}",
                f"{abs(r.estimate - true_trace) / true_trace:.2e}",
                f"{z:+.2f}",
                r.n_matvecs,
            ]
        )
        res[f"trace_{name}"] = r
    dens = pc.spectral_density(op, rng=seed)
    res["density"] = dens
    nodes, weights = dens.pooled()
    w1 = wasserstein_distance(nodes, exact, u_weights=weights)
    spread = exact[-1] - exact[0]
    m1, se1 = dens.moment(1)
    m2, se2 = dens.moment(2)
    for name, r in res.items():  # spectrum results keep their names (no model prefix)
        pc.save(
            r,
            ctx.path("raw", "spectrum", name),
            metadata={
                "objective": "digits logistic regression",
                "l2": S.l2,
                "seed": seed,
                "n_train": train.n_examples,
                "dim": train.dim,
            },
        )
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(exact, bins=120, density=True, alpha=0.4, label="exact eigenvalues")
    ax.plot(dens.grid, dens.density, lw=1.2, label="SLQ estimate")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 3 * float(dens.density.max()))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.legend()
    figure = _save_figure(ctx, fig, "density.png")
    ctx.results["spectrum"] = {
        "lambda_exact": exact[::-1][: S.k].tolist(),
        "lambda_lanczos": res["eig_lanczos"].eigenvalues.tolist(),
        "trace_exact": true_trace,
        "trace_hutchpp": res["trace_hutch++"].estimate,
        "density_w1_percent": 100 * w1 / spread,
        "train_accuracy": acc_train,
        "test_accuracy": acc_test,
    }
    ctx.progress.step(
        f"spectrum: λmax {exact[-1]:.6g} (exact), Lanczos error "
        f"{float(rows[0][2]):.1e}, SLQ distance {100 * w1 / spread:.3f}%"
    )
    return [
        "## 1. The estimators against an exact Hessian",
        "",
        f"Multinomial logistic regression (L2 = {S.l2}) on digits: {train.n_examples} "
        f"training and {test.n_examples} test images, {train.dim} parameters, trained to its "
        f"minimum with L-BFGS (train accuracy {acc_train:.3f}, test accuracy {acc_test:.3f}). "
        "Its Hessian is known in closed form, so every estimator the study uses below is "
        "checked here against the exact answer first.",
        "",
        f"Top {S.k} eigenvalues, exact: {', '.join(f'{v:.6g}' for v in exact[::-1][: S.k])}.",
        "",
        *_table(["method", "λmax", "max error / λmax (top k)", "HVPs"], rows),
        "Power iteration finds only λmax; its error is for λmax alone.",
        "",
        f"Trace, exact {true_trace:.6g}; budget {S.trace_matvecs} HVPs each:",
        "",
        *_table(
            [
                "estimator",
                "estimate ± standard error",
                "relative error",
                "(estimate − truth)/SE",
                "HVPs",
            ],
            tr_rows,
        ),
        f"Spectral density (stochastic Lanczos quadrature): {dens.n_probes} probes × "
        f"{dens.nodes.shape[1]} Lanczos steps = {dens.n_matvecs} HVPs.",
        "",
        *_table(
            ["quantity", "SLQ", "exact"],
            [
                ["tr(H)/d", f"{m1:.6g} ± {se1:.2g}", f"{true_trace / train.dim:.6g}"],
                ["tr(H²)/d", f"{m2:.6g} ± {se2:.2g}", f"{np.sum(exact**2) / train.dim:.6g}"],
                [
                    "1-Wasserstein distance to the exact eigenvalue distribution",
                    f"{w1:.3g} ({100 * w1 / spread:.3f}% of the spectral range)",
                    "0",
                ],
            ],
        ),
        f"![spectral density]({figure})",
        "",
    ]


# --------------------------------------------------------------------------- training


def _data(ctx: _Context) -> Any:
    if ctx.data is None:
        ctx.data = _kit().digits(seed=0)  # the split is fixed; --seed moves the training
    return ctx.data


def _small_mlp(ctx: _Context, seed: int, batch: int) -> dict:
    """The batch stage's MLP trained at ``batch`` from ``seed`` (trained once, cached)."""
    key = ("mlp", seed, batch)
    if key not in ctx.cache:
        kit, S = _kit(), ctx.settings
        data = _data(ctx)
        t0 = time.perf_counter()
        run = kit.train_sgd(
            kit.mlp(hidden=S.hidden, seed=seed),
            data,
            lr=S.batch_lr,
            batch_size=batch,
            target_loss=S.batch_target,
            max_epochs=S.batch_max_epochs,
            seed=seed,
        )
        ctx.timings[f"train mlp seed {seed} batch {batch}"] = time.perf_counter() - t0
        train, test = kit.objectives(run.model, data)
        ctx.cache[key] = {"run": run, "train": train, "test": test}
    return ctx.cache[key]


def _save_all(ctx: _Context, stage: str, name: str, results: dict, metadata: dict) -> None:
    """Every probecore result of one model as ``raw/<stage>/<name>_<label>.npz``."""
    import probecore as pc

    for label, r in results.items():
        pc.save(r, ctx.path("raw", stage, f"{name}_{label}"), metadata=metadata)


def _trained(run: Any, obj: Any, test: Any) -> dict:
    """What every trained model records: size, training outcome, losses and accuracies."""
    x = obj.x0
    return {
        "dim": obj.dim,
        "reached": run.reached,
        "diverged": run.diverged,
        "epochs": run.epochs,
        "steps": run.steps,
        "train_loss": obj.loss(x),
        "train_accuracy": obj.metrics(x)["accuracy"],
        "test_accuracy": test.metrics(x)["accuracy"],
    }


def _stored(path: str, probe: Any) -> Any:
    """``probe(store=path)``: resumes a run left in ``path``, replaces one of another run.

    The study owns its output folder: a store from a run with other settings or other
    trained weights (a changed torch, say) is stale, and recomputing it is the only
    right answer.
    """
    try:
        return probe(path)
    except ValueError as exc:
        if "holds a different run" not in str(exc):
            raise
        import shutil

        shutil.rmtree(path)
        return probe(path)


def _spikes(losses: np.ndarray) -> int:
    """Epochs whose end-of-epoch training loss exceeds the previous epoch's by over 50%."""
    lo = np.asarray(losses)
    return int(np.sum(lo[1:] > 1.5 * lo[:-1]))


# --------------------------------------------------------------------------- stage 2


def _batch_stage(ctx: _Context) -> list[str]:
    import probecore as pc

    S = ctx.settings
    models = []
    for seed in S.seeds_batch:
        for batch in S.batch_sizes:
            m = _small_mlp(ctx, seed, batch)
            run, obj, test = m["run"], m["train"], m["test"]
            t0 = time.perf_counter()
            lam = pc.lanczos(obj, k=1, rng=seed)
            tr = pc.hutchpp(obj, n_matvecs=S.trace_matvecs, rng=seed)
            dens = pc.spectral_density(
                obj, n_probes=S.density_probes, n_steps=S.density_steps, rng=seed
            )
            sharp = pc.epsilon_sharpness(obj, eps=S.sharpness_eps, maxiter=S.sharpness_maxiter)
            ctx.timings[f"measure mlp seed {seed} batch {batch}"] = time.perf_counter() - t0
            name = f"seed{seed}_batch{batch}"
            _save_all(
                ctx,
                "batch",
                name,
                {"lambda": lam, "trace": tr, "density": dens, "sharpness": sharp},
                {"seed": seed, "batch_size": batch},
            )
            rec = {
                "seed": seed,
                "batch": batch,
                **_trained(run, obj, test),
                "lambda_max": float(lam.eigenvalues[0]),
                "lambda_hvps": lam.n_matvecs,
                "lambda_converged": bool(lam.converged),
                "trace": tr.estimate,
                "trace_se": tr.std_error,
                "trace_hvps": tr.n_matvecs,
                "sharpness_percent": sharp.percent,
                "sharpness_converged": bool(sharp.converged),
                "sharpness_evals": sharp.n_loss_evals,
                "density_hvps": dens.n_matvecs,
            }
            models.append(rec)
            ctx.raw.put(
                f"batch/{name}",
                {
                    "epoch_losses": run.epoch_losses,
                    "density_grid": dens.grid,
                    "density": dens.density,
                },
                rec,
            )
            ctx.cache[("density", seed, batch)] = dens
            ctx.progress.step(
                f"batch {batch:>3}, seed {seed}: {run.epochs:.0f} epochs to loss "
                f"{rec['train_loss']:.4f}, λmax {rec['lambda_max']:.3g}, test accuracy "
                f"{rec['test_accuracy']:.3f}"
            )
    ctx.results["batch"] = models
    small, large = S.batch_sizes
    rows = [
        [
            r["seed"],
            r["batch"],
            f"{r['epochs']:.1f}" + ("" if r["reached"] else " (not reached)"),
            f"{r['train_loss']:.4f}",
            f"{r['train_accuracy']:.3f}",
            f"{r['test_accuracy']:.3f}",
            _g(r["lambda_max"]),
            f"{r['trace']:.4g} ± {r['trace_se']:.2g}",
            f"{r['sharpness_percent']:.4g}" + ("" if r["sharpness_converged"] else "*"),
        ]
        for r in models
    ]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    s0 = S.seeds_batch[0]
    for batch in S.batch_sizes:
        d = ctx.cache[("density", s0, batch)]
        axes[0].plot(d.grid, d.density, label=f"batch {batch}")
    axes[0].set_yscale("log")
    top = max(float(ctx.cache[("density", s0, b)].density.max()) for b in S.batch_sizes)
    axes[0].set_ylim(1e-5 * top, 3 * top)
    axes[0].set_xlabel("Hessian eigenvalue")
    axes[0].set_ylabel("density (SLQ)")
    axes[0].set_title(f"Hessian spectral density, seed {s0}", fontsize=10)
    axes[0].legend()
    for batch, marker in zip(S.batch_sizes, "os", strict=True):
        pts = [r for r in models if r["batch"] == batch]
        axes[1].scatter(
            [r["lambda_max"] for r in pts],
            [100 * (1 - r["test_accuracy"]) for r in pts],
            marker=marker,
            label=f"batch {batch}",
        )
    axes[1].set_xlabel("λmax at the end of training")
    axes[1].set_ylabel("test error (%)")
    axes[1].set_title("sharpness against test error", fontsize=10)
    axes[1].legend()
    figure = _save_figure(ctx, fig, "batch.png")
    return [
        f"## 2. Small batch ({small}) against large batch ({large})",
        "",
        f"The same MLP (64-{S.hidden}-10, ReLU, {models[0]['dim']} parameters, PyTorch's "
        f"default initialization) trained from the same initialization by plain SGD at "
        f"learning rate {S.batch_lr} with batch {small} and batch {large}, each until the "
        f"loss on the whole training split first fell below {S.batch_target} (checked after "
        f"every step), for seeds {', '.join(map(str, S.seeds_batch))}. Measured on the "
        f"float64 training loss: λmax (Lanczos), trace (Hutch++, {S.trace_matvecs} HVPs, ± "
        f"standard error), spectral density (SLQ, {S.density_probes} probes × "
        f"{S.density_steps} steps) and ε-sharpness (Keskar et al.'s box, ε = "
        f"{S.sharpness_eps}, 100·φ; * = L-BFGS-B stopped at {S.sharpness_maxiter} "
        "iterations before converging).",
        "",
        *_table(
            [
                "seed",
                "batch",
                "epochs",
                "train loss",
                "train acc.",
                "test acc.",
                "λmax",
                "trace ± s.e.",
                "ε-sharpness (%)",
            ],
            rows,
        ),
        f"![batch size]({figure})",
        "",
    ]


# --------------------------------------------------------------------------- stage 3


def _nonconvex_share(plane: Any) -> float:
    """Share of the surface's interior grid points with negative curvature.

    At each interior point, the 2×2 finite-difference Hessian of the plotted surface; a
    point counts when its smaller eigenvalue is below −1e-9 times the loss scale (rounding
    is not curvature).
    """
    L = np.asarray(plane.losses, dtype=np.float64)
    a, b = np.asarray(plane.alphas), np.asarray(plane.betas)
    ha, hb = a[1] - a[0], b[1] - b[0]
    laa = (L[1:-1, 2:] - 2 * L[1:-1, 1:-1] + L[1:-1, :-2]) / ha**2
    lbb = (L[2:, 1:-1] - 2 * L[1:-1, 1:-1] + L[:-2, 1:-1]) / hb**2
    lab = (L[2:, 2:] - L[2:, :-2] - L[:-2, 2:] + L[:-2, :-2]) / (4 * ha * hb)
    lam_min = (laa + lbb) / 2 - np.sqrt(((laa - lbb) / 2) ** 2 + lab**2)
    tol = 1e-9 * max(1.0, float(np.nanmax(np.abs(L))))
    return float(np.mean(lam_min < -tol))


def _arch_stage(ctx: _Context) -> list[str]:
    import probecore as pc

    kit, S = _kit(), ctx.settings
    data = _data(ctx)
    models = []
    for seed in S.seeds_arch:
        for kind in KINDS:
            net = kit.deep_net(kind, width=S.width, blocks=S.blocks, seed=seed)
            obj0, _ = kit.objectives(net, data)
            t0 = time.perf_counter()
            lam0 = pc.lanczos(obj0, k=1, rng=seed)
            run = kit.train_sgd(
                net,
                data,
                lr=S.arch_lr,
                batch_size=S.arch_batch,
                target_loss=S.arch_target,
                max_epochs=S.arch_max_epochs,
                seed=seed,
                record_gradients=S.grad_window,
            )
            obj, test = kit.objectives(run.model, data)
            lam = pc.lanczos(obj, k=1, rng=seed)
            deff = pc.effective_dimension(run.gradients, share=0.9)
            name = f"{kind}_seed{seed}"
            dirs = pc.random_directions(obj, 2, rng=seed)
            grid = np.linspace(-1.0, 1.0, S.plane_points)
            plane = _stored(
                ctx.path("raw", "landscape", f"{name}_plane{S.plane_points}.zarr"),
                lambda store, dirs=dirs, obj=obj, grid=grid: pc.plane(
                    obj, dirs, alphas=grid, betas=grid, progress=False, store=store
                ),
            )
            rays = _stored(
                ctx.path("raw", "landscape", f"{name}_rays{S.n_rays}.zarr"),
                lambda store, obj=obj, seed=seed: pc.rays(
                    obj, n_rays=S.n_rays, rng=seed, progress=False, store=store
                ),
            )
            ctx.timings[f"{kind} seed {seed}"] = time.perf_counter() - t0
            _save_all(
                ctx,
                "architecture",
                name,
                {"lambda_init": lam0, "lambda_end": lam, "effective_dimension": deff},
                {"seed": seed, "kind": kind},
            )
            spikes = _spikes(run.epoch_losses)
            rec = {
                "seed": seed,
                "kind": kind,
                **_trained(run, obj, test),
                "lambda_init": float(lam0.eigenvalues[0]),
                "lambda_max": float(lam.eigenvalues[0]),
                "lambda_hvps": lam0.n_matvecs + lam.n_matvecs,
                "spikes": spikes,
                "spike_rate": spikes / max(1, run.epoch_losses.size - 1),
                "d_eff": deff.d_eff,
                "d_eff_fraction": deff.d_eff / obj.dim,
                "gradient_steps": deff.n_samples,
                "ray_mean": rays.mean,
                "ray_mean_ci": list(map(float, rays.mean_ci)),
                "ray_negative": rays.negative_fraction,
                "ray_negative_ci": list(map(float, rays.negative_fraction_ci)),
                "ray_eps": rays.eps,
                "surface_nonconvex": _nonconvex_share(plane),
                "plane_min": float(np.min(plane.losses)),
                "plane_max": float(np.max(plane.losses)),
            }
            models.append(rec)
            ctx.cache[("deep", kind, seed)] = {"train": obj, "test": test}
            ctx.cache[("plane", kind, seed)] = plane
            ctx.cache[("rays", kind, seed)] = rays
            ctx.cache[("deff", kind, seed)] = deff
            ctx.cache[("losses", kind, seed)] = run.epoch_losses
            ctx.raw.put(
                f"architecture/{name}",
                {
                    "epoch_losses": run.epoch_losses,
                    "explained_variance_ratio": deff.explained_variance_ratio,
                },
                rec,
            )
            reached = f"{run.epochs:.1f} epochs" if run.reached else "target not reached"
            ctx.progress.step(
                f"{kind:<13} seed {seed}: {reached}, λmax {rec['lambda_init']:.3g} → "
                f"{rec['lambda_max']:.3g}, d_eff {deff.d_eff}, test accuracy "
                f"{rec['test_accuracy']:.3f}"
            )
    ctx.results["architecture"] = models
    figs = _arch_figures(ctx, models)
    rows = [
        [
            r["kind"],
            r["seed"],
            f"{r['epochs']:.1f}" if r["reached"] else f"> {r['epochs']:.0f} (not reached)",
            r["spikes"],
            f"{r['train_loss']:.4f}",
            f"{r['test_accuracy']:.3f}",
            _g(r["lambda_init"]),
            _g(r["lambda_max"]),
            f"{r['d_eff']} ({100 * r['d_eff_fraction']:.2f}%)",
            f"{100 * r['ray_negative']:.1f} [{100 * r['ray_negative_ci'][0]:.1f}, "
            f"{100 * r['ray_negative_ci'][1]:.1f}]",
            f"{r['ray_mean']:.3g}",
            f"{100 * r['surface_nonconvex']:.1f}",
        ]
        for r in models
    ]
    dims = {r["kind"]: r["dim"] for r in models}
    return [
        "## 3. Plain against residual networks",
        "",
        f"A deep MLP for digits: a stem, {S.blocks} blocks of two {S.width}×{S.width} layers and "
        f"a head ({2 * S.blocks + 2} linear layers). *plain*: `h ← relu(f(h))`; *residual*: "
        "`h ← relu(h + f(h))`; *residual-norm*: `h ← h + f(LayerNorm(h))`, with "
        "`f(h) = W₂ relu(W₁ h)`. Parameters: "
        + ", ".join(f"{k} {v}" for k, v in dims.items())
        + ". All three start from He initialization (the plain and residual networks from the "
        f"same weights) and are trained by SGD (learning rate {S.arch_lr}, batch "
        f"{S.arch_batch}) until the full training loss falls below {S.arch_target} (at most "
        f"{S.arch_max_epochs} epochs), seeds {', '.join(map(str, S.seeds_arch))}. *Spikes*: "
        "epochs whose training loss ended over 50% above the previous epoch's. d_eff: "
        f"principal components holding 90% of the variance of the first {S.grad_window} "
        "mini-batch gradients. Rays: Monte Carlo curvature along "
        f"{S.n_rays} random unit directions (share of negative curvature, 95% interval, and "
        "mean curvature). Non-convex surface: share of the 2D surface's interior grid points "
        "where its finite-difference Hessian has a negative eigenvalue.",
        "",
        *_table(
            [
                "network",
                "seed",
                "epochs to target",
                "spikes",
                "train loss",
                "test acc.",
                "λmax at init",
                "λmax at end",
                "d_eff (of d)",
                "negative rays (%)",
                "mean ray curvature",
                "non-convex surface (%)",
            ],
            rows,
        ),
        f"![surfaces]({figs['surfaces']})",
        "",
        f"![training]({figs['training']})",
        "",
    ]


def _arch_figures(ctx: _Context, models: list[dict]) -> dict:
    plt = _plt()
    S = ctx.settings
    s0 = S.seeds_arch[0]
    planes = [ctx.cache[("plane", k, s0)] for k in KINDS]
    logs = [np.log10(np.maximum(p.losses, 1e-12)) for p in planes]
    levels = np.linspace(min(float(v.min()) for v in logs), max(float(v.max()) for v in logs), 21)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, kind, p, lv in zip(axes, KINDS, planes, logs, strict=True):
        cs = ax.contourf(p.alphas, p.betas, lv, levels=levels, cmap="viridis")
        ax.contour(p.alphas, p.betas, lv, levels=levels, colors="k", linewidths=0.4)
        ax.plot([0], [0], "r+", ms=10)
        ax.set_title(f"{kind}, seed {s0}", fontsize=10)
        ax.set_xlabel("α (filter-normalized)")
        ax.set_aspect("equal")
    axes[0].set_ylabel("β (filter-normalized)")
    fig.colorbar(cs, ax=list(axes), label="log10 training loss", shrink=0.9)
    surfaces = "surfaces.png"
    fig.savefig(os.path.join(ctx.out, surfaces), dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    colors = dict(zip(KINDS, ("tab:red", "tab:blue", "tab:green"), strict=True))
    for r in models:
        losses = ctx.cache[("losses", r["kind"], r["seed"])]
        axes[0].semilogy(
            np.arange(losses.size),
            losses,
            color=colors[r["kind"]],
            alpha=0.7,
            label=r["kind"] if r["seed"] == s0 else None,
        )
        rays = ctx.cache[("rays", r["kind"], r["seed"])]
        if r["seed"] == s0:
            axes[1].hist(
                rays.kappa[np.isfinite(rays.kappa)],
                bins=30,
                alpha=0.5,
                color=colors[r["kind"]],
                label=r["kind"],
            )
        d = ctx.cache[("deff", r["kind"], r["seed"])]
        axes[2].plot(
            np.arange(1, d.cumulative.size + 1),
            d.cumulative,
            color=colors[r["kind"]],
            alpha=0.7,
            label=r["kind"] if r["seed"] == s0 else None,
        )
    axes[0].axhline(S.arch_target, color="k", ls="--", lw=0.8)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training loss")
    axes[0].legend(fontsize=8)
    axes[1].axvline(0, color="k", ls="--", lw=0.8)
    axes[1].set_xlabel(f"ray curvature κ (seed {s0})")
    axes[1].set_ylabel("rays")
    axes[1].legend(fontsize=8)
    axes[2].axhline(0.9, color="k", ls="--", lw=0.8)
    axes[2].set_xlabel("principal components of the gradients")
    axes[2].set_ylabel("cumulative explained variance")
    axes[2].legend(fontsize=8)
    return {"surfaces": surfaces, "training": _save_figure(ctx, fig, "training.png")}


# --------------------------------------------------------------------------- stage 4


def _pairs(S: Settings, deep: bool) -> list[tuple[str, int, int]]:
    """(network, seed, seed): small-batch MLP pairs, then (``deep``) one of each deep network."""
    seeds = S.seeds_batch
    pairs = [("mlp", a, b) for i, a in enumerate(seeds) for b in seeds[i + 1 :]][: S.n_pairs]
    if deep:
        pairs += [(kind, S.seeds_arch[0], S.seeds_arch[1]) for kind in KINDS]
    return pairs


def _ends(ctx: _Context, network: str, seed: int) -> dict:
    if network == "mlp":
        return _small_mlp(ctx, seed, ctx.settings.batch_sizes[0])
    return ctx.cache[("deep", network, seed)]


def _connectivity_stage(ctx: _Context) -> list[str]:
    import probecore as pc

    S = ctx.settings
    small = S.batch_sizes[0]
    out, shown = [], {}
    for network, a, b in _pairs(S, deep="architecture" in ctx.results):
        ma, mb = _ends(ctx, network, a), _ends(ctx, network, b)
        train, test = ma["train"], ma["test"]
        xa, xb = train.x0, mb["train"].x0
        t0 = time.perf_counter()
        line_train = pc.evaluate_path(train, xa, xb, n_points=S.path_points, metrics=False)
        line_test = pc.evaluate_path(test, xa, xb, n_points=S.path_points)
        fit = pc.fit_curve(
            train, xa, xb, kind="bezier", epochs=S.bezier_epochs, rng=a, progress=False
        )
        curve_train = pc.evaluate_path(train, fit, n_points=S.path_points, metrics=False)
        curve_test = pc.evaluate_path(test, fit, n_points=S.path_points)
        ctx.timings[f"connect {network} {a}-{b}"] = time.perf_counter() - t0
        name = f"{network}_seeds{a}-{b}"
        _save_all(
            ctx,
            "connectivity",
            name,
            {
                "line_train": line_train,
                "line_test": line_test,
                "bezier_train": curve_train,
                "bezier_test": curve_test,
                "bezier_fit": fit,
            },
            {"network": network, "seeds": [a, b]},
        )
        rec = {
            "network": network,
            "seeds": [a, b],
            "dim": train.dim,
            "linear_barrier": line_train.barrier,
            "bezier_barrier": curve_train.barrier,
            # the straight path's ends are the two models
            "test_accuracy_ends": [
                float(line_test.metric("accuracy")[0]),
                float(line_test.metric("accuracy")[-1]),
            ],
            "linear_min_test_accuracy": float(np.min(line_test.metric("accuracy"))),
            "bezier_min_test_accuracy": float(np.min(curve_test.metric("accuracy"))),
            "linear_test_barrier": line_test.barrier,
            "bezier_test_barrier": curve_test.barrier,
        }
        out.append(rec)
        ctx.raw.put(
            f"connectivity/{name}",
            {
                "ts": line_train.ts,
                "linear_train_loss": line_train.losses,
                "linear_test_accuracy": line_test.metric("accuracy"),
                "bezier_train_loss": curve_train.losses,
                "bezier_test_accuracy": curve_test.metric("accuracy"),
            },
            rec,
        )
        shown.setdefault(network, (a, b, line_train, curve_train, line_test, curve_test))
        ctx.progress.step(
            f"{network} seeds {a} and {b}: barrier straight {line_train.barrier:.3g}, Bezier "
            f"{curve_train.barrier:.3g}; lowest test accuracy {rec['linear_min_test_accuracy']:.3f}"
            f" / {rec['bezier_min_test_accuracy']:.3f}"
        )
    ctx.results["connectivity"] = out
    plt = _plt()
    fig, axes = plt.subplots(2, len(shown), figsize=(4.2 * len(shown), 6.4), squeeze=False)
    for j, (network, (a, b, lt, ct, le, ce)) in enumerate(shown.items()):
        axes[0, j].plot(lt.ts, lt.losses, label=f"straight ({lt.barrier:.3g})")
        axes[0, j].plot(ct.ts, ct.losses, label=f"Bezier ({ct.barrier:.3g})")
        axes[0, j].set_title(f"{network}, seeds {a} and {b}", fontsize=10)
        axes[0, j].set_ylabel("training loss")
        axes[0, j].legend(fontsize=8, title="barrier", title_fontsize=8)
        axes[1, j].plot(le.ts, le.metric("accuracy"), label="straight")
        axes[1, j].plot(ce.ts, ce.metric("accuracy"), label="Bezier")
        axes[1, j].set_xlabel("t")
        axes[1, j].set_ylabel("test accuracy")
        axes[1, j].legend(fontsize=8)
    figure = _save_figure(ctx, fig, "paths.png")
    rows = [
        [
            r["network"],
            f"{r['seeds'][0]}–{r['seeds'][1]}",
            r["dim"],
            f"{r['linear_barrier']:.4g}",
            f"{r['bezier_barrier']:.4g}",
            f"{r['test_accuracy_ends'][0]:.3f} / {r['test_accuracy_ends'][1]:.3f}",
            f"{r['linear_min_test_accuracy']:.3f}",
            f"{r['bezier_min_test_accuracy']:.3f}",
        ]
        for r in out
    ]
    deep = any(r["network"] != "mlp" for r in out)
    return [
        "## 4. Mode connectivity between seeds",
        "",
        f"Pairs of minima from different seeds: the batch-{small} MLPs of section 2"
        + (", and one pair of each deep network of section 3" if deep else "")
        + ". The straight segment between them against a quadratic Bezier curve fitted to "
        f"keep the training loss low along it (Garipov et al. 2018; Adam, {S.bezier_epochs} "
        "epochs, stratified t). Barrier: highest training loss along the path minus the "
        f"higher endpoint's, over {S.path_points} points (0 when the path never rises above "
        "its ends); test accuracy along both paths.",
        "",
        *_table(
            [
                "network",
                "seeds",
                "parameters",
                "straight barrier",
                "Bezier barrier",
                "test acc. at the ends",
                "lowest test acc., straight",
                "lowest test acc., Bezier",
            ],
            rows,
        ),
        f"![paths]({figure})",
        "",
    ]


# --------------------------------------------------------------------------- hypotheses


@dataclass(frozen=True)
class _Claim:
    claim: str
    measured: str
    n: str
    verdict: str
    why: str
    judged: bool = True  # False: a note shown in the table, not part of the verdict


def _note(text: str, measured: str, n: str, why: str) -> _Claim:
    return _Claim(text, measured, n, "—", why, judged=False)


def _above_100(ctx: _Context) -> str:
    """Which networks start with λmax > 100 (for the limits section)."""
    A = ctx.results.get("architecture", [])
    counts = {k: sum(r["kind"] == k and r["lambda_init"] > 100 for r in A) for k in KINDS}
    per = len(ctx.settings.seeds_arch)
    return "networks above 100: " + ", ".join(f"{k} {n} of {per}" for k, n in counts.items()) + "."


def _trend(claim: str, x: list, y: list) -> _Claim:
    """A claim that ``y`` grows with ``x`` across models (Spearman)."""
    v, why, rho, _ = V.judge_correlation(x, y)
    return _Claim(claim, f"Spearman ρ = {rho:.2f}", str(len(x)), v, why)


def _censored(rows: list[dict]) -> _Claim | None:
    late = [r for r in rows if not r["reached"]]
    if not late:
        return None
    return _note(
        "networks that did not reach the target loss count with their last epoch",
        f"{len(late)} network(s)",
        str(len(rows)),
        "their epochs are a lower bound (censored)",
    )


def _judge(ctx: _Context) -> list[tuple[str, str, list[_Claim]]]:
    """Every hypothesis as (title, source in the paper, claims)."""
    S, R = ctx.settings, ctx.results
    out = []
    not_run = lambda c: _Claim(c, "—", "—", V.NOT_RUN, "its stage was not run")  # noqa: E731

    # Large batches give sharper minima and worse test accuracy (§2.3.2).
    small, large = S.batch_sizes
    claims = []
    if "batch" in R:
        by = {(r["seed"], r["batch"]): r for r in R["batch"]}
        ok = [s for s in S.seeds_batch if by[s, small]["reached"] and by[s, large]["reached"]]
        if ok:
            ratio = V.interval(
                [by[s, large]["lambda_max"] / by[s, small]["lambda_max"] for s in ok], log=True
            )
            v, why = V.judge_range(ratio, 3.0, 5.0, null=1.0)
            claims.append(
                _Claim(
                    f"λmax(batch {large}) / λmax(batch {small}) is 3–5",
                    ratio.text(unit="×"),
                    str(ratio.n),
                    v,
                    why,
                )
            )
            acc = V.interval(
                [100 * (by[s, small]["test_accuracy"] - by[s, large]["test_accuracy"]) for s in ok]
            )
            v, why = V.judge_range(acc, 2.0, 4.0, null=0.0)
            claims.append(
                _Claim(
                    f"test accuracy is 2–4 points lower with batch {large}",
                    acc.text(unit=" points"),
                    str(acc.n),
                    v,
                    why,
                )
            )
            for key, label in (("trace", "trace"), ("sharpness_percent", "ε-sharpness")):
                use = ok
                if key == "sharpness_percent":  # only maximizations that converged
                    conv = lambda r: r["sharpness_converged"]  # noqa: E731
                    use = [s for s in ok if conv(by[s, small]) and conv(by[s, large])]
                if not use:
                    continue
                r = V.interval([by[s, large][key] / by[s, small][key] for s in use], log=True)
                v, why = V.judge_sign(r, null=1.0)
                claims.append(
                    _note(
                        f"{label} is higher with batch {large} (another sharpness measure, "
                        "reported alongside)",
                        r.text(unit="×"),
                        str(r.n),
                        f"not part of the verdict; by the direction rule: {v} ({why})",
                    )
                )
        else:
            claims.append(
                _Claim(
                    "training reached the target loss",
                    "no seed",
                    "0",
                    V.INCONCLUSIVE,
                    "no pair of models reached the target",
                )
            )
    else:
        claims.append(not_run(f"λmax(batch {large}) / λmax(batch {small}) is 3–5"))
    out.append(
        (
            "Large batches find sharper minima that generalize worse",
            "§2.3.2: batch 512 against 32 gives 3–5× higher λmax and 2–4% worse test accuracy",
            claims,
        )
    )

    # Sharpness and generalization (Hypothesis 2).
    claims = []
    if "batch" in R:
        pts = [r for r in R["batch"] if r["reached"]]
        lam = np.array([r["lambda_max"] for r in pts])
        err = np.array([100 * (1 - r["test_accuracy"]) for r in pts])
        flat, sharp = err[lam < 20], err[lam > 50]
        if flat.size and sharp.size:
            d = V.difference(sharp, flat)
            v, why = V.judge_range(d, 3.0, 5.0, null=0.0)
            measured = d.text(unit=" points")
        else:
            v, why = (
                V.INCONCLUSIVE,
                (
                    f"no minimum had λmax {'> 50' if not sharp.size else '< 20'}: λmax ranged "
                    f"{lam.min():.3g}–{lam.max():.3g} at this scale"
                ),
            )
            measured = f"{flat.size} flat (λmax < 20), {sharp.size} sharp (λmax > 50)"
        claims.append(
            _Claim(
                "minima with λmax < 20 have 3–5 points lower test error than "
                "minima with λmax > 50 at the same training loss",
                measured,
                str(len(pts)),
                v,
                why,
            )
        )
        for key, label in (("lambda_max", "λmax"), ("sharpness_percent", "ε-sharpness")):
            claims.append(
                _trend(
                    f"higher {label} goes with higher test error (all models "
                    f"at training loss {S.batch_target})",
                    [r[key] for r in pts],
                    list(err),
                )
            )
    else:
        claims.append(not_run("minima with λmax < 20 generalize 3–5 points better"))
    out.append(
        (
            "Flat minima generalize better",
            "Hypothesis 2: final minima with λmax < 20 have 3–5% lower test error than "
            "sharp ones (λmax > 50) at the same training loss",
            claims,
        )
    )

    # Trainability (Hypothesis 1).
    claims = []
    if "architecture" in R:
        A = R["architecture"]
        hi = [r for r in A if r["lambda_init"] > 100]
        lo = [r for r in A if r["lambda_init"] <= 100]
        lam_range = (
            f"λmax at init ranged {min(r['lambda_init'] for r in A):.3g}–"
            f"{max(r['lambda_init'] for r in A):.3g}"
        )
        for key, label, unit in (
            ("epochs", "more epochs to the target loss", " epochs"),
            ("spike_rate", "more loss spikes per epoch", " spikes/epoch"),
        ):
            # Paired by seed: the networks of one seed share their initial weights.
            per_seed = {
                seed: (
                    [r[key] for r in hi if r["seed"] == seed],
                    [r[key] for r in lo if r["seed"] == seed],
                )
                for seed in S.seeds_arch
            }
            if any(len(a) and len(b) for a, b in per_seed.values()):
                d = V.paired(per_seed)
                v, why = V.judge_sign(d)
                measured = d.text(unit=unit)
            else:
                v, why, measured = V.INCONCLUSIVE, f"one group is empty: {lam_range}", "—"
            claims.append(
                _Claim(
                    f"networks with λmax > 100 at initialization need {label} (per seed: "
                    "mean over those networks − mean over the others)",
                    measured,
                    f"{len(A)} networks",
                    v,
                    why,
                )
            )
        if (note := _censored(A)) is not None:
            claims.append(note)
    else:
        claims.append(not_run("networks with λmax > 100 at initialization train worse"))
    out.append(
        (
            "Large early λmax means unstable training",
            "Hypothesis 1: networks with λmax > 100 at initialization train unstably; "
            "the architecture stage compares them with the others (same data, learning "
            "rate and batch size, so λmax at init is confounded with the architecture)",
            claims,
        )
    )

    # Skip connections (§2.4).
    claims = []
    if "architecture" in R:
        by = {(r["seed"], r["kind"]): r for r in R["architecture"]}
        seeds = S.seeds_arch
        for other in ("residual", "residual-norm"):
            r = V.interval(
                [by[s, "plain"]["lambda_max"] / by[s, other]["lambda_max"] for s in seeds], log=True
            )
            v, why = V.judge_range(r, 3.0, 5.0, null=1.0)
            claims.append(
                _Claim(
                    f"λmax at the end: plain / {other} is 3–5", r.text(unit="×"), str(r.n), v, why
                )
            )
        for key, label in (
            ("ray_negative", "share of negative ray curvature"),
            ("surface_nonconvex", "non-convex share of the 2D surface"),
        ):
            for other in ("residual", "residual-norm"):
                d = V.interval([100 * (by[s, "plain"][key] - by[s, other][key]) for s in seeds])
                v, why = V.judge_sign(d)
                claims.append(
                    _Claim(
                        f"skip connections convexify: the {label} is lower with them "
                        f"(plain − {other})",
                        d.text(unit=" points"),
                        str(d.n),
                        v,
                        why,
                    )
                )
        for other in ("residual", "residual-norm"):
            d = V.interval([by[s, "plain"]["epochs"] - by[s, other]["epochs"] for s in seeds])
            v, why = V.judge_sign(d)
            claims.append(
                _Claim(
                    f"skip connections train faster: epochs to the target, plain − {other}",
                    d.text(unit=" epochs"),
                    str(d.n),
                    v,
                    why,
                )
            )
        if (note := _censored(R["architecture"])) is not None:
            claims.append(note)
    else:
        claims.append(not_run("skip connections reduce sharpness 3–5×"))
    out.append(
        (
            "Skip connections make the landscape smoother and flatter",
            '§2.4: skip connections reduce sharpness 3–5× and "convexify" the loss surface',
            claims,
        )
    )

    # Effective dimension (§2.2.3).
    claims = []
    if "architecture" in R:
        A = R["architecture"]
        by = {(r["seed"], r["kind"]): r for r in A}
        d = V.interval([by[s, "plain"]["d_eff"] - by[s, "residual"]["d_eff"] for s in S.seeds_arch])
        v, why = V.judge_sign(d)
        claims.append(
            _Claim(
                "skip connections reduce d_eff (plain − residual)",
                d.text(unit=""),
                str(d.n),
                v,
                why,
            )
        )
        low = [r for r in A if r["d_eff_fraction"] < 0.001]
        high = [r for r in A if r["d_eff_fraction"] > 0.01]
        if low and high:
            ratio = V.difference([r["epochs"] for r in high], [r["epochs"] for r in low], log=True)
            v, why = V.judge_range(ratio, 2.0, 3.0, null=1.0)
            measured = ratio.text(unit="×")
        else:
            fr = [100 * r["d_eff_fraction"] for r in A]
            v, why = (
                V.INCONCLUSIVE,
                (
                    f"one group is empty: d_eff/d ranged {min(fr):.3g}%–{max(fr):.3g}% (d_eff can "
                    f"be at most the {S.grad_window} gradients recorded)"
                ),
            )
            measured = f"{len(low)} with d_eff < 0.1% of d, {len(high)} with > 1%"
        claims.append(
            _Claim(
                "networks with d_eff < 0.001·d converge 2–3× faster than those with d_eff > 0.01·d",
                measured,
                str(len(A)),
                v,
                why,
            )
        )
        claims.append(
            _trend(
                "lower d_eff goes with fewer epochs to the target",
                [r["d_eff"] for r in A],
                [r["epochs"] for r in A],
            )
        )
    else:
        claims.append(not_run("low effective dimension goes with faster convergence"))
    out.append(
        (
            "Low effective dimension means faster convergence",
            "§2.2.3: skip connections reduce d_eff; d_eff < 0.001·d converges 2–3× faster "
            "than d_eff > 0.01·d",
            claims,
        )
    )

    # Mode connectivity (§2.2.2).
    claims = []
    if "connectivity" in R:
        C = R["connectivity"]

        def spread(key: str) -> str:
            v = [r[key] for r in C]
            return f"{min(v):.3g}" if len(v) == 1 else f"{min(v):.3g} to {max(v):.3g}"

        cases = [(True, r["bezier_barrier"] < 0.5) for r in C]
        v, why = V.judge_implication(cases, "a fitted curve")
        claims.append(
            _Claim(
                "independently trained minima are joined by a low-loss curve "
                "(Bezier barrier < 0.5)",
                spread("bezier_barrier"),
                str(len(C)),
                v,
                why,
            )
        )
        # The paper's barrier is the optimized curve's (Garipov et al.); the straight
        # segment's is shown next to it, not judged.
        key = "bezier_barrier"
        good = [(r[key] < 0.5, min(r["test_accuracy_ends"]) > 0.90) for r in C]
        v, why = V.judge_implication(good, "a barrier < 0.5")
        claims.append(
            _Claim(
                "barrier < 0.5 → both models > 90% test accuracy", spread(key), str(len(C)), v, why
            )
        )
        bad = [(r[key] > 2.0, min(r["test_accuracy_ends"]) < 0.85) for r in C]
        v, why = V.judge_implication(bad, "a barrier > 2")
        claims.append(
            _Claim("barrier > 2 → one model < 85% test accuracy", spread(key), str(len(C)), v, why)
        )
        high = [r for r in C if r["linear_barrier"] > 2.0]
        accs = [a for r in high for a in r["test_accuracy_ends"]]
        claims.append(
            _note(
                "for comparison, the straight segment's barrier (not the paper's)",
                spread("linear_barrier"),
                str(len(C)),
                f"{len(high)} pair(s) above 2, their models at "
                f"{100 * min(accs):.1f}–{100 * max(accs):.1f}% test accuracy"
                if high
                else "no pair above 2",
            )
        )
    else:
        claims.append(not_run("minima are connected by low-loss curves"))
    out.append(
        (
            "Good minima are connected by low-loss paths",
            "§2.2.2 (after Garipov et al. 2018): the barrier along the optimized Bezier "
            "curve; barrier < 0.5 → both models generalize (> 90% test accuracy); barrier "
            "> 2 → at least one overfits (< 85%)",
            claims,
        )
    )
    return out


def _hypothesis_lines(judged: list) -> tuple[list[str], list[str], dict]:
    def counts(claims: list[_Claim]) -> str:
        return " / ".join(
            str(sum(c.judged and c.verdict == v for c in claims))
            for v in (V.SUPPORTED, V.NOT_SUPPORTED, V.INCONCLUSIVE)
        )

    summary = _table(
        ["hypothesis", "verdict", "claims supported / not supported / inconclusive"],
        [
            [title, f"**{V.combine([c.verdict for c in claims if c.judged])}**", counts(claims)]
            for title, _, claims in judged
        ],
    )
    body, verdicts = ["## 5. The hypotheses, one by one", ""], {}
    body += [
        'Rules: a claimed range ("3–5×") is **supported** when the estimate (the mean over '
        "seeds; geometric for ratios) lies in it and its 95% Student-t interval excludes no "
        "effect, **not supported** when the interval lies outside the range, "
        "**inconclusive** otherwise; a claimed direction is judged by the same interval "
        "against no effect (per seed, for networks that share their initialization); a "
        "threshold comparison by Welch's interval between the groups; a trend across models "
        "by Spearman's rank correlation at p < 0.05; an implication (A → B) by every case "
        "where A held. Fewer than two values, or two equal ones, give no error estimate "
        "and so no verdict. A hypothesis is not supported when any of its claims is not, "
        "and supported only when all are; rows marked — are notes, not claims. `n`: "
        "seeds, models or pairs measured. There is no correction for multiple comparisons: "
        "with some twenty claims at 95%, about one may come out by chance.",
        "",
    ]
    for i, (title, source, claims) in enumerate(judged, start=1):
        verdict = V.combine([c.verdict for c in claims if c.judged])
        verdicts[title] = {"verdict": verdict, "claims": [c.__dict__ for c in claims]}
        body += [f"### 5.{i} {title} — {verdict}", "", f"Claim: {source}.", ""]
        body += _table(
            ["claim", "measured", "n", "verdict", "why"],
            [
                [c.claim, c.measured, c.n, f"**{c.verdict}**" if c.judged else "—", c.why]
                for c in claims
            ],
        )
    return summary, body, verdicts


# --------------------------------------------------------------------------- driver


def run_study(
    out: str,
    *,
    quick: bool = False,
    stages: tuple[str, ...] = STAGES,
    seed: int = 0,
    quiet: bool = False,
) -> dict:
    """Run the study, write ``out/report.md`` and friends, and return the results."""
    import probecore

    S = QUICK if quick else FULL
    stages = tuple(dict.fromkeys(stages))  # in the order given, once each
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ValueError(
            f"`--stages` must name some of {', '.join(STAGES)}; got "
            f"{','.join(stages) or 'nothing'!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`--seed` must be a non-negative integer; got {seed!r}.")
    if not out:
        raise ValueError("`--out` must name a folder; got ''.")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"`--out` {out!r} exists and is not a folder.")
    if any(s != "spectrum" for s in stages):
        _kit()  # fail now, with the install line, rather than after the first stage
    S = replace(
        S,
        seeds_batch=tuple(seed + s for s in S.seeds_batch),
        seeds_arch=tuple(seed + s for s in S.seeds_arch),
    )
    os.makedirs(out, exist_ok=True)
    n_steps = (
        ("spectrum" in stages)
        + ("batch" in stages) * len(S.seeds_batch) * len(S.batch_sizes)
        + ("architecture" in stages) * len(S.seeds_arch) * len(KINDS)
        + ("connectivity" in stages) * len(_pairs(S, deep="architecture" in stages))
    )
    progress = _Progress(n_steps, quiet)
    if not quiet:
        print(
            f"probecore study{' --quick' if quick else ''}: {', '.join(stages)} on "
            f"scikit-learn digits -> {out}",
            flush=True,
        )
    ctx = _Context(
        out=out,
        settings=S,
        seed=seed,
        progress=progress,
        raw=_Raw(os.path.join(out, "raw", "study.zarr")),
    )
    sections = []
    stage_time = {}
    for stage, fn in (
        ("spectrum", _spectrum_stage),
        ("batch", _batch_stage),
        ("architecture", _arch_stage),
        ("connectivity", _connectivity_stage),
    ):
        if stage in stages:
            t0 = time.perf_counter()
            sections += fn(ctx)
            stage_time[stage] = time.perf_counter() - t0
    judged = [] if set(stages) == {"spectrum"} else _judge(ctx)
    summary, body, verdicts = _hypothesis_lines(judged) if judged else ([], [], {})
    elapsed = progress.elapsed()
    lines = [
        "# probecore study",
        "",
        "The seed paper's hypotheses about loss-landscape geometry, tested on scikit-learn's "
        "digits (1,797 8×8 images: 1,347 for training, 450 for testing) with small networks "
        "trained on the spot from fixed seeds. Every number below comes from this run; "
        f"`results.json` holds them all and `raw/` the raw results. Mode: "
        f"{'quick (reduced settings, for CI)' if quick else 'full'}; stages: "
        f"{', '.join(stages)}; base seed {seed}.",
        "",
    ]
    if summary:
        lines += [
            "## Verdicts",
            "",
            *summary,
            "At this scale (thousands of parameters, digits) the paper's absolute "
            "thresholds, taken from large networks, may not apply; where no model fell "
            "on both sides of a threshold the verdict is *inconclusive*, and the "
            "measured range is given.",
            "",
        ]
        if quick:
            lines += [
                "**Quick mode**: two seeds, 5-epoch curve fits, small grids. These verdicts "
                "exercise the pipeline; they are not the study's results (run without "
                "`--quick` for those).",
                "",
            ]
    lines += sections + body
    if judged:
        lines += [
            "## Limits of this study",
            "",
            "- Trainability is measured by epochs to the target loss and by loss spikes at "
            "one learning rate per stage; there is no learning-rate sweep.",
            "- Training stops when the loss first falls below the target, which is not "
            "always a minimum: some networks have many directions of negative curvature "
            "there (the ray columns).",
            *(
                [f"- λmax at initialization is confounded with the architecture: {_above_100(ctx)}"]
                if "architecture" in ctx.results
                else []
            ),
            "- d_eff cannot exceed the number of gradients recorded "
            f"({S.grad_window}), and mini-batch gradients carry sampling noise.",
            '- "Robust, transferable features" (the connectivity hypothesis) has no '
            "measurement in the paper and is not judged.",
            "",
        ]
    lines += [
        "## Run",
        "",
        f"Total {elapsed:.1f} s on {platform.machine()} ({os.cpu_count()} CPUs), Python "
        f"{platform.python_version()}, numpy {np.__version__}, probecore "
        f"{probecore.__version__}"
        + (f", torch {sys.modules['torch'].__version__}" if "torch" in sys.modules else "")
        + ". Per stage: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in stage_time.items())
        + ".",
        "",
        "Raw results: `raw/*/*.npz` are probecore result files (`probecore.load`), "
        "`raw/landscape/*.zarr` the surfaces and rays as resumable Zarr runs "
        "(`probecore.load_run`), `raw/study.zarr` per-model training curves and "
        "measurements (Zarr group, `zarr.open_group`).",
        "",
    ]
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    record = {
        "settings": S.__dict__,
        "stages": list(stages),
        "quick": quick,
        "seed": seed,
        "results": ctx.results,
        "verdicts": verdicts,
    }
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1, default=float, sort_keys=True)
    with open(os.path.join(out, "timings.json"), "w", encoding="utf-8") as fh:
        json.dump(
            {"total_s": elapsed, "stages_s": stage_time, "steps_s": ctx.timings}, fh, indent=1
        )
    if not quiet:
        print(f"report written to {os.path.join(out, 'report.md')} ({elapsed:.1f} s)", flush=True)
    return record
