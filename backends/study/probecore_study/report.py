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
from probecore_study.hypotheses import Claim
from probecore_study.settings import KINDS


def g4(x: float) -> str:
    """A number to four significant digits."""
    return f"{x:.4g}"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table, then a blank line."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def above_100(ctx: Context) -> str:
    """Which networks start with λmax > 100 (for the limits section)."""
    A = ctx.results.get("architecture", [])
    counts = {k: sum(r["kind"] == k and r["lambda_init"] > 100 for r in A) for k in KINDS}
    per = len(ctx.settings.seeds_arch)
    return "networks above 100: " + ", ".join(f"{k} {n} of {per}" for k, n in counts.items()) + "."


def hypothesis_lines(judged: list) -> tuple[list[str], list[str], dict]:
    """The verdict summary table, section 5 (one table per hypothesis), and the verdicts."""

    def counts(claims: list[Claim]) -> str:
        return " / ".join(
            str(sum(c.judged and c.verdict == v for c in claims))
            for v in (V.SUPPORTED, V.NOT_SUPPORTED, V.INCONCLUSIVE)
        )

    summary = table(
        ["hypothesis", "verdict", "claims supported / not supported / inconclusive"],
        [
            [title, f"**{V.combine([c.verdict for c in claims if c.judged])}**", counts(claims)]
            for title, _, claims in judged
        ],
    )
    body, verdicts = ["## 5. The hypotheses, one by one", ""], {}
    body += [
        'Rules: a claimed range ("3–5×") is **supported** when the estimate (the mean over '
        "seeds; geometric for ratios) lies in it and its 95% Student-t interval excludes no "
        "effect, **not supported** when the interval lies outside the range, "
        "**inconclusive** otherwise; a claimed direction is judged by the same interval "
        "against no effect (per seed, for networks that share their initialization); a "
        "threshold comparison by Welch's interval between the groups; a trend across models "
        "by Spearman's rank correlation at p < 0.05; an implication (A → B) by every case "
        "where A held. Fewer than two values, or two equal ones, give no error estimate "
        "and so no verdict. A hypothesis is not supported when any of its claims is not, "
        "and supported only when all are; rows marked — are notes, not claims. `n`: "
        "seeds, models or pairs measured. There is no correction for multiple comparisons: "
        "with some twenty claims at 95%, about one may come out by chance.",
        "",
    ]
    for i, (title, source, claims) in enumerate(judged, start=1):
        verdict = V.combine([c.verdict for c in claims if c.judged])
        verdicts[title] = {"verdict": verdict, "claims": [c.__dict__ for c in claims]}
        body += [f"### 5.{i} {title} — {verdict}", "", f"Claim: {source}.", ""]
        body += table(
            ["claim", "measured", "n", "verdict", "why"],
            [
                [c.claim, c.measured, c.n, f"**{c.verdict}**" if c.judged else "—", c.why]
                for c in claims
            ],
        )
    return summary, body, verdicts


def report(
    ctx: Context,
    *,
    stages: tuple[str, ...],
    quick: bool,
    sections: list[str],
    judged: list,
    stage_time: dict[str, float],
    elapsed: float,
) -> tuple[str, dict]:
    """The text of ``report.md``, and the verdicts by hypothesis (for ``results.json``)."""
    S, seed = ctx.settings, ctx.seed
    summary, body, verdicts = hypothesis_lines(judged) if judged else ([], [], {})
    lines = [
        "# probecore study",
        "",
        "The seed paper's hypotheses about loss-landscape geometry, tested on scikit-learn's "
        "digits (1,797 8×8 images: 1,347 for training, 450 for testing) with small networks "
        "trained on the spot from fixed seeds. Every number below comes from this run; "
        f"`results.json` holds them all and `raw/` the raw results. Mode: "
        f"{'quick (reduced settings, for CI)' if quick else 'full'}; stages: "
        f"{', '.join(stages)}; base seed {seed}.",
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
            "- Training stops when the loss first falls below the target, which is not "
            "always a minimum: some networks have many directions of negative curvature "
            "there (the ray columns).",
            *(
                [f"- λmax at initialization is confounded with the architecture: {above_100(ctx)}"]
                if "architecture" in ctx.results
                else []
            ),
            "- d_eff cannot exceed the number of gradients recorded "
            f"({S.grad_window}), and mini-batch gradients carry sampling noise.",
            '- "Robust, transferable features" (the connectivity hypothesis) has no '
            "measurement in the paper and is not judged.",
            "",
        ]
    lines += [
        "## Run",
        "",
        f"Total {elapsed:.1f} s on {platform.machine()} ({os.cpu_count()} CPUs), Python "
        f"{platform.python_version()}, numpy {np.__version__}, probecore "
        f"{probecore.__version__}"
        + (f", torch {sys.modules['torch'].__version__}" if "torch" in sys.modules else "")
        + ". Per stage: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in stage_time.items())
        + ".",
        "",
        "Raw results: `raw/*/*.npz` are probecore result files (`probecore.load`), "
        "`raw/landscape/*.zarr` the surfaces and rays as resumable Zarr runs "
        "(`probecore.load_run`), `raw/study.zarr` per-model training curves and "
        "measurements (Zarr group, `zarr.open_group`).",
        "",
    ]
    return "\n".join(lines), verdicts
