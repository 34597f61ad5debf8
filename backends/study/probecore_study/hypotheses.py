"""The seed paper's hypotheses, each split into the claims it makes with numbers, judged.

:func:`judge` reads what the stages recorded in the run's context and applies the rules of
:mod:`probecore_study.verdicts`; a hypothesis whose stage did not run is "not run".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probecore_study import verdicts as V
from probecore_study.context import Context


@dataclass(frozen=True)
class Claim:
    """One row of a hypothesis's table: the claim, what was measured, and the verdict."""

    claim: str
    measured: str
    n: str
    verdict: str
    why: str
    judged: bool = True  # False: a note shown in the table, not part of the verdict


def note(text: str, measured: str, n: str, why: str) -> Claim:
    """A row shown for comparison, not judged."""
    return Claim(text, measured, n, "—", why, judged=False)


def trend(claim: str, x: list, y: list) -> Claim:
    """A claim that ``y`` grows with ``x`` across models (Spearman)."""
    v, why, rho, _ = V.judge_correlation(x, y)
    return Claim(claim, f"Spearman ρ = {rho:.2f}", str(len(x)), v, why)


def censored(rows: list[dict]) -> Claim | None:
    """A note on the networks that never reached the target loss, if any."""
    late = [r for r in rows if not r["reached"]]
    if not late:
        return None
    return note(
        "networks that did not reach the target loss count with their last epoch",
        f"{len(late)} network(s)",
        str(len(rows)),
        "their epochs are a lower bound (censored)",
    )


def judge(ctx: Context) -> list[tuple[str, str, list[Claim]]]:
    """Every hypothesis as (title, source in the paper, claims)."""
    S, R = ctx.settings, ctx.results
    out = []
    not_run = lambda c: Claim(c, "—", "—", V.NOT_RUN, "its stage was not run")  # noqa: E731

    # Large batches give sharper minima and worse test accuracy (§2.3.2).
    small, large = S.batch_sizes
    claims = []
    if "batch" in R:
        by = {(r["seed"], r["batch"]): r for r in R["batch"]}
        ok = [s for s in S.seeds_batch if by[s, small]["reached"] and by[s, large]["reached"]]
        if ok:
            ratio = V.interval(
                [by[s, large]["lambda_max"] / by[s, small]["lambda_max"] for s in ok], log=True
            )
            v, why = V.judge_range(ratio, 3.0, 5.0, null=1.0)
            claims.append(
                Claim(
                    f"λmax(batch {large}) / λmax(batch {small}) is 3–5",
                    ratio.text(unit="×"),
                    str(ratio.n),
                    v,
                    why,
                )
            )
            acc = V.interval(
                [100 * (by[s, small]["test_accuracy"] - by[s, large]["test_accuracy"]) for s in ok]
            )
            v, why = V.judge_range(acc, 2.0, 4.0, null=0.0)
            claims.append(
                Claim(
                    f"test accuracy is 2–4 points lower with batch {large}",
                    acc.text(unit=" points"),
                    str(acc.n),
                    v,
                    why,
                )
            )
            for key, label in (("trace", "trace"), ("sharpness_percent", "ε-sharpness")):
                use = ok
                if key == "sharpness_percent":  # only maximizations that converged
                    conv = lambda r: r["sharpness_converged"]  # noqa: E731
                    use = [s for s in ok if conv(by[s, small]) and conv(by[s, large])]
                if not use:
                    continue
                r = V.interval([by[s, large][key] / by[s, small][key] for s in use], log=True)
                v, why = V.judge_sign(r, null=1.0)
                claims.append(
                    note(
                        f"{label} is higher with batch {large} (another sharpness measure, "
                        "reported alongside)",
                        r.text(unit="×"),
                        str(r.n),
                        f"not part of the verdict; by the direction rule: {v} ({why})",
                    )
                )
        else:
            claims.append(
                Claim(
                    "training reached the target loss",
                    "no seed",
                    "0",
                    V.INCONCLUSIVE,
                    "no pair of models reached the target",
                )
            )
    else:
        claims.append(not_run(f"λmax(batch {large}) / λmax(batch {small}) is 3–5"))
    out.append(
        (
            "Large batches find sharper minima that generalize worse",
            "§2.3.2: batch 512 against 32 gives 3–5× higher λmax and 2–4% worse test accuracy",
            claims,
        )
    )

    # Sharpness and generalization (Hypothesis 2).
    claims = []
    if "batch" in R:
        pts = [r for r in R["batch"] if r["reached"]]
        lam = np.array([r["lambda_max"] for r in pts])
        err = np.array([100 * (1 - r["test_accuracy"]) for r in pts])
        flat, sharp = err[lam < 20], err[lam > 50]
        if flat.size and sharp.size:
            d = V.difference(sharp, flat)
            v, why = V.judge_range(d, 3.0, 5.0, null=0.0)
            measured = d.text(unit=" points")
        else:
            v, why = (
                V.INCONCLUSIVE,
                (
                    f"no minimum had λmax {'> 50' if not sharp.size else '< 20'}: λmax ranged "
                    f"{lam.min():.3g}–{lam.max():.3g} at this scale"
                ),
            )
            measured = f"{flat.size} flat (λmax < 20), {sharp.size} sharp (λmax > 50)"
        claims.append(
            Claim(
                "minima with λmax < 20 have 3–5 points lower test error than "
                "minima with λmax > 50 at the same training loss",
                measured,
                str(len(pts)),
                v,
                why,
            )
        )
        for key, label in (("lambda_max", "λmax"), ("sharpness_percent", "ε-sharpness")):
            claims.append(
                trend(
                    f"higher {label} goes with higher test error (all models "
                    f"at training loss {S.batch_target})",
                    [r[key] for r in pts],
                    list(err),
                )
            )
    else:
        claims.append(not_run("minima with λmax < 20 generalize 3–5 points better"))
    out.append(
        (
            "Flat minima generalize better",
            "Hypothesis 2: final minima with λmax < 20 have 3–5% lower test error than "
            "sharp ones (λmax > 50) at the same training loss",
            claims,
        )
    )

    # Trainability (Hypothesis 1).
    claims = []
    if "architecture" in R:
        A = R["architecture"]
        hi = [r for r in A if r["lambda_init"] > 100]
        lo = [r for r in A if r["lambda_init"] <= 100]
        lam_range = (
            f"λmax at init ranged {min(r['lambda_init'] for r in A):.3g}–"
            f"{max(r['lambda_init'] for r in A):.3g}"
        )
        for key, label, unit in (
            ("epochs", "more epochs to the target loss", " epochs"),
            ("spike_rate", "more loss spikes per epoch", " spikes/epoch"),
        ):
            # Paired by seed: the networks of one seed share their initial weights.
            per_seed = {
                seed: (
                    [r[key] for r in hi if r["seed"] == seed],
                    [r[key] for r in lo if r["seed"] == seed],
                )
                for seed in S.seeds_arch
            }
            if any(len(a) and len(b) for a, b in per_seed.values()):
                d = V.paired(per_seed)
                v, why = V.judge_sign(d)
                measured = d.text(unit=unit)
            else:
                v, why, measured = V.INCONCLUSIVE, f"one group is empty: {lam_range}", "—"
            claims.append(
                Claim(
                    f"networks with λmax > 100 at initialization need {label} (per seed: "
                    "mean over those networks − mean over the others)",
                    measured,
                    f"{len(A)} networks",
                    v,
                    why,
                )
            )
        if (late := censored(A)) is not None:
            claims.append(late)
    else:
        claims.append(not_run("networks with λmax > 100 at initialization train worse"))
    out.append(
        (
            "Large early λmax means unstable training",
            "Hypothesis 1: networks with λmax > 100 at initialization train unstably; "
            "the architecture stage compares them with the others (same data, learning "
            "rate and batch size, so λmax at init is confounded with the architecture)",
            claims,
        )
    )

    # Skip connections (§2.4).
    claims = []
    if "architecture" in R:
        by = {(r["seed"], r["kind"]): r for r in R["architecture"]}
        seeds = S.seeds_arch
        for other in ("residual", "residual-norm"):
            r = V.interval(
                [by[s, "plain"]["lambda_max"] / by[s, other]["lambda_max"] for s in seeds], log=True
            )
            v, why = V.judge_range(r, 3.0, 5.0, null=1.0)
            claims.append(
                Claim(
                    f"λmax at the end: plain / {other} is 3–5", r.text(unit="×"), str(r.n), v, why
                )
            )
        for key, label in (
            ("ray_negative", "share of negative ray curvature"),
            ("surface_nonconvex", "non-convex share of the 2D surface"),
        ):
            for other in ("residual", "residual-norm"):
                d = V.interval([100 * (by[s, "plain"][key] - by[s, other][key]) for s in seeds])
                v, why = V.judge_sign(d)
                claims.append(
                    Claim(
                        f"skip connections convexify: the {label} is lower with them "
                        f"(plain − {other})",
                        d.text(unit=" points"),
                        str(d.n),
                        v,
                        why,
                    )
                )
        for other in ("residual", "residual-norm"):
            d = V.interval([by[s, "plain"]["epochs"] - by[s, other]["epochs"] for s in seeds])
            v, why = V.judge_sign(d)
            claims.append(
                Claim(
                    f"skip connections train faster: epochs to the target, plain − {other}",
                    d.text(unit=" epochs"),
                    str(d.n),
                    v,
                    why,
                )
            )
        if (late := censored(R["architecture"])) is not None:
            claims.append(late)
    else:
        claims.append(not_run("skip connections reduce sharpness 3–5×"))
    out.append(
        (
            "Skip connections make the landscape smoother and flatter",
            '§2.4: skip connections reduce sharpness 3–5× and "convexify" the loss surface',
            claims,
        )
    )

    # Effective dimension (§2.2.3).
    claims = []
    if "architecture" in R:
        A = R["architecture"]
        by = {(r["seed"], r["kind"]): r for r in A}
        d = V.interval([by[s, "plain"]["d_eff"] - by[s, "residual"]["d_eff"] for s in S.seeds_arch])
        v, why = V.judge_sign(d)
        claims.append(
            Claim(
                "skip connections reduce d_eff (plain − residual)",
                d.text(unit=""),
                str(d.n),
                v,
                why,
            )
        )
        low = [r for r in A if r["d_eff_fraction"] < 0.001]
        high = [r for r in A if r["d_eff_fraction"] > 0.01]
        if low and high:
            ratio = V.difference([r["epochs"] for r in high], [r["epochs"] for r in low], log=True)
            v, why = V.judge_range(ratio, 2.0, 3.0, null=1.0)
            measured = ratio.text(unit="×")
        else:
            fr = [100 * r["d_eff_fraction"] for r in A]
            v, why = (
                V.INCONCLUSIVE,
                (
                    f"one group is empty: d_eff/d ranged {min(fr):.3g}%–{max(fr):.3g}% (d_eff can "
                    f"be at most the {S.grad_window} gradients recorded)"
                ),
            )
            measured = f"{len(low)} with d_eff < 0.1% of d, {len(high)} with > 1%"
        claims.append(
            Claim(
                "networks with d_eff < 0.001·d converge 2–3× faster than those with d_eff > 0.01·d",
                measured,
                str(len(A)),
                v,
                why,
            )
        )
        claims.append(
            trend(
                "lower d_eff goes with fewer epochs to the target",
                [r["d_eff"] for r in A],
                [r["epochs"] for r in A],
            )
        )
    else:
        claims.append(not_run("low effective dimension goes with faster convergence"))
    out.append(
        (
            "Low effective dimension means faster convergence",
            "§2.2.3: skip connections reduce d_eff; d_eff < 0.001·d converges 2–3× faster "
            "than d_eff > 0.01·d",
            claims,
        )
    )

    # Mode connectivity (§2.2.2).
    claims = []
    if "connectivity" in R:
        C = R["connectivity"]

        def spread(key: str) -> str:
            v = [r[key] for r in C]
            return f"{min(v):.3g}" if len(v) == 1 else f"{min(v):.3g} to {max(v):.3g}"

        cases = [(True, r["bezier_barrier"] < 0.5) for r in C]
        v, why = V.judge_implication(cases, "a fitted curve")
        claims.append(
            Claim(
                "independently trained minima are joined by a low-loss curve "
                "(Bezier barrier < 0.5)",
                spread("bezier_barrier"),
                str(len(C)),
                v,
                why,
            )
        )
        # The paper's barrier is the optimized curve's (Garipov et al.); the straight
        # segment's is shown next to it, not judged.
        key = "bezier_barrier"
        good = [(r[key] < 0.5, min(r["test_accuracy_ends"]) > 0.90) for r in C]
        v, why = V.judge_implication(good, "a barrier < 0.5")
        claims.append(
            Claim(
                "barrier < 0.5 → both models > 90% test accuracy", spread(key), str(len(C)), v, why
            )
        )
        bad = [(r[key] > 2.0, min(r["test_accuracy_ends"]) < 0.85) for r in C]
        v, why = V.judge_implication(bad, "a barrier > 2")
        claims.append(
            Claim("barrier > 2 → one model < 85% test accuracy", spread(key), str(len(C)), v, why)
        )
        high = [r for r in C if r["linear_barrier"] > 2.0]
        accs = [a for r in high for a in r["test_accuracy_ends"]]
        claims.append(
            note(
                "for comparison, the straight segment's barrier (not the paper's)",
                spread("linear_barrier"),
                str(len(C)),
                f"{len(high)} pair(s) above 2, their models at "
                f"{100 * min(accs):.1f}–{100 * max(accs):.1f}% test accuracy"
                if high
                else "no pair above 2",
            )
        )
    else:
        claims.append(not_run("minima are connected by low-loss curves"))
    out.append(
        (
            "Good minima are connected by low-loss paths",
            "§2.2.2 (after Garipov et al. 2018): the barrier along the optimized Bezier "
            "curve; barrier < 0.5 → both models generalize (> 90% test accuracy); barrier "
            "> 2 → at least one overfits (< 85%)",
            claims,
        )
    )
    return out
