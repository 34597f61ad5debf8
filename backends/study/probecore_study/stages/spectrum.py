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
from probecore_study.numbers import fmt, pct
from probecore_study.report import figure, table


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
    rows, res, rec = [], {}, {}
    for method in ("lanczos", "eigsh"):
        r = pc.lanczos(op, k=S.k, method=method, rng=seed)
        err = float(np.max(np.abs(r.eigenvalues - exact[::-1][: S.k]) / abs(exact[-1])))
        rows.append([f"`lanczos(method={method!r})`", fmt(r.eigenvalues[0]), fmt(err), r.n_matvecs])
        res[f"eig_{method}"] = r
        rec[f"eig_{method}"] = {
            "eigenvalues": r.eigenvalues.tolist(),
            "max_relative_error": err,
            "hvps": r.n_matvecs,
        }
    p = pc.power_iteration(op, rng=seed, maxiter=20000, raise_on_failure=False)
    err = float(abs(p.eigenvalue - exact[-1]) / exact[-1])
    rows.append(["`power_iteration`", fmt(p.eigenvalue), fmt(err), p.n_matvecs])
    res["power"] = p
    rec["power_iteration"] = {
        "eigenvalue": float(p.eigenvalue),
        "relative_error": err,
        "hvps": p.n_matvecs,
        "converged": bool(p.converged),
    }
    true_trace = float(np.trace(H))
    tr_rows = []
    for name, fn in (
        ("hutchinson", lambda: pc.hutchinson(op, n_probes=S.trace_matvecs, rng=seed)),
        ("hutch++", lambda: pc.hutchpp(op, n_matvecs=S.trace_matvecs, rng=seed)),
    ):
        r = fn()
        z = float((r.estimate - true_trace) / r.std_error) if r.std_error > 0 else 0.0
        rel = float(abs(r.estimate - true_trace) / true_trace)
        tr_rows.append(
            [f"`{name}`", f"{fmt(r.estimate)} ± {fmt(r.std_error)}", fmt(rel), fmt(z), r.n_matvecs]
        )
        res[f"trace_{name}"] = r
        rec[f"trace_{name}"] = {
            "estimate": float(r.estimate),
            "std_error": float(r.std_error),
            "relative_error": rel,
            "z": z,
            "hvps": r.n_matvecs,
        }
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
    name = figures.density(ctx, exact, dens)
    h2 = float(np.sum(exact**2) / train.dim)
    ctx.results["spectrum"] = {
        "dim": train.dim,
        "n_train": train.n_examples,
        "n_test": test.n_examples,
        "l2": S.l2,
        "lambda_exact": exact[::-1][: S.k].tolist(),
        **rec,
        "trace_exact": true_trace,
        "density": {
            "probes": dens.n_probes,
            "steps": int(dens.nodes.shape[1]),
            "hvps": dens.n_matvecs,
            "moment1": float(m1),
            "moment1_se": float(se1),
            "moment1_exact": true_trace / train.dim,
            "moment2": float(m2),
            "moment2_se": float(se2),
            "moment2_exact": h2,
            "w1": float(w1),
            "w1_fraction_of_range": float(w1 / spread),
        },
        "density_w1_percent": 100 * w1 / spread,
        "train_accuracy": acc_train,
        "test_accuracy": acc_test,
    }
    ctx.progress.step(
        f"spectrum: λmax {exact[-1]:.6g} (exact), Lanczos error "
        f"{rec['eig_lanczos']['max_relative_error']:.1e}, SLQ distance {100 * w1 / spread:.3f}%"
    )
    return [
        "## 1. The estimators against an exact Hessian",
        "",
        f"Multinomial logistic regression (L2 = {S.l2:g}) on digits: "
        f"{fmt(int(train.n_examples))} training and {fmt(int(test.n_examples))} test images, "
        f"{fmt(int(train.dim))} parameters, trained to its "
        f"minimum with L-BFGS (train accuracy {pct(acc_train)}, test accuracy "
        f"{pct(acc_test)}). Its Hessian is known in closed form, so every estimator the study "
        "uses below is checked here against the exact answer first. Eigenvalues and traces "
        "in nats per unit² of parameter distance.",
        "",
        f"Top {S.k} eigenvalues, exact: {', '.join(fmt(v) for v in exact[::-1][: S.k])}.",
        "",
        *table(
            [
                "method",
                "λmax",
                f"largest error of the top {S.k} / exact λmax",
                "HVPs",
            ],
            rows,
        ),
        "Power iteration finds only λmax; its error is for λmax alone.",
        "",
        f"Trace, exact {fmt(true_trace)}; budget {S.trace_matvecs} HVPs each:",
        "",
        *table(
            [
                "estimator",
                "estimate ± s.e.",
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
            ["quantity", "SLQ ± s.e.", "exact"],
            [
                ["tr(H)/d", f"{fmt(m1)} ± {fmt(se1)}", fmt(true_trace / train.dim)],
                ["tr(H²)/d", f"{fmt(m2)} ± {fmt(se2)}", fmt(h2)],
                [
                    "1-Wasserstein distance to the exact eigenvalue distribution",
                    f"{fmt(w1)} ({pct(w1 / spread)} of the spectral range)",
                    "0",
                ],
            ],
        ),
        *figure(
            ctx,
            name,
            "Eigenvalue density of the logistic-regression Hessian: a histogram of the "
            f"{train.dim} exact eigenvalues against the SLQ estimate ({dens.n_probes} probes). "
            "Log scale: the bulk near zero and the few large eigenvalues both show.",
        ),
    ]
