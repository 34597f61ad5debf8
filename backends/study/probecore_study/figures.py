"""The study's figures, one function per figure, each saved into the output folder.

Every figure shows all seeds (or a summary over them with intervals), is drawn with
matplotlib's constrained layout at the size and resolution the report embeds it, and is
checked for overlapping text (:func:`overlapping_labels`) before it is saved: what the check
finds is recorded in ``results.json`` (``figures``), and the CI test requires it empty.
matplotlib is imported when the first figure is drawn.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any

import numpy as np

from probecore_study import verdicts as V
from probecore_study.context import Context
from probecore_study.settings import KINDS

DPI = 110
COLORS = dict(zip(KINDS, ("tab:red", "tab:blue", "tab:green"), strict=True))


def pyplot() -> Any:
    """``matplotlib.pyplot``, imported on first use."""
    import matplotlib.pyplot as plt

    return plt


def overlapping_labels(fig: Any, *, pad: float = 0.5) -> list[list[str]]:
    """Pairs of visible texts of ``fig`` that overlap, as drawn at its own dpi.

    Every tick label, axis label, title, legend entry and figure text counts; two boxes
    that overlap by more than ``pad`` pixels in both directions are a pair. A text of one
    panel that reaches into another panel's plotting area is a pair too, named
    ``[text, "panel <i>"]``.
    """
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    drawn_ticks = {}  # tick labels matplotlib draws: those of ticks inside the view limits
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        box = ax.get_window_extent(renderer)
        for axis, lo, hi, centre in (
            (ax.xaxis, box.x0, box.x1, lambda b: (b.x0 + b.x1) / 2),
            (ax.yaxis, box.y0, box.y1, lambda b: (b.y0 + b.y1) / 2),
        ):
            for t in axis.get_ticklabels(which="both"):
                b = t.get_window_extent(renderer)
                drawn_ticks[id(t)] = lo - 1 <= centre(b) <= hi + 1
    owner = {id(t): ax for ax in fig.axes for t in ax.findobj(Text)}
    texts = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip() or t.get_alpha() == 0:
            continue
        if id(t) in owner and not owner[id(t)].get_visible():
            continue
        if not drawn_ticks.get(id(t), True):
            continue
        bb = t.get_window_extent(renderer)
        if bb.width > 0 and bb.height > 0:
            texts.append((t.get_text(), bb, owner.get(id(t))))

    def overlap(a: Any, b: Any) -> bool:
        dx = min(a.x1, b.x1) - max(a.x0, b.x0)
        dy = min(a.y1, b.y1) - max(a.y0, b.y0)
        return dx > pad and dy > pad

    out = []
    for i, (ta, a, _) in enumerate(texts):
        for tb, b, _ in texts[i + 1 :]:
            if overlap(a, b):
                out.append([ta, tb])
    panels = [ax for ax in fig.axes if ax.get_visible()]
    for text, box, owner in texts:
        for k, ax in enumerate(panels):
            if (
                ax is not owner
                and owner is not None
                and overlap(box, ax.get_window_extent(renderer))
            ):
                out.append([text, f"panel {k}"])
    return out


def save_figure(ctx: Context, fig: Any, name: str) -> str:
    """Check ``fig`` for overlapping labels, save it as ``name``, close it, return ``name``."""
    fig.set_dpi(DPI)
    ctx.keep["overlaps", name] = overlapping_labels(fig)
    fig.savefig(os.path.join(ctx.out, name), dpi=DPI)
    pyplot().close(fig)
    return name


def density(ctx: Context, exact: np.ndarray, dens: Any) -> str:
    """The SLQ density against a histogram of the exact eigenvalues (``density.png``)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ax.hist(exact, bins=120, density=True, alpha=0.4, label="exact eigenvalues")
    ax.plot(dens.grid, dens.density, lw=1.2, label="SLQ estimate")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 3 * float(dens.density.max()))
    ax.set_xlabel("eigenvalue (nats/unit²)")
    ax.set_ylabel("density")
    ax.legend()
    return save_figure(ctx, fig, "density.png")


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson interval of a proportion ``k / n`` (scipy's ``binomtest``)."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def batch(ctx: Context, models: list[dict]) -> str:
    """Densities of every model, and λmax against test error (``batch.png``)."""
    S = ctx.settings
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    top = 0.0
    for batch, color in zip(S.batch_sizes, ("tab:blue", "tab:orange"), strict=True):
        for i, seed in enumerate(S.seeds_batch):
            d = ctx.keep["density", seed, batch]
            top = max(top, float(d.density.max()))
            axes[0].plot(
                d.grid,
                d.density,
                color=color,
                alpha=0.6,
                lw=1,
                label=f"batch {batch}" if i == 0 else None,
            )
    axes[0].set_yscale("log")
    axes[0].set_ylim(1e-5 * top, 3 * top)
    axes[0].set_xlabel("Hessian eigenvalue (nats/unit²)")
    axes[0].set_ylabel("density (SLQ)")
    axes[0].set_title(f"spectral density, {len(S.seeds_batch)} seeds", fontsize=10)
    axes[0].legend(fontsize=8)
    n_test = 450
    for batch, marker, color in zip(S.batch_sizes, "os", ("tab:blue", "tab:orange"), strict=True):
        pts = [r for r in models if r["batch"] == batch]
        lam = np.array([r["lambda_max"] for r in pts])
        err = np.array([100 * (1 - r["test_accuracy"]) for r in pts])
        k = np.rint((1 - np.array([r["test_accuracy"] for r in pts])) * n_test).astype(int)
        lo_hi = np.array([wilson(int(kk), n_test) for kk in k]) * 100
        yerr = np.vstack([err - lo_hi[:, 0], lo_hi[:, 1] - err])
        axes[1].errorbar(
            lam, err, yerr=yerr, fmt=marker, color=color, capsize=3, label=f"batch {batch}"
        )
    axes[1].set_xlabel("λmax at the end of training (nats/unit²)")
    axes[1].set_ylabel("test error (%), 95% interval")
    axes[1].set_ylim(bottom=0)
    axes[1].set_title("sharpness against test error, every model", fontsize=10)
    axes[1].legend(fontsize=8)
    return save_figure(ctx, fig, "batch.png")


def architecture(ctx: Context, models: list[dict]) -> dict:
    """The architecture stage's two figures, by name.

    ``surfaces.png``: every seed's surfaces, one row per seed, on one colour scale;
    ``training.png``: loss curves, negative-curvature shares and explained variance of
    every network.
    """
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    S = ctx.settings
    seeds = S.seeds_arch
    planes = {(k, s): ctx.keep["plane", k, s] for k in KINDS for s in seeds}
    logs = {key: np.log10(np.maximum(p.losses, 1e-12)) for key, p in planes.items()}
    lo = min(float(v.min()) for v in logs.values())
    hi = max(float(v.max()) for v in logs.values())
    levels = MaxNLocator(nbins=20).tick_values(lo, hi)
    fig, axes = plt.subplots(
        len(seeds),
        3,
        figsize=(8.4, 2.5 * len(seeds) + 0.6),
        sharex=True,
        sharey=True,
        layout="constrained",
        squeeze=False,
    )
    cs = None
    for i, s in enumerate(seeds):
        for j, kind in enumerate(KINDS):
            ax, p = axes[i, j], planes[kind, s]
            cs = ax.contourf(p.alphas, p.betas, logs[kind, s], levels=levels, cmap="viridis")
            ax.contour(p.alphas, p.betas, logs[kind, s], levels=levels, colors="k", linewidths=0.3)
            ax.plot([0], [0], "r+", ms=8)
            ax.set_aspect("equal")
            if i == 0:
                ax.set_title(kind, fontsize=10)
            if j == 0:
                ax.set_ylabel(f"seed {s}\nβ")
            if i == len(seeds) - 1:
                ax.set_xlabel("α")
            lo_a, hi_a = float(p.alphas[0]), float(p.alphas[-1])
            ax.set_xticks([lo_a, 0.0, hi_a])
            ax.set_yticks([float(p.betas[0]), 0.0, float(p.betas[-1])])
    cbar = fig.colorbar(cs, ax=axes, label="log10 training loss (nats)", shrink=0.6)
    cbar.locator = MaxNLocator(nbins=6, steps=[1, 2, 5, 10])
    cbar.update_ticks()
    surfaces = save_figure(ctx, fig, "surfaces.png")

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), layout="constrained")
    s0 = seeds[0]
    for r in models:
        kind, seed = r["kind"], r["seed"]
        strong = seed == s0
        losses = ctx.keep["losses", kind, seed]
        axes[0].semilogy(
            np.arange(losses.size),
            losses,
            color=COLORS[kind],
            alpha=0.9 if strong else 0.35,
            lw=1.3 if strong else 0.8,
            label=kind if strong else None,
        )
    axes[0].axhline(S.arch_target, color="k", ls="--", lw=0.8)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training loss (nats)")
    axes[0].set_title(f"training, {len(seeds)} seeds", fontsize=10)
    axes[0].legend(fontsize=8)
    width = 0.6
    for j, kind in enumerate(KINDS):
        rows = [r for r in models if r["kind"] == kind]
        xs = j + np.linspace(-width / 2, width / 2, len(rows))
        neg = np.array([100 * r["ray_negative"] for r in rows])
        ci = np.array([[100 * c for c in r["ray_negative_ci"]] for r in rows])
        axes[1].errorbar(
            xs,
            neg,
            yerr=np.vstack([neg - ci[:, 0], ci[:, 1] - neg]),
            fmt="o",
            color=COLORS[kind],
            capsize=2,
            ms=4,
        )
    axes[1].set_xticks(range(len(KINDS)), KINDS)
    axes[1].set_ylim(bottom=-0.05 * max(1.0, axes[1].get_ylim()[1]))
    axes[1].set_ylabel("directions with negative curvature (%)")
    axes[1].set_title("random directions, per seed (95% intervals)", fontsize=10)
    deffs = [ctx.keep["deff", r["kind"], r["seed"]] for r in models]
    top = max([1, *(int(d.d_eff) for d in deffs)])
    shown = min(3 * top, max(d.cumulative.size for d in deffs))
    for r, d in zip(models, deffs, strict=True):
        strong = r["seed"] == s0
        n = min(shown, d.cumulative.size)
        axes[2].plot(
            np.arange(1, n + 1),
            d.cumulative[:n],
            color=COLORS[r["kind"]],
            alpha=0.9 if strong else 0.35,
            lw=1.3 if strong else 0.8,
            label=r["kind"] if strong else None,
        )
    axes[2].axhline(0.9, color="k", ls=":", lw=0.8)
    axes[2].set_xlim(0, shown)
    axes[2].set_xlabel("principal components of the gradients")
    axes[2].set_ylabel("cumulative explained variance")
    axes[2].set_title("effective dimension (90% line)", fontsize=10)
    axes[2].legend(fontsize=8)
    return {"surfaces": surfaces, "training": save_figure(ctx, fig, "training.png")}


def paths(ctx: Context, records: list[dict]) -> str:
    """Training loss and test accuracy along both paths of every pair (``paths.png``)."""
    plt = pyplot()
    networks = list(dict.fromkeys(r["network"] for r in records))
    fig, axes = plt.subplots(
        2,
        len(networks),
        figsize=(3.4 * len(networks) + 0.8, 5.6),
        squeeze=False,
        layout="constrained",
    )
    for j, network in enumerate(networks):
        rows = [r for r in records if r["network"] == network]
        for k, r in enumerate(rows):
            p = ctx.keep["path", network, r["seeds"][0], r["seeds"][1]]
            for path, colour, label in (
                ("line", "tab:orange", "straight"),
                ("curve", "tab:blue", "Bezier"),
            ):
                style = {"color": colour, "alpha": 0.6, "lw": 1}
                axes[0, j].plot(
                    p["ts"], p[f"{path}_loss"], label=label if k == 0 else None, **style
                )
                axes[1, j].plot(p["ts"], 100 * np.asarray(p[f"{path}_acc"]), **style)
        axes[0, j].set_title(f"{network}, {len(rows)} pair{'s' * (len(rows) > 1)}", fontsize=10)
        axes[1, j].set_xlabel("t along the path")
    axes[0, 0].set_ylabel("training loss (nats)")
    axes[1, 0].set_ylabel("test accuracy (%)")
    axes[0, 0].legend(fontsize=8)
    return save_figure(ctx, fig, "paths.png")


def forest(ctx: Context, judged: list) -> str | None:
    """Every interval claim: its estimate and 95% interval against the claim (``claims.png``)."""
    items = [
        c
        for h in judged
        for c in h.claims
        if c.judged
        and c.statistic.get("rule") in ("range", "direction")
        and c.statistic.get("estimate") is not None
    ]
    if not items:
        return None
    plt = pyplot()
    ncols = 3
    nrows = -(-len(items) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(12, 2.0 * nrows + 0.3), layout="constrained", squeeze=False
    )
    colour = {V.SUPPORTED: "tab:green", V.NOT_SUPPORTED: "tab:red"}
    for ax, c in zip(axes.flat, items, strict=False):
        st = c.statistic
        est, lo, hi = st["estimate"], st["ci_low"], st["ci_high"]
        ratio = st["scale"] == "log ratio"
        if "claim_low" in st:
            ax.axvspan(st["claim_low"], st["claim_high"], color="0.85", label="claimed")
        ax.axvline(st["null"], color="k", ls="--", lw=0.8)
        col = colour.get(c.verdict, "0.4")
        if lo is not None and hi is not None:
            ax.errorbar([est], [0], xerr=[[est - lo], [hi - est]], fmt="o", color=col, capsize=4)
        else:
            ax.plot([est], [0], "o", color=col)
        ax.set_yticks([])
        ax.set_ylim(-1, 1)
        if ratio:
            from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

            ax.set_xscale("log")
            lo_x, hi_x = ax.get_xlim()
            nice = [
                v for v in (0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20, 30, 50) if lo_x <= v <= hi_x
            ]
            ax.xaxis.set_major_locator(FixedLocator(nice))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        unit = st.get("unit") or ""
        ax.set_xlabel(
            ("ratio" if ratio else "difference") + (f" ({unit})" if unit else ""), fontsize=8
        )
        ax.tick_params(labelsize=8)
        ax.set_title("\n".join(textwrap.wrap(c.claim, 48)[:3]), fontsize=7.5)
        ax.text(
            0.02,
            0.9,
            c.verdict,
            transform=ax.transAxes,
            fontsize=7.5,
            color=col,
            va="top",
            zorder=5,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5},
        )
    for ax in list(axes.flat)[len(items) :]:
        ax.set_visible(False)
    return save_figure(ctx, fig, "claims.png")
