"""Directions: Gaussian draws, filter normalization (Li et al. 2018), Gram-Schmidt, eigenvectors."""

from __future__ import annotations

import numpy as np
import pytest

import probecore as pc
from probecore import Layout
from probecore.analytic import Quadratic


def _conv_layout(filter_axis: int = 0) -> Layout:
    # a conv kernel (out=6, in=3, 3x3) in PyTorch order, or (3, 3, 3, 6) with filter axis -1
    conv = (6, 3, 3, 3) if filter_axis == 0 else (3, 3, 3, 6)
    return Layout.from_shapes(
        [
            ("conv.weight", conv, "weight", filter_axis),
            ("conv.bias", (6,), "bias"),
            ("bn.weight", (6,), "norm"),
            ("bn.bias", (6,), "norm"),
            ("fc.weight", (4, 54) if filter_axis == 0 else (54, 4), "weight", filter_axis),
            ("fc.bias", (4,), "bias"),
            ("scale", (1,), "other"),
        ]
    )


def _filter_norms(layout: Layout, v: np.ndarray, name: str) -> np.ndarray:
    b = layout[name]
    t = np.moveaxis(v[b.slice].reshape(b.shape), b.filter_axis, 0)
    return np.linalg.norm(t.reshape(t.shape[0], -1), axis=1)


@pytest.mark.parametrize("filter_axis", [0, -1])
def test_filter_normalization_matches_every_filter_norm(filter_axis):
    layout = _conv_layout(filter_axis)
    x = np.random.default_rng(1).standard_normal(layout.dim) * 3
    d = pc.random_directions(layout, k=2, x=x, rng=0)
    for row in d.vectors:
        for name in ("conv.weight", "fc.weight"):
            np.testing.assert_allclose(
                _filter_norms(layout, row, name), _filter_norms(layout, x, name), rtol=1e-12
            )
        # default: bias, normalization and other 1-D blocks are zero (stay at x)
        for name in ("conv.bias", "bn.weight", "bn.bias", "fc.bias", "scale"):
            assert np.all(row[layout[name].slice] == 0)
    assert d.normalization == "filter" and d.bias == "zero" and d.norm == "zero"


def test_bias_and_norm_options_copy_the_weights_as_the_reference_code_does():
    layout = _conv_layout()
    x = np.random.default_rng(1).standard_normal(layout.dim)
    d = pc.random_directions(layout, k=1, x=x, rng=0, bias="weights", norm="zero").vectors[0]
    for name in ("conv.bias", "fc.bias", "scale"):
        np.testing.assert_array_equal(d[layout[name].slice], x[layout[name].slice])
    for name in ("bn.weight", "bn.bias"):
        assert np.all(d[layout[name].slice] == 0)
    d = pc.random_directions(layout, k=1, x=x, rng=0, bias="zero", norm="weights").vectors[0]
    np.testing.assert_array_equal(d[layout["bn.weight"].slice], x[layout["bn.weight"].slice])
    assert np.all(d[layout["conv.bias"].slice] == 0)


def test_layer_normalization_and_none():
    layout = _conv_layout()
    x = np.random.default_rng(1).standard_normal(layout.dim)
    d = pc.random_directions(layout, k=1, x=x, rng=0, normalization="layer").vectors[0]
    for name in ("conv.weight", "fc.weight"):
        s = layout[name].slice
        np.testing.assert_allclose(np.linalg.norm(d[s]), np.linalg.norm(x[s]), rtol=1e-12)
    raw = pc.random_directions(layout, k=1, x=x, rng=0, normalization="none").vectors[0]
    # "none" leaves the Gaussian draw of weight blocks untouched
    s = layout["fc.weight"].slice
    assert np.linalg.norm(raw[s]) != pytest.approx(np.linalg.norm(x[s]))


def test_zero_filter_stays_zero_and_zero_weight_filter_gives_zero():
    layout = Layout.from_shapes([("w", (3, 4), "weight")])
    x = np.ones(12)
    x[4:8] = 0.0  # filter 1 of the weights is zero
    d = np.arange(12.0)
    d[:4] = 0.0  # filter 0 of the direction is zero
    out = pc.filter_normalize(d, x, layout)
    assert np.all(out[:4] == 0) and np.all(out[4:8] == 0)
    np.testing.assert_allclose(np.linalg.norm(out[8:]), 2.0, rtol=1e-14)


def test_same_seed_same_direction_whatever_the_block_order_and_kernel_orientation():
    # PyTorch: weight (out, in) then bias. A JAX dict: bias sorted first, kernel (in, out).
    torch_like = Layout.from_shapes([("0.weight", (5, 7), "weight"), ("0.bias", (5,), "bias")])
    jax_like = Layout.from_shapes(
        [("layer.b", (5,), "bias"), ("layer.kernel", (7, 5), "weight", -1)]
    )
    a = pc.random_directions(
        torch_like, k=2, x=np.ones(40), rng=3, normalization="none", bias="zero"
    ).vectors
    b = pc.random_directions(
        jax_like, k=2, x=np.ones(40), rng=3, normalization="none", bias="zero"
    ).vectors
    wa = a[:, 0:35].reshape(2, 5, 7)
    wb = b[:, 5:40].reshape(2, 7, 5).transpose(0, 2, 1)
    np.testing.assert_array_equal(wa, wb)
    c = pc.random_directions(torch_like, k=2, x=np.ones(40), rng=4, normalization="none")
    assert not np.array_equal(a, c.vectors)


def test_conv_kernels_get_the_same_numbers_in_pytorch_and_flax_orientation():
    torch_like = Layout.from_shapes([("conv.weight", (6, 3, 3, 2), "weight")])
    flax_like = Layout.from_shapes([("Conv_0.kernel", (3, 2, 3, 6), "weight", -1)])
    x = np.ones(108)
    a = pc.random_directions(torch_like, k=2, x=x, rng=7, normalization="none").vectors
    b = pc.random_directions(flax_like, k=2, x=x, rng=7, normalization="none").vectors
    # (out, in, kh, kw) <- (kh, kw, in, out)
    np.testing.assert_array_equal(
        a.reshape(2, 6, 3, 3, 2), b.reshape(2, 3, 2, 3, 6).transpose(0, 4, 3, 1, 2)
    )


def test_zero_direction_is_refused():
    layout = Layout.from_shapes([("w", (3, 4), "weight"), ("b", (3,), "bias")])
    with pytest.raises(ValueError, match="zero after normalization"):
        pc.random_directions(layout, x=np.zeros(15), rng=0)
    one_block = Layout.single(5)  # role "other": zeroed by default
    with pytest.raises(ValueError, match="zero after normalization"):
        pc.random_directions(one_block, x=np.ones(5), rng=0)
    d = pc.random_directions(one_block, x=np.ones(5), rng=0, normalization="none", bias="weights")
    np.testing.assert_array_equal(d.vectors[0], np.ones(5))


def test_orthogonalize_keeps_norms_and_refuses_dependent_rows():
    rng = np.random.default_rng(0)
    D = rng.standard_normal((3, 50))
    D[1] += 5 * D[0]
    Q = pc.orthogonalize(D)
    np.testing.assert_allclose(Q @ Q.T - np.diag(np.diag(Q @ Q.T)), 0, atol=1e-12 * 50)
    np.testing.assert_allclose(np.linalg.norm(Q, axis=1), np.linalg.norm(D, axis=1), rtol=1e-14)
    U = pc.orthogonalize(D, keep_norms=False)
    np.testing.assert_allclose(U @ U.T, np.eye(3), atol=1e-13)
    with pytest.raises(ValueError, match="row 2 is zero or lies in the span"):
        pc.orthogonalize(np.vstack([D[:2], D[0] - 2 * D[1]]))
    d = pc.random_directions(
        _conv_layout(), k=2, x=np.ones(_conv_layout().dim), rng=0, orthogonal=True
    )
    assert abs(d.vectors[0] @ d.vectors[1]) < 1e-10 * np.linalg.norm(d.vectors[0]) ** 2


def test_eigen_directions_are_the_top_eigenvectors():
    q = Quadratic.from_spectrum(np.array([0.5, 1.0, 2.0, 7.0, 9.0]), rng=0)
    d = pc.eigen_directions(q, k=2, rng=0)
    np.testing.assert_allclose(d.eigenvalues, [9.0, 7.0], atol=1e-10)
    H = q.hessian()
    for lam, v in zip(d.eigenvalues, d.vectors, strict=True):
        np.testing.assert_allclose(H @ v, lam * v, atol=1e-7)
    assert d.kind == "hessian" and d.n_matvecs > 0


def test_bad_arguments_name_the_parameter():
    layout = _conv_layout()
    x = np.ones(layout.dim)
    with pytest.raises(ValueError, match="normalization"):
        pc.random_directions(layout, x=x, normalization="filters")
    with pytest.raises(ValueError, match="bias"):
        pc.random_directions(layout, x=x, bias="keep")
    with pytest.raises(ValueError, match="`k`"):
        pc.random_directions(layout, k=0, x=x)
    with pytest.raises(TypeError, match="`x` is required"):
        pc.random_directions(layout)
    with pytest.raises(ValueError, match="`x` must have shape"):
        pc.random_directions(layout, x=np.ones(3))
    with pytest.raises(TypeError, match="Layout"):
        pc.random_directions(object())


def test_directions_save_and_load(tmp_path):
    d = pc.random_directions(_conv_layout(), k=2, x=np.ones(_conv_layout().dim), rng=5)
    back = pc.load(pc.save(d, tmp_path / "dirs"))
    np.testing.assert_array_equal(back.vectors, d.vectors)
    assert back.seed == 5 and back.normalization == "filter"
