"""Mode connectivity between two digits MLPs trained in PyTorch from different seeds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn
from torch.nn import functional as F

import probecore as pc

from .models_torch import digits, mlp


def _train(obj, iters=300):
    """Minimize the full training loss with L-BFGS (deterministic)."""
    res = scipy.optimize.minimize(
        obj.loss_and_grad, obj.x0, jac=True, method="L-BFGS-B", options={"maxiter": iters}
    )
    return res.x


@pytest.fixture(scope="module")
def two_minima():
    X, y = digits()
    train, test = slice(0, 1347), slice(1347, None)
    obj = pc.objective(mlp(seed=0).eval(), F.cross_entropy, (X[train], y[train]))
    other = pc.objective(mlp(seed=1).eval(), F.cross_entropy, (X[train], y[train]))
    test_obj = pc.objective(mlp(seed=0).eval(), F.cross_entropy, (X[test], y[test]))
    return obj, test_obj, _train(obj), _train(other)


def test_bezier_curve_removes_most_of_the_linear_barrier(two_minima):
    obj, test_obj, xa, xb = two_minima
    linear = pc.evaluate_path(obj, xa, xb, n_points=21)
    fit = pc.fit_curve(obj, xa, xb, epochs=20, rng=0)
    curve = pc.evaluate_path(obj, fit.curve, n_points=21)
    assert linear.barrier > 0.1 and linear.t_max not in (0.0, 1.0)
    assert curve.barrier <= linear.barrier / 5
    # test accuracy along both paths: the curve keeps the endpoints' accuracy
    lin_test = pc.evaluate_path(test_obj, xa, xb, n_points=21)
    cur_test = pc.evaluate_path(test_obj, fit.curve, n_points=21)
    ends = lin_test.metric("accuracy")[[0, -1]]
    assert cur_test.metric_barriers["accuracy"] < lin_test.metric_barriers["accuracy"]
    assert cur_test.metric("accuracy").min() >= ends.min() - 0.05


def test_mismatched_architectures_are_refused_naming_the_block():
    X, y = digits(100)
    a = pc.objective(mlp(hidden=32).eval(), F.cross_entropy, (X, y))
    b = pc.objective(mlp(hidden=16).eval(), F.cross_entropy, (X, y))
    with pytest.raises(ValueError, match=r"block 0 is '0.weight' with shape \(16, 64\) in `end`"):
        pc.fit_curve(a, a, b)
    c = pc.objective(mlp().eval(), F.cross_entropy, (X, y), dtype=torch.float32)
    with pytest.raises(ValueError, match="`end` is float32 but `objective` is float64"):
        pc.evaluate_path(a, a, c)


def test_batchnorm_statistics_recomputed_along_the_path():
    X, y = digits(300)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 10))
    net = net.double()
    net.train()
    with torch.no_grad():
        net(X)  # running statistics of the start point
    net.eval()
    running = pc.objective(net, F.cross_entropy, (X, y))
    batch = pc.objective(net, F.cross_entropy, (X, y), batchnorm="batch")
    xb = running.x0 + 0.5 * np.random.default_rng(0).standard_normal(running.dim)
    curve = pc.linear_curve(running.x0, xb)
    ts = np.linspace(0, 1, 5)
    with_batch = pc.evaluate_path(batch, curve, ts=ts)
    with_running = pc.evaluate_path(running, curve, ts=ts)
    # "batch" evaluates every t with statistics of the data at φ(t) itself
    want = [batch.loss(curve.point(t)) for t in ts]
    np.testing.assert_allclose(with_batch.losses, want, rtol=1e-13)
    assert np.max(np.abs(with_batch.losses - with_running.losses)) > 1e-3


def test_running_statistics_of_another_model_are_flagged():
    X, y = digits(300)
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 10))
        net = net.double().train()
        with torch.no_grad():
            net(X)
        nets.append(net.eval())
    a, b = (pc.objective(n, F.cross_entropy, (X, y)) for n in nets)
    with pytest.warns(UserWarning, match="batchnorm='recompute'"):
        pc.evaluate_path(a, a, b, n_points=3)
    ab, bb = (pc.objective(n, F.cross_entropy, (X, y), batchnorm="batch") for n in nets)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pc.evaluate_path(ab, ab, bb, n_points=3)  # statistics recomputed: consistent
        ar, br = (pc.objective(n, F.cross_entropy, (X, y), batchnorm="recompute") for n in nets)
        pc.evaluate_path(ar, ar, br, n_points=3)  # update_bn at every point: consistent
