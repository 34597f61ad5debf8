"""An example target for the probecore CLI: a small PyTorch CNN on scikit-learn digits.

    probecore eigenvalues examples/torch_digits.py:cnn --k 3
    probecore connect examples/torch_digits.py:mlp --end examples/torch_digits.py:mlp_seed1

Each function trains its model briefly (fixed seeds, full-batch Adam) and returns
``(model, loss_fn, data)``, which ``probecore.objective`` turns into an Objective.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F


def _data(image: bool):
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X[:1347] / 16.0, dtype=torch.float32)
    if image:
        X = X.view(-1, 1, 8, 8)
    return X, torch.tensor(y[:1347])


def _train(model: nn.Module, X, y, steps: int) -> nn.Module:
    model = model.float()  # the data is float32, whatever torch's default dtype
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
    return model.eval()


def cnn():
    """A 2-layer CNN (994 parameters), trained 60 full-batch Adam steps."""
    X, y = _data(image=True)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    return _train(model, X, y, 60), F.cross_entropy, (X, y)


def _mlp(seed: int):
    X, y = _data(image=False)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    return {
        "model": _train(model, X, y, 300),
        "loss_fn": F.cross_entropy,
        "data": (X, y),
        "options": {"dtype": torch.float64},
    }


def mlp():
    """An MLP 64-32-10 trained from seed 0, evaluated in float64."""
    return _mlp(0)


def mlp_seed1():
    """The same MLP trained from seed 1 (the other end for ``probecore connect``)."""
    return _mlp(1)
