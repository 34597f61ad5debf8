"""Stage 3, ``architecture``: a deep plain MLP against the same network with skip connections.

λmax at initialization and at the end, epochs to the target loss, loss spikes, effective
dimension of the gradients, a 2D filter-normalized surface and Monte Carlo ray curvature
of each network.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import probecore as pc
from probecore_study import figures
from probecore_study.context import (
    Context,
    count_spikes,
    load_kit,
    save_all,
    stored,
    trained_record,
    training_data,
)
from probecore_study.report import g4, table
from probecore_study.settings import KINDS


def nonconvex_share(plane: Any) -> float:
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


def run(ctx: Context) -> list[str]:
    """The architecture stage: train, measure, record, and return its report section."""
    kit, S = load_kit(), ctx.settings
    data = training_data(ctx)
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
            plane = stored(
                ctx.path("raw", "landscape", f"{name}_plane{S.plane_points}.zarr"),
                lambda store, dirs=dirs, obj=obj, grid=grid: pc.plane(
                    obj, dirs, alphas=grid, betas=grid, progress=False, store=store
                ),
            )
            rays = stored(
                ctx.path("raw", "landscape", f"{name}_rays{S.n_rays}.zarr"),
                lambda store, obj=obj, seed=seed: pc.rays(
                    obj, n_rays=S.n_rays, rng=seed, progress=False, store=store
                ),
            )
            ctx.timings[f"{kind} seed {seed}"] = time.perf_counter() - t0
            save_all(
                ctx,
                "architecture",
                name,
                {"lambda_init": lam0, "lambda_end": lam, "effective_dimension": deff},
                {"seed": seed, "kind": kind},
            )
            spikes = count_spikes(run.epoch_losses)
            rec = {
                "seed": seed,
                "kind": kind,
                **trained_record(run, obj, test),
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
                "surface_nonconvex": nonconvex_share(plane),
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
    figs = figures.architecture(ctx, models)
    rows = [
        [
            r["kind"],
            r["seed"],
            f"{r['epochs']:.1f}" if r["reached"] else f"> {r['epochs']:.0f} (not reached)",
            r["spikes"],
            f"{r['train_loss']:.4f}",
            f"{r['test_accuracy']:.3f}",
            g4(r["lambda_init"]),
            g4(r["lambda_max"]),
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
        *table(
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
