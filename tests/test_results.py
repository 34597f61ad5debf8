"""Result objects: frozen, read-only arrays, lossless save/load, reproducible from `seed`."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import probecore as pc
from probecore.analytic import Quadratic, nn_like_spectrum

RESULT_TYPES = (pc.EigResult, pc.PowerIterationResult, pc.SpectralDensity, pc.TraceResult)


@pytest.fixture(scope="module")
def quad() -> Quadratic:
    # distinct top eigenvalues (100 and at most ~90) so every method converges quickly
    lam = nn_like_spectrum(40, top=100.0, rng=3)
    return Quadratic.from_spectrum(lam, rng=4, linear=True)


@pytest.fixture(scope="module")
def quad32() -> Quadratic:
    return Quadratic.from_spectrum(nn_like_spectrum(40, top=100.0, rng=3), rng=4, dtype=np.float32)


# Each runs one public function with the given rng.
RUNNERS = {
    "lanczos": lambda A, rng: pc.lanczos(A, k=3, rng=rng),
    "lanczos_SA": lambda A, rng: pc.lanczos(A, k=2, which="SA", rng=rng),
    "eigsh": lambda A, rng: pc.lanczos(A, k=3, method="eigsh", rng=rng),
    "power_iteration": lambda A, rng: pc.power_iteration(A, rng=rng),
    "hutchinson": lambda A, rng: pc.hutchinson(A, n_probes=20, rng=rng),
    "hutchinson_gaussian": lambda A, rng: pc.hutchinson(
        A, n_probes=7, batch_size=3, distribution="gaussian", rng=rng
    ),
    "hutchpp": lambda A, rng: pc.hutchpp(A, n_matvecs=30, rng=rng),
    "spectral_density": lambda A, rng: pc.spectral_density(
        A, n_probes=3, n_steps=15, n_grid=200, rng=rng
    ),
}


@pytest.fixture(params=list(RUNNERS), ids=str)
def runner(request):
    return RUNNERS[request.param]


def _same_scalar(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def assert_same_result(a, b, *, ignore_meta=("saved_with_probecore",)) -> None:
    """Field-by-field equality: arrays bit-equal with the same dtype, scalars equal with
    the same Python type, metadata equal apart from keys added on loading."""
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if f.name in type(a)._array_fields:
            assert va.dtype == vb.dtype, f.name
            np.testing.assert_array_equal(va, vb, err_msg=f.name, strict=True)
        elif f.name == "metadata":
            strip = lambda m: {k: v for k, v in m.items() if k not in ignore_meta}  # noqa: E731
            assert strip(va) == strip(vb)
        else:
            assert _same_scalar(va, vb), (f.name, va, vb)


# --------------------------------------------------------------------------- frozen, read-only


def _direct_results():
    """One of each type built directly from arrays the test owns."""
    arrays = {
        "ev": np.array([3.0, 2.0]),
        "vecs": np.eye(4)[:, :2].copy(),
        "res": np.array([1e-9, 2e-9]),
        "vec": np.array([1.0, 0.0, 0.0]),
        "hist": np.array([2.5, 2.9, 3.0]),
        "grid": np.linspace(0, 1, 5),
        "density": np.ones(5),
        "nodes": np.array([[0.2, 0.8]]),
        "weights": np.array([[0.5, 0.5]]),
        "samples": np.array([1.0, 2.0, 3.0]),
    }
    meta = {"model": "toy"}
    results = [
        pc.EigResult(
            eigenvalues=arrays["ev"],
            eigenvectors=arrays["vecs"],
            residual_norms=arrays["res"],
            which="LA",
            method="lanczos",
            n_matvecs=10,
            n_restarts=0,
            converged=True,
            tol=1e-8,
            seed=1,
            metadata=meta,
        ),
        pc.PowerIterationResult(
            eigenvalue=3.0,
            eigenvector=arrays["vec"],
            residual_norm=1e-9,
            eigenvalue_change=1e-12,
            history=arrays["hist"],
            n_iter=3,
            n_matvecs=3,
            converged=True,
            seed=2,
            metadata=meta,
        ),
        pc.SpectralDensity(
            grid=arrays["grid"],
            density=arrays["density"],
            nodes=arrays["nodes"],
            weights=arrays["weights"],
            sigma=0.1,
            dim=4,
            n_matvecs=2,
            seed=3,
            metadata=meta,
        ),
        pc.TraceResult(
            estimate=2.0,
            std_error=0.5,
            samples=arrays["samples"],
            method="hutchinson",
            n_matvecs=3,
            seed=4,
            metadata=meta,
        ),
    ]
    return results, arrays, meta


def test_result_types_are_all_covered():
    results, _, _ = _direct_results()
    assert {type(r) for r in results} == set(RESULT_TYPES)


def test_results_are_frozen():
    results, _, _ = _direct_results()
    for r in results:
        for f in dataclasses.fields(r):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(r, f.name, getattr(r, f.name))
            with pytest.raises(dataclasses.FrozenInstanceError):
                delattr(r, f.name)
        # (a non-field name raises TypeError on Python 3.11: dataclasses' frozen
        # __setattr__ calls super() with the pre-slots class; any refusal will do)
        with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
            r.new_attribute = 1
        assert not hasattr(r, "new_attribute")


def test_array_fields_are_read_only_copies():
    results, arrays, meta = _direct_results()
    snapshots = [{n: getattr(r, n).copy() for n in type(r)._array_fields} for r in results]
    # mutate every input after construction
    for arr in arrays.values():
        arr[...] = -7.0
    meta["model"] = "changed"
    meta["extra"] = 1
    for r, snap in zip(results, snapshots, strict=True):
        assert r.metadata == {"model": "toy"}
        for name, before in snap.items():
            field = getattr(r, name)
            np.testing.assert_array_equal(field, before)
            assert not field.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                field[...] = 0.0
            with pytest.raises(ValueError, match="read-only"):
                field.flat[0] = 1.0
            np.testing.assert_array_equal(field, before)


def test_results_of_real_functions_are_frozen_and_read_only(quad, runner):
    r = runner(quad, 0)
    assert isinstance(r, RESULT_TYPES)
    assert r.seed == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.n_matvecs = 0
    for name in type(r)._array_fields:
        arr = getattr(r, name)
        assert isinstance(arr, np.ndarray) and not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr.flat[0] = 0.0


def test_repr_is_compact():
    results, _, _ = _direct_results()
    big = pc.TraceResult(
        estimate=1.0, std_error=0.1, samples=np.arange(1000.0), method="hutchinson", n_matvecs=1000
    )
    assert "array(shape=(1000,), dtype=float64)" in repr(big)
    for r in results:
        assert repr(r).startswith(type(r).__name__ + "(")


# --------------------------------------------------------------------------- save / load


def test_save_load_round_trips_int_seed(quad, runner, tmp_path):
    r = runner(quad, 12345)
    user = {"model": "quadratic", "dim": 40, "tags": ["a", "b"], "nested": {"lr": 0.1}}
    path = pc.save(r, tmp_path / "result", metadata=user)
    assert path == os.fspath(tmp_path / "result.npz") and os.path.exists(path)
    loaded = pc.load(path)
    assert_same_result(r, loaded, ignore_meta=("saved_with_probecore", *user))
    assert loaded.seed == 12345 and type(loaded.seed) is int
    for key, value in user.items():
        assert loaded.metadata[key] == value
    for key, value in r.metadata.items():  # the function's own metadata survives too
        assert loaded.metadata[key] == value
    assert loaded.metadata["saved_with_probecore"] == pc.__version__
    for name in type(loaded)._array_fields:
        assert not getattr(loaded, name).flags.writeable
    # no temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.npz"]


def test_save_load_round_trips_generator_seed(quad, runner, tmp_path):
    gen = np.random.default_rng(2024)
    gen.standard_normal(17)  # a generator that is not at its initial state
    state_before = gen.bit_generator.state
    r = runner(quad, gen)
    assert r.seed == {"bit_generator_state": state_before}
    loaded = pc.load(pc.save(r, tmp_path / "result.npz"))
    assert_same_result(r, loaded)
    assert loaded.seed == {"bit_generator_state": state_before}


def test_save_load_float32(quad32, tmp_path):
    for r in (
        pc.lanczos(quad32, k=2, rng=0),
        pc.power_iteration(quad32, rng=0),
        pc.hutchinson(quad32, n_probes=4, rng=0),
    ):
        loaded = pc.load(pc.save(r, tmp_path / type(r).__name__))
        assert_same_result(r, loaded)  # including the dtype of every array


def test_save_load_direct_results_and_non_finite_scalars(tmp_path):
    results, _, _ = _direct_results()
    for i, r in enumerate(results):
        assert_same_result(r, pc.load(pc.save(r, tmp_path / f"r{i}")))
    # a single-sample trace has no standard error (NaN); infinities survive as well
    r = pc.TraceResult(
        estimate=float("inf"),
        std_error=float("nan"),
        samples=np.ones(1),
        method="hutchinson",
        n_matvecs=1,
        metadata={"worst": float("-inf")},
    )
    loaded = pc.load(pc.save(r, Path(tmp_path, "nan")))
    assert loaded.estimate == float("inf") and math.isnan(loaded.std_error)
    assert loaded.metadata["worst"] == float("-inf")


def test_save_load_numpy_scalar_metadata(tmp_path):
    r = pc.TraceResult(
        estimate=1.0, std_error=0.1, samples=np.ones(3), method="hutchinson", n_matvecs=3
    )
    meta = {"n": np.int64(7), "loss": np.float64(0.25), "ok": np.bool_(True)}
    loaded = pc.load(pc.save(r, tmp_path / "np", metadata=meta))
    assert loaded.metadata["n"] == 7 and loaded.metadata["loss"] == 0.25
    assert loaded.metadata["ok"] is True


def test_save_load_non_finite_numpy_scalar_metadata(tmp_path):
    # Regression: NumPy float scalars that are NaN/inf must be stored like Python floats
    # (an early _to_json returned np.generic's .item() before the non-finite handling,
    # so save() refused them as "not JSON-serialisable").
    r = pc.TraceResult(
        estimate=1.0, std_error=0.1, samples=np.ones(3), method="hutchinson", n_matvecs=3
    )
    meta = {"final_loss": np.float64("nan"), "max_grad": np.float32("inf")}
    loaded = pc.load(pc.save(r, tmp_path / "np_nan", metadata=meta))
    assert math.isnan(loaded.metadata["final_loss"])
    assert loaded.metadata["max_grad"] == float("inf")


def test_user_metadata_is_merged_not_replacing(quad, tmp_path):
    r = pc.hutchpp(quad, n_matvecs=30, rng=0)
    assert set(r.metadata) == {"sketch_rank", "exact_part"}
    loaded = pc.load(pc.save(r, tmp_path / "h", metadata={"run": 3}))
    assert loaded.metadata["run"] == 3
    assert loaded.metadata["sketch_rank"] == r.metadata["sketch_rank"]
    assert loaded.metadata["exact_part"] == r.metadata["exact_part"]
    # saving does not modify the result it was given
    assert "run" not in r.metadata


def test_load_rejects_non_probecore_npz(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, a=np.arange(3), b=np.ones(2))
    with pytest.raises(ValueError, match="not a probecore result"):
        pc.load(path)


def test_load_rejects_unknown_format_or_type(tmp_path):
    def write(record, name):
        path = tmp_path / name
        np.savez(path, __probecore__=np.array(json.dumps(record)))
        return path

    with pytest.raises(ValueError, match="unsupported result format"):
        pc.load(
            write(
                {
                    "format": "probecore-result/999",
                    "type": "TraceResult",
                    "probecore_version": "9",
                    "fields": {},
                },
                "future.npz",
            )
        )
    with pytest.raises(ValueError, match="unknown result type 'Mystery'"):
        pc.load(
            write(
                {
                    "format": "probecore-result/1",
                    "type": "Mystery",
                    "probecore_version": "9",
                    "fields": {},
                },
                "mystery.npz",
            )
        )


# --------------------------------------------------------------------------- reproducibility


def test_rerun_with_recorded_int_seed_reproduces(quad, runner):
    first = runner(quad, 7)
    assert_same_result(first, runner(quad, first.seed))
    # a different seed gives a different result (the seed is really used)
    other = runner(quad, 8)
    assert any(
        not np.array_equal(getattr(first, n), getattr(other, n)) for n in type(first)._array_fields
    )


def test_rerun_with_drawn_seed_reproduces(quad, runner):
    first = runner(quad, None)
    assert isinstance(first.seed, int) and first.seed >= 0
    assert_same_result(first, runner(quad, first.seed))


def test_rerun_with_recorded_generator_state_reproduces(quad, runner, tmp_path):
    gen = np.random.default_rng(99)
    gen.random(5)
    first = runner(quad, gen)
    # from the result itself, and from its saved copy (state through JSON)
    for seed in (first.seed, pc.load(pc.save(first, tmp_path / "g")).seed):
        fresh = np.random.Generator(np.random.PCG64())
        fresh.bit_generator.state = seed["bit_generator_state"]
        assert_same_result(first, runner(quad, fresh))


def test_generator_is_advanced_not_copied(quad):
    # passing the same generator twice continues its stream: two different draws, each
    # recording the state it started from
    gen = np.random.default_rng(5)
    a = pc.hutchinson(quad, n_probes=4, rng=gen)
    b = pc.hutchinson(quad, n_probes=4, rng=gen)
    assert a.seed != b.seed
    assert not np.array_equal(a.samples, b.samples)
