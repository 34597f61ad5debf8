"""Stored runs of PyTorch models know their data, loss function, model and precision."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import probecore as pc

from .models_torch import digits, mlp

pytest.importorskip("zarr")


def _plane(obj, store):
    D = pc.random_directions(obj, k=2, rng=0)
    grid = np.linspace(-1, 1, 4)
    return pc.plane(obj, D, alphas=grid, betas=grid, chunk_size=3, store=store)


def _rays(obj, store):
    return pc.rays(obj, n_rays=8, rng=0, chunk_size=3, store=store)


@pytest.mark.parametrize("probe", [_plane, _rays])
def test_resume_with_other_data_loss_model_or_precision_is_refused(tmp_path, probe):
    X, y = digits(120)
    model = mlp(16)
    f = pc.objective(model, F.cross_entropy, (X, y))
    path = tmp_path / "run"
    first = probe(f, path)
    X2 = X.clone()
    X2[7, 3] += 0.25  # one pixel of one image
    relu = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).double()
    relu.load_state_dict(model.state_dict())  # the same weights, another network
    others = {
        r"data \(digest\)": pc.objective(model, F.cross_entropy, (X2, y)),
        "number of examples": pc.objective(model, F.cross_entropy, (X[:100], y[:100])),
        "loss function": pc.objective(model, nn.CrossEntropyLoss(label_smoothing=0.1), (X, y)),
        r"precision \(dtype\)": pc.objective(model, F.cross_entropy, (X, y), dtype="float32"),
        "model": pc.objective(relu, F.cross_entropy, (X, y)),
    }
    for what, other in others.items():
        with pytest.raises(ValueError, match=f"another objective: its {what}"):
            probe(other, path)
    again = probe(pc.objective(model, F.cross_entropy, (X, y)), path)  # the same: resumes
    assert again.n_loss_evals == 1
    for field in dataclasses.fields(first):
        a, b = getattr(first, field.name), getattr(again, field.name)
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            assert np.array_equal(a, b, equal_nan=True), field.name


def test_loss_module_settings_are_part_of_the_fingerprint():
    X, y = digits(50)
    model = mlp(8)
    a = pc.objective(model, nn.CrossEntropyLoss(), (X, y)).fingerprint()
    b = pc.objective(model, nn.CrossEntropyLoss(reduction="mean"), (X, y)).fingerprint()
    c = pc.objective(model, nn.CrossEntropyLoss(label_smoothing=0.2), (X, y)).fingerprint()
    assert a == b and a["loss_fn"] != c["loss_fn"]
    with torch.no_grad():
        model[0].bias.add_(0.0)
    assert pc.objective(model, nn.CrossEntropyLoss(), (X, y)).fingerprint() == a
