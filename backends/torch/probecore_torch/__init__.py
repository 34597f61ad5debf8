"""PyTorch backend for probecore.

:class:`TorchObjective` adapts ``(model, loss_fn, data)`` to the
:class:`probecore.Objective` contract through ``torch.func.functional_call`` on flat
parameter vectors; the user's module is never modified. The plugin in
:mod:`probecore_torch.plugin` lets :func:`probecore.objective` pick it for any
``torch.nn.Module``.

Importing this package does not import torch: the plugin is loaded by every
``probecore.objective`` call, and only a torch model should pay for torch.
"""

from typing import Any

__all__ = ["DistributedTorchObjective", "TorchObjective"]
__version__ = "0.1.0.dev0"


def __getattr__(name: str) -> Any:
    if name == "TorchObjective":
        from probecore_torch._objective import TorchObjective

        return TorchObjective
    if name == "DistributedTorchObjective":
        from probecore_torch._distributed import DistributedTorchObjective

        return DistributedTorchObjective
    raise AttributeError(f"module 'probecore_torch' has no attribute {name!r}")
