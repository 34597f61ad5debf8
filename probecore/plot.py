"""Matplotlib figures for landscape results: contour, surface, 1D profiles, ray curvature.

Each function draws on ``ax`` (a new figure when omitted) and returns the axes.
Non-finite losses (far from a minimum a loss can overflow) are not plotted as numbers:
contours and surfaces leave a hole there (contours and profiles also mark the points
with ``x``); points that were never computed (an interrupted run) are left blank.
matplotlib is imported when a function is called, never by ``import probecore``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "contour",
    "explained_variance",
    "paths",
    "profile",
    "ray_histogram",
    "surface",
    "trajectory",
]


def _plt() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'probecore[plot]'.") from exc
    return plt


def _values(result: Any, metric: str | None) -> np.ndarray:
    z = result.losses if metric is None else result.metric(metric)
    return np.where(result.computed, z, np.nan)


def _check(result: Any, kind: str) -> None:
    if type(result).__name__ != kind:
        raise TypeError(f"`result` must be a {kind}; got {type(result).__name__}.")


def _check_all(results: tuple, kind: str, labels: list[str] | None) -> None:
    if not results:
        raise ValueError(f"`results` must hold at least one {kind}.")
    for r in results:
        _check(r, kind)
    if labels is not None and len(labels) != len(results):
        raise ValueError(f"`labels` has {len(labels)} entries for {len(results)} results.")


def contour(
    result: Any,
    *,
    ax: Any = None,
    levels: int | np.ndarray = 20,
    metric: str | None = None,
    log: bool = False,
    filled: bool = True,
) -> Any:
    """Contour plot of a :class:`~probecore.PlaneResult`, levels labelled.

    Parameters
    ----------
    result : PlaneResult
        The plane.
    ax : matplotlib Axes, optional
        Where to draw.
    levels : int or array
        Number of levels or their values.
    metric : str, optional
        Plot this metric instead of the loss.
    log : bool
        Levels on ``log10`` of the values (for losses spanning decades).
    filled : bool
        Filled contours under the labelled lines.
    """
    _check(result, "PlaneResult")
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    z = _values(result, metric)
    bad = result.computed & ~np.isfinite(z)
    shown = np.ma.masked_invalid(z)
    if log:
        shown = np.ma.masked_invalid(np.log10(np.where(z > 0, z, np.nan)))
    A, B = np.meshgrid(result.alphas, result.betas)
    label = ("log10 " if log else "") + (metric or "loss")
    if shown.count() >= 4 and result.alphas.size > 1 and result.betas.size > 1:
        if filled:
            cf = ax.contourf(A, B, shown, levels=levels, cmap="viridis", alpha=0.85)
            ax.figure.colorbar(cf, ax=ax, label=label)
        cs = ax.contour(A, B, shown, levels=levels, colors="k", linewidths=0.6)
        ax.clabel(cs, inline=True, fontsize=7, fmt="%.3g")
    if bad.any():
        ax.plot(A[bad], B[bad], "x", color="crimson", ms=4, label="non-finite loss")
        ax.legend(loc="upper right", fontsize=7)
    if result.alphas[0] <= 0 <= result.alphas[-1] and result.betas[0] <= 0 <= result.betas[-1]:
        ax.plot([0], [0], "*", color="white", mec="k", ms=10)  # the centre point x
    ax.set_xlabel("α (direction 1)")
    ax.set_ylabel("β (direction 2)")
    ax.set_title(label)
    return ax


def surface(
    result: Any,
    *,
    ax: Any = None,
    metric: str | None = None,
    zmax: float | None = None,
    log: bool = False,
) -> Any:
    """3D surface of a :class:`~probecore.PlaneResult`.

    Non-finite or uncomputed points are holes; ``zmax`` clips the surface from above
    (values beyond it are drawn at ``zmax``) so that a few huge values far from the
    minimum do not flatten the rest.
    """
    _check(result, "PlaneResult")
    plt = _plt()
    if ax is None:
        fig = plt.figure(figsize=(6, 4.8))
        ax = fig.add_subplot(projection="3d")
    z = _values(result, metric)
    if log:
        z = np.log10(np.where(z > 0, z, np.nan))
    z = np.where(np.isfinite(z), z, np.nan)
    if zmax is not None:
        z = np.minimum(z, zmax)
    A, B = np.meshgrid(result.alphas, result.betas)
    ax.plot_surface(A, B, z, cmap="viridis", linewidth=0, antialiased=True, alpha=0.95)
    ax.set_xlabel("α")
    ax.set_ylabel("β")
    ax.set_zlabel(("log10 " if log else "") + (metric or "loss"))
    return ax


def profile(
    *results: Any,
    labels: list[str] | None = None,
    ax: Any = None,
    metric: str | None = None,
    log: bool = False,
) -> Any:
    """1D profiles: one or more :class:`~probecore.LineResult` on the same axes.

    Non-finite values leave a gap in the curve and a ``x`` at the top of the axes.
    """
    _check_all(results, "LineResult", labels)
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, r in enumerate(results):
        z = _values(r, metric)
        finite = np.isfinite(z)
        line = ax.plot(
            r.coords, np.where(finite, z, np.nan), label=None if labels is None else labels[i]
        )[0]
        bad = r.computed & ~finite
        if bad.any():
            top = np.nanmax(np.where(finite, z, np.nan)) if finite.any() else 1.0
            ax.plot(r.coords[bad], np.full(bad.sum(), top), "x", color=line.get_color())
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel(metric or "loss")
    if labels is not None:
        ax.legend(fontsize=8)
    return ax


def ray_histogram(result: Any, *, ax: Any = None, bins: Any = "auto") -> Any:
    """Histogram of the ray curvatures of a :class:`~probecore.RayResult`.

    Marks zero and the mean, and states the mean and the negative fraction with their
    confidence intervals in the title.
    """
    _check(result, "RayResult")
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    k = result.kappa[np.isfinite(result.kappa)]
    if k.size:
        ax.hist(k, bins=bins, color="steelblue", alpha=0.85)
        ax.axvline(result.mean, color="k", lw=1.2, label=f"mean {result.mean:.4g}")
    ax.axvline(0.0, color="crimson", lw=1.0, ls="--", label="0")
    lo, hi = result.negative_fraction_ci
    mlo, mhi = result.mean_ci
    pct = int(round(100 * result.confidence))
    hessian = result.curvature == "hessian"
    how = "dᵀHd" if hessian else f"ε = {result.eps:.2g}"
    ax.set_title(
        f"κ over {result.n_finite} rays, {how}: mean {result.mean:.4g} "
        f"[{mlo:.4g}, {mhi:.4g}],\nnegative {100 * result.negative_fraction:.1f}% "
        f"[{100 * lo:.1f}, {100 * hi:.1f}] ({pct}% CI)",
        fontsize=9,
    )
    ax.set_xlabel("κ = dᵀHd" if hessian else "κ = (L(x+εd) − 2L(x) + L(x−εd)) / ε²")
    ax.set_ylabel("rays")
    ax.legend(fontsize=8)
    return ax


def paths(
    *results: Any,
    labels: list[str] | None = None,
    metric: str | None = "auto",
    axes: Any = None,
) -> Any:
    """Loss (left) and a metric (right) along paths between two models.

    Parameters
    ----------
    *results : PathResult
        From :func:`probecore.evaluate_path`: typically the straight path and a fitted
        curve between the same endpoints (or the same paths on training and test data).
    labels : list of str, optional
        Legend entries (default: each path's kind and its barrier).
    metric : str, "auto" or None
        The metric for the right panel; "auto": accuracy when every result has it,
        otherwise the loss only; None: the loss only.
    axes : sequence of matplotlib Axes, optional
        Where to draw (two axes with a metric, one without).

    Returns
    -------
    numpy array of Axes
    """
    _check_all(results, "PathResult", labels)
    if metric == "auto":
        metric = "accuracy" if all("accuracy" in r.metric_names for r in results) else None
    if metric is not None:
        missing = [i for i, r in enumerate(results) if metric not in r.metric_names]
        if missing:
            raise ValueError(
                f"`metric` {metric!r} is not in results {missing}; pass metric=None to plot "
                "the loss only."
            )
    plt = _plt()
    n = 1 if metric is None else 2
    if axes is None:
        _, axes = plt.subplots(1, n, figsize=(5.0 * n, 3.6), squeeze=False)
        axes = axes[0]
    axes = np.atleast_1d(axes)
    if axes.size != n:
        raise ValueError(f"`axes` must hold {n} axes; got {axes.size}.")
    for i, r in enumerate(results):
        label = labels[i] if labels is not None else f"{r.kind} (barrier {r.barrier:.3g})"
        finite = np.isfinite(r.losses)
        axes[0].plot(r.ts, np.where(finite, r.losses, np.nan), label=label)
        if metric is not None:
            axes[1].plot(r.ts, r.metric(metric), label=label)
    axes[0].set_xlabel("t")
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=8)
    if metric is not None:
        axes[1].set_xlabel("t")
        axes[1].set_ylabel(metric)
    return axes


def explained_variance(result: Any, *, ax: Any = None, max_components: int | None = None) -> Any:
    """Cumulative explained-variance curve of an :class:`~probecore.EffectiveDimension`.

    Marks the share asked for and ``d_eff``, the first component count that reaches it;
    for a result from a :class:`~probecore.GradientSketch`, whose curve lies below the
    exact one, the bracket ``[d_eff_lower, d_eff]`` that holds the exact value is shaded.
    """
    _check(result, "EffectiveDimension")
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    cum = np.asarray(result.cumulative, dtype=float)
    if max_components is not None:
        cum = cum[:max_components]
    k = np.arange(1, cum.size + 1)
    ax.plot(k, cum, ".-", ms=3, label="cumulative share of variance")
    ax.axhline(result.share, color="grey", ls="--", lw=0.8)
    lower = getattr(result, "d_eff_lower", result.d_eff)
    if result.d_eff is not None and lower is not None and lower != result.d_eff:
        # a sketch brackets the exact d_eff: shade the bracket
        ax.axvspan(lower, result.d_eff, color="crimson", alpha=0.12, label="d_eff bracket")
    if result.d_eff is not None and result.d_eff <= cum.size:
        ax.axvline(result.d_eff, color="crimson", ls=":", lw=1.0)
        ax.annotate(
            f"d_eff = {result.d_eff}",
            (result.d_eff, result.share),
            textcoords="offset points",
            xytext=(6, -14),
            fontsize=8,
            color="crimson",
        )
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("principal components")
    ax.set_ylabel("explained share")
    return ax


def trajectory(
    plane_result: Any,
    path: Any,
    *,
    ax: Any = None,
    levels: int | np.ndarray = 20,
    log: bool = False,
) -> Any:
    """An optimization path drawn over the contour of the plane it spans (Li et al.).

    Parameters
    ----------
    plane_result : PlaneResult
        ``plane(objective, path.directions, x=path.origin, alphas=..., betas=...)``: the
        loss on the plane of the trajectory's two principal directions, around its origin.
    path : TrajectoryPCA
        From :func:`probecore.trajectory_directions`; its ``coords`` are drawn as a line
        with the start marked.
    """
    _check(plane_result, "PlaneResult")
    _check(path, "TrajectoryPCA")
    coords = np.asarray(path.coords)
    if coords.ndim != 2 or coords.shape[1] < 2:
        raise ValueError(
            f"`path` must have at least two directions for a plane; its coords have shape "
            f"{coords.shape}."
        )
    ax = contour(plane_result, ax=ax, levels=levels, log=log)
    ax.plot(coords[:, 0], coords[:, 1], "-", color="crimson", lw=1.2, label="trajectory")
    ax.plot(coords[0, 0], coords[0, 1], "o", color="crimson", ms=5, label="start")
    ratio = np.asarray(path.explained_variance_ratio)
    ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.1f}% of the path's variance)")
    ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.1f}%)")
    ax.legend(loc="upper right", fontsize=7)
    return ax
