"""The ``probecore`` command.

``probecore eigenvalues|trace|density|plane|rays|connect|sharpness|dimension
module:function`` run one probe on a user's own model (:mod:`probecore.cli._probes`).
Every other subcommand comes from a plugin: after adding the probes, :func:`main` calls
the hook ``probecore_add_commands`` of every plugin in the entry-point group ``probecore``
(:mod:`probecore.hookspecs`). The main job, ``probecore study``, is such a plugin: the
distribution ``probecore-study`` (``backends/study`` in the repository), which trains
PyTorch networks — the core itself never imports a framework.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

# The one thing the core knows of first-party plugins: the names of their subcommands and
# how to install them, so that `probecore study` without its plugin names the fix instead
# of argparse's "invalid choice". The commands themselves come from the plugins.
_PLUGIN_COMMANDS = {
    "study": (
        "probecore-study",
        "pip install probecore-study, or from a probecore checkout: python3 -m pip install "
        "./backends/study (it brings the PyTorch backend)",
    ),
}


def _parser() -> tuple[argparse.ArgumentParser, list[str]]:
    """The command's parser, and the first-party plugin commands that are not installed."""
    from probecore.cli._probes import add_probe_parsers, one_line
    from probecore.plugins import get_plugin_manager

    parser = argparse.ArgumentParser(
        prog="probecore",
        description="Measure the geometry of neural-network loss landscapes.",
    )
    parser.add_argument(
        "--version", action="version", version=f"probecore {__import__('probecore').__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_probe_parsers(sub)
    try:
        get_plugin_manager().hook.probecore_add_commands(subparsers=sub)
    except Exception as exc:  # a broken plugin must not take the built-in probes down
        print(
            f"probecore: warning: a plugin failed to load or to add its subcommands "
            f"({one_line(exc)}); only the built-in probes are available. "
            "Reinstall or remove the plugin, or set PROBECORE_DISABLE_PLUGIN_AUTOLOAD=1.",
            file=sys.stderr,
        )
    missing = [name for name in _PLUGIN_COMMANDS if name not in sub.choices]
    if missing:
        parser.epilog = "Subcommands not installed: " + "; ".join(
            f"{name} (pip install {_PLUGIN_COMMANDS[name][0]})" for name in missing
        )
    return parser, missing


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``probecore`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, missing = _parser()
    # The top-level options take no value, so the first word that is not one is the command.
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in missing:
        dist, install = _PLUGIN_COMMANDS[command]
        print(
            f"probecore {command}: error: `probecore {command}` comes from the plugin "
            f"{dist}, which is not installed: {install}",
            file=sys.stderr,
        )
        return 2
    args = parser.parse_args(argv)
    from probecore._contract.errors import ConvergenceError
    from probecore.cli._probes import CLIError, one_line

    try:
        return int(args.func(args))
    except (CLIError, ValueError, TypeError, ImportError, OSError, ConvergenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"probecore {args.command}: error: {first}", file=sys.stderr)
        return 2
    except Exception as exc:  # e.g. the framework failing inside a probe
        if os.environ.get("PROBECORE_TRACEBACK"):
            raise
        print(
            f"probecore {args.command}: error: {one_line(exc)} "
            "(PROBECORE_TRACEBACK=1 shows where)",
            file=sys.stderr,
        )
        return 2
