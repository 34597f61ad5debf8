"""check_objective: it passes correct objectives and names the check a broken one fails."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BACKENDS

from probecore import AbstractObjective, Layout, Objective, ObjectiveCheckError
from probecore.analytic import Quadratic, nn_like_spectrum
from probecore.testing import Check, ObjectiveReport, check_objective


def _quadratic(dtype=np.float64) -> Quadratic:
    return Quadratic.from_spectrum(
        nn_like_spectrum(40, top=20.0, rng=1), rng=2, linear=True, dtype=dtype
    )


class Delegating(AbstractObjective):
    """A correct objective that forwards to a Quadratic; subclasses break one thing."""

    def __init__(self, inner: Quadratic | None = None) -> None:
        self.inner = _quadratic() if inner is None else inner
        self.dim = self.inner.dim
        self.dtype = self.inner.dtype
        self.layout = self.inner.layout
        self.x0 = self.inner.x0

    def loss(self, x):
        return self.inner.loss(x)

    def grad(self, x):
        return self.inner.grad(x)

    def hvp(self, x, v):
        return self.inner.hvp(x, v)


class ScaledGradient(Delegating):
    def __init__(self, factor: float, inner: Quadratic | None = None) -> None:
        super().__init__(inner)
        self.factor = factor

    def grad(self, x):
        return self.factor * self.inner.grad(x)


class OneGradientEntryWrong(Delegating):
    """A constant offset in one entry: wrong gradient, but its Jacobian (the HVP) is right."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 1e-3 * float(np.linalg.norm(self.inner.grad(self.x0)))

    def grad(self, x):
        g = self.inner.grad(x).copy()
        g[3] += self.offset
        return g


class AsymmetricHVP(Delegating):
    """hvp uses A + εS with S antisymmetric."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        M = np.random.default_rng(5).standard_normal((self.dim, self.dim))
        self.S = eps * np.abs(self.inner.hessian()).max() * (M - M.T)

    def hvp(self, x, v):
        return self.inner.hvp(x, v) + self.S @ v


class Noisy(Delegating):
    """Random relative noise on every output, like dropout left on."""

    def __init__(self, level: float, where: tuple[str, ...] = ("loss", "grad", "hvp")) -> None:
        super().__init__()
        self.level = level
        self.where = where
        self.rng = np.random.default_rng(0)

    def _noise(self, name, shape=None):
        if name not in self.where:
            return 1.0
        return 1.0 + self.level * self.rng.standard_normal(shape)

    def loss(self, x):
        return self.inner.loss(x) * float(self._noise("loss"))

    def grad(self, x):
        return self.inner.grad(x) * self._noise("grad", self.dim)

    def hvp(self, x, v):
        return self.inner.hvp(x, v) * self._noise("hvp", self.dim)


class GradWrongDtype(Delegating):
    def grad(self, x):
        return self.inner.grad(x).astype(np.float32)


class HVPWrongShape(Delegating):
    def hvp(self, x, v):
        return self.inner.hvp(x, v)[:, None]


class GradTooShort(Delegating):
    def grad(self, x):
        return self.inner.grad(x)[:-1]


class LossNotScalar(Delegating):
    def loss(self, x):
        return np.array([self.inner.loss(x), 0.0])


class LossNaN(Delegating):
    def loss(self, x):
        return float("nan")


class GradRaises(Delegating):
    def grad(self, x):
        raise RuntimeError("backend exploded")


class LayoutTooShort(Delegating):
    def __init__(self) -> None:
        super().__init__()
        self.layout = Layout.single(self.dim - 1)


class X0WrongDtype(Delegating):
    def __init__(self) -> None:
        super().__init__()
        self.x0 = self.inner.x0.astype(np.float32)


class BadDtype(Delegating):
    def __init__(self) -> None:
        super().__init__()
        self.dtype = np.dtype(np.int64)


class InconsistentLossAndGrad(Delegating):
    def loss_and_grad(self, x):
        return self.loss(x) + 1.0, self.grad(x)


class WrongLossesInSpan(Delegating):
    def losses_in_span(self, origin, basis, coeffs):
        return super().losses_in_span(origin, basis, coeffs) + 1e-6


class WrongHVPMany(Delegating):
    def hvp_many(self, x, V):
        return 2.0 * super().hvp_many(x, V)


class NoLossesInSpan:
    """Implements every member of the protocol except ``losses_in_span`` and ``subset``."""

    def __init__(self) -> None:
        q = _quadratic()
        self._q = q
        self.dim, self.dtype, self.layout, self.x0 = q.dim, q.dtype, q.layout, q.x0
        self.n_examples = None

    def loss(self, x):
        return self._q.loss(x)

    def grad(self, x):
        return self._q.grad(x)

    def loss_and_grad(self, x):
        return self._q.loss_and_grad(x)

    def hvp(self, x, v):
        return self._q.hvp(x, v)

    def hvp_many(self, x, V):
        return self._q.hvp_many(x, V)

    def metrics(self, x):
        return {}


# (objective factory, name of the check that must fail)
BROKEN = {
    "gradient_scaled_1.01": (lambda: ScaledGradient(1.01), "gradient"),
    "gradient_scaled_1e-6": (lambda: ScaledGradient(1 + 1e-6), "gradient"),
    "gradient_one_entry": (OneGradientEntryWrong, "gradient"),
    "hvp_asymmetric": (lambda: AsymmetricHVP(1e-6), "hvp_symmetry"),
    "nondeterministic_all": (lambda: Noisy(1e-6), "determinism"),
    "nondeterministic_hvp": (lambda: Noisy(1e-6, where=("hvp",)), "determinism"),
    "grad_wrong_dtype": (GradWrongDtype, "shapes_and_dtypes"),
    "hvp_wrong_shape": (HVPWrongShape, "shapes_and_dtypes"),
    "grad_too_short": (GradTooShort, "shapes_and_dtypes"),
    "loss_not_scalar": (LossNotScalar, "shapes_and_dtypes"),
    "loss_nan": (LossNaN, "shapes_and_dtypes"),
    "grad_raises": (GradRaises, "evaluation"),
    "missing_member": (NoLossesInSpan, "members"),
    "layout_short": (LayoutTooShort, "attributes"),
    "x0_wrong_dtype": (X0WrongDtype, "attributes"),
    "int_dtype": (BadDtype, "attributes"),
    "loss_and_grad_inconsistent": (InconsistentLossAndGrad, "loss_and_grad"),
    "losses_in_span_wrong": (WrongLossesInSpan, "losses_in_span"),
    "hvp_many_wrong": (WrongHVPMany, "hvp_many"),
}


# --------------------------------------------------------------------------- passing


def test_analytic_objectives_pass(objectives):
    for name, obj in objectives.items():
        assert isinstance(obj, Objective), name
        report = check_objective(obj)
        assert isinstance(report, ObjectiveReport)
        assert report.passed, f"{name}:\n{report}"
        assert report.failures == ()
        for c in report.checks:
            assert isinstance(c, Check)
            if not np.isnan(c.error):
                assert c.error <= c.tolerance, (name, c)
        assert "FAIL" not in str(report)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_correct_wrapper_passes(dtype):
    """The harness itself is sound: an unbroken Delegating passes, so failures below are
    caused by the one thing each subclass breaks."""
    obj = Delegating(_quadratic(dtype))
    assert check_objective(obj).passed
    assert check_objective(obj, obj.x0 + 1.0, rng=3, n_directions=5).passed


def test_gradient_error_below_tolerance_passes():
    # a relative gradient error of 1e-14 is below the float64 finite-difference tolerance
    # (eps^(2/3) ≈ 4e-11): the checker does not flag rounding-sized discrepancies
    assert check_objective(ScaledGradient(1 + 1e-14)).passed


# --------------------------------------------------------------------------- failing


@pytest.mark.parametrize("case", list(BROKEN), ids=str)
def test_broken_objective_fails_naming_the_check(case):
    factory, check_name = BROKEN[case]
    with pytest.raises(ObjectiveCheckError) as info:
        check_objective(factory())
    err = info.value
    names = [c.name for c in err.report.failures]
    assert check_name in names
    # the message lists the failed checks by name, in parentheses after the type name
    message = str(err)
    assert f"({', '.join(names)})" in message.splitlines()[0]
    assert f"FAIL {check_name}" in message
    failed = err.report[check_name]
    assert not failed.passed
    assert failed.message  # a failure always says what went wrong
    if not np.isnan(failed.error):
        assert failed.error > failed.tolerance


def test_gradient_entry_offset_leaves_hvp_check_passing():
    report = check_objective(OneGradientEntryWrong(), raise_on_failure=False)
    assert [c.name for c in report.failures] == ["gradient"]
    assert report["hvp"].passed
    assert report["determinism"].passed


def test_failure_messages_say_what_is_wrong():
    def message(obj, name):
        return check_objective(obj, raise_on_failure=False)[name].message

    assert message(NoLossesInSpan(), "members") == "missing: losses_in_span, subset"
    assert "layout covers 39 entries but dim is 40" in message(LayoutTooShort(), "attributes")
    assert "grad must have dtype float64, got float32" in message(
        GradWrongDtype(), "shapes_and_dtypes"
    )
    assert "hvp must have shape (40,)" in message(HVPWrongShape(), "shapes_and_dtypes")
    assert "loss must be a finite scalar" in message(LossNaN(), "shapes_and_dtypes")
    assert "RuntimeError: backend exploded" in message(GradRaises(), "evaluation")
    assert "u·Hv" in message(AsymmetricHVP(1e-6), "hvp_symmetry")


def test_missing_member_is_not_an_objective():
    obj = NoLossesInSpan()
    assert not isinstance(obj, Objective)
    report = check_objective(obj, raise_on_failure=False)
    # nothing else can be checked without the full protocol
    assert [c.name for c in report.checks] == ["members"]


def test_raise_on_failure_false_returns_report():
    report = check_objective(ScaledGradient(1.01), raise_on_failure=False)
    assert isinstance(report, ObjectiveReport)
    assert report.passed is False
    assert "gradient" in [c.name for c in report.failures]
    text = str(report)
    assert "FAIL gradient" in text
    assert "ok   loss_and_grad" in text
    # every check was run and reported, passing ones too
    assert len(text.splitlines()) == len(report.checks)
    with pytest.raises(KeyError):
        report["no_such_check"]


def test_rtol_is_used():
    # with a tolerance below rounding level even a correct objective cannot pass the
    # finite-difference checks: the tolerance argument reaches them. The mismatch is no
    # larger than the finite differences' own rounding, so it is not blamed on the
    # objective either: the checks are inconclusive, not failed
    report = check_objective(_quadratic(), rtol=1e-30, raise_on_failure=False)
    assert {"gradient", "hvp"} <= {c.name for c in report.inconclusive}
    assert report.failures == ()
    assert not report.passed
    assert report["gradient"].tolerance < 1e-25


def test_float32_default_tolerance_catches_float32_sized_errors():
    obj = ScaledGradient(1 + 1e-3, _quadratic(np.float32))
    assert obj.dtype == np.float32
    report = check_objective(obj, raise_on_failure=False)
    assert "gradient" in [c.name for c in report.failures]


def test_bad_arguments():
    with pytest.raises(ValueError, match="`n_directions`"):
        check_objective(_quadratic(), n_directions=0)
    with pytest.raises(TypeError, match="`raise_on_failure`"):
        check_objective(_quadratic(), raise_on_failure="no")


# --------------------------------------------------------------------------- non-smooth


class ReluQuadratic(AbstractObjective):
    """``½xᵀQx + Σᵢ cᵢ relu(aᵢ·x + bᵢ)``: its gradient jumps on the hyperplanes
    ``aᵢ·x + bᵢ = 0`` and its Hessian is exactly ``Q`` off them, like a ReLU network's
    loss is piecewise smooth. ``spread`` sets how far the hyperplanes are from ``x0 = 0``
    (smaller: more of them within a finite-difference stencil); ``spread=0`` puts ``x0``
    on all of them."""

    def __init__(self, spread: float, m: int = 2000, dim: int = 40, rng: int = 0) -> None:
        gen = np.random.default_rng(rng)
        M = gen.standard_normal((dim, dim))
        self.Q = M @ M.T / dim + np.eye(dim)
        self.A = gen.standard_normal((m, dim))
        self.b = spread * gen.standard_normal(m)
        self.c = gen.standard_normal(m) / np.sqrt(m)
        self.dim, self.dtype = dim, np.dtype(np.float64)
        self.layout = Layout.single(dim)
        self.x0 = np.zeros(dim)

    def loss(self, x):
        return float(0.5 * x @ self.Q @ x + self.c @ np.maximum(self.A @ x + self.b, 0.0))

    def grad(self, x):
        # like autograd, relu'(0) = 0
        return self.Q @ x + self.A.T @ (self.c * (self.A @ x + self.b > 0))

    def hvp(self, x, v):
        return self.Q @ v


class WrongHVP(AbstractObjective):
    """Forwards to ``inner`` but the HVP is scaled, or has the sign of its last ``block``
    parameters flipped: ``D H D v`` with ``D = diag(1, ..., 1, -1, ..., -1)``, still
    symmetric, so only the finite-difference check can catch it."""

    def __init__(self, inner, scale: float = 1.0, block: int = 0) -> None:
        self.inner, self.scale, self.block = inner, scale, block
        self.dim, self.dtype, self.layout, self.x0 = inner.dim, inner.dtype, inner.layout, inner.x0

    def loss(self, x):
        return self.inner.loss(x)

    def grad(self, x):
        return self.inner.grad(x)

    def hvp(self, x, v):
        D = np.ones(self.dim)
        if self.block:
            D[-self.block :] = -1.0
        return D * (self.scale * np.asarray(self.inner.hvp(x, D * v)))


class WrongGrad(WrongHVP):
    def grad(self, x):
        return self.scale * np.asarray(self.inner.grad(x))

    def hvp(self, x, v):
        return self.inner.hvp(x, v)


def _plain_fd_misses(obj, n=9) -> int:
    """How many of ``n`` random directions the plain Richardson reference (the check
    before it looked for kinks) gets wrong by more than the tolerance, for an exact HVP."""
    from probecore.testing._check import _along, _richardson

    x, gen = obj.x0, np.random.default_rng(0)
    h = np.finfo(np.float64).eps ** 0.2 * max(1.0, float(np.max(np.abs(x))))
    misses = 0
    for _ in range(n):
        d = gen.standard_normal(obj.dim)
        d /= np.linalg.norm(d)
        Hd = np.asarray(obj.hvp(x, d))
        fd = _richardson(lambda s, d=d: _along(obj.grad, x, d, np.float64, s), h)
        misses += np.linalg.norm(fd - Hd) > 1e-6 * np.linalg.norm(Hd)
    return misses


def test_kinks_make_plain_finite_differences_wrong():
    # the premise of the tests below: along some directions the stencil crosses a kink
    # and the plain finite-difference "reference" is wrong, far beyond any tolerance,
    # though the HVP is exact; with the hyperplanes 100x closer, along most directions
    assert 0 < _plain_fd_misses(ReluQuadratic(spread=1.0)) < 9
    assert _plain_fd_misses(ReluQuadratic(spread=0.01)) >= 7


@pytest.mark.parametrize("rng", range(5))
def test_exact_hvp_of_a_nonsmooth_objective_passes(rng):
    obj = ReluQuadratic(spread=1.0)
    report = check_objective(obj, rng=rng)  # raises on any failure
    assert report.passed, str(report)
    assert report.failures == report.inconclusive == ()
    # the directions whose stencil crossed a kink were skipped, and the report says so
    skipped = [report[n].message for n in ("gradient", "hvp") if report[n].message]
    assert skipped, "spread=1 puts kinks in some stencils"
    assert all("skipped" in m and "not smooth" in m for m in skipped)


@pytest.mark.parametrize("spread", [0.01, 0.0], ids=["dense_kinks", "kink_at_x"])
def test_unreliable_finite_differences_are_inconclusive_not_failed(spread):
    # dense kinks: every stencil tried crosses some; spread=0: x0 sits on every kink, the
    # loss has no derivative there (one-sided slopes differ), so the gradient check has
    # nothing to compare with. Either way nothing is blamed on the objective
    obj = ReluQuadratic(spread=spread)
    with pytest.raises(ObjectiveCheckError, match="could not confirm .*hvp"):
        check_objective(obj)  # not confirmed is not passed: it raises, naming the fix
    report = check_objective(obj, raise_on_failure=False)
    assert report.failures == ()
    assert not report.passed
    inconclusive = {c.name for c in report.inconclusive}
    assert "hvp" in inconclusive
    if spread == 0.0:
        assert inconclusive == {"gradient", "hvp"}
    for c in report.inconclusive:
        assert c.status == "inconclusive" and not c.failed and not c.passed
        assert c.message.startswith("inconclusive: finite differences of ")
        assert "not smooth near x" in c.message
        assert np.isnan(c.error)
        assert f"???? {c.name} inconclusive:" in str(report)
    # the exact checks do not depend on finite differences and stay strict
    for name in ("hvp_symmetry", "hvp_many", "losses_in_span", "determinism"):
        assert report[name].passed


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(lambda o: WrongHVP(o, scale=1.01), id="hvp_scaled_1.01"),
        pytest.param(lambda o: WrongHVP(o, scale=1 + 1e-6), id="hvp_scaled_1e-6"),
        pytest.param(lambda o: WrongHVP(o, block=5), id="hvp_sign_error_in_a_block"),
        pytest.param(lambda o: WrongGrad(o, scale=1.01), id="grad_scaled_1.01"),
    ],
)
@pytest.mark.parametrize("rng", range(3))
def test_wrong_derivatives_of_a_nonsmooth_objective_still_fail(wrong, rng):
    obj = wrong(ReluQuadratic(spread=1.0))
    name = "gradient" if isinstance(obj, WrongGrad) else "hvp"
    with pytest.raises(ObjectiveCheckError) as info:
        check_objective(obj, rng=rng)
    report = info.value.report
    assert name in [c.name for c in report.failures]
    assert report["hvp_symmetry"].passed  # only the finite differences can see these
    assert report.inconclusive == ()


def test_hvp_symmetry_stays_strict_on_a_nonsmooth_objective():
    class Asymmetric(ReluQuadratic):
        def hvp(self, x, v):
            Hv = super().hvp(x, v)
            Hv[0] += 1e-6 * v[1]
            return Hv

    report = check_objective(Asymmetric(spread=0.0), raise_on_failure=False)
    assert [c.name for c in report.failures] == ["hvp_symmetry"]


def test_smooth_objectives_skip_no_direction(objectives):
    # kink detection never mistakes a smooth objective for a non-smooth one
    for name, obj in objectives.items():
        report = check_objective(obj)
        assert report["gradient"].message == report["hvp"].message == "", name


@pytest.mark.parametrize("kind", ["slope_jump", "value_jump", "curvature_jump"])
def test_fd_table_error_estimate_covers_a_single_kink(kind):
    # one kink anywhere in or near the stencil: the reference's actual error is within
    # twice its error estimate (spread + kink), far inside the factor _KAPPA = 8 a mismatch
    # must exceed to fail, so a kink alone never makes a correct derivative fail
    from probecore.testing._check import _KAPPA, _fd_table

    h = 1e-3
    for s0 in np.linspace(-2 * h, 2 * h, 801):

        def f(s, s0=s0):
            t = s - s0
            kink = {"slope_jump": max(t, 0.0), "value_jump": float(t > 0)}.get(kind)
            return np.sin(s) + (max(t, 0.0) ** 2 if kink is None else kink)

        true = 1.0 + {"slope_jump": float(s0 < 0), "curvature_jump": 2 * max(-s0, 0.0)}.get(
            kind, 0.0
        )
        ref, spread, kink = _fd_table(f, f(0.0), h)
        assert abs(float(ref) - true) <= 2 * (spread + kink) + 1e-9, s0
    assert _KAPPA >= 4


def test_inconclusive_reports_do_not_raise_and_count_apart():
    ok = Check("a", True)
    bad = Check("b", False, 1.0, 0.5, "wrong")
    unsure = Check("c", False, tolerance=0.5, message="inconclusive: why", inconclusive=True)
    assert (ok.status, bad.status, unsure.status) == ("passed", "failed", "inconclusive")
    report = ObjectiveReport((ok, bad, unsure))
    assert report.failures == (bad,)
    assert report.inconclusive == (unsure,)
    assert not report.passed
    assert not ObjectiveReport((ok, unsure)).passed
    assert str(report).splitlines() == [
        "ok   a",
        "FAIL b (error 1 <= tol 0.5?) wrong",
        "???? c inconclusive: why",
    ]


def _torch_relu_digits(loss: str):
    """A float64 ReLU MLP on 300 scikit-learn digits: cross-entropy, or MSE on one-hot
    targets (then the loss is piecewise quadratic)."""
    import torch
    from frameworks.models_torch import digits
    from torch import nn
    from torch.nn import functional as F

    import probecore as pc

    X, y = digits(300)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double().eval()
    if loss == "mse":
        return pc.objective(model, F.mse_loss, (X, F.one_hot(y, 10).double()))
    return pc.objective(model, F.cross_entropy, (X, y))


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs PROBECORE_TEST_BACKENDS=torch")
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_torch_relu_network_exact_hvp_is_not_failed(loss):
    # issue 13: the stencil crossed a ReLU kink along some directions (one of 9600
    # pre-activations, at 0.78 h) and the check failed an exact HVP by 0.32 (tol 5e-11)
    obj = _torch_relu_digits(loss)
    assert _plain_fd_misses(obj) > 0  # the plain reference really is wrong somewhere
    for rng in range(3):
        report = check_objective(obj, rng=rng, raise_on_failure=False)
        assert report.failures == (), str(report)
        for name in ("gradient", "hvp"):
            c = report[name]
            assert c.passed or c.message.startswith("inconclusive: "), str(report)


@pytest.mark.skipif("torch" not in BACKENDS, reason="needs PROBECORE_TEST_BACKENDS=torch")
@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(lambda o: WrongHVP(o, scale=1.01), id="hvp_scaled_1.01"),
        pytest.param(lambda o: WrongHVP(o, block=10), id="output_bias_block_sign_flipped"),
    ],
)
def test_torch_relu_network_wrong_hvp_fails(wrong):
    obj = wrong(_torch_relu_digits("cross_entropy"))
    with pytest.raises(ObjectiveCheckError) as info:
        check_objective(obj)
    assert "hvp" in [c.name for c in info.value.report.failures]
