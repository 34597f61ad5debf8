"""The study's figures, one function per figure, each saved into the output folder.

matplotlib is imported when the first figure is drawn.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from probecore_study.context import Context
from probecore_study.settings import KINDS


def pyplot() -> Any:
    """``matplotlib.pyplot``, imported on first use."""
    import matplotlib.pyplot as plt

    return plt


def save_figure(ctx: Context, fig: Any, name: str) -> str:
    """Save ``fig`` as ``name`` in the output folder, close it, and return ``name``."""
    fig.tight_layout()
    fig.savefig(os.path.join(ctx.out, name), dpi=110)
    pyplot().close(fig)
    return name


def density(ctx: Context, exact: np.ndarray, dens: Any) -> str:
    """The SLQ density against a histogram of the exact eigenvalues (``density.png``)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(exact, bins=120, density=True, alpha=0.4, label="exact eigenvalues")
    ax.plot(dens.grid, dens.density, lw=1.2, label="SLQ estimate")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 3 * float(dens.density.max()))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.legend()
    return save_figure(ctx, fig, "density.png")


def batch(ctx: Context, models: list[dict]) -> str:
    """Densities of the first seed, and λmax against test error (``batch.png``)."""
    S = ctx.settings
    plt = pyplot()
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
    return save_figure(ctx, fig, "batch.png")


def architecture(ctx: Context, models: list[dict]) -> dict:
    """The architecture stage's two figures, by name.

    ``surfaces.png``: the first seed's surfaces side by side, on one colour scale;
    ``training.png``: loss curves, ray curvatures and explained variance of every network.
    """
    plt = pyplot()
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
    return {"surfaces": surfaces, "training": save_figure(ctx, fig, "training.png")}


def paths(ctx: Context, shown: dict) -> str:
    """Training loss and test accuracy along both paths, one column per network (``paths.png``)."""
    plt = pyplot()
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
    return save_figure(ctx, fig, "paths.png")
