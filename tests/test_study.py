"""Pieces of ``probecore study`` that need no framework, checked on analytic objectives."""

from __future__ import annotations

import numpy as np
import pytest
from probecore_study.context import stored
from probecore_study.units import nonconvex_share

import probecore as pc
from probecore.analytic import Quadratic


@pytest.mark.parametrize(
    "spectrum, share",
    [([1.0, 3.0], 0.0), ([-1.0, 2.0], 1.0), ([-1.0, -2.0], 1.0), ([0.0, 2.0], 0.0)],
)
def test_nonconvex_share_on_quadratics(spectrum, share):
    # On a quadratic the finite-difference Hessian of the surface is exact up to rounding:
    # every point curves downwards somewhere exactly when an eigenvalue is negative.
    q = Quadratic(np.diag(spectrum))
    r = pc.plane(
        q, np.eye(2), x=np.zeros(2), alphas=np.linspace(-1, 1, 9), betas=np.linspace(-1, 1, 7)
    )
    assert nonconvex_share(r) == share


def test_stored_runs_resume_and_stale_ones_are_replaced(tmp_path):
    q = Quadratic(np.diag([1.0, 3.0]))
    path = str(tmp_path / "plane.zarr")

    def probe(grid):
        return lambda store: pc.plane(
            q, np.eye(2), x=np.zeros(2), alphas=grid, betas=grid, store=store
        )

    first = stored(path, probe(np.linspace(-1, 1, 5)))
    again = stored(path, probe(np.linspace(-1, 1, 5)))
    # resumed: only the loss at the origin, which identifies the objective to the store
    assert again.n_loss_evals == 1 and np.array_equal(again.losses, first.losses)
    other = stored(path, probe(np.linspace(-2, 2, 3)))  # another run: recomputed
    assert other.losses.shape == (3, 3) and other.n_loss_evals == 1 + 9
    assert pc.load_run(path).losses.shape == (3, 3)
    q2 = Quadratic(np.diag([1.0, 4.0]))  # another objective: its run is stale too
    fresh = stored(
        path,
        lambda store: pc.plane(
            q2,
            np.eye(2),
            x=np.zeros(2),
            alphas=np.linspace(-2, 2, 3),
            betas=np.linspace(-2, 2, 3),
            store=store,
        ),
    )
    assert fresh.n_loss_evals == 1 + 9 and fresh.losses[0, 0] == 0.5 * (4 + 16)


def test_overlapping_labels_finds_labels_that_collide():
    # The check the study runs on every figure it saves, at the report's size and dpi.
    from probecore_study.figures import DPI, overlapping_labels, pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(6, 3), dpi=DPI, layout="constrained")
    for ax in axes:
        ax.plot([0, 1], [-1000, 1000])
        ax.set_ylabel("loss")
    assert overlapping_labels(fig) == []
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(3, 2), dpi=DPI, gridspec_kw={"wspace": 0})
    for ax in axes:
        ax.plot([0, 1], [-123456.0, 123456.0])
        ax.set_title("a long title over the panel")
    found = overlapping_labels(fig)
    plt.close(fig)
    assert ["−100000", "panel 0"] in found  # panel 1's y tick labels reach into panel 0
    assert ["a long title over the panel", "a long title over the panel"] in found
