"""The PyTorch backend against torch.func references, on digits models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from probecore_torch import TorchObjective
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import probecore as pc
from probecore.testing import check_objective, dense_hessian

from .models_torch import (
    cnn,
    digits,
    flat_loss,
    make_objectives,
    mlp,
    numpy_rng,
    with_running_stats,
)

EPS = np.finfo(np.float64).eps


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.fixture(scope="module")
def torch_objectives():
    return make_objectives()


@pytest.mark.parametrize("name", ["mlp", "mlp_batched", "cnn", "cnn_batchnorm"])
def test_check_objective_float64(torch_objectives, name):
    assert check_objective(torch_objectives[name]).passed


def test_check_objective_float32_and_dispatch():
    X, y = digits(200)
    obj = pc.objective(mlp().float().eval(), F.cross_entropy, (X.float(), y))
    assert isinstance(obj, TorchObjective) and obj.dtype == np.float32
    assert check_objective(obj).passed
    assert "torch" in pc.backend_names()


def test_against_torch_func_dense_references():
    X, y = digits(400)
    model = mlp(hidden=40).eval()  # 3,010 parameters
    obj = pc.objective(model, F.cross_entropy, (X, y), batch_size=128)
    f, x0 = flat_loss(model, X, y)
    H = torch.func.hessian(f)(x0).numpy()
    g = torch.func.grad(f)(x0).numpy()
    x = x0.numpy()
    v = np.random.default_rng(0).standard_normal(obj.dim)
    # Batching changes only the order of float64 sums: relative error ~ n·eps.
    assert abs(obj.loss(x) - float(f(x0))) <= 1e-10 * abs(float(f(x0)))
    assert _rel(obj.grad(x), g) <= 1e-10
    assert _rel(obj.hvp(x, v), H @ v) <= 1e-10
    lam = np.linalg.eigvalsh(H)
    r = pc.lanczos(obj, k=5, rng=0)
    np.testing.assert_allclose(r.eigenvalues, lam[::-1][:5], rtol=0, atol=1e-8 * abs(lam).max())


@pytest.mark.parametrize("layout", [7, 64, None, "loader"])
def test_batching_does_not_change_the_objective(layout):
    X, y = digits(300)
    model = mlp().eval()
    reference = pc.objective(model, F.cross_entropy, (X, y))
    if layout == "loader":
        data = DataLoader(TensorDataset(X, y), batch_size=33, shuffle=False)
        obj = pc.objective(model, F.cross_entropy, data)
    else:
        obj = pc.objective(model, F.cross_entropy, (X, y), batch_size=layout)
    x = reference.x0 + 0.1 * np.random.default_rng(1).standard_normal(reference.dim)
    v = np.random.default_rng(2).standard_normal(reference.dim)
    # Weighted batch means reproduce the full mean up to summation-order rounding.
    assert abs(obj.loss(x) - reference.loss(x)) <= 1e-12 * abs(reference.loss(x))
    assert _rel(obj.grad(x), reference.grad(x)) <= 1e-12
    assert _rel(obj.hvp(x, v), reference.hvp(x, v)) <= 1e-12
    assert obj.n_examples == 300


def test_short_last_batch_is_not_over_weighted():
    X, y = digits(100)
    model = mlp().eval()
    obj = pc.objective(model, F.cross_entropy, (X, y), batch_size=30)  # 30, 30, 30, 10
    with torch.no_grad():
        expected = float(F.cross_entropy(model(X), y))
    assert abs(obj.loss(obj.x0) - expected) <= 1e-13


def test_user_model_is_never_modified():
    X, y = digits(150, image=True)
    model = with_running_stats(cnn(batchnorm=True), X)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    obj = pc.objective(model, F.cross_entropy, (X, y), batchnorm="batch")
    x = obj.x0 + 0.5
    obj.loss(x), obj.grad(x), obj.hvp(x, np.ones(obj.dim)), obj.metrics(x)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_batchnorm_running_versus_batch_statistics():
    X, y = digits(200, image=True)
    model = with_running_stats(cnn(batchnorm=True), X[:50])
    running = pc.objective(model, F.cross_entropy, (X, y), batch_size=40)
    batch = pc.objective(model, F.cross_entropy, (X, y), batch_size=40, batchnorm="batch")
    whole = pc.objective(model, F.cross_entropy, (X, y), batchnorm="running")
    x = running.x0
    # running statistics: the objective does not depend on the batching
    assert abs(running.loss(x) - whole.loss(x)) <= 1e-12 * whole.loss(x)
    # batch statistics: a different, still exactly differentiable, objective
    assert abs(batch.loss(x) - running.loss(x)) > 1e-6
    assert check_objective(batch).passed
    model.train()
    with torch.no_grad():
        ref = np.mean(
            [float(F.cross_entropy(model(X[i : i + 40]), y[i : i + 40])) for i in range(0, 200, 40)]
        )
    model.eval()
    assert abs(batch.loss(x) - ref) <= 1e-12


def test_train_mode_dropout_is_refused_with_advice():
    X, y = digits(50)
    model = nn.Sequential(nn.Linear(64, 16), nn.Dropout(0.5), nn.Linear(16, 10)).double()
    model.train()
    with pytest.raises(ValueError, match=r"dropout in training mode.*model\.eval\(\)"):
        pc.objective(model, F.cross_entropy, (X, y))
    obj = pc.objective(model, F.cross_entropy, (X, y), dropout="off")
    assert obj.loss(obj.x0) == obj.loss(obj.x0) and model.training
    assert check_objective(obj).passed


def test_nondeterministic_model_is_refused():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, 10).double()

        def forward(self, x):
            return self.lin(x) + 1e-3 * torch.randn(len(x), 10, dtype=x.dtype)

    X, y = digits(50)
    with pytest.raises(ValueError, match="not deterministic"):
        pc.objective(Noisy(), F.cross_entropy, (X, y))


def test_bad_input_gives_clear_errors():
    X, y = digits(50)
    with pytest.raises(ValueError, match="no trainable parameters"):
        pc.objective(nn.Tanh(), F.cross_entropy, (X, y))
    with pytest.raises(ValueError, match="must return a scalar"):
        pc.objective(mlp().eval(), lambda o, t: F.cross_entropy(o, t, reduction="none"), (X, y))
    with pytest.raises(ValueError, match="differ in length: 50 vs 49"):
        pc.objective(mlp().eval(), F.cross_entropy, (X, y[:49]))
    with pytest.raises(ValueError, match="batch 1 of `data` has 5 inputs but 4 targets"):
        pc.objective(mlp().eval(), F.cross_entropy, [(X[:5], y[:5]), (X[5:10], y[5:9])])
    bad = mlp().eval()
    with torch.no_grad():
        bad[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="parameters are not finite: '0.weight' holds nan"):
        pc.objective(bad, F.cross_entropy, (X, y))
    with pytest.raises(ValueError, match=r"loss at the model's parameters is not finite \(inf\)"):
        pc.objective(mlp().eval(), lambda o, t: F.cross_entropy(o, t) / 0.0, (X, y))
    with pytest.raises(TypeError, match="does not know the option.*colour"):
        pc.objective(mlp().eval(), F.cross_entropy, (X, y), colour="red")
    with pytest.raises(ValueError, match="`batchnorm` must be one of"):
        pc.objective(mlp().eval(), F.cross_entropy, (X, y), batchnorm="sometimes")
    obj = pc.objective(mlp().eval(), F.cross_entropy, (X, y))
    with pytest.raises(ValueError, match=r"`x` must have shape"):
        obj.loss(np.zeros(3))


def test_bad_data_and_losses_are_named_at_construction():
    X, y = digits(50)
    Xinf = X.clone()
    Xinf[7, 3] = float("inf")
    with pytest.raises(ValueError, match=r"batch 0 of `data`: its inputs hold 1 non-finite"):
        pc.objective(mlp().eval(), F.cross_entropy, (Xinf, y))
    loader = DataLoader(TensorDataset(Xinf, y), batch_size=5)
    with pytest.raises(ValueError, match=r"batch 1 of `data`: its inputs hold 1 non-finite"):
        pc.objective(mlp().eval(), F.cross_entropy, loader)
    with pytest.raises(ValueError, match="`data` holds no examples"):
        pc.objective(mlp().eval(), F.cross_entropy, (X[:0], y[:0]))
    with pytest.raises(TypeError, match="it returned float. Do not call .item"):
        pc.objective(mlp().eval(), lambda o, t: F.cross_entropy(o, t).item(), (X, y))


def test_a_float64_point_beyond_float32_is_refused():
    X, y = digits(50)
    obj = pc.objective(mlp().float().eval(), F.cross_entropy, (X.float(), y))
    x = obj.x0.astype(np.float64)
    x[0] = 1e39  # finite in float64; in float32 it would become inf
    with pytest.raises(ValueError, match="`x` does not fit in float32: entry 0"):
        obj.loss(x)
    with pytest.raises(ValueError, match="`v` does not fit in float32: entry 0"):
        obj.hvp(obj.x0, x)


def test_layout_roles_from_named_parameters():
    model = (
        nn.Sequential(
            nn.Conv2d(1, 4, 3),
            nn.BatchNorm2d(4),
            nn.Flatten(),
            nn.LayerNorm(144),
            nn.Linear(144, 10),
        )
        .double()
        .eval()
    )
    X, y = digits(20, image=True)
    obj = pc.objective(model, F.cross_entropy, (X, y))
    roles = {b.name: b.role for b in obj.layout}
    assert roles == {
        "0.weight": "weight",
        "0.bias": "bias",
        "1.weight": "norm",
        "1.bias": "norm",
        "3.weight": "norm",
        "3.bias": "norm",
        "4.weight": "weight",
        "4.bias": "bias",
    }
    assert obj.layout["0.weight"].shape == (4, 1, 3, 3)
    np.testing.assert_array_equal(
        obj.x0[obj.layout["4.bias"].slice], model[4].bias.detach().numpy()
    )


def test_hvp_many_subset_metrics_and_span():
    X, y = digits(120)
    obj = pc.objective(mlp().eval(), F.cross_entropy, (X, y), batch_size=50)
    V = np.random.default_rng(0).standard_normal((3, obj.dim))
    np.testing.assert_allclose(
        obj.hvp_many(obj.x0, V), np.stack([obj.hvp(obj.x0, v) for v in V]), rtol=0, atol=1e-14
    )
    sub = obj.subset(np.arange(40, 100))
    direct = pc.objective(mlp().eval(), F.cross_entropy, (X[40:100], y[40:100]))
    assert abs(sub.loss(sub.x0) - direct.loss(direct.x0)) <= 1e-13
    acc = obj.metrics(obj.x0)["accuracy"]
    with torch.no_grad():
        assert acc == pytest.approx(float((mlp()(X).argmax(1) == y).double().mean()))
    spans = obj.losses_in_span(obj.x0, V[:2] / 100, np.array([[0.0, 0.0], [1.0, -2.0]]))
    assert spans[0] == obj.loss(obj.x0)
    assert spans[1] == pytest.approx(obj.loss(obj.x0 + (V[0] - 2 * V[1]) / 100), rel=1e-14)


def test_spectrum_calls_work_on_a_torch_model():
    X, y = digits(150, image=True)
    obj = pc.objective(cnn().eval(), F.cross_entropy, (X, y))
    H = pc.HessianOperator(obj)
    top = pc.lanczos(H, k=3, rng=0)
    tr = pc.hutchpp(H, n_matvecs=30, rng=0)
    dens = pc.spectral_density(H, n_probes=2, n_steps=20, rng=0)
    Hd = dense_hessian(obj)
    lam = np.linalg.eigvalsh((Hd + Hd.T) / 2)
    np.testing.assert_allclose(top.eigenvalues, lam[::-1][:3], atol=1e-8 * abs(lam).max())
    assert abs(tr.estimate - np.trace(Hd)) <= 4 * tr.std_error + 1e-10 * abs(np.trace(Hd))
    np.testing.assert_allclose(dens.weights.sum(axis=1), 1.0, atol=1e-12)


def test_mixed_precision_start_reaches_float64_accuracy_in_fewer_float64_hvps():
    # Lanczos on the float32 objective, then float64 Lanczos from its eigenvector
    # (docs/backends.md). The float32 vector has residual <= 1e-4·‖H‖ (float32's default
    # tol), so the float64 run starts near its target; its eigenvalue error is at most
    # ‖r‖²/gap (the Ritz value of the top eigenvector from a vector with residual r).
    X, y = digits(400)
    model = mlp(hidden=40).eval()  # 3,010 parameters
    obj64 = pc.objective(model, F.cross_entropy, (X, y))
    obj32 = pc.objective(model, F.cross_entropy, (X, y), dtype="float32")
    lam = np.linalg.eigvalsh(dense_hessian(obj64))[::-1]
    rough = pc.lanczos(obj32, k=1, verify=False, rng=0)
    warm = pc.lanczos(obj64, k=1, tol=1e-5, verify=False, v0=rough.eigenvectors[:, 0])
    cold = pc.lanczos(obj64, k=1, tol=1e-5, verify=False, rng=0)
    assert warm.converged and warm.eigenvectors.dtype == np.float64
    bound = warm.residual_norms[0] ** 2 / (lam[0] - lam[1]) + 1e2 * EPS * lam[0]
    assert abs(warm.eigenvalues[0] - lam[0]) <= bound
    assert abs(warm.eigenvalues[0] - lam[0]) <= 1e-8 * lam[0]
    assert warm.n_matvecs < cold.n_matvecs


def test_channels_last_for_float32_convolutions_on_the_cpu():
    X, y = digits(300, image=True, dtype=torch.float32)
    model = cnn().float().eval()
    auto = pc.objective(model, F.cross_entropy, (X, y))
    kept = pc.objective(model, F.cross_entropy, (X, y), memory_format="preserve")
    assert auto._channels_last and not kept._channels_last
    assert X.is_contiguous()  # the caller's data keeps its layout
    assert not pc.objective(cnn().double().eval(), F.cross_entropy, (X.double(), y))._channels_last
    assert check_objective(auto).passed
    eps = np.finfo(np.float32).eps
    x = auto.x0 + np.float32(0.1) * numpy_rng().standard_normal(auto.dim).astype(np.float32)
    # only the order of the convolution sums differs: a few ulps of the loss
    assert abs(auto.loss(x) - kept.loss(x)) <= 16 * eps * abs(kept.loss(x))
    assert auto.metrics(x) == kept.metrics(x)
    # gradients take the same functional_call path, on inputs in another layout
    g = kept.grad(x)
    assert np.linalg.norm(auto.grad(x) - g) <= 32 * eps * np.linalg.norm(g)
    with pytest.raises(ValueError, match="memory_format"):
        pc.objective(model, F.cross_entropy, (X, y), memory_format="nhwc")


def test_dropout_refusal_names_only_layers_in_training_mode():
    X, y = digits(50)
    model = nn.Sequential(
        nn.Linear(64, 16), nn.Dropout(0.5), nn.Linear(16, 10), nn.Dropout(0.1)
    ).double()
    model.train()
    model[1].eval()
    model[3].eval()  # the wrapper trains, its dropout layers do not: nothing is random
    obj = pc.objective(model, F.cross_entropy, (X, y))
    assert obj.loss(obj.x0) == obj.loss(obj.x0)
    model.eval()
    model[3].train()  # an eval wrapper around one dropout layer in training mode
    with pytest.raises(ValueError, match=r"dropout in training mode \(3\)"):
        pc.objective(model, F.cross_entropy, (X, y))


class _WithAux(nn.Module):
    """Returns ``(logits, penalty)``, as models with an auxiliary loss do."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 10).double()

    def forward(self, x):
        logits = self.lin(x)
        return logits, (self.lin.weight**2).sum()


def test_metrics_of_a_model_returning_a_tuple():
    X, y = digits(80)
    torch.manual_seed(0)
    model = _WithAux().eval()

    def loss_fn(out, target):
        logits, penalty = out
        return F.cross_entropy(logits, target) + 1e-3 * penalty

    obj = pc.objective(model, loss_fn, (X, y))
    want = float((model(X)[0].argmax(1) == y).double().mean())
    assert obj.metrics(obj.x0) == {"accuracy": pytest.approx(want, abs=1e-15)}
    d = pc.random_directions(obj, k=1, rng=0)
    line = pc.line(obj, d.vectors[0], coords=[-0.5, 0.0, 0.5], metrics=True)
    assert line.metric_names == ("accuracy",) and line.metric_values[0][1] == pytest.approx(want)


class _Tokens(nn.Module):
    """A toy sequence model: (batch, length) token ids -> (batch, length, vocab) logits."""

    def __init__(self, vocab=7):
        super().__init__()
        self.emb = nn.Embedding(vocab, 5).double()
        self.out = nn.Linear(5, vocab).double()

    def forward(self, ids):
        return self.out(torch.tanh(self.emb(ids)))


def test_token_level_accuracy_for_sequence_logits_ignores_minus_100():
    torch.manual_seed(0)
    ids = torch.randint(0, 7, (12, 6))
    targets = torch.randint(0, 7, (12, 6))
    targets[:, -2:] = -100  # padding, as Hugging Face labels mark it
    model = _Tokens().eval()

    def loss_fn(logits, t):
        return F.cross_entropy(logits.reshape(-1, 7), t.reshape(-1), ignore_index=-100)

    obj = pc.objective(model, loss_fn, (ids, targets))
    with torch.no_grad():
        pred = model(ids).argmax(-1)
    kept = targets != -100
    want = float(((pred == targets) & kept).sum()) / float(kept.sum())
    assert obj.metrics(obj.x0)["accuracy"] == pytest.approx(want, abs=1e-15)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_models_get_a_path_forward(half):
    X, y = digits(40)
    model = nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10)).to(half)
    with pytest.raises(ValueError, match=r"Pass dtype=torch.float32.*a copy of the model"):
        pc.objective(model, F.cross_entropy, (X.float(), y))
    obj = pc.objective(model, F.cross_entropy, (X.float(), y), dtype=torch.float32)
    want = obj.x0.copy()  # the copy evaluates the same weights, in float32
    with torch.no_grad():
        ref = float(F.cross_entropy(model.float()(X.float()), y))
    assert obj.loss(want) == pytest.approx(ref, rel=1e-6)


class _Attention(nn.Module):
    """A one-head self-attention classifier through F.scaled_dot_product_attention."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24).double()
        self.out = nn.Linear(8, 3).double()

    def forward(self, x):
        q, k, v = self.qkv(x).unsqueeze(1).chunk(3, -1)
        return self.out(F.scaled_dot_product_attention(q, k, v).squeeze(1).mean(1))


def test_hvp_through_scaled_dot_product_attention_equals_the_dense_hessian():
    # the fused CPU attention kernel has no double backward: the first HVP failed with
    # "derivative for aten::_scaled_dot_product_flash_attention_for_cpu_backward ..."
    from torch.func import functional_call, hessian
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    model = _Attention().eval()
    X, y = torch.randn(10, 5, 8, dtype=torch.float64), torch.randint(0, 3, (10,))
    obj = pc.objective(model, F.cross_entropy, (X, y))
    H = dense_hessian(obj, obj.x0)
    named = list(model.named_parameters())

    def loss(flat):
        parts = torch.split(flat, [p.numel() for _, p in named])
        params = {n: t.view(p.shape) for (n, p), t in zip(named, parts, strict=True)}
        return F.cross_entropy(functional_call(model, params, (X,)), y)

    with sdpa_kernel([SDPBackend.MATH]):
        want = hessian(loss)(torch.from_numpy(obj.x0)).numpy()
    assert np.max(np.abs(H - want)) <= 1e-10 * np.max(np.abs(want))


def test_hvp_many_batches_rows_on_dense_networks_and_loops_elsewhere(monkeypatch):
    import probecore_torch._objective as impl

    X, y = digits(200)
    rng = np.random.default_rng(0)
    dense = pc.objective(mlp(hidden=16), F.cross_entropy, (X, y))
    conv = pc.objective(cnn(), F.cross_entropy, (X.view(-1, 1, 8, 8), y))
    assert dense._batch_rows and not conv._batch_rows
    for obj in (dense, conv):
        V = rng.standard_normal((5, obj.dim))
        rows = np.stack([obj.hvp(obj.x0, v) for v in V])
        want = V @ dense_hessian(obj)  # H is symmetric
        got = obj.hvp_many(obj.x0, V)
        np.testing.assert_allclose(got, rows, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    # blocks of rows: 2 rows per batched backward, and a last block of one row
    monkeypatch.setattr(impl, "BATCHED_NUMBERS", 2 * dense.dim)
    V = rng.standard_normal((5, dense.dim))
    np.testing.assert_allclose(
        dense.hvp_many(dense.x0, V),
        np.stack([dense.hvp(dense.x0, v) for v in V]),
        rtol=1e-12,
        atol=1e-14,
    )
    assert dense.hvp_many(dense.x0, np.empty((0, dense.dim))).shape == (0, dense.dim)


def test_batched_hvp_many_in_float32_and_with_a_frozen_non_linear_part():
    import copy

    X, y = digits(200)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 10))
    assert not pc.objective(copy.deepcopy(net), F.cross_entropy, (X.float(), y))._batch_rows
    net[1].requires_grad_(False)  # only Linear layers are trained: rows are batched
    o32 = pc.objective(copy.deepcopy(net).float(), F.cross_entropy, (X.float(), y))
    o64 = pc.objective(copy.deepcopy(net).double(), F.cross_entropy, (X, y))
    assert o32._batch_rows and o64._batch_rows
    assert (o32.dtype, o64.dtype) == (np.float32, np.float64)
    V = np.random.default_rng(1).standard_normal((9, o32.dim))
    want = o64.hvp_many(o64.x0, V)
    rows = np.stack([o64.hvp(o64.x0, v) for v in V])
    np.testing.assert_allclose(want, rows, rtol=1e-12, atol=1e-14)
    got = o32.hvp_many(o32.x0, V.astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_hvp_many_falls_back_to_the_loop_when_the_batched_backward_fails(monkeypatch):
    X, y = digits(100)
    obj = pc.objective(mlp(hidden=8), F.cross_entropy, (X, y))
    V = np.random.default_rng(2).standard_normal((4, obj.dim))
    want = np.stack([obj.hvp(obj.x0, v) for v in V])
    loop = obj._second_backward

    def no_vmap(graph, vt, batched=False):
        if batched:
            raise RuntimeError("batching rule not implemented")
        return loop(graph, vt)

    monkeypatch.setattr(obj, "_second_backward", no_vmap)
    np.testing.assert_array_equal(obj.hvp_many(obj.x0, V), want)
    assert not obj._batch_rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows_numbers", [None, 1])
def test_losses_in_span_equal_the_default_route_bit_for_bit(monkeypatch, dtype, rows_numbers):
    """The torch loop (points formed a block at a time on a small model, or one at a time
    straight into the copy's parameters) gives the losses of the default per-point route,
    bit for bit, over several batches, a chunk longer than a block and zero coefficients."""
    import probecore_torch._objective as torch_objective

    from probecore.backend import SPAN_ROWS_NUMBERS

    if rows_numbers is not None:  # force the one-point-at-a-time route on this small model
        monkeypatch.setattr(torch_objective, "SPAN_ROWS_NUMBERS", rows_numbers)
    X, y = digits(150)
    obj = pc.objective(mlp().to(dtype).eval(), F.cross_entropy, (X.to(dtype), y), batch_size=64)
    rng = np.random.default_rng(0)
    basis = (rng.standard_normal((2, obj.dim)) / 20).astype(obj.dtype)
    axis = np.linspace(-1.0, 1.0, 11)
    A, B = np.meshgrid(axis, axis, indexing="ij")
    coeffs = np.tile(np.stack([A.ravel(), B.ravel()], axis=1), (3, 1))  # 363 points
    assert len(coeffs) > SPAN_ROWS_NUMBERS // obj.dim
    got = obj.losses_in_span(obj.x0, basis, coeffs)
    ref = pc.AbstractObjective.losses_in_span(obj, obj.x0, basis, coeffs)
    np.testing.assert_array_equal(got, ref)
    assert got[60] == obj.loss(obj.x0)  # (0, 0)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("rows_numbers", [None, 1])
def test_channels_last_span_is_formed_parameter_by_parameter(monkeypatch, stream, rows_numbers):
    """A float32 CNN's channels-last evaluation copy has separate parameter tensors: a
    small model's points are formed a block at a time and copied in parameter by
    parameter; a large one's (forced here) piece by piece, a row of a parameter at a
    time through one bounded scratch vector. Both give the losses of the default route
    bit for bit."""
    import probecore_torch._objective as torch_objective
    from torch.utils.data import DataLoader, TensorDataset

    if rows_numbers is not None:  # one row of each parameter at a time
        monkeypatch.setattr(torch_objective, "SPAN_ROWS_NUMBERS", rows_numbers)
    X, y = digits(90, image=True, dtype=torch.float32)
    model = cnn().float().eval()
    data = DataLoader(TensorDataset(X, y), 40) if stream else (X, y)
    obj = pc.objective(model, F.cross_entropy, data, stream=stream)
    assert obj._channels_last
    rng = np.random.default_rng(2)
    basis = (rng.standard_normal((2, obj.dim)) / 10).astype(np.float32)
    axis = np.linspace(-1.0, 1.0, 5)
    A, B = np.meshgrid(axis, axis, indexing="ij")
    coeffs = np.stack([A.ravel(), B.ravel()], axis=1)
    got = obj.losses_in_span(obj.x0, basis, coeffs)
    np.testing.assert_array_equal(
        got, pc.AbstractObjective.losses_in_span(obj, obj.x0, basis, coeffs)
    )
    assert got[12] == obj.loss(obj.x0)


def test_threads_evaluate_each_at_its_own_point():
    """A thread-pool executor (or a Dask worker's threads) shares one objective: every
    evaluation holds the model's lock, so each chunk is evaluated at its own points and
    the plane equals the serial one bit for bit. Before the lock, threads wrote their
    points into the same evaluation copy and losses came out up to 5.6 away."""
    from concurrent.futures import ThreadPoolExecutor

    X, y = digits(300)
    obj = pc.objective(mlp().eval(), F.cross_entropy, (X, y), batch_size=100)
    D = pc.random_directions(obj, k=2, rng=0)
    axis = np.linspace(-2.0, 2.0, 15)
    serial = pc.plane(obj, D, alphas=axis, betas=axis, chunk_size=2, progress=False).losses
    with ThreadPoolExecutor(4) as pool:
        threaded = pc.plane(
            obj, D, alphas=axis, betas=axis, chunk_size=2, executor=pool, progress=False
        ).losses
        # HVPs at different points at once: each against its own gradient graph
        rng = np.random.default_rng(1)
        xs = [obj.x0 + 0.05 * rng.standard_normal(obj.dim) for _ in range(8)]
        v = rng.standard_normal(obj.dim)
        together = list(pool.map(lambda x: obj.hvp(x, v), xs))
    np.testing.assert_array_equal(threaded, serial)
    for x, hv in zip(xs, together, strict=True):
        np.testing.assert_array_equal(hv, obj.hvp(x, v))


def test_construction_and_subset_wait_for_other_threads_evaluations():
    """Building an objective (or a subset) reads the model's parameters, which another
    thread's gradient swaps for its own point while it runs: construction holds the
    model's lock too, so every objective built starts at the model's parameters."""
    import threading

    X, y = digits(200)
    model = mlp(hidden=16).eval()
    obj = pc.objective(model, F.cross_entropy, (X, y), batch_size=50)
    x1 = obj.x0 + 0.5
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            obj.grad(x1)

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        starts = [pc.objective(model, F.cross_entropy, (X, y)).x0 for _ in range(30)]
        starts += [obj.subset(np.arange(40)).x0 for _ in range(30)]
    finally:
        stop.set()
        worker.join()
    for x0 in starts:
        np.testing.assert_array_equal(x0, obj.x0)


def test_an_evaluation_from_inside_an_evaluation_is_refused():
    """A metrics_fn that calls the objective would write its point into the evaluation
    copy under the evaluation that called it (metrics came out 2.52 for 2.37): refused,
    and the objective works as before afterwards."""
    X, y = digits(120)
    holder = {}

    def metrics_fn(out, target):
        holder["obj"].loss(holder["obj"].x0 + 1.0)
        return {"ce": F.cross_entropy(out, target)}

    obj = pc.objective(mlp().eval(), F.cross_entropy, (X, y), metrics_fn=metrics_fn)
    holder["obj"] = obj
    with pytest.raises(RuntimeError, match="from inside one of its own evaluations"):
        obj.metrics(obj.x0)
    plain = pc.objective(mlp().eval(), F.cross_entropy, (X, y))
    assert obj.loss(obj.x0) == plain.loss(plain.x0)
    coeffs = np.array([[0.0, 0.0], [1.0, 1.0]])
    basis = np.ones((2, obj.dim)) / 100
    np.testing.assert_array_equal(
        obj.losses_in_span(obj.x0, basis, coeffs), plain.losses_in_span(plain.x0, basis, coeffs)
    )


def test_a_nested_call_without_the_evaluation_copy_is_allowed():
    """With batchnorm="batch" every batch goes through functional_call, which puts the
    parameters back: a metrics_fn that calls its own objective moves no point and gets
    the values of a run without the nested call."""
    X, y = digits(150, image=True)
    holder = {}

    def metrics_fn(out, target):
        holder["loss"] = holder["obj"].loss(holder["obj"].x0)
        return {"acc": (out.argmax(1) == target).double().mean()}

    obj = pc.objective(
        cnn(batchnorm=True), F.cross_entropy, (X, y), batchnorm="batch", metrics_fn=metrics_fn
    )
    holder["obj"] = obj
    plain = pc.objective(cnn(batchnorm=True), F.cross_entropy, (X, y), batchnorm="batch")
    assert obj.metrics(obj.x0)["acc"] == plain.metrics(plain.x0)["accuracy"]
    assert holder["loss"] == plain.loss(plain.x0)
