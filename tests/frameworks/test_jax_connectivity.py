"""Mode connectivity between two digits MLPs written in JAX, trained from different seeds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
from probecore_jax import JaxObjective

import probecore as pc

from . import models_jax as M


def _train(obj, iters=300):
    res = scipy.optimize.minimize(
        obj.loss_and_grad, obj.x0, jac=True, method="L-BFGS-B", options={"maxiter": iters}
    )
    return res.x


def _objective(X, y, seed, hidden=M.HIDDEN):
    return JaxObjective(
        M.mlp_loss,
        M.init_mlp(seed, hidden),
        (X, y),
        metrics_fn=M.mlp_metrics,
        layout=M.MLP_LAYOUT,
    )


def test_bezier_curve_removes_most_of_the_linear_barrier():
    X, y = M.digits(None)
    obj = _objective(X[:1347], y[:1347], 0)
    test_obj = _objective(X[1347:], y[1347:], 0)
    xa, xb = _train(obj), _train(_objective(X[:1347], y[:1347], 1))
    linear = pc.evaluate_path(obj, xa, xb, n_points=21)
    fit = pc.fit_curve(obj, xa, xb, epochs=20, rng=0)
    curve = pc.evaluate_path(obj, fit.curve, n_points=21)
    assert linear.barrier > 0.1
    assert curve.barrier <= linear.barrier / 5
    lin_test = pc.evaluate_path(test_obj, xa, xb, n_points=21)
    cur_test = pc.evaluate_path(test_obj, fit.curve, n_points=21)
    assert cur_test.metric_barriers["accuracy"] < lin_test.metric_barriers["accuracy"]


def test_mismatched_pytrees_are_refused_naming_the_block():
    X, y = M.digits(100)
    a, b = _objective(X, y, 0), _objective(X, y, 0, hidden=16)
    with pytest.raises(ValueError, match=r"block 0 is 'layer1.b' with shape \(16,\) in `end`"):
        pc.evaluate_path(a, a, b)
    assert np.isfinite(pc.evaluate_path(a, a, _objective(X, y, 1), n_points=3).barrier)
