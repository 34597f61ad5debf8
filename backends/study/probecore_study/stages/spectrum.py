"""Stage 1, ``spectrum``: the estimators against the exact Hessian of logistic regression.

Multinomial logistic regression on digits has a Hessian in closed form, so Lanczos, ARPACK,
power iteration, Hutchinson, Hutch++ and SLQ are checked against the exact answer before
any network is measured. Core only: no torch.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance

import probecore as pc
from probecore.analytic import digits_logistic_regression
from probecore_study import figures
from probecore_study.context import Context
from probecore_study.report import table


def run(ctx: Context) -> list[str]:
    """The spectrum stage: measure, record, and return its report section."""
    S, seed = ctx.settings, ctx.seed
    train = digits_logistic_regression(l2=S.l2, split="train", seed=0)
    test = digits_logistic_regression(l2=S.l2, split="test", seed=0)
    x = train.minimize()
    acc_train, acc_test = train.metrics(x)["accuracy"], test.metrics(x)["accuracy"]
    H = train.hessian(x)
    exact = np.linalg.eigvalsh(H)
    op = pc.HessianOperator(train, x)
    rows, res = [], {}
    for method in ("lanczos", "eigsh"):
        r = pc.lanczos(op, k=S.k, method=method, rng=seed)
        err = np.max(np.abs(r.eigenvalues - exact[::-1][: S.k]) / abs(exact[-1]))
        rows.append(
            [f"`lanczos(method={method!r})`", f"{r.eigenvalues[0]:.8g}", f"{err:.2e}", r.n_matvecs]
        )
        res[f"eig_{method}"] = r
    p = pc.power_iteration(op, rng=seed, maxiter=20000, raise_on_failure=False)
    rows.append(
        [
            "`power_iteration`",
            f"{p.eigenvalue:.8g}",
            f"{abs(p.eigenvalue - exact[-1]) / exact[-1]:.2e}",
            p.n_matvecs,
        ]
    )
    res["power"] = p
    true_trace = float(np.trace(H))
    tr_rows = []
    for name, fn in (
        ("hutchinson", lambda: pc.hutchinson(op, n_probes=S.trace_matvecs, rng=seed)),
        ("hutch++", lambda: pc.hutchpp(op, n_matvecs=S.trace_matvecs, rng=seed)),
    ):
        r = fn()
        z = (r.estimate - true_trace) / r.std_error if r.std_error > 0 else 0.0
        tr_rows.append(
            [
                f"`{name}`",
                f"{r.estimate:.6g} ± {r.std_error:.2g}",
                f"{abs(r.estimate - true_trace) / true_trace:.2e}",
                f"{z:+.2f}",
                r.n_matvecs,
            ]
        )
        res[f"trace_{name}"] = r
    dens = pc.spectral_density(op, rng=seed)
    res["density"] = dens
    nodes, weights = dens.pooled()
    w1 = wasserstein_distance(nodes, exact, u_weights=weights)
    spread = exact[-1] - exact[0]
    m1, se1 = dens.moment(1)
    m2, se2 = dens.moment(2)
    for name, r in res.items():  # spectrum results keep their names (no model prefix)
        pc.save(
            r,
            ctx.path("raw", "spectrum", name),
            metadata={
                "objective": "digits logistic regression",
                "l2": S.l2,
                "seed": seed,
                "n_train": train.n_examples,
                "dim": train.dim,
            },
        )
    figure = figures.density(ctx, exact, dens)
    ctx.results["spectrum"] = {
        "lambda_exact": exact[::-1][: S.k].tolist(),
        "lambda_lanczos": res["eig_lanczos"].eigenvalues.tolist(),
        "trace_exact": true_trace,
        "trace_hutchpp": res["trace_hutch++"].estimate,
        "density_w1_percent": 100 * w1 / spread,
        "train_accuracy": acc_train,
        "test_accuracy": acc_test,
    }
    ctx.progress.step(
        f"spectrum: λmax {exact[-1]:.6g} (exact), Lanczos error "
        f"{float(rows[0][2]):.1e}, SLQ distance {100 * w1 / spread:.3f}%"
    )
    return [
        "## 1. The estimators against an exact Hessian",
        "",
        f"Multinomial logistic regression (L2 = {S.l2}) on digits: {train.n_examples} "
        f"training and {test.n_examples} test images, {train.dim} parameters, trained to its "
        f"minimum with L-BFGS (train accuracy {acc_train:.3f}, test accuracy {acc_test:.3f}). "
        "Its Hessian is known in closed form, so every estimator the study uses below is "
        "checked here against the exact answer first.",
        "",
        f"Top {S.k} eigenvalues, exact: {', '.join(f'{v:.6g}' for v in exact[::-1][: S.k])}.",
        "",
        *table(["method", "λmax", "max error / λmax (top k)", "HVPs"], rows),
        "Power iteration finds only λmax; its error is for λmax alone.",
        "",
        f"Trace, exact {true_trace:.6g}; budget {S.trace_matvecs} HVPs each:",
        "",
        *table(
            [
                "estimator",
                "estimate ± standard error",
                "relative error",
                "(estimate − truth)/SE",
                "HVPs",
            ],
            tr_rows,
        ),
        f"Spectral density (stochastic Lanczos quadrature): {dens.n_probes} probes × "
        f"{dens.nodes.shape[1]} Lanczos steps = {dens.n_matvecs} HVPs.",
        "",
        *table(
            ["quantity", "SLQ", "exact"],
            [
                ["tr(H)/d", f"{m1:.6g} ± {se1:.2g}", f"{true_trace / train.dim:.6g}"],
                ["tr(H²)/d", f"{m2:.6g} ± {se2:.2g}", f"{np.sum(exact**2) / train.dim:.6g}"],
                [
                    "1-Wasserstein distance to the exact eigenvalue distribution",
                    f"{w1:.3g} ({100 * w1 / spread:.3f}% of the spectral range)",
                    "0",
                ],
            ],
        ),
        f"![spectral density]({figure})",
        "",
    ]
