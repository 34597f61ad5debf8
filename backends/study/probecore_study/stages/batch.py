"""Stage 2, ``batch``: the same MLP trained at a small and a large batch size.

λmax, trace, spectral density, ε-sharpness and accuracy of each model, all at the same
training loss. One unit of work per (seed, batch size): :func:`probecore_study.units.batch_model`.
"""

from __future__ import annotations

from probecore_study import figures, units
from probecore_study.context import Context
from probecore_study.numbers import fmt, pct
from probecore_study.report import figure, table


def submit(ctx: Context) -> tuple:
    """Start the stage's units: one MLP per (seed, batch size)."""
    S = ctx.settings
    calls = [
        {"S": S, "out": ctx.out, "seed": seed, "batch": batch}
        for seed in S.seeds_batch
        for batch in S.batch_sizes
    ]
    return ctx.submit(units.batch_model, calls)


def run(ctx: Context) -> list[str]:
    """The batch stage: train, measure, record, and return its report section."""
    return finish(ctx, submit(ctx))


def finish(ctx: Context, pending: tuple) -> list[str]:
    """Collect the stage's units, record them, and return its report section."""
    S = ctx.settings
    _, calls, _ = pending
    models = []
    for c, o in zip(calls, ctx.collect(pending), strict=True):
        models.append(o["record"])
        ctx.keep["density", c["seed"], c["batch"]] = o["keep"]["density"]
        if o["state"] is not None:
            ctx.states["mlp", c["seed"]] = o["state"]
    ctx.results["batch"] = models
    small, large = S.batch_sizes
    rows = [
        [
            r["seed"],
            r["batch"],
            fmt(r["epochs"]) + ("" if r["reached"] else " (not reached)"),
            fmt(r["train_loss"]),
            pct(r["train_accuracy"], ""),
            pct(r["test_accuracy"], ""),
            fmt(r["lambda_max"]),
            f"{fmt(r['trace'])} ± {fmt(r['trace_se'])}",
            fmt(r["sharpness_percent"]) + ("" if r["sharpness_converged"] else "*"),
        ]
        for r in models
    ]
    name = figures.batch(ctx, models)
    n_test = 450
    return [
        f"## 2. Small batch ({small}) against large batch ({large})",
        "",
        f"The same MLP (64-{S.hidden}-10, ReLU, {models[0]['dim']:,} parameters, PyTorch's "
        f"default initialization) trained from the same initialization by plain SGD at "
        f"learning rate {S.batch_lr:g} with batch {small} and batch {large}, each until the "
        f"loss on the whole training split first fell below {S.batch_target:g} (checked after "
        f"every step), for seeds {', '.join(map(str, S.seeds_batch))}. Measured on the "
        f"float64 training loss: λmax (Lanczos), trace (Hutch++, {S.trace_matvecs} HVPs, "
        f"shown ± its standard error), spectral density (SLQ, {S.density_probes} probes × "
        f"{S.density_steps} steps) and ε-sharpness (Keskar et al.'s box, ε = "
        f"{S.sharpness_eps:g}: the largest relative rise of the loss in the box, in %; * = "
        f"L-BFGS-B stopped at {S.sharpness_maxiter} iterations before converging). λmax and "
        "trace in nats per unit² of parameter distance.",
        "",
        *table(
            [
                "seed",
                "batch",
                "epochs",
                "train loss (nats)",
                "train acc. (%)",
                "test acc. (%)",
                "λmax (nats/unit²)",
                "trace ± s.e. (nats/unit²)",
                "ε-sharpness (%)",
            ],
            rows,
        ),
        *figure(
            ctx,
            name,
            "Left: Hessian spectral density (SLQ) of every model, batch "
            f"{small} in blue and batch {large} in orange, one line per seed; the log scale "
            "shows the few large outlying eigenvalues against the bulk near zero. Right: "
            "λmax at the end of training against test error, one point per model, with 95% "
            f"binomial (Wilson) intervals for an error measured on {n_test} test images "
            f"(one image is {100 / n_test:.3g} points).",
        ),
    ]
