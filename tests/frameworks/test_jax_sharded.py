"""Data sharded over the devices of one process (``devices=``) against one device.

Collected only when ``PROBECORE_TEST_BACKENDS`` names ``jax`` (float64: the conftest turns
on ``jax_enable_x64``).

Two CPU host devices need ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` before
JAX starts, and the test session keeps one device (``test_jax_models`` checks the messages
of a one-device machine). So the comparisons run once in a child process
(``python -m frameworks.test_jax_sharded``, CPU only, with that flag), which prints its
measurements as JSON; the tests here assert on them. The option's checks run here.

The model is a Flax linen CNN on 301 scikit-learn digits in float64, in batches of 64 (the
last of 45: 44 examples sharded, one replicated) and in one batch of 301 (300 and one).
Sharding changes only the order of the additions of the mean over examples (each device
sums its half, XLA adds the halves), so the objective's members agree with one device's to
1e-12 relative, and Lanczos, Hutch++ and SLQ, fed those products, to 1e-10.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import re
import subprocess
import sys
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from probecore_jax import JaxObjective

import probecore as pc
from probecore.testing import check_objective

from . import models_jax as M

N = 301
TESTS = pathlib.Path(__file__).resolve().parents[1]


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = jnp.tanh(nn.Conv(4, (3, 3), param_dtype=jnp.float64)(x))
        return nn.Dense(10, param_dtype=jnp.float64)(h.reshape(h.shape[0], -1))


def cnn_loss(variables, batch):
    images, labels = batch
    logits = CNN().apply(variables, images)
    picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)


def weighted_loss(variables, batch):
    """A weighted mean (weights from the labels): not a mean over examples."""
    images, labels = batch
    logits = CNN().apply(variables, images)
    picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    w = labels.astype(logits.dtype) + 1.0
    return jnp.sum(w * (jax.nn.logsumexp(logits, axis=1) - picked)) / jnp.sum(w)


def cnn_metrics(variables, batch):
    images, labels = batch
    hits = jnp.argmax(CNN().apply(variables, images), axis=1) == labels
    return {"accuracy": jnp.mean(hits.astype(jnp.float64))}


def _variables():
    return CNN().init(jax.random.PRNGKey(0), jnp.ones((1, 8, 8, 1)))


def _data(batch_size):
    X, y = M.digits(N)
    X = X.reshape(-1, 8, 8, 1)
    return (X, y) if batch_size is None else M.split(X, y, batch_size)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# --------------------------------------------------------------------------- the child


def _pieces(obj) -> list[list[int]]:
    """Examples of each piece of each held batch."""
    return [[jax.tree_util.tree_leaves(p)[0].shape[0] for p in b] for b in obj._held]


def _placement(leaf) -> dict:
    return {
        "devices": sorted(f"{d.platform}:{d.id}" for d in leaf.sharding.device_set),
        "spec": str(getattr(leaf.sharding, "spec", None)),
        "replicated": bool(leaf.sharding.is_fully_replicated),
        "shards": [s.data.shape[0] for s in leaf.addressable_shards],
    }


def _compare(one, two, seed: int, *, full: bool) -> dict:
    """Max relative differences of two objectives' members (and the estimators if full)."""
    rng = np.random.default_rng(seed)
    x, V = one.x0 + 0.05 * rng.standard_normal(one.dim), rng.standard_normal((5, one.dim))
    r = {
        "loss": _rel(two.loss(x), one.loss(x)),
        "grad": _rel(two.grad(x), one.grad(x)),
        "hvp": _rel(two.hvp(x, V[0]), one.hvp(x, V[0])),
    }
    if not full:
        return r
    loss2, grad2 = two.loss_and_grad(x)
    r["loss_and_grad"] = max(_rel(loss2, one.loss(x)), _rel(grad2, one.grad(x)))
    r["hvp_many"] = _rel(two.hvp_many(x, V), one.hvp_many(x, V))
    coeffs = rng.uniform(-1, 1, (7, 2))
    r["losses_in_span"] = _rel(
        two.losses_in_span(x, V[:2], coeffs), one.losses_in_span(x, V[:2], coeffs)
    )
    m1, m2 = one.metrics(x), two.metrics(x)
    assert m1.keys() == m2.keys() == {"accuracy"}
    r["metrics"] = _rel(m2["accuracy"], m1["accuracy"])
    # the cached linearization (the default on accelerators) shards its residuals too; a
    # subset of every example is the same objective, with its compiled functions
    lin = two.subset(np.arange(N))
    lin.linearize_max_bytes = 2**40
    r["hvp_many_linearized"] = _rel(lin.hvp_many(x, V), one.hvp_many(x, V))
    assert lin._linearized is not None
    est = {}
    t1, t2 = pc.lanczos(one, k=3, rng=0), pc.lanczos(two, k=3, rng=0)
    est["lanczos"] = _rel(t2.eigenvalues, t1.eigenvalues)
    h1, h2 = pc.hutchpp(one, n_matvecs=30, rng=0), pc.hutchpp(two, n_matvecs=30, rng=0)
    est["hutchpp"] = _rel(h2.estimate, h1.estimate)
    kw = dict(n_probes=2, n_steps=25, rng=0)
    s1, s2 = pc.spectral_density(one, **kw), pc.spectral_density(two, **kw)
    for field in ("nodes", "weights", "density"):
        est[f"slq_{field}"] = _rel(getattr(s2, field), getattr(s1, field))
    return {"members": r, "estimators": est}


def _measure() -> dict:
    """Everything the tests check that needs two devices (run in the child)."""
    cpus = jax.devices("cpu")
    assert len(cpus) >= 2, cpus
    out: dict = {"n_devices": len(cpus)}
    kw = dict(metrics_fn=cnn_metrics)
    one = JaxObjective(cnn_loss, _variables(), _data(64), device=cpus[0], **kw)
    two = JaxObjective(cnn_loss, _variables(), _data(64), devices=cpus[:2], **kw)
    pieces = two._held
    out["sharding"] = {
        "mesh_size": two.mesh.size,
        "batch_sizes": list(two.batch_sizes),
        "pieces": _pieces(two),
        "sharded": [_placement(leaf) for b in pieces for leaf in jax.tree_util.tree_leaves(b[0])],
        "remainder": [_placement(leaf) for leaf in jax.tree_util.tree_leaves(pieces[-1][1])],
        "params": [_placement(leaf) for leaf in two._params.float_leaves],
        "repr": repr(two),
    }
    X, y = _data(None)
    small = JaxObjective(cnn_loss, _variables(), (X[:1], y[:1]), devices=cpus[:2])
    out["sharding"]["small_pieces"] = _pieces(small)
    out["sharding"]["small"] = [
        _placement(leaf) for leaf in jax.tree_util.tree_leaves(small._held[0][0])
    ]

    out["batches_of_64"] = _compare(one, two, seed=0, full=True)
    refusals = {}
    for name, data, stream in (("held", _data(64), False), ("stream", _data(64), True)):
        try:
            JaxObjective(weighted_loss, _variables(), data, devices=cpus[:2], stream=stream)
        except ValueError as exc:
            refusals[name] = str(exc)
    # batches that all split evenly need no check: accepted, and equal to one device
    even = _data(None)[0][:300], _data(None)[1][:300]
    w1 = JaxObjective(weighted_loss, _variables(), M.split(*even, 100), device=cpus[0])
    w2 = JaxObjective(weighted_loss, _variables(), M.split(*even, 100), devices=cpus[:2])
    refusals["even_loss"] = _rel(w2.loss(w2.x0), w1.loss(w1.x0))
    out["not_a_mean"] = refusals
    whole1 = JaxObjective(cnn_loss, _variables(), _data(None), device=cpus[0])
    whole2 = JaxObjective(cnn_loss, _variables(), _data(None), devices=cpus[:2])
    out["one_batch"] = {"pieces": _pieces(whole2), **_compare(whole1, whole2, seed=3, full=False)}

    report = check_objective(two, rng=0)
    out["check_objective"] = {"passed": bool(report.passed), "report": str(report)}

    rng = np.random.default_rng(2)
    x, V = one.x0 + 0.05 * rng.standard_normal(one.dim), rng.standard_normal((2, one.dim))
    idx = np.arange(3, N, 2)  # 149 examples: batches 64, 64, 21
    sub1, sub2 = one.subset(idx), two.subset(idx)
    streamed = JaxObjective(cnn_loss, _variables(), _data(64), stream=True, devices=cpus[:2])
    back = pickle.loads(pickle.dumps(two))
    first = _data(64)[0]
    by_mesh = JaxObjective(cnn_loss, _variables(), first, devices=Mesh(np.array(cpus[:2]), ("e",)))
    via_plugin = pc.objective(_variables(), cnn_loss, first, devices=2)
    out["kept"] = {
        "subset_same_mesh": sub2.mesh is two.mesh,
        "subset_pieces": _pieces(sub2),
        "subset_spec": _placement(jax.tree_util.tree_leaves(sub2._held[0][0])[0])["spec"],
        "subset_hvp": _rel(sub2.hvp(x, V[0]), sub1.hvp(x, V[0])),
        "subset_data": sub2.data_subset["data"] == sub1.data_subset["data"],
        "fingerprint_equal": two.fingerprint() == one.fingerprint(),
        "pickled_devices": [f"{d.platform}:{d.id}" for d in back.mesh.devices.flat],
        "pickled_loss_equal": back.loss(x) == two.loss(x),
        "stream_held": streamed._held is None,
        "stream_batch_sizes": list(streamed.batch_sizes),
        "stream_hvp_many": _rel(streamed.hvp_many(x, V), one.hvp_many(x, V)),
        "stream_subset_loss": _rel(streamed.subset(idx).loss(x), sub1.loss(x)),
        "mesh_spec": _placement(jax.tree_util.tree_leaves(by_mesh._held[0][0])[0])["spec"],
        "plugin_mesh_size": via_plugin.mesh.size,
        "plugin_loss_equal": via_plugin.loss(x) == by_mesh.loss(x),
    }
    return out


# --------------------------------------------------------------------------- the tests


def _child_env() -> dict[str, str]:
    """The environment with two CPU host devices (any other count given replaced)."""
    env = dict(os.environ)
    rest = re.sub(r"--xla_force_host_platform_device_count=\S*", "", env.get("XLA_FLAGS", ""))
    # first: XLA stops reading XLA_FLAGS at a token that is not a --flag
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count=2 {rest.strip()}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    return env


def _run_child() -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "frameworks.test_jax_sharded"],
        cwd=TESTS,
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def measured(tmp_path_factory) -> dict:
    """The child's measurements: run once per session, once for all xdist workers too."""
    try:
        import filelock
    except ImportError:  # pragma: no cover - the store extra brings it
        filelock = None
    if not os.environ.get("PYTEST_XDIST_WORKER") or filelock is None:
        return json.loads(_run_child())
    shared = tmp_path_factory.getbasetemp().parent / "jax_sharded.json"
    with filelock.FileLock(f"{shared}.lock"):
        if not shared.is_file():
            shared.write_text(_run_child(), encoding="utf-8")
        return json.loads(shared.read_text(encoding="utf-8"))


def test_batches_are_sharded_over_two_devices(measured):
    s = measured["sharding"]
    assert s["mesh_size"] == 2 and "devices=2" in s["repr"]
    assert s["batch_sizes"] == [64, 64, 64, 64, 45]
    # the last batch: its even part sharded, its odd example replicated on both devices
    assert s["pieces"] == [[64], [64], [64], [64], [44, 1]]
    for p in s["sharded"]:
        assert p["devices"] == ["cpu:0", "cpu:1"] and p["spec"] == str(P("data"))
        assert not p["replicated"] and p["shards"] in ([32, 32], [22, 22])
    for p in s["remainder"] + s["params"] + s["small"]:
        assert p["devices"] == ["cpu:0", "cpu:1"] and p["replicated"]
    assert s["small_pieces"] == [[1]]  # a batch smaller than the device count: replicated


def test_two_devices_equal_one_to_1e_12(measured):
    got = measured["batches_of_64"]["members"]
    assert set(got) >= {"loss", "grad", "hvp", "hvp_many", "losses_in_span", "metrics"}
    assert max(got.values()) <= 1e-12, got


def test_one_batch_of_301_equals_one_device_to_1e_12(measured):
    got = dict(measured["one_batch"])
    assert got.pop("pieces") == [[300, 1]]
    assert max(got.values()) <= 1e-12, got


def test_estimators_agree_to_1e_10(measured):
    got = measured["batches_of_64"]["estimators"]
    assert set(got) == {"lanczos", "hutchpp", "slq_nodes", "slq_weights", "slq_density"}
    assert max(got.values()) <= 1e-10, got


def test_check_objective_passes_on_two_devices(measured):
    got = measured["check_objective"]
    assert got["passed"], got["report"]


def test_subset_pickle_stream_and_fingerprint_keep_the_sharding(measured):
    k = measured["kept"]
    assert k["subset_same_mesh"] and k["subset_pieces"] == [[64], [64], [20, 1]]
    assert k["subset_spec"] == str(P("data")) and k["subset_hvp"] <= 1e-12
    assert k["subset_data"]
    assert k["fingerprint_equal"]  # a store may resume a run on another number of devices
    assert k["pickled_devices"] == ["cpu:0", "cpu:1"] and k["pickled_loss_equal"]
    assert k["stream_held"] and k["stream_batch_sizes"] == [64, 64, 64, 64, 45]
    assert k["stream_hvp_many"] <= 1e-12 and k["stream_subset_loss"] <= 1e-12
    assert k["mesh_spec"] == str(P("e"))  # a mesh's own axis name
    assert k["plugin_mesh_size"] == 2 and k["plugin_loss_equal"]


def test_the_devices_option_is_checked():
    variables, data = _variables(), _data(None)
    cpus = jax.devices("cpu")

    def make(devices, **kw):
        return JaxObjective(cnn_loss, variables, data, devices=devices, **kw)

    n = len(jax.local_devices())
    for bad in (0, -2):
        with pytest.raises(ValueError, match=rf"`devices` must be a positive number.*got {bad}"):
            make(bad)
    with pytest.raises(
        ValueError,
        match=rf"`devices` must be at most .* \({n}: .*got {n + 1}\. On the CPU, set "
        rf"XLA_FLAGS=--xla_force_host_platform_device_count={n + 1}",
    ):
        make(n + 1)
    with pytest.raises(ValueError, match=r"`devices` must be a Mesh with one axis.*'a': 1, 'b': 1"):
        make(Mesh(np.array(cpus[:1]).reshape(1, 1), ("a", "b")))
    gpu = mock.MagicMock(spec=jax.Device, platform="gpu", id=0, process_index=0)
    with pytest.raises(ValueError, match=r"`devices` must all be of one platform.*cpu:0, gpu:0"):
        make([cpus[0], gpu])
    with pytest.raises(TypeError, match=r"`devices` must be None, a number of devices.*str 'cpu'"):
        make("cpu")
    with pytest.raises(TypeError, match=r"`devices` must be None.*bool True"):
        make(True)
    with pytest.raises(TypeError, match=r"`devices` must be a sequence of jax.Device.*int 0"):
        make([0, 1])
    with pytest.raises(ValueError, match=r"`devices` must hold at least one jax.Device"):
        make([])
    with pytest.raises(ValueError, match=r"`devices` must not repeat a device"):
        make([cpus[0], cpus[0]])
    with pytest.raises(ValueError, match=r"`device` and `devices` cannot be combined"):
        make(cpus[:1], device="cpu")


if __name__ == "__main__":  # the child: python -m frameworks.test_jax_sharded
    jax.config.update("jax_enable_x64", True)
    print(json.dumps(_measure()))


def test_a_loss_that_is_not_a_mean_over_examples_is_refused_when_split(measured):
    refused = measured["not_a_mean"]
    for name in ("held", "stream"):
        assert refused[name].startswith(
            "with devices=2, batch 4 (45 examples) is evaluated as 44 examples sharded"
        ), refused
        assert "Use batch sizes that are multiples of 2." in refused[name]
    assert refused["even_loss"] <= 1e-12
