"""Scale: a float32 ResNet-18 (11.2 M parameters) on CIFAR-shaped images, streamed.

Run by hand:  python benchmarks/scale.py [--quick] [--n-images 2000] [--device cpu]
(prints Markdown tables for docs/benchmarks.md). Needs torch, scikit-learn and
probecore-torch; Linux for the memory part (it reads /proc). Never imports torchvision.

The model is a CIFAR ResNet-18 written here (3×3 stem, BasicBlocks [2, 2, 2, 2], 64-128-
256-512 channels, BatchNorm; 11,173,962 parameters) in float32. The images are built
deterministically from scikit-learn's 1,797 digits (:func:`cifar_like`): each 8×8 digit
upsampled to 32×32, placed at an offset in a 3-channel image with a foreground and a
background colour and a little noise; 10 classes. The first ``n`` images are the same
for every ``n``. The model is trained ``--train-steps`` SGD steps (default 16), its
BatchNorm running statistics then recomputed over the data (one pass, cumulative
average), and put in eval mode: the objective is ``batchnorm="running"``, the loss as
deployed.

The data reach the objective as a ``DataLoader(batch_size=128, shuffle=False)`` with
``stream=True``: every loss, gradient and HVP reads the loader again, one batch on the
device at a time. Parts (``--parts``, all by default):

cost     loss, gradient and HVP over the whole data at the same point (alternating between
         x0 and a neighbour so that no cache applies; median of ``--rounds``): the
         HVP/gradient cost ratio.
lanczos  ``lanczos(obj, k=1, tol=--lanczos-tol, verify=False, rng=0)``: λmax.
hutchpp  ``hutchpp(obj, n_matvecs=--hutchpp-matvecs (99), rng=0)``.
slq      ``spectral_density(obj, n_probes=--slq-probes (5), n_steps=--slq-steps (60))``.
plane    ``plane`` on ``--grid``² points (21×21) of filter-normalized ``random_directions``.
rays     ``rays(obj, n_rays=--n-rays (200), rng=0)``.
memory   the plane's peak resident memory for each chunk size in ``--chunks`` (1, 8, 64),
         each in a fresh child process, as ``benchmarks/rays_memory.py`` measures rays:
         the peak (VmHWM, restarted through ``/proc/self/clear_refs``) over (a) the
         resident memory just before the call (objective built, directions drawn, one loss
         evaluated) and (b) the resident memory once the model and the data were built,
         before the objective, in parameter copies (dim × 4 bytes). Also the growth during
         one loss evaluation alone (one batch's activations). ``--memory-grid`` and
         ``--memory-n-images`` size its plane and data (memory does not depend on the
         number of images beyond one batch, nor on the number of points beyond the
         result's arrays; the chunk size is what is varied).

Every result (``EigResult``, ``TraceResult``, ``SpectralDensity``, ``Directions``,
``PlaneResult``, ``RayResult``) is saved with ``probecore.save``, read back with
``probecore.load`` and compared field by field (arrays bitwise). The timing table gives the
time per HVP and per loss evaluation per image, from which the full-size cost (2,000
images, 99 + 300 HVPs, 441 + 401 losses) is extrapolated and labelled so.

On a GPU (``--device cuda --n-images 50000``) the same script times λmax at CIFAR-10 size
(PyHessian reports about 30 s for ResNet-18 power iteration).

``--quick``: 128 images, a 5×5 plane, 16 rays, Hutch++ 12 HVPs, SLQ 1 probe of 10 steps,
a 9×9 memory plane, 4 training steps, 2 rounds (about 10 minutes on 2 busy CPU cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MMAP_THRESHOLD = 1 << 20  # MALLOC_MMAP_THRESHOLD_ of the "mmap ≥ 1 MiB" runs (rays_memory)
PARTS = ("cost", "lanczos", "hutchpp", "slq", "plane", "rays", "memory")
QUICK = {
    "n_images": 128,
    "grid": 5,
    "n_rays": 16,
    "hutchpp_matvecs": 12,
    "slq_probes": 1,
    "slq_steps": 10,
    "memory_grid": 9,
    "train_steps": 4,
    "rounds": 2,
}
DEFAULTS = {
    "n_images": 2000,
    "grid": 21,
    "n_rays": 200,
    "hutchpp_matvecs": 99,
    "slq_probes": 5,
    "slq_steps": 60,
    "memory_grid": None,  # the plane's --grid
    "train_steps": 16,
    "rounds": 3,
}


def log(msg):
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- model, data


def resnet18(classes=10):
    """The CIFAR ResNet-18: 3×3 stem, BasicBlocks [2, 2, 2, 2], 64-128-256-512, BatchNorm."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            blocks, cin = [], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
                cin = cout
            self.layers = nn.Sequential(*blocks)
            self.fc = nn.Linear(512, classes)

        def forward(self, x):
            x = self.layers(F.relu(self.bn1(self.conv1(x))))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    return ResNet18()


def cifar_like(n, seed=0):
    """``n`` CIFAR-shaped images (float32, (n, 3, 32, 32), standardized) and labels 0-9.

    Image ``i`` is digit ``i mod 1797`` of scikit-learn's set, upsampled bilinearly to
    28×28. The first 1,797 images put it white on black in the centre of a 32×32 frame;
    each later pass over the digits (``c = i // 1797``) draws, from its own seed
    ``(seed, c)``, an offset of 0-4 pixels in each axis, a foreground and a background
    colour and Gaussian noise (σ = 0.05). Values are then standardized with fixed
    constants, so the first ``n`` images are the same for every ``n``.
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    digits, labels = load_digits(return_X_y=True)
    m = len(labels)
    up = F.interpolate(
        torch.tensor(digits / 16.0, dtype=torch.float32).view(-1, 1, 8, 8),
        size=(28, 28),
        mode="bilinear",
        align_corners=False,
    )[:, 0].numpy()
    X = np.zeros((n, 3, 32, 32), dtype=np.float32)
    for c in range(math.ceil(n / m)):
        lo, hi = c * m, min((c + 1) * m, n)
        k = hi - lo
        if c == 0:
            off = np.full((k, 2), 2)
            fg, bg = np.ones((k, 3)), np.zeros((k, 3))
            noise = np.zeros((k, 3, 28, 28), dtype=np.float32)
        else:
            gen = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(c,)))
            off = gen.integers(0, 5, size=(k, 2))
            fg, bg = gen.uniform(0.4, 1.0, size=(k, 3)), gen.uniform(0.0, 0.4, size=(k, 3))
            noise = (0.05 * gen.standard_normal((k, 3, 28, 28))).astype(np.float32)
        d = up[:k]
        img = bg[:, :, None, None] + (fg - bg)[:, :, None, None] * d[:, None] + noise
        X[lo:hi] = bg[:, :, None, None]
        for j in range(k):
            oy, ox = off[j]
            X[lo + j, :, oy : oy + 28, ox : ox + 28] = img[j]
    X = (X - 0.25) / 0.35  # fixed constants: the first n images do not depend on n
    y = np.resize(labels, n).astype(np.int64)
    return torch.from_numpy(X), torch.from_numpy(y)


def build(n_images, batch_size, train_steps, device="cpu"):
    """Model (trained, BatchNorm recalibrated, eval mode), data set and streaming loader."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    X, y = cifar_like(n_images)
    data = torch.utils.data.TensorDataset(X, y)
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=False, pin_memory=str(device).startswith("cuda")
    )
    model = resnet18().to(device)
    if train_steps:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        order = torch.Generator().manual_seed(0)
        train = torch.utils.data.DataLoader(
            data, batch_size=batch_size, shuffle=True, generator=order
        )
        model.train()
        step = 0
        while step < train_steps:
            for xb, yb in train:
                opt.zero_grad()
                F.cross_entropy(model(xb.to(device)), yb.to(device)).backward()
                opt.step()
                step += 1
                if step == train_steps:
                    break
    # running statistics over the data (cumulative average), then the deployed model
    model.train()
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None
    with torch.no_grad():
        for xb, _ in loader:
            model(xb.to(device))
    return model.eval(), data, loader


def make_objective(model, loader, device):
    import torch.nn.functional as F

    import probecore as pc

    return pc.objective(
        model, F.cross_entropy, loader, stream=True, batchnorm="running", device=device
    )


# --------------------------------------------------------------------------- helpers


def status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise KeyError(key)


def reset_peak():
    """Restart VmHWM from the current VmRSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def same_result(a, b):
    """Field-by-field equality of a result and its reloaded copy (arrays bitwise)."""
    if type(a) is not type(b):
        return f"type {type(a).__name__} != {type(b).__name__}"
    for f in dataclasses.fields(a):
        u, v = getattr(a, f.name), getattr(b, f.name)
        if f.name == "metadata":
            v = {k: w for k, w in v.items() if k != "saved_with_probecore"}
            if json.dumps(u, sort_keys=True, default=str) != json.dumps(
                v, sort_keys=True, default=str
            ):
                return "metadata differs"
        elif isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
            u, v = np.asarray(u), np.asarray(v)
            if u.dtype != v.dtype or u.shape != v.shape:
                return f"{f.name}: {u.dtype}{u.shape} != {v.dtype}{v.shape}"
            if not np.array_equal(u, v, equal_nan=u.dtype.kind in "fc"):
                return f"{f.name} differs"
        elif isinstance(u, float) and isinstance(v, float) and math.isnan(u):
            if not math.isnan(v):
                return f"{f.name} differs"
        elif (tuple(u) if isinstance(u, list) else u) != (tuple(v) if isinstance(v, list) else v):
            return f"{f.name}: {u!r} != {v!r}"
    return None


def save_and_reload(result, path):
    import probecore as pc

    written = pc.save(result, path)
    problem = same_result(result, pc.load(written))
    if problem:
        raise AssertionError(f"{os.path.basename(written)} reloaded differently: {problem}")
    return os.path.getsize(written)


class Counter:
    """Counts and times the HVPs (vectors) an algorithm asks of the objective."""

    def __init__(self, obj):
        self.obj, self.n, self.seconds = obj, 0, 0.0
        hvp, many = obj.hvp, obj.hvp_many

        def timed_hvp(x, v):
            t = time.perf_counter()
            try:
                return hvp(x, v)
            finally:
                self.n += 1
                self.seconds += time.perf_counter() - t

        def timed_many(x, V):
            t = time.perf_counter()
            try:
                return many(x, V)
            finally:
                self.n += int(np.shape(V)[0])
                self.seconds += time.perf_counter() - t

        obj.hvp, obj.hvp_many = timed_hvp, timed_many

    def close(self):
        del self.obj.hvp, self.obj.hvp_many


# --------------------------------------------------------------------------- the parts


def cost(obj, rounds):
    """Median seconds of a loss, a gradient and an HVP over the data, and their ratios."""
    x0 = obj.x0
    x1 = x0.copy()
    x1[0] = np.nextafter(x1[0], np.inf)
    v = np.random.default_rng(0).standard_normal(obj.dim).astype(obj.dtype)
    times = {"loss": [], "grad": [], "hvp": []}
    for r in range(rounds):
        x = x1 if r % 2 else x0
        for name, call, extra in (
            ("loss", obj.loss, ()),
            ("grad", obj.grad, ()),
            ("hvp", obj.hvp, (v,)),
        ):
            t = time.perf_counter()
            call(x, *extra)
            times[name].append(time.perf_counter() - t)
            log(f"  cost round {r}: {name} {times[name][-1]:.2f} s")
    med = {k: float(np.median(t)) for k, t in times.items()}
    return {
        "median": med,
        "raw": times,
        "hvp_per_grad": med["hvp"] / med["grad"],
        "loss_per_grad": med["loss"] / med["grad"],
    }


def run_parts(args, out_dir):
    import torch

    import probecore as pc

    res = {"rss_start_mib": status_kib("VmRSS:") / 1024}
    t = time.perf_counter()
    model, data, loader = build(args.n_images, args.batch_size, args.train_steps, args.device)
    res["build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    obj = make_objective(model, loader, args.device)
    res["objective_s"] = time.perf_counter() - t
    res.update(
        dim=obj.dim,
        n_examples=obj.n_examples,
        loss0=float(obj.loss(obj.x0)),
        accuracy=float(obj.metrics(obj.x0).get("accuracy", float("nan"))),
        n_batches=len(loader),
    )
    log(f"built: dim {obj.dim:,}, {obj.n_examples} images, loss {res['loss0']:.4f}")
    files = {}

    def keep(name, result):
        files[name] = save_and_reload(result, os.path.join(out_dir, name))
        log(f"  saved and reloaded {name} ({files[name] / 2**20:.1f} MiB): equal")

    def sync():
        if str(args.device).startswith("cuda"):
            torch.cuda.synchronize()

    if "cost" in args.parts:
        log("cost: loss, gradient, HVP over the data")
        res["cost"] = cost(obj, args.rounds)
    if "lanczos" in args.parts:
        log("lanczos")
        c = Counter(obj)
        sync()
        t = time.perf_counter()
        r = pc.lanczos(obj, k=1, tol=args.lanczos_tol, verify=False, rng=0, raise_on_failure=False)
        sync()
        res["lanczos"] = {
            "s": time.perf_counter() - t,
            "hvps": r.n_matvecs,
            "counted": c.n,
            "hvp_s": c.seconds,
            "lam": float(r.eigenvalues[0]),
            "rel_res": float(r.residual_norms[0] / abs(r.eigenvalues[0])),
            "converged": bool(r.converged),
            "restarts": r.n_restarts,
        }
        c.close()
        keep("lanczos", r)
    if "hutchpp" in args.parts:
        log("hutchpp")
        c = Counter(obj)
        t = time.perf_counter()
        r = pc.hutchpp(obj, n_matvecs=args.hutchpp_matvecs, rng=0)
        res["hutchpp"] = {
            "s": time.perf_counter() - t,
            "hvps": r.n_matvecs,
            "counted": c.n,
            "hvp_s": c.seconds,
            "estimate": r.estimate,
            "std_error": r.std_error,
        }
        c.close()
        keep("hutchpp", r)
    if "slq" in args.parts:
        log("slq")
        c = Counter(obj)
        t = time.perf_counter()
        r = pc.spectral_density(obj, n_probes=args.slq_probes, n_steps=args.slq_steps, rng=0)
        res["slq"] = {
            "s": time.perf_counter() - t,
            "hvps": r.n_matvecs,
            "counted": c.n,
            "hvp_s": c.seconds,
            "node_min": float(np.min(r.nodes)),
            "node_max": float(np.max(r.nodes)),
        }
        c.close()
        keep("slq", r)
    if "plane" in args.parts:
        log(f"plane {args.grid}×{args.grid}")
        dirs = pc.random_directions(obj, k=2, rng=0)
        keep("directions", dirs)
        axis = np.linspace(-1, 1, args.grid)
        t = time.perf_counter()
        r = pc.plane(obj, dirs, alphas=axis, betas=axis)
        res["plane"] = {
            "s": time.perf_counter() - t,
            "evals": r.n_loss_evals,
            "min": float(np.min(r.losses)),
            "max": float(np.max(r.losses)),
        }
        keep("plane", r)
    if "rays" in args.parts:
        log(f"rays {args.n_rays}")
        t = time.perf_counter()
        r = pc.rays(obj, n_rays=args.n_rays, rng=0)
        res["rays"] = {
            "s": time.perf_counter() - t,
            "evals": r.n_loss_evals,
            "mean": r.mean,
            "ci": [float(c) for c in r.mean_ci],
            "negative_fraction": r.negative_fraction,
        }
        keep("rays", r)
    res["files"] = files
    res["rss_end_mib"] = status_kib("VmRSS:") / 1024
    res["hwm_end_mib"] = status_kib("VmHWM:") / 1024
    return res


# --------------------------------------------------------------------------- memory child


def memory_child(args):
    """One plane in a fresh process; prints one JSON line of resident-memory figures."""
    from scipy import stats  # noqa: F401  (what the probes import on a first call)

    import probecore as pc

    pc.lanczos  # noqa: B018  (loads the public API before the baselines)
    chunk = args.chunks[0]
    rss_imports = status_kib("VmRSS:")
    model, data, loader = build(args.memory_n_images, args.batch_size, 0, args.device)
    rss_model_data = status_kib("VmRSS:")
    obj = make_objective(model, loader, args.device)
    rss_objective = status_kib("VmRSS:")
    dirs = pc.random_directions(obj, k=2, rng=0)
    obj.loss(obj.x0)  # the objective's evaluation copy of the model is made here
    rss0 = status_kib("VmRSS:")
    reset = reset_peak()
    obj.loss(obj.x0)
    loss_growth = status_kib("VmHWM:") - rss0 if reset else None
    rss1 = status_kib("VmRSS:") if reset else status_kib("VmHWM:")
    reset_peak()
    axis = np.linspace(-1, 1, args.memory_grid)
    t = time.perf_counter()
    r = pc.plane(obj, dirs, alphas=axis, betas=axis, chunk_size=chunk, progress=False)
    wall = time.perf_counter() - t
    hwm = status_kib("VmHWM:")
    print(
        json.dumps(
            {
                "chunk": chunk,
                "points": int(r.losses.size),
                "dim": obj.dim,
                "itemsize": int(np.dtype(obj.dtype).itemsize),
                "reset": reset,
                "rss_imports_kib": rss_imports,
                "rss_model_data_kib": rss_model_data,
                "rss_objective_kib": rss_objective,
                "rss_before_kib": rss1,
                "hwm_kib": hwm,
                "loss_growth_kib": loss_growth,
                "wall": wall,
                "losses_sha": __import__("hashlib").sha256(r.losses.tobytes()).hexdigest()[:12],
            }
        )
    )


def run_memory_child(args, chunk, mmap_threshold=None):
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-child",
        "--chunks",
        str(chunk),
        "--memory-grid",
        str(args.memory_grid),
        "--memory-n-images",
        str(args.memory_n_images),
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child, chunk {chunk}, failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["malloc"] = "default" if mmap_threshold is None else f"mmap ≥ {mmap_threshold >> 20} MiB"
    return out


# --------------------------------------------------------------------------- report


def machine():
    sys.path.insert(0, HERE)
    from backends import machine as describe

    try:
        with open("/proc/meminfo") as f:
            total = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        return f"{describe()}, {total / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        return describe()


def report(args, res, mem, command, elapsed, load):
    import torch

    import probecore as pc

    dim = res.get("dim") or (mem[0]["dim"] if mem else 11_173_962)
    copy_mib = dim * 4 / 2**20
    print("## Scale: ResNet-18 (`benchmarks/scale.py`)\n")
    print(
        f"Measured {datetime.date.today().isoformat()} on {machine()}, device {args.device}, "
        f"{torch.get_num_threads()} torch threads, load average {load[0]:.1f} at start; "
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy "
        f"{np.__version__}, probecore {pc.__version__}. Command: `{command}` "
        f"({elapsed:.0f} s).\n"
    )
    if "dim" in res:
        print(
            f"ResNet-18, dim = {dim:,} float32 (one parameter copy = {copy_mib:.1f} MiB); "
            f"{res['n_examples']:,} CIFAR-shaped images built from digits, streamed in "
            f"{res['n_batches']} batch(es) of {args.batch_size} (`stream=True`, "
            f'`batchnorm="running"`), {args.train_steps} SGD steps of training: loss '
            f"{res['loss0']:.4f}, accuracy {res['accuracy']:.3f}.\n"
        )
    n = res.get("n_examples")
    rows = []
    if "cost" in res:
        m = res["cost"]["median"]
        print(
            f"| one pass over the {n:,} images (median of {args.rounds}) | seconds | "
            "per image | / gradient |"
        )
        print("|---|---|---|---|")
        for name, label in (("loss", "loss"), ("grad", "gradient"), ("hvp", "HVP")):
            print(
                f"| {label} | {m[name]:.2f} | {1e3 * m[name] / n:.1f} ms | "
                f"{m[name] / m['grad']:.2f} |"
            )
        print()
    for key, label, unit in (
        ("lanczos", f"λmax, `lanczos(k=1, tol={args.lanczos_tol:g}, verify=False)`", "HVPs"),
        ("hutchpp", f"trace, `hutchpp(n_matvecs={args.hutchpp_matvecs})`", "HVPs"),
        (
            "slq",
            f"density, `spectral_density(n_probes={args.slq_probes}, n_steps={args.slq_steps})`",
            "HVPs",
        ),
        ("plane", f"`plane`, {args.grid}×{args.grid} filter-normalized", "losses"),
        ("rays", f"`rays(n_rays={args.n_rays})`", "losses"),
    ):
        if key in res:
            r = res[key]
            count = r.get("hvps", r.get("evals"))
            rows.append((key, label, count, unit, r["s"]))
    if rows:
        print("| probe | result | work | wall time | per unit per image | saved, reloaded, equal |")
        print("|---|---|---|---|---|---|")
        for key, label, count, unit, s in rows:
            r = res[key]
            value = describe(key, r)
            size = res["files"].get(key, 0) / 2**20
            print(
                f"| {label} | {value} | {count} {unit} | {s:.1f} s | "
                f"{1e3 * s / max(count, 1) / n:.1f} ms | {size:.1f} MiB, yes |"
            )
        print()
        print_extrapolation(args, res)
    if mem:
        print_memory(args, mem, copy_mib)


def describe(key, r):
    """The result column of the probe table."""
    if key == "lanczos":
        return f"λmax {r['lam']:.4g}, ‖Hy−λy‖/λ {r['rel_res']:.1e}"
    if key == "hutchpp":
        return f"{r['estimate']:.4g} ± {r['std_error']:.2g}"
    if key == "slq":
        return f"Ritz nodes {r['node_min']:.3g} to {r['node_max']:.3g}"
    if key == "plane":
        return f"losses {r['min']:.4f} to {r['max']:.4f}"
    return (
        f"mean κ {r['mean']:.4g} (CI {r['ci'][0]:.3g} to {r['ci'][1]:.3g}), "
        f"{r['negative_fraction']:.0%} negative"
    )


def print_extrapolation(args, res):
    """Full-size cost from the measured per-image unit times (labelled as extrapolated)."""
    n = res["n_examples"]
    hvp = res.get("cost", {}).get("median", {}).get("hvp")
    loss = res.get("cost", {}).get("median", {}).get("loss")
    if hvp is None or loss is None:
        return
    lan = res.get("lanczos", {}).get("hvps")
    print(
        f"Extrapolated, not measured: at the cost per image measured above (HVP "
        f"{1e3 * hvp / n:.1f} ms, loss {1e3 * loss / n:.1f} ms), linear in the images:\n"
    )
    rays_row = ("rays 200 (+ L(x))", 401, loss)  # L(x ± εd) per ray
    if "rays" in res:  # at the losses per ray measured (more with the checks of rays)
        per_ray = (res["rays"]["evals"] - 1) / args.n_rays
        rays_row = (
            f"rays 200, {per_ray:.2f} losses per ray as measured",
            1 + math.ceil(200 * per_ray),
            loss,
        )
    print("| probe at full size | work | 2,000 images | 50,000 images |")
    print("|---|---|---|---|")
    for label, count, unit in (
        (f"λmax (Lanczos, {lan} HVPs as measured)", lan, hvp),
        ("Hutch++, 99 HVPs", 99, hvp),
        ("SLQ, 5 probes × 60 steps", 300, hvp),
        ("plane 21×21", 441, loss),
        rays_row,
    ):
        if count is None:
            continue
        per = unit / n
        print(
            f"| {label} | {count} | {count * per * 2000 / 3600:.2f} h | "
            f"{count * per * 50000 / 3600:.1f} h |"
        )
    print()


def print_memory(args, mem, copy_mib):
    print(
        f"Plane memory: `plane(obj, random_directions(obj, k=2, rng=0), alphas=betas="
        f"linspace(-1, 1, {args.memory_grid}), chunk_size=chunk)` on "
        f"{args.memory_n_images} images streamed in batches of {args.batch_size}, each run "
        "in a fresh process; growth of the peak resident memory (VmHWM) (a) over the "
        "resident memory just before the call and (b) over the resident memory once the "
        "model and the data were built (before the objective: it includes the objective's "
        "evaluation copy, x0, the two directions and one batch's activations).\n"
    )
    print(
        "| chunk size | points | malloc | (a) growth during the call | parameter copies | "
        "(b) growth over model + data | parameter copies | wall time | losses |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    kib = copy_mib * 1024
    for o in mem:
        a = o["hwm_kib"] - o["rss_before_kib"]
        b = o["hwm_kib"] - o["rss_model_data_kib"]
        print(
            f"| {o['chunk']} | {o['points']} | {o['malloc']} | {a / 1024:.0f} MiB | "
            f"{a / kib:.1f} | {b / 1024:.0f} MiB | {b / kib:.1f} | {o['wall']:.1f} s | "
            f"sha256 {o['losses_sha']} |"
        )
    loss = [o["loss_growth_kib"] for o in mem if o["loss_growth_kib"] is not None]
    o = mem[0]
    print(
        f"\nModel and data: {(o['rss_model_data_kib'] - o['rss_imports_kib']) / 1024:.0f} "
        f"MiB over the imports; the objective's construction "
        f"{(o['rss_objective_kib'] - o['rss_model_data_kib']) / 1024:.0f} MiB more. ",
        end="",
    )
    if loss:
        print(
            f"One loss evaluation alone grows the peak by {np.median(loss) / 1024:.0f} MiB, "
            f"{np.median(loss) / kib:.2f} parameter copies (median over the runs). ",
            end="",
        )
    shas = {m["losses_sha"] for m in mem}
    print(
        f"Plane losses: {len(shas)} distinct value(s) over all runs "
        f"({'bitwise identical' if len(shas) == 1 else 'NOT identical'}).\n"
    )


# --------------------------------------------------------------------------- main


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small settings (see the docstring)")
    ap.add_argument("--n-images", type=int)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--grid", type=int, help="plane points per axis (21)")
    ap.add_argument("--n-rays", type=int)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated: {PARTS}")
    ap.add_argument("--train-steps", type=int)
    ap.add_argument("--rounds", type=int, help="rounds of the cost part")
    ap.add_argument("--lanczos-tol", type=float, default=1e-3)
    ap.add_argument("--hutchpp-matvecs", type=int)
    ap.add_argument("--slq-probes", type=int)
    ap.add_argument("--slq-steps", type=int)
    ap.add_argument("--chunks", default="1,8,64", help="plane chunk sizes of the memory part")
    ap.add_argument("--memory-grid", type=int, help="memory plane points per axis (--grid)")
    ap.add_argument("--memory-n-images", type=int, help="images of the memory part (--n-images)")
    ap.add_argument(
        "--malloc",
        default="default",
        choices=("default", "mmap", "both"),
        help="memory runs with glibc's malloc as it comes, with "
        "MALLOC_MMAP_THRESHOLD_ fixed at 1 MiB, or both",
    )
    ap.add_argument(
        "--out", help="keep the saved results in this folder (default: a temporary folder, removed)"
    )
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.memory_grid is None:
        args.memory_grid = args.grid
    if args.memory_n_images is None:
        args.memory_n_images = args.n_images
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown part(s) {sorted(unknown)}; choose from {PARTS}")
    args.chunks = [int(c) for c in args.chunks.split(",")]
    return args


def main(argv=None):
    args = parse(argv)
    if args.memory_child:
        memory_child(args)
        return
    command = "python benchmarks/scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    start, load = time.perf_counter(), os.getloadavg()
    out_dir = args.out or tempfile.mkdtemp(prefix="probecore-scale-")
    os.makedirs(out_dir, exist_ok=True)
    try:
        res = {}
        if set(args.parts) - {"memory"}:
            res = run_parts(args, out_dir)
        mem = []
        if "memory" in args.parts:
            thresholds = {
                "default": [None],
                "mmap": [MMAP_THRESHOLD],
                "both": [None, MMAP_THRESHOLD],
            }[args.malloc]
            for chunk in args.chunks:
                for threshold in thresholds:
                    o = run_memory_child(args, chunk, threshold)
                    mem.append(o)
                    log(
                        f"memory, chunk {chunk} ({o['malloc']}): "
                        f"{(o['hwm_kib'] - o['rss_before_kib']) / 1024:.0f} MiB during the "
                        f"call, {(o['hwm_kib'] - o['rss_model_data_kib']) / 1024:.0f} MiB over "
                        f"model + data, {o['wall']:.1f} s"
                    )
        elapsed = time.perf_counter() - start
        with open(os.path.join(out_dir, "scale.json"), "w") as f:
            json.dump({"args": vars(args), "results": res, "memory": mem}, f, indent=1)
        report(args, res, mem, command.strip(), elapsed, load)
    finally:
        if not args.out:
            shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
