"""Objectives on a process group (``process_group=``): two gloo ranks under ``torchrun``.

Each rank holds half of the examples; every number must equal that of one process holding
all of them (to the order of the float sums), on every rank alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import probecore as pc

from .models_torch import cnn, digits, mlp

HERE = Path(__file__).parent
N = 301
RTOL = 1e-12  # loss, gradient, HVP: sums in another order
RTOL_ALGO = 1e-10  # seeded algorithms on those numbers


def torchrun(mode: str, out: Path, ranks: int = 2) -> subprocess.CompletedProcess:
    """Run ``spmd_job.py MODE OUT`` on ``ranks`` gloo processes of one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={ranks}", str(HERE / "spmd_job.py"), mode, str(out)]
    # a guard against a hung collective, far above the ~10 s the job takes
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def errors(out: Path, ranks: int = 2, proc: subprocess.CompletedProcess | None = None) -> list[str]:
    """The first line of each rank's error (written before the group is torn down).

    The error modes check these, not torchrun's exit status: gloo once aborted a rank
    while tearing the group down after both had raised and written their errors.
    """
    missing = [r for r in range(ranks) if not (out / f"rank{r}.txt").is_file()]
    assert not missing, (missing, proc.stderr[-3000:] if proc else "")
    return [(out / f"rank{r}.txt").read_text().splitlines()[0] for r in range(ranks)]


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[list[dict], Path]:
    out = tmp_path_factory.mktemp("spmd")
    proc = torchrun("measure", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = list(out.glob("rank*.txt"))
    assert not failed, failed[0].read_text()
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(2)], out


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """The same measurements by one process holding all 301 examples."""
    rng = np.random.default_rng(1)
    res: dict[str, np.ndarray] = {}
    for name, model, image in (("mlp", mlp(16), False), ("cnn", cnn(), True)):
        obj = pc.objective(model.eval(), F.cross_entropy, digits(N, image=image), batch_size=64)
        x = obj.x0
        v = rng.standard_normal(obj.dim)
        V = rng.standard_normal((3, obj.dim))
        res[f"{name}/n_examples"] = np.array(obj.n_examples)
        res[f"{name}/loss"] = np.array(obj.loss(x))
        res[f"{name}/loss_and_grad.loss"] = res[f"{name}/loss"]
        res[f"{name}/grad"] = obj.grad(x)
        res[f"{name}/loss_and_grad.grad"] = res[f"{name}/grad"]
        res[f"{name}/hvp"] = obj.hvp(x, v)
        res[f"{name}/hvp_many"] = obj.hvp_many(x, V)
        res[f"{name}/span"] = obj.losses_in_span(x, V[:2], rng.standard_normal((5, 2)) * 0.1)
        res[f"{name}/accuracy"] = np.array(obj.metrics(x)["accuracy"])
    obj = pc.objective(mlp(16).eval(), F.cross_entropy, digits(N), batch_size=64)
    res["lanczos"] = pc.lanczos(obj, k=3, rng=0).eigenvalues
    res["hutchpp"] = np.array(pc.hutchpp(obj, n_matvecs=30, rng=0).estimate)
    density = pc.spectral_density(obj, n_probes=2, n_steps=20, rng=0)
    res["slq.nodes"], res["slq.weights"] = density.nodes, density.weights
    dirs = pc.random_directions(obj, 2, rng=0)
    res["plane"] = pc.plane(
        obj, dirs, alphas=np.linspace(-1, 1, 4), betas=np.linspace(-1, 1, 3)
    ).losses
    return res


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize(
    "what",
    [
        "loss",
        "loss_and_grad.loss",
        "grad",
        "loss_and_grad.grad",
        "hvp",
        "hvp_many",
        "span",
        "accuracy",
    ],
)
def test_two_ranks_equal_one_process(measured, reference, model, what):
    ranks, _ = measured
    key = f"{model}/{what}"
    for r in ranks:
        assert int(r[f"{model}/n_examples"]) == N
        assert rel(r[key], reference[key]) <= RTOL, (key, rel(r[key], reference[key]))
    # every rank holds the same bits: the ranks run the same algorithm to the same end
    np.testing.assert_array_equal(ranks[0][key], ranks[1][key])


@pytest.mark.parametrize("what", ["lanczos", "hutchpp", "slq.nodes", "slq.weights", "plane"])
def test_seeded_algorithms_equal_one_process(measured, reference, what):
    ranks, _ = measured
    for r in ranks:
        assert rel(r[what], reference[what]) <= RTOL_ALGO, (what, rel(r[what], reference[what]))
    np.testing.assert_array_equal(ranks[0][what], ranks[1][what])


def test_only_rank0_writes_and_every_rank_resumes(measured):
    ranks, out = measured
    stored = pc.load_run(out / "plane.zarr")
    np.testing.assert_array_equal(stored.losses, ranks[0]["plane"])
    for r in ranks:
        np.testing.assert_array_equal(r["plane.resumed"], r["plane"])
        # the rerun evaluated nothing on either rank: rank 1 was told what rank 0 read
        assert r["plane.evals"][1] <= 1 < r["plane.evals"][0]


def test_bytes_per_hvp(measured):
    """One all-reduce of dim numbers per HVP, and 3 control numbers (failures, hashes)."""
    ranks, _ = measured
    dims = {"mlp": 64 * 16 + 16 + 16 * 10 + 10, "cnn": 8 * 9 + 8 + 8 * 8 * 9 + 8 + 32 * 10 + 10}
    for r in ranks:
        for name, dim in dims.items():
            assert int(r[f"{name}/bytes_per_hvp"]) == 8 * dim + 3 * 8


def test_a_rank_that_cannot_build_stops_every_rank(tmp_path):
    proc = torchrun("fail", tmp_path)
    first, second = errors(tmp_path, proc=proc)
    assert first.startswith("RuntimeError: rank 1 of the process group could not build")
    assert "batch 0 of `data`: its inputs ho" in first
    assert second.startswith("ValueError: batch 0 of `data`: its inputs ho")


def test_ranks_with_other_parameters_are_refused(tmp_path):
    proc = torchrun("mismatch", tmp_path)
    for line in errors(tmp_path, proc=proc):
        assert line.startswith("ValueError: the ranks of the process group hold different")
        assert "parameters (sha256 of x0)" in line


def test_an_executor_is_refused(tmp_path):
    proc = torchrun("executor", tmp_path)
    for line in errors(tmp_path, proc=proc):
        assert line.startswith("ValueError: `executor` cannot run an objective shared by 2")


def test_process_group_needs_an_initialized_group():
    X, y = digits(40)
    with pytest.raises(ValueError, match="needs an initialized process group: launch with"):
        pc.objective(mlp(16).eval(), F.cross_entropy, (X, y), process_group="world")
    assert not torch.distributed.is_initialized()


def test_the_example_prints_the_same_numbers_on_one_and_two_processes():
    example = HERE.parents[1] / "examples" / "torch_spmd.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    one = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, env=env)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    two = subprocess.run([*cmd, str(example)], capture_output=True, text=True, env=env, timeout=900)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr, two.stderr)
    assert one.stdout.startswith("1 process(es), 1347 examples")
    assert two.stdout.startswith("2 process(es), 1347 examples")
    assert one.stdout.splitlines()[1:] == two.stdout.splitlines()[1:]


def test_a_padding_distributed_sampler_is_refused(tmp_path):
    proc = torchrun("sampler_pad", tmp_path)
    for line in errors(tmp_path, proc=proc):
        assert line.startswith(
            "ValueError: `data`'s DistributedSampler pads the ranks to 151 examples each by "
            "repeating 1 of the data set's 301"
        )


@pytest.mark.parametrize("mode", ["sampler_even", "sampler_drop"])
def test_distributed_samplers_that_split_the_data(tmp_path, mode):
    proc = torchrun(mode, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(tmp_path.glob("rank*.txt"))
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    n = 300
    if mode == "sampler_drop":  # 150 each of 301: one left out, said once, by rank 0
        assert "give 300 of the data set's 301 examples" in str(ranks[0]["warnings"][0])
    assert [str(w) for w in ranks[1]["warnings"]] == [""]
    for r in ranks:
        assert int(r["n_examples"]) == n
    if mode == "sampler_even":  # the shuffled split's union: all 300 examples, once each
        reference = pc.objective(mlp(16).eval(), F.cross_entropy, digits(n))
        for r in ranks:
            assert rel(r["loss"], reference.loss(reference.x0)) <= RTOL


def test_ranks_that_draw_their_own_vectors_are_refused(tmp_path):
    """hutchpp without rng: each rank would draw other probes, and their sum is no trace."""
    proc = torchrun("rng_default", tmp_path)
    for line in errors(tmp_path, proc=proc):
        assert line.startswith("ValueError: the ranks of the process group called hvp")
        assert "with different arguments" in line


def test_a_rank_that_fails_mid_run_stops_every_rank(tmp_path):
    proc = torchrun("raise_midrun", tmp_path)
    first, second = errors(tmp_path, proc=proc)
    assert first.startswith("RuntimeError: rank(s) 1 of the process group failed in hvp")
    assert second.startswith("ValueError: `v`")


def test_rank0s_store_decides(tmp_path):
    """A store passed on rank 0 only: rank 1 follows it, no collective is mismatched."""
    proc = torchrun("store_rank0", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(tmp_path.glob("rank*.txt")), errors(tmp_path, proc=proc)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    np.testing.assert_array_equal(ranks[0]["losses"], ranks[1]["losses"])
    np.testing.assert_array_equal(pc.load_run(tmp_path / "plane.zarr").losses, ranks[0]["losses"])
    for r in ranks:
        assert list(r["evals"]) == [10, 1]  # 9 points and the origin; then the origin only
        np.testing.assert_array_equal(r["again"], r["losses"])
