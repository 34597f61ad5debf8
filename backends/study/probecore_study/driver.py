"""The study's driver: check the arguments, run the stages, judge, write the files.

Four stages, each a function that measures and returns its report section
(:mod:`probecore_study.stages`):

1. **spectrum** — the estimators against the exact Hessian of logistic regression (core
   only, no framework);
2. **batch** — the same MLP trained by SGD at batch 32 and 512 to the same training loss:
   λmax, trace, spectral density, ε-sharpness, accuracy;
3. **architecture** — a deep plain MLP against the same network with skip connections and
   with skip connections and LayerNorm: λmax at initialization and at the end, 2D
   filter-normalized surfaces, Monte Carlo ray curvature, effective dimension of the
   gradients, epochs to the target loss;
4. **connectivity** — pairs of small-batch models from different seeds: the straight
   path against a fitted quadratic Bezier curve, loss and test accuracy along both.

Then every hypothesis is judged (:mod:`probecore_study.hypotheses`) and ``report.md`` is
written with its figures, ``results.json`` with every number in the tables, and the raw
results: probecore result files (``.npz``), the landscape runs and per-model arrays as
Zarr groups.

The PyTorch side (data, models, training loop) lives in :mod:`probecore_study.kit`,
imported only when a stage that trains a network runs: the spectrum stage needs no torch.
"""

from __future__ import annotations

import json
import os
import resource
from dataclasses import replace
from typing import Any

from probecore_study.context import Context, Progress, RawStore, Runner, load_kit
from probecore_study.hypotheses import SOURCE, THRESHOLDS, judge, records
from probecore_study.report import figure, number_figures, report
from probecore_study.settings import FULL, KINDS, QUICK, STAGES, pairs
from probecore_study.stages import STAGES_BY_NAME


def _cpu_seconds() -> float:
    """User and system time of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _clean(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (strict JSON), tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        return value
    if f != f or f in (float("inf"), float("-inf")):
        return None
    if hasattr(value, "dtype") and value.dtype.kind in "iu":
        return int(value)
    return f


def run_study(
    out: str,
    *,
    quick: bool = False,
    stages: tuple[str, ...] = STAGES,
    seed: int = 0,
    quiet: bool = False,
    jobs: int | None = None,
) -> dict:
    """Run the study, write ``out/report.md`` and friends, and return the results.

    Parameters
    ----------
    out : str
        Output folder (created; a file of that name is an error).
    quick : bool
        Every stage on reduced settings (:data:`~probecore_study.settings.QUICK`): for CI.
    stages : tuple of str
        Some of :data:`~probecore_study.settings.STAGES`, run in their fixed order.
    seed : int
        Base seed, added to every training seed (the train/test split stays fixed).
    quiet : bool
        Print nothing but errors.
    jobs : int, optional
        Worker processes for the models of a stage (default: the machine's CPU count).
        Every model is trained and measured on one thread wherever it runs, so the
        results do not depend on ``jobs``.

    Returns
    -------
    dict
        What ``results.json`` holds: source, settings, stages, results, verdicts, figures.
    """
    S = QUICK if quick else FULL
    stages = tuple(dict.fromkeys(stages))  # in the order given, once each
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ValueError(
            f"`--stages` must name some of {', '.join(STAGES)}; got "
            f"{','.join(stages) or 'nothing'!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`--seed` must be a non-negative integer; got {seed!r}.")
    if jobs is None:
        jobs = os.cpu_count() or 1
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"`--jobs` must be a positive integer; got {jobs!r}.")
    if not out:
        raise ValueError("`--out` must name a folder; got ''.")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"`--out` {out!r} exists and is not a folder.")
    if any(s != "spectrum" for s in stages):
        load_kit()  # fail now, with the install line, rather than after the first stage
    S = replace(
        S,
        seeds_batch=tuple(seed + s for s in S.seeds_batch),
        seeds_arch=tuple(seed + s for s in S.seeds_arch),
    )
    os.makedirs(out, exist_ok=True)
    n_pairs = len(pairs(S, deep="architecture" in stages))
    n_steps = (
        ("spectrum" in stages)
        + ("batch" in stages) * len(S.seeds_batch) * len(S.batch_sizes)
        + ("architecture" in stages) * len(S.seeds_arch) * len(KINDS)
        + ("connectivity" in stages) * (n_pairs + ("batch" not in stages) * len(S.seeds_batch))
    )
    progress = Progress(n_steps, quiet)
    if not quiet:
        print(
            f"probecore study{' --quick' if quick else ''}: {', '.join(stages)} on "
            f"scikit-learn digits -> {out} ({jobs} worker process{'es' * (jobs > 1)})",
            flush=True,
        )
    cpu0 = _cpu_seconds()
    ctx = Context(
        out=out,
        settings=S,
        seed=seed,
        progress=progress,
        raw=RawStore(os.path.join(out, "raw", "study.zarr")),
        runner=Runner(jobs),
    )
    sections = []
    stage_time = {}  # wall time from the start of the run to the end of each stage
    try:
        # The trainings of the batch and architecture stages do not depend on each other:
        # both go to the workers at once, and the spectrum stage runs here meanwhile.
        pending = {
            s: STAGES_BY_NAME[s].submit(ctx) for s in ("batch", "architecture") if s in stages
        }
        for stage in STAGES:
            if stage not in stages:
                continue
            if stage in pending:
                sections += STAGES_BY_NAME[stage].finish(ctx, pending[stage])
            else:
                sections += STAGES_BY_NAME[stage].run(ctx)
            stage_time[stage] = progress.elapsed()
    finally:
        ctx.runner.close()
    judged = [] if set(stages) == {"spectrum"} else judge(ctx)
    forest: list[str] = []
    if judged:
        from probecore_study import figures

        name = figures.forest(ctx, judged)
        if name is not None:
            forest = figure(
                ctx,
                name,
                "Every claim judged by an interval: the estimate (dot) with its 95% "
                "confidence interval, the claimed range (grey band, where the paper gives "
                "one) and no effect (dashed: 0 for a difference, 1 for a ratio). Green: "
                "supported; red: not supported; grey: inconclusive (confounded ones say "
                "so). Ratios on a log scale. A point without a bar: every seed gave the "
                "same value. The claims judged by a trend, a threshold or an implication "
                "have no interval and are in the tables of section 5 only.",
            )
    elapsed = progress.elapsed()
    cpu = _cpu_seconds() - cpu0
    text = report(
        ctx,
        stages=stages,
        quick=quick,
        sections=sections,
        judged=judged,
        forest=forest,
        stage_time=stage_time,
        elapsed=elapsed,
        cpu=cpu,
        jobs=ctx.runner.jobs,
    )
    text = number_figures(text, ctx.figures)
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    record = _clean(
        {
            "source": SOURCE,
            "settings": S.__dict__,
            "stages": list(stages),
            "quick": quick,
            "seed": seed,
            "thresholds": THRESHOLDS,
            "results": ctx.results,
            "verdicts": records(judged),
            "figures": [
                {**f, "overlapping_labels": ctx.keep.get(("overlaps", f["file"]), [])}
                for f in ctx.figures
            ],
        }
    )
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1, sort_keys=True, allow_nan=False)
    timings = {
        "wall_seconds": elapsed,
        "cpu_seconds": cpu,
        "jobs": ctx.runner.jobs,
        "stages": stage_time,
        "steps": ctx.timings,
    }
    with open(os.path.join(out, "timings.json"), "w", encoding="utf-8") as fh:
        json.dump(timings, fh, indent=1, sort_keys=True)
    return record
