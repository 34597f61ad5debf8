"""The ``probecore`` command.

``probecore study`` is the main job; ``probecore eigenvalues|trace|density|plane|rays|
connect|sharpness|dimension module:function`` run one probe on a user's own model
(:mod:`probecore._cli_probes`). At this stage of the project it runs the spectrum
stage on real data: multinomial logistic regression on scikit-learn's digits, trained to
its minimum, whose Hessian is known in closed form. It measures the top eigenvalues
(Lanczos, ARPACK, power iteration), the trace (Hutchinson, Hutch++) and the spectral
density (SLQ), compares each with the exact answer, and writes ``report.md``, the raw
results and a density figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

__all__ = ["main"]


def _study(args: argparse.Namespace) -> int:
    from scipy.stats import wasserstein_distance

    import probecore as pc
    from probecore.analytic import digits_logistic_regression

    out = args.out
    os.makedirs(out, exist_ok=True)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    t_start = time.perf_counter()
    say("probecore study: logistic regression on scikit-learn digits (spectrum stage)")
    train = digits_logistic_regression(l2=args.l2, split="train", seed=args.seed)
    test = digits_logistic_regression(l2=args.l2, split="test", seed=args.seed)
    say(
        f"  training to the minimum with L-BFGS ({train.n_examples} train examples, "
        f"{train.dim} parameters) ..."
    )
    x = train.minimize()
    acc_train = train.metrics(x)["accuracy"]
    acc_test = test.metrics(x)["accuracy"]
    say(f"  loss {train.loss(x):.4f}, train accuracy {acc_train:.3f}, test accuracy {acc_test:.3f}")

    say("  exact Hessian (closed form) ...")
    H = train.hessian(x)
    exact = np.linalg.eigvalsh(H)
    op = pc.HessianOperator(train, x)
    k = args.k
    rows = []
    results = {}
    for method in ("lanczos", "eigsh"):
        t0 = time.perf_counter()
        r = pc.lanczos(op, k=k, method=method, rng=args.seed)
        dt = time.perf_counter() - t0
        err = np.max(np.abs(r.eigenvalues - exact[::-1][:k]) / abs(exact[-1]))
        rows.append(
            (
                f"`lanczos(method={method!r})`",
                f"{r.eigenvalues[0]:.8g}",
                f"{err:.2e}",
                r.n_matvecs,
                f"{dt:.2f}",
            )
        )
        results[f"eig_{method}"] = r
    t0 = time.perf_counter()
    p = pc.power_iteration(op, rng=args.seed, maxiter=20000, raise_on_failure=False)
    dt = time.perf_counter() - t0
    rows.append(
        (
            "`power_iteration`",
            f"{p.eigenvalue:.8g}",
            f"{abs(p.eigenvalue - exact[-1]) / exact[-1]:.2e}",
            p.n_matvecs,
            f"{dt:.2f}",
        )
    )
    results["power"] = p

    say("  trace and density ...")
    true_trace = float(np.trace(H))
    tr_rows = []
    budget = args.trace_budget
    for name, fn in (
        ("hutchinson", lambda: pc.hutchinson(op, n_probes=budget, rng=args.seed)),
        ("hutch++", lambda: pc.hutchpp(op, n_matvecs=budget, rng=args.seed)),
    ):
        r = fn()
        z = (r.estimate - true_trace) / r.std_error if r.std_error > 0 else 0.0
        tr_rows.append(
            (
                f"`{name}`",
                f"{r.estimate:.6g} ± {r.std_error:.2g}",
                f"{abs(r.estimate - true_trace) / true_trace:.2e}",
                f"{z:+.2f}",
                r.n_matvecs,
            )
        )
        results[f"trace_{name}"] = r
    dens = pc.spectral_density(op, rng=args.seed)
    results["density"] = dens
    nodes, weights = dens.pooled()
    w1 = wasserstein_distance(nodes, exact, u_weights=weights)
    spread = exact[-1] - exact[0]
    m1, se1 = dens.moment(1)
    m2, se2 = dens.moment(2)

    for name, r in results.items():
        pc.save(
            r,
            os.path.join(out, name),
            metadata={
                "objective": "digits logistic regression",
                "l2": args.l2,
                "seed": args.seed,
                "n_train": train.n_examples,
                "dim": train.dim,
            },
        )
    figure = None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(exact, bins=120, density=True, alpha=0.4, label="exact eigenvalues")
        ax.plot(dens.grid, dens.density, lw=1.2, label="SLQ estimate")
        ax.set_yscale("log")
        ax.set_ylim(1e-4, 3 * float(dens.density.max()))
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density")
        ax.legend()
        fig.tight_layout()
        figure = "density.png"
        fig.savefig(os.path.join(out, figure), dpi=120)
        plt.close(fig)
    except ImportError:
        say("  (matplotlib not installed: no figure)")

    elapsed = time.perf_counter() - t_start
    lines = [
        "# probecore study — spectrum stage",
        "",
        f"Multinomial logistic regression (L2 = {args.l2}) on scikit-learn digits: "
        f"{train.n_examples} training and {test.n_examples} test images, {train.dim} "
        f"parameters, trained to its minimum with L-BFGS. Train accuracy {acc_train:.3f}, "
        f"test accuracy {acc_test:.3f}. Every estimate below is compared with the exact "
        "Hessian, computed in closed form. Seed "
        f"{args.seed}; total time {elapsed:.1f} s.",
        "",
        f"## Top {k} eigenvalues",
        "",
        f"Exact: {', '.join(f'{v:.6g}' for v in exact[::-1][:k])}.",
        "",
        "| method | λmax | max relative error (top k) | HVPs | seconds |",
        "|---|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows],
        "",
        "Power iteration finds only λmax; its error is for λmax alone.",
        "",
        "## Trace",
        "",
        f"Exact trace: {true_trace:.6g}. Budget: {budget} HVPs each.",
        "",
        "| estimator | estimate ± standard error | relative error | (estimate − truth)/SE | HVPs |",
        "|---|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in tr_rows],
        "",
        "## Spectral density (stochastic Lanczos quadrature)",
        "",
        f"{dens.n_probes} probes × {dens.nodes.shape[1]} Lanczos steps = {dens.n_matvecs} HVPs.",
        "",
        "| quantity | SLQ | exact |",
        "|---|---|---|",
        f"| tr(H)/d | {m1:.6g} ± {se1:.2g} | {true_trace / train.dim:.6g} |",
        f"| tr(H²)/d | {m2:.6g} ± {se2:.2g} | {np.sum(exact**2) / train.dim:.6g} |",
        f"| 1-Wasserstein distance to the exact eigenvalue distribution | {w1:.3g} "
        f"({100 * w1 / spread:.3f}% of the spectral range) | 0 |",
        "",
    ]
    if figure:
        lines += [f"![spectral density]({figure})", ""]
    lines += [
        "Raw results (`.npz`, readable with `probecore.load` or `numpy.load`) are "
        "beside this report.",
        "",
    ]
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    say(f"  report written to {os.path.join(out, 'report.md')} ({elapsed:.1f} s)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probecore",
        description="Measure the geometry of neural-network loss landscapes.",
    )
    parser.add_argument(
        "--version", action="version", version=f"probecore {__import__('probecore').__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    study = sub.add_parser(
        "study",
        help="run the main job on scikit-learn digits and write a report",
        description="Run the spectrum stage on logistic regression over scikit-learn "
        "digits: top eigenvalues, trace and spectral density, each checked against the "
        "exact Hessian. Writes report.md, raw results (.npz) and a figure.",
    )
    study.add_argument(
        "--out", default="probecore-study", help="output folder (default: %(default)s)"
    )
    study.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    study.add_argument(
        "--k", type=int, default=5, help="number of top eigenvalues (default: %(default)s)"
    )
    study.add_argument("--l2", type=float, default=1e-3, help="L2 penalty (default: %(default)s)")
    study.add_argument(
        "--trace-budget",
        type=int,
        default=99,
        help="HVPs per trace estimator (default: %(default)s)",
    )
    study.add_argument("--quiet", action="store_true", help="print nothing but errors")
    study.set_defaults(func=_study)
    from probecore._cli_probes import add_probe_parsers

    add_probe_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``probecore`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    from probecore._cli_probes import CLIError
    from probecore._errors import ConvergenceError

    try:
        return int(args.func(args))
    except (CLIError, ValueError, TypeError, ImportError, OSError, ConvergenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"probecore {args.command}: error: {first}", file=sys.stderr)
        return 2
