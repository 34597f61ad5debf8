"""One model's work: train it, measure it, save its raw results (a unit of a study run).

Each function here trains or rebuilds one model (or one pair), measures it with probecore,
writes its probecore result files under the run's folder and returns what the parent needs
for the tables, figures and ``raw/study.zarr``: a record of numbers, arrays, the results the
figures draw, the trained weights (as numpy arrays) and a progress line. The functions are
pure given their arguments and run on **one thread**, so a unit gives the same numbers
whether it runs in the parent or in a worker process, alone or beside others: two runs of
the study, with any ``--jobs``, give identical results.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

import probecore as pc
from probecore_study.context import count_spikes, load_kit, out_path, stored
from probecore_study.settings import Settings

_DATA: dict = {}


def init_worker() -> None:
    """Start a worker process: passive OpenMP waiting, one torch thread."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(1)


def data() -> Any:
    """The fixed digits split (loaded once per process)."""
    if "digits" not in _DATA:
        _DATA["digits"] = load_kit().digits(seed=0)  # the split is fixed; seeds move training
    return _DATA["digits"]


def save_all(out: str, stage: str, name: str, results: dict, metadata: dict) -> None:
    """Every probecore result of one model as ``raw/<stage>/<name>_<label>.npz``."""
    for label, r in results.items():
        pc.save(r, out_path(out, "raw", stage, f"{name}_{label}"), metadata=metadata)


def state_of(model: Any) -> dict[str, np.ndarray]:
    """A model's weights as numpy arrays (picklable, exact)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def model_from(S: Settings, network: str, seed: int, state: dict) -> Any:
    """The network ``network`` of ``seed`` with the weights ``state``."""
    import torch

    kit = load_kit()
    if network == "mlp":
        model = kit.mlp(hidden=S.hidden, seed=seed)
    else:
        model = kit.deep_net(network, width=S.width, blocks=S.blocks, seed=seed)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    return model.eval()


def trained_record(run: Any, obj: Any, test: Any) -> dict:
    """What every trained model records: size, training outcome, losses and accuracies."""
    x = obj.x0
    return {
        "dim": obj.dim,
        "reached": run.reached,
        "diverged": run.diverged,
        "epochs": run.epochs,
        "steps": run.steps,
        "train_loss": obj.loss(x),
        "train_accuracy": obj.metrics(x)["accuracy"],
        "test_accuracy": test.metrics(x)["accuracy"],
    }


def train_mlp(S: Settings, seed: int, batch: int) -> Any:
    """The batch stage's MLP trained by SGD at ``batch`` from ``seed``."""
    kit = load_kit()
    return kit.train_sgd(
        kit.mlp(hidden=S.hidden, seed=seed),
        data(),
        lr=S.batch_lr,
        batch_size=batch,
        target_loss=S.batch_target,
        max_epochs=S.batch_max_epochs,
        seed=seed,
    )


def mlp_only(S: Settings, out: str, seed: int, batch: int) -> dict:
    """Train one MLP and return its weights (connectivity without the batch stage)."""
    run = train_mlp(S, seed, batch)
    return {"state": state_of(run.model), "line": f"trained MLP seed {seed}, batch {batch}"}


def batch_model(S: Settings, out: str, seed: int, batch: int) -> dict:
    """Stage 2's unit: one MLP trained at ``batch``, with λmax, trace, density, ε-sharpness."""
    kit = load_kit()
    t0 = time.perf_counter()
    run = train_mlp(S, seed, batch)
    t_train = time.perf_counter() - t0
    obj, test = kit.objectives(run.model, data())
    lam = pc.lanczos(obj, k=1, rng=seed)
    tr = pc.hutchpp(obj, n_matvecs=S.trace_matvecs, rng=seed)
    dens = pc.spectral_density(obj, n_probes=S.density_probes, n_steps=S.density_steps, rng=seed)
    sharp = pc.epsilon_sharpness(obj, eps=S.sharpness_eps, maxiter=S.sharpness_maxiter)
    name = f"seed{seed}_batch{batch}"
    save_all(
        out,
        "batch",
        name,
        {"lambda": lam, "trace": tr, "density": dens, "sharpness": sharp},
        {"seed": seed, "batch_size": batch},
    )
    rec = {
        "seed": seed,
        "batch": batch,
        **trained_record(run, obj, test),
        "lambda_max": float(lam.eigenvalues[0]),
        "lambda_hvps": lam.n_matvecs,
        "lambda_converged": bool(lam.converged),
        "trace": tr.estimate,
        "trace_se": tr.std_error,
        "trace_hvps": tr.n_matvecs,
        "sharpness_percent": sharp.percent,
        "sharpness_converged": bool(sharp.converged),
        "sharpness_evals": sharp.n_loss_evals,
        "density_hvps": dens.n_matvecs,
    }
    return {
        "record": rec,
        "raw": (
            f"batch/{name}",
            {"epoch_losses": run.epoch_losses, "density_grid": dens.grid, "density": dens.density},
        ),
        "keep": {"density": dens},
        "state": state_of(run.model) if batch == S.batch_sizes[0] else None,
        "timings": {
            f"train mlp seed {seed} batch {batch}": t_train,
            f"measure mlp seed {seed} batch {batch}": time.perf_counter() - t0 - t_train,
        },
        "line": (
            f"batch {batch:>3}, seed {seed}: {run.epochs:.0f} epochs to loss "
            f"{rec['train_loss']:.4f}, λmax {rec['lambda_max']:.3g}, test accuracy "
            f"{rec['test_accuracy']:.3f}"
        ),
    }


def nonconvex_share(plane: Any) -> float:
    """Share of the surface's interior grid points with negative curvature.

    At each interior point, the 2×2 finite-difference Hessian of the plotted surface; a
    point counts when its smaller eigenvalue is below −1e-9 times the loss scale (rounding
    is not curvature).
    """
    L = np.asarray(plane.losses, dtype=np.float64)
    a, b = np.asarray(plane.alphas), np.asarray(plane.betas)
    ha, hb = a[1] - a[0], b[1] - b[0]
    laa = (L[1:-1, 2:] - 2 * L[1:-1, 1:-1] + L[1:-1, :-2]) / ha**2
    lbb = (L[2:, 1:-1] - 2 * L[1:-1, 1:-1] + L[:-2, 1:-1]) / hb**2
    lab = (L[2:, 2:] - L[2:, :-2] - L[:-2, 2:] + L[:-2, :-2]) / (4 * ha * hb)
    lam_min = (laa + lbb) / 2 - np.sqrt(((laa - lbb) / 2) ** 2 + lab**2)
    tol = 1e-9 * max(1.0, float(np.nanmax(np.abs(L))))
    return float(np.mean(lam_min < -tol))


def deep_model(S: Settings, out: str, seed: int, kind: str) -> dict:
    """Stage 3's unit: one deep network trained, with λmax, d_eff, a plane and rays."""
    kit = load_kit()
    net = kit.deep_net(kind, width=S.width, blocks=S.blocks, seed=seed)
    obj0, _ = kit.objectives(net, data())
    t0 = time.perf_counter()
    lam0 = pc.lanczos(obj0, k=1, rng=seed)
    run = kit.train_sgd(
        net,
        data(),
        lr=S.arch_lr,
        batch_size=S.arch_batch,
        target_loss=S.arch_target,
        max_epochs=S.arch_max_epochs,
        seed=seed,
        record_gradients=S.grad_window,
    )
    obj, test = kit.objectives(run.model, data())
    lam = pc.lanczos(obj, k=1, rng=seed)
    deff = pc.effective_dimension(run.gradients, share=0.9)
    name = f"{kind}_seed{seed}"
    dirs = pc.random_directions(obj, 2, rng=seed)
    grid = np.linspace(-1.0, 1.0, S.plane_points)
    plane = stored(
        out_path(out, "raw", "landscape", f"{name}_plane{S.plane_points}.zarr"),
        lambda store: pc.plane(obj, dirs, alphas=grid, betas=grid, progress=False, store=store),
    )
    # dᵀHd by one Hessian-vector product per ray: exact for these ReLU networks, where a
    # finite-difference step crosses activation changes (kinks) on about half the rays
    rays = stored(
        out_path(out, "raw", "landscape", f"{name}_hrays{S.n_rays}.zarr"),
        lambda store: pc.rays(
            obj, n_rays=S.n_rays, curvature="hessian", rng=seed, progress=False, store=store
        ),
    )
    save_all(
        out,
        "architecture",
        name,
        {"lambda_init": lam0, "lambda_end": lam, "effective_dimension": deff},
        {"seed": seed, "kind": kind},
    )
    spikes = count_spikes(run.epoch_losses)
    rec = {
        "seed": seed,
        "kind": kind,
        **trained_record(run, obj, test),
        "lambda_init": float(lam0.eigenvalues[0]),
        "lambda_max": float(lam.eigenvalues[0]),
        "lambda_hvps": lam0.n_matvecs + lam.n_matvecs,
        "spikes": spikes,
        "spike_rate": spikes / max(1, run.epoch_losses.size - 1),
        "d_eff": deff.d_eff,
        "d_eff_fraction": deff.d_eff / obj.dim,
        "gradient_steps": deff.n_samples,
        "ray_mean": rays.mean,
        "ray_mean_ci": list(map(float, rays.mean_ci)),
        "ray_negative": rays.negative_fraction,
        "ray_negative_ci": list(map(float, rays.negative_fraction_ci)),
        "ray_hvps": rays.n_hvps,
        "surface_nonconvex": nonconvex_share(plane),
        "plane_min": float(np.min(plane.losses)),
        "plane_max": float(np.max(plane.losses)),
    }
    reached = f"{run.epochs:.1f} epochs" if run.reached else "target not reached"
    return {
        "record": rec,
        "raw": (
            f"architecture/{name}",
            {
                "epoch_losses": run.epoch_losses,
                "explained_variance_ratio": deff.explained_variance_ratio,
                "ray_kappa": rays.kappa,
            },
        ),
        "keep": {"plane": plane, "rays": rays, "deff": deff, "losses": run.epoch_losses},
        "state": state_of(run.model),
        "timings": {f"{kind} seed {seed}": time.perf_counter() - t0},
        "line": (
            f"{kind:<13} seed {seed}: {reached}, λmax {rec['lambda_init']:.3g} → "
            f"{rec['lambda_max']:.3g}, d_eff {deff.d_eff}, test accuracy "
            f"{rec['test_accuracy']:.3f}"
        ),
    }


def pair(S: Settings, out: str, network: str, a: int, b: int, state_a: dict, state_b: dict) -> dict:
    """Stage 4's unit: the straight path and a fitted Bezier curve between two minima."""
    kit = load_kit()
    t0 = time.perf_counter()
    train, test = kit.objectives(model_from(S, network, a, state_a), data())
    xb = kit.objectives(model_from(S, network, b, state_b), data())[0].x0
    xa = train.x0
    line_train = pc.evaluate_path(train, xa, xb, n_points=S.path_points, metrics=False)
    line_test = pc.evaluate_path(test, xa, xb, n_points=S.path_points)
    fit = pc.fit_curve(train, xa, xb, kind="bezier", epochs=S.bezier_epochs, rng=a, progress=False)
    curve_train = pc.evaluate_path(train, fit, n_points=S.path_points, metrics=False)
    curve_test = pc.evaluate_path(test, fit, n_points=S.path_points)
    name = f"{network}_seeds{a}-{b}"
    save_all(
        out,
        "connectivity",
        name,
        {
            "line_train": line_train,
            "line_test": line_test,
            "bezier_train": curve_train,
            "bezier_test": curve_test,
            "bezier_fit": fit,
        },
        {"network": network, "seeds": [a, b]},
    )
    acc_line, acc_curve = line_test.metric("accuracy"), curve_test.metric("accuracy")
    rec = {
        "network": network,
        "seeds": [a, b],
        "dim": train.dim,
        "linear_barrier": line_train.barrier,
        "bezier_barrier": curve_train.barrier,
        # the straight path's ends are the two models
        "test_accuracy_ends": [float(acc_line[0]), float(acc_line[-1])],
        "linear_min_test_accuracy": float(np.min(acc_line)),
        "bezier_min_test_accuracy": float(np.min(acc_curve)),
        "linear_test_barrier": line_test.barrier,
        "bezier_test_barrier": curve_test.barrier,
    }
    return {
        "record": rec,
        "raw": (
            f"connectivity/{name}",
            {
                "ts": line_train.ts,
                "linear_train_loss": line_train.losses,
                "linear_test_accuracy": acc_line,
                "bezier_train_loss": curve_train.losses,
                "bezier_test_accuracy": acc_curve,
            },
        ),
        "keep": {
            "ts": line_train.ts,
            "line_loss": line_train.losses,
            "curve_loss": curve_train.losses,
            "line_acc": acc_line,
            "curve_acc": acc_curve,
        },
        "state": None,
        "timings": {f"connect {network} {a}-{b}": time.perf_counter() - t0},
        "line": (
            f"{network} seeds {a} and {b}: barrier straight {line_train.barrier:.3g}, Bezier "
            f"{curve_train.barrier:.3g}; lowest test accuracy {np.min(acc_line):.3f} / "
            f"{np.min(acc_curve):.3f}"
        ),
    }
