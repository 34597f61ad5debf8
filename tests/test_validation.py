"""Bad input raises TypeError (wrong kind) or ValueError (wrong value) naming the parameter.

Messages name the parameter in backticks (see probecore/_contract/validation.py), so each test
matches on the backticked name.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.sparse.linalg import aslinearoperator

import probecore as pc
from probecore import Block, ConvergenceError, HessianOperator, Layout, as_operator
from probecore.analytic import LogisticRegression, Quadratic, Rosenbrock, nn_like_spectrum
from probecore.backend import override_layout

DIM = 8


def _param(name: str) -> str:
    """Regex matching a parameter name as the messages quote it."""
    return re.escape(f"`{name}`")


@pytest.fixture(scope="module")
def A() -> np.ndarray:
    return np.diag(np.arange(1.0, DIM + 1))


@pytest.fixture(scope="module")
def quad() -> Quadratic:
    return Quadratic.from_spectrum(np.arange(1.0, DIM + 1), rng=0)


# --------------------------------------------------------------------------- lanczos

LANCZOS_BAD = [
    ({"k": 0}, ValueError, "k"),
    ({"k": DIM + 1}, ValueError, "k"),
    ({"k": DIM, "method": "eigsh"}, ValueError, "k"),  # ARPACK needs k < dim
    ({"k": 2.0}, TypeError, "k"),
    ({"k": True}, TypeError, "k"),
    ({"which": "XX"}, ValueError, "which"),
    ({"which": "la"}, ValueError, "which"),
    ({"which": 1}, TypeError, "which"),
    ({"method": "foo"}, ValueError, "method"),
    ({"tol": -1.0}, ValueError, "tol"),
    ({"tol": float("nan")}, ValueError, "tol"),
    ({"tol": "1e-8"}, TypeError, "tol"),
    ({"k": 3, "ncv": 3}, ValueError, "ncv"),
    ({"k": 3, "ncv": DIM + 1}, ValueError, "ncv"),
    ({"maxiter": 0}, ValueError, "maxiter"),
    ({"v0": np.ones(DIM - 1)}, ValueError, "v0"),
    ({"v0": np.r_[np.ones(DIM - 1), np.nan]}, ValueError, "v0"),
    ({"v0": np.r_[np.ones(DIM - 1), np.inf]}, ValueError, "v0"),
    ({"v0": np.zeros(DIM)}, ValueError, "v0"),
    ({"v0": np.ones(DIM, dtype=int)}, TypeError, "v0"),
    ({"v0": "abc"}, TypeError, "v0"),
    ({"rng": "abc"}, TypeError, "rng"),
    ({"rng": -1}, ValueError, "rng"),
    ({"rng": 1.5}, TypeError, "rng"),
    ({"verify": 1}, TypeError, "verify"),
    ({"raise_on_failure": None}, TypeError, "raise_on_failure"),
]


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"), LANCZOS_BAD, ids=[f"{k}" for k, _, _ in LANCZOS_BAD]
)
def test_lanczos_rejects(A, kwargs, exc, name):
    with pytest.raises(exc, match=_param(name)):
        pc.lanczos(A, **kwargs)


def test_lanczos_error_messages_state_constraint_and_value(A):
    with pytest.raises(ValueError, match=re.escape(f"`k` must be in [1, {DIM}]; got {DIM + 1}")):
        pc.lanczos(A, k=DIM + 1)
    with pytest.raises(ValueError, match=r"`which` must be one of 'LA', 'SA', 'LM'; got 'XX'"):
        pc.lanczos(A, which="XX")
    with pytest.raises(ValueError, match=r"`v0` must have shape \(8,\); got \(7,\)"):
        pc.lanczos(A, v0=np.ones(DIM - 1))
    with pytest.raises(ValueError, match=r"`v0` must be finite; entry 7 is nan"):
        pc.lanczos(A, v0=np.r_[np.ones(DIM - 1), np.nan])


def test_eigenvalues_shortcut_validates_too(A):
    with pytest.raises(ValueError, match=_param("k")):
        pc.eigenvalues(A, k=0)


# --------------------------------------------------------------------------- power iteration

POWER_BAD = [
    ({"tol": -1.0}, ValueError, "tol"),
    ({"residual_tol": -1.0}, ValueError, "residual_tol"),
    ({"tol": None, "residual_tol": None}, ValueError, "residual_tol"),
    ({"maxiter": 0}, ValueError, "maxiter"),
    ({"maxiter": 10.0}, TypeError, "maxiter"),
    ({"v0": np.ones(3)}, ValueError, "v0"),
    ({"rng": "abc"}, TypeError, "rng"),
    ({"raise_on_failure": "yes"}, TypeError, "raise_on_failure"),
]


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"), POWER_BAD, ids=[f"{k}" for k, _, _ in POWER_BAD]
)
def test_power_iteration_rejects(A, kwargs, exc, name):
    with pytest.raises(exc, match=_param(name)):
        pc.power_iteration(A, **kwargs)


def test_power_iteration_both_tolerances_none_names_both(A):
    with pytest.raises(ValueError, match=r"`tol` and `residual_tol`"):
        pc.power_iteration(A, tol=None, residual_tol=None)


# --------------------------------------------------------------------------- trace and density

ESTIMATOR_BAD = [
    (pc.hutchinson, {"n_probes": 1}, ValueError, "n_probes"),
    (pc.hutchinson, {"n_probes": 0}, ValueError, "n_probes"),
    (pc.hutchinson, {"distribution": "uniform"}, ValueError, "distribution"),
    (pc.hutchinson, {"batch_size": 0}, ValueError, "batch_size"),
    (pc.hutchinson, {"rng": "abc"}, TypeError, "rng"),
    (pc.hutchpp, {"n_matvecs": 3}, ValueError, "n_matvecs"),
    (pc.hutchpp, {"n_matvecs": 30.0}, TypeError, "n_matvecs"),
    (pc.hutchpp, {"distribution": "uniform"}, ValueError, "distribution"),
    (pc.spectral_density, {"n_steps": 0}, ValueError, "n_steps"),
    (pc.spectral_density, {"n_steps": DIM + 1}, ValueError, "n_steps"),
    (pc.spectral_density, {"n_steps": 4, "n_probes": 0}, ValueError, "n_probes"),
    (pc.spectral_density, {"n_steps": 4, "sigma": 0.0}, ValueError, "sigma"),
    (pc.spectral_density, {"n_steps": 4, "sigma": -1.0}, ValueError, "sigma"),
    (pc.spectral_density, {"n_steps": 4, "sigma": float("inf")}, ValueError, "sigma"),
    (pc.spectral_density, {"n_steps": 4, "grid": np.array([0.0, 2.0, 1.0])}, ValueError, "grid"),
    (pc.spectral_density, {"n_steps": 4, "grid": np.array([0.0, 1.0, 1.0])}, ValueError, "grid"),
    (pc.spectral_density, {"n_steps": 4, "grid": np.array([0.0])}, ValueError, "grid"),
    (pc.spectral_density, {"n_steps": 4, "grid": np.ones((2, 2))}, ValueError, "grid"),
    (pc.spectral_density, {"n_steps": 4, "n_grid": 1}, ValueError, "n_grid"),
    (pc.spectral_density, {"n_steps": 4, "reorthogonalize": 0}, TypeError, "reorthogonalize"),
]


@pytest.mark.parametrize(
    ("func", "kwargs", "exc", "name"),
    ESTIMATOR_BAD,
    ids=[f"{f.__name__}-{k}" for f, k, _, _ in ESTIMATOR_BAD],
)
def test_estimators_reject(A, func, kwargs, exc, name):
    with pytest.raises(exc, match=_param(name)):
        func(A, **kwargs)


def test_spectral_density_grid_message(A):
    with pytest.raises(ValueError, match="`grid` must be a strictly increasing"):
        pc.spectral_density(A, n_steps=4, grid=np.array([3.0, 2.0, 1.0]))


# --------------------------------------------------------------------------- operators


def test_hessian_operator_rejects_bad_points(quad):
    with pytest.raises(ValueError, match=re.escape(f"`x` must have shape ({DIM},)")):
        HessianOperator(quad, np.zeros(DIM + 1))
    with pytest.raises(ValueError, match=_param("x")):
        HessianOperator(quad, np.zeros((DIM, 1)))
    with pytest.raises(TypeError, match=r"`x` must have a floating dtype; got int"):
        HessianOperator(quad, np.zeros(DIM, dtype=np.int64))
    with pytest.raises(TypeError, match=_param("x")):
        HessianOperator(quad, np.zeros(DIM, dtype=complex))
    with pytest.raises(ValueError, match=r"`x` must be finite; entry 2 is inf"):
        HessianOperator(quad, np.r_[0.0, 0.0, np.inf, np.zeros(DIM - 3)])
    with pytest.raises(ValueError, match=r"`x` must be finite; entry 0 is -inf"):
        HessianOperator(quad, np.r_[-np.inf, np.zeros(DIM - 1)])
    with pytest.raises(TypeError, match=_param("x")):
        HessianOperator(quad, "origin")


def test_hessian_operator_rejects_non_objective():
    with pytest.raises(TypeError, match=_param("objective")):
        HessianOperator(np.eye(3))


@pytest.mark.parametrize(
    "bad", ["matrix", 3.0, None, [[1.0, 0.0], [0.0, 1.0]]], ids=["str", "float", "None", "list"]
)
def test_as_operator_rejects_wrong_kinds(bad):
    with pytest.raises(TypeError, match=_param("A")):
        as_operator(bad)


@pytest.mark.parametrize("shape", [(3, 4), (5,), (2, 2, 2), (0, 0)], ids=str)
def test_as_operator_rejects_non_square(shape):
    with pytest.raises(ValueError, match=_param("A")):
        as_operator(np.zeros(shape))


def test_as_operator_rejects_non_float():
    with pytest.raises(TypeError, match=_param("A")):
        as_operator(np.eye(3, dtype=int))
    with pytest.raises(TypeError, match=_param("A")):
        as_operator(np.eye(3, dtype=complex))
    with pytest.raises(ValueError, match=_param("A")):
        as_operator(aslinearoperator(np.zeros((3, 4))))


def test_public_functions_reject_bad_operators():
    for func in (pc.lanczos, pc.power_iteration, pc.hutchinson, pc.hutchpp, pc.spectral_density):
        with pytest.raises(ValueError, match=_param("A")):
            func(np.zeros((3, 4)))
        with pytest.raises(TypeError, match=_param("A")):
            func("not a matrix")


# --------------------------------------------------------------------------- layout


def test_layout_rejects_non_contiguous_offsets():
    with pytest.raises(ValueError, match=r"block 'b' must start at offset 6 .* got offset 7"):
        Layout([Block("a", (2, 3), 0), Block("b", (2,), 7, "bias")])
    with pytest.raises(ValueError, match=r"block 'a' must start at offset 0"):
        Layout([Block("a", (2,), 1)])
    # overlapping blocks are not contiguous either
    with pytest.raises(ValueError, match=r"block 'b' must start at offset 2"):
        Layout([Block("a", (2,), 0), Block("b", (2,), 1)])


def test_layout_rejects_duplicate_names():
    with pytest.raises(ValueError, match=r"block names must be unique; 'w' appears twice"):
        Layout.from_shapes([("w", (2,), "weight"), ("w", (3,), "weight")])


def test_layout_rejects_empty_and_non_blocks():
    with pytest.raises(ValueError, match=_param("blocks")):
        Layout([])
    with pytest.raises(TypeError, match=_param("blocks")):
        Layout([("a", (2,), 0)])


def test_block_rejects_bad_fields():
    with pytest.raises(ValueError, match=_param("role of block 'a'") + ".*'bogus'"):
        Block("a", (2,), 0, "bogus")
    with pytest.raises(ValueError, match=_param("role of block 'a'")):
        Layout.from_shapes([("a", (2,), "Weight")])
    with pytest.raises(TypeError, match=_param("name")):
        Block("", (2,), 0)
    with pytest.raises(TypeError, match=_param("name")):
        Block(3, (2,), 0)
    with pytest.raises(ValueError, match=_param("offset of block 'a'")):
        Block("a", (2,), -1)
    with pytest.raises(ValueError, match=_param("shape of block 'a'")):
        Block("a", (2, -1), 0)
    with pytest.raises(TypeError, match=_param("shape of block 'a'")):
        Block("a", (2.0,), 0)


def _three_blocks() -> Layout:
    return Layout.from_shapes(
        [("enc.0.w", (4, 3), "weight"), ("enc.0.b", (4,), "bias"), ("head.w", (2, 4), "weight")]
    )


def test_override_layout_by_name_pattern_and_order():
    layout = _three_blocks()
    assert override_layout(layout, None) is layout
    new = override_layout(
        layout,
        {"*.w": -1, "enc.0.b": "other", "head.w": {"filter_axis": 0}, "enc.0.w": ("norm", 0)},
    )
    assert [(b.name, b.role, b.filter_axis) for b in new] == [
        ("enc.0.w", "norm", 0),
        ("enc.0.b", "other", 0),
        ("head.w", "weight", 0),  # the later exact entry overrides the pattern's axis
    ]
    assert [(b.shape, b.offset) for b in new] == [(b.shape, b.offset) for b in layout]
    same = Layout.from_shapes([(b.name, b.shape, b.role, -1) for b in layout])
    assert override_layout(layout, same) is same


def test_override_layout_refuses_what_it_cannot_apply():
    layout = _three_blocks()
    with pytest.raises(ValueError, match=r"`layout` entry 'dec\.\*' matches no block.*enc\.0\.w"):
        override_layout(layout, {"dec.*": 0})
    with pytest.raises(ValueError, match=r"role for 'head\.w' in layout.*'weights'"):
        override_layout(layout, {"head.w": "weights"})
    with pytest.raises(ValueError, match=_param("filter_axis of block 'head.w'")):
        override_layout(layout, {"head.w": 2})
    with pytest.raises(TypeError, match=r"`layout`\['head\.w'\] must be a role.*True"):
        override_layout(layout, {"head.w": True})
    with pytest.raises(TypeError, match=r"`layout` must be None, a probecore\.Layout"):
        override_layout(layout, [("head.w", 0)])
    other = Layout.from_shapes([("enc.0.w", (3, 4), "weight"), ("rest", (12,), "other")])
    with pytest.raises(ValueError, match=r"the first difference.*\(3, 4\)"):
        override_layout(layout, other)
    with pytest.raises(ValueError, match="`opt` entry"):
        override_layout(layout, {"nothing": 0}, param="opt")


def test_layout_views_validate_x():
    layout = Layout.from_shapes([("w", (2, 3), "weight"), ("b", (2,), "bias")])
    with pytest.raises(ValueError, match=_param("x")):
        layout.views(np.zeros(7))


# --------------------------------------------------------------------------- analytic constructors


def test_quadratic_rejects_bad_input():
    with pytest.raises(ValueError, match=_param("A") + " must be symmetric"):
        Quadratic(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=_param("A")):
        Quadratic(np.ones((2, 3)))
    with pytest.raises(ValueError, match=_param("A")):
        Quadratic(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match=_param("b")):
        Quadratic(np.eye(3), b=np.ones(2))
    with pytest.raises(ValueError, match=_param("x0")):
        Quadratic(np.eye(3), x0=np.ones(4))
    with pytest.raises(ValueError, match=_param("dtype")):
        Quadratic(np.eye(3), dtype=np.int32)
    with pytest.raises(ValueError, match=_param("dtype")):
        Quadratic(np.eye(3), dtype=np.float16)
    with pytest.raises(TypeError, match=_param("dtype")):
        Quadratic(np.eye(3), dtype="no such dtype")
    with pytest.raises(ValueError, match=_param("layout")):
        Quadratic(np.eye(3), layout=Layout.single(4))
    with pytest.raises(TypeError, match=_param("layout")):
        Quadratic(np.eye(3), layout=[("x", (3,), "other")])
    with pytest.raises(ValueError, match=_param("eigenvalues")):
        Quadratic.from_spectrum([])
    with pytest.raises(ValueError, match=_param("eigenvalues")):
        Quadratic.from_spectrum([1.0, np.inf])


def test_quadratic_methods_validate_points(quad):
    with pytest.raises(ValueError, match=_param("x")):
        quad.loss(np.zeros(DIM + 1))
    with pytest.raises(ValueError, match=_param("v")):
        quad.hvp(np.zeros(DIM), np.zeros(DIM - 1))
    with pytest.raises(ValueError, match=_param("V")):
        quad.hvp_many(np.zeros(DIM), np.zeros((2, DIM - 1)))


def test_logistic_regression_rejects_bad_input():
    F = np.random.default_rng(0).random((6, 4))
    y = np.array([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match=_param("labels") + r" must have shape \(6,\)"):
        LogisticRegression(F, y[:5])
    with pytest.raises(ValueError, match=_param("labels")):
        LogisticRegression(F, y[:, None])
    with pytest.raises(TypeError, match=_param("labels")):
        LogisticRegression(F, y.astype(float))
    with pytest.raises(ValueError, match=_param("labels") + r" must lie in \[0, 1\]"):
        LogisticRegression(F, y, n_classes=2)
    with pytest.raises(ValueError, match=_param("labels")):
        LogisticRegression(F, y - 1)
    with pytest.raises(ValueError, match=_param("features")):
        LogisticRegression(F[0], y)
    with pytest.raises(ValueError, match=_param("features")):
        LogisticRegression(np.where(F > 0.5, np.nan, F), y)
    with pytest.raises(ValueError, match=_param("n_classes")):
        LogisticRegression(F, y, n_classes=1)
    with pytest.raises(ValueError, match=_param("l2")):
        LogisticRegression(F, y, l2=-1e-3)
    with pytest.raises(ValueError, match=_param("x0")):
        LogisticRegression(F, y, x0=np.zeros(5))


def test_other_analytic_constructors_reject_bad_input():
    with pytest.raises(ValueError, match=_param("dim")):
        Rosenbrock(1)
    with pytest.raises(TypeError, match=_param("dim")):
        Rosenbrock(3.0)
    with pytest.raises(ValueError, match=_param("a")):
        Rosenbrock(3, a=-1.0)
    with pytest.raises(ValueError, match=_param("x0")):
        Rosenbrock(3, x0=np.ones(2))
    with pytest.raises(ValueError, match=_param("dim")):
        nn_like_spectrum(1)
    with pytest.raises(ValueError, match=_param("n_outliers")):
        nn_like_spectrum(10, n_outliers=10)
    with pytest.raises(ValueError, match=_param("top")):
        nn_like_spectrum(20, top=0.0)
    with pytest.raises(ValueError, match=_param("negative_fraction")):
        nn_like_spectrum(20, negative_fraction=1.5)
    with pytest.raises(ValueError, match=_param("split")):
        pc.analytic.digits_logistic_regression(split="validation")
    with pytest.raises(ValueError, match=_param("test_fraction")):
        pc.analytic.digits_logistic_regression(test_fraction=0.0)


# --------------------------------------------------------------------------- results I/O


def test_save_rejects_non_results(tmp_path):
    with pytest.raises(TypeError, match=_param("result")):
        pc.save({"estimate": 1.0}, tmp_path / "x")
    r = pc.hutchinson(np.eye(3), n_probes=2, rng=0)
    with pytest.raises(TypeError, match=_param("metadata")):
        pc.save(r, tmp_path / "x", metadata=["not", "a", "dict"])
    with pytest.raises(TypeError, match=_param("metadata")):
        pc.save(r, tmp_path / "x", metadata={"f": object()})


# --------------------------------------------------------------------------- ConvergenceError


def _close_top_pair() -> np.ndarray:
    """Top two eigenvalues 1 and 0.999: power iteration contracts by 0.999 per step."""
    return np.diag(np.r_[1.0, 0.999, np.linspace(0.1, 0.5, 6)])


# With a start vector mixing the top two eigenvectors with weights c1, c2 the residual is
# about (λ1 − λ2)·|c1·c2| <= 5e-4: below the default residual_tol of 1e-3 from the start.
# A residual tolerance of 1e-8 needs |c2| <= 1e-5, i.e. 0.999^k <= 1e-5, k ≈ 11500.
TIGHT = {"tol": 1e-12, "residual_tol": 1e-8}


def test_power_iteration_convergence_error_carries_partial_result():
    A = _close_top_pair()
    with pytest.raises(ConvergenceError, match="did not converge in 50 iterations") as info:
        pc.power_iteration(A, maxiter=50, rng=0, **TIGHT)
    r = info.value.result
    assert isinstance(r, pc.PowerIterationResult)
    assert r.converged is False
    assert r.n_iter == 50 and r.n_matvecs == 50 and r.history.shape == (50,)
    assert r.seed == 0
    # the partial answer is still certified: an eigenvalue lies within residual_norm
    eig = np.diag(A)
    assert np.min(np.abs(eig - r.eigenvalue)) <= r.residual_norm
    # ... and the criteria really were not met
    assert r.residual_norm > 1e-8 * abs(r.eigenvalue) or r.eigenvalue_change > 1e-12 * abs(
        r.eigenvalue
    )

    returned = pc.power_iteration(A, maxiter=50, rng=0, raise_on_failure=False, **TIGHT)
    assert returned.converged is False
    assert returned.eigenvalue == r.eigenvalue
    assert returned.n_iter == r.n_iter and returned.n_matvecs == r.n_matvecs
    np.testing.assert_array_equal(returned.eigenvector, r.eigenvector)
    np.testing.assert_array_equal(returned.history, r.history)


def test_power_iteration_converges_with_enough_iterations():
    r = pc.power_iteration(_close_top_pair(), maxiter=20000, rng=0, **TIGHT)
    assert r.converged
    assert 5000 < r.n_iter < 20000
    assert r.residual_norm <= 1e-8
    assert abs(r.eigenvalue - 1.0) <= r.residual_norm


def test_lanczos_convergence_error_carries_partial_result():
    A = np.diag(np.linspace(1.0, 2.0, 200))
    with pytest.raises(ConvergenceError) as info:
        pc.lanczos(A, k=4, ncv=6, maxiter=1, tol=1e-12, verify=False, rng=0)
    r = info.value.result
    assert isinstance(r, pc.EigResult)
    assert r.converged is False
    assert r.eigenvalues.shape == (4,)
    returned = pc.lanczos(
        A, k=4, ncv=6, maxiter=1, tol=1e-12, verify=False, rng=0, raise_on_failure=False
    )
    assert returned.converged is False
    np.testing.assert_array_equal(returned.eigenvalues, r.eigenvalues)


def test_a_value_beyond_float32_is_refused_not_cast_to_inf():
    from probecore.analytic import Quadratic
    from probecore.backend import check_matrix, check_vector

    x = np.zeros(4)
    x[2] = 1e39  # finite in float64, inf in float32
    with pytest.raises(ValueError, match=r"`x` does not fit in float32: entry 2 is 1e\+39"):
        check_vector("x", x, dim=4, dtype=np.dtype(np.float32))
    assert check_vector("x", x, dim=4, dtype=np.dtype(np.float64)) is x
    q = Quadratic.from_spectrum(np.arange(1.0, 5.0), dtype=np.float32)
    with pytest.raises(ValueError, match=r"`v` does not fit in float32"):
        q.hvp(np.zeros(4, np.float32), x)
    V = np.zeros((2, 4))
    V[1, 3] = -1e39
    with pytest.raises(ValueError, match=r"`V` does not fit in float32: entry 7"):
        check_matrix("V", V, dim=4, dtype=np.dtype(np.float32))
