"""The layout of a torch model: role and filter axis from each parameter's module type.

A parameter's role (``weight``, ``bias``, ``norm``, ``other``) and the axis that indexes
its output units are read from the type of the module that owns it, never from its name;
the table is in ``docs/models.md``. Types outside the table get PyTorch's ``(out, in,
...)`` convention with a warning, and the user's ``layout=`` override has the last word.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import torch
from torch import nn

from probecore.backend import Layout, override_layout, uncovered_by_override
from probecore_torch._data import _caller_level

_NORM_TYPES: tuple[type, ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)


if hasattr(nn, "RMSNorm"):
    _NORM_TYPES += (nn.RMSNorm,)


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


_ROWS = (nn.Linear, nn.Bilinear, nn.Embedding, nn.EmbeddingBag, *_CONV)


_RECURRENT = (nn.RNNBase, nn.RNNCellBase)


_WARN_NAMES = 4  # parameters named in the unknown-layer warning


def _hf_conv1d() -> type | None:
    """Hugging Face's ``Conv1D`` (GPT-2), when transformers is already imported."""
    module = sys.modules.get("transformers.pytorch_utils")
    cls = getattr(module, "Conv1D", None)
    return cls if isinstance(cls, type) else None


def _block_spec(local: str, param: torch.Tensor, owner: nn.Module) -> tuple[str, int] | None:
    """``(role, filter_axis)`` from the type of the module that owns the parameter.

    ``None`` for a tensor of two or more dimensions whose module type is not known (its
    axis is then assumed, with a warning).
    """
    if isinstance(owner, _NORM_TYPES) or type(owner).__name__.endswith("Norm"):
        return "norm", 0
    conv1d = _hf_conv1d()
    known = isinstance(owner, _ROWS + _CONV_T + _RECURRENT + (nn.MultiheadAttention,)) or (
        conv1d is not None and isinstance(owner, conv1d)
    )
    if known and "bias" in local:  # bias, in_proj_bias, bias_ih_l0, bias_k, ...
        return "bias", 0
    if param.ndim < 2:
        return "other", 0
    if not known:
        return None
    if isinstance(owner, _CONV_T) or (conv1d is not None and isinstance(owner, conv1d)):
        return "weight", 1  # (in, out/groups, ...) and Hugging Face's (in, out)
    return "weight", 0  # (out, in, ...); one row per token for embeddings


def _padding_rows(
    named: list[tuple[str, torch.Tensor]],
    modules: dict[str, nn.Module],
    model: nn.Module,
    layout: Layout,
) -> list[slice]:
    """Flat-vector slices of the padding rows of trainable ``nn.Embedding`` weights."""
    rows = []
    for name, p in named:
        prefix, _, local = name.rpartition(".")
        owner = modules.get(prefix, model)
        pad = getattr(owner, "padding_idx", None)
        if (
            isinstance(owner, nn.Embedding | nn.EmbeddingBag)
            and local == "weight"
            and pad is not None
        ):
            start = layout[name].offset + (pad % p.shape[0]) * p.shape[1]
            rows.append(slice(start, start + p.shape[1]))
    return rows


def _structural_layout(
    named: list[tuple[str, torch.Tensor]],
    modules: dict[str, nn.Module],
    model: nn.Module,
    override: Any,
) -> Layout:
    """Roles and filter axes from the owning modules' types, then the user's override."""
    specs, unknown = [], []
    for name, p in named:
        prefix, _, local = name.rpartition(".")
        owner = modules.get(prefix, model)
        spec = _block_spec(local, p, owner)
        if spec is None:
            unknown.append((name, tuple(p.shape), type(owner).__name__))
            spec = ("weight", 0)
        specs.append((name, tuple(p.shape), *spec))
    layout = override_layout(Layout.from_shapes(specs), override, param="layout")
    left = set(uncovered_by_override([u[0] for u in unknown], override))
    unknown = [u for u in unknown if u[0] in left]
    if unknown:
        shown = ", ".join(f"{n!r} {list(s)} of {t}" for n, s, t in unknown[:_WARN_NAMES])
        more = f" and {len(unknown) - _WARN_NAMES} more" if len(unknown) > _WARN_NAMES else ""
        example = unknown[0][0]
        warnings.warn(
            f"probecore-torch: no filter axis is known for the parameters {shown}{more} "
            "(their module types are not in the table of docs/models.md); assumed "
            "role 'weight' with output units on axis 0, PyTorch's (out, in, ...) "
            "convention, which filter normalization uses. If that is wrong, pass layout= "
            f"with a role or an axis per name or pattern, e.g. layout={{{example!r}: 1}} or "
            f"layout={{{example!r}: 'other'}}; an entry also silences this warning.",
            UserWarning,
            stacklevel=_caller_level(),
        )
    return layout
