"""Stage 3, ``architecture``: a deep plain MLP against the same network with skip connections.

λmax at initialization and at the end, epochs to the target loss, loss spikes, effective
dimension of the gradients, a 2D filter-normalized surface and the curvature along random
directions of each network. One unit of work per (seed, architecture):
:func:`probecore_study.units.deep_model`.
"""

from __future__ import annotations

from probecore_study import figures, units
from probecore_study.context import Context
from probecore_study.numbers import fmt, pct
from probecore_study.report import figure, table
from probecore_study.settings import KINDS


def submit(ctx: Context) -> tuple:
    """Start the stage's units: one deep network per (seed, architecture)."""
    S = ctx.settings
    calls = [
        {"S": S, "out": ctx.out, "seed": seed, "kind": kind}
        for seed in S.seeds_arch
        for kind in KINDS
    ]
    return ctx.submit(units.deep_model, calls)


def run(ctx: Context) -> list[str]:
    """The architecture stage: train, measure, record, and return its report section."""
    return finish(ctx, submit(ctx))


def finish(ctx: Context, pending: tuple) -> list[str]:
    """Collect the stage's units, record them, and return its report section."""
    S = ctx.settings
    _, calls, _ = pending
    models = []
    for c, o in zip(calls, ctx.collect(pending), strict=True):
        models.append(o["record"])
        for key, value in o["keep"].items():
            ctx.keep[key, c["kind"], c["seed"]] = value
        ctx.states[c["kind"], c["seed"]] = o["state"]
    ctx.results["architecture"] = models
    figs = figures.architecture(ctx, models)
    rows = [
        [
            r["kind"],
            r["seed"],
            fmt(r["epochs"]) if r["reached"] else f"> {fmt(r['epochs'])} (not reached)",
            r["spikes"],
            fmt(r["train_loss"]),
            pct(r["test_accuracy"], ""),
            fmt(r["lambda_init"]),
            fmt(r["lambda_max"]),
            f"{r['d_eff']} ({pct(r['d_eff_fraction'])})",
            f"{pct(r['ray_negative'], '')} [{pct(r['ray_negative_ci'][0], '')}, "
            f"{pct(r['ray_negative_ci'][1], '')}]",
            fmt(r["ray_mean"]),
            pct(r["surface_nonconvex"], ""),
        ]
        for r in models
    ]
    dims = {r["kind"]: r["dim"] for r in models}
    s0 = S.seeds_arch[0]
    return [
        "## 3. Plain against residual networks",
        "",
        f"A deep MLP for digits: a stem, {S.blocks} blocks of two {S.width}×{S.width} layers and "
        f"a head ({2 * S.blocks + 2} linear layers). *plain*: `h ← relu(f(h))`; *residual*: "
        "`h ← relu(h + f(h))`; *residual-norm*: `h ← h + f(LayerNorm(h))`, with "
        "`f(h) = W₂ relu(W₁ h)`. Parameters: "
        + ", ".join(f"{k} {v:,}" for k, v in dims.items())
        + ". All three start from He initialization (the plain and residual networks from the "
        f"same weights) and are trained by SGD (learning rate {S.arch_lr:g}, batch "
        f"{S.arch_batch}) until the full training loss falls below {S.arch_target:g} (at most "
        f"{S.arch_max_epochs} epochs), seeds {', '.join(map(str, S.seeds_arch))}. *Spikes*: "
        "epochs whose training loss ended over 50% above the previous epoch's; the claims "
        "use spikes per epoch, the spikes divided by the epochs begun (a partial last "
        "epoch counts as one). d_eff, as the paper defines it (§2.2.3: the number of "
        "principal components explaining 90% of the variance of the gradient vectors "
        f"tracked during training), over the first {S.grad_window} mini-batch gradients "
        "(in parentheses, as a share of the parameters). Rays: the "
        f"curvature dᵀHd of the training loss along {S.n_rays} uniformly random unit "
        "directions d, one Hessian-vector product each (exact: a finite-difference step "
        "would cross ReLU activation changes); the share with negative curvature (%, with "
        "its 95% Clopper-Pearson interval) and the mean curvature (nats per unit², an "
        "estimate of tr(H)/d). Non-convex surface: share (%) of the 2D surface's interior "
        "grid points where its finite-difference Hessian has a negative eigenvalue, on a "
        f"{S.plane_points}×{S.plane_points} grid of filter-normalized directions in "
        "[−1, 1]².",
        "",
        *table(
            [
                "network",
                "seed",
                "epochs to target",
                "spikes",
                "train loss (nats)",
                "test acc. (%)",
                "λmax at init (nats/unit²)",
                "λmax at end (nats/unit²)",
                "d_eff (share of d)",
                "negative rays (%) [95% CI]",
                "mean ray curvature (nats/unit²)",
                "non-convex surface (%)",
            ],
            rows,
        ),
        *figure(
            ctx,
            figs["surfaces"],
            "Training loss (log10, one colour scale for all panels) on the filter-normalized "
            "plane through each trained network, one row per seed and one column per "
            "architecture: the loss at x + α·d₁ + β·d₂ for two random directions d₁, d₂ "
            "scaled filter by filter to the network's weights, α and β over the whole "
            "grid; + marks the trained network (α = β = 0). The contours are shared, so "
            "the panels compare directly.",
        ),
        *figure(
            ctx,
            figs["training"],
            "Left: training loss per epoch of every network (one line per seed; dashed: the "
            f"target {S.arch_target:g}). Middle: share of random directions with negative "
            "curvature, per network and seed, with 95% intervals. Right: cumulative variance "
            f"explained by the principal components of the first {S.grad_window} mini-batch "
            "gradients, one line per network and seed, up to the components that matter "
            f"(dotted: 90%, the d_eff threshold). Seed {s0}'s networks are drawn darker.",
        ),
    ]
