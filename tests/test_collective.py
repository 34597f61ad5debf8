"""SPMD objectives (``objective.collective``): rank 0 writes the store, the others follow.

The ranks are simulated in one process: rank 0's broadcasts are recorded and replayed to
rank 1, which is what a process group delivers (tests/frameworks/test_torch_spmd.py runs
two real gloo ranks).
"""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import probecore as pc
from probecore.analytic import Quadratic


class Recorder:
    """Rank 0 of two: keeps what it broadcasts."""

    rank, size = 0, 2

    def __init__(self) -> None:
        self.sent: list = []

    def broadcast(self, obj):
        self.sent.append(pickle.loads(pickle.dumps(obj)))  # as sent: a copy, at this moment
        return obj


class Replayer:
    """Rank 1 of two: receives what rank 0 broadcast, in order."""

    rank, size = 1, 2

    def __init__(self, sent: list) -> None:
        self.sent = list(sent)

    def broadcast(self, obj):
        return self.sent.pop(0)  # rank 1's own value is not sent


def spmd(collective) -> Quadratic:
    q = Quadratic.from_spectrum([1.0, 2.0, 3.0], rng=0)
    q.collective = collective
    return q


def plane(obj, store):
    dirs = np.eye(3)[:2]
    grid = np.linspace(-1, 1, 5)
    return pc.plane(obj, dirs, alphas=grid, betas=grid, chunk_size=7, store=store)


def test_only_rank0_writes_and_rank1_resumes_what_rank0_read(tmp_path):
    lead = Recorder()
    store = tmp_path / "plane.zarr"
    first = plane(spmd(lead), store)
    assert store.exists() and first.n_loss_evals == 26
    # rank 1 never touches the disk: it is told what rank 0 read (nothing, at first)
    follower_store = tmp_path / "never.zarr"  # rank 0's store decides, rank 1's is unused
    follower = plane(spmd(Replayer(lead.sent)), follower_store)
    assert not follower_store.exists()
    np.testing.assert_array_equal(follower.losses, first.losses)
    # a rerun: rank 0 reads the finished store; rank 1 learns it and evaluates nothing
    lead.sent.clear()
    again = plane(spmd(lead), store)
    resumed = plane(spmd(Replayer(lead.sent)), follower_store)
    assert again.n_loss_evals == resumed.n_loss_evals == 1  # the origin, on every rank
    np.testing.assert_array_equal(resumed.losses, first.losses)


def test_rank0s_failure_reaches_rank1(tmp_path):
    lead = Recorder()
    store = tmp_path / "plane.zarr"
    plane(spmd(lead), store)
    other = Quadratic.from_spectrum([1.0, 2.0, 5.0], rng=0)  # another objective
    other.collective = lead
    lead.sent.clear()
    with pytest.raises(ValueError):
        plane(other, store)
    status, message = lead.sent[-1]
    assert status == "error" and message.startswith("ValueError")
    with pytest.raises(RuntimeError, match="rank 0 of the objective's process group failed"):
        plane(spmd(Replayer(lead.sent)), tmp_path / "never.zarr")


def test_rays_resume_on_every_rank(tmp_path):
    lead = Recorder()
    store = tmp_path / "rays.zarr"
    first = pc.rays(spmd(lead), n_rays=6, chunk_size=4, rng=0, store=store)
    lead.sent.clear()
    pc.rays(spmd(lead), n_rays=6, chunk_size=4, rng=0, store=store)
    again = pc.rays(spmd(Replayer(lead.sent)), n_rays=6, chunk_size=4, rng=0, store=store)
    assert again.n_loss_evals == 1
    np.testing.assert_array_equal(again.kappa, first.kappa)


def test_an_executor_is_refused():
    obj = spmd(Recorder())
    with ThreadPoolExecutor(1) as ex, pytest.raises(ValueError, match="`executor` cannot run"):
        pc.plane(obj, np.eye(3)[:2], executor=ex)


def test_a_collective_without_broadcast_is_refused():
    q = Quadratic.from_spectrum([1.0, 2.0], rng=0)
    q.collective = type("C", (), {"rank": 0, "size": 2})()
    with pytest.raises(TypeError, match=r"collective must have `rank`, `size` and `broadcast"):
        pc.plane(q, np.eye(2), store="x.zarr")


def test_a_store_on_rank0_only_is_followed(tmp_path):
    lead = Recorder()
    store = tmp_path / "plane.zarr"
    first = plane(spmd(lead), store)
    follower = plane(spmd(Replayer(lead.sent)), None)  # no store given on rank 1
    np.testing.assert_array_equal(follower.losses, first.losses)
    assert follower.n_loss_evals == first.n_loss_evals == 26  # origin included on both
    assert follower.metadata["store"] == str(store)
