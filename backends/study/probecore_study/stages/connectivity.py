"""Stage 4, ``connectivity``: pairs of minima from different seeds, straight against Bezier.

Every pair of the small-batch MLPs of stage 2 (trained there, or here if that stage did not
run) and, when stage 3 ran, every pair of each deep network. One unit of work per pair:
:func:`probecore_study.units.pair`.
"""

from __future__ import annotations

from probecore_study import figures, units
from probecore_study.context import Context
from probecore_study.numbers import fmt, pct
from probecore_study.report import figure, table
from probecore_study.settings import pairs


def run(ctx: Context) -> list[str]:
    """The connectivity stage: fit, evaluate, record, and return its report section."""
    S = ctx.settings
    small = S.batch_sizes[0]
    todo = pairs(S, deep="architecture" in ctx.results)
    missing = sorted(
        {s for net, a, b in todo if net == "mlp" for s in (a, b)}
        - {seed for (net, seed) in ctx.states if net == "mlp"}
    )
    if missing:  # the batch stage did not run: train the MLPs the pairs need, once each
        calls = [{"S": S, "out": ctx.out, "seed": s, "batch": small} for s in missing]
        for s, o in zip(missing, ctx.run(units.mlp_only, calls), strict=True):
            ctx.states["mlp", s] = o["state"]
    calls = [
        {
            "S": S,
            "out": ctx.out,
            "network": net,
            "a": a,
            "b": b,
            "state_a": ctx.states[net, a],
            "state_b": ctx.states[net, b],
        }
        for net, a, b in todo
    ]
    out = []
    for c, o in zip(calls, ctx.run(units.pair, calls), strict=True):
        out.append(o["record"])
        ctx.keep["path", c["network"], c["a"], c["b"]] = o["keep"]
    ctx.results["connectivity"] = out
    name = figures.paths(ctx, out)
    rows = [
        [
            r["network"],
            f"{r['seeds'][0]}–{r['seeds'][1]}",
            f"{r['dim']:,}",
            fmt(r["linear_barrier"]),
            fmt(r["bezier_barrier"]),
            f"{pct(r['test_accuracy_ends'][0], '')} / {pct(r['test_accuracy_ends'][1], '')}",
            pct(r["linear_min_test_accuracy"], ""),
            pct(r["bezier_min_test_accuracy"], ""),
        ]
        for r in out
    ]
    deep = any(r["network"] != "mlp" for r in out)
    n_mlp = sum(r["network"] == "mlp" for r in out)
    return [
        "## 4. Mode connectivity between seeds",
        "",
        "Pairs of minima from different seeds: "
        + (f"all {n_mlp} pairs" if n_mlp > 1 else "the one pair")
        + f" of the batch-{small} MLPs of section 2 (the batch-{S.batch_sizes[1]} ones, "
        "trained by the same recipe but for the batch, are not connected: the paper's "
        "claims concern minima of one recipe, and the deep networks add three more)"
        + (", and every pair of each deep network of section 3" if deep else "")
        + ". The straight segment between them against a quadratic Bezier curve fitted to "
        f"keep the training loss low along it (Garipov et al. 2018; Adam, {S.bezier_epochs} "
        "epochs, stratified t). Barrier: highest training loss along the path minus the "
        f"higher endpoint's, in nats, over {S.path_points} points (0 when the path never "
        "rises above its ends); test accuracy along both paths, in %.",
        "",
        *table(
            [
                "network",
                "seeds",
                "parameters",
                "straight barrier (nats)",
                "Bezier barrier (nats)",
                "test acc. at the ends (%)",
                "lowest test acc., straight (%)",
                "lowest test acc., Bezier (%)",
            ],
            rows,
        ),
        *figure(
            ctx,
            name,
            "Training loss (top) and test accuracy (bottom) along the straight segment "
            "(orange) and the fitted Bezier curve (blue) between the two models of every "
            "pair, one column per network, one line per pair (each panel has its own y "
            "range: the MLPs' straight paths fall to 92%, the deep networks' to 10%); t = 0 "
            "and t = 1 are the two "
            "trained models.",
        ),
    ]
