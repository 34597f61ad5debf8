"""Streamed data (``stream=True``): batches read again at every evaluation, none kept."""

from __future__ import annotations

import gc
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import probecore as pc

from .models_torch import cnn, digits, mlp

RTOL = 1e-12


class DictMLP(nn.Module):
    """An MLP called as ``model(**batch)`` on ``{"pixels": ..., "labels": ...}``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(hidden=8)

    def forward(self, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)


def dict_loss(out: torch.Tensor, batch: dict) -> torch.Tensor:
    return F.cross_entropy(out, batch["labels"])


class NumpyBatches:
    """A re-iterable that builds each batch from numpy arrays when it is read."""

    def __init__(self, X: np.ndarray, y: np.ndarray, size: int) -> None:
        self.X, self.y, self.size = X, y, size

    def __iter__(self):
        for i in range(0, len(self.y), self.size):
            yield torch.tensor(self.X[i : i + self.size]), torch.tensor(self.y[i : i + self.size])


def _case(name: str):
    """(model, loss_fn, loader) for a float64 digits model with a short last batch."""
    if name == "mlp":
        X, y = digits(80)
        return mlp(hidden=8).eval(), F.cross_entropy, DataLoader(TensorDataset(X, y), 30)
    if name == "cnn":
        X, y = digits(24, image=True)
        return cnn().eval(), F.cross_entropy, DataLoader(TensorDataset(X, y), 10)
    X, y = digits(40)
    rows = [{"pixels": X[i], "labels": y[i]} for i in range(len(y))]
    return DictMLP().eval(), dict_loss, DataLoader(rows, batch_size=15)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("name", ["mlp", "cnn", "dict"])
def test_streaming_equals_materialized(name):
    model, loss_fn, loader = _case(name)
    kept = pc.objective(model, loss_fn, loader)
    streamed = pc.objective(model, loss_fn, loader, stream=True)
    assert streamed.stream and not kept.stream
    assert streamed.n_examples == kept.n_examples
    rng = np.random.default_rng(0)
    x = kept.x0 + 0.01 * rng.standard_normal(kept.dim)
    v = rng.standard_normal(kept.dim)
    V = rng.standard_normal((3, kept.dim))
    assert _rel(streamed.loss(x), kept.loss(x)) <= RTOL
    lk, gk = kept.loss_and_grad(x)
    ls, gs = streamed.loss_and_grad(x)
    assert _rel(ls, lk) <= RTOL and _rel(gs, gk) <= RTOL
    assert _rel(streamed.hvp(x, v), kept.hvp(x, v)) <= RTOL
    assert _rel(streamed.hvp_many(x, V), kept.hvp_many(x, V)) <= RTOL
    assert streamed.metrics(x) == pytest.approx(kept.metrics(x), rel=RTOL)
    top_kept = pc.lanczos(kept, k=3, rng=0).eigenvalues
    top_streamed = pc.lanczos(streamed, k=3, rng=0).eigenvalues
    assert _rel(top_streamed, top_kept) <= RTOL


def test_generator_is_refused():
    X, y = digits(60)
    batches = ((X[i : i + 20], y[i : i + 20]) for i in range(0, 60, 20))
    with pytest.raises(TypeError, match=r"one-shot iterator \(generator\).*__iter__"):
        pc.objective(mlp(hidden=8).eval(), F.cross_entropy, batches, stream=True)


def test_shuffled_dataloader_is_refused():
    X, y = digits(60)
    loader = DataLoader(TensorDataset(X, y), batch_size=20, shuffle=True)
    with pytest.raises(ValueError, match=r"RandomSampler \(shuffle=True\).*shuffle=False"):
        pc.objective(mlp(hidden=8).eval(), F.cross_entropy, loader, stream=True)


def test_whole_data_set_and_batch_size_are_refused():
    X, y = digits(60)
    with pytest.raises(TypeError, match=r"whole data set .*batch_size=.*DataLoader"):
        pc.objective(mlp(hidden=8).eval(), F.cross_entropy, (X, y), stream=True)
    loader = DataLoader(TensorDataset(X, y), batch_size=20)
    with pytest.raises(TypeError, match=r"`batch_size` .* batch_size=20"):
        pc.objective(mlp(hidden=8).eval(), F.cross_entropy, loader, stream=True, batch_size=20)
    with pytest.raises(TypeError, match=r"`stream` must be"):
        pc.objective(mlp(hidden=8).eval(), F.cross_entropy, loader, stream="yes")


def _data_tensors() -> int:
    """Live float64 tensors shaped like the batches' inputs: (30, 64) or (10, 64)."""
    gc.collect()
    shapes = (torch.Size([30, 64]), torch.Size([10, 64]))
    return sum(
        1
        for o in gc.get_objects()
        if issubclass(type(o), torch.Tensor) and o.shape in shapes and o.dtype == torch.float64
    )


def test_streamed_objective_holds_no_batch():
    X, y = (t.numpy() for t in digits(100))
    data = NumpyBatches(X, y, 30)
    model = mlp(hidden=16).eval()
    streamed = pc.objective(model, F.cross_entropy, data, stream=True)
    x, v = streamed.x0, np.ones(streamed.dim)
    streamed.loss_and_grad(x), streamed.hvp(x, v), streamed.hvp_many(x, np.eye(2, streamed.dim))
    streamed.loss(x), streamed.metrics(x), streamed.fingerprint()
    assert streamed._batches is None and streamed._counts == [30, 30, 30, 10]
    assert _data_tensors() == 0
    kept = pc.objective(model, F.cross_entropy, data)  # the check sees kept batches
    assert _data_tensors() == 4
    assert kept.loss(x) == streamed.loss(x)


def test_data_that_changes_between_passes_is_reported():
    X, y = (t.numpy() for t in digits(100))
    data = NumpyBatches(X, y, 30)
    obj = pc.objective(mlp(hidden=8).eval(), F.cross_entropy, data, stream=True)
    data.size = 25
    with pytest.raises(RuntimeError, match=r"changed between passes: batch 0 holds 25 .* 30"):
        obj.loss(obj.x0)


def test_non_finite_batch_is_refused_at_construction():
    X, y = digits(60)
    X[45, 3] = float("nan")
    loader = DataLoader(TensorDataset(X, y), batch_size=20)
    with pytest.raises(ValueError, match=r"batch 2 of `data`: its inputs hold 1 non-finite"):
        pc.objective(mlp(hidden=8).eval(), F.cross_entropy, loader, stream=True)


def test_subset_fingerprint_and_pickling():
    X, y = digits(100)
    loader = DataLoader(TensorDataset(X, y), batch_size=30)
    model = mlp(hidden=8).eval()
    streamed = pc.objective(model, F.cross_entropy, loader, stream=True)
    kept = pc.objective(model, F.cross_entropy, loader)
    idx = np.array([95, 3, 31, 3, 60])
    sub_s, sub_k = streamed.subset(idx), kept.subset(idx)
    assert not sub_s.stream and sub_s.n_examples == 5
    x = kept.x0
    assert sub_s.loss(x) == sub_k.loss(x)
    np.testing.assert_array_equal(sub_s.grad(x), sub_k.grad(x))
    # the data digest is taken batch by batch in both modes: same data, same fingerprint
    again = pc.objective(model, F.cross_entropy, loader, stream=True)
    assert again.fingerprint() == streamed.fingerprint() == kept.fingerprint()
    other = DataLoader(TensorDataset(X.flip(0), y.flip(0)), batch_size=30)
    other_fp = pc.objective(model, F.cross_entropy, other, stream=True).fingerprint()
    assert other_fp["data"] != streamed.fingerprint()["data"]
    clone = pickle.loads(pickle.dumps(streamed))
    assert clone.stream and clone.loss(x) == streamed.loss(x)
    np.testing.assert_array_equal(clone.hvp(x, np.ones(clone.dim)), kept.hvp(x, np.ones(clone.dim)))


def _loader(n: int, **kwargs) -> DataLoader:
    X, y = digits(n)
    return DataLoader(TensorDataset(X, y), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"sampler": torch.utils.data.RandomSampler(range(150), replacement=True)},
            "with replacement",
        ),
        (
            {"sampler": torch.utils.data.WeightedRandomSampler([1.0] * 150, 150)},
            "with replacement",
        ),
        ({"sampler": torch.utils.data.RandomSampler(range(150), num_samples=100)}, "100 random"),
        (
            {"sampler": torch.utils.data.WeightedRandomSampler([1.0] * 150, 50, False)},
            "50 random examples of 150",
        ),
        ({"shuffle": True, "drop_last": True}, "128 random examples of the 150 its sampler"),
        (  # the remainder is that of the sampler's 90 examples, not of the data set's 150
            {"sampler": torch.utils.data.SubsetRandomSampler(range(90)), "drop_last": True},
            "64 random examples of the 90 its sampler",
        ),
    ],
)
def test_read_once_loader_that_resamples_is_refused(kwargs, match):
    """Read once, these loaders would give an objective over a random resample or subset
    of the data set, another each time it is built: refused, naming the fix."""
    with pytest.raises(ValueError, match=match) as err:
        pc.objective(mlp().eval(), F.cross_entropy, _loader(150, batch_size=64, **kwargs))
    assert "shuffle=False" in str(err.value) and "sample_examples" in str(err.value)


@pytest.mark.parametrize("stream", [False, True])
def test_drop_last_warns_with_the_examples_left_out(stream):
    with pytest.warns(UserWarning, match="gave 128 of its data set's 150 examples") as rec:
        obj = pc.objective(
            mlp().eval(),
            F.cross_entropy,
            _loader(150, batch_size=64, drop_last=True),
            stream=stream,
        )
    assert obj.n_examples == 128
    assert [w.filename for w in rec] == [__file__]  # the caller's line, not probecore's

    with warnings.catch_warnings():  # every example kept: nothing to say
        warnings.simplefilter("error")
        whole = pc.objective(
            mlp().eval(),
            F.cross_entropy,
            _loader(128, batch_size=64, drop_last=True),
            stream=stream,
        )
        shuffled = pc.objective(
            mlp().eval(), F.cross_entropy, _loader(150, batch_size=64, shuffle=True)
        )
    assert whole.n_examples == 128 and shuffled.n_examples == 150


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        (  # a fixed subset in random order that fills whole batches: accepted, and said
            {"sampler": torch.utils.data.SubsetRandomSampler(range(64)), "drop_last": True},
            r"its sampler \(SubsetRandomSampler\) draws 64 of them",  # drop_last drops none
        ),
        ({"sampler": list(range(64))}, r"its sampler \(list\) draws 64 of them"),
    ],
)
def test_a_loader_over_part_of_its_data_set_says_so(kwargs, why):
    with pytest.warns(UserWarning, match=f"gave 64 of its data set's 150 examples \\({why}\\)"):
        obj = pc.objective(mlp().eval(), F.cross_entropy, _loader(150, batch_size=32, **kwargs))
    assert obj.n_examples == 64


def test_a_collate_that_packs_items_is_not_taken_for_a_partial_loader():
    """Sequence packing: 40 items collated into 4 rows. Every item was read, so nothing is
    said, although the objective counts 4 examples."""
    torch.manual_seed(0)
    items = [torch.randint(0, 20, (int(torch.randint(5, 12, ())),)) for _ in range(40)]

    def pack(batch):
        t = torch.cat(batch)
        return t[None, :-1], t[None, 1:]

    model = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 20)).double()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obj = pc.objective(
            model,
            lambda out, y: F.cross_entropy(out.flatten(0, 1), y.flatten()),
            DataLoader(items, batch_size=10, collate_fn=pack),
        )
    assert obj.n_examples == 4


@pytest.mark.parametrize("name", ["mlp", "cnn", "dict"])
def test_streamed_losses_in_span_are_the_points_losses(name):
    """Streamed, each point goes straight into the evaluation copy and the data are read
    again per point: the losses of the default per-point route bit for bit, and those
    of the materialized objective to RTOL."""
    model, loss_fn, loader = _case(name)
    streamed = pc.objective(model, loss_fn, loader, stream=True)
    kept = pc.objective(model, loss_fn, loader)
    rng = np.random.default_rng(3)
    basis = rng.standard_normal((2, streamed.dim)) / 30
    coeffs = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, -1.0], [0.0, 2.0], [-1.0, -1.0]])
    got = streamed.losses_in_span(streamed.x0, basis, coeffs)
    ref = pc.AbstractObjective.losses_in_span(streamed, streamed.x0, basis, coeffs)
    np.testing.assert_array_equal(got, ref)
    assert got[0] == streamed.loss(streamed.x0)
    assert _rel(got, kept.losses_in_span(kept.x0, basis, coeffs)) <= RTOL


def test_streamed_span_adds_no_point_vector():
    """A streamed plane on a model too large for blocks of points holds no parameter
    vector besides the evaluation copy (made by the first evaluation): the default
    route formed each point as a new vector first."""
    import tracemalloc

    from probecore.backend import SPAN_ROWS_NUMBERS

    X, y = digits(60)
    model = nn.Sequential(nn.Linear(64, 4096), nn.Tanh(), nn.Linear(4096, 10)).double().eval()
    streamed = pc.objective(
        model, F.cross_entropy, DataLoader(TensorDataset(X, y), 25), stream=True
    )
    basis = np.ones((2, streamed.dim)) / 100
    coeffs = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, -1.0]])
    assert streamed.dim > SPAN_ROWS_NUMBERS // 2  # one point at a time
    streamed.loss(streamed.x0)  # the evaluation copy
    point_bytes = streamed.dim * 8
    tracemalloc.start()
    try:
        streamed.losses_in_span(streamed.x0, basis, coeffs)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        pc.AbstractObjective.losses_in_span(streamed, streamed.x0, basis, coeffs)
        default_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert default_peak >= point_bytes  # the measurement sees a point when there is one
    assert peak < point_bytes / 2
