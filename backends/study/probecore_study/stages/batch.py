"""Stage 2, ``batch``: the same MLP trained at a small and a large batch size.

λmax, trace, spectral density, ε-sharpness and accuracy of each model, all at the same
training loss.
"""

from __future__ import annotations

import time

import probecore as pc
from probecore_study import figures
from probecore_study.context import Context, save_all, small_mlp, trained_record
from probecore_study.report import g4, table


def run(ctx: Context) -> list[str]:
    """The batch stage: train, measure, record, and return its report section."""
    S = ctx.settings
    models = []
    for seed in S.seeds_batch:
        for batch in S.batch_sizes:
            m = small_mlp(ctx, seed, batch)
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
            save_all(
                ctx,
                "batch",
                name,
                {"lambda": lam, "trace": tr, "density": dens, "sharpness": sharp},
                {"seed": seed, "batch_size": batch},
            )
            rec = {
                "seed": seed,
                "batch": batch,
                **trained_record(run, obj, test),
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
            g4(r["lambda_max"]),
            f"{r['trace']:.4g} ± {r['trace_se']:.2g}",
            f"{r['sharpness_percent']:.4g}" + ("" if r["sharpness_converged"] else "*"),
        ]
        for r in models
    ]
    figure = figures.batch(ctx, models)
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
        *table(
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
