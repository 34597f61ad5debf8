"""The pluggy hook implementation that claims ``torch.nn.Module`` models."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from probecore.backend import hookimpl

OPTIONS = (
    "dtype",
    "device",
    "batchnorm",
    "dropout",
    "batch_size",
    "layout",
    "forward",
    "metrics_fn",
    "retain_graph",
    "check_determinism",
    "memory_format",
    "stream",
    "process_group",
)


@hookimpl
def probecore_make_objective(model: Any, loss_fn: Any, data: Any, options: Mapping[str, Any]):
    """Return a :class:`~probecore_torch.TorchObjective` for a ``torch.nn.Module``."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(model, torch.nn.Module):
        return None  # not a torch model (and torch was never imported, so it cannot be)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(
            f"probecore-torch does not know the option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join(OPTIONS)}."
        )
    if options.get("process_group") is not None:
        from probecore_torch._distributed import DistributedTorchObjective

        return DistributedTorchObjective(model, loss_fn, data, **options)
    from probecore_torch._objective import TorchObjective

    options = {k: v for k, v in options.items() if k != "process_group"}
    return TorchObjective(model, loss_fn, data, **options)
