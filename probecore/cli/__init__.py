"""The ``probecore`` command.

``probecore eigenvalues|trace|density|plane|rays|connect|sharpness|dimension
module:function`` run one probe on a user's own model (:mod:`probecore.cli._probes`).
Every other subcommand comes from a plugin: after adding the probes, :func:`main` calls
the hook ``probecore_add_commands`` of every plugin in the entry-point group ``probecore``
(:mod:`probecore.hookspecs`). The main job, ``probecore study``, is such a plugin: the
distribution ``probecore-study`` (``backends/study`` in the repository), which trains
PyTorch networks — the core itself never imports a framework.

Building the parser imports nothing heavy (the algorithms, matplotlib and the frameworks
load when a command runs), so ``probecore --help`` costs what ``import probecore`` does.
Every error is one line, ``probecore <command>: error: ...``, with exit status 2:
argparse's own (a missing or malformed option), a bad option value (checked before the
user's model is imported) and a failure while the command runs. ``--traceback`` (or
``PROBECORE_TRACEBACK=1``) prints the full traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

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


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, like every other error of the command.

    Sub-parsers (the probes' and the plugins') are made with the same class.
    """

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message>`` and a pointer to ``--help``; exit with 2."""
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def _parser() -> tuple[argparse.ArgumentParser, list[str]]:
    """The command's parser, and the first-party plugin commands that are not installed."""
    from probecore._version import __version__
    from probecore.cli._probes import add_probe_parsers, one_line
    from probecore.plugins import get_plugin_manager

    parser = _Parser(
        prog="probecore",
        description="Measure the geometry of neural-network loss landscapes.",
    )
    parser.add_argument("--version", action="version", version=f"probecore {__version__}")
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="on an error, print the full traceback instead of one line (as "
        "PROBECORE_TRACEBACK=1 does); probe subcommands also take it after the command",
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
    try:
        return int(args.func(args))
    except Exception as exc:
        _report(args.command, exc, show_traceback=bool(getattr(args, "traceback", False)))
        return 2


def _report(command: str, exc: Exception, *, show_traceback: bool) -> None:
    """Print ``exc`` as one line on stderr, or its full traceback when asked for.

    Parameters
    ----------
    command : str
        The subcommand that failed.
    exc : Exception
        What it raised.
    show_traceback : bool
        ``--traceback`` was given; ``PROBECORE_TRACEBACK`` (set, and not ``0``) asks too.
    """
    from probecore._contract.errors import ConvergenceError
    from probecore.cli._probes import CLIError, one_line

    if show_traceback or os.environ.get("PROBECORE_TRACEBACK", "") not in ("", "0"):
        traceback.print_exception(exc, file=sys.stderr)
        return
    own = CLIError | ValueError | TypeError | ImportError | OSError | ConvergenceError
    if isinstance(exc, own):  # a message of probecore's (or the plugin's): its first line
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = isinstance(exc, CLIError) and exc.where  # it wraps the user's exception
    else:  # e.g. the framework failing inside a probe
        text, where = one_line(exc), True
    if where:
        text += " (--traceback shows where)"
    print(f"probecore {command}: error: {text}", file=sys.stderr)
