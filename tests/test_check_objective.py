"""check_objective: it passes correct objectives and names the check a broken one fails."""

from __future__ import annotations

import numpy as np
import pytest

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
    # with a tolerance below rounding level even a correct objective fails the
    # finite-difference checks: the tolerance argument reaches them
    report = check_objective(_quadratic(), rtol=1e-30, raise_on_failure=False)
    assert {"gradient", "hvp"} <= {c.name for c in report.failures}
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
