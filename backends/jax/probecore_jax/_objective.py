"""A JAX loss over a parameter pytree as a :class:`probecore.Objective`.

The parameters are flattened with :func:`jax.flatten_util.ravel_pytree`; every function
probecore calls runs jit-compiled on the flat vector, on the device where JAX keeps the
data, and only flat vectors cross to and from numpy.

Derivatives are exact and forward-over-reverse: the Hessian-vector product is the JVP of
the gradient, ``jax.jvp(jax.grad(f), (x,), (v,))``. Because probecore's algorithms ask for
many products at one point (Lanczos, Hutch++, SLQ), on accelerators the gradient is
linearized once per point (:func:`jax.linearize`) and the linear map is cached for the last
point; its residuals cost memory of the order of one forward pass over the whole data set,
so past :attr:`JaxObjective.linearize_max_bytes` (and on the CPU, where it measured no
faster) the objective recomputes the JVP per product instead.

With ``devices``, every batch is sharded along its example axis over several devices of
the process (``jax.sharding``), the parameters replicated, and XLA adds the devices'
partial sums inside the same compiled functions.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from probecore.backend import (
    SPAN_ROWS_NUMBERS,
    AbstractObjective,
    Layout,
    callable_name,
    caller_stacklevel,
    check_bool,
    check_dtype,
    check_int,
    check_matrix,
    check_span,
    check_vector,
    digest,
    override_layout,
    record_subset,
    span_point,
    span_points,
    stable_repr,
    uncovered_by_override,
)
from probecore_jax._models import block_specs, inferred_warning, read_model

__all__ = ["JaxObjective", "param_layout"]


# --------------------------------------------------------------------------- layout


def param_layout(params: Any, *, layout: Any = None) -> Layout:
    """The :class:`probecore.Layout` that :class:`JaxObjective` gives a model.

    One block per parameter leaf, in the order of :func:`jax.flatten_util.ravel_pytree`,
    named by the leaf's path joined with ``"."`` (``"params.Dense_0.kernel"``,
    ``"layers.0.weight"``; an NNX variable's trailing ``.value`` is left out, so a module,
    its ``State`` and ``State.to_pure_dict()`` name the same blocks alike).

    Roles and filter axes, first rule that applies:

    1. **Layer types**, for Equinox and Flax NNX modules. Equinox ``Linear``, ``Conv*``,
       ``ConvTranspose*`` (``(out, in, ...)``) and ``Embedding`` (``(num, features)``)
       weights: ``"weight"``, ``filter_axis=0``; their biases ``"bias"``. NNX ``Linear``,
       ``LinearGeneral``, ``Einsum``, ``Conv``, ``ConvTranspose`` kernels
       (``(..., in, out)``): ``"weight"``, ``filter_axis=-1``; ``Embed.embedding``:
       ``"weight"``, ``0``. Every parameter of ``LayerNorm``, ``BatchNorm``,
       ``GroupNorm``, ``RMSNorm`` (both frameworks): ``"norm"``.
    2. **Flax's parameter names**, for everything else (linen variables, NNX ``State``,
       pure dicts): ``kernel`` -> ``"weight"``, ``-1``; ``embedding`` -> ``"weight"``,
       ``0``; a 1-D ``scale`` -> ``"norm"``, and a ``bias`` beside it too; any other
       ``bias`` -> ``"bias"``.
    3. **Rank**: other leaves of rank >= 2 are ``"weight"`` with ``filter_axis=-1`` (the
       ``x @ W`` convention of JAX code); the rest are ``"other"``, which filter
       normalization treats like biases. :class:`JaxObjective` warns (``UserWarning``)
       about rank-inferred weights that ``layout`` does not mention.

    Parameters
    ----------
    params : pytree, Equinox module, NNX module or NNX State
        The model, as :class:`JaxObjective` takes it.
    layout : None, Layout or Mapping
        Roles and filter axes to impose, by block name or shell pattern, as
        :func:`probecore.backend.override_layout` reads them (``{"*.w": 0}``).

    Returns
    -------
    Layout
        Without warning about inferred blocks.
    """
    return _Params(params, None, layout=layout, warn=False).layout


# --------------------------------------------------------------------------- parameters


def _is_array(a: Any) -> bool:
    if isinstance(a, np.ndarray | np.generic | jax.Array):
        return True
    return hasattr(a, "__array__") and hasattr(a, "shape") and hasattr(a, "dtype")


def _as_jax(a: Any, dtype: np.dtype | None = None) -> jax.Array:
    if not isinstance(a, np.ndarray | np.generic | jax.Array):
        a = np.asarray(a)  # e.g. a CPU torch tensor
    return jnp.asarray(a, dtype=dtype)


def _is_float(dtype: Any) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.floating))


def _is_key(a: Any) -> bool:
    return bool(jnp.issubdtype(a.dtype, jax.dtypes.prng_key))


def resolve_device(device: Any) -> jax.Device | None:
    """``device`` (None, a :class:`jax.Device` or ``"cpu"``, ``"gpu:1"``, ...) checked."""
    if device is None or isinstance(device, jax.Device):
        return device
    if not isinstance(device, str):
        raise TypeError(
            "`device` must be None, a jax.Device or a string such as 'cpu', 'gpu' or "
            f"'gpu:1'; got {type(device).__name__} {device!r}."
        )
    platform, _, index = device.strip().lower().partition(":")
    platform = {"cuda": "gpu", "rocm": "gpu"}.get(platform, platform)
    have = ", ".join(f"{d.platform}:{d.id}" for d in jax.devices())
    try:
        devices = jax.devices(platform) if platform else []
    except RuntimeError:
        devices = []
    if not devices:
        raise ValueError(
            f"`device` must name a device JAX can use; got {device!r}, but JAX has no "
            f"{platform or 'such'} backend here (its devices: {have})."
        )
    if not index:
        return devices[0]
    if not index.isdigit() or int(index) >= len(devices):
        raise ValueError(
            f"`device` {device!r} must be '{platform}:N' with N in [0, {len(devices) - 1}] "
            f"(JAX's {platform} devices); got index {index!r}."
        )
    return devices[int(index)]


#: How to get more than one device on a CPU-only machine (quoted by the errors).
_HOST_DEVICES_HINT = (
    "On the CPU, set XLA_FLAGS=--xla_force_host_platform_device_count={n} in the "
    "environment before JAX is first imported to get {n} host devices."
)


def _one_axis_mesh(devices: Sequence[jax.Device], name: str) -> Mesh:
    """A one-axis mesh of ``devices``, its axis sharded automatically by XLA."""
    axis_type = getattr(jax.sharding, "AxisType", None)  # jax >= 0.5
    if axis_type is None:  # pragma: no cover - old jax
        return Mesh(np.array(devices, dtype=object), (name,))
    return Mesh(np.array(devices, dtype=object), (name,), axis_types=(axis_type.Auto,))


def resolve_mesh(devices: Any) -> Mesh | None:
    """``devices`` (None, a count, a sequence of devices or a one-axis Mesh) checked.

    Returns a one-axis :class:`jax.sharding.Mesh` (its axis ``"data"``, or the given
    mesh's name) whose axis XLA shards automatically, or None.
    """
    if devices is None:
        return None
    local = jax.local_devices()
    have = ", ".join(f"{d.platform}:{d.id}" for d in local)
    name = "data"
    if isinstance(devices, Mesh):
        if len(devices.axis_names) != 1:
            raise ValueError(
                "`devices` must be a Mesh with one axis (the data axis the examples are "
                f"sharded along); got a mesh with axes {dict(devices.shape)}."
            )
        name = devices.axis_names[0]
        chosen = list(devices.devices.flat)
    elif isinstance(devices, int | np.integer) and not isinstance(devices, bool):
        count = int(devices)
        if count < 1:
            raise ValueError(f"`devices` must be a positive number of devices; got {count}.")
        if count > len(local):
            raise ValueError(
                f"`devices` must be at most the number of devices JAX has here "
                f"({len(local)}: {have}); got {count}. " + _HOST_DEVICES_HINT.format(n=count)
            )
        chosen = list(local[:count])
    elif isinstance(devices, Sequence | np.ndarray) and not isinstance(devices, str | bytes):
        chosen = list(np.asarray(devices, dtype=object).flat)
        if not chosen:
            raise ValueError(
                "`devices` must hold at least one jax.Device; got an empty "
                f"{type(devices).__name__}."
            )
        for d in chosen:
            if not isinstance(d, jax.Device):
                raise TypeError(
                    "`devices` must be a sequence of jax.Device (such as jax.devices()[:2]); "
                    f"it holds a {type(d).__name__} {d!r:.60}."
                )
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"`devices` must not repeat a device; got {chosen}.")
    else:
        raise TypeError(
            "`devices` must be None, a number of devices, a sequence of jax.Device or a "
            f"one-axis jax.sharding.Mesh; got {type(devices).__name__} {devices!r:.60}."
        )
    platforms = sorted({d.platform for d in chosen})
    if len(platforms) > 1:
        raise ValueError(
            "`devices` must all be of one platform (one kind of device); got "
            f"{', '.join(f'{d.platform}:{d.id}' for d in chosen)}."
        )
    foreign = [d for d in chosen if d.process_index != jax.process_index()]
    if foreign:
        raise ValueError(
            "`devices` must be devices of this process (the objective is data-parallel on "
            f"one host); got {', '.join(f'{d.platform}:{d.id}' for d in foreign)} of other "
            f"processes. This process has {have}."
        )
    return _one_axis_mesh(chosen, name)


class _Params:
    """Split a model into the flat float vector and what is held fixed.

    Parameter leaves (floating-point arrays that the model's kind lets train, see
    :mod:`probecore_jax._models`) are the flat vector; other array leaves are constants
    passed to the compiled functions (floating ones in ``dtype``); any other leaf (a
    Python number, a function stored in a module) is kept as is.
    """

    def __init__(
        self,
        params: Any,
        dtype: Any,
        *,
        layout: Any = None,
        device: Any = None,
        mesh: Mesh | None = None,
        warn: bool = True,
    ) -> None:
        structure = read_model(params)
        flat_paths, treedef = jax.tree_util.tree_flatten_with_path(structure.tree)
        if not flat_paths:
            raise ValueError(
                f"`params` has no leaves; pass the model's parameter pytree (got "
                f"{type(params).__name__} {params!r:.80})."
            )
        kinds = []
        float_dtypes = []
        for (path, leaf), trainable in zip(flat_paths, structure.trainable, strict=True):
            if not _is_array(leaf):
                kinds.append("static")
                continue
            if _is_key(leaf):
                kinds.append("const")
                continue
            if jnp.issubdtype(leaf.dtype, jnp.complexfloating):
                raise TypeError(
                    f"`params` leaf {jax.tree_util.keystr(path)} is complex "
                    f"({np.dtype(leaf.dtype)}); probecore measures real losses of real "
                    "parameters."
                )
            if _is_float(leaf.dtype) and trainable:
                kinds.append("float")
                float_dtypes.append(np.dtype(leaf.dtype))
            else:
                kinds.append("const")
        if not float_dtypes:
            found = sorted({str(getattr(a, "dtype", type(a).__name__)) for _, a in flat_paths})
            raise TypeError(
                "`params` has no floating-point array leaves to differentiate; got leaves of "
                f"{', '.join(found)}."
            )
        if dtype is None:
            dtype = functools.reduce(jnp.promote_types, float_dtypes)
            if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
                raise ValueError(
                    f"`params` have dtype {np.dtype(dtype)}; probecore supports float32 and "
                    "float64: pass dtype=np.float32 or dtype=np.float64."
                )
        dtype = check_dtype("dtype", dtype)
        if dtype == np.float64 and not jax.config.jax_enable_x64:
            raise ValueError(
                "dtype float64 needs JAX's 64-bit mode, which is off: call "
                "jax.config.update('jax_enable_x64', True) at start-up (or set "
                "JAX_ENABLE_X64=1), or pass dtype=np.float32."
            )
        self.dtype = dtype
        self.kind = structure.kind
        self.merge = structure.merge
        self.device = resolve_device(device)
        self.mesh = mesh
        if mesh is not None:
            # parameters (and every vector) replicated; batches split along the data axis
            self.replicated = NamedSharding(mesh, P())
            self.sharded = NamedSharding(mesh, P(mesh.axis_names[0]))
        self.treedef = treedef
        self.kinds = tuple(kinds)
        leaves = [leaf for _, leaf in flat_paths]
        pairs = list(zip(leaves, kinds, strict=True))
        self.float_leaves = [self.put(_as_jax(a, dtype)) for a, k in pairs if k == "float"]
        self.consts = tuple(self.put(self._const(a)) for a, k in pairs if k == "const")
        self.statics = tuple(a for a, k in pairs if k == "static")
        flat, self.unravel = ravel_pytree(self.float_leaves)
        self.x0 = np.array(flat, dtype=dtype)
        indices = [i for i, k in enumerate(kinds) if k == "float"]
        paths = [flat_paths[i][0] for i in indices]
        shapes = [tuple(a.shape) for a in self.float_leaves]
        specs, inferred = block_specs(structure, indices, paths, shapes)
        base = Layout.from_shapes(specs)
        self.layout = override_layout(base, layout, param="layout")
        self.inferred = tuple(uncovered_by_override(inferred, layout))
        self._check_ravel_order(base)
        if not np.all(np.isfinite(self.x0)):
            bad = [b.name for b in self.layout if not np.all(np.isfinite(self.x0[b.slice]))]
            raise ValueError(
                f"`params` must be finite; leaf {', '.join(bad)} has NaN or inf entries."
            )
        if warn and self.inferred:
            warnings.warn(
                inferred_warning(list(self.inferred)), UserWarning, stacklevel=caller_stacklevel()
            )

    def _const(self, a: Any) -> jax.Array:
        """A held-fixed array: floating ones (such as batch statistics) in ``dtype``."""
        if not isinstance(a, jax.Array) and _is_float(np.asarray(a).dtype):
            return _as_jax(a, self.dtype)
        if isinstance(a, jax.Array) and not _is_key(a) and _is_float(a.dtype):
            return jnp.asarray(a, dtype=self.dtype)
        return a if isinstance(a, jax.Array) else _as_jax(a)

    def put(self, a: Any) -> jax.Array:
        """``a`` as a jax array on the objective's device (JAX's default if none).

        With ``devices``: replicated on every device of the mesh.
        """
        if self.mesh is not None:
            return jax.device_put(a, self.replicated)
        if self.device is None:
            return jnp.asarray(a)
        return jax.device_put(a, self.device)

    def _check_ravel_order(self, layout: Layout) -> None:
        """ravel_pytree concatenates leaves in flattening order; make sure of it."""
        if layout.dim != self.x0.size:  # pragma: no cover - a JAX regression
            raise AssertionError(
                f"ravel_pytree gave {self.x0.size} entries but the leaves hold {layout.dim}."
            )
        for block, leaf in zip(layout, self.float_leaves, strict=True):
            got = self.x0[block.slice].reshape(block.shape)
            if not np.array_equal(got, np.asarray(leaf), equal_nan=True):  # pragma: no cover
                raise AssertionError(
                    f"ravel_pytree does not lay out leaf {block.name!r} at offset "
                    f"{block.offset}; the layout would name the wrong entries."
                )

    def tree(self, x: jax.Array, consts: tuple[jax.Array, ...]) -> Any:
        """The flattened structure's pytree for the flat vector ``x`` (traceable)."""
        floats = iter(self.unravel(x))
        const_it, static_it = iter(consts), iter(self.statics)
        leaves = []
        for kind in self.kinds:
            if kind == "float":
                leaves.append(next(floats))
            elif kind == "const":
                leaves.append(next(const_it))
            else:
                leaves.append(next(static_it))
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def build(self, x: jax.Array, consts: tuple[jax.Array, ...]) -> Any:
        """The object ``loss_fn`` receives for the flat vector ``x`` (traceable)."""
        return self.merge(self.tree(x, consts))

    def original(self) -> Any:
        """The model as given, floating leaves in ``dtype``.

        Numpy leaves for pytrees and Equinox modules, jax arrays for NNX modules and states.
        """
        if self.kind in ("nnx", "nnx_state"):
            return self.build(jnp.asarray(self.x0), self.consts)
        floats = iter(self.float_leaves)
        const_it, static_it = iter(self.consts), iter(self.statics)
        leaves = []
        for kind in self.kinds:
            if kind == "float":
                leaves.append(np.asarray(next(floats)))
            elif kind == "const":
                c = next(const_it)
                leaves.append(c if _is_key(c) else np.asarray(c))
            else:
                leaves.append(next(static_it))
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def state_digest_parts(self) -> list[Any]:
        """The held-fixed arrays as numpy (PRNG keys as their key data)."""
        return [np.asarray(jax.random.key_data(c) if _is_key(c) else c) for c in self.consts]


# --------------------------------------------------------------------------- data


class _Batches:
    """Marker: ``data`` that is already a list of batches (used when unpickling)."""

    def __init__(self, batches: list[Any]) -> None:
        self.batches = batches


def _as_batch_list(data: Any) -> list[Any]:
    """Tell one batch from an iterable of batches (see :class:`JaxObjective`)."""
    if data is None:
        raise TypeError(
            "`data` is required: one batch (a tuple of arrays such as (inputs, targets), or "
            "any pytree of arrays sharing their leading dimension) or an iterable of batches."
        )
    if isinstance(data, _Batches):
        return list(data.batches)
    if _is_array(data) or isinstance(data, Mapping):
        return [data]
    if isinstance(data, list | tuple):
        if not data:
            raise ValueError("`data` is empty; pass at least one batch of examples.")
        if any(_is_array(d) for d in data):
            return [data]  # (inputs, targets): one batch
        return list(data)  # [(inputs, targets), ...]: batches
    if isinstance(data, Iterable) and not isinstance(data, str | bytes):
        batches = list(data)  # a generator or loader: materialized once
        if not batches:
            raise ValueError("`data` yielded no batches.")
        return batches
    return [data]  # a custom pytree of arrays


def _convert_batch(index: int, batch: Any, dtype: np.dtype, check: bool = True) -> tuple[Any, int]:
    """The batch with jax leaves (floating ones in ``dtype``) and its number of examples.

    ``check=False`` skips the scan for non-finite values (a streamed batch seen before).
    """
    leaves, treedef = jax.tree_util.tree_flatten(batch)
    if not leaves:
        raise ValueError(f"batch {index} of `data` holds no arrays.")
    converted = []
    for leaf in leaves:
        if not _is_array(leaf):
            raise TypeError(
                f"batch {index} of `data` has a leaf of type {type(leaf).__name__}; every "
                "leaf must be an array whose leading dimension indexes examples."
            )
        leaf_dtype = np.dtype(leaf.dtype)
        array = _as_jax(leaf, dtype if _is_float(leaf_dtype) else None)
        if check and _is_float(leaf_dtype):
            bad = ~jnp.isfinite(array)
            if bool(bad.any()):
                where = tuple(int(k) for k in np.argwhere(np.asarray(bad))[0])
                raise ValueError(
                    f"batch {index} of `data` holds {int(bad.sum())} non-finite values (the "
                    f"first, {float(array[where])}, at index {where} of a leaf of shape "
                    f"{tuple(array.shape)}); every gradient and HVP would be NaN. Clean or "
                    "drop those examples."
                )
        converted.append(array)
    shapes = [tuple(a.shape) for a in converted]
    if any(len(s) == 0 for s in shapes) or len({s[0] for s in shapes}) != 1:
        raise ValueError(
            f"the arrays of batch {index} of `data` must share their leading dimension (the "
            f"number of examples); got shapes {', '.join(map(str, shapes))}."
        )
    n = shapes[0][0]
    if n == 0:
        raise ValueError(f"batch {index} of `data` has no examples.")
    return jax.tree_util.tree_unflatten(treedef, converted), n


def _check_stream(data: Any) -> Any:
    """``data`` for ``stream=True``: an iterable that can be iterated again, in one order."""
    if data is None or isinstance(data, _Batches):
        return data
    one_batch = isinstance(data, list | tuple) and any(_is_array(d) for d in data)
    if one_batch or _is_array(data) or isinstance(data, Mapping) or not isinstance(data, Iterable):
        raise TypeError(
            "stream=True needs `data` to be an iterable of batches that can be iterated again "
            "(a list, a data loader); got one batch of type "
            f"{type(data).__name__}. Pass it with stream=False (the default)."
        )
    if iter(data) is data:
        raise TypeError(
            f"stream=True needs `data` to be iterable more than once, but a "
            f"{type(data).__name__} is exhausted after one pass (a generator or iterator). "
            "Pass a list or an object whose __iter__ starts a new pass each time (e.g. a "
            "class wrapping the generator function), or stream=False to read it once."
        )
    return data


def _batch_digest(batch: Any) -> str:
    """Digest of one converted batch's leaves (dtype, shape and bytes)."""
    return digest([np.asarray(a) for a in jax.tree_util.tree_leaves(batch)])


def _pad_size(m: int, cap: int) -> int:
    """Next power of two >= m, at most ``cap``: few distinct shapes, so few compilations."""
    return min(cap, 1 << max(0, m - 1).bit_length())


def _split_counts(n: int, mesh: Mesh | None) -> tuple[int, ...]:
    """How a batch of ``n`` examples is evaluated: the examples of each piece.

    Without a mesh, one piece. Over ``d`` devices, the largest multiple of ``d`` sharded
    along the data axis, then the remaining ``n mod d`` examples replicated (every device
    computes them): the loss is the example-weighted mean of the pieces' means, so the
    split changes nothing but the order of the additions.
    """
    if mesh is None:
        return (n,)
    sharded = n - n % mesh.size
    return tuple(c for c in (sharded, n - sharded) if c)


# --------------------------------------------------------------------------- compiled


class _Functions:
    """The jit-compiled functions of one model, shared by an objective and its subsets.

    Each takes an accumulator and a weight and returns ``acc + w * value`` for one batch,
    so that the data-set mean costs one dispatch per batch.
    """

    def __init__(self, loss_fn: Callable, metrics_fn: Callable | None, build: Callable) -> None:
        def f(x, consts, batch):
            return loss_fn(build(x, consts), batch)

        grad = jax.grad(f)

        def hvp(x, consts, batch, v):
            return jax.jvp(lambda y: grad(y, consts, batch), (x,), (v,))[1]

        def linearize(x, consts, batch):
            return jax.linearize(lambda y: grad(y, consts, batch), x)[1]

        def loss_and_grad(acc_l, acc_g, w, x, consts, batch):
            value, g = jax.value_and_grad(f)(x, consts, batch)
            return acc_l + w * value, acc_g + w * g

        def span(acc, w, points, consts, batch):
            return acc + w * jax.vmap(f, in_axes=(0, None, None))(points, consts, batch)

        self.f = f
        self.loss = jax.jit(lambda acc, w, x, c, b: acc + w * f(x, c, b))
        self.loss_and_grad = jax.jit(loss_and_grad)
        self.hvp = jax.jit(lambda acc, w, x, c, b, v: acc + w * hvp(x, c, b, v))
        self.hvp_many = jax.jit(
            lambda acc, w, x, c, b, V: acc + w * jax.vmap(lambda v: hvp(x, c, b, v))(V)
        )
        self.linearize = jax.jit(linearize)
        self.apply = jax.jit(lambda acc, w, lin, v: acc + w * lin(v))
        self.apply_many = jax.jit(lambda acc, w, lin, V: acc + w * jax.vmap(lin)(V))
        self.span = jax.jit(span)
        if metrics_fn is not None:

            def metrics(acc, w, x, consts, batch):
                out = metrics_fn(build(x, consts), batch)
                return {k: acc[k] + w * jnp.asarray(out[k]).astype(acc[k].dtype) for k in acc}

            self.metrics_raw = lambda x, c, b: metrics_fn(build(x, c), b)
            self.metrics = jax.jit(metrics)


# --------------------------------------------------------------------------- objective


class JaxObjective(AbstractObjective):
    """A JAX loss ``loss_fn(params, batch)`` over a data set, as a probecore Objective.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, batch)`` returns the *mean* loss over ``batch`` as a scalar. It
        must be a pure JAX function (it is jit-compiled and differentiated twice) and
        deterministic: dropout off, a fixed key for anything random.
    params : pytree, Equinox module, Flax NNX module or NNX State
        The model; ``loss_fn`` receives it, rebuilt at each point, in the same kind.
        Equinox module: its inexact array leaves are the parameters (the flat vector
        ``x``); functions, Python numbers and integer arrays are held fixed (as
        ``eqx.partition(model, eqx.is_inexact_array)``). NNX module: its ``nnx.Param``
        variables are the parameters, other variables (``BatchStat``, RNG state) are held
        fixed; ``loss_fn`` receives ``nnx.merge`` of the graph and the states. NNX
        ``State``: its ``Param`` variables. Flax linen variables (a dict with a
        ``"params"`` collection and only dicts as values, e.g. ``{"params": ...,
        "batch_stats": ...}``): ``params`` are the parameters, the other collections are
        held fixed, ``loss_fn`` receives the whole dict. Any other pytree (nested
        dicts/lists/tuples, registered dataclasses): floating-point array leaves are the
        parameters; integer and boolean arrays and non-array leaves are held fixed.
        Held-fixed floating arrays are converted to ``dtype``.
    data : batch or iterable of batches
        One batch -- a tuple or list of arrays such as ``(inputs, targets)``, a dict or any
        pytree of arrays whose leaves share the leading dimension (the number of examples)
        -- or a list/iterable of such batches (a generator or loader is materialized once,
        onto JAX's default device). A list or tuple none of whose elements is an array is
        a list of batches. Floating-point leaves are converted to ``dtype``.
    dtype : {None, float32, float64}
        Float type of ``x``, of the parameters and of the floating data inside the loss.
        Default: the parameters' dtype. float64 needs ``jax_enable_x64``.
    metrics_fn : callable, optional
        ``metrics_fn(params, batch)`` returns a dict of scalar means over the batch (such
        as ``{"accuracy": ...}``); :meth:`metrics` averages them over the data set.
    hvp_chunk : int
        Vectors per vectorized (``jax.vmap``) HVP evaluation in :meth:`hvp_many`; memory
        grows with it.
    check_determinism : bool
        Evaluate the loss twice at ``x0`` at construction and refuse a loss that differs.
    layout : None, Layout or Mapping
        Roles and filter axes to impose on the blocks :func:`param_layout` derives: a
        mapping from a block name or shell pattern to a role, a filter axis (``0`` for
        ``(out, in)`` weights, ``-1`` for ``(..., in, out)``), a ``(role, axis)`` pair or
        a dict, or a whole :class:`probecore.Layout`
        (:func:`probecore.backend.override_layout`). Weights whose filter axis was
        inferred from their rank alone (plain pytrees) raise a ``UserWarning`` unless
        ``layout`` names them.
    device : None, jax.Device or str
        Where parameters and data live and the functions run: a :class:`jax.Device` or
        ``"cpu"``, ``"gpu"``, ``"tpu"``, ``"gpu:1"`` (platform and index among
        ``jax.devices(platform)``). Default: JAX's default device.
    stream : bool
        False (default): the batches are read once and kept on the device. True: ``data``
        is an iterable of batches that is iterated again for every evaluation (a list of
        host arrays, a loader whose ``__iter__`` starts a new pass), one batch on the
        device at a time, for data sets larger than device memory. It must yield the
        same batches in the same order each pass (checked by their sizes); a generator
        is refused. The first pass checks and digests every batch; HVPs are never cached
        across batches (no linearization), and a :meth:`subset` is held in memory.
    devices : None, int, sequence of jax.Device or jax.sharding.Mesh
        Data parallelism over several devices of this process (several GPUs of one host,
        or host devices on the CPU). A count ``n`` takes the first ``n`` of
        :func:`jax.local_devices`; a sequence names the devices (all of one platform); a
        :class:`~jax.sharding.Mesh` must have one axis, along which the examples are
        split. Each batch's leaves are placed with ``NamedSharding(mesh, P(axis))``
        along their leading (example) axis, and the parameters and every vector are
        replicated; the same compiled functions then run on all devices at once, XLA
        summing the devices' partial results. A batch whose size is not a multiple of
        the number of devices ``d`` is evaluated as two pieces weighted by their number
        of examples: its first ``d·⌊n/d⌋`` examples sharded, the rest (and a batch
        smaller than ``d``) replicated. This is the same loss as one device computes,
        up to the order of the additions (float64 results agree to 1e-12 relative), for
        any ``loss_fn`` that is a mean over examples -- as :meth:`subset` and the
        batch weights already assume; a loss coupling the examples of a batch (batch
        statistics) would see the remainder as a batch of its own. Default (None): one
        device, see ``device``, which cannot be combined with ``devices``. On a machine
        without accelerators, ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` in
        the environment before JAX is first imported gives two host devices (they share
        the CPU's cores, so this tests the sharding rather than speeding anything up).

    Attributes
    ----------
    linearize_max_bytes : int or None
        Largest memory (bytes, estimated with :func:`jax.eval_shape`) that the cached
        linearization of the gradient at one point may hold, summed over batches (and
        over the devices of ``devices``); above it every HVP recomputes the forward and
        backward pass instead. Default (None): 1 GiB on accelerators and 0 (no cache) on
        the CPU, where a reused linearization measured no faster than a fresh ``jvp`` of
        the gradient and a cold one 1.4× slower (``benchmarks/backends_jax.py``). Assign
        to the instance, before its first HVP, to change it.

    Notes
    -----
    The loss over the data set is ``Σ_b (n_b / N) loss_fn(params, batch_b)``: batch means
    weighted by their number of examples, so a short last batch is not over-weighted.
    Every function of ``x`` is compiled once per distinct batch shape.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> params = {"w": jnp.ones((1, 3)), "b": jnp.zeros(1)}
    >>> X, y = jnp.eye(3), jnp.array([1.0, 2.0, 3.0])
    >>> def loss_fn(p, batch):
    ...     inputs, targets = batch
    ...     return jnp.mean((inputs @ p["w"].T + p["b"] - targets[:, None]) ** 2)
    >>> obj = JaxObjective(loss_fn, params, (X, y), layout={"w": 0})  # w is (out, in)
    >>> obj.dim, [(block.name, block.role, block.filter_axis) for block in obj.layout]
    (4, [('b', 'other', 0), ('w', 'weight', 0)])
    """

    linearize_max_bytes: int | None = None

    def __init__(
        self,
        loss_fn: Callable[[Any, Any], Any],
        params: Any,
        data: Any,
        *,
        dtype: Any = None,
        metrics_fn: Callable[[Any, Any], Mapping[str, Any]] | None = None,
        hvp_chunk: int = 32,
        check_determinism: bool = True,
        layout: Any = None,
        device: Any = None,
        stream: bool = False,
        devices: Any = None,
    ) -> None:
        if not callable(loss_fn):
            raise TypeError(
                "`loss_fn` must be a callable loss_fn(params, batch); got "
                f"{type(loss_fn).__name__}."
            )
        if metrics_fn is not None and not callable(metrics_fn):
            raise TypeError(
                "`metrics_fn` must be None or a callable metrics_fn(params, batch) returning a "
                f"dict of scalars; got {type(metrics_fn).__name__}."
            )
        self.hvp_chunk = check_int("hvp_chunk", hvp_chunk, lo=1)
        check_determinism = check_bool("check_determinism", check_determinism)
        self._loss_fn, self._metrics_fn = loss_fn, metrics_fn
        mesh = resolve_mesh(devices)
        if mesh is not None and device is not None:
            raise ValueError(
                "`device` and `devices` cannot be combined: pass `devices` (the devices "
                f"the data are sharded over) alone; got device={device!r} and "
                f"devices={devices!r:.80}."
            )
        self._params = _Params(params, dtype, layout=layout, device=device, mesh=mesh)
        self._fns = _Functions(loss_fn, metrics_fn, self._params.build)
        self._metric_keys: tuple[str, ...] | None = None
        self._zero_cache: dict[tuple, jax.Array] = {}
        self._stream: Any = None
        if check_bool("stream", stream):
            self._set_stream(_check_stream(data))
        else:
            self._set_batches(_as_batch_list(data))
        self._loss_dtype = self._check_loss_output()
        self._check_at_x0(check_determinism)

    # -- set-up -----------------------------------------------------------------------------

    def _set_batches(self, raw: list[Any]) -> None:
        dtype = self._params.dtype
        batches, sizes = [], []
        treedef0 = None
        digests = []
        for i, raw_batch in enumerate(raw):
            batch, n = _convert_batch(i, raw_batch, dtype)
            treedef = jax.tree_util.tree_structure(batch)
            if treedef0 is None:
                treedef0 = treedef
            elif treedef != treedef0:
                raise ValueError(
                    f"batch {i} of `data` has structure {treedef} but batch 0 has {treedef0}; "
                    "all batches must hold the same arrays."
                )
            digests.append(_batch_digest(batch))  # of the whole batch, however placed
            batches.append(self._split(batch, n))
            sizes.append(n)
        self._held: list[list[Any]] | None = batches
        self._first = batches[0][0]
        self._data_digest = digest(digests, stable_repr(treedef0))
        self._set_sizes(sizes)

    def _set_stream(self, data: Any) -> None:
        """One pass over a streamed data set: check it, count and digest its batches."""
        if data is None:
            raise TypeError("`data` is required: an iterable of batches (stream=True).")
        dtype = self._params.dtype
        sizes, digests, treedef0, first = [], [], None, None
        for i, raw_batch in enumerate(data):
            batch, n = _convert_batch(i, raw_batch, dtype)
            treedef = jax.tree_util.tree_structure(batch)
            if treedef0 is None:
                treedef0, first = treedef, self._split(batch, n)[0]
            elif treedef != treedef0:
                raise ValueError(
                    f"batch {i} of `data` has structure {treedef} but batch 0 has {treedef0}; "
                    "all batches must hold the same arrays."
                )
            sizes.append(n)
            digests.append(_batch_digest(batch))
        if not sizes:
            raise ValueError("`data` yielded no batches.")
        self._stream, self._held, self._first = data, None, first
        self._data_digest = digest(digests, stable_repr(treedef0))
        self._set_sizes(sizes)

    def _split(self, batch: Any, n: int) -> list[Any]:
        """The batch placed on the device(s), in the pieces of :func:`_split_counts`."""
        p = self._params
        if p.mesh is None:
            return [batch if p.device is None else jax.device_put(batch, p.device)]
        pieces, start = [], 0
        for count in _split_counts(n, p.mesh):
            part = batch
            if count != n:
                part = jax.tree_util.tree_map(lambda a, s=start, c=count: a[s : s + c], batch)
            sharded = count % p.mesh.size == 0
            pieces.append(jax.device_put(part, p.sharded if sharded else p.replicated))
            start += count
        return pieces

    def _whole_batches(self):
        """The batches held on the device(s), each whole again (its pieces joined)."""
        for pieces in self._held or ():
            if len(pieces) == 1:
                yield pieces[0]
            else:
                yield jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=0), *pieces)

    @property
    def _batches(self) -> list[Any] | None:
        """The whole batches held on the device(s); None when streamed."""
        return None if self._held is None else list(self._whole_batches())

    def _set_sizes(self, sizes: list[int]) -> None:
        dtype = self._params.dtype
        self._sizes = tuple(sizes)
        total = sum(sizes)
        self.n_examples = total
        # Weights n/N of every piece (a whole batch without `devices`), rounded once.
        self._weights = tuple(
            tuple(np.asarray(c / total, dtype=dtype) for c in _split_counts(n, self._params.mesh))
            for n in sizes
        )
        self._linearized: tuple[np.ndarray, list[tuple[Any, Any]]] | None = None
        self._use_linearize: bool | None = None
        self._fingerprint: dict[str, str] | None = None  # the data changed: found again

    def _check_loss_output(self) -> np.dtype:
        x = self._params.put(self._params.x0)
        out = jax.eval_shape(self._fns.f, x, self._params.consts, self._first)
        shape = getattr(out, "shape", None)
        if shape != ():
            what = f"shape {shape}" if shape is not None else f"a {type(out).__name__}"
            raise TypeError(
                "`loss_fn(params, batch)` must return the mean loss over the batch as a scalar; "
                f"it returned {what}. Reduce it with jnp.mean."
            )
        if not _is_float(np.dtype(out.dtype)):
            raise TypeError(
                f"`loss_fn(params, batch)` must return a floating-point scalar; got {out.dtype}."
            )
        return np.dtype(out.dtype)

    def _check_split(self) -> None:
        """With ``devices``: refuse a loss that a batch's split into two pieces changes.

        The split is exact for a loss that is a mean over examples; one that couples the
        examples of a batch (a masked-token mean, batch statistics) gives another number
        for the two pieces than for the whole batch. The first batch split in two is
        evaluated both ways at x0.
        """
        p = self._params
        if p.mesh is None:
            return
        uneven = [i for i, n in enumerate(self._sizes) if len(_split_counts(n, p.mesh)) > 1]
        if not uneven:
            return
        i, n = uneven[0], self._sizes[uneven[0]]
        if self._held is not None:
            pieces = self._held[i]
            whole = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=0), *pieces)
        else:
            whole = next(b for j, b in self._read_stream() if j == i)
            pieces = self._split(whole, n)
        xj = p.put(p.x0)
        zero = self._zeros((), self._loss_dtype)
        one = np.asarray(1.0, dtype=p.dtype)
        entire = float(self._fns.loss(zero, one, xj, p.consts, p.put(whole)))
        split = zero
        for c, piece in zip(_split_counts(n, p.mesh), pieces, strict=True):
            split = self._fns.loss(split, np.asarray(c / n, dtype=p.dtype), xj, p.consts, piece)
        split = float(split)
        if abs(split - entire) > 1e3 * np.finfo(p.dtype).eps * max(abs(entire), 1e-30):
            d = p.mesh.size
            raise ValueError(
                f"with devices={d}, batch {i} ({n} examples) is evaluated as {n - n % d} "
                f"examples sharded over the devices and {n % d} replicated, weighted by their "
                f"counts; for this `loss_fn` that gives {split!r} where the whole batch gives "
                f"{entire!r}, so it is not a mean over examples (a masked-token mean, batch "
                f"statistics). Use batch sizes that are multiples of {d}."
            )

    def _check_at_x0(self, check_determinism: bool) -> None:
        self._check_split()
        first = self.loss(self._params.x0)
        if not math.isfinite(first):
            raise ValueError(
                f"the loss at the model's parameters (x0) is {first}; probecore needs a finite "
                "loss there (check the data, the parameters and the loss for NaN/inf)."
            )
        if check_determinism:
            second = self.loss(self._params.x0)
            if second != first:
                raise ValueError(
                    "`loss_fn` is not deterministic: two evaluations at x0 gave "
                    f"{first!r} and {second!r}. Turn off dropout and anything random (or use a "
                    "fixed key); pass check_determinism=False to skip this check."
                )

    # -- the contract's attributes ----------------------------------------------------------

    @property
    def dim(self) -> int:
        """Length of the flat parameter vector."""
        return self._params.layout.dim

    @property
    def dtype(self) -> np.dtype:
        """``float32`` or ``float64``."""
        return self._params.dtype

    @property
    def layout(self) -> Layout:
        """One block per floating-point leaf of ``params``, in ravel order."""
        return self._params.layout

    @property
    def x0(self) -> np.ndarray:
        """The model's parameters, flat (a fresh copy)."""
        return self._params.x0.copy()

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """Number of examples of each batch."""
        return self._sizes

    @property
    def device(self) -> jax.Device | None:
        """The device given by the ``device`` option (None: JAX's default device)."""
        return self._params.device

    @property
    def mesh(self) -> Mesh | None:
        """The one-axis mesh the data are sharded over (``devices``); None: one device."""
        return self._params.mesh

    def to_params(self, x: np.ndarray) -> Any:
        """The model at the flat vector ``x``, of the kind given (jax array leaves).

        A pytree for a pytree, an Equinox module for an Equinox module, an NNX module
        (``nnx.merge`` of its graph and the states at ``x``) for an NNX module, an NNX
        ``State`` for a ``State``, the full variables dict for linen variables.
        """
        x = self._vector("x", x)
        return self._params.build(self._params.put(x), self._params.consts)

    # -- evaluation ---------------------------------------------------------------------------

    def _vector(self, name: str, x: Any) -> np.ndarray:
        return check_vector(name, x, dim=self.dim, dtype=self.dtype)

    def _zeros(self, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        """A cached zero accumulator (jax arrays are immutable, so sharing is safe)."""
        key = (shape, np.dtype(dtype))
        zero = self._zero_cache.get(key)
        if zero is None:
            zero = self._zero_cache[key] = self._params.put(jnp.zeros(shape, dtype))
        return zero

    def _each_batch(self):
        """``(weight, consts, piece)`` for every piece of every batch, in order."""
        consts = self._params.consts
        if self._stream is None:
            for weights, pieces in zip(self._weights, self._held, strict=True):
                for w, piece in zip(weights, pieces, strict=True):
                    yield w, consts, piece
            return
        # streamed: one batch on the device(s) at a time, read again on every pass
        for i, batch in self._read_stream():
            for w, piece in zip(self._weights[i], self._split(batch, self._sizes[i]), strict=True):
                yield w, consts, piece

    def _read_stream(self):
        """``(index, batch)`` for every batch of a streamed data set, checked."""
        n = 0
        for i, raw_batch in enumerate(self._stream):
            batch, size = _convert_batch(i, raw_batch, self._params.dtype, check=False)
            if i >= len(self._sizes) or size != self._sizes[i]:
                raise RuntimeError(
                    f"the streamed `data` changed between passes: batch {i} has {size} "
                    "examples, where the first pass had "
                    f"{self._sizes[i] if i < len(self._sizes) else 'no such batch'}. "
                    "A streamed data set must yield the same batches in the same order."
                )
            n += 1
            yield i, batch
        if n != len(self._sizes):
            raise RuntimeError(
                f"the streamed `data` changed between passes: {n} batches, where the first "
                f"pass had {len(self._sizes)}."
            )

    def loss(self, x: np.ndarray) -> float:
        """Mean loss over the data set at ``x``."""
        xj = self._params.put(self._vector("x", x))
        acc = self._zeros((), self._loss_dtype)
        for w, consts, batch in self._each_batch():
            acc = self._fns.loss(acc, w, xj, consts, batch)
        return float(acc)

    def loss_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient in one forward and backward pass per batch."""
        xj = self._params.put(self._vector("x", x))
        acc_l = self._zeros((), self._loss_dtype)
        acc_g = self._zeros((self.dim,), self.dtype)
        for w, consts, batch in self._each_batch():
            acc_l, acc_g = self._fns.loss_and_grad(acc_l, acc_g, w, xj, consts, batch)
        return float(acc_l), np.array(acc_g, dtype=self.dtype)

    def grad(self, x: np.ndarray) -> np.ndarray:
        """Gradient of :meth:`loss` at ``x``."""
        return self.loss_and_grad(x)[1]

    def _linearize_fits(self, xj: jax.Array) -> bool:
        if self._stream is not None:
            return False  # the cache would hold residuals of every batch
        if self._use_linearize is None:
            by_shape: dict[Any, int] = {}
            total = 0
            for _, consts, batch in self._each_batch():
                key = (
                    jax.tree_util.tree_structure(batch),
                    tuple((a.shape, a.dtype) for a in jax.tree_util.tree_leaves(batch)),
                )
                if key not in by_shape:
                    lin = jax.eval_shape(self._fns.linearize, xj, consts, batch)
                    by_shape[key] = sum(
                        math.prod(a.shape) * np.dtype(a.dtype).itemsize
                        for a in jax.tree_util.tree_leaves(lin)
                    )
                total += by_shape[key]
            limit = self.linearize_max_bytes
            if limit is None:  # measured: no gain on CPU (docs/benchmarks.md)
                limit = 0 if jax.default_backend() == "cpu" else 2**30
            self._use_linearize = total <= limit
        return self._use_linearize

    def _linearization(self, x: np.ndarray, xj: jax.Array) -> list[tuple[Any, Any]]:
        """``(weight, linear map)`` of every piece at ``x`` (cached for the last ``x``)."""
        cached = self._linearized
        if cached is not None and np.array_equal(cached[0], x):
            return cached[1]
        self._linearized = None  # free the old residuals before computing new ones
        lins = [
            (w, self._fns.linearize(xj, consts, batch)) for w, consts, batch in self._each_batch()
        ]
        self._linearized = (x.copy(), lins)
        return lins

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Exact Hessian-vector product ``H(x) v`` (forward-over-reverse)."""
        x = self._vector("x", x)
        vj = self._params.put(self._vector("v", v))
        xj = self._params.put(x)
        acc = self._zeros((self.dim,), self.dtype)
        if self._linearize_fits(xj):
            for w, lin in self._linearization(x, xj):
                acc = self._fns.apply(acc, w, lin, vj)
        else:
            for w, consts, batch in self._each_batch():
                acc = self._fns.hvp(acc, w, xj, consts, batch, vj)
        return np.array(acc, dtype=self.dtype)

    def hvp_many(self, x: np.ndarray, V: np.ndarray) -> np.ndarray:
        """``H(x)`` times each row of ``V``, ``hvp_chunk`` rows per vectorized evaluation."""
        x = self._vector("x", x)
        V = check_matrix("V", V, dim=self.dim, dtype=self.dtype)
        xj = self._params.put(x)
        out = np.empty(V.shape, dtype=self.dtype)
        use_lin = self._linearize_fits(xj) if V.shape[0] else False
        lins = self._linearization(x, xj) if use_lin else None
        for start in range(0, V.shape[0], self.hvp_chunk):
            rows = V[start : start + self.hvp_chunk]
            m = rows.shape[0]
            padded = np.zeros((_pad_size(m, self.hvp_chunk), self.dim), dtype=self.dtype)
            padded[:m] = rows
            Vj = self._params.put(padded)
            acc = self._zeros(padded.shape, self.dtype)
            if lins is not None:
                for w, lin in lins:
                    acc = self._fns.apply_many(acc, w, lin, Vj)
            else:
                for w, consts, batch in self._each_batch():
                    acc = self._fns.hvp_many(acc, w, xj, consts, batch, Vj)
            out[start : start + m] = np.asarray(acc)[:m]
        return out

    def losses_in_span(
        self, origin: np.ndarray, basis: np.ndarray, coeffs: np.ndarray
    ) -> np.ndarray:
        """Losses at ``origin + coeffs @ basis``, up to 64 points per ``vmap``.

        The points are those of :meth:`AbstractObjective.losses_in_span`, bit for bit
        (``probecore.backend.span_points``). A ``vmap`` takes at most ``chunk_size``, 64
        and ``SPAN_ROWS_NUMBERS // dim`` points, so the host block of points holds at most
        ``SPAN_ROWS_NUMBERS`` numbers (2¹⁷) or one point, whatever the chunk: a model of
        more than 2¹⁶ parameters is evaluated one point at a time, formed block by block
        (``span_point``), in ``O(dim)`` memory in its own dtype. Memory besides: the
        activations of that many simultaneous forward passes over one batch.
        """
        origin, basis, coeffs = check_span(self, origin, basis, coeffs)
        if not np.all(np.isfinite(coeffs)):
            raise ValueError("`coeffs` must be finite.")
        rows = max(1, SPAN_ROWS_NUMBERS // max(self.dim, 1))
        chunk = max(1, min(int(self.chunk_size), 64, rows))
        out = np.empty(coeffs.shape[0], dtype=np.float64)
        if coeffs.shape[0] == 0:
            return out
        block = np.empty((_pad_size(min(chunk, coeffs.shape[0]), chunk), self.dim), self.dtype)
        work: dict[str, np.ndarray] = {}
        for start in range(0, coeffs.shape[0], chunk):
            c = coeffs[start : start + chunk]
            m = c.shape[0]
            points = block[: _pad_size(m, chunk)]
            if m == 1:  # no float64 scratch of the point's size
                span_point(origin, basis, c[0], work=work, out=points[0])
            else:
                span_points(origin, basis, c, out=points[:m])
            points[m:] = origin
            Pj = self._params.put(points)
            acc = self._zeros((points.shape[0],), self._loss_dtype)
            for w, consts, batch in self._each_batch():
                acc = self._fns.span(acc, w, Pj, consts, batch)
            # (blocks until the chunk is evaluated: the block is reused for the next one)
            out[start : start + m] = np.asarray(acc, dtype=np.float64)[:m]
        return out

    def metrics(self, x: np.ndarray) -> dict[str, float]:
        """Example-weighted means of ``metrics_fn(params, batch)`` over the data set."""
        if self._metrics_fn is None:
            return {}
        xj = self._params.put(self._vector("x", x))
        keys = self._check_metrics_output(xj)
        acc = {k: self._zeros((), self.dtype) for k in keys}
        for w, consts, batch in self._each_batch():
            acc = self._fns.metrics(acc, w, xj, consts, batch)
        return {k: float(acc[k]) for k in keys}

    def _check_metrics_output(self, xj: jax.Array) -> tuple[str, ...]:
        if self._metric_keys is None:
            out = jax.eval_shape(self._fns.metrics_raw, xj, self._params.consts, self._first)
            if not isinstance(out, Mapping):
                raise TypeError(
                    "`metrics_fn(params, batch)` must return a dict of scalar means; got "
                    f"{type(out).__name__}."
                )
            for k, v in out.items():
                if not isinstance(k, str) or getattr(v, "shape", None) != ():
                    raise TypeError(
                        "`metrics_fn(params, batch)` must return a dict of scalars keyed by "
                        f"name; entry {k!r} is {getattr(v, 'shape', type(v).__name__)}."
                    )
            self._metric_keys = tuple(out)
        return self._metric_keys

    # -- subsets ------------------------------------------------------------------------------

    def fingerprint(self) -> dict[str, str]:
        """What identifies this objective to a run store (computed once, on first use).

        The loss and metrics functions' names, the model's kind, pytree structure, leaf
        shapes and layout (roles and filter axes), its held-fixed leaves, and the data (a
        digest of every batch). A store refuses to resume when any of them differs.

        The devices (``device``, ``devices``) are left out: sharding changes only the order
        of the additions, so one and two devices differ in the last bits, as two machines
        or two XLA versions do, and a store already accepts such differences (it compares
        the loss at the origin to 1000 ulps) -- a run may be resumed on another number of
        devices.
        """
        if self._fingerprint is None:
            p = self._params
            shapes = [[str(a.dtype), list(a.shape)] for a in p.float_leaves]
            self._fingerprint = {
                "backend": "jax",
                "params": digest(
                    p.kind, stable_repr(p.treedef), list(p.kinds), shapes, p.layout.to_json()
                ),
                "state": digest(p.state_digest_parts(), [stable_repr(v) for v in p.statics]),
                "loss_fn": f"{callable_name(self._loss_fn)}"
                + (f" metrics {callable_name(self._metrics_fn)}" if self._metrics_fn else ""),
                "data": self._data_digest,
            }
        return dict(self._fingerprint)

    def subset(self, indices: np.ndarray) -> JaxObjective:
        """The same objective on examples ``indices`` of the concatenated data set.

        The examples are re-batched with the size of the first batch and sharded over
        the same ``devices``; compiled functions are shared with this objective, so a
        subset of a batch shape seen before costs no compilation.
        """
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(
                f"`indices` must be an integer array; got dtype {idx.dtype} (for a boolean "
                "mask pass np.flatnonzero(mask))."
            )
        if idx.ndim != 1 or idx.size == 0:
            raise ValueError(f"`indices` must be a non-empty 1-D array; got shape {idx.shape}.")
        if idx.min() < 0 or idx.max() >= self.n_examples:
            raise ValueError(
                f"`indices` must lie in [0, {self.n_examples - 1}]; got range "
                f"[{idx.min()}, {idx.max()}]."
            )
        starts = np.cumsum((0,) + self._sizes)
        which = np.searchsorted(starts, idx, side="right") - 1
        pieces, positions = [], []
        wanted = set(np.unique(which).tolist())
        if self._stream is None:
            source = self._whole_batches()
        else:  # a streamed data set is read once more
            source = (b for _, b in self._read_stream())
        for b, batch in enumerate(source):
            if b not in wanted:
                continue
            mask = which == b
            local = jnp.asarray(idx[mask] - starts[b])
            pieces.append(jax.tree_util.tree_map(lambda a, i=local: a[i], batch))
            positions.append(np.flatnonzero(mask))
        order = jnp.asarray(np.argsort(np.concatenate(positions), kind="stable"))
        gathered = jax.tree_util.tree_map(
            lambda *parts: jnp.concatenate(parts, axis=0)[order], *pieces
        )
        size = self._sizes[0]
        batches = [
            jax.tree_util.tree_map(lambda a, s=s: a[s : s + size], gathered)
            for s in range(0, idx.size, size)
        ]
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._stream = None  # a subset is held in memory, even of a streamed data set
        new._set_batches(batches)
        return record_subset(self, new, idx)

    # -- misc ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        mesh = self._params.mesh
        return (
            f"{type(self).__name__}(dim={self.dim}, dtype={self.dtype}, "
            f"n_examples={self.n_examples}, batches={len(self._sizes)}"
            + ("" if mesh is None else f", devices={mesh.size}")
            + ")"
        )

    def __reduce__(self) -> tuple:
        """Pickle as the loss, model, data (numpy) and layout; rebuilt and recompiled on load.

        The device travels as ``"platform:id"``, a mesh as its axis name and its devices'
        ``"platform:id"``; an Equinox module pickles when its static parts (activation
        functions) do, e.g. with cloudpickle.
        """
        if self._stream is None:
            data = _Batches([jax.tree_util.tree_map(np.asarray, b) for b in self._whole_batches()])
        else:
            data = self._stream  # pickles when the loader does
        dev, mesh = self._params.device, self._params.mesh
        sharding = None
        if mesh is not None:
            sharding = (mesh.axis_names[0], [f"{d.platform}:{d.id}" for d in mesh.devices.flat])
        return (
            _rebuild,
            (
                self._loss_fn,
                self._params.original(),
                data,
                self.dtype.str,
                self._metrics_fn,
                self.hvp_chunk,
                self.layout,
                None if dev is None else f"{dev.platform}:{dev.id}",
                self._stream is not None,
                sharding,
            ),
        )


def _rebuild(
    loss_fn,
    params,
    data,
    dtype,
    metrics_fn,
    hvp_chunk,
    layout=None,
    device=None,
    stream=False,
    sharding=None,
) -> JaxObjective:
    devices = None
    if sharding is not None:
        name, ids = sharding
        devices = _one_axis_mesh([resolve_device(d) for d in ids], name)
    return JaxObjective(
        loss_fn,
        params,
        data,
        dtype=dtype,
        metrics_fn=metrics_fn,
        hvp_chunk=hvp_chunk,
        check_determinism=False,
        layout=layout,
        device=device,
        stream=stream,
        devices=devices,
    )
