"""Run stores that know what they hold: identity, one writer, verified chunks, no trespass.

Every attack here either resumes to exactly the values of a fresh run or is refused with
a message naming the store; a stored value that is wrong is never returned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import probecore as pc
from probecore.analytic import LogisticRegression, Quadratic

pytest.importorskip("zarr")
pytest.importorskip("filelock")

GRID = dict(alphas=np.linspace(-1, 1, 6), betas=np.linspace(-1, 1, 5), chunk_size=4)


def _logreg(n: int = 60, seed: int = 0, dtype=np.float64) -> LogisticRegression:
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, 4))
    y = rng.integers(0, 3, n)
    x0 = np.random.default_rng(99).standard_normal(15)  # trained-looking weights, not zero
    return LogisticRegression(F, y, n_classes=3, dtype=dtype, x0=x0.astype(dtype))


def _plane(obj, store=None, **kw):
    D = pc.random_directions(obj, k=2, rng=0)
    return pc.plane(obj, D, store=store, **{**GRID, **kw})


def _files(path, under=""):
    """Every chunk file of the store's arrays (``<array>/c/<i>``), or all files under."""
    out = []
    for root, _, names in os.walk(os.path.join(path, under)):
        out += [os.path.join(root, n) for n in names]
    return sorted(out)


# --------------------------------------------------------------------------- identity


def test_resume_with_other_data_is_refused_naming_the_data(tmp_path):
    path = tmp_path / "p"
    _plane(_logreg(seed=0), path)
    with pytest.raises(ValueError, match=r"another objective: its data \(digest\)"):
        _plane(_logreg(seed=1), path)


def test_resume_with_another_precision_is_refused(tmp_path):
    path = tmp_path / "p"
    _plane(_logreg(), path)
    with pytest.raises(ValueError, match=r"precision \(dtype\) is 'float64'.*'float32'"):
        _plane(_logreg(dtype=np.float32), path)


def test_resume_with_another_function_is_refused(tmp_path):
    path = tmp_path / "p"
    q = Quadratic.from_spectrum(np.linspace(1, 3, 10), rng=0)
    r = pc.rays(q, n_rays=6, rng=0, store=path, chunk_size=2)
    other = Quadratic.from_spectrum(np.linspace(1, 3.5, 10), rng=0)
    with pytest.raises(ValueError, match="its function is"):
        pc.rays(other, n_rays=6, rng=0, store=path, chunk_size=2)
    again = pc.rays(q, n_rays=6, rng=0, store=path, chunk_size=2)
    assert np.array_equal(again.kappa, r.kappa) and again.n_loss_evals == 1


class _NoFingerprint(pc.AbstractObjective):
    """An objective with no ``fingerprint()``: only the loss at the origin tells it apart."""

    dtype = np.dtype(np.float64)

    def __init__(self, scale: float) -> None:
        self.dim, self.scale = 3, scale
        self.layout, self.x0 = pc.Layout.single(3), np.ones(3)

    def loss(self, x):
        return 0.5 * self.scale * float(x @ x)

    def grad(self, x):
        return self.scale * np.asarray(x, dtype=float)

    def hvp(self, x, v):
        return self.scale * np.asarray(v, dtype=float)


def test_objectives_without_a_fingerprint_are_told_apart_by_the_loss_at_the_origin(tmp_path):
    path = tmp_path / "r"
    pc.rays(_NoFingerprint(1.0), n_rays=4, rng=0, store=path, chunk_size=2)
    with pytest.raises(ValueError, match="loss at the origin"):
        pc.rays(_NoFingerprint(1.001), n_rays=4, rng=0, store=path, chunk_size=2)


def test_a_stored_plane_counts_the_loss_at_the_origin(tmp_path):
    f = _logreg()
    plain = _plane(f)
    stored = _plane(f, tmp_path / "p")
    assert stored.n_loss_evals == plain.n_loss_evals + 1  # the store's fingerprint
    again = _plane(f, tmp_path / "p")
    assert again.n_loss_evals == 1 and np.array_equal(again.losses, plain.losses)


# --------------------------------------------------------------------------- no trespass


def test_a_folder_of_the_users_is_refused_and_left_untouched(tmp_path):
    folder = tmp_path / "mine"
    (folder / "loss").mkdir(parents=True)
    (folder / "loss" / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="neither empty nor a probecore store"):
        _plane(_logreg(), folder)
    assert (folder / "loss" / "notes.csv").read_text() == "a,b\n1,2\n"
    assert sorted(os.listdir(folder)) == ["loss"]


def test_an_empty_folder_becomes_a_store(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    r = _plane(_logreg(), folder)
    assert r.complete and pc.load_run(folder).complete


def test_an_interrupted_creation_is_created_again(tmp_path):
    f = _logreg()
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / ".probecore-run").write_text("creating\n")  # killed before the record
    (folder / "loss").mkdir()
    (folder / "loss" / "junk").write_bytes(b"\x00\x01")
    with pytest.warns(RuntimeWarning, match="without a readable record.*starts over") as w:
        r = _plane(f, folder)
    assert w[0].filename == __file__
    assert r.complete and np.array_equal(r.losses, _plane(f).losses)


def test_a_store_that_lost_its_record_starts_over_with_a_warning(tmp_path):
    f, path, fresh = _stored(tmp_path)
    os.remove(path / "zarr.json")
    with pytest.warns(RuntimeWarning, match="without a readable record"):
        r = _plane(f, path)
    assert np.array_equal(r.losses, fresh.losses)


def test_an_empty_store_path_is_refused():
    with pytest.raises(ValueError, match="`store` must be a folder path"):
        _plane(_logreg(), "")


def test_function_names_in_fingerprints_carry_no_memory_address():
    import functools

    from probecore.backend import callable_name

    class Loss:
        def __call__(self, out, target):
            return 0.0

    def loss(out, target, scale):
        return scale

    for fn in (functools.partial(loss, scale=2.0), Loss()):
        assert "0x" not in callable_name(fn), callable_name(fn)
    assert callable_name(functools.partial(loss, scale=2.0)) != callable_name(
        functools.partial(loss, scale=3.0)
    )


def _other_logreg():
    return _logreg(seed=7)


def test_a_factory_that_builds_another_objective_is_refused(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    f = _logreg()
    with ThreadPoolExecutor(1) as ex, pytest.raises(ValueError, match="built another objective"):
        _plane(f, tmp_path / "p", executor=ex, objective_factory=_other_logreg)
    with ThreadPoolExecutor(1) as ex:  # the same objective, built in the worker: fine
        r = _plane(f, tmp_path / "q", executor=ex, objective_factory=_logreg)
    assert np.array_equal(r.losses, _plane(f).losses)


def test_rays_beyond_the_memory_budget_are_refused(monkeypatch):
    monkeypatch.setenv("PROBECORE_MAX_GRID_BYTES", "1e6")
    q = Quadratic.from_spectrum(np.linspace(1, 3, 10), rng=0)
    with pytest.raises(ValueError, match="`n_rays` = 10000000 asks for"):
        pc.rays(q, n_rays=10**7, rng=0)


# --------------------------------------------------------------------------- one writer


def test_a_second_writer_is_refused_while_the_first_holds_the_store(tmp_path):
    from probecore._probes.engine import RunState

    path = tmp_path / "p"
    f = _logreg()
    first = RunState.start(
        path,
        kind="plane",
        n_points=4,
        chunk_size=2,
        fields=["loss"],
        fixed={},
        identity={},
        objective={},
        metadata={},
    )
    try:
        with pytest.raises(ValueError, match="being written by another run"):
            _plane(f, path)
    finally:
        first.close()


_HOLDER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import probecore as pc
    from probecore.analytic import LogisticRegression

    rng = np.random.default_rng(0)
    F, y = rng.standard_normal((60, 4)), rng.integers(0, 3, 60)
    x0 = np.random.default_rng(99).standard_normal(15)
    f = LogisticRegression(F, y, n_classes=3, x0=x0)
    original = type(f).losses_in_span
    calls = [0]

    def stalls(self, origin, basis, coeffs):
        calls[0] += 1
        if calls[0] == 3:
            print("holding", flush=True)
            time.sleep(3600)  # until killed
        return original(self, origin, basis, coeffs)

    type(f).losses_in_span = stalls
    D = pc.random_directions(f, k=2, rng=0)
    pc.plane(f, D, alphas=np.linspace(-1, 1, 6), betas=np.linspace(-1, 1, 5), chunk_size=4,
             store=sys.argv[1])
    """
)


def test_a_killed_writer_does_not_leave_the_store_locked(tmp_path):
    script = tmp_path / "hold.py"
    script.write_text(_HOLDER)
    path = tmp_path / "p"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "holding"
        with pytest.raises(ValueError, match="being written by another run"):
            _plane(_logreg(), path)
        with pytest.raises(ValueError, match="being written by another run"):
            _plane(_logreg(seed=5), path)  # another run, too: refused, never mixed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    r = _plane(_logreg(), path)  # the lock died with the writer
    assert np.array_equal(r.losses, _plane(_logreg()).losses)
    assert r.n_loss_evals == 1 + 30 - 4  # the origin, and all but the one chunk it saved


# --------------------------------------------------------------------------- damage


def _stored(tmp_path, name="p"):
    f = _logreg()
    path = tmp_path / name
    fresh = _plane(f)
    _plane(f, path)
    return f, path, fresh


def test_a_deleted_value_chunk_is_recomputed_with_a_warning(tmp_path):
    f, path, fresh = _stored(tmp_path)
    os.remove(path / "loss" / "c" / "2")
    with pytest.warns(RuntimeWarning, match="reported as not computed"):
        loaded = pc.load_run(path)
    assert loaded.computed.sum() == 26 and np.isnan(loaded.losses.ravel()[8:12]).all()
    with pytest.warns(RuntimeWarning, match=r"computed again: chunk 2 \(points 8-11\)") as w:
        r = _plane(f, path)
    assert w[0].filename == __file__
    assert r.n_loss_evals == 1 + 4 and np.array_equal(r.losses, fresh.losses)
    assert pc.load_run(path).complete  # healed


def test_a_truncated_chunk_names_the_store_and_the_array(tmp_path):
    f, path, fresh = _stored(tmp_path)
    name = path / "loss" / "c" / "1"
    name.write_bytes(name.read_bytes()[:7])
    with pytest.warns(RuntimeWarning, match=r"p'.*chunk 1 .*'loss' values cannot be read"):
        r = _plane(f, path)
    assert np.array_equal(r.losses, fresh.losses)


def test_a_tampered_record_is_refused(tmp_path):
    f, path, _ = _stored(tmp_path)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["probecore"]["identity"]["chunk_size"] = 5
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="fails its checksum"):
        _plane(f, path)
    with pytest.raises(ValueError, match="fails its checksum"):
        pc.load_run(path)
    (path / "zarr.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged: its zarr.json cannot be read"):
        _plane(f, path)
    with pytest.raises(ValueError, match="not a readable probecore run"):
        pc.load_run(path)


def test_partial_files_of_a_killed_write_are_removed_on_resume(tmp_path):
    f, path, _ = _stored(tmp_path)
    leftover = path / "loss" / "c" / "3.0123abcd.partial"
    leftover.write_bytes(b"half a chunk")
    _plane(f, path)
    assert not leftover.exists()


# --------------------------------------------------------------------------- attacks


def _flip(name: str, rng: np.random.Generator) -> None:
    with open(name, "rb") as fh:
        data = bytearray(fh.read())
    if data:
        i = int(rng.integers(len(data)))
        data[i] ^= 1 << int(rng.integers(8))
        with open(name, "wb") as fh:
            fh.write(bytes(data))


def _hold(path):
    """The store's writer lock, held as a running writer holds it."""
    import filelock

    lock = filelock.FileLock(os.path.join(path, ".probecore.lock"), timeout=0)
    lock.acquire()
    return lock


def _attack(kind: str, path, rng: np.random.Generator):
    """Damage or misuse the store at ``path``; the objective to resume with."""
    chunks = [n for n in _files(path) if f"{os.sep}c{os.sep}" in n]
    if kind == "other data":
        return _logreg(seed=int(rng.integers(1, 100)))
    if kind == "other dtype":
        return _logreg(dtype=np.float32)
    if kind == "other function":  # same data, another regularization: another loss
        base = _logreg()
        return LogisticRegression(base.features, base.labels, n_classes=3, l2=2e-3, x0=base.x0)
    if kind == "delete":
        os.remove(chunks[int(rng.integers(len(chunks)))])
    elif kind == "truncate":
        name = chunks[int(rng.integers(len(chunks)))]
        with open(name, "rb") as fh:
            data = fh.read()
        with open(name, "wb") as fh:
            fh.write(data[: int(rng.integers(len(data)))])
    elif kind == "flip":
        for _ in range(int(rng.integers(1, 4))):
            files = _files(path)
            _flip(files[int(rng.integers(len(files)))], rng)
    elif kind == "flip chunk":
        _flip(chunks[int(rng.integers(len(chunks)))], rng)
    elif kind == "partial":
        with open(chunks[0] + ".ab12.partial", "wb") as fh:
            fh.write(b"x")
    return _logreg()


ATTACKS = [
    "other data",
    "other dtype",
    "other function",
    "concurrent writer",
    "delete",
    "truncate",
    "flip",
    "flip chunk",
    "partial",
]


@pytest.mark.parametrize("seed", range(90))
def test_a_store_attack_never_yields_a_wrong_value(tmp_path, seed):
    """90 seeded attacks, 10 of each kind: each resumes exactly or is refused by name."""
    rng = np.random.default_rng(seed)
    kind = ATTACKS[seed % len(ATTACKS)]
    f = _logreg()
    fresh = _plane(f)
    path = tmp_path / "p"
    _plane(f, path)
    obj = _attack(kind, path, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # damaged chunks are warned about
        try:
            loaded = pc.load_run(path)
        except ValueError as exc:
            assert str(path) in str(exc)
        else:
            done = loaded.computed
            assert np.array_equal(loaded.losses[done], fresh.losses[done])
        holder = None
        if kind == "concurrent writer":  # another run holds the store while we resume
            holder = _hold(path)
        try:
            r = _plane(obj, path)
        except ValueError as exc:
            assert str(path) in str(exc), exc
            return
        finally:
            if holder is not None:
                holder.release()
    assert obj.fingerprint() == f.fingerprint(), kind  # resumed only with its own objective
    assert r.complete and np.array_equal(r.losses, fresh.losses), kind


_RACER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import probecore as pc
    from probecore.analytic import LogisticRegression

    seed = int(sys.argv[2])
    rng = np.random.default_rng(seed)
    F, y = rng.standard_normal((60, 4)), rng.integers(0, 3, 60)
    f = LogisticRegression(F, y, n_classes=3, x0=np.random.default_rng(99).standard_normal(15))
    D = pc.random_directions(f, k=2, rng=0)
    grid = dict(alphas=np.linspace(-1, 1, 15), betas=np.linspace(-1, 1, 15), chunk_size=1)
    fresh = pc.plane(f, D, **grid)
    try:
        r = pc.plane(f, D, store=sys.argv[1], **grid)
    except ValueError as exc:
        print("refused", exc)
    else:
        assert np.array_equal(r.losses, fresh.losses)
        print("wrote", seed)
    """
)


def test_two_processes_on_one_new_store_never_mix(tmp_path):
    """Two writers with different data start together on one new store, five times."""
    script = tmp_path / "race.py"
    script.write_text(_RACER)
    for trial in range(5):
        path = tmp_path / f"p{trial}"
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), str(path), str(seed)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for seed in (0, 1)
        ]
        outs = [p.communicate() for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        wrote = [o.split()[1] for o, _ in outs if o.startswith("wrote")]
        refused = [o for o, _ in outs if o.startswith("refused")]
        assert len(wrote) == 1 and len(refused) == 1, outs
        assert "being written by another run" in refused[0] or "another objective" in refused[0]
        back = pc.load_run(path)
        winner = _logreg(seed=int(wrote[0]))
        D = pc.random_directions(winner, k=2, rng=0)
        grid = np.linspace(-1, 1, 15)
        want = pc.plane(winner, D, alphas=grid, betas=grid, chunk_size=1)
        assert back.complete and np.array_equal(back.losses, want.losses)
