"""``probecore study``: the seed paper's hypotheses tested on scikit-learn's digits.

Installing this distribution (``probecore-study``) adds the ``study`` subcommand to the
``probecore`` command through the hook ``probecore_add_commands`` (:mod:`probecore_study.plugin`,
entry-point group ``probecore``). The study trains small PyTorch networks with
:mod:`probecore_study.kit` and measures them through probecore's public API only.

Importing this package imports neither torch nor matplotlib: the ``probecore`` command
loads the plugin on every call, and only a study run should pay for them.
"""

from typing import Any

__all__ = ["FULL", "QUICK", "STAGES", "Settings", "run_study"]
__version__ = "0.1.0.dev0"


def __getattr__(name: str) -> Any:
    if name == "run_study":
        from probecore_study.driver import run_study

        return run_study
    if name in __all__:
        from probecore_study import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'probecore_study' has no attribute {name!r}")
