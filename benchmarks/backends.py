"""The PyTorch backend measured: overhead, HVP cost, peers (PyHessian, curvlinops), scale.

Run by hand:  python benchmarks/backends.py [--quick] [--parts 1,2,3]
(prints Markdown tables for docs/benchmarks.md; about 10 minutes on 2 CPU cores, --quick
about 4). Unless OMP_WAIT_POLICY is set, the script restarts itself with
OMP_WAIT_POLICY=PASSIVE: on a shared machine torch's spinning OpenMP threads made HVPs
5-7x slower and the timings erratic. Needs torch, scikit-learn and probecore-torch; the
peers are optional:

    pip install --no-deps pyhessian curvlinops-for-pytorch einops einconv tqdm \
        linear_operator backpack-for-pytorch

Parts:

1. Digits CNN (float32, whole training set in one batch): one loss, one gradient and one
   HVP through ``probecore.objective`` versus the same computation written in torch, for
   every direct HVP route. Each comparison (loss, gradient, cached HVP, cold HVP, batched
   HVPs) is its own group of routes, interleaved round by round with the order rotated;
   ratios are medians of per-round ratios with 95% confidence intervals, so that load
   from other processes cancels; read the ratios, not the seconds.
2. Peers on the same model and data. HVPs to reach λmax within 1e-8 (float64):
   probecore's Lanczos versus ARPACK ``eigsh`` on curvlinops' ``HessianLinearOperator``,
   each at a ladder of tolerances, the cheapest run that meets the target counting (as
   in benchmarks/spectrum.py). Runs with one start seed repeat the same Krylov sequence,
   so each ladder runs behind a memo of the products already computed: every count is
   what a single run requests (the method's own ``n_matvecs`` or a counting operator),
   only the wall time of the ladder shrinks. Then wall time and error of λmax against
   PyHessian's default ``eigenvalues()`` (float32), and the time of one HVP in each.
   Then the same race in float32 and float64, on the briefly trained CNN and on the same
   CNN trained to a minimum; in float64 also the mixed-precision route (Lanczos on the
   float32 objective, then float64 Lanczos from its eigenvector).
3. A ResNet-18 (11.2 M parameters, CIFAR-sized input, batch 8, float32, eval mode):
   ``lanczos(k=1, tol=1e-3, verify=False, ncv=10, max_ncv=10)``; time, HVPs and peak
   resident memory (VmHWM), measured in a child process so that parts 1 and 2 do not count.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import scipy
import scipy.stats
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

import probecore as pc

TARGET = 1e-8  # relative λmax error for the HVP counts (float64)
TOLS = [10.0**-e for e in np.arange(1, 12.5, 0.5)]
K_VMAP = 8  # vectors per batched HVP
TRAIN_STEPS = 50
TRAIN_STEPS_MIN = 400  # the same CNN trained to a minimum (training loss about 1e-3)

warnings.filterwarnings("ignore", message=".*create_graph=True.*reference cycle.*")


# --------------------------------------------------------------------------- helpers


class Timings(dict):
    """Median seconds per call of each route; ``raw`` keeps the per-round samples."""

    raw: dict


def bench(routes, rounds, per_call=None):
    """Median seconds per call of each route; routes interleaved, order rotated per round."""
    per_call = per_call or {}
    names = list(routes)
    times = {n: [] for n in names}
    for n in names:  # warm-up
        routes[n]()
    for r in range(rounds):
        shift = r % len(names)
        for n in names[shift:] + names[:shift]:
            gc.collect()
            t = time.perf_counter()
            routes[n]()
            times[n].append((time.perf_counter() - t) / per_call.get(n, 1))
    out = Timings({n: float(np.median(v)) for n, v in times.items()})
    out.raw = times
    return out


def ratio_ci(t, a, b):
    """Median over rounds of the ratio time(a) / time(b) within one round, with a 95%
    distribution-free confidence interval (order statistics of the binomial).

    Ratios of routes timed seconds apart cancel the slow drift of this machine's speed,
    which moves medians taken over the whole run by 10-25%.
    """
    r = np.sort(np.asarray(t.raw[a]) / np.asarray(t.raw[b]))
    n = len(r)
    k = int(scipy.stats.binom.ppf(0.025, n, 0.5))
    lo, hi = (r[k - 1], r[n - k]) if k >= 1 else (r[0], r[-1])
    return float(np.median(r)), float(lo), float(hi)


def verdict(ci, target=1.10):
    med, lo, hi = ci
    word = "met" if med <= target else "NOT met"
    return f"{med:.2f} (95% CI {lo:.2f}–{hi:.2f}) | {100 * (med - 1):+.0f}% | {word}"


def hvp_txt(counts):
    """Median HVP count; for two-stage runs, float32 + float64 medians."""
    if isinstance(counts[0], tuple):
        a, b = np.median(np.asarray(counts), axis=0)
        return f"{a:.0f} (float32) + {b:.0f} (float64)"
    return f"{np.median(counts):.0f}"


def ms(t):
    return f"{1e3 * t:.1f}" if t < 10 else f"{t:.1f} s"


def secs(t):
    return f"{t:.2f} s"


def maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def peak_rss_mib():
    """Peak resident memory of this process: VmHWM, else ru_maxrss.

    On Linux ru_maxrss survives fork and exec, so a child started by a big parent reports
    the parent's peak; VmHWM belongs to the process's own address space.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return maxrss_mib()


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()}-core CPU ({cpu})"


def kept_double_backward(model, X, y, params, vs):
    """An HVP route that does what the objective does at a new point: build the gradient
    graph, keep it for the next product (freeing the previous one first), then backward."""
    kept = [None]

    def route():
        kept[0] = None
        gs = torch.autograd.grad(F.cross_entropy(model(X), y), params, create_graph=True)
        kept[0] = gs
        return torch.autograd.grad(gs, params, vs, retain_graph=True)

    return route


def split_like(flat, params):
    parts = torch.split(flat, [p.numel() for p in params])
    return [t.view_as(p) for t, p in zip(parts, params, strict=True)]


class Memo(LinearOperator):
    """Counts the products requested; computes each distinct input vector once."""

    def __init__(self, matvec, n, dtype):
        super().__init__(dtype=np.dtype(dtype), shape=(n, n))
        self.f, self.cache, self.count, self.computed = matvec, {}, 0, 0

    def _matvec(self, v):
        v = np.ascontiguousarray(np.asarray(v).reshape(-1), dtype=self.dtype)
        self.count += 1
        key = v.tobytes()
        if key not in self.cache:
            self.cache[key] = np.asarray(self.f(v), dtype=self.dtype).reshape(-1)
            self.computed += 1
        return self.cache[key].copy()

    def _matmat(self, V):
        return np.column_stack([self._matvec(c) for c in np.asarray(V).T])

    def _rmatvec(self, v):
        return self._matvec(v)

    def reset_count(self):
        self.count = 0


# --------------------------------------------------------------------------- digits


def digits_cnn(steps=None):
    """Small CNN, trained briefly (full-batch Adam) on the digits training split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    Xtr, _, ytr, _ = train_test_split(
        d.images.astype(np.float32) / 16.0, d.target, test_size=0.25, random_state=0
    )
    X, y = torch.tensor(Xtr)[:, None], torch.tensor(ytr)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(128, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(TRAIN_STEPS if steps is None else steps):
        opt.zero_grad()
        F.cross_entropy(model(X), y).backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    with torch.no_grad():
        out = model(X)
        info = {
            "loss": float(F.cross_entropy(out, y)),
            "accuracy": float((out.argmax(1) == y).float().mean()),
        }
    return model, X, y, info


def part1(model, X, y, rounds):
    obj = pc.objective(model, F.cross_entropy, (X, y))
    x0 = obj.x0
    x1 = x0.copy()
    x1[0] = np.nextafter(x1[0], np.inf)  # another point: forces a cold graph
    rng = np.random.default_rng(0)
    v = rng.standard_normal(obj.dim).astype(np.float32)
    V = rng.standard_normal((K_VMAP, obj.dim)).astype(np.float32)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    vs = split_like(torch.from_numpy(v), params)
    Vs = [
        t.view(K_VMAP, *p.shape)
        for t, p in zip(
            torch.split(torch.from_numpy(V), [p.numel() for p in params], dim=1),
            params,
            strict=True,
        )
    ]
    pdict = {n: p.detach() for n, p in zip(names, params, strict=True)}
    vdict = dict(zip(names, vs, strict=True))
    Vdict = dict(zip(names, Vs, strict=True))

    def f(p):
        return F.cross_entropy(functional_call(model, p, (X,)), y)

    hvp_fn = lambda vd: jvp(grad(f), (pdict,), (vd,))[1]  # noqa: E731
    hvp_vmap = vmap(hvp_fn)
    loss = F.cross_entropy(model(X), y)
    g_ret = torch.autograd.grad(loss, params, create_graph=True)
    del loss

    def direct_loss():
        with torch.no_grad():
            return float(F.cross_entropy(model(X), y))

    def direct_grad():
        gs = torch.autograd.grad(F.cross_entropy(model(X), y), params)
        return torch.cat([t.reshape(-1) for t in gs]).numpy()

    def double_backward():
        gs = torch.autograd.grad(F.cross_entropy(model(X), y), params, create_graph=True)
        return torch.autograd.grad(gs, params, vs)

    double_backward_kept = kept_double_backward(model, X, y, params, vs)

    # cold HVPs on a second objective, so that the first keeps its graph at x0
    obj_c = pc.objective(model, F.cross_entropy, (X, y))
    flip = [0]

    def obj_cold():
        flip[0] ^= 1
        return obj_c.hvp(x1 if flip[0] else x0, v)

    obj.hvp(x0, v)
    t_lg = bench(
        {
            "direct loss": direct_loss,
            "probecore loss": lambda: obj.loss(x0),
            "direct grad": direct_grad,
            "probecore grad": lambda: obj.grad(x0),
        },
        rounds,
    )
    # Like is timed with like: each comparison is its own group of interleaved routes.
    # Timed all together, a route's time depended on which heavy route ran before it
    # (obj.hvp cached measured +7% and +11% against the retained graph in two runs, while
    # it tied with PyHessian's identical route in a separate table of the same run).
    ret = "retained gradient graph (second backward only)"
    groups = [
        {
            ret: lambda: torch.autograd.grad(g_ret, params, vs, retain_graph=True),
            "probecore obj.hvp, cached point": lambda: obj.hvp(x0, v),
        },
        {
            "double backward, fresh graph": double_backward,
            "double backward, graph kept for the next product": double_backward_kept,
            "forward-over-reverse (jvp of grad of functional_call)": lambda: hvp_fn(vdict),
            "probecore obj.hvp, cold point": obj_cold,
        },
        {
            f"retained gradient graph, {K_VMAP} products in a loop": lambda: [
                torch.autograd.grad(g_ret, params, vs, retain_graph=True) for _ in range(K_VMAP)
            ],
            f"vmapped forward-over-reverse, {K_VMAP} vectors": lambda: hvp_vmap(Vdict),
            f"retained graph, batched backward (is_grads_batched), {K_VMAP} vectors": (
                lambda: torch.autograd.grad(
                    g_ret, params, Vs, retain_graph=True, is_grads_batched=True
                )
            ),
            f"probecore obj.hvp_many, cached point, {K_VMAP} vectors": lambda: obj.hvp_many(x0, V),
        },
    ]
    t_h = Timings()
    t_h.raw = {}
    for routes in groups:
        per = {n: K_VMAP for n in routes if f"{K_VMAP} " in n}
        t = bench(routes, rounds, per)
        t_h.update(t)
        t_h.raw.update(t.raw)
    # accuracy of the routes against each other
    ref = torch.cat([t.reshape(-1) for t in double_backward()]).numpy()
    err = float(np.linalg.norm(obj.hvp(x0, v) - ref) / np.linalg.norm(ref))
    return obj, t_lg, t_h, err


def print_part1(dim, n, info, t_lg, t_h, err, rounds):
    print(f"\n### 1. Digits CNN: objective versus direct torch (dim = {dim}, {n} images)\n")
    print(
        f"Model trained {TRAIN_STEPS} full-batch Adam steps (lr 1e-2): loss "
        f"{info['loss']:.3f}, training accuracy {info['accuracy']:.3f}. float32, one batch. "
        f"Median of {rounds} interleaved rounds; per-vector time for batched routes."
    )
    print("\n| computation | direct torch (ms) | probecore (ms) | probecore / direct |")
    print("|---|---|---|---|")
    for what in ("loss", "grad"):
        d, p = t_lg[f"direct {what}"], t_lg[f"probecore {what}"]
        label = "loss" if what == "loss" else "gradient"
        print(f"| one {label} | {ms(d)} | {ms(p)} | {p / d:.2f} |")
    direct = {k: t for k, t in t_h.items() if not k.startswith("probecore")}
    fastest = min(direct, key=direct.get)
    cold_direct = {
        k: direct[k]
        for k in (
            "double backward, fresh graph",
            "double backward, graph kept for the next product",
            "forward-over-reverse (jvp of grad of functional_call)",
        )
    }
    fastest_cold = min(cold_direct, key=cold_direct.get)
    many_direct = {k: t for k, t in direct.items() if f"{K_VMAP} " in k}
    fastest_many = min(many_direct, key=many_direct.get)
    print("\n| HVP route | ms per HVP | / fastest direct route | / gradient (probecore) |")
    print("|---|---|---|---|")
    for k, t in t_h.items():
        print(f"| {k} | {ms(t)} | {t / direct[fastest]:.2f} | {t / t_lg['probecore grad']:.2f} |")
    cached = t_h["probecore obj.hvp, cached point"]
    cold = t_h["probecore obj.hvp, cold point"]
    c_name, k_name = "probecore obj.hvp, cached point", "probecore obj.hvp, cold point"
    m_name = f"probecore obj.hvp_many, cached point, {K_VMAP} vectors"
    print(
        "\nRatios below are medians over rounds of the ratio of two routes timed in the "
        "same round (each comparison timed in its own group of routes), with 95% "
        "confidence intervals.\n"
    )
    print(
        "| overhead of the objective | reference route | ratio (95% CI) | overhead | target ≤ 10% |"
    )
    print("|---|---|---|---|---|")
    ret = "retained gradient graph (second backward only)"
    loop = f"retained gradient graph, {K_VMAP} products in a loop"
    kept = "double backward, graph kept for the next product"
    fresh = "double backward, fresh graph"
    rows = [
        ("obj.loss / direct loss", t_lg, "probecore loss", "direct loss"),
        ("obj.grad / direct gradient", t_lg, "probecore grad", "direct grad"),
        ("obj.hvp cached / fastest direct route (same algorithm)", t_h, c_name, ret),
        ("obj.hvp_many cached (per vector) / fastest batched route", t_h, m_name, fastest_many),
        ("obj.hvp_many cached (per vector) / same algorithm in torch", t_h, m_name, loop),
        ("obj.hvp cold / fastest single-vector cold route", t_h, k_name, fastest_cold),
        ("obj.hvp cold / double backward, fresh graph", t_h, k_name, fresh),
        ("obj.hvp cold / same algorithm in torch", t_h, k_name, kept),
    ]
    for label, t, a, ref in rows:
        print(f"| {label} | {ref} | {verdict(ratio_ci(t, a, ref))} |")
    print(
        f"\nHVP / gradient time (probecore): cached {cached / t_lg['probecore grad']:.2f}, "
        f"cold {cold / t_lg['probecore grad']:.2f}; direct torch: retained "
        f"{direct['retained gradient graph (second backward only)'] / t_lg['direct grad']:.2f}"
        f", fresh double backward "
        f"{direct['double backward, fresh graph'] / t_lg['direct grad']:.2f}. "
        f"Relative difference obj.hvp vs double backward: {err:.1e}."
    )


# --------------------------------------------------------------------------- peers


def import_peers():
    peers, why = {}, {}
    try:
        import pyhessian
        import pyhessian.hessian

        peers["pyhessian"] = pyhessian
    except Exception as exc:  # report exactly why, measure the rest
        why["pyhessian"] = f"{type(exc).__name__}: {exc}"
    try:
        import curvlinops

        peers["curvlinops"] = curvlinops
    except Exception as exc:
        why["curvlinops"] = f"{type(exc).__name__}: {exc}"
    return peers, why


def progress(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def version_of(dist):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def ladder_lanczos(op, lam, seed, verify):
    for tol in TOLS:
        r = pc.lanczos(op, k=1, tol=tol, rng=seed, verify=verify, raise_on_failure=False)
        if abs(r.eigenvalues[0] - lam) <= TARGET * abs(lam):
            return r.n_matvecs, tol
    return np.inf, None


def ladder_eigsh(memo, lam, seed):
    v0 = np.random.default_rng(seed).standard_normal(memo.shape[0])
    for tol in TOLS:
        memo.reset_count()
        theta = eigsh(memo, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
        if abs(theta[0] - lam) <= TARGET * abs(lam):
            return memo.count, tol
    return np.inf, None


def part2_counts(model, X, y, peers, seeds, rounds):
    m64 = copy.deepcopy(model).double()
    X64 = X.double()
    obj = pc.objective(m64, F.cross_entropy, (X64, y))
    n = obj.dim
    t0 = time.perf_counter()
    op = pc.HessianOperator(obj)
    v0 = np.random.default_rng(12345).standard_normal(n)
    lams, Y = eigsh(op, k=2, which="LA", tol=1e-14, ncv=40, v0=v0)
    i = int(np.argmax(lams))
    lam, lam2 = float(lams[i]), float(np.min(lams))
    res = float(np.linalg.norm(obj.hvp(obj.x0, Y[:, i]) - lam * Y[:, i]))
    progress(f"reference: {op.n_hvps + 1} HVPs")
    ref = {
        "lam": lam,
        "lam2": lam2,
        "hvps": op.n_hvps + 1,
        "time": time.perf_counter() - t0,
        "rel_res": res / lam,
        "bound": res**2 / (lam - lam2) / lam,
    }
    rows = {"probecore lanczos (verify=True, default)": [], "probecore lanczos (verify=False)": []}
    used = {"probecore": 0, "curvlinops": 0}
    H_cl = None
    if "curvlinops" in peers:
        params = [p for p in m64.parameters() if p.requires_grad]
        H_cl = (
            peers["curvlinops"]
            .HessianLinearOperator(m64, nn.CrossEntropyLoss(), params, [(X64, y)])
            .to_scipy(np.float64)
        )
        rows["ARPACK eigsh on curvlinops HessianLinearOperator"] = []
    for seed in seeds:
        memo = Memo(lambda v: obj.hvp(obj.x0, v), n, np.float64)
        rows["probecore lanczos (verify=True, default)"].append(
            ladder_lanczos(memo, lam, seed, True)
        )
        rows["probecore lanczos (verify=False)"].append(ladder_lanczos(memo, lam, seed, False))
        used["probecore"] += memo.computed
        if H_cl is not None:
            cmemo = Memo(H_cl.matvec, n, np.float64)
            rows["ARPACK eigsh on curvlinops HessianLinearOperator"].append(
                ladder_eigsh(cmemo, lam, seed)
            )
            used["curvlinops"] += cmemo.computed
        progress(f"HVP counts, seed {seed}: { {k: v[-1] for k, v in rows.items()} }")
    v = np.random.default_rng(1).standard_normal(n)
    routes = {"probecore float64 obj.hvp (cached graph)": lambda: obj.hvp(obj.x0, v)}
    if H_cl is not None:
        routes["curvlinops float64 matvec"] = lambda: H_cl.matvec(v)
    t = bench(routes, rounds)
    return ref, rows, t, used, n


def race(model, X, y, peers, lam, seeds):
    """Wall time and error of λmax from model and data, probecore against PyHessian."""
    out = {"wall": {}, "err": {}, "hvps": {}}

    def rec(name, t, value, hvps):
        out["wall"].setdefault(name, []).append(t)
        out["err"].setdefault(name, []).append(abs(value - lam) / lam)
        out["hvps"].setdefault(name, []).append(hvps)

    def clear_grads():
        for p in model.parameters():
            p.grad = None

    default_tol = "1e-8" if X.dtype == torch.float64 else "1e-4"
    methods = {
        f"probecore lanczos, defaults (tol {default_tol}, verify=True)": dict(),
        "probecore lanczos, verify=False": dict(verify=False),
        "probecore lanczos, tol=1e-4, verify=False": dict(tol=1e-4, verify=False),
        "probecore lanczos, tol=1e-3, verify=False": dict(tol=1e-3, verify=False),
    }
    for seed in seeds:
        for name, kw in methods.items():
            t0 = time.perf_counter()
            obj = pc.objective(model, F.cross_entropy, (X, y))
            r = pc.lanczos(obj, k=1, rng=seed, **kw)
            rec(name, time.perf_counter() - t0, r.eigenvalues[0], r.n_matvecs)
            del obj
        if X.dtype == torch.float64:
            # mixed precision: λmax of the same model in float32 (cheap), then float64
            # Lanczos started from that eigenvector (docs/spectrum.md)
            for tol in (1e-4, 1e-5):
                t0 = time.perf_counter()
                o32 = pc.objective(model, F.cross_entropy, (X, y), dtype="float32")
                r32 = pc.lanczos(o32, k=1, verify=False, rng=seed)
                obj = pc.objective(model, F.cross_entropy, (X, y))
                r = pc.lanczos(obj, k=1, tol=tol, verify=False, v0=r32.eigenvectors[:, 0])
                rec(
                    f"probecore mixed precision: float32 lanczos, then float64 from its "
                    f"eigenvector (tol={tol:.0e}, verify=False)",
                    time.perf_counter() - t0,
                    r.eigenvalues[0],
                    (r32.n_matvecs, r.n_matvecs),
                )
                del obj, o32
        t0 = time.perf_counter()
        obj = pc.objective(model, F.cross_entropy, (X, y))
        r = pc.power_iteration(obj, tol=1e-3, residual_tol=None, rng=seed)
        rec(
            "probecore power_iteration, tol=1e-3, residual_tol=None (PyHessian's rule)",
            time.perf_counter() - t0,
            r.eigenvalue,
            r.n_matvecs,
        )
        del obj
        if "pyhessian" in peers:
            mod = sys.modules["pyhessian.hessian"]
            count = [0]
            orig = mod.hessian_vector_product

            def counted(*a, _orig=orig, _count=count):
                _count[0] += 1
                return _orig(*a)

            mod.hessian_vector_product = counted
            H = None
            try:
                clear_grads()
                torch.manual_seed(seed)
                t0 = time.perf_counter()
                H = mod.hessian(model, nn.CrossEntropyLoss(), data=(X, y), cuda=False)
                ev, _ = H.eigenvalues()
                rec(
                    "PyHessian hessian(...).eigenvalues() (power iteration, tol 1e-3)",
                    time.perf_counter() - t0,
                    ev[0],
                    count[0],
                )
            finally:
                mod.hessian_vector_product = orig
                del H
                clear_grads()
    return out


def part2_pyhessian(model, X, y, peers, lam, seeds, rounds):
    """Wall time and error of λmax (float32), and per-HVP time, against PyHessian."""
    out = race(model, X, y, peers, lam, seeds)

    def clear_grads():
        for p in model.parameters():
            p.grad = None

    # one HVP each, float32
    obj = pc.objective(model, F.cross_entropy, (X, y))
    v = np.random.default_rng(2).standard_normal(obj.dim).astype(np.float32)
    obj.hvp(obj.x0, v)
    params = [p for p in model.parameters() if p.requires_grad]
    vs = split_like(torch.from_numpy(v), params)
    routes = {"probecore obj.hvp, cached graph": lambda: obj.hvp(obj.x0, v)}
    if "pyhessian" in peers:
        mod = sys.modules["pyhessian.hessian"]
        clear_grads()
        H = mod.hessian(model, nn.CrossEntropyLoss(), data=(X, y), cuda=False)
        clear_grads()
        Hd = mod.hessian(model, nn.CrossEntropyLoss(), dataloader=[(X, y)], cuda=False)
        hvp_py = peers["pyhessian"].utils.hessian_vector_product
        routes["PyHessian hessian_vector_product (retained graph, as in eigenvalues())"] = lambda: (
            hvp_py(H.gradsH, H.params, vs)
        )
        routes["PyHessian dataloader_hv_product (fresh graph per product)"] = lambda: (
            Hd.dataloader_hv_product(vs)
        )
    if "curvlinops" in peers:
        H_cl = (
            peers["curvlinops"]
            .HessianLinearOperator(model, nn.CrossEntropyLoss(), params, [(X, y)])
            .to_scipy(np.float32)
        )
        routes["curvlinops HessianLinearOperator matvec (fresh forward-over-reverse)"] = lambda: (
            H_cl.matvec(v)
        )
    out["hvp"] = bench(routes, rounds)
    clear_grads()
    return out


def reference_lam(model, X, y):
    """λmax of a model's Hessian in float64, to a residual of 1e-12 relative."""
    m64 = copy.deepcopy(model).double()
    r = pc.lanczos(pc.objective(m64, F.cross_entropy, (X.double(), y)), k=2, tol=1e-12, rng=0)
    return m64, float(r.eigenvalues[0]), float(r.eigenvalues[1])


def part2_races(model, X, y, peers, seeds):
    """λmax races in float32 and float64 on the briefly trained and the converged CNN."""
    model_min = digits_cnn(TRAIN_STEPS_MIN)[0]
    out = {}
    for label, m in (("briefly trained", model), ("trained to a minimum", model_min)):
        m64, lam, lam2 = reference_lam(m, X, y)
        for dtype, mm, XX in (("float32", m, X), ("float64", m64, X.double())):
            progress(f"part 2: race, {label}, {dtype}")
            out[(label, dtype)] = dict(
                lam=lam, ratio=lam2 / lam, **race(mm, XX, y, peers, lam, seeds)
            )
    return out


def print_races(races, seeds):
    print(
        "\nλmax from model and data to eigenvalue, in both precisions, on the CNN above "
        f"({TRAIN_STEPS} Adam steps) and on the same CNN trained {TRAIN_STEPS_MIN} steps to a "
        f"minimum; wall time includes building the objective (or PyHessian's object); "
        f"median over seeds {list(seeds)}; errors against the float64 λmax:\n"
    )
    print(
        "| model | dtype | method | wall time | HVPs | relative error (median) | "
        "relative error (max) | time / PyHessian |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (label, dtype), o in races.items():
        pyname = next((k for k in o["wall"] if k.startswith("PyHessian")), None)
        base = float(np.median(o["wall"][pyname])) if pyname else np.nan
        for name, ts in o["wall"].items():
            t = float(np.median(ts))
            e = o["err"][name]
            print(
                f"| {label} (λ1 = {o['lam']:.4g}, λ2/λ1 = {o['ratio']:.2f}) | {dtype} | {name} "
                f"| {secs(t)} | {hvp_txt(o['hvps'][name])} | {np.median(e):.1e} | "
                f"{np.max(e):.1e} | {t / base:.2f} |"
            )


def print_part2(ref, rows, t64, used, n, py, why, seeds, wall_seeds):
    print("\n### 2. Peers on the digits CNN\n")
    for name, reason in why.items():
        print(f"- **{name} not measured**: import failed with `{reason}`.")
    print(
        f"Reference (float64): λmax = {ref['lam']:.12g}, λ2 = {ref['lam2']:.6g} "
        f"(λ2/λ1 = {ref['lam2'] / ref['lam']:.2f}), from `eigsh(k=2, tol=1e-14, ncv=40)` on "
        f"`pc.HessianOperator` ({ref['hvps']} HVPs, {ref['time']:.0f} s); "
        f"‖Hy − λy‖/λ = {ref['rel_res']:.1e}, so its error is below "
        f"{max(ref['bound'], 1e-16):.0e} relative. A dense Hessian (dim {n}, {n} HVPs at "
        f"{ms(t64['probecore float64 obj.hvp (cached graph)'])} ms each) was not needed.\n"
    )
    print(
        f"HVPs to reach λmax within {TARGET:.0e} relative (float64; median over start "
        f"seeds {list(seeds)}; each count includes every product the run requested):\n"
    )
    print(
        "| method | HVPs (median) | per seed | tol that sufficed | est. time (HVPs × "
        "per-HVP time) |"
    )
    print("|---|---|---|---|---|")
    hv = {
        "probecore": t64["probecore float64 obj.hvp (cached graph)"],
        "ARPACK": t64.get("curvlinops float64 matvec", np.nan),
    }
    for name, res in rows.items():
        counts = [c for c, _ in res]
        tols = [t for _, t in res]
        per = hv["ARPACK"] if name.startswith("ARPACK") else hv["probecore"]
        med = float(np.median(counts))
        tol_txt = ", ".join("–" if t is None else f"{t:.0e}" for t in tols)
        print(
            f"| {name} | {med:.0f} | {', '.join(f'{c:.0f}' for c in counts)} | {tol_txt} "
            f"| {med * per:.1f} s |"
        )
    print(
        "\nOne float64 HVP: probecore (cached graph) "
        f"{ms(t64['probecore float64 obj.hvp (cached graph)'])} ms"
        + (
            f", curvlinops {ms(t64['curvlinops float64 matvec'])} ms"
            if "curvlinops float64 matvec" in t64
            else ""
        )
        + f" (distinct products actually computed behind the memo: {used})."
    )
    print(
        "\nλmax wall time and error, float32 model, from model and data to eigenvalue "
        f"(objective or PyHessian object built inside the timing); median over seeds "
        f"{list(wall_seeds)} (errors against the float64 λmax):\n"
    )
    print(
        "| method | wall time | HVPs | relative error (median) | relative error (max) "
        "| time / PyHessian |"
    )
    print("|---|---|---|---|---|---|")
    pyname = next((k for k in py["wall"] if k.startswith("PyHessian")), None)
    base = float(np.median(py["wall"][pyname])) if pyname else np.nan
    for name, ts in py["wall"].items():
        t = float(np.median(ts))
        e = py["err"][name]
        print(
            f"| {name} | {secs(t)} | {hvp_txt(py['hvps'][name])} | "
            f"{np.median(e):.1e} | {np.max(e):.1e} | {t / base:.2f} |"
        )
    print("\nOne HVP, float32 (ratio: median over rounds of the per-round ratio, 95% CI):\n")
    print("| route | ms per HVP | / probecore cached (95% CI) |")
    print("|---|---|---|")
    b = "probecore obj.hvp, cached graph"
    for name, t in py["hvp"].items():
        med, lo, hi = ratio_ci(py["hvp"], name, b)
        print(f"| {name} | {ms(t)} | {med:.3f} ({lo:.3f}–{hi:.3f}) |")


# --------------------------------------------------------------------------- resnet


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet18(nn.Module):
    """ResNet-18 for 3x32x32 inputs: 3x3 stem, BasicBlocks [2, 2, 2, 2], 64–512 channels."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet_child(quick):
    """Runs in its own process; prints one JSON line."""
    rounds = 2 if quick else 15
    torch.manual_seed(0)
    model = ResNet18().eval()
    X = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    out = {"rss_start": peak_rss_mib()}
    obj = pc.objective(model, F.cross_entropy, (X, y))  # retain_graph=True is the default
    n = obj.dim
    obj.hvp(obj.x0, np.ones(n, np.float32))  # builds the retained graph at x0
    out.update(dim=n, rss_objective=peak_rss_mib())
    inside = [0.0]
    hvp = obj.hvp

    def timed_hvp(x, v):  # time spent inside the HVPs during the Lanczos run
        t = time.perf_counter()
        try:
            return hvp(x, v)
        finally:
            inside[0] += time.perf_counter() - t

    obj.hvp = timed_hvp
    ncv = 10
    t0 = time.perf_counter()
    r = pc.lanczos(
        obj, k=1, tol=1e-3, verify=False, ncv=ncv, max_ncv=ncv, rng=0, raise_on_failure=False
    )
    del obj.hvp
    out.update(
        time=time.perf_counter() - t0,
        time_in_hvps=inside[0],
        hvps=r.n_matvecs,
        restarts=r.n_restarts,
        converged=r.converged,
        lam=float(r.eigenvalues[0]),
        rel_res=float(r.residual_norms[0] / abs(r.eigenvalues[0])),
        rss_lanczos=peak_rss_mib(),
        basis_mib=(ncv + 1) * n * 4 / 2**20,
        dense_tib=float(n) ** 2 * 4 / 2**40,
    )
    # per-HVP cost at this scale: objective versus the direct routes
    x0 = obj.x0
    x1 = x0.copy()
    x1[0] = np.nextafter(x1[0], np.inf)
    v = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    params = [p for p in model.parameters() if p.requires_grad]
    vs = split_like(torch.from_numpy(v), params)
    g_ret = torch.autograd.grad(F.cross_entropy(model(X), y), params, create_graph=True)

    def double_backward():
        gs = torch.autograd.grad(F.cross_entropy(model(X), y), params, create_graph=True)
        return torch.autograd.grad(gs, params, vs)

    double_backward_kept = kept_double_backward(model, X, y, params, vs)

    obj_c = pc.objective(model, F.cross_entropy, (X, y))  # cold HVPs: its own graph cache
    flip = [0]

    def obj_cold():
        flip[0] ^= 1
        return obj_c.hvp(x1 if flip[0] else x0, v)

    obj.hvp(x0, v)
    out["hvp"] = bench(
        {
            "retained gradient graph (second backward only)": lambda: torch.autograd.grad(
                g_ret, params, vs, retain_graph=True
            ),
            "probecore obj.hvp, cached point": lambda: obj.hvp(x0, v),
            "double backward, fresh graph": double_backward,
            "double backward, graph kept for the next product": double_backward_kept,
            "probecore obj.hvp, cold point": obj_cold,
            "direct gradient": lambda: torch.autograd.grad(F.cross_entropy(model(X), y), params),
        },
        rounds,
    )
    out["hvp_raw"] = out["hvp"].raw
    out["rss_end"] = peak_rss_mib()
    out["ru_maxrss_end"] = maxrss_mib()
    print(json.dumps(out))


def part3(quick):
    cmd = [sys.executable, os.path.abspath(__file__), "--resnet-child"] + (
        ["--quick"] if quick else []
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(
            f"\n### 3. ResNet-18\n\nFailed (exit {proc.returncode}):\n\n```\n"
            f"{proc.stderr[-3000:]}\n```"
        )
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_part3(o):
    print(f"\n### 3. ResNet-18 (dim = {o['dim']:,}), batch of 8 random 3×32×32 images\n")
    print(
        "float32, eval mode (BatchNorm running statistics), random initialisation, "
        "`retain_graph=True`; "
        "`lanczos(obj, k=1, tol=1e-3, verify=False, ncv=10, max_ncv=10, rng=0)`:\n"
    )
    print(
        "| λmax | ‖Hy − λy‖/λ | converged | HVPs | restarts | wall time | time inside "
        "HVPs | rest (Lanczos's own work) | peak RSS before / after Lanczos |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rest = o["time"] - o["time_in_hvps"]
    print(
        f"| {o['lam']:.4g} | {o['rel_res']:.1e} | {o['converged']} | {o['hvps']} | "
        f"{o['restarts']} | {secs(o['time'])} | {secs(o['time_in_hvps'])} "
        f"({secs(o['time_in_hvps'] / o['hvps'])} per HVP) | {secs(rest)} "
        f"({secs(rest / o['hvps'])} per step) | "
        f"{o['rss_objective']:.0f} MiB / {o['rss_lanczos']:.0f} MiB |"
    )
    print(
        f"\nThe Lanczos basis is (ncv + 1)·dim float32 = {o['basis_mib']:.0f} MiB; the "
        f"peak resident memory (VmHWM) grew by {o['rss_lanczos'] - o['rss_objective']:.0f} "
        f"MiB during the run (model and data: {o['rss_start']:.0f} MiB; with the objective "
        f"and its retained graph: {o['rss_objective']:.0f} MiB). A dim×dim float32 array "
        f"would need {o['dense_tib']:.0f} TiB: none was formed."
    )
    print("\n| one product at dim 11 M | ms | / retained graph (direct) | / direct gradient |")
    print("|---|---|---|---|")
    base = o["hvp"]["retained gradient graph (second backward only)"]
    gr = o["hvp"]["direct gradient"]
    for name, t in o["hvp"].items():
        print(f"| {name} | {ms(t)} | {t / base:.2f} | {t / gr:.2f} |")
    print(
        "\n| overhead of the objective at dim 11 M (median of per-round ratios) | "
        "ratio (95% CI) | overhead | target ≤ 10% |"
    )
    print("|---|---|---|---|")
    t = Timings(o["hvp"])
    t.raw = o["hvp_raw"]
    for label, a, ref in (
        (
            "obj.hvp cached / retained gradient graph (fastest direct route measured)",
            "probecore obj.hvp, cached point",
            "retained gradient graph (second backward only)",
        ),
        (
            "obj.hvp cold / double backward, fresh graph",
            "probecore obj.hvp, cold point",
            "double backward, fresh graph",
        ),
        (
            "obj.hvp cold / double backward, graph kept (same algorithm in torch)",
            "probecore obj.hvp, cold point",
            "double backward, graph kept for the next product",
        ),
    ):
        print(f"| {label} | {verdict(ratio_ci(t, a, ref))} |")


# --------------------------------------------------------------------------- main


def main():
    if "OMP_WAIT_POLICY" not in os.environ:
        # torch's OpenMP threads spin while they wait; with other processes on the cores
        # that made one ResNet-18 HVP 5-7x slower and timings erratic (docs/benchmarks.md).
        # The variable is read when torch loads, so start again with it set.
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and seeds")
    ap.add_argument(
        "--parts",
        default="1,2,3",
        help="comma-separated parts to run: 1 objective vs torch, 2 peers, 3 ResNet-18",
    )
    ap.add_argument("--resnet-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    parts = {p.strip() for p in args.parts.split(",")}
    if args.resnet_child:
        resnet_child(args.quick)
        return
    quick = args.quick
    rounds = 3 if quick else 21
    seeds = [0] if quick else [0, 1, 2]
    wall_seeds = [0, 1] if quick else [0, 1, 2, 3, 4]
    start = time.perf_counter()
    load = os.getloadavg()
    peers, why = import_peers()
    print("## Backends (benchmarks/backends.py)\n")
    print(
        f"Measured {datetime.date.today().isoformat()} on {machine()}, "
        f"{torch.get_num_threads()} torch threads, load average {load[0]:.1f} at start; "
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy "
        f"{np.__version__}, scipy {scipy.__version__}, probecore {pc.__version__}, "
        f"PyHessian {version_of('pyhessian')}, curvlinops "
        f"{version_of('curvlinops-for-pytorch')}, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY')}. Command: "
        f"`python benchmarks/backends.py{' --quick' if quick else ''}`."
    )
    progress("training the digits CNN")
    model, X, y, info = digits_cnn()
    if "1" in parts:
        progress("part 1")
        obj, t_lg, t_h, err = part1(model, X, y, rounds)
        print_part1(obj.dim, len(y), info, t_lg, t_h, err, rounds)
        del obj
        gc.collect()
    if "2" in parts:
        progress("part 2: reference λmax and HVP counts (float64)")
        ref, rows, t64, used, n = part2_counts(model, X, y, peers, seeds, max(rounds // 3, 2))
        progress("part 2: PyHessian and per-HVP times (float32)")
        py = part2_pyhessian(model, X, y, peers, ref["lam"], wall_seeds, rounds)
        print_part2(ref, rows, t64, used, n, py, why, seeds, wall_seeds)
        races = part2_races(model, X, y, peers, wall_seeds)
        print_races(races, wall_seeds)
    if "3" in parts:
        progress("part 3: ResNet-18 (child process)")
        o = part3(quick)
        if o is not None:
            print_part3(o)
    print(f"\n(total run time {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
