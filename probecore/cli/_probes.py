"""``probecore <probe> module:function``: the probes on a user's own model.

The target is ``module:function`` (a dotted module on ``sys.path``, or a path to a
``.py`` file) naming a function without arguments that returns what
:func:`probecore.objective` takes: ``(model, loss_fn, data)``, or a dict with those keys
and optionally ``options`` (backend options such as ``dtype``), or an Objective itself.
The backend is picked by the plugin system. Each subcommand prints a short summary and
writes its result (``.npz``, readable with :func:`probecore.load`) and a figure to
``--out``.

Every option is checked by :func:`check_args` before the target is imported, against
what the probe's library function requires, so that a wrong value costs no model
building. This module imports nothing heavy at import time (no numpy, scipy or
matplotlib): ``probecore --help`` builds its parsers from it.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from probecore.cli._targets import CLIError, check_target, load_objective, one_line

__all__ = ["CLIError", "add_probe_parsers", "check_args", "one_line", "run_probe"]

PROBES = ("eigenvalues", "trace", "density", "plane", "rays", "connect", "sharpness", "dimension")


# --------------------------------------------------------------------------- options


def _flag(dest: str) -> str:
    return f"`--{dest.replace('_', '-')}`"


def _at_least(args: argparse.Namespace, dest: str, lo: int, why: str = "") -> None:
    value = getattr(args, dest)
    if value < lo:
        raise CLIError(f"{_flag(dest)} must be >= {lo}{why}; got {value}.")


def _positive(args: argparse.Namespace, dest: str, why: str = "") -> None:
    value = getattr(args, dest)
    if value is not None and not (math.isfinite(value) and value > 0):
        raise CLIError(f"{_flag(dest)} must be a finite number > 0{why}; got {value}.")


def _check_out(out: str) -> None:
    """``--out`` must be a folder, or creatable as one."""
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise CLIError(f"`--out` {out!r} is not a folder (a file of that name exists).")
        if not os.access(out, os.W_OK | os.X_OK):
            raise CLIError(f"`--out` {out!r} is a folder that is not writable.")
        return
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise CLIError(f"`--out` {out!r} cannot be created: {parent!r} is a file.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"`--out` {out!r} cannot be created: {parent!r} is not writable.")


def check_args(args: argparse.Namespace) -> None:
    """Check every option of a probe subcommand, before its target is imported.

    The constraints are those of the library function each probe calls (``--k >= 1`` for
    :func:`probecore.lanczos`, ``--n-matvecs >= 4`` for :func:`probecore.hutchpp`, ...);
    the ones that depend on the model (``--k`` at most its dimension, ``--batch-size`` at
    most half its data) are checked once it is built.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line of one probe subcommand.

    Raises
    ------
    CLIError
        Naming the option, the constraint and the value, for the first bad one.
    """
    cmd = args.command
    check_target(args.target)
    if cmd == "connect":
        check_target(args.end, "`--end`")
    _check_out(args.out)
    if args.seed < 0:
        raise CLIError(f"`--seed` must be a non-negative integer; got {args.seed}.")
    if cmd == "eigenvalues":
        _at_least(args, "k", 1, " (the number of eigenvalues)")
        if args.tol is not None and not (math.isfinite(args.tol) and args.tol >= 0):
            raise CLIError(f"`--tol` must be a finite number >= 0; got {args.tol}.")
    elif cmd == "trace":
        # hutchpp: a third of the budget sketches, a third is exact, and at least 2
        # Hutchinson probes remain; hutchinson: 2 probes for a standard error.
        lo = 4 if args.method == "hutchpp" else 2
        _at_least(args, "n_matvecs", lo, f" with --method {args.method}")
    elif cmd == "density":
        _at_least(args, "n_probes", 1)
        _at_least(args, "n_steps", 1, " (Lanczos steps per probe)")
    elif cmd == "plane":
        _at_least(args, "n", 2, " (points per axis: the contour needs a grid)")
        _positive(args, "extent", " (the grid spans [-extent, extent])")
    elif cmd == "rays":
        _at_least(args, "n_rays", 1)
        _positive(args, "eps", " (the finite-difference step)")
        if args.hessian and args.eps is not None:
            raise CLIError(
                f"`--eps` is the finite-difference step and `--hessian` takes none; got "
                f"--eps {args.eps} with --hessian."
            )
    elif cmd == "connect":
        _at_least(args, "bends", 1, " (free control points)")
        _at_least(args, "epochs", 1)
        _at_least(args, "batch_size", 1)
        _positive(args, "lr")
        _at_least(args, "points", 2, " (the two ends at least)")
    elif cmd == "sharpness":
        _positive(args, "eps", " (the size of the box)")
        _at_least(args, "maxiter", 1)
    elif cmd == "dimension":
        _at_least(args, "batch_size", 1)
        share = args.share
        if not (math.isfinite(share) and 0 < share <= 1):
            hint = f" (for {share:g}% pass {share / 100:g})" if 1 < share <= 100 else ""
            raise CLIError(
                f"`--share` must be a fraction in (0, 1] of the variance; got {share:g}{hint}."
            )


# --------------------------------------------------------------------------- probes


def _save(result: Any, out: str, name: str, target: str) -> str:
    import probecore as pc

    return pc.save(result, os.path.join(out, name), metadata={"target": target})


def _figure(ax: Any, out: str, name: str) -> str:
    import numpy as np

    path = os.path.join(out, name)
    fig = np.atleast_1d(ax)[0].figure
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_probe(args: argparse.Namespace) -> int:
    """Run the probe subcommand ``args.command``; returns the exit status.

    Every option is checked (:func:`check_args`) before the target is imported.
    """
    check_args(args)
    import numpy as np

    import probecore as pc
    from probecore import plot

    out = args.out
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"`--out` {out!r} cannot be created: {exc.strerror or exc}.") from exc
    obj = load_objective(args.target)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say(f"probecore {args.command}: {args.target}: {obj.dim:,} parameters, {obj.dtype}")
    cmd = args.command
    files = []
    r: Any  # each probe's own result type
    if cmd == "eigenvalues":
        r = pc.lanczos(obj, k=args.k, which=args.which, tol=args.tol, rng=args.seed)
        files.append(_save(r, out, "eigenvalues", args.target))
        for v, res in zip(r.eigenvalues, r.residual_norms, strict=True):
            say(f"  {v:.10g}  (residual {res:.2g})")
        say(f"  {r.n_matvecs} HVPs, converged: {r.converged}")
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.bar(np.arange(1, r.eigenvalues.size + 1), r.eigenvalues)
        ax.set_xlabel("index")
        ax.set_ylabel("eigenvalue")
        files.append(_figure(ax, out, "eigenvalues.png"))
    elif cmd == "trace":
        fn = pc.hutchpp if args.method == "hutchpp" else pc.hutchinson
        key = "n_matvecs" if args.method == "hutchpp" else "n_probes"
        r = fn(obj, **{key: args.n_matvecs}, rng=args.seed)
        files.append(_save(r, out, "trace", args.target))
        say(f"  trace {r.estimate:.8g} ± {r.std_error:.2g} ({r.method}, {r.n_matvecs} HVPs)")
    elif cmd == "density":
        r = pc.spectral_density(obj, n_probes=args.n_probes, n_steps=args.n_steps, rng=args.seed)
        files.append(_save(r, out, "density", args.target))
        m, se = r.moment(1)
        say(
            f"  {r.n_probes} probes × {args.n_steps} steps = {r.n_matvecs} HVPs; "
            f"tr(H)/d {m:.6g} ± {se:.2g}"
        )
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        ax.plot(r.grid, r.density)
        ax.set_yscale("log")
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density")
        files.append(_figure(ax, out, "density.png"))
    elif cmd == "plane":
        d = pc.random_directions(obj, k=2, rng=args.seed, normalization=args.normalization)
        grid = np.linspace(-args.extent, args.extent, args.n)
        r = pc.plane(
            obj,
            d,
            alphas=grid,
            betas=grid,
            store=os.path.join(out, "plane.zarr"),
            progress=None if not args.quiet else False,
        )
        say(
            f"  {args.n}×{args.n} plane, loss {np.nanmin(r.losses):.4g} to "
            f"{np.nanmax(r.losses):.4g}; {r.n_loss_evals} loss evaluations; stored in "
            f"{os.path.join(out, 'plane.zarr')}"
        )
        files.append(os.path.join(out, "plane.zarr"))
        _plt()
        files.append(_figure(plot.contour(r), out, "plane_contour.png"))
        files.append(_figure(plot.surface(r), out, "plane_surface.png"))
    elif cmd == "rays":
        r = pc.rays(
            obj,
            n_rays=args.n_rays,
            eps=args.eps,
            curvature="hessian" if args.hessian else "difference",
            rng=args.seed,
            progress=False,
        )
        files.append(_save(r, out, "rays", args.target))
        how = "dᵀHd, one HVP each" if args.hessian else f"ε = {r.eps:.3g}"
        say(
            f"  mean curvature {r.mean:.6g} ± {r.sem:.2g}, negative fraction "
            f"{r.negative_fraction:.3f} ({r.kappa.size} rays, {how})"
        )
        _plt()
        files.append(_figure(plot.ray_histogram(r), out, "rays.png"))
    elif cmd == "connect":
        end = load_objective(args.end, "`--end`")
        line = pc.evaluate_path(obj, obj, end, n_points=args.points)
        fit = pc.fit_curve(
            obj,
            obj,
            end,
            kind=args.kind,
            n_bends=args.bends,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            rng=args.seed,
            progress=None if not args.quiet else False,
        )
        curve = pc.evaluate_path(obj, fit.curve, n_points=args.points)
        for res, name in ((line, "path_linear"), (fit, "curve_fit"), (curve, "path_curve")):
            files.append(_save(res, out, name, args.target))
        say(
            f"  linear barrier {line.barrier:.6g}, {args.kind} barrier {curve.barrier:.6g} "
            f"({fit.n_grad_evals} gradient evaluations)"
        )
        _plt()
        metric = "accuracy" if "accuracy" in line.metric_names else None
        files.append(_figure(plot.paths(line, curve, metric=metric), out, "paths.png"))
    elif cmd == "sharpness":
        r = pc.epsilon_sharpness(
            obj, eps=args.eps, adaptive=args.adaptive, maxiter=args.maxiter, rng=args.seed
        )
        files.append(_save(r, out, "sharpness", args.target))
        top = pc.lanczos(obj, k=1, verify=False, rng=args.seed)
        files.append(_save(top, out, "lambda_max", args.target))
        say(
            f"  ε-sharpness ({'adaptive' if args.adaptive else 'Keskar'}, ε = {args.eps:g}): "
            f"{r.percent:.6g}% ({r.n_loss_evals} loss/gradient evaluations, converged: "
            f"{r.converged}); λmax {top.eigenvalues[0]:.6g} ({top.n_matvecs} HVPs)"
        )
    elif cmd == "dimension":
        n = getattr(obj, "n_examples", None)
        if n is None:
            raise CLIError("dimension needs an objective with data (mini-batch gradients).")
        if args.batch_size > n // 2:
            raise CLIError(
                f"`--batch-size` must be <= {n // 2} (half the {n} examples: the effective "
                f"dimension needs at least 2 mini-batch gradients); got {args.batch_size}."
            )
        gen = np.random.default_rng(args.seed)
        perm = gen.permutation(n)
        G = np.stack(
            [
                obj.subset(np.sort(perm[i : i + args.batch_size])).grad(obj.x0)
                for i in range(0, n - args.batch_size + 1, args.batch_size)
            ]
        )
        r = pc.effective_dimension(G.astype(np.float64), share=args.share)
        files.append(_save(r, out, "dimension", args.target))
        say(
            f"  d_eff = {r.d_eff} of {r.n_samples} mini-batch gradients ({args.share:.0%} "
            f"of their variance, batch {args.batch_size})"
        )
        _plt()
        files.append(_figure(plot.explained_variance(r), out, "dimension.png"))
    for f in files:
        say(f"  wrote {f}")
    return 0


def add_probe_parsers(sub: Any) -> None:
    """The probe subcommands, each with its own options."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "target",
            help="module:function (or path/to/file.py:function) returning (model, loss_fn, "
            "data), a dict with those keys and optional 'options', or an Objective",
        )
        p.add_argument(
            "--out", default="probecore-out", help="output folder (default: %(default)s)"
        )
        p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
        p.add_argument("--quiet", action="store_true", help="print nothing but errors")
        p.add_argument(
            "--traceback",
            action="store_true",
            default=argparse.SUPPRESS,  # keeps `probecore --traceback <probe>` working
            help="on an error, print the full traceback instead of one line",
        )
        p.set_defaults(func=run_probe)

    p = sub.add_parser(
        "eigenvalues",
        help="top Hessian eigenvalues (Lanczos)",
        description="Extreme Hessian eigenvalues by thick-restart Lanczos.",
    )
    common(p)
    p.add_argument("--k", type=int, default=5, help="number of eigenvalues (default: %(default)s)")
    p.add_argument(
        "--which",
        default="LA",
        choices=("LA", "SA", "LM"),
        help="largest (LA), smallest (SA) or largest magnitude (LM) (default: %(default)s)",
    )
    p.add_argument(
        "--tol",
        type=float,
        default=None,
        help="relative residual tolerance (default: 1e-8 in float64, 1e-4 in float32)",
    )
    p = sub.add_parser(
        "trace",
        help="Hessian trace with standard error",
        description="Hessian trace by Hutch++ or Hutchinson, with its standard error.",
    )
    common(p)
    p.add_argument("--n-matvecs", type=int, default=99, help="HVP budget (default: %(default)s)")
    p.add_argument(
        "--method",
        default="hutchpp",
        choices=("hutchpp", "hutchinson"),
        help="estimator (default: %(default)s)",
    )
    p = sub.add_parser(
        "density",
        help="spectral density (stochastic Lanczos quadrature)",
        description="Hessian spectral density by stochastic Lanczos quadrature.",
    )
    common(p)
    p.add_argument("--n-probes", type=int, default=5, help="random probes (default: %(default)s)")
    p.add_argument(
        "--n-steps", type=int, default=60, help="Lanczos steps per probe (default: %(default)s)"
    )
    p = sub.add_parser(
        "plane",
        help="filter-normalized 2D loss surface",
        description="Loss on a filter-normalized random plane (Li et al. 2018), "
        "stored as it goes (rerun to resume), with contour and surface figures.",
    )
    common(p)
    p.add_argument("--n", type=int, default=21, help="points per axis (default: %(default)s)")
    p.add_argument(
        "--extent",
        type=float,
        default=1.0,
        help="grid over [-extent, extent]² (default: %(default)s)",
    )
    p.add_argument(
        "--normalization",
        default="filter",
        choices=("filter", "layer", "none"),
        help="direction normalization (default: %(default)s)",
    )
    p = sub.add_parser(
        "rays",
        help="curvature along random rays",
        description="Curvature along random unit rays: the second difference of the loss, "
        "or with --hessian dᵀHd from one Hessian-vector product per ray.",
    )
    common(p)
    p.add_argument("--n-rays", type=int, default=100, help="number of rays (default: %(default)s)")
    p.add_argument(
        "--eps",
        type=float,
        default=None,
        help="finite-difference step (default: 1e-5 in float64, 0.1 in float32)",
    )
    p.add_argument(
        "--hessian",
        action="store_true",
        help="exact dᵀHd per ray from one HVP, no step (float32 ReLU networks)",
    )
    p = sub.add_parser(
        "connect",
        help="mode connectivity between two models",
        description="Barrier of the straight path between two models and of a "
        "fitted curve (Garipov et al. 2018).",
    )
    common(p)
    p.add_argument(
        "--end",
        required=True,
        metavar="module:function",
        help="the second model, as module:function (or path/to/file.py:function)",
    )
    p.add_argument(
        "--kind", default="bezier", choices=("bezier", "chain"), help="curve (default: %(default)s)"
    )
    p.add_argument(
        "--bends", type=int, default=1, help="free control points (default: %(default)s)"
    )
    p.add_argument("--epochs", type=int, default=20, help="fitting epochs (default: %(default)s)")
    p.add_argument(
        "--batch-size", type=int, default=128, help="mini-batch size (default: %(default)s)"
    )
    p.add_argument("--lr", type=float, default=1e-2, help="Adam step size (default: %(default)s)")
    p.add_argument(
        "--points", type=int, default=31, help="points along each path (default: %(default)s)"
    )
    p = sub.add_parser(
        "sharpness",
        help="ε-sharpness and λmax",
        description="ε-sharpness (Keskar et al. 2017, or the adaptive box) and λmax.",
    )
    common(p)
    p.add_argument("--eps", type=float, default=1e-3, help="box size (default: %(default)s)")
    p.add_argument("--adaptive", action="store_true", help="scale-invariant box ε·|x|")
    p.add_argument(
        "--maxiter",
        type=int,
        default=1000,
        help="L-BFGS-B iterations (default: %(default)s; Keskar et al. used 10)",
    )
    p = sub.add_parser(
        "dimension",
        help="effective dimension of mini-batch gradients",
        description="Number of principal components explaining a share of the "
        "variance of the mini-batch gradients at the model's parameters.",
    )
    common(p)
    p.add_argument(
        "--batch-size", type=int, default=32, help="examples per gradient (default: %(default)s)"
    )
    p.add_argument(
        "--share", type=float, default=0.9, help="share of variance (default: %(default)s)"
    )
