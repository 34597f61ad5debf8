"""The ``probecore`` command.

``probecore study`` is the main job (:mod:`probecore._study`): it trains small networks
on scikit-learn's digits and tests the seed paper's hypotheses on them, writing a report
with figures and verdicts. ``probecore eigenvalues|trace|density|plane|rays|connect|
sharpness|dimension module:function`` run one probe on a user's own model
(:mod:`probecore.cli._probes`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _study(args: argparse.Namespace) -> int:
    from probecore._study import run_study

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    run_study(args.out, quick=args.quick, stages=stages, seed=args.seed, quiet=args.quiet)
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
        default="spectrum,batch,architecture,connectivity",
        help="comma-separated stages to run (default: %(default)s); 'spectrum' alone needs "
        "no PyTorch",
    )
    study.add_argument(
        "--seed", type=int, default=0, help="base seed, added to every seed (default: %(default)s)"
    )
    study.add_argument("--quiet", action="store_true", help="print nothing but errors")
    study.set_defaults(func=_study)
    from probecore.cli._probes import add_probe_parsers

    add_probe_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``probecore`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    from probecore._contract.errors import ConvergenceError
    from probecore.cli._probes import CLIError

    try:
        return int(args.func(args))
    except (CLIError, ValueError, TypeError, ImportError, OSError, ConvergenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"probecore {args.command}: error: {first}", file=sys.stderr)
        return 2
