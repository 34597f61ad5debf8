"""The pluggy hook implementation that adds ``probecore study`` to the ``probecore`` command.

The ``probecore`` command loads this module on every call: it imports nothing heavy, and
the study itself (:mod:`probecore_study.driver`) only when ``probecore study`` runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from probecore.backend import hookimpl
from probecore_study.settings import STAGES


def _run(args: argparse.Namespace) -> int:
    from probecore_study.driver import run_study

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    run_study(
        args.out,
        quick=args.quick,
        stages=stages,
        seed=args.seed,
        quiet=args.quiet,
        jobs=args.jobs,
    )
    return 0


@hookimpl
def probecore_add_commands(subparsers: Any) -> None:
    """Add ``study`` to the ``probecore`` command's subcommands."""
    study = subparsers.add_parser(
        "study",
        help="test the seed paper's hypotheses on scikit-learn digits and write a report",
        description="Train small PyTorch networks on scikit-learn digits (fixed seeds) and "
        "test the seed paper's hypotheses on them: small against large batch (λmax, trace, "
        "spectral density, ε-sharpness, accuracy), plain against residual networks (λmax at "
        "initialization and at the end, 2D surfaces, ray curvature, effective dimension, "
        "epochs to a target loss), and mode connectivity between seeds (straight against "
        "Bezier barrier). Stage 'spectrum' first checks the estimators against the exact "
        "Hessian of logistic regression. Writes report.md with figures and verdicts, "
        "results.json and raw results (.npz and Zarr).",
    )
    study.add_argument(
        "--out", default="probecore-study", help="output folder (default: %(default)s)"
    )
    study.add_argument(
        "--quick",
        action="store_true",
        help="every stage on reduced settings (2 seeds, small grids; about a minute): for CI",
    )
    study.add_argument(
        "--stages",
        default=",".join(STAGES),
        help="comma-separated stages to run (default: %(default)s); 'spectrum' alone needs "
        "no PyTorch",
    )
    study.add_argument(
        "--seed", type=int, default=0, help="base seed, added to every seed (default: %(default)s)"
    )
    study.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes for the models of a stage (default: the number of CPUs); "
        "every model runs on one thread, so the results do not depend on it",
    )
    study.add_argument("--quiet", action="store_true", help="print nothing but errors")
    study.set_defaults(func=_run)
