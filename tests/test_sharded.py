"""ShardedObjective: shards of a real data set on a Dask LocalCluster, worker loss included.

Every comparison is against the single-process objective on all the examples (float64):
the digits logistic regression, split into shards that factories build on the workers.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import probecore as pc
from probecore._contract.fingerprint import objective_fingerprint
from probecore.analytic import LogisticRegression, Quadratic, digits_logistic_regression
from probecore.testing import check_objective

distributed = pytest.importorskip("distributed")
pytest.importorskip("sklearn")

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


# --------------------------------------------------------------------------- factories
# module-level, so that they pickle by reference and run on the workers


@functools.cache
def _digits() -> LogisticRegression:
    return digits_logistic_regression(split="all")


def _shard(indices: np.ndarray, **changes) -> LogisticRegression:
    full = _digits()
    options = dict(n_classes=10, l2=full.l2, dtype=np.float64) | changes
    return LogisticRegression(full.features[indices], full.labels[indices], **options)


def _narrow_shard(indices: np.ndarray) -> LogisticRegression:
    """Half the pixels: another dim."""
    full = _digits()
    return LogisticRegression(full.features[indices, :32], full.labels[indices], n_classes=10)


def _quadratic_shard() -> Quadratic:
    """No data set: n_examples is None."""
    return Quadratic.from_spectrum(np.linspace(1.0, 2.0, _digits().dim), rng=0)


def _changes_on_rebuild(indices: np.ndarray, counter: str, fail: bool) -> LogisticRegression:
    """The shard on its first build; on any later build one example fewer, or an error."""
    path = Path(counter)
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    if n and fail:
        raise OSError(f"the data behind shard 1 is gone (build {n + 1})")
    return _shard(indices if n == 0 else indices[:-1])


class _Exits(LogisticRegression):
    """Kills its worker process in hvp_many once the file ``flag`` exists."""

    flag = ""

    def hvp_many(self, x, V):
        if Path(self.flag).exists():
            os._exit(1)
        return super().hvp_many(x, V)


def _exiting_shard(indices: np.ndarray, flag: str) -> _Exits:
    full = _digits()
    obj = _Exits(full.features[indices], full.labels[indices], n_classes=10, l2=full.l2)
    obj.flag = flag
    return obj


def _split(sizes: list[int]) -> list[np.ndarray]:
    return np.split(np.arange(_digits().n_examples), np.cumsum(sizes)[:-1])


TWO = _split([899, 898])
THREE = _split([300, 1100, 397])  # uneven


def _factories(parts, make=_shard):
    return [functools.partial(make, p) for p in parts]


# --------------------------------------------------------------------------- fixtures

# A safety net against a cluster that never starts its workers (a failure, not a hang);
# they start in seconds even on a loaded 2-core machine.
WAIT_S = 300


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port: 8787 may be taken (pytest -n 2)
            local_directory=str(tmp_path_factory.mktemp("dask")),
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=WAIT_S)
        yield cluster, client


@pytest.fixture(scope="module")
def client(cluster):
    return cluster[1]


@pytest.fixture
def fresh(tmp_path):
    """A cluster of its own, for a test that kills its workers.

    A worker killed in one test is restarted by its nanny in the background; a later test
    on a shared cluster could find it still missing (a CI run once waited for it forever).
    """
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            local_directory=str(tmp_path / "dask"),
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=WAIT_S)
        yield cluster, client


@pytest.fixture(scope="module", params=[TWO, THREE], ids=["2 shards", "3 uneven shards"])
def sharded(request, client):
    return pc.ShardedObjective(client, _factories(request.param))


@pytest.fixture(scope="module")
def point():
    gen = np.random.default_rng(0)
    return 0.1 * gen.standard_normal(_digits().dim)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _kill_worker(client, address: str) -> None:
    """End the worker process at ``address`` and wait until the scheduler has removed it."""
    client.run(os._exit, 1, workers=[address], on_error="ignore")
    deadline = time.monotonic() + 300  # a safety net only: this takes well under a second
    while address in client.scheduler_info()["workers"]:
        assert time.monotonic() < deadline, f"the scheduler still lists {address}"
        time.sleep(0.05)


class _KillsAfter:
    """The sharded objective, whose ``n``-th HVP call first kills the worker of shard 1."""

    def __init__(self, sharded, client, n: int) -> None:
        self.sharded, self.client, self.n, self.calls = sharded, client, n, 0

    def __getattr__(self, name):
        return getattr(self.sharded, name)

    def hvp(self, x, v):
        return self.hvp_many(x, v[None, :])[0]

    def hvp_many(self, x, V):
        self.calls += 1
        if self.calls == self.n:
            _kill_worker(self.client, self.sharded.shard_workers[1])
        return self.sharded.hvp_many(x, V)


# --------------------------------------------------------------------------- values


def test_every_member_equals_the_single_process_objective(sharded, point):
    full, x = _digits(), point
    gen = np.random.default_rng(1)
    v, V, basis = (gen.standard_normal(s) for s in [full.dim, (4, full.dim), (2, full.dim)])
    coeffs = gen.standard_normal((5, 2))
    assert (sharded.dim, sharded.dtype, sharded.layout) == (full.dim, full.dtype, full.layout)
    assert sharded.n_examples == full.n_examples == sum(sharded.shard_sizes)
    np.testing.assert_array_equal(sharded.x0, full.x0)
    loss, g = sharded.loss_and_grad(x)
    pairs = {
        "loss": (sharded.loss(x), full.loss(x)),
        "grad": (sharded.grad(x), full.grad(x)),
        "loss_and_grad": (np.append(g, loss), np.append(full.grad(x), full.loss(x))),
        "hvp": (sharded.hvp(x, v), full.hvp(x, v)),
        "hvp_many": (sharded.hvp_many(x, V), full.hvp_many(x, V)),
        "losses_in_span": (
            sharded.losses_in_span(x, basis, coeffs),
            full.losses_in_span(x, basis, coeffs),
        ),
        "accuracy": (sharded.metrics(x)["accuracy"], full.metrics(x)["accuracy"]),
    }
    for name, (a, b) in pairs.items():
        assert _rel(a, b) <= 1e-12, name
    assert sharded.grad(x).dtype == sharded.hvp_many(x, V).dtype == np.float64
    assert sharded.hvp_many(x, V).shape == (4, full.dim)
    assert sharded.n_rebuilds == 0


def test_lanczos_hutchpp_and_slq_equal_the_single_process_runs(sharded, point):
    full = _digits()
    runs = {
        "lanczos": lambda A: pc.lanczos(A, k=3, rng=0).eigenvalues,
        "hutchpp": lambda A: pc.hutchpp(A, n_matvecs=30, rng=0).estimate,
        "slq": lambda A: pc.spectral_density(A, n_probes=3, n_steps=20, rng=0).density,
    }
    for name, run in runs.items():
        assert _rel(run((sharded, point)), run((full, point))) <= 1e-10, name


def test_the_sharded_objective_passes_the_conformance_check(client, point):
    sharded = pc.ShardedObjective(client, _factories(TWO))
    report = check_objective(sharded, point, rng=0)
    assert report.passed, report


def test_subset_over_global_indices(sharded, point):
    full = _digits()
    idx = np.random.default_rng(2).choice(full.n_examples, 500, replace=False)
    sub = sharded.subset(idx)
    ref = full.subset(np.sort(idx))
    assert sub.n_examples == 500
    assert _rel(sub.loss(point), ref.loss(point)) <= 1e-12
    assert sub.data_subset["n"] == 500 and sub.data_subset["of"] == full.n_examples
    with pytest.raises(ValueError, match=r"`indices` must lie in \[0, 1796\]"):
        sharded.subset(np.array([0, full.n_examples]))


def test_fingerprint_names_the_shards(client, sharded):
    again = pc.ShardedObjective(client, _factories(THREE if sharded.n_shards == 3 else TWO))
    assert sharded.fingerprint() == again.fingerprint()
    other = pc.ShardedObjective(client, _factories(_split([1000, 797])))
    assert other.fingerprint() != sharded.fingerprint()
    record = objective_fingerprint(sharded)
    assert record["n_shards"] == sharded.n_shards and record["n_examples"] == 1797
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(sharded)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (functools.partial(_shard, TWO[1], x0=np.ones(650)), r"`factories\[1\]`.*x0 differs"),
        (functools.partial(_narrow_shard, TWO[1]), r"`factories\[1\]`.*dim is 330.*650"),
        (functools.partial(_shard, TWO[1], dtype=np.float32), r"`factories\[1\]`.*dtype"),
        (_quadratic_shard, r"`factories\[1\]` built a Quadratic whose n_examples is None"),
    ],
    ids=["x0", "dim", "dtype", "no n_examples"],
)
def test_shards_that_disagree_are_refused_naming_the_shard(client, second, message):
    with pytest.raises(ValueError, match=message):
        pc.ShardedObjective(client, [functools.partial(_shard, TWO[0]), second])


def test_bad_arguments_are_refused(client):
    f = _factories(TWO)
    with pytest.raises(ValueError, match=r"`on_worker_loss` must be one of 'rebuild', 'raise'"):
        pc.ShardedObjective(client, f, on_worker_loss="retry")
    with pytest.raises(TypeError, match="`client` must be a dask.distributed.Client.*got str"):
        pc.ShardedObjective("tcp://127.0.0.1:8786", f)
    with pytest.raises(ValueError, match="`factories` must hold at least one factory"):
        pc.ShardedObjective(client, [])
    with pytest.raises(TypeError, match="`factories` must be a sequence.*got generator"):
        pc.ShardedObjective(client, (g for g in f))
    with pytest.raises(TypeError, match=r"`factories\[1\]` must be a zero-argument callable"):
        pc.ShardedObjective(client, [f[0], 3])
    with pytest.raises(TypeError, match=r"`factories\[0\]\(\)` must be a probecore Objective"):
        pc.ShardedObjective(client, [dict])


def test_without_dask_the_error_says_how_to_install_it():
    code = (
        "import sys; sys.modules['distributed'] = sys.modules['dask'] = None\n"
        "import probecore\n"
        "try:\n"
        "    probecore.ShardedObjective(None, [])\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert 'pip install "dask[distributed]"' in out.stdout


# --------------------------------------------------------------------------- worker loss


def test_lanczos_survives_the_loss_of_a_worker(fresh, point):
    _, client = fresh
    sharded = pc.ShardedObjective(client, _factories(TWO))
    killer = _KillsAfter(sharded, client, n=5)
    result = pc.lanczos((killer, point), k=3, rng=0)
    assert killer.calls > 5  # the kill happened part-way
    assert sharded.n_rebuilds >= 1
    reference = pc.lanczos((_digits(), point), k=3, rng=0)
    assert _rel(result.eigenvalues, reference.eigenvalues) <= 1e-10


def test_on_worker_loss_raise_refuses_a_rebuilt_shard(fresh, point):
    _, client = fresh
    sharded = pc.ShardedObjective(client, _factories(TWO), on_worker_loss="raise")
    killer = _KillsAfter(sharded, client, n=3)
    with pytest.raises(pc.ShardLostError, match=r"shard \d was lost.*on_worker_loss='raise'") as e:
        pc.lanczos((killer, point), k=3, rng=0)
    # shard 0 too, if Dask had built both on that worker
    assert e.value.shard in (0, 1) and e.value.worker.startswith("tcp://")
    with pytest.raises(pc.ShardLostError):  # and keeps refusing
        sharded.loss(point)


@pytest.mark.parametrize(
    ("fail", "message"),
    [
        (False, "rebuilt by Dask on .*, but the rebuilt shard is not the original: .*"
         "its n_examples is 897 \\(the original's 898\\)"),
        (True, "could not be rebuilt: its factory raised OSError: the data behind shard 1"),
    ],
    ids=["differs", "fails"],
)  # fmt: skip
def test_a_rebuild_that_differs_or_fails_raises_instead_of_a_number(
    fresh, point, tmp_path, fail, message
):
    _, client = fresh
    make = functools.partial(_changes_on_rebuild, TWO[1], str(tmp_path / "builds"), fail)
    sharded = pc.ShardedObjective(client, [functools.partial(_shard, TWO[0]), make])
    killer = _KillsAfter(sharded, client, n=2)
    with pytest.raises(pc.ShardLostError, match="shard 1 was lost with its worker tcp://") as e:
        pc.lanczos((killer, point), k=3, rng=0)
    assert re.search(message, str(e.value)), str(e.value)
    assert e.value.shard == 1


def test_a_call_after_every_worker_was_lost_waits_for_new_ones(fresh, point):
    # Dask never runs a task restricted to a worker's address once no worker is left,
    # even with allow_other_workers: the rebuilds and the calls must not be restricted
    _, client = fresh
    sharded = pc.ShardedObjective(client, _factories(TWO))
    for address in list(client.scheduler_info()["workers"]):
        _kill_worker(client, address)
    v = np.ones(sharded.dim)
    with ThreadPoolExecutor(1) as pool:  # the nannies restart the workers; never hang CI
        hv = pool.submit(sharded.hvp, point, v).result(timeout=WAIT_S)
    assert _rel(hv, _digits().hvp(point, v)) <= 1e-12
    assert sharded.n_rebuilds == 2


def test_killed_worker_surfaces_as_shard_lost_error(fresh, point, tmp_path):
    cluster, client = fresh
    flag = tmp_path / "exit"
    factories = [
        functools.partial(_shard, TWO[0]),
        functools.partial(_exiting_shard, TWO[1], str(flag)),
    ]
    sharded = pc.ShardedObjective(client, factories)
    allowed = cluster.scheduler.allowed_failures
    cluster.scheduler.allowed_failures = 0  # the first death of a worker running it
    try:
        flag.touch()
        with pytest.raises(pc.ShardLostError, match="shard 1: Dask gave up on its task") as e:
            sharded.hvp(point, point)
    finally:
        cluster.scheduler.allowed_failures = allowed
        flag.unlink()
    assert "not even a partial sum" in str(e.value)
    assert isinstance(e.value.__cause__, distributed.KilledWorker)
