"""Small PyTorch models on scikit-learn digits, shared by the torch tests."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

import probecore as pc


def digits(n: int | None = None, *, image: bool = False, dtype=torch.float64):
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X[:n] / 16.0, dtype=dtype)
    if image:
        X = X.view(-1, 1, 8, 8)
    return X, torch.tensor(y[:n])


def mlp(hidden: int = 32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, 10)).double()


def cnn(seed: int = 0, batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Conv2d(1, 8, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(8))
    layers += [
        nn.Tanh(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 10),
    ]
    return nn.Sequential(*layers).double()


def with_running_stats(model: nn.Module, X: torch.Tensor) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics, then switch to eval."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(X)
    return model.eval()


def make_objectives() -> dict[str, pc.Objective]:
    X, y = digits(300)
    Xi, yi = digits(200, image=True)
    bn = with_running_stats(cnn(batchnorm=True), Xi)
    return {
        "mlp": pc.objective(mlp().eval(), F.cross_entropy, (X, y)),
        "mlp_batched": pc.objective(mlp().eval(), F.cross_entropy, (X, y), batch_size=64),
        "cnn": pc.objective(cnn().eval(), F.cross_entropy, (Xi, yi)),
        "cnn_batchnorm": pc.objective(bn, F.cross_entropy, (Xi, yi), batch_size=50),
    }


def flat_loss(model: nn.Module, X, y):
    """The loss as a function of one flat vector, for torch.func.hessian references."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]

    def f(flat):
        params = {
            n: t.view(s) for n, t, s in zip(names, torch.split(flat, sizes), shapes, strict=True)
        }
        return F.cross_entropy(torch.func.functional_call(model, params, (X,)), y)

    x0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return f, x0


def numpy_rng(seed=0):
    return np.random.default_rng(seed)
