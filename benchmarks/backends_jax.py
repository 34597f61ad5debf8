"""The JAX backend measured: overhead of ``probecore.objective`` against plain JAX.

Run by hand:  python benchmarks/backends_jax.py
(prints Markdown tables; about 3.5 minutes on 2 CPU cores). Needs jax, scikit-learn and
probecore-jax.

A small CNN for the scikit-learn digits, written in plain JAX (a dict of parameters,
NCHW convolutions through ``jax.lax.conv_general_dilated``, float32), the whole training
split (1347 images) in one batch, parameters at a fixed random init. One loss, one
gradient and one HVP through ``probecore.objective(params, loss_fn, (X, y))`` versus the
same computation written directly in JAX:

* ``jit(loss)``, ``jit(grad)``;
* HVP by ``jit(jvp of grad)`` (forward-over-reverse);
* HVP by ``jit(linearize of grad)``: at a cached point the linear map is computed once
  and only applied; at a cold point it is recomputed and applied;
* ``jit(vmap(jvp of grad))`` over 8 vectors (time per vector).

The objective takes and returns flat numpy vectors; the direct routes take the parameter
pytree and the tangents already on the device and return device arrays (synchronized
with ``.block_until_ready()``): no flattening, no host transfers. That conversion is part
of what the overhead ratios measure. "Cached" calls repeat the same ``x``; "cold" calls
alternate two different ``x``. Each comparison (loss, gradient, cached HVP, cold HVP,
hvp_many) is its own group of routes, interleaved round by round with the order rotated;
the ratios are medians of per-round ratios with 95% confidence intervals, so that load
from other processes cancels; read the ratios, not the seconds.
"""

from __future__ import annotations

import datetime
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jax.flatten_util import ravel_pytree
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import probecore as pc

ROUNDS = 25  # interleaved rounds after warm-up (medians)
INNER = 2  # calls per route per round (their mean is one sample)
K_VMAP = 8  # vectors per batched HVP
TARGET = 0.10  # overhead target


# --------------------------------------------------------------------------- model and data


def digits():
    X, y = load_digits(return_X_y=True)
    X_tr, _, y_tr, _ = train_test_split(X, y, test_size=0.25, random_state=0)
    X_tr = (X_tr / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return jnp.asarray(X_tr), jnp.asarray(y_tr.astype(np.int32))


def init_params(key):
    k1, k2, k3 = jax.random.split(key, 3)

    def he(k, shape, fan_in):
        return jax.random.normal(k, shape, jnp.float32) * np.float32(np.sqrt(2.0 / fan_in))

    return {
        "conv1": {"w": he(k1, (16, 1, 3, 3), 9), "b": jnp.zeros(16, jnp.float32)},
        "conv2": {"w": he(k2, (32, 16, 3, 3), 144), "b": jnp.zeros(32, jnp.float32)},
        "dense": {"w": he(k3, (128, 10), 128), "b": jnp.zeros(10, jnp.float32)},
    }


def conv(x, layer):
    out = jax.lax.conv_general_dilated(
        x, layer["w"], (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW")
    )
    return out + layer["b"][None, :, None, None]


def forward(params, x):
    h = jax.nn.relu(conv(x, params["conv1"]))  # (n, 16, 8, 8)
    h = jax.nn.relu(conv(h, params["conv2"]))  # (n, 32, 8, 8)
    n, c = h.shape[:2]
    h = h.reshape(n, c, 2, 4, 2, 4).mean(axis=(3, 5))  # mean-pool to (n, 32, 2, 2)
    return h.reshape(n, 128) @ params["dense"]["w"] + params["dense"]["b"]


def loss_fn(params, batch):
    x, y = batch
    logp = jax.nn.log_softmax(forward(params, x))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


# --------------------------------------------------------------------------- timing


def bench(routes, rounds=ROUNDS, inner=INNER):
    """Per-round mean time of ``inner`` calls of each route, interleaved (order rotated).

    Returns the list of per-round samples of every route.
    """
    for fn in routes.values():  # warm-up: compile, fill caches
        fn()
        fn()
    times = {name: [] for name in routes}
    names = list(routes)
    for r in range(rounds):
        # rotate the order every round: a route timed right after a heavy one pays for
        # what that one left behind
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = routes[name]
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t) / inner)
    return times


def ratio_ci(raw, a, b):
    """Median over rounds of time(a) / time(b) within one round, with a 95%
    distribution-free confidence interval (order statistics of the binomial)."""
    r = np.sort(np.asarray(raw[a]) / np.asarray(raw[b]))
    n = len(r)
    k = int(scipy.stats.binom.ppf(0.025, n, 0.5))
    lo, hi = (r[k - 1], r[n - k]) if k >= 1 else (r[0], r[-1])
    return float(np.median(r)), float(lo), float(hi)


def ms(t):
    return f"{t * 1e3:.3f} ms"


def verdict(ratio):
    over = ratio - 1.0
    return f"{over:+.1%} ({'met' if over <= TARGET else 'NOT met'})"


def main():
    X, y = digits()
    params = init_params(jax.random.PRNGKey(0))
    obj = pc.objective(params, loss_fn, (X, y))
    x0 = obj.x0
    rng = np.random.default_rng(0)
    x1 = (x0 + 1e-2 * rng.standard_normal(obj.dim)).astype(np.float32)
    v = rng.standard_normal(obj.dim).astype(np.float32)
    V = rng.standard_normal((K_VMAP, obj.dim)).astype(np.float32)

    # the same points and vectors as pytrees on the device, for the direct routes
    _, unravel = ravel_pytree(params)  # the objective's flat order
    p0, p1, tv = (unravel(jnp.asarray(a)) for a in (x0, x1, v))
    tV = jax.vmap(unravel)(jnp.asarray(V))
    batch = (X, y)

    grad_of = jax.grad(loss_fn)
    loss_j = jax.jit(loss_fn)
    grad_j = jax.jit(grad_of)
    hvp_j = jax.jit(lambda p, b, t: jax.jvp(lambda q: grad_of(q, b), (p,), (t,))[1])
    lin_j = jax.jit(lambda p, b: jax.linearize(lambda q: grad_of(q, b), p)[1])
    apply_j = jax.jit(lambda lin, t: lin(t))
    hvp_vmap_j = jax.jit(
        lambda p, b, T: jax.vmap(lambda t: jax.jvp(lambda q: grad_of(q, b), (p,), (t,))[1])(T)
    )

    # check that the direct routes compute what the objective does
    ref = obj.hvp(x0, v)
    for name, got in [
        ("jvp", hvp_j(p0, batch, tv)),
        ("linearize", apply_j(lin_j(p0, batch), tv)),
    ]:
        flat = np.asarray(ravel_pytree(got)[0])
        err = np.linalg.norm(flat - ref) / np.linalg.norm(ref)
        assert err < 1e-4, (name, err)
    assert abs(obj.loss(x0) - float(loss_j(p0, batch))) < 1e-5

    lin0 = lin_j(p0, batch)
    pts = [(x0, p0), (x1, p1)]

    cold_state = {"i": 0}

    def cold_jvp():
        cold_state["i"] ^= 1
        return jax.block_until_ready(hvp_j(pts[cold_state["i"]][1], batch, tv))

    lin_state = {"i": 0}

    def cold_lin():
        lin_state["i"] ^= 1
        lin = lin_j(pts[lin_state["i"]][1], batch)
        return jax.block_until_ready(apply_j(lin, tv))

    # The cold objective HVP alternates points, and so must not share the objective's
    # cached linearization with the cached routes: use a second objective for it.
    obj_cold = pc.objective(params, loss_fn, (X, y))

    obj_state = {"i": 0}

    def cold_obj_hvp():
        obj_state["i"] ^= 1
        return obj_cold.hvp(pts[obj_state["i"]][0], v)

    # Each comparison is timed in its own group of like routes: timed among the heavy
    # HVP routes, the loss measured anywhere from +6% to +38% depending on its neighbours
    # (earlier versions of this script), with identical code.
    groups = {
        "loss": {
            "obj.loss": lambda: obj.loss(x0),
            "jit(loss)": lambda: loss_j(p0, batch).block_until_ready(),
        },
        "gradient": {
            "obj.grad": lambda: obj.grad(x0),
            "jit(grad)": lambda: jax.block_until_ready(grad_j(p0, batch)),
        },
        "cached HVP": {
            "obj.hvp cached": lambda: obj.hvp(x0, v),
            "jit(jvp of grad)": lambda: jax.block_until_ready(hvp_j(p0, batch, tv)),
            "jit(linearize) reused": lambda: jax.block_until_ready(apply_j(lin0, tv)),
        },
        "cold HVP": {
            "obj.hvp cold": cold_obj_hvp,
            "jit(jvp of grad) cold": cold_jvp,
            "jit(linearize)+apply cold": cold_lin,
        },
        "hvp_many": {
            "obj.hvp_many(8)": lambda: obj.hvp_many(x0, V),
            "jit(vmap(jvp of grad))(8)": lambda: jax.block_until_ready(hvp_vmap_j(p0, batch, tV)),
            "jit(linearize) reused, 8 calls": lambda: [
                jax.block_until_ready(apply_j(lin0, tv)) for _ in range(K_VMAP)
            ],
        },
    }
    per_call = {
        "obj.hvp_many(8)": K_VMAP,
        "jit(vmap(jvp of grad))(8)": K_VMAP,
        "jit(linearize) reused, 8 calls": K_VMAP,
    }
    t0 = time.perf_counter()
    raw = {}
    for routes in groups.values():
        raw.update(bench(routes))
    raw = {k: [s / per_call.get(k, 1) for s in v] for k, v in raw.items()}
    t = {k: float(np.median(v)) for k, v in raw.items()}
    elapsed = time.perf_counter() - t0

    print("## JAX backend: probecore.objective versus plain JAX\n")
    print(
        f"jax {jax.__version__} ({jax.default_backend()}, {jax.device_count()} device), "
        f"numpy {np.__version__}, Python {platform.python_version()}, "
        f"{datetime.date.today().isoformat()}; digits CNN, {obj.dim} float32 parameters, "
        f"{obj.n_examples} images in one batch. Each comparison (loss, gradient, cached "
        f"HVP, cold HVP, hvp_many) is its own group of routes, timed in {ROUNDS} "
        f"interleaved rounds (mean of {INNER} calls each) after warm-up; {elapsed:.0f} s. "
        "The objective's times include its flat numpy input and output; the direct "
        "routes take the parameter pytree on the device and return device arrays "
        "(block_until_ready), with no flattening or host transfer. Ratios are medians "
        "over rounds of the ratio of two routes timed in the same round, with 95% "
        "confidence intervals.\n"
    )
    print("| route | time per HVP / call (median) |")
    print("|---|---|")
    for name, s in t.items():
        print(f"| {name}{' (per vector)' if name in per_call else ''} | {ms(s)} |")

    single = ["jit(jvp of grad)", "jit(linearize) reused"]
    cold = ["jit(jvp of grad) cold", "jit(linearize)+apply cold"]
    many = ["jit(vmap(jvp of grad))(8)", "jit(linearize) reused, 8 calls"]
    best = min(single, key=t.get)
    best_cold = min(cold, key=t.get)
    best_many = min(many, key=t.get)
    rows = [
        ("loss: obj.loss / jit(loss)", "obj.loss", "jit(loss)"),
        ("gradient: obj.grad / jit(grad)", "obj.grad", "jit(grad)"),
        (f"cached HVP: obj.hvp / {best}", "obj.hvp cached", best),
        (f"cold HVP: obj.hvp / {best_cold}", "obj.hvp cold", best_cold),
        (f"hvp_many(8) per vector / {best_many} (per vector)", "obj.hvp_many(8)", best_many),
    ]
    print(f"\n| overhead (target <= {TARGET:.0%}) | ratio (95% CI) | overhead |")
    print("|---|---|---|")
    for name, a, b in rows:
        med, lo, hi = ratio_ci(raw, a, b)
        print(f"| {name} | {med:.3f} ({lo:.3f}–{hi:.3f}) | {verdict(med)} |")

    print("\n| HVP / gradient | ratio |")
    print("|---|---|")
    print(f"| obj.hvp cached / obj.grad | {t['obj.hvp cached'] / t['obj.grad']:.2f} |")
    print(f"| obj.hvp cold / obj.grad | {t['obj.hvp cold'] / t['obj.grad']:.2f} |")
    for name in single:
        print(f"| {name} / jit(grad) | {t[name] / t['jit(grad)']:.2f} |")


if __name__ == "__main__":
    main()
