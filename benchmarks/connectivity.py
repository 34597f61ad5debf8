"""Mode connectivity measured: curve-fitting cost per epoch, and barriers on digits.

Run by hand:  python benchmarks/connectivity.py [--quick]
(prints Markdown tables for docs/benchmarks.md; about 2 minutes on 2 CPU cores). Needs
torch, jax, scikit-learn, probecore-torch and probecore-jax.

Parts:

1. Cost: one epoch of ``probecore.fit_curve`` (quadratic Bezier, Adam, batch 128) against
   one plain PyTorch training epoch (``zero_grad``, forward, ``backward``, Adam ``step``
   per mini-batch of 128) of the same model on the same data (the digits training split,
   1,347 images, float32), for an MLP and the CNN of ``benchmarks/backends.py``.
   Interleaved rounds of 5 epochs each; the ratio is the median of per-round ratios with
   the range over rounds. The curve's mini-batch objectives are built once per fit (the
   "setup" column), as ``fit_curve`` does.
2. Barriers: two MLPs (64-32-10, tanh, float64) trained from different seeds by L-BFGS on
   the training split, in PyTorch and in JAX: loss barrier of the straight path and of
   a fitted quadratic Bezier (20 epochs), test accuracy along both, and the times.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0)


def median_range(r):
    r = np.asarray(r)
    return f"{np.median(r):.2f} ({r.min():.2f}–{r.max():.2f})"


def cost(rounds, epochs):
    import torch
    import torch.nn.functional as F

    import probecore as pc

    sys.path.insert(0, HERE)
    from backends import digits_cnn

    Xtr, _, ytr, _ = digits_split()
    X = torch.tensor(Xtr, dtype=torch.float32)
    y = torch.tensor(ytr)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    ).eval()
    cnn, Xi, yi, _ = digits_cnn()
    rows = []
    for name, model, inputs, targets in (("MLP 64-128-10", mlp, X, y), ("digits CNN", cnn, Xi, yi)):
        obj = pc.objective(model, F.cross_entropy, (inputs, targets))
        other = obj.x0 + 0.1 * np.random.default_rng(0).standard_normal(obj.dim).astype(np.float32)
        train_model = __import__("copy").deepcopy(model).train()
        opt = torch.optim.Adam(train_model.parameters(), lr=1e-3)
        n = len(targets)

        def plain(train_model=train_model, opt=opt, inputs=inputs, targets=targets, n=n):
            for _ in range(epochs):
                perm = torch.randperm(n)
                for i in range(0, n, 128):
                    idx = perm[i : i + 128]
                    opt.zero_grad()
                    F.cross_entropy(train_model(inputs[idx]), targets[idx]).backward()
                    opt.step()

        def curve(obj=obj, other=other):
            pc.fit_curve(obj, obj.x0, other, epochs=epochs, batch_size=128, rng=0)

        def setup(obj=obj):
            # what fit_curve does before its first step: one subset objective per batch
            perm = np.random.default_rng(0).permutation(obj.n_examples)
            for i in range(0, obj.n_examples, 128):
                obj.subset(np.sort(perm[i : i + 128]))

        routes = {"plain": plain, "curve": curve, "setup": setup}
        for fn in routes.values():
            fn()
        times = {k: [] for k in routes}
        for r in range(rounds):
            names = list(routes)[r % 3 :] + list(routes)[: r % 3]
            for k in names:
                t = time.perf_counter()
                routes[k]()
                times[k].append(time.perf_counter() - t)
        plain_t = np.asarray(times["plain"]) / epochs
        setup_t = np.asarray(times["setup"])
        curve_t = (np.asarray(times["curve"]) - setup_t) / epochs
        rows.append(
            (
                name,
                obj.dim,
                float(np.median(plain_t)),
                float(np.median(curve_t)),
                float(np.median(setup_t)),
                curve_t / plain_t,
                (np.asarray(times["curve"]) / epochs) / plain_t,
            )
        )
    return rows


def barriers(epochs):
    import jax
    import scipy.optimize
    import torch
    import torch.nn.functional as F

    import probecore as pc

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from probecore_jax import JaxObjective

    Xtr, Xte, ytr, yte = digits_split()

    def train(obj):
        t = time.perf_counter()
        res = scipy.optimize.minimize(
            obj.loss_and_grad, obj.x0, jac=True, method="L-BFGS-B", options={"maxiter": 300}
        )
        return res.x, time.perf_counter() - t

    def torch_obj(seed, X, y):
        torch.manual_seed(seed)
        m = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
        return pc.objective(m.double().eval(), F.cross_entropy, (torch.tensor(X), torch.tensor(y)))

    def jax_loss(p, batch):
        x, y = batch
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        logits = h @ p["w2"] + p["b2"]
        picked = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)

    def jax_metrics(p, batch):
        x, y = batch
        logits = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        return {"accuracy": jnp.mean((jnp.argmax(logits, 1) == y).astype(x.dtype))}

    def jax_obj(seed, X, y):
        rng = np.random.default_rng(seed)
        p = {
            "w1": rng.standard_normal((64, 32)) / 8.0,
            "b1": np.zeros(32),
            "w2": rng.standard_normal((32, 10)) / np.sqrt(32),
            "b2": np.zeros(10),
        }
        return JaxObjective(jax_loss, p, (X, y.astype(np.int64)), metrics_fn=jax_metrics)

    rows = []
    for fw, make in (("PyTorch", torch_obj), ("JAX", jax_obj)):
        obj, test_obj = make(0, Xtr, ytr), make(0, Xte, yte)
        xa, ta = train(obj)
        xb, tb = train(make(1, Xtr, ytr))
        t = time.perf_counter()
        lin = pc.evaluate_path(obj, xa, xb, n_points=31)
        lin_test = pc.evaluate_path(test_obj, xa, xb, n_points=31)
        t_lin = time.perf_counter() - t
        t = time.perf_counter()
        fit = pc.fit_curve(obj, xa, xb, epochs=epochs, rng=0)
        t_fit = time.perf_counter() - t
        cur = pc.evaluate_path(obj, fit.curve, n_points=31)
        cur_test = pc.evaluate_path(test_obj, fit.curve, n_points=31)
        rows.append(
            dict(
                fw=fw,
                dim=obj.dim,
                train=ta + tb,
                ends=lin.losses[[0, -1]],
                lin=lin.barrier,
                cur=cur.barrier,
                lin_acc=lin_test.metric("accuracy"),
                cur_acc=cur_test.metric("accuracy"),
                t_lin=t_lin,
                t_fit=t_fit,
                steps=fit.n_grad_evals,
            )
        )
    return rows


def main():
    if "OMP_WAIT_POLICY" not in os.environ:
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    import torch

    import probecore as pc

    rounds, epochs = (2, 2) if args.quick else (7, 5)
    start = time.perf_counter()
    print("## Mode connectivity (benchmarks/connectivity.py)\n")
    print(
        f"Measured {datetime.date.today().isoformat()}, {os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f} at "
        f"start; Python {platform.python_version()}, torch {torch.__version__}, probecore "
        f"{pc.__version__}. Command: `python benchmarks/connectivity.py"
        f"{' --quick' if args.quick else ''}`.\n"
    )
    rows = cost(rounds, epochs)
    print(
        f"### Cost of an epoch: fit_curve against plain training ({rounds} interleaved "
        f"rounds of {epochs} epochs; batch 128, float32, Adam)\n"
    )
    print(
        "| model | parameters | plain epoch | fit_curve epoch | setup (once per fit) | "
        "fit_curve / plain (median, range) | with setup spread over the epochs |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, dim, tp, tc, ts, ratio, with_setup in rows:
        print(
            f"| {name} | {dim:,} | {1e3 * tp:.1f} ms | {1e3 * tc:.1f} ms | {1e3 * ts:.1f} ms "
            f"| {median_range(ratio)} | {median_range(with_setup)} |"
        )
    fit_epochs = 5 if args.quick else 20
    rows = barriers(fit_epochs)
    print(
        f"\n### Barriers between two digits MLPs (seeds 0 and 1, float64, L-BFGS 300 "
        f"iterations; quadratic Bezier, {fit_epochs} epochs, batch 128, Adam 1e-2)\n"
    )
    print(
        "| framework | parameters | endpoint losses | linear barrier | Bezier barrier | "
        "Bezier / linear | test accuracy: endpoints | min on the line | min on the curve "
        "| training (both) | fit | steps |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['fw']} | {r['dim']:,} | {r['ends'][0]:.4f}, {r['ends'][1]:.4f} | "
            f"{r['lin']:.4f} | {r['cur']:.4f} | {r['cur'] / r['lin']:.3f} | "
            f"{r['lin_acc'][0]:.3f}, {r['lin_acc'][-1]:.3f} | {r['lin_acc'].min():.3f} | "
            f"{r['cur_acc'].min():.3f} | {r['train']:.1f} s | {r['t_fit']:.1f} s | "
            f"{r['steps']} |"
        )
    print(f"\n(total run time {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
