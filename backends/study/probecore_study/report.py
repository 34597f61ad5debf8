"""The report's text: table formatting, the hypothesis sections, and ``report.md`` itself."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import numpy as np

import probecore
from probecore_study import verdicts as V
from probecore_study.context import Context
from probecore_study.hypotheses import SOURCE, Hypothesis
from probecore_study.numbers import fmt
from probecore_study.settings import KINDS

UNITS = (
    "Units and conventions: losses are the mean cross-entropy over the training split, in "
    "nats; curvatures (λmax, trace, ray curvature) are second derivatives of that loss along "
    "unit-length directions in parameter space, in nats per unit² of parameter distance; "
    "accuracies and test errors are percentages of the 450 test images (one image is 0.222 "
    "points); differences of percentages are in percentage points. Numbers have three "
    "significant figures (counts are exact). An interval is a 95% confidence interval "
    "(CI); `± s.e.` is a standard error, and is always labelled so."
)


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table, then a blank line."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def figure(ctx: Context, name: str, caption: str) -> list[str]:
    """A figure embedded with its caption (also recorded for ``results.json``).

    The number is a placeholder, ``{fig:<file>}``, that :func:`number_figures` replaces
    once every figure is known, in reading order.
    """
    ctx.figures.append({"file": name, "caption": caption})
    tag = "{fig:" + name + "}"
    return [f"![Figure {tag}]({name})", "", f"*Figure {tag}.* {caption}", ""]


def number_figures(text: str, figs: list[dict]) -> str:
    """Number the figures in the order ``text`` shows them (recorded in ``figs`` too)."""
    order = sorted(figs, key=lambda f: text.find("{fig:" + f["file"] + "}"))
    for i, f in enumerate(order, start=1):
        f["number"] = i
        text = text.replace("{fig:" + f["file"] + "}", str(i))
    figs.sort(key=lambda f: f["number"])
    return text


def above_100(ctx: Context) -> str:
    """Which networks start with λmax > 100 (for the limits section)."""
    A = ctx.results.get("architecture", [])
    counts = {k: sum(r["kind"] == k and r["lambda_init"] > 100 for r in A) for k in KINDS}
    per = len(ctx.settings.seeds_arch)
    return "networks above 100: " + ", ".join(f"{k} {n} of {per}" for k, n in counts.items()) + "."


RULES = (
    "Rules. A claimed range (“3–5×”) is **supported** when the estimate (the mean over "
    "seeds; the geometric mean for ratios) lies in the range and its 95% Student-t "
    "confidence interval excludes the value of no effect (0 for a difference, 1 for a "
    "ratio); **not supported** when the interval lies entirely outside the range; "
    "**inconclusive** otherwise. A ratio is judged as the paper states it, at any scale; "
    "an absolute threshold (λmax 20, 50, 100; barrier 0.5, 2) is tied to the paper's "
    "networks and loss, so where it divides the models into two groups and one group is "
    "empty, the claim is inconclusive, with the measured range. The paper's “2-4% worse "
    "test accuracy” and “3-5% lower test error” are read as percentage points (its "
    "accuracies are percentages). A claimed direction (“A is larger than B”) is "
    "supported when the interval lies entirely above no effect, not supported when "
    "entirely below, inconclusive when it includes it; networks that share their "
    "initialization (the plain and residual networks of one seed) are compared within "
    "each seed and the interval is over seeds. A threshold comparison (“λmax < 20 against "
    "λmax > 50”) uses Welch's interval between the two groups, and is inconclusive when a "
    "group is empty. A trend (“B grows with A”) uses Spearman's rank correlation ρ within "
    "one family (one architecture, and one batch size for the MLPs): supported when "
    "ρ > 0 at p < 0.05, not supported when ρ < 0 at "
    "p < 0.05 (the opposite trend), inconclusive otherwise. An implication (A → B) is "
    "checked on every case where A held: not supported when B failed in one of them, "
    "inconclusive when A never held or when B held in every case measured (with or "
    "without A: nothing could have refuted it), supported otherwise. A universal claim "
    "(“every pair is joined by a curve with barrier < 0.5”) is supported when it held in "
    "every case measured and not supported when it failed in one. A comparison whose "
    "groups differ in something else that could explain the effect (every network above "
    "a threshold has skip connections and every one below has none; residual-norm adds "
    "LayerNorm to the skip connections) is **inconclusive (confounded)** whatever its "
    "interval shows. Fewer than two values, or two equal ones, give no error estimate and "
    "so no verdict. A hypothesis is not supported when any of its claims is not, "
    "supported only when all are, and inconclusive otherwise. Rows whose verdict is — are "
    "notes shown for comparison, not claims. `n`: seeds, models or pairs used (the column "
    "*models used* says which, and why the others are left out). p-values are two-sided "
    "against no effect. There is no correction for multiple comparisons: with some twenty "
    "claims at 95%, about one may come out by chance."
)


def hypothesis_lines(ctx: Context, judged: list[Hypothesis]) -> tuple[list[str], list[str]]:
    """The verdict summary table and section 5 (one table per hypothesis)."""

    def counts(h: Hypothesis) -> str:
        return " / ".join(
            str(sum(c.judged and c.verdict.startswith(v) for c in h.claims))
            for v in (V.SUPPORTED, V.NOT_SUPPORTED, V.INCONCLUSIVE)
        )

    summary = table(
        [
            "hypothesis",
            "in the paper",
            "verdict",
            "claims supported / not supported / inconclusive",
        ],
        [[h.title, h.section, f"**{h.verdict}**", counts(h)] for h in judged],
    )
    body = ["## 5. The hypotheses, one by one", "", RULES, ""]
    for i, h in enumerate(judged, start=1):
        body += [
            f"### 5.{i} {h.title} — {h.verdict}",
            "",
            f"The paper ({h.section}): “{h.quote}”",
            "",
        ]
        body += table(
            ["claim", "models used", "measured", "n", "verdict", "why"],
            [
                [
                    c.claim,
                    c.models,
                    c.measured,
                    c.n,
                    f"**{c.verdict}**" if c.judged else "—",
                    c.why,
                ]
                for c in h.claims
            ],
        )
    return summary, body


def report(
    ctx: Context,
    *,
    stages: tuple[str, ...],
    quick: bool,
    sections: list[str],
    judged: list[Hypothesis],
    forest: list[str],
    stage_time: dict[str, float],
    elapsed: float,
    cpu: float,
    jobs: int,
) -> str:
    """The text of ``report.md``."""
    S, seed = ctx.settings, ctx.seed
    summary, body = hypothesis_lines(ctx, judged) if judged else ([], [])
    lines = [
        "# probecore study",
        "",
        f"This report tests the quantitative claims of {SOURCE}, the seed paper of "
        "probecore. Each claim is quoted with its section in section 5, so that it can be "
        "looked up. The claims were made for large networks (ResNets, CIFAR-10, ImageNet); "
        "here they are tested on scikit-learn's digits (1,797 8×8 images: 1,347 for "
        "training, 450 for testing) with small networks trained on the spot from fixed "
        "seeds. Every number below comes from this run; `results.json` holds every number "
        "of every table (verdict statistics as numbers; JSON Schema in probecore's "
        "docs/study-results.schema.json) and `raw/` the raw results. Mode: "
        f"{'quick (reduced settings, for CI)' if quick else 'full'}; stages: "
        f"{', '.join(stages)}; base seed {seed}.",
        "",
        UNITS,
        "",
    ]
    if summary:
        lines += [
            "## Verdicts",
            "",
            *summary,
            "At this scale (thousands of parameters, digits) the paper's absolute "
            "thresholds, taken from large networks, may not apply; where no model fell "
            "on both sides of a threshold the verdict is *inconclusive*, and the "
            "measured range is given.",
            "",
            *forest,
        ]
        if quick:
            lines += [
                "**Quick mode**: two seeds, 5-epoch curve fits, small grids. These verdicts "
                "exercise the pipeline; they are not the study's results (run without "
                "`--quick` for those).",
                "",
            ]
    lines += sections + body
    if judged:
        lines += [
            "## Limits of this study",
            "",
            "- Trainability is measured by epochs to the target loss and by loss spikes at "
            "one learning rate per stage; there is no learning-rate sweep.",
            "- Training stops when the loss first falls below the target, which need not "
            "be a minimum: the networks are compared at equal training loss, not at "
            "convergence.",
            "- The batch comparison keeps the learning rate for both batch sizes, as the "
            "paper's claim does: the batch size changes the gradient noise and the number "
            "of steps (section 2's epochs) together. Test "
            "accuracy is measured on 450 images, so differences come in steps of 0.222 "
            "points.",
            "- ε-sharpness (the largest rise of the loss in a small box) and λmax disagree "
            "on the batch comparison; the report shows both and judges the paper's "
            "measure, λmax.",
            *(
                [
                    "- λmax at initialization is confounded with the architecture, so "
                    f"Hypothesis 1 cannot be judged here: {above_100(ctx)}"
                ]
                if "architecture" in ctx.results
                else []
            ),
            "- The curvature along random directions concentrates: over uniformly random unit "
            "directions u in D parameters, uᵀHu has mean tr(H)/D and a standard deviation "
            "of about √2·‖H‖_F/D, so almost no random "
            "direction shows negative curvature even where H has negative eigenvalues; the "
            "2D surfaces probe larger distances.",
            f"- d_eff cannot exceed the number of gradients recorded ({S.grad_window}), "
            "mini-batch gradients carry sampling noise, and the first "
            f"{S.grad_window} steps are a different share of each network's training.",
            "- “Skip connections reduce conditioning by 100-1000×” (§2.4) is not judged: "
            "the deep networks have more parameters than the training set has outputs "
            "(training examples × 10 classes), so their Hessians have eigenvalues at or "
            "near zero and λmax/λmin is not a finite measure; “smoother” is judged through "
            "its measurable parts (λmax, negative curvature, non-convex share).",
            "- The connectivity pairs share models (every pair of the seeds), so they are "
            "not independent cases.",
            "- “Models with low barrier heights (<1.0) have learned robust, transferable "
            "features” (§2.2.2, Hypothesis (Connectivity)) has no measurement in the paper "
            "and is not judged.",
            "",
        ]
    lines += [
        "## Run",
        "",
        f"Total {fmt(elapsed)} s of wall time and {fmt(cpu)} s of CPU time (this process and "
        f"its workers) with {jobs} worker process(es), on {platform.machine()} "
        f"({os.cpu_count()} CPUs), Python {platform.python_version()}, numpy "
        f"{np.__version__}, probecore {probecore.__version__}"
        + (f", torch {sys.modules['torch'].__version__}" if "torch" in sys.modules else "")
        + ". Each stage finished at (seconds from the start; the batch and architecture "
        "stages run at once): " + ", ".join(f"{k} {fmt(v)} s" for k, v in stage_time.items()) + ".",
        "",
        "Raw results: `raw/*/*.npz` are probecore result files (`probecore.load`), "
        "`raw/landscape/*.zarr` the surfaces and rays as resumable Zarr runs "
        "(`probecore.load_run`), `raw/study.zarr` per-model training curves and "
        "measurements (Zarr group, `zarr.open_group`).",
        "",
    ]
    return "\n".join(lines)
