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
import time
from dataclasses import replace

from probecore_study.context import Context, Progress, RawStore, load_kit
from probecore_study.hypotheses import judge
from probecore_study.report import report
from probecore_study.settings import FULL, KINDS, QUICK, STAGES, pairs
from probecore_study.stages import RUNNERS


def run_study(
    out: str,
    *,
    quick: bool = False,
    stages: tuple[str, ...] = STAGES,
    seed: int = 0,
    quiet: bool = False,
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

    Returns
    -------
    dict
        What ``results.json`` holds: settings, stages, results and verdicts.
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
    n_steps = (
        ("spectrum" in stages)
        + ("batch" in stages) * len(S.seeds_batch) * len(S.batch_sizes)
        + ("architecture" in stages) * len(S.seeds_arch) * len(KINDS)
        + ("connectivity" in stages) * len(pairs(S, deep="architecture" in stages))
    )
    progress = Progress(n_steps, quiet)
    if not quiet:
        print(
            f"probecore study{' --quick' if quick else ''}: {', '.join(stages)} on "
            f"scikit-learn digits -> {out}",
            flush=True,
        )
    ctx = Context(
        out=out,
        settings=S,
        seed=seed,
        progress=progress,
        raw=RawStore(os.path.join(out, "raw", "study.zarr")),
    )
    sections = []
    stage_time = {}
    for stage, fn in RUNNERS.items():
        if stage in stages:
            t0 = time.perf_counter()
            sections += fn(ctx)
            stage_time[stage] = time.perf_counter() - t0
    judged = [] if set(stages) == {"spectrum"} else judge(ctx)
    elapsed = progress.elapsed()
    text, verdicts = report(
        ctx,
        stages=stages,
        quick=quick,
        sections=sections,
        judged=judged,
        stage_time=stage_time,
        elapsed=elapsed,
    )
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    record = {
        "settings": S.__dict__,
        "stages": list(stages),
        "quick": quick,
        "seed": seed,
        "results": ctx.results,
        "verdicts": verdicts,
    }
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1, default=float, sort_keys=True)
