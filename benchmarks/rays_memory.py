"""Peak memory of ``probecore.rays`` on a 4M-parameter model, against the chunk size.

Run by hand:  python benchmarks/rays_memory.py [--quick] [--chunks 1,8,64,256]
(prints a Markdown table for docs/benchmarks.md; about 11 minutes on 2 busy CPU cores,
most of it in the "before" runs; --quick, chunks 1 and 64, about 4). Needs torch,
scikit-learn and probecore-torch; Linux (it reads /proc).

The model is a tanh MLP 64-2000-2000-10 (4,152,010 parameters, float32) on the first
``N_EXAMPLES`` scikit-learn digits in one batch, so that its activations (2 MB per hidden
layer) are small next to one copy of its parameters (16.6 MB). Each measurement runs in a
fresh child process (``--child``): it builds the model and the objective, evaluates one
loss (which makes the objective's private evaluation copy of the model), imports what
``rays`` imports on its first call, then resets the peak resident memory
(``/proc/self/clear_refs``, so that VmHWM restarts from the current VmRSS) and runs
``probecore.rays(obj, n_rays=max(64, chunk), chunk_size=chunk, rng=0)``. The growth is
VmHWM after the run minus VmRSS before it, in copies of the parameter vector
(``dim × 4`` bytes) and in float64 copies (``dim × 8``). The same child also reports the
growth during one loss evaluation alone (the forward pass's activations).

Routes: "after" is the current implementation, run twice: with glibc's malloc as it comes,
and with ``MALLOC_MMAP_THRESHOLD_`` fixed at 1 MiB, which keeps glibc from raising its
mmap threshold after the first large free (blocks below the threshold are served from the
heap, and freed ones stay resident), so that the second run shows what the algorithm
holds. "before" runs the chunk task of the previous implementation (copied below as
``_before_ray_chunk``: all ``n`` directions of a chunk drawn as an ``(n, dim)`` float64
array, cast, and evaluated by one ``losses_in_span`` call with ``2n`` coefficient rows).
All runs must give bitwise the same curvatures; the table checks. "before" runs whose
expected peak (about ``8 × chunk`` parameter copies) does not fit in half the available
memory are not run.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

N_EXAMPLES = 256
HIDDEN = (2000, 2000)
DIM = 64 * 2000 + 2000 + 2000 * 2000 + 2000 + 2000 * 10 + 10  # 4,152,010
MMAP_THRESHOLD = 1 << 20  # MALLOC_MMAP_THRESHOLD_ of the "mmap ≥ 1 MiB" runs


# --------------------------------------------------------------------------- the old code


def _before_ray_directions(seed, indices, dim):
    """``ray_directions`` as it was: the whole block drawn, then divided by its norms."""
    idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
    D = np.empty((idx.size, int(dim)))
    for row, i in enumerate(idx):
        gen = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(i),)))
        D[row] = gen.standard_normal(int(dim))
    return D / np.linalg.norm(D, axis=1, keepdims=True)


def _before_rays(obj, x, n_rays, chunk, seed):
    """κ of ``rays(obj, x=x, n_rays, chunk_size=chunk, rng=seed)`` computed as it was.

    Each chunk's directions drawn as one block and evaluated in one ``losses_in_span``
    call with ``2·chunk`` coefficient rows (the old chunk task), through public API only.
    """
    import probecore as pc

    eps = pc.default_ray_eps(x.dtype)
    zero = np.zeros((1, x.size), dtype=x.dtype)
    loss0 = float(obj.losses_in_span(x, zero, np.zeros((1, 1)))[0])
    kappa = np.empty(n_rays)
    for start in range(0, n_rays, chunk):
        n = min(chunk, n_rays - start)
        D = _before_ray_directions(seed, np.arange(start, start + n), x.size)
        coeffs = np.concatenate([eps * np.eye(n), -eps * np.eye(n)])
        losses = np.asarray(obj.losses_in_span(x, D.astype(x.dtype), coeffs), dtype=np.float64)
        kappa[start : start + n] = (losses[:n] - 2 * loss0 + losses[n:]) / eps**2
    return kappa


# --------------------------------------------------------------------------- the child


def _status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak():
    """Restart VmHWM from the current VmRSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def build_objective():
    """The float32 MLP 64-2000-2000-10 on the first N_EXAMPLES digits, and its objective."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from torch import nn

    import probecore as pc

    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X[:N_EXAMPLES] / 16.0, dtype=torch.float32)
    y = torch.tensor(y[:N_EXAMPLES])
    layers, width = [], 64
    for h in HIDDEN:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    model = nn.Sequential(*layers, nn.Linear(width, 10)).eval()
    return pc.objective(model, F.cross_entropy, (X, y))


def child(impl, chunk, n_rays):
    from scipy import stats  # noqa: F401  (rays imports it on its first call)

    import probecore as pc

    obj = build_objective()
    x0 = obj.x0
    obj.loss(x0)  # the objective's evaluation copy of the model is made here
    rss0 = _status_kib("VmRSS:")
    reset = _reset_peak()
    obj.loss(x0)
    loss_growth = _status_kib("VmHWM:") - rss0 if reset else None
    rss1 = _status_kib("VmRSS:") if reset else _status_kib("VmHWM:")  # else: a lower bound
    _reset_peak()
    t = time.perf_counter()
    if impl == "before":
        kappa = _before_rays(obj, x0, n_rays, chunk, 0)
    else:
        kappa = pc.rays(obj, n_rays=n_rays, chunk_size=chunk, rng=0, progress=False).kappa
    wall = time.perf_counter() - t
    growth = _status_kib("VmHWM:") - rss1
    print(
        json.dumps(
            {
                "impl": impl,
                "chunk": chunk,
                "n_rays": n_rays,
                "dim": obj.dim,
                "itemsize": int(np.dtype(obj.dtype).itemsize),
                "growth_kib": growth,
                "loss_growth_kib": loss_growth,
                "reset": reset,
                "wall": wall,
                "kappa": kappa.tolist(),
                "kappa_sha": hashlib.sha256(kappa[:64].tobytes()).hexdigest()[:12],
                "mean": float(np.mean(kappa)),
            }
        )
    )


# --------------------------------------------------------------------------- the parent


def machine():
    """The machine description of benchmarks/backends.py, with the memory size."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from backends import machine as describe

    return f"{describe()}, {_meminfo_kib('MemTotal:') / 2**20:.0f} GiB"


def _meminfo_kib(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def run_child(impl, chunk, n_rays, mmap_threshold=None):
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        impl,
        "--chunks",
        str(chunk),
        "--n-rays",
        str(n_rays),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} chunk {chunk} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["malloc"] = "default" if mmap_threshold is None else f"mmap ≥ {mmap_threshold >> 20} MiB"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="chunks 1 and 64 only")
    ap.add_argument("--chunks", default=None, help="comma-separated chunk sizes")
    ap.add_argument("--n-rays", type=int, default=None, help="rays per run (max(64, chunk))")
    ap.add_argument("--after-only", action="store_true", help="skip the 'before' routes")
    ap.add_argument("--child", choices=("before", "after"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    default = "1,64" if args.quick else "1,8,64,256"
    chunks = [int(c) for c in (args.chunks or default).split(",")]
    if args.child:
        child(args.child, chunks[0], args.n_rays or max(64, chunks[0]))
        return
    import torch

    import probecore as pc

    start = time.perf_counter()
    load = os.getloadavg()
    avail_kib = _meminfo_kib("MemAvailable:")
    routes = (("after", None), ("after", MMAP_THRESHOLD), ("before", None))
    if args.after_only:
        routes = routes[:2]
    rows, skipped = [], []
    for chunk in chunks:
        n_rays = args.n_rays or max(64, chunk)
        for impl, threshold in routes:
            need_kib = 8 * chunk * DIM * 4 / 1024  # before: about 8 copies per ray of a chunk
            if impl == "before" and need_kib > avail_kib / 2:
                skipped.append((chunk, n_rays, need_kib))
                continue
            o = run_child(impl, chunk, n_rays, threshold)
            rows.append(o)
            print(
                f"[{datetime.datetime.now():%H:%M:%S}] {impl} ({o['malloc']}) chunk {chunk}: "
                f"{o['growth_kib'] / 1024:.0f} MiB in {o['wall']:.1f} s",
                file=sys.stderr,
            )
    dim, itemsize = rows[0]["dim"], rows[0]["itemsize"]
    copy_kib = dim * itemsize / 1024
    print("## Rays: peak memory against the chunk size (`benchmarks/rays_memory.py`)\n")
    print(
        f"Measured {datetime.date.today().isoformat()} on {machine()}, "
        f"{torch.get_num_threads()} torch threads, load average {load[0]:.1f} at start; "
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy "
        f"{np.__version__}, probecore {pc.__version__}. Command: "
        f"`python benchmarks/rays_memory.py{' --quick' if args.quick else ''}"
        f"{' --after-only' if args.after_only else ''}` "
        f"({time.perf_counter() - start:.0f} s).\n"
    )
    print(
        f"Tanh MLP 64-{'-'.join(map(str, HIDDEN))}-10, dim = {dim:,} float32 "
        f"(one parameter copy = {copy_kib / 1024:.1f} MiB), the first {N_EXAMPLES} digits in "
        "one batch; `rays(obj, n_rays=max(64, chunk), chunk_size=chunk, rng=0)`, each run "
        "in a fresh process. Growth of the peak resident memory (VmHWM) over the resident "
        "memory before the call, after the objective was built and one loss evaluated.\n"
    )
    print(
        "| chunk size | rays | implementation | malloc | peak growth | parameter copies "
        "(float32) | float64 copies | wall time | κ of the first 64 rays |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    shas = {r["kappa_sha"] for r in rows}
    for o in rows:
        g = o["growth_kib"]
        print(
            f"| {o['chunk']} | {o['n_rays']} | {o['impl']} | {o['malloc']} | "
            f"{g / 1024:.0f} MiB | {g / copy_kib:.1f} | {g / (2 * copy_kib):.1f} | "
            f"{o['wall']:.1f} s | sha256 {o['kappa_sha']} |"
        )
    for chunk, n_rays, need in skipped:
        print(
            f"| {chunk} | {n_rays} | before | default | not run: about {need / 2**20:.0f} GiB "
            f"| ≈{8 * chunk} | ≈{4 * chunk} | | |"
        )
    loss = [o["loss_growth_kib"] for o in rows if o["loss_growth_kib"] is not None]
    if loss:
        print(
            f"\nOne loss evaluation alone (the forward pass's activations) grows the peak by "
            f"{np.median(loss) / 1024:.1f} MiB, {np.median(loss) / copy_kib:.2f} parameter "
            "copies (median over the runs)."
        )
    print(
        f"\nκ of the first 64 rays: {len(shas)} distinct value(s) over all runs "
        f"({'bitwise identical' if len(shas) == 1 else 'NOT identical'})."
    )


if __name__ == "__main__":
    main()
