"""Stage 4, ``connectivity``: pairs of minima from different seeds, straight against Bezier.

The small-batch MLPs of stage 2 (trained there, or here if that stage did not run) and,
when stage 3 ran, one pair of each deep network.
"""

from __future__ import annotations

import time

import numpy as np

import probecore as pc
from probecore_study import figures
from probecore_study.context import Context, save_all, small_mlp
from probecore_study.report import table
from probecore_study.settings import pairs


def _ends(ctx: Context, network: str, seed: int) -> dict:
    if network == "mlp":
        return small_mlp(ctx, seed, ctx.settings.batch_sizes[0])
    return ctx.cache[("deep", network, seed)]


def run(ctx: Context) -> list[str]:
    """The connectivity stage: fit, evaluate, record, and return its report section."""
    S = ctx.settings
    small = S.batch_sizes[0]
    out, shown = [], {}
    for network, a, b in pairs(S, deep="architecture" in ctx.results):
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
        save_all(
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
    figure = figures.paths(ctx, shown)
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
        *table(
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
