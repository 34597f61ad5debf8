"""The Hessian on n examples: ``sample_examples`` and the subset every result records."""

from __future__ import annotations

import numpy as np
import pytest

import probecore as pc
from probecore.analytic import Quadratic, digits_logistic_regression


def _with_data(objectives):
    """The first objective of the backend that is built from data."""
    return next(o for o in objectives.values() if getattr(o, "n_examples", None))


def test_sample_examples_records_the_examples_it_holds(objectives):
    full = _with_data(objectives)
    sub = pc.sample_examples(full, 40, rng=3)
    idx = np.sort(np.random.default_rng(3).choice(full.n_examples, 40, replace=False))
    # positions in the original data set: the analytic fixture is itself a subset
    parent = getattr(full, "data_subset", None)
    base = np.asarray(parent["indices"]) if parent else np.arange(full.n_examples)
    record = sub.data_subset
    assert record["n"] == 40
    assert record["of"] == (parent["of"] if parent else full.n_examples)
    assert record["indices"] == base[idx].tolist()
    if parent:
        assert record["data"] == parent["data"]
    elif callable(getattr(full, "fingerprint", None)):
        assert record["data"] == full.fingerprint()["data"]
    # the same objective on those examples: the loss equals the explicit subset's
    assert sub.loss(sub.x0) == pytest.approx(full.subset(idx).loss(full.x0), rel=1e-13)
    # a subset of a subset records positions in the full data set
    subsub = sub.subset(np.array([0, 5, 39]))
    assert subsub.data_subset["indices"] == base[idx[[0, 5, 39]]].tolist()
    assert subsub.data_subset["of"] == record["of"]


def test_results_made_on_a_subset_say_which_examples(objectives, tmp_path):
    sub = pc.sample_examples(_with_data(objectives), 30, rng=0)
    d = pc.random_directions(sub, 2, normalization="none", rng=0)
    plane = pc.plane(sub, d, alphas=np.linspace(-0.1, 0.1, 3), store=tmp_path / "plane.zarr")
    assert plane.metadata["objective"]["subset"] == sub.data_subset
    again = pc.load_run(tmp_path / "plane.zarr")
    assert again.metadata["objective"]["subset"]["indices"] == sub.data_subset["indices"]
    ray = pc.rays(sub, n_rays=4, rng=0)
    assert ray.metadata["objective"]["subset"]["n"] == 30


def test_full_data_results_carry_no_subset():
    full = digits_logistic_regression(l2=1e-2)
    d = pc.random_directions(full, 1, normalization="none", rng=0)
    assert "subset" not in pc.line(full, d, coords=[0.0, 0.1]).metadata["objective"]


@pytest.mark.parametrize(
    ("n", "error", "match"),
    [
        (0, ValueError, r"`n` must be in \[1, 1347\]; got 0"),
        (1798, ValueError, r"`n` must be in \[1, 1347\]; got 1798"),
        (2.5, TypeError, "`n` must be an integer"),
    ],
)
def test_sample_examples_refuses_bad_sizes(n, error, match):
    with pytest.raises(error, match=match):
        pc.sample_examples(digits_logistic_regression(), n, rng=0)


def test_sample_examples_needs_a_data_set():
    q = Quadratic.from_spectrum(np.arange(1.0, 5.0), rng=0)
    with pytest.raises(ValueError, match="has no data set"):
        pc.sample_examples(q, 2, rng=0)


def test_spectra_and_traces_record_their_objective_and_subset(tmp_path):
    sub = pc.sample_examples(digits_logistic_regression(l2=1e-2), 200, rng=1)
    x = sub.x0
    results = [
        pc.lanczos((sub, x), k=1, rng=0),
        pc.power_iteration((sub, x), rng=0, raise_on_failure=False),
        pc.hutchinson((sub, x), n_probes=3, rng=0),
        pc.hutchpp((sub, x), n_matvecs=9, rng=0),
    ]
    for r in results:
        record = r.metadata["objective"]
        assert record["dim"] == sub.dim and record["n_examples"] == 200
        assert record["subset"]["indices"] == sub.data_subset["indices"]
        back = pc.load(pc.save(r, tmp_path / f"{type(r).__name__}{r.n_matvecs}.npz"))
        assert back.metadata["objective"]["subset"] == sub.data_subset
    # a matrix has no objective to record
    assert "objective" not in pc.lanczos(np.diag([3.0, 2.0, 1.0]), k=1, rng=0).metadata
