"""Real architectures through the PyTorch backend (issue 14): Hugging Face BERT and GPT-2,
a ResNet with BatchNorm, the layout of every layer type, and batches as users have them.

Float64, tiny sizes; references are dense Hessians of the loss written directly over the
flat parameter vector, by forward-over-reverse autodiff (``torch.func.jvp`` of
``torch.func.grad``, vmapped over unit vectors): independent of the backend's double
backward and of its batching. (``torch.func.hessian`` itself returned matrices 20% away
from symmetric for these models under torch 2.13, so it is not the reference here.)
"""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
import transformers  # a test dependency of the torch environment (tox.ini): never skipped
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from transformers.pytorch_utils import Conv1D

import probecore as pc

from .models_torch import digits


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _flat(model):
    named = [(n, p) for n, p in model.named_parameters()]
    names = [n for n, _ in named]
    shapes = [p.shape for _, p in named]
    sizes = [p.numel() for _, p in named]
    x0 = torch.cat([p.detach().reshape(-1) for _, p in named])

    def params(flat):
        return {
            n: t.view(s) for n, t, s in zip(names, torch.split(flat, sizes), shapes, strict=True)
        }

    return params, x0


def _math_sdpa():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def _compare_dense(obj, f, x0, *, n_v=3, fixed=()):
    """Errors of loss, gradient, HVPs and Lanczos top-3 against dense autodiff of ``f``.

    ``fixed``: flat indices torch never trains (an embedding's padding row): the reference
    is the Hessian with those held fixed (their rows and columns zero).
    """
    grad = torch.func.grad(f)
    with _math_sdpa():  # H column by column, forward-over-reverse, vectorized
        eye = torch.eye(len(x0), dtype=x0.dtype)
        H = torch.func.vmap(lambda u: torch.func.jvp(grad, (x0,), (u,))[1])(eye).numpy()
        g = grad(x0).numpy()
        value = float(f(x0))
    fixed = list(fixed)
    H[fixed, :] = 0
    H[:, fixed] = 0
    x = x0.numpy()
    V = np.random.default_rng(0).standard_normal((n_v, obj.dim))
    eig = np.linalg.eigvalsh((H + H.T) / 2)
    norm = float(np.max(np.abs(eig)))
    top = pc.lanczos(obj, k=3, rng=0)
    err = {
        "loss": abs(obj.loss(x) - value) / abs(value),
        "grad": _rel(obj.grad(x), g),
        "hvp": _rel(obj.hvp_many(x, V), V @ H.T),
        "lanczos": float(np.max(np.abs(np.sort(top.eigenvalues) - eig[-3:]))) / norm,
        "lambda_max": float(eig[-1]),
    }
    print("dense comparison:", err)
    return err


# ---------------------------------------------------------------- Hugging Face BERT
def tiny_bert(seed=0):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=20,
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=3,
    )
    return transformers.BertForSequenceClassification(config).double().eval()


def bert_data(n=24, length=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 20, (n, length), generator=gen)
    mask = torch.ones_like(ids)
    mask[::3, length - 3 :] = 0  # some padding
    labels = torch.randint(0, 3, (n,), generator=gen)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class _Rows(torch.utils.data.Dataset):
    def __init__(self, columns):
        self.columns = columns

    def __len__(self):
        return len(next(iter(self.columns.values())))

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.columns.items()}


def test_bert_classifier_from_a_dataloader_of_dicts_equals_dense_autodiff():
    model = tiny_bert()
    data = bert_data(n=10, length=6)
    loader = torch.utils.data.DataLoader(_Rows(data), batch_size=4)
    obj = pc.objective(model, data=loader)  # loss_fn=None: the output's .loss
    assert obj.dim < 2000 and obj.n_examples == 10
    params, x0 = _flat(model)

    def f(flat):
        return functional_call(model, params(flat), (), data).loss

    # torch gives the padding row (token 0) of the word embeddings no gradient
    block = obj.layout["bert.embeddings.word_embeddings.weight"]
    assert model.bert.embeddings.word_embeddings.padding_idx == 0
    pad = range(block.offset, block.offset + block.shape[1])
    err = _compare_dense(obj, f, x0, fixed=pad)
    assert err["loss"] < 1e-12 and err["grad"] < 1e-10 and err["hvp"] < 1e-10, err
    assert err["lanczos"] < 1e-8, err
    with torch.no_grad():
        logits = model(**data).logits
    acc = float((logits.argmax(-1) == data["labels"]).double().mean())
    assert obj.metrics(obj.x0) == {"accuracy": pytest.approx(acc, abs=1e-15)}
    layout = {b.name: (b.role, b.filter_axis) for b in obj.layout}
    assert layout["bert.embeddings.word_embeddings.weight"] == ("weight", 0)
    assert layout["bert.encoder.layer.0.attention.self.query.bias"] == ("bias", 0)
    assert layout["bert.encoder.layer.1.output.LayerNorm.weight"] == ("norm", 0)


def test_dict_batches_of_any_size_give_the_same_objective():
    model = tiny_bert()
    data = bert_data(n=30)
    small = pc.objective(model, data=data, batch_size=7)
    whole = pc.objective(model, data=data, batch_size=50)
    loader = pc.objective(model, data=torch.utils.data.DataLoader(_Rows(data), batch_size=9))
    assert [len(b.target["labels"]) for b in small._batches] == [7, 7, 7, 7, 2]
    x = whole.x0 + 0.01 * np.random.default_rng(1).standard_normal(whole.dim)
    v = np.random.default_rng(2).standard_normal(whole.dim)
    for other in (small, loader):
        assert abs(other.loss(x) - whole.loss(x)) <= 1e-12 * abs(whole.loss(x))
        assert _rel(other.grad(x), whole.grad(x)) < 1e-12
        assert _rel(other.hvp(x, v), whole.hvp(x, v)) < 1e-12
    # subset, pickling and the fingerprint of dict batches
    idx = np.array([0, 3, 4, 9, 29])
    sub = small.subset(idx)
    direct = pc.objective(model, data={k: t[idx] for k, t in data.items()}, batch_size=7)
    assert sub.loss(x) == pytest.approx(direct.loss(x), rel=1e-13)
    again = pickle.loads(pickle.dumps(small))
    assert again.loss(x) == small.loss(x)
    assert again.fingerprint() == small.fingerprint()
    changed = dict(data, attention_mask=data["attention_mask"].flip(0))
    other = pc.objective(model, data=changed, batch_size=7)
    assert other.fingerprint()["data"] != small.fingerprint()["data"]


def test_output_without_a_loss_and_user_metrics():
    model = tiny_bert()
    data = bert_data()
    unlabeled = {k: v for k, v in data.items() if k != "labels"}
    with pytest.raises(ValueError, match=r"output's `\.loss`.*has none.*pass loss_fn"):
        pc.objective(model, data=unlabeled)

    def loss_fn(output, batch):  # the second argument of a dict batch: the whole batch
        return F.cross_entropy(output.logits, batch["labels"])

    def metrics_fn(output, batch):
        right = (output.logits.argmax(-1) == batch["labels"]).double()
        return {"accuracy": right.mean(), "first_logit": float(output.logits[:, 0].mean())}

    by_7 = pc.objective(model, loss_fn, data, batch_size=7, metrics_fn=metrics_fn)
    by_24 = pc.objective(model, data=data, metrics_fn=metrics_fn)
    assert by_7.loss(by_7.x0) == pytest.approx(by_24.loss(by_24.x0), rel=1e-13)
    with torch.no_grad():
        logits = model(**data).logits
    want = {
        "accuracy": float((logits.argmax(-1) == data["labels"]).double().mean()),
        "first_logit": float(logits[:, 0].mean()),
    }
    for obj in (by_7, by_24):
        got = obj.metrics(obj.x0)
        assert set(got) == set(want)
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-15)
    bad = pc.objective(model, data=data, metrics_fn=lambda o, b: {"logits": o.logits})
    with pytest.raises(TypeError, match=r"`metrics_fn` must return scalars.*'logits'"):
        bad.metrics(bad.x0)


# ---------------------------------------------------------------- Hugging Face GPT-2
def tiny_gpt2(seed=0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=16, n_embd=8, n_layer=2, n_head=2, n_positions=8, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(config).double().eval()


def next_token_loss(output, batch):
    """The causal-LM loss in the model's own precision (HF's casts the logits to float32)."""
    logits, labels = output.logits[:, :-1], batch["labels"][:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def test_gpt2_language_model_equals_dense_autodiff_and_reports_token_accuracy():
    model = tiny_gpt2()
    ids = torch.randint(0, 16, (6, 6), generator=torch.Generator().manual_seed(0))
    data = {"input_ids": ids, "labels": ids}
    obj = pc.objective(model, next_token_loss, data, batch_size=4)
    assert obj.dim < 2000
    assert obj.layout["transformer.h.0.attn.c_attn.weight"].filter_axis == 1  # HF Conv1D
    params, x0 = _flat(model)

    def f(flat):  # batches of 4 and 2 sequences of 6 tokens: same tokens per sequence
        return functional_call(model, params(flat), (), {"input_ids": ids}).logits

    def f_loss(flat):
        return next_token_loss(type("O", (), {"logits": f(flat)}), data)

    err = _compare_dense(obj, f_loss, x0)
    assert err["loss"] < 1e-12 and err["grad"] < 1e-10 and err["hvp"] < 1e-10, err
    assert err["lanczos"] < 1e-8, err
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    acc = float((logits[:, :-1].argmax(-1) == ids[:, 1:]).double().mean())  # shifted
    assert obj.metrics(obj.x0) == {"accuracy": pytest.approx(acc, abs=1e-15)}
    # the output's .loss works too, but Hugging Face computes it in float32: a warning
    with pytest.warns(UserWarning, match=r"float32 in a float64 objective.*loss_fn") as rec:
        hf = pc.objective(model, data=data, batch_size=4)
    assert {w.filename for w in rec} == {__file__}  # the caller's line, not probecore's
    assert hf.loss(hf.x0) == pytest.approx(obj.loss(obj.x0), rel=1e-6)


# ---------------------------------------------------------------- ResNet with BatchNorm
class _Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class TinyResNet(nn.Module):
    def __init__(self, c=3, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.block = _Block(c)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.block(torch.relu(self.stem(x)))
        return self.fc(x.mean(dim=(2, 3)))


def tiny_resnet(X):
    torch.manual_seed(0)
    model = TinyResNet().double()
    with torch.no_grad():  # running statistics from a few batches, as after training
        for i in range(0, len(X), 12):
            model(X[i : i + 12])
    return model  # still in training mode


@pytest.mark.parametrize("mode", ["running", "batch"])
def test_resnet_with_batchnorm_in_both_modes_equals_dense_autodiff(mode):
    X, y = digits(24, image=True)
    model = tiny_resnet(X)
    obj = pc.objective(model, F.cross_entropy, (X, y), batch_size=12, batchnorm=mode)
    assert model.training  # restored after every evaluation
    ref = copy.deepcopy(model)
    if mode == "batch":
        torch.func.replace_all_batch_norm_modules_(ref)  # batch statistics, no buffer writes
    else:
        ref.eval()
    params, x0 = _flat(ref)

    def f(flat):
        p = params(flat)
        halves = [
            F.cross_entropy(functional_call(ref, p, (X[i : i + 12],)), y[i : i + 12])
            for i in (0, 12)
        ]
        return (halves[0] + halves[1]) / 2

    err = _compare_dense(obj, f, x0)
    assert err["loss"] < 1e-12 and err["grad"] < 1e-10 and err["hvp"] < 1e-10, err
    assert err["lanczos"] < 1e-8, err


def test_batchnorm_in_training_mode_must_be_chosen():
    X, y = digits(40, image=True)
    model = tiny_resnet(X)
    with pytest.raises(ValueError, match=r"training mode.*batchnorm='running'.*batchnorm='batch'"):
        pc.objective(model, F.cross_entropy, (X, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eval_mode = pc.objective(model.eval(), F.cross_entropy, (X, y))  # silently "running"
    assert eval_mode.batchnorm == "running"
    model.train()
    explicit = pc.objective(model, F.cross_entropy, (X, y), batchnorm="running")
    assert explicit.loss(explicit.x0) == eval_mode.loss(eval_mode.x0)
    assert explicit.subset(np.arange(5)).batchnorm == "running"  # no second refusal


# ---------------------------------------------------------------- layout by module type
class _AllLayers(nn.Module):
    """One of every layer type of the table, on a (n, 4) input; unequal axis sizes."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.bil = nn.Bilinear(4, 4, 5)
        self.c1 = nn.Conv1d(1, 3, 2)
        self.c2 = nn.Conv2d(1, 3, 2)
        self.c3 = nn.Conv3d(1, 3, (1, 2, 2))
        self.ct = nn.ConvTranspose2d(2, 3, 2)
        self.emb = nn.Embedding(7, 3)
        self.mha = nn.MultiheadAttention(4, 2, batch_first=True)
        self.lstm = nn.LSTM(4, 3, batch_first=True)
        self.hf = Conv1D(5, 4)  # nf=5 outputs, nx=4 inputs: weight (4, 5)
        self.ln = nn.LayerNorm(4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        n = len(x)
        x = self.bn(self.ln(x))
        img = x.view(n, 1, 2, 2)
        q = x.view(n, 1, 4)
        tokens = torch.arange(n) % 7
        parts = [
            self.lin(x),
            self.bil(x, x),
            self.c1(x.view(n, 1, 4)),
            self.c2(img),
            self.c3(x.view(n, 1, 1, 2, 2)),
            self.ct(torch.cat([img, img], 1)),
            self.emb(tokens) * x[:, :1],
            self.mha(q, q, q)[0],
            self.lstm(q)[0],
            self.hf(x),
        ]
        return sum(torch.tanh(p).reshape(n, -1).mean(1) for p in parts)


OUTPUT_AXIS = {  # the axis of output units, by layer type (what the table promises)
    "lin.weight": 0,
    "bil.weight": 0,
    "c1.weight": 0,
    "c2.weight": 0,
    "c3.weight": 0,
    "ct.weight": 1,
    "emb.weight": 0,
    "mha.in_proj_weight": 0,
    "mha.out_proj.weight": 0,
    "lstm.weight_ih_l0": 0,
    "lstm.weight_hh_l0": 0,
    "hf.weight": 1,
}


def test_filter_normalized_directions_match_weight_norms_per_output_unit_for_every_layer():
    torch.manual_seed(0)
    model = _AllLayers().double().eval()
    X = torch.randn(12, 4, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every parameter is of a known type: no warning
        obj = pc.objective(model, F.mse_loss, (X, torch.randn(12, dtype=torch.float64)))
    roles = {b.name: b.role for b in obj.layout}
    assert {n for n, r in roles.items() if r == "weight"} == set(OUTPUT_AXIS)
    assert {n for n, r in roles.items() if r == "norm"} == {
        "ln.weight",
        "ln.bias",
        "bn.weight",
        "bn.bias",
    }
    assert all(
        r == "bias" for n, r in roles.items() if "bias" in n and not n.startswith(("ln", "bn"))
    )
    d = pc.random_directions(obj, k=1, rng=0).vectors[0]
    dv, xv = obj.layout.views(d), obj.layout.views(obj.x0)
    for name, axis in OUTPUT_AXIS.items():
        assert obj.layout[name].filter_axis % dv[name].ndim == axis, name
        moved_d, moved_x = np.moveaxis(dv[name], axis, 0), np.moveaxis(xv[name], axis, 0)
        norms_d = np.linalg.norm(moved_d.reshape(len(moved_d), -1), axis=1)
        norms_x = np.linalg.norm(moved_x.reshape(len(moved_x), -1), axis=1)
        np.testing.assert_allclose(norms_d, norms_x, rtol=1e-12, err_msg=name)
    for name, role in roles.items():
        if role != "weight":
            assert not np.any(dv[name]), name  # biases and norms zeroed (ignore biasbn)


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))  # (in, out)
        self.scale = nn.Parameter(torch.ones(3, dtype=torch.float64))

    def forward(self, x):
        return (x @ self.w) * self.scale


def test_unknown_module_types_warn_and_layout_overrides():
    torch.manual_seed(0)
    model = _Custom()
    X, y = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)
    with pytest.warns(
        UserWarning, match=r"no filter axis is known.*'w' \[4, 3\] of _Custom.*layout="
    ) as rec:
        obj = pc.objective(model, F.mse_loss, (X, y))
    assert [w.filename for w in rec] == [__file__]  # the caller's line, not probecore's
    assert (obj.layout["w"].role, obj.layout["w"].filter_axis) == ("weight", 0)
    assert obj.layout["scale"].role == "other"  # 1-D of an unknown type: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fixed = pc.objective(model, F.mse_loss, (X, y), layout={"w": 1, "sc*": "norm"})
        fixed.subset(np.arange(4))  # the subset keeps the override: no warning either
    assert (fixed.layout["w"].filter_axis, fixed.layout["scale"].role) == (1, "norm")
    assert fixed.subset(np.arange(4)).layout == fixed.layout
    assert fixed.fingerprint()["layout"] != obj.fingerprint()["layout"]
    with pytest.raises(ValueError, match=r"`layout` entry 'nope' matches no block"):
        pc.objective(model, F.mse_loss, (X, y), layout={"nope": 0})


# ---------------------------------------------------------------- batches as users have them
class _TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(2, 3)

    def forward(self, x, z=None, extra=None):
        out = self.a(x) + (0 if z is None else self.b(z))
        if extra is not None:
            out = out + self.b(extra[0]) * extra[1]
        return out


def test_tuple_inputs_are_refused_unless_forward_says_how():
    torch.manual_seed(0)
    model = _TwoInputs().double()
    x, z = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    y = torch.randint(0, 3, (10,))
    with pytest.raises(
        TypeError, match=r"tuple of 2.*forward='args'.*forward=lambda model, inputs"
    ):
        pc.objective(model, F.cross_entropy, [((x, z), y)])
    with torch.no_grad():
        want = float(F.cross_entropy(model(x, z), y))
    splat = pc.objective(model, F.cross_entropy, [((x, z), y)], forward="args")
    call = pc.objective(model, F.cross_entropy, ((x, z), y), forward=lambda m, i: m(i[0], z=i[1]))
    kwargs = pc.objective(model, F.cross_entropy, ({"x": x, "z": z}, y), batch_size=3)
    for obj in (splat, call, kwargs):
        assert obj.loss(obj.x0) == pytest.approx(want, rel=1e-14)
    assert kwargs.subset(np.array([1, 2])).n_examples == 2
    with torch.no_grad():
        want = float(F.cross_entropy(model(x[1:3], z[1:3]), y[1:3]))
    assert splat.subset(np.array([1, 2])).loss(splat.x0) == pytest.approx(want, rel=1e-14)
    with pytest.raises(ValueError, match="`forward` must be None, 'args'"):
        pc.objective(model, F.cross_entropy, (x, y), forward="kwargs")


def test_nested_inputs_convert_and_non_finite_dict_entries_are_refused():
    torch.manual_seed(0)
    model = _TwoInputs().double()
    x, z = torch.randn(10, 4), torch.randn(10, 2)  # float32: converted to float64
    y = torch.randint(0, 3, (10,))
    inputs = {"x": x, "extra": (z, np.ones((10, 1), np.float32))}
    obj = pc.objective(model, F.cross_entropy, (inputs, y), dtype=torch.float64)
    leaves = obj._batches[0].inputs
    assert leaves["x"].dtype == leaves["extra"][1].dtype == torch.float64
    with torch.no_grad():
        want = float(F.cross_entropy(model(x.double(), extra=(z.double(), 1.0)), y))
    assert obj.loss(obj.x0) == pytest.approx(want, rel=1e-14)
    bad = {"x": x.double().clone(), "labels": y}
    bad["x"][3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"batch 0 of `data`: its entry 'x' hold 1 non-finite"):
        pc.objective(
            model,
            lambda o, b: F.cross_entropy(o, b["labels"]),
            [bad],
            forward=lambda m, b: m(b["x"]),
        )
    with pytest.raises(ValueError, match=r"'labels' has 9 and 'x' 10|'x' has 10 and 'labels' 9"):
        pc.objective(model, F.cross_entropy, [{"x": x, "labels": y[:9]}])
