"""``batchnorm="recompute"``: Garipov et al.'s ``update_bn`` at every evaluated point.

References are built with torch's own ``torch.optim.swa_utils.update_bn`` (a cumulative
average over equal batches, which is the example-weighted mean here) on a copy of the
model carrying the point's parameters, evaluated in eval mode. The two compute the same
sums in the same order, so they agree to a few float64 roundings (1e-12 relative).
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.swa_utils import update_bn

import probecore as pc

from .models_torch import cnn, digits, with_running_stats


def _bn_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 10))
    return with_running_stats(net.double(), digits(300)[0])


def _reference_loss(net: nn.Module, x: np.ndarray, X, y, batch: int) -> float:
    """update_bn over batches of ``batch`` at parameters ``x``, then the eval-mode loss."""
    ref = copy.deepcopy(net)
    torch.nn.utils.vector_to_parameters(torch.from_numpy(x), ref.parameters())
    update_bn([X[i : i + batch] for i in range(0, len(X), batch)], ref)
    ref.eval()
    with torch.no_grad():
        return float(F.cross_entropy(ref(X), y))


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_recompute_equals_update_bn_at_every_point(model):
    image = model == "cnn"
    X, y = digits(300, image=image)
    net = with_running_stats(cnn(batchnorm=True), X) if image else _bn_mlp()
    obj = pc.objective(net, F.cross_entropy, (X, y), batch_size=50, batchnorm="recompute")
    rng = np.random.default_rng(0)
    for scale in (0.0, 0.3, 1.0):
        x = obj.x0 + scale * rng.standard_normal(obj.dim)
        want = _reference_loss(net, x, X, y, 50)
        assert obj.loss(x) == pytest.approx(want, rel=1e-12)
    # the user's model is untouched: its running statistics and flags are as given
    assert not net.training
    running = pc.objective(net, F.cross_entropy, (X, y), batch_size=50)
    assert running.loss(running.x0) == pytest.approx(
        float(F.cross_entropy(net(X), y).detach()), rel=1e-12
    )


def test_statistics_are_example_weighted_over_uneven_batches():
    # the first BatchNorm sees Linear outputs that do not depend on any normalization,
    # so its recomputed mean is the plain mean of those outputs over all 300 examples,
    # whatever the batches (64, 64, 64, 64, 44)
    X, y = digits(300)
    net = _bn_mlp()
    obj = pc.objective(net, F.cross_entropy, (X, y), batch_size=64, batchnorm="recompute")
    x = obj.x0 + 0.2 * np.random.default_rng(1).standard_normal(obj.dim)
    at = obj.statistics_at(x)
    W = torch.from_numpy(x[: 16 * 64]).view(16, 64)
    b = torch.from_numpy(x[16 * 64 : 16 * 65])
    np.testing.assert_allclose(at._buffers["1.running_mean"], (X @ W.T + b).mean(0), rtol=1e-12)


def test_paths_between_batchnorm_models_recompute_at_each_t():
    X, y = digits(300)
    a = pc.objective(_bn_mlp(0), F.cross_entropy, (X, y), batch_size=100, batchnorm="recompute")
    b = pc.objective(_bn_mlp(1), F.cross_entropy, (X, y), batch_size=100, batchnorm="recompute")
    ts = np.linspace(0, 1, 5)
    path = pc.evaluate_path(a, a, b, ts=ts, refine=0)
    want = [_reference_loss(a.model, (1 - t) * a.x0 + t * b.x0, X, y, 100) for t in ts]
    np.testing.assert_allclose(path.losses, want, rtol=1e-12)
    # the start model's running statistics: evaluate_path warns that the endpoint
    # objectives (recomputing) disagree with it, naming the fix
    with pytest.warns(UserWarning, match="batchnorm='recompute'"):
        running = pc.evaluate_path(
            pc.objective(a.model, F.cross_entropy, (X, y), batch_size=100), a, b, ts=ts, refine=0
        )
    # the start model's statistics are wrong for the rest of the path
    assert np.max(np.abs(running.losses - path.losses)) > 1e-2


def test_gradients_are_refused_and_statistics_at_gives_curvature():
    X, y = digits(300)
    net = _bn_mlp()
    obj = pc.objective(net, F.cross_entropy, (X, y), batch_size=100, batchnorm="recompute")
    x = obj.x0 + 0.3 * np.random.default_rng(2).standard_normal(obj.dim)
    with pytest.raises(ValueError, match=r"statistics_at\(x\)"):
        obj.grad(x)
    with pytest.raises(ValueError, match="batchnorm='batch'"):
        obj.hvp(x, np.ones(obj.dim))
    at = obj.statistics_at(x)
    assert at.batchnorm == "running"
    assert at.loss(x) == pytest.approx(obj.loss(x), rel=1e-13)
    # the same model with update_bn's statistics, wrapped in running mode: same HVP
    ref = copy.deepcopy(net)
    torch.nn.utils.vector_to_parameters(torch.from_numpy(x), ref.parameters())
    update_bn([X[i : i + 100] for i in range(0, 300, 100)], ref)
    ref_obj = pc.objective(ref.eval(), F.cross_entropy, (X, y), batch_size=100)
    v = np.random.default_rng(3).standard_normal(obj.dim)
    np.testing.assert_allclose(at.hvp(x, v), ref_obj.hvp(x, v), rtol=1e-10, atol=1e-12)
    assert at.fingerprint()["state"] == ref_obj.fingerprint()["state"]
    assert at.fingerprint() != obj.fingerprint()
    # a subset keeps the recomputed statistics rather than the model's own
    sub = at.subset(np.arange(50))
    np.testing.assert_array_equal(sub._buffers["1.running_var"], at._buffers["1.running_var"])


def test_streamed_and_pickled_recompute_give_the_same_losses():
    X, y = digits(300)
    net = _bn_mlp()
    held = pc.objective(net, F.cross_entropy, (X, y), batch_size=60, batchnorm="recompute")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=60)
    streamed = pc.objective(net, F.cross_entropy, loader, stream=True, batchnorm="recompute")
    x = held.x0 + 0.5 * np.random.default_rng(4).standard_normal(held.dim)
    assert streamed.loss(x) == pytest.approx(held.loss(x), rel=1e-12)
    assert streamed.metrics(x) == pytest.approx(held.metrics(x), rel=1e-12)
    again = pickle.loads(pickle.dumps(held))
    assert again.loss(x) == pytest.approx(held.loss(x), rel=1e-13)


def test_the_refusal_of_training_mode_batchnorm_names_recompute():
    X, y = digits(100)
    net = _bn_mlp().train()
    with pytest.raises(ValueError, match="batchnorm='recompute'.*update_bn"):
        pc.objective(net, F.cross_entropy, (X, y))
