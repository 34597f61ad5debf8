"""Framework models on the JAX backend: Flax linen, Flax NNX, Equinox and plain pytrees.

For each kind: loss, gradient and HVP against the dense ``jax.hessian`` of the loss of the
flat vector (built independently, with ``ravel_pytree`` and the framework's own split and
merge), Lanczos against ``eigvalsh``; the layout the backend derives (roles, filter axes)
per layer type, checked through filter-normalized directions; the same direction for an
NNX module, its ``State`` and its pure dict; the plain-pytree warning and ``layout=``.
Collected only when ``PROBECORE_TEST_BACKENDS`` names ``jax`` (float64: the conftest turns
on ``jax_enable_x64``).
"""

from __future__ import annotations

import warnings

import cloudpickle
import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree
from probecore_jax import JaxObjective, param_layout

import probecore as pc

F64 = jnp.float64
RNG = np.random.default_rng(0)
X_VEC = RNG.standard_normal((12, 4))
Y_VEC = RNG.standard_normal((12, 3))
X_IMG = RNG.standard_normal((12, 5, 5, 1))  # NHWC for Flax
TOKENS = RNG.integers(0, 6, size=12)


def _mse(pred, y):
    return jnp.mean((pred - y) ** 2)


def _unit_norms(a: np.ndarray, axis: int) -> np.ndarray:
    return np.linalg.norm(np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1), axis=1)


# --------------------------------------------------------------------------- models


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Dense(5, param_dtype=F64)(x)
        h = nn.BatchNorm(use_running_average=True, param_dtype=F64)(h)
        return nn.Dense(3, param_dtype=F64)(jnp.tanh(h))


def linen_model():
    variables = LinenNet().init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
    # non-trivial running statistics, so that the state visibly enters the loss
    stats = {"mean": 0.3 * jnp.ones(5, F64), "var": 2.0 * jnp.ones(5, F64)}
    variables = {"params": variables["params"], "batch_stats": {"BatchNorm_0": stats}}

    def loss(v, batch):
        return _mse(LinenNet().apply(v, batch[0]), batch[1])

    x0, unravel = ravel_pytree(variables["params"])

    def flat(x):
        v = {"params": unravel(x), "batch_stats": variables["batch_stats"]}
        return loss(v, (X_VEC, Y_VEC))

    return variables, loss, (X_VEC, Y_VEC), flat, x0


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 2, (3, 3), padding="VALID", rngs=rngs, param_dtype=F64)
        self.lin = nnx.Linear(18, 4, rngs=rngs, param_dtype=F64)
        self.bn = nnx.BatchNorm(4, use_running_average=True, rngs=rngs, param_dtype=F64)
        self.ln = nnx.LayerNorm(4, rngs=rngs, param_dtype=F64)
        self.out = nnx.Linear(4, 3, rngs=rngs, param_dtype=F64)

    def __call__(self, x):
        h = jnp.tanh(self.conv(x)).reshape(x.shape[0], -1)
        return self.out(jnp.tanh(self.ln(self.bn(self.lin(h)))))


def nnx_model():
    model = NnxNet(nnx.Rngs(0))
    model.bn.mean[...] = 0.1 * jnp.arange(4, dtype=model.bn.mean.dtype)

    def loss(m, batch):
        return _mse(m(batch[0]), batch[1])

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x0, unravel = ravel_pytree(params)

    def flat(x):
        return loss(nnx.merge(graphdef, unravel(x), rest), (X_IMG, Y_VEC))

    return model, loss, (X_IMG, Y_VEC), flat, x0


def eqx_mlp():
    model = eqx.nn.MLP(4, 3, 5, 2, activation=jnp.tanh, key=jax.random.PRNGKey(1), dtype=F64)
    return _eqx_case(model, (X_VEC, Y_VEC))


def eqx_sequential():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(2), 3)
    model = eqx.nn.Sequential(
        [
            eqx.nn.Conv2d(1, 2, 3, key=k1, dtype=F64),  # (out, in, kh, kw)
            eqx.nn.Lambda(jnp.tanh),
            eqx.nn.ConvTranspose2d(2, 2, 2, key=k2, dtype=F64),  # (out, in, kh, kw)
            eqx.nn.Lambda(jnp.ravel),
            eqx.nn.Linear(2 * 4 * 4, 3, key=k3, dtype=F64),
        ]
    )
    return _eqx_case(model, (np.moveaxis(X_IMG, -1, 1), Y_VEC))  # NCHW for Equinox


def _eqx_case(model, data):
    def loss(m, batch):
        return _mse(jax.vmap(m)(batch[0]), batch[1])

    params, static = eqx.partition(model, eqx.is_inexact_array)
    x0, unravel = ravel_pytree(params)

    def flat(x):
        return loss(eqx.combine(unravel(x), static), data)

    return model, loss, data, flat, x0


def plain_model():
    params = {
        "hidden": {"w": RNG.standard_normal((4, 5)), "b": RNG.standard_normal(5)},
        "out": {"w": RNG.standard_normal((5, 3)), "b": RNG.standard_normal(3)},
        "temperature": 0.7,  # a Python float: held fixed
    }

    def loss(p, batch):
        h = jnp.tanh(batch[0] @ p["hidden"]["w"] + p["hidden"]["b"])
        return _mse((h @ p["out"]["w"] + p["out"]["b"]) * p["temperature"], batch[1])

    trainable = {k: v for k, v in params.items() if k != "temperature"}
    x0, unravel = ravel_pytree(trainable)

    def flat(x):
        return loss({**unravel(x), "temperature": 0.7}, (X_VEC, Y_VEC))

    return params, loss, (X_VEC, Y_VEC), flat, x0


PLAIN_LAYOUT = {"*.w": -1}  # x @ W: (in, out), as the backend infers


# --------------------------------------------------------------------------- exactness


CASES = {
    "linen": linen_model,
    "nnx": nnx_model,
    "eqx_mlp": eqx_mlp,
    "eqx_sequential": eqx_sequential,
    "plain": plain_model,
}


def rel_errors(obj, flat):
    """Relative errors of loss, gradient (at a perturbed point) and HVP (at x0)."""
    x = obj.x0 + 0.1 * np.random.default_rng(1).standard_normal(obj.dim)
    want_l, want_g = float(flat(jnp.asarray(x))), np.asarray(jax.grad(flat)(jnp.asarray(x)))
    v = np.random.default_rng(3).standard_normal(obj.dim)
    want_h = np.asarray(
        jax.jvp(jax.grad(flat), (jnp.asarray(obj.x0),), (jnp.asarray(v),))[1]
    )  # one column of the dense Hessian's action, as jax.hessian computes it
    return {
        "loss": abs(obj.loss(x) - want_l) / abs(want_l),
        "grad": np.linalg.norm(obj.grad(x) - want_g) / np.linalg.norm(want_g),
        "hvp": np.linalg.norm(obj.hvp(obj.x0, v) - want_h) / np.linalg.norm(want_h),
    }


@pytest.mark.parametrize("name", list(CASES))
def test_loss_grad_hvp_lanczos_equal_dense_autodiff(name):
    model, loss, data, flat, x0 = CASES[name]()
    options = {"layout": PLAIN_LAYOUT} if name == "plain" else {}
    obj = pc.objective(model, loss, data, **options)
    assert isinstance(obj, JaxObjective) and obj.dtype == np.float64
    np.testing.assert_array_equal(obj.x0, np.asarray(x0))
    errors = rel_errors(obj, flat)
    assert max(errors.values()) <= 1e-10, errors
    H = np.asarray(jax.jit(jax.hessian(flat))(jnp.asarray(obj.x0)))
    V = np.random.default_rng(2).standard_normal((3, obj.dim))
    for v, hv in zip(V, obj.hvp_many(obj.x0, V), strict=True):
        want = H @ v
        assert np.linalg.norm(obj.hvp(obj.x0, v) - want) <= 1e-10 * np.linalg.norm(want)
        assert np.linalg.norm(hv - want) <= 1e-10 * np.linalg.norm(want)
    eig = np.linalg.eigvalsh((H + H.T) / 2)
    top = pc.lanczos(obj, k=3, rng=0)
    scale = np.abs(eig).max()
    want_top = eig[np.argsort(-eig)[:3]]
    np.testing.assert_allclose(np.sort(top.eigenvalues)[::-1], want_top, rtol=0, atol=1e-8 * scale)


# --------------------------------------------------------------------------- layouts


def _norm_loss(kind):
    """A loss of the model's parameters only, for layout tests (no forward pass)."""

    def leaves(m):
        if kind == "nnx":
            return jax.tree.leaves(nnx.state(m, nnx.Param))
        if kind == "eqx":
            return jax.tree.leaves(eqx.filter(m, eqx.is_inexact_array))
        return [a for a in jax.tree.leaves(m) if jnp.issubdtype(jnp.result_type(a), jnp.floating)]

    return lambda m, batch: jnp.mean(batch) * sum(jnp.sum(a**2) for a in leaves(m))


ONES = np.ones((2, 1))


def _check_filter_norms(obj, expected):
    """Roles and axes as ``expected`` (name -> (role, axis)), and per-unit norms matched."""
    got = {b.name: (b.role, b.filter_axis) for b in obj.layout}
    assert got == expected
    d = pc.random_directions(obj, k=1, rng=0).vectors[0]
    dv, xv = obj.layout.views(d), obj.layout.views(obj.x0)
    for b in obj.layout:
        if b.role == "weight":
            np.testing.assert_allclose(
                _unit_norms(dv[b.name], b.filter_axis),
                _unit_norms(xv[b.name], b.filter_axis),
                rtol=1e-12,
            )
        else:
            assert not np.any(dv[b.name]), b.name


class NnxLayers(nnx.Module):
    def __init__(self, rngs):
        self.lin = nnx.Linear(3, 4, rngs=rngs, param_dtype=F64)
        self.conv = nnx.Conv(2, 5, (3, 3), rngs=rngs, param_dtype=F64)
        self.emb = nnx.Embed(6, 4, rngs=rngs, param_dtype=F64)
        self.ln = nnx.LayerNorm(4, rngs=rngs, param_dtype=F64)
        self.rms = nnx.RMSNorm(4, rngs=rngs, param_dtype=F64)
        self.gn = nnx.GroupNorm(4, num_groups=2, rngs=rngs, param_dtype=F64)
        self.bn = nnx.BatchNorm(4, rngs=rngs, param_dtype=F64)


NNX_EXPECTED = {
    "lin.kernel": ("weight", -1),  # (in, out)
    "lin.bias": ("bias", 0),
    "conv.kernel": ("weight", -1),  # (kh, kw, in, out)
    "conv.bias": ("bias", 0),
    "emb.embedding": ("weight", 0),  # (num, features)
    "ln.scale": ("norm", 0),
    "ln.bias": ("norm", 0),
    "rms.scale": ("norm", 0),
    "gn.scale": ("norm", 0),
    "gn.bias": ("norm", 0),
    "bn.scale": ("norm", 0),
    "bn.bias": ("norm", 0),
}


def _perturbed(tree):
    """Random values everywhere (norm layers start at ones/zeros: no direction there)."""
    rng = np.random.default_rng(3)
    return jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape)), tree)


def test_nnx_layer_types_and_filter_norms():
    model = NnxLayers(nnx.Rngs(0))
    nnx.update(model, _perturbed(nnx.state(model, nnx.Param)))
    obj = JaxObjective(_norm_loss("nnx"), model, ONES)
    _check_filter_norms(obj, NNX_EXPECTED)
    # BatchStat (mean, var) and the RNG-free rest are held fixed, not parameters
    assert obj.dim == sum(a.size for a in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_nnx_module_state_and_pure_dict_give_the_same_directions_and_plane():
    model, loss, data, _, _ = nnx_model()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def state_loss(state, batch):
        return loss(nnx.merge(graphdef, state, rest), batch)

    def dict_loss(d, batch):
        state = jax.tree.map(lambda a: a, params)
        nnx.replace_by_pure_dict(state, d)
        return state_loss(state, batch)

    objs = [
        pc.objective(model, loss, data),
        pc.objective(params, state_loss, data),
        pc.objective(nnx.to_pure_dict(params), dict_loss, data),
    ]
    ref = objs[0]
    grid = dict(alphas=np.linspace(-1, 1, 3), betas=np.linspace(-1, 1, 3))
    planes = []
    for obj in objs:
        assert obj.layout == ref.layout
        np.testing.assert_array_equal(obj.x0, ref.x0)
        d = pc.random_directions(obj, k=2, rng=7)
        np.testing.assert_array_equal(d.vectors, pc.random_directions(ref, k=2, rng=7).vectors)
        planes.append(pc.plane(obj, d, **grid).losses)
    for p in planes[1:]:
        np.testing.assert_allclose(p, planes[0], rtol=1e-13)
    assert isinstance(ref.to_params(ref.x0), NnxNet)


class LinenLayers(nn.Module):
    @nn.compact
    def __call__(self, x, tokens):
        h = nn.Conv(3, (3, 3), param_dtype=F64)(x)
        e = nn.Embed(6, 3, param_dtype=F64)(tokens)
        h = nn.Dense(4, param_dtype=F64)(h.mean((1, 2)) + e)
        h = nn.LayerNorm(param_dtype=F64)(h)
        h = nn.GroupNorm(num_groups=2, param_dtype=F64)(h)
        h = nn.RMSNorm(param_dtype=F64)(h)
        return nn.BatchNorm(use_running_average=True, param_dtype=F64)(h)


def test_linen_layer_names_and_filter_norms():
    variables = LinenLayers().init(jax.random.PRNGKey(0), jnp.ones((1, 5, 5, 2)), TOKENS[:1])
    variables = {**variables, "params": _perturbed(variables["params"])}
    obj = JaxObjective(_norm_loss("linen"), variables, ONES)
    expected = {
        "params.Conv_0.kernel": ("weight", -1),
        "params.Conv_0.bias": ("bias", 0),
        "params.Embed_0.embedding": ("weight", 0),
        "params.Dense_0.kernel": ("weight", -1),
        "params.Dense_0.bias": ("bias", 0),
        "params.LayerNorm_0.scale": ("norm", 0),
        "params.LayerNorm_0.bias": ("norm", 0),
        "params.GroupNorm_0.scale": ("norm", 0),
        "params.GroupNorm_0.bias": ("norm", 0),
        "params.RMSNorm_0.scale": ("norm", 0),
        "params.BatchNorm_0.scale": ("norm", 0),
        "params.BatchNorm_0.bias": ("norm", 0),
    }
    _check_filter_norms(obj, expected)
    # batch_stats are state: held fixed, not in the layout
    assert obj.dim == sum(a.size for a in jax.tree.leaves(variables["params"]))
    rebuilt = obj.to_params(obj.x0)
    assert set(rebuilt) == {"params", "batch_stats"}


def test_equinox_layer_types_and_filter_norms():
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    model = {
        "linear": eqx.nn.Linear(3, 4, key=keys[0], dtype=F64),
        "conv": eqx.nn.Conv2d(2, 5, 3, key=keys[1], dtype=F64),
        "convt": eqx.nn.ConvTranspose2d(2, 5, 3, key=keys[2], dtype=F64),
        "emb": eqx.nn.Embedding(6, 4, key=keys[3], dtype=F64),
        "ln": eqx.nn.LayerNorm(4, dtype=F64),
        "gn": eqx.nn.GroupNorm(2, 4, dtype=F64),
        "rms": eqx.nn.RMSNorm(4, dtype=F64),
    }
    model = eqx.nn.Sequential(list(model.values()))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    model = eqx.combine(_perturbed(params), static)
    obj = JaxObjective(_norm_loss("eqx"), model, ONES)
    expected = {
        "layers.0.weight": ("weight", 0),  # Linear (out, in)
        "layers.0.bias": ("bias", 0),
        "layers.1.weight": ("weight", 0),  # Conv2d (out, in, kh, kw)
        "layers.1.bias": ("bias", 0),
        "layers.2.weight": ("weight", 0),  # ConvTranspose2d (out, in, kh, kw)
        "layers.2.bias": ("bias", 0),
        "layers.3.weight": ("weight", 0),  # Embedding (num, features)
        "layers.4.weight": ("norm", 0),
        "layers.4.bias": ("norm", 0),
        "layers.5.weight": ("norm", 0),
        "layers.5.bias": ("norm", 0),
        "layers.6.weight": ("norm", 0),
        "layers.6.bias": ("norm", 0),
    }
    _check_filter_norms(obj, expected)
    assert obj.layout["layers.2.weight"].shape[0] == 5  # the output channels lead


def test_plain_pytree_with_override_equals_the_structured_model():
    model, loss, data, _, _ = eqx_mlp()
    structured = pc.objective(model, loss, data)
    raw = {
        "layers": [{"weight": lay.weight, "bias": lay.bias} for lay in model.layers],
    }

    def raw_loss(p, batch):
        x = batch[0]
        for i, lay in enumerate(p["layers"]):
            x = x @ lay["weight"].T + lay["bias"]
            x = jnp.tanh(x) if i < len(p["layers"]) - 1 else x
        return _mse(x, batch[1])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the override names every weight: no warning
        plain = pc.objective(raw, raw_loss, data, layout={"*.weight": 0})
    assert {b.name: (b.role, b.filter_axis, b.shape) for b in plain.layout} == {
        b.name: (b.role, b.filter_axis, b.shape) for b in structured.layout
    }
    assert abs(plain.loss(plain.x0) - structured.loss(structured.x0)) <= 1e-14
    d_plain = plain.layout.views(pc.random_directions(plain, k=1, rng=4).vectors[0])
    d_struct = structured.layout.views(pc.random_directions(structured, k=1, rng=4).vectors[0])
    for name, block in d_struct.items():
        np.testing.assert_array_equal(d_plain[name], block)


def test_plain_pytree_warns_once_and_layout_silences_it():
    params, loss, data, _, _ = plain_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj = pc.objective(params, loss, data)
        pc.random_directions(obj, k=2, rng=0)
        obj.subset(np.arange(4)).loss(obj.x0)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1
    assert "hidden.w, out.w" in messages[0] and "`layout=`" in messages[0]
    assert {b.name: (b.role, b.filter_axis) for b in obj.layout} == {
        "hidden.b": ("other", 0),
        "hidden.w": ("weight", -1),
        "out.b": ("other", 0),
        "out.w": ("weight", -1),
    }
    with pytest.warns(UserWarning, match=r"1 parameter block\(s\).*: out.w\."):
        pc.objective(params, loss, data, layout={"hidden.w": -1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        silent = pc.objective(params, loss, data, layout={"*.w": -1, "*.b": "bias"})
        assert param_layout(params) == obj.layout  # param_layout never warns
    assert [b.role for b in silent.layout] == ["bias", "weight", "bias", "weight"]
    assert silent.fingerprint()["params"] != obj.fingerprint()["params"]


def test_flax_name_rules_on_plain_dicts():
    params = {
        "norm": {"scale": np.ones(3), "bias": np.zeros(3)},  # 1-D scale: a norm layer
        "proj": {"scale": np.ones((3, 3)), "bias": np.zeros(3)},  # 2-D scale: no norm
        "tok": {"embedding": np.ones((6, 3))},
    }
    with pytest.warns(UserWarning, match=r"1 parameter block\(s\).*: proj.scale\."):
        layout = JaxObjective(_norm_loss("plain"), params, ONES).layout
    assert {b.name: (b.role, b.filter_axis) for b in layout} == {
        "norm.bias": ("norm", 0),
        "norm.scale": ("norm", 0),
        "proj.bias": ("bias", 0),
        "proj.scale": ("weight", -1),
        "tok.embedding": ("weight", 0),
    }


# --------------------------------------------------------------------------- kinds


def test_equinox_models_are_accepted_with_static_parts():
    for make in (eqx_mlp, eqx_sequential):
        model, loss, data, _, _ = make()
        obj = pc.objective(model, loss, data)
        assert isinstance(obj.to_params(obj.x0), type(model))
        sub = obj.subset(np.arange(5))
        want = loss(model, jax.tree.map(lambda a: a[:5], data))
        assert abs(sub.loss(sub.x0) - float(want)) <= 1e-13 * abs(float(want))
        # activation functions pickle with cloudpickle (jax.nn.relu does not with pickle)
        again = cloudpickle.loads(cloudpickle.dumps(obj))
        assert again.layout == obj.layout
        # (the "state" entry digests the static functions, which unpickle as new objects)
        for key in ("params", "data", "loss_fn"):
            assert again.fingerprint()[key] == obj.fingerprint()[key]
    assert again.loss(obj.x0) == obj.loss(obj.x0)


class Scaled(eqx.Module):
    linear: eqx.nn.Linear
    gain: float  # a Python float field: held fixed
    steps: jax.Array  # an integer array: held fixed

    def __call__(self, x):
        return self.gain * self.linear(x) + self.steps


def test_python_float_and_integer_leaves_are_held_fixed():
    model = Scaled(eqx.nn.Linear(4, 3, key=jax.random.PRNGKey(0), dtype=F64), 2.5, jnp.arange(3))
    obj = pc.objective(model, _eqx_case(model, (X_VEC, Y_VEC))[1], (X_VEC, Y_VEC))
    assert obj.dim == 4 * 3 + 3
    rebuilt = obj.to_params(obj.x0)
    assert rebuilt.gain == 2.5 and rebuilt.steps.dtype == jnp.arange(3).dtype


def test_nnx_and_linen_objectives_pickle_and_subset():
    for make in (nnx_model, linen_model):
        model, loss, data, _, _ = make()
        obj = pc.objective(model, loss, data)
        again = cloudpickle.loads(cloudpickle.dumps(obj))  # the losses are closures
        assert again.layout == obj.layout and again.fingerprint() == obj.fingerprint()
        assert again.loss(obj.x0) == obj.loss(obj.x0)
        idx = np.array([7, 1, 4])
        sub = obj.subset(idx)
        ref = pc.objective(model, loss, jax.tree.map(lambda a, i=idx: a[i], data))
        assert abs(sub.loss(sub.x0) - ref.loss(ref.x0)) <= 1e-13 * ref.loss(ref.x0)


def test_device_option():
    params, loss, data, _, _ = plain_model()
    base = pc.objective(params, loss, data, layout=PLAIN_LAYOUT)
    cpu = jax.devices("cpu")[0]
    for device in ("cpu", "cpu:0", "CPU", cpu):
        obj = pc.objective(params, loss, data, layout=PLAIN_LAYOUT, device=device)
        assert obj.device == cpu
        assert obj.loss(obj.x0) == base.loss(base.x0)
        again = cloudpickle.loads(cloudpickle.dumps(obj))
        assert again.device == cpu
    with pytest.raises(ValueError, match=r"`device`.*'cpu:7'.*\[0, 0\]"):
        pc.objective(params, loss, data, device="cpu:7")
    with pytest.raises(ValueError, match=r"`device`.*'quantum'.*devices: cpu:0"):
        pc.objective(params, loss, data, device="quantum")
    with pytest.raises(TypeError, match=r"`device` must be None, a jax.Device.*int 0"):
        pc.objective(params, loss, data, device=0)


def test_layout_option_errors_name_the_parameter():
    params, loss, data, _, _ = plain_model()
    with pytest.raises(TypeError, match="`layout` must be None, a probecore.Layout"):
        pc.objective(params, loss, data, layout=[("hidden.w", 0)])
    with pytest.raises(ValueError, match="`layout` entry 'nope' matches no block"):
        pc.objective(params, loss, data, layout={"nope": 0})
    with pytest.raises(ValueError, match="role for 'hidden.w' in layout"):
        pc.objective(params, loss, data, layout={"hidden.w": "kernel"})


def test_plugin_claims_framework_objects_only():
    from probecore_jax.plugin import _is_jax_model

    assert _is_jax_model(NnxNet(nnx.Rngs(0)))
    assert _is_jax_model(nnx.state(NnxNet(nnx.Rngs(0))))
    assert _is_jax_model(eqx.nn.MLP(2, 2, 2, 1, key=jax.random.PRNGKey(0)))
    assert _is_jax_model({"w": np.ones(2), "t": 1.0})
    assert not _is_jax_model(eqx.nn.Lambda(jnp.tanh))  # no array at all
    assert not _is_jax_model(pc.analytic.Rosenbrock(3))
    assert not _is_jax_model({"w": "weights.npy"})
