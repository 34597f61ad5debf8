"""Landscape probes on PyTorch models: filter normalization, executors, kill and resume."""

from __future__ import annotations

import multiprocessing
import textwrap
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from torch import nn
from torch.nn import functional as F

import probecore as pc
from probecore.testing import dense_hessian

from .models_torch import cnn, digits, mlp, with_running_stats

# Worker processes are spawned, not forked: a fork after JAX or torch started their thread
# pools can deadlock (JAX warns, and the suite turns warnings into errors).
_SPAWN = multiprocessing.get_context("spawn")


def _filter_norms(block, v):
    t = np.moveaxis(v[block.slice].reshape(block.shape), block.filter_axis, 0)
    return np.linalg.norm(t.reshape(t.shape[0], -1), axis=1)


def test_filter_normalization_on_conv_and_linear_layers():
    Xi, yi = digits(100, image=True)
    model = with_running_stats(cnn(batchnorm=True), Xi)
    obj = pc.objective(model, F.cross_entropy, (Xi, yi))
    roles = {b.name: b.role for b in obj.layout}
    assert roles["0.weight"] == "weight" and roles["1.weight"] == "norm"
    assert roles["0.bias"] == "bias" and roles["7.weight"] == "weight"
    d = pc.random_directions(obj, k=2, rng=0)
    for row in d.vectors:
        for b in obj.layout:
            if b.role == "weight":  # conv (8, 1, 3, 3), (8, 8, 3, 3) and linear (10, 32)
                np.testing.assert_allclose(
                    _filter_norms(b, row), _filter_norms(b, obj.x0), rtol=1e-12
                )
            else:
                assert np.all(row[b.slice] == 0), b.name
    kept = pc.random_directions(obj, k=1, rng=0, bias="weights", norm="weights").vectors[0]
    for b in obj.layout:
        if b.role != "weight":
            np.testing.assert_array_equal(kept[b.slice], obj.x0[b.slice])


def test_plane_of_a_cnn_matches_direct_torch_evaluation():
    Xi, yi = digits(120, image=True)
    model = cnn().eval()
    obj = pc.objective(model, F.cross_entropy, (Xi, yi), batch_size=50)
    d = pc.random_directions(obj, k=2, rng=1)
    a, b = np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 3)
    r = pc.plane(obj, d, alphas=a, betas=b, metrics=True, chunk_size=4)
    import torch

    params = list(model.parameters())
    x0 = torch.nn.utils.parameters_to_vector(params).detach().clone()
    for i, bj in enumerate(b):
        for j, ai in enumerate(a):
            point = x0 + torch.from_numpy(ai * d.vectors[0] + bj * d.vectors[1])
            torch.nn.utils.vector_to_parameters(point, params)
            with torch.no_grad():
                out = model(Xi)
            want = float(F.cross_entropy(out, yi))
            assert r.losses[i, j] == pytest.approx(want, rel=1e-12)
            acc = float((out.argmax(1) == yi).double().mean())
            assert r.metric("accuracy")[i, j] == pytest.approx(acc, abs=1e-12)
    torch.nn.utils.vector_to_parameters(x0, params)


def test_process_pool_with_a_pickled_torch_objective_equals_serial():
    X, y = digits(200)
    obj = pc.objective(mlp().eval(), F.cross_entropy, (X, y))
    obj.hvp(obj.x0, np.ones(obj.dim))  # a cached graph must not stop pickling
    d = pc.random_directions(obj, k=2, rng=0)
    grid = dict(alphas=np.linspace(-1, 1, 6), betas=np.linspace(-1, 1, 6), chunk_size=5)
    serial = pc.plane(obj, d, **grid)
    with ProcessPoolExecutor(2, mp_context=_SPAWN) as ex:
        par = pc.plane(obj, d, executor=ex, **grid)
        r = pc.rays(obj, n_rays=20, rng=0, chunk_size=5, executor=ex)
    np.testing.assert_allclose(par.losses, serial.losses, rtol=1e-13)
    np.testing.assert_allclose(
        r.kappa, pc.rays(obj, n_rays=20, rng=0, chunk_size=5).kappa, rtol=1e-9
    )


def test_unpicklable_objective_gets_a_clear_error():
    X, y = digits(50)
    obj = pc.objective(mlp().eval(), lambda out, t: F.cross_entropy(out, t), (X, y))
    d = pc.random_directions(obj, k=2, rng=0)
    with (
        ProcessPoolExecutor(1, mp_context=_SPAWN) as ex,
        pytest.raises(TypeError, match="objective_factory"),
    ):
        pc.plane(obj, d, alphas=[0.0, 1.0], betas=[0.0, 1.0], executor=ex)


@pytest.mark.slow
def test_dask_local_cluster_plane_equals_serial(tmp_path):
    distributed = pytest.importorskip("distributed")
    Xi, yi = digits(150, image=True)
    obj = pc.objective(cnn().eval(), F.cross_entropy, (Xi, yi))
    d = pc.random_directions(obj, k=2, rng=0)
    grid = dict(alphas=np.linspace(-1, 1, 5), betas=np.linspace(-1, 1, 5), chunk_size=4)
    serial = pc.plane(obj, d, **grid)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: 8787 may be taken by another server
            local_directory=str(tmp_path),
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        r = pc.plane(obj, d, executor=client.get_executor(), **grid)
    np.testing.assert_allclose(r.losses, serial.losses, rtol=1e-13)


_CNN_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from torch import nn
    from torch.nn import functional as F
    import probecore as pc

    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)  # all 1797 images
    y = torch.tensor(y)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3,
        padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 10)).eval()
    obj = pc.objective(model, F.cross_entropy, (X, y))
    d = pc.random_directions(obj, k=2, rng=0)
    r = pc.plane(obj, d, alphas=np.linspace(-1, 1, 13), betas=np.linspace(-1, 1, 13),
                 chunk_size=6, store=sys.argv[1], progress=False)
    print(r.n_loss_evals)
    """
)


def test_digits_cnn_plane_killed_and_restarted_is_bitwise_identical(tmp_path, kill_and_resume):
    script = tmp_path / "cnn_plane.py"
    script.write_text(_CNN_SCRIPT)
    saved, evaluated, path, fresh = kill_and_resume(script, tmp_path, total=169, at_least=24)
    assert evaluated == 1 + 169 - saved  # none of the saved points recomputed (1: the origin)
    np.testing.assert_array_equal(pc.load_run(path).losses, pc.load_run(fresh).losses)
    assert pc.load_run(path).metadata["objective"]["n_examples"] == 1797


def test_rays_on_a_torch_model_track_the_hessian_trace():
    X, y = digits(200)
    obj = pc.objective(mlp(hidden=16).eval(), F.cross_entropy, (X, y))
    r = pc.rays(obj, n_rays=400, rng=0)
    trace = np.trace(dense_hessian(obj)) / obj.dim
    # κ = dᵀHd + O(ε²): with ε = 1.2e-4 the bias is far below the Monte Carlo error
    assert r.mean_ci[0] - 1e-6 <= trace <= r.mean_ci[1] + 1e-6
    assert r.n_loss_evals == 4 * 400 + 2 * 32 + 1 and isinstance(nn.Module, type)


def test_hessian_rays_of_a_float32_relu_network_match_float64():
    # float32 differences of a ReLU network cross activation changes at every step that
    # rounding allows; dᵀHd from HVPs does not, and equals float64's to its rounding bound
    import copy

    import torch

    X, y = digits(300, dtype=torch.float32)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).float()
    o32 = pc.objective(net, F.cross_entropy, (X, y))
    o64 = pc.objective(copy.deepcopy(net).double(), F.cross_entropy, (X.double(), y))
    assert (o32.dtype, o64.dtype) == (np.float32, np.float64)
    r32 = pc.rays(o32, n_rays=40, rng=0, curvature="hessian")
    r64 = pc.rays(o64, n_rays=40, rng=0, curvature="hessian")
    assert np.max(np.abs(r32.kappa - r64.kappa)) <= r32.rounding_error
    D = pc.ray_directions(0, range(40), o64.dim)
    want = np.einsum("ij,jk,ik->i", D, dense_hessian(o64), D)
    np.testing.assert_allclose(r64.kappa, want, rtol=1e-10, atol=1e-14)
    widen = np.array([-r32.rounding_error, r32.rounding_error])
    np.testing.assert_allclose(r32.mean_total_ci, r32.mean_ci + widen, rtol=1e-15)
    # the differences of the same rays in float32 cross kinks, and say so
    with pytest.warns(RuntimeWarning, match="curvature='hessian'"):
        fd = pc.rays(o32, n_rays=40, rng=0)
    assert fd.n_kinked > 0
