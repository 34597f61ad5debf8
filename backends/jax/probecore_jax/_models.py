"""How the JAX backend reads a model: its kind, its parameters, and their layout.

A model is one of

- an **Equinox module** (``equinox.Module``): inexact array leaves are the parameters,
  everything else (activation functions, Python numbers, integer arrays) is held fixed,
  as ``eqx.partition(model, eqx.is_inexact_array)`` splits it;
- a **Flax NNX module** (``flax.nnx.Module``): split with
  ``nnx.split(model, nnx.Param, ...)``, the ``Param`` variables are the parameters and the
  other variables (``BatchStat``, RNG state, ...) are held fixed; the loss receives
  ``nnx.merge(graphdef, params, rest)``;
- a **Flax NNX State** (``flax.nnx.State``): ``Param`` variables are the parameters;
- **Flax linen variables** (a mapping with a ``"params"`` collection and only mappings as
  values, such as ``{"params": ..., "batch_stats": ...}``): only ``params`` are
  parameters, the other collections are held fixed;
- any other **pytree** (nested dicts, lists, tuples, registered dataclasses): every
  floating-point array leaf is a parameter.

Roles and filter axes come from the layer types where the framework keeps them (Equinox
and NNX modules), otherwise from Flax's parameter-naming convention, otherwise from the
leaf's rank (see :func:`probecore_jax.param_layout`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax

__all__ = ["Structure", "block_specs", "inferred_warning", "read_model"]


# --------------------------------------------------------------------------- structure


@dataclasses.dataclass
class Structure:
    """A model seen as one pytree, with what the backend needs to know of each leaf.

    Attributes
    ----------
    kind : str
        ``"equinox"``, ``"nnx"``, ``"nnx_state"``, ``"linen"`` or ``"pytree"``.
    tree : pytree
        What is flattened (for NNX modules the pair ``(params, rest)`` of states).
    trainable : list of bool
        Per leaf of ``tree`` (in flattening order): may it be a parameter.
    parts : list of tuple of str
        Per leaf, the path components that name its block.
    typed : list
        Per leaf, ``(role, filter_axis)`` read from the owning layer's type, or None.
    merge : callable
        ``merge(tree)`` is the object ``loss_fn`` receives (traceable).
    """

    kind: str
    tree: Any
    trainable: list[bool]
    parts: list[tuple[str, ...]]
    typed: list[tuple[str, int] | None]
    merge: Callable[[Any], Any]


def _raw_key(key: Any) -> Any:
    tu = jax.tree_util
    if isinstance(key, tu.DictKey):
        return key.key
    if isinstance(key, tu.SequenceKey):
        return key.idx
    if isinstance(key, tu.GetAttrKey):
        return key.name
    if isinstance(key, tu.FlattenedIndexKey):
        return key.key
    return str(key)  # pragma: no cover - a key type added by a future JAX


def _strip_value(path: tuple[Any, ...]) -> tuple[Any, ...]:
    """An NNX Variable's leaf path ends in ``.value``; the block is named without it."""
    if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
        return path[:-1]
    return path


def _identity(tree: Any) -> Any:
    return tree


def _is_linen_variables(model: Any) -> bool:
    return (
        isinstance(model, Mapping)
        and "params" in model
        and all(isinstance(v, Mapping) for v in model.values())
    )


def read_model(model: Any) -> Structure:
    """The :class:`Structure` of a model (see the module docstring for the kinds)."""
    eqx = sys.modules.get("equinox")
    nnx = sys.modules.get("flax.nnx")
    if eqx is not None and isinstance(model, eqx.Module):
        return _read_equinox(model, eqx)
    if nnx is not None and isinstance(model, nnx.Module):
        return _read_nnx_module(model, nnx)
    if nnx is not None and isinstance(model, nnx.State):
        return _read_nnx_state(model, nnx)
    flat = jax.tree_util.tree_flatten_with_path(model)[0]
    parts = [tuple(str(_raw_key(k)) for k in path) for path, _ in flat]
    if _is_linen_variables(model):
        trainable = [bool(p) and p[0] == "params" for p in parts]
        kind = "linen"
    else:
        trainable = [True] * len(flat)
        kind = "pytree"
    return Structure(kind, model, trainable, parts, [None] * len(flat), _identity)


# --------------------------------------------------------------------------- Equinox


def _equinox_rule(eqx: Any, owner: Any, field: str, ndim: int) -> tuple[str, int] | None:
    nn = eqx.nn
    if isinstance(owner, nn.LayerNorm | nn.GroupNorm | nn.RMSNorm | nn.BatchNorm):
        return ("norm", 0)
    if isinstance(owner, nn.Linear | nn.Conv | nn.ConvTranspose | nn.Embedding):
        # Linear (out, in); Conv and ConvTranspose (out, in / groups, *kernel), the
        # latter used as the rhs of a dilated convolution; Embedding (num, features).
        if field == "weight" and ndim >= 2:
            return ("weight", 0)
        if field == "bias":
            return ("bias", 0)
    if isinstance(owner, nn.GRUCell | nn.LSTMCell):  # (k * hidden, in) and (k * hidden, hidden)
        if field in ("weight_ih", "weight_hh") and ndim >= 2:
            return ("weight", 0)
        if field in ("bias", "bias_n"):
            return ("bias", 0)
    return None


def _step(obj: Any, key: Any) -> Any:
    if isinstance(key, jax.tree_util.GetAttrKey):
        return getattr(obj, key.name)
    return obj[_raw_key(key)]


def _read_equinox(model: Any, eqx: Any) -> Structure:
    flat = jax.tree_util.tree_flatten_with_path(model)[0]
    parts, typed = [], []
    for path, leaf in flat:
        parts.append(tuple(str(_raw_key(k)) for k in path))
        owner, depth, obj = None, 0, model
        try:
            for k in path:
                if isinstance(obj, eqx.Module):
                    owner, depth = obj, 0
                obj = _step(obj, k)
                depth += 1
        except Exception:  # a custom pytree whose keys do not index it: no type known
            owner = None
        rule = None
        if owner is not None and depth == 1 and hasattr(leaf, "shape"):
            rule = _equinox_rule(eqx, owner, str(_raw_key(path[-1])), len(leaf.shape))
        typed.append(rule)
    return Structure("equinox", model, [True] * len(flat), parts, typed, _identity)


# --------------------------------------------------------------------------- Flax NNX


def _nnx_rule(nnx: Any, owner: Any, attr: str, ndim: int) -> tuple[str, int] | None:
    if isinstance(owner, nnx.LayerNorm | nnx.BatchNorm | nnx.GroupNorm | nnx.RMSNorm):
        return ("norm", 0)
    if isinstance(owner, nnx.Embed) and attr == "embedding" and ndim >= 2:
        return ("weight", 0)  # (num_embeddings, features): one unit per row
    kinds = (nnx.Linear, nnx.Conv, nnx.ConvTranspose, nnx.LinearGeneral, nnx.Einsum)
    if isinstance(owner, kinds):
        if attr == "kernel" and ndim >= 2:
            return ("weight", -1)  # (..., in, out)
        if attr == "bias":
            return ("bias", 0)
    return None


def _state_leaf_info(state: Any, nnx: Any) -> tuple[list[bool], list[tuple[Any, ...]]]:
    """Per leaf of an NNX State: is it (inside) a Param, and its path without ``.value``."""
    trainable, paths = [], []
    variables = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda v: isinstance(v, nnx.Variable)
    )[0]
    for path, v in variables:
        if isinstance(v, nnx.Variable):
            for sub, _ in jax.tree_util.tree_flatten_with_path(v)[0]:
                trainable.append(isinstance(v, nnx.Param))
                paths.append(path + _strip_value(tuple(sub)))
        else:
            trainable.append(True)
            paths.append(path)
    return trainable, paths


def _read_nnx_state(state: Any, nnx: Any) -> Structure:
    trainable, paths = _state_leaf_info(state, nnx)
    parts = [tuple(str(_raw_key(k)) for k in p) for p in paths]
    return Structure("nnx_state", state, trainable, parts, [None] * len(parts), _identity)


def _read_nnx_module(module: Any, nnx: Any) -> Structure:
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    nodes = {tuple(p): node for p, node in nnx.iter_graph(module)}
    p_train, p_paths = _state_leaf_info(params, nnx)
    r_train, _ = _state_leaf_info(rest, nnx)
    parts, typed = [], []
    for path in p_paths:
        raw = tuple(_raw_key(k) for k in path)
        parts.append(tuple(str(k) for k in raw))
        owner = nodes.get(raw[:-1]) if raw else None
        leaf = nodes.get(raw)
        value = leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
        rule = None
        if isinstance(owner, nnx.Module) and hasattr(value, "shape"):
            rule = _nnx_rule(nnx, owner, str(raw[-1]), len(value.shape))
        typed.append(rule)
    parts += [("",)] * len(r_train)  # held fixed: never a block
    typed += [None] * len(r_train)

    def merge(tree: Any) -> Any:
        return nnx.merge(graphdef, tree[0], tree[1])

    return Structure("nnx", (params, rest), p_train + [False] * len(r_train), parts, typed, merge)


# --------------------------------------------------------------------------- layout rules


def convention(parts: tuple[str, ...], ndim: int, siblings: Mapping[str, int]) -> tuple:
    """``(role, filter_axis, inferred)`` of a leaf without a known layer type.

    Flax's parameter names first: ``kernel`` (rank >= 2) is a ``(..., in, out)`` weight,
    ``embedding`` (rank >= 2) a ``(num, features)`` weight, a 1-D ``scale`` a
    normalization parameter and a ``bias`` beside a 1-D ``scale`` too, another ``bias``
    a bias. Then by rank: other leaves of rank >= 2 are weights with ``filter_axis=-1``
    (JAX's ``x @ W``), *inferred*; the rest are ``"other"``.
    """
    last = parts[-1] if parts else ""
    if last == "kernel" and ndim >= 2:
        return ("weight", -1, False)
    if last == "embedding" and ndim >= 2:
        return ("weight", 0, False)
    if last == "scale" and ndim == 1:
        return ("norm", 0, False)
    if last == "bias":
        return ("norm" if siblings.get("scale") == 1 else "bias", 0, False)
    if ndim >= 2:
        return ("weight", -1, True)
    return ("other", 0, False)


def block_specs(
    structure: Structure, indices: list[int], paths: list[tuple], shapes: list[tuple[int, ...]]
) -> tuple[list[tuple], list[str]]:
    """``(name, shape, role, filter_axis)`` per parameter leaf, and the inferred names.

    ``indices`` are the positions of the parameter leaves among the structure's leaves,
    ``paths`` their JAX key paths (for names that would collide otherwise).
    """
    parts = [structure.parts[i] for i in indices]
    names = [".".join(p) if p else "params" for p in parts]
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    siblings: dict[tuple[str, ...], dict[str, int]] = {}
    for p, shape in zip(parts, shapes, strict=True):
        if p:
            siblings.setdefault(p[:-1], {})[p[-1]] = len(shape)
    specs, inferred = [], []
    for i, path, p, name, shape in zip(indices, paths, parts, names, shapes, strict=True):
        if counts[name] > 1:  # e.g. {"a.b": ..., "a": {"b": ...}}: fall back to JAX's keystr
            name = jax.tree_util.keystr(path)
        rule = structure.typed[i]
        if rule is not None:
            role, axis = rule
        else:
            role, axis, guessed = convention(p, len(shape), siblings.get(p[:-1], {}) if p else {})
            if guessed:
                inferred.append(name)
        specs.append((name, shape, role, axis))
    return specs, inferred


def inferred_warning(names: list[str]) -> str:
    """The message of the warning for blocks whose filter axis was inferred."""
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    return (
        f"probecore-jax inferred the layout of {len(names)} parameter block(s) from their "
        f"rank alone: {shown}. They are taken as weights stored (..., in, out) "
        "(filter_axis=-1, JAX's `x @ W`), which filter normalization rescales per output "
        "unit along the last axis. If that is right, or to say otherwise, pass the "
        f"`layout=` option, e.g. layout={{{names[0]!r}: -1}} (or 0 for (out, in) weights, "
        "or a role such as 'other'); see docs/models.md."
    )
