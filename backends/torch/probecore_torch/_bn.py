"""BatchNorm statistics recomputed at a point: Garipov et al.'s ``update_bn``.

Between two trained networks (a mode-connecting path, an interpolation, a plane) the
running statistics of either model are wrong for the weights being evaluated. Garipov et
al. (2018) reset them at each point, run the training data through the network in train
mode, accumulating the example-weighted mean of the batch means and of the (unbiased)
batch variances, and then evaluate in eval mode with those statistics. ``batchnorm=
"recompute"`` does exactly this at every point the objective is asked about, caching the
statistics of the last point so that a gradient and the HVPs at one point share them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["StatisticsCache", "copy_into"]


def _norm_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


class StatisticsCache:
    """Running statistics recomputed over an objective's data at the last point asked.

    One pass over the data without gradients per new point (a cost of about one loss
    evaluation); the statistics are constants for the gradient and the HVPs at that
    point (Garipov et al. evaluate the eval-mode network with them; they are not
    differentiated through).
    """

    def __init__(self) -> None:
        self._x: torch.Tensor | None = None
        self._buffers: dict[str, torch.Tensor] | None = None
        self.n_passes = 0

    def clear(self) -> None:
        """Forget the cached point (pickling, a new objective)."""
        self._x, self._buffers = None, None

    def at(self, objective: Any, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The objective's buffers with every BatchNorm's statistics recomputed at ``flat``."""
        point = flat.detach()
        if self._x is not None and self._buffers is not None and torch.equal(point, self._x):
            return self._buffers
        self._buffers = None
        buffers = {n: b.clone() for n, b in objective._buffers.items()}
        layers = _norm_layers(objective.model)
        for name, _ in layers:
            prefix = f"{name}." if name else ""
            buffers[f"{prefix}running_mean"].zero_()
            buffers[f"{prefix}running_var"].fill_(1.0)
            if f"{prefix}num_batches_tracked" in buffers:
                buffers[f"{prefix}num_batches_tracked"].zero_()
        saved = [(m, m.training, m.momentum) for _, m in layers]
        tensors = objective._params(point)
        for n, t in (*objective._frozen.items(), *buffers.items()):
            tensors[f"model.{n}"] = t
        seen = 0
        try:
            with torch.no_grad(), objective._modes():
                for _, m in layers:
                    m.train()
                for _, batch in objective._each():
                    # example-weighted running means: the first batch replaces the reset
                    # values, batch k enters with weight count_k / examples so far
                    for _, m in layers:
                        m.momentum = batch.count / (seen + batch.count)
                    functional_call(objective._call, tensors, (batch.inputs,))
                    seen += batch.count
                    del batch
        finally:
            for m, flag, momentum in saved:
                m.training, m.momentum = flag, momentum
        for name, _ in layers:
            prefix = f"{name}." if name else ""
            if not bool(torch.isfinite(buffers[f"{prefix}running_var"]).all()):
                raise FloatingPointError(
                    f"batchnorm='recompute': the statistics of {name or 'the model'} are not "
                    "finite at this point (the activations overflow)."
                )
        self._x, self._buffers = point.clone(), buffers
        self.n_passes += 1
        return buffers


def copy_into(module: nn.Module, buffers: dict[str, torch.Tensor]) -> None:
    """Write ``buffers`` into a module's own buffers (the private evaluation copy)."""
    with torch.no_grad():
        for name, b in module.named_buffers():
            b.copy_(buffers[name])
