"""TorchObjective: a torch model, a loss and data as a probecore Objective."""

from __future__ import annotations

import contextlib
import copy
import functools
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from probecore.backend import (
    SPAN_ROWS_NUMBERS,
    AbstractObjective,
    all_finite,
    callable_name,
    check_bool,
    check_matrix,
    check_option,
    check_span,
    check_vector,
    digest,
    record_subset,
    span_point,
    span_points,
    stable_repr,
)
from probecore_torch._bn import StatisticsCache, copy_into
from probecore_torch._data import (
    _Batch,
    _caller_level,
    _cat,
    _channels_last,
    _check_finite,
    _check_stream,
    _read_batches,
    _stream_batches,
    _take,
    _warn_partial,
)
from probecore_torch._layout import _padding_rows, _structural_layout

__all__ = ["TorchObjective"]

_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
_DROPOUT_TYPES = (nn.modules.dropout._DropoutNd,)
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
# hvp_many: the most rows, and numbers (rows × dim), one batched double backward takes
# at a time (its temporaries grow with the rows times the activations of a batch)
BATCHED_ROWS = 64
BATCHED_NUMBERS = 2**22

# One lock per user model: every evaluation goes through the model (functional_call swaps
# its parameters for the call) or through the objective's evaluation copy and graph cache,
# so two threads evaluating at once -- a thread-pool executor, a Dask worker's threads --
# would compute at each other's points. Objectives of the same model share the lock.
_MODEL_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


def _model_lock(model: nn.Module) -> threading.RLock:
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``method`` holding the model's lock (one evaluation of a model at a time)."""

    @functools.wraps(method)
    def locked(self: TorchObjective, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


def _serialized_init(init: Callable[..., None]) -> Callable[..., None]:
    """Construct holding the model's lock.

    Construction reads the model's parameters, which another thread's ``functional_call``
    may have swapped for its point.
    """

    @functools.wraps(init)
    def locked(self: TorchObjective, model: nn.Module, *args: Any, **kwargs: Any) -> None:
        if not isinstance(model, nn.Module):  # __init__ raises its own message
            init(self, model, *args, **kwargs)
            return
        with _model_lock(model):
            init(self, model, *args, **kwargs)

    return locked


class _Call(nn.Module):
    """Calls the user's model on a batch's inputs, as the ``forward`` option says."""

    def __init__(self, model: nn.Module, how: Any) -> None:
        super().__init__()
        self.model = model
        self.how = how

    def forward(self, inputs: Any) -> Any:
        """The model's output for ``inputs``."""
        if callable(self.how):
            return self.how(self.model, inputs)
        if isinstance(inputs, dict):
            return self.model(**inputs)
        if isinstance(inputs, tuple):
            return self.model(*inputs)
        return self.model(inputs)


class TorchObjective(AbstractObjective):
    r"""A PyTorch model's mean loss over a data set, as a flat-vector Objective.

    Parameters
    ----------
    model : torch.nn.Module
        The model. It is never modified: parameters are substituted through
        ``torch.func.functional_call``, and the train/eval flags of its modules are
        restored after every evaluation.
    loss_fn : callable or None
        ``loss_fn(output, targets)`` returning the **mean** loss over the batch (a scalar),
        e.g. ``torch.nn.functional.cross_entropy``. Its second argument is the targets of
        an ``(inputs, targets)`` batch, or the whole mapping of a dict batch. ``None``:
        the loss is the model output's ``.loss`` (or ``["loss"]``), which Hugging Face
        models compute when the batch holds ``labels``.
    data : DataLoader, tuple, mapping, or iterable of batches
        The whole data set as an ``(inputs, targets)`` pair or as a mapping of tensors
        (``{"input_ids": ..., "labels": ...}``), or any iterable of such batches (a
        ``DataLoader``). Every tensor of a batch holds its examples along its leading
        dimension. Batches are read once, floating tensors converted to ``dtype``, all
        kept on ``device``. A mapping batch calls ``model(**batch)``; a pair calls
        ``model(inputs)`` for a tensor, ``model(**inputs)`` for a mapping, and needs
        ``forward`` for a tuple or list. The loss is the example-weighted mean of the
        batch means (examples: the leading dimension of the targets, of ``labels``, or
        of the mapping's first tensor), so a short last batch is not over-weighted.
        With ``stream=True``: a re-iterable of batches, read again at every evaluation.
    dtype : {torch.float32, torch.float64, numpy dtypes, "float32", "float64"}, optional
        Precision of the flat vectors and of the computation (default: the parameters').
    device : str or torch.device, optional
        Where the model and data are evaluated (default: the parameters' device).
    batchnorm : {None, "running", "recompute", "batch"}
        ``"running"``: normalization layers use their running statistics (eval mode), the
        loss of the model as deployed, independent of the batching. ``"recompute"``: at
        every point evaluated, the running statistics are first recomputed over the whole
        data set (reset, one train-mode pass without gradients, example-weighted means of
        the batch means and unbiased variances: Garipov et al.'s ``update_bn``), then the
        model is evaluated in eval mode with them. The choice for points between trained
        models (paths, interpolations, planes): one extra pass over the data per new
        point; losses and metrics only (gradients and HVPs refused: take
        :meth:`statistics_at`). ``"batch"``: BatchNorm
        recomputes its statistics from each batch at the point being evaluated (the
        training loss; train-mode normalization, differentiated through exactly; running
        buffers are not updated; the loss depends on the batch size). ``None``
        (default): ``"running"``, except that a model with BatchNorm layers in training
        mode is refused, as the choices can give very different curvature.
    dropout : {None, "off"}
        Dropout is always disabled during evaluation. A model handed over in training mode
        with dropout layers is refused unless ``dropout="off"`` confirms this.
    batch_size : int, optional
        Split a whole data set (a pair or a mapping) into batches of this size (bounds
        memory).
    layout : None, probecore.Layout or mapping, optional
        Roles and filter axes of parameter blocks, overriding those derived from the
        module types (see :func:`probecore.backend.override_layout`): e.g.
        ``{"pos_embed": "other", "head.kernel": 1, "*.scale": "norm"}``.
    forward : None, "args" or callable, optional
        How a batch's inputs reach the model. ``None``: ``model(inputs)`` for a tensor,
        ``model(**inputs)`` for a mapping; tuple inputs are refused. ``"args"``:
        ``model(*inputs)`` for tuple or list inputs. A callable ``forward(model, inputs)``
        returning the output: anything else (``inputs`` is the mapping for dict batches).
    metrics_fn : callable, optional
        ``metrics_fn(output, targets)`` (``targets``: as for ``loss_fn``) returning a dict
        of batch means (scalar tensors or floats); :meth:`metrics` reports their
        example-weighted means over the data set instead of the built-in accuracy.
    retain_graph : bool
        Keep the gradient graph at the last point so that repeated HVPs there (power
        iteration, Lanczos, Hutchinson, SLQ) only run the second backward pass. Costs the
        memory of one backward graph over the whole data set; turn off for large data.
    check_determinism : bool
        Evaluate the loss on the first batch twice at the start and refuse a model whose
        two values differ.
    memory_format : {"auto", "channels_last", "preserve"}
        Layout of 4-D inputs and of the private model copy that evaluates losses and
        metrics without gradients (landscape probes evaluate thousands). ``"auto"``
        (default): channels-last when the objective runs in float32 on the CPU and the
        model has a ``Conv2d``, where oneDNN's convolutions are faster in that layout
        (1.3× per loss on the digits CNN of ``docs/benchmarks.md``); otherwise as given.
        The layout changes only the order of float sums (float32 losses move by a few
        ulps); gradients and HVPs measured the same speed in either layout.
    stream : bool
        Do not keep the data on the device: every evaluation (loss, gradient, HVP,
        metrics) reads ``data`` again and moves one batch at a time to ``device``, for
        data sets larger than device memory. ``data`` must then be a re-iterable of
        batches whose ``iter()`` gives the same batches in the same order every time: a
        ``DataLoader`` with ``shuffle=False``, a list of batches, or an object whose
        ``__iter__`` returns a fresh generator. One-shot iterators (generators),
        shuffling ``DataLoader`` objects and whole data sets (a pair or a mapping: use
        ``batch_size`` instead, or wrap them in a ``DataLoader``) are refused. Construction
        makes one pass (example counts, value checks, the fingerprint's data digest) and
        keeps no batch. HVPs rebuild each batch's gradient graph for every product
        (:meth:`hvp_many`: once per call for all its vectors), so ``retain_graph`` has no
        effect. Results and fingerprints equal those of ``stream=False`` on the same
        batches (the same sums in the same order; the data are digested batch by batch in
        both). :meth:`subset` returns an objective holding the selected examples on the
        device.

    Raises
    ------
    TypeError, ValueError
        For a model without trainable parameters, a loss that is not a scalar, batches
        whose inputs and targets differ in length, tuple inputs without ``forward``, an
        output without ``.loss`` when ``loss_fn`` is None, a non-finite or
        non-deterministic loss at the model's parameters, a training-mode model with
        dropout, or with BatchNorm and no explicit ``batchnorm``; with ``stream=True``,
        ``data`` that is a one-shot iterator, a shuffling ``DataLoader`` or a whole data
        set.
    RuntimeError
        With ``stream=True``, when a later pass over ``data`` gives other batch sizes
        than the construction pass.

    Warns
    -----
    UserWarning
        When parameters of two or more dimensions belong to a module type whose filter
        axis is not known (assumed 0) and ``layout`` does not cover them.
    """

    @_serialized_init
    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
        data: Any = None,
        *,
        dtype: Any = None,
        device: Any = None,
        batchnorm: str | None = None,
        dropout: str | None = None,
        batch_size: int | None = None,
        layout: Any = None,
        forward: Any = None,
        metrics_fn: Callable[[Any, Any], Mapping[str, Any]] | None = None,
        retain_graph: bool = True,
        check_determinism: bool = True,
        memory_format: str = "auto",
        stream: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module; got {type(model).__name__}.")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(
                "`loss_fn` must be callable, or None to use the model output's `.loss`; got "
                f"{type(loss_fn).__name__}."
            )
        if metrics_fn is not None and not callable(metrics_fn):
            raise TypeError(f"`metrics_fn` must be callable; got {type(metrics_fn).__name__}.")
        if not (forward is None or forward == "args" or callable(forward)):
            raise ValueError(
                "`forward` must be None, 'args' (call model(*inputs)) or a callable "
                f"forward(model, inputs) returning the output; got {forward!r}."
            )
        if batchnorm is not None:
            check_option("batchnorm", batchnorm, ("running", "recompute", "batch"))
        training_bn = [
            n or type(model).__name__
            for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
        ]
        if training_bn and batchnorm is None:
            raise ValueError(
                f"`model` has BatchNorm layers in training mode ({', '.join(training_bn[:3])}"
                f"{', ...' if len(training_bn) > 3 else ''}); say which loss to measure: "
                "batchnorm='running' normalizes with the running statistics (eval mode: the "
                "loss of the model as deployed), batchnorm='recompute' with statistics "
                "recomputed over the data at every evaluated point (Garipov et al.'s "
                "update_bn: use it for paths and planes between trained models), "
                "batchnorm='batch' with the statistics of "
                "each batch at the evaluated point (the training loss). The choices can give "
                "different curvature (the ResNet of docs/models.md: λmax 0.52 with 'running', "
                "1.31 with 'batch'). Calling model.eval() first selects 'running'."
            )
        self.batchnorm = batchnorm or "running"
        if dropout is not None:
            check_option("dropout", dropout, ("off",))
        self.retain_graph = check_bool("retain_graph", retain_graph)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError(
                f"`model` ({type(model).__name__}) has no trainable parameters "
                "(none with requires_grad=True); there is nothing to differentiate."
            )
        first = named[0][1]
        if dtype is None and first.dtype in (torch.float16, torch.bfloat16):
            raise ValueError(
                f"`model`'s parameters are {first.dtype}; probecore measures in float32 or "
                "float64. Pass dtype=torch.float32 (or torch.float64) to evaluate a copy of "
                "the model in that precision: your model is not changed, and the numbers are "
                f"those of the model's weights in float32 arithmetic, not of {first.dtype} "
                "arithmetic."
            )
        self._tdtype = _torch_dtype(first.dtype if dtype is None else dtype)
        self.dtype = np.dtype(str(self._tdtype).removeprefix("torch."))
        self.device = torch.device(first.device if device is None else device)
        self.model = model
        self._lock = _model_lock(model)
        self.loss_fn = loss_fn
        self.metrics_fn = metrics_fn
        self.forward = forward
        self._call = _Call(model, forward)
        self._names = [n for n, _ in named]
        self._call_names = [f"model.{n}" for n in self._names]
        self._shapes = [tuple(p.shape) for _, p in named]
        self._sizes = [p.numel() for _, p in named]
        modules = dict(model.named_modules())
        self.layout = _structural_layout(named, modules, model, layout)
        self.dim = self.layout.dim
        self._padding_rows = _padding_rows(named, modules, model, self.layout)
        trainable = set(self._names)
        self._frozen = {
            n: p.detach().to(self.device, self._tdtype)
            for n, p in model.named_parameters()
            if n not in trainable
        }
        self._buffers = {
            n: b.detach().to(self.device, self._tdtype if b.is_floating_point() else b.dtype)
            for n, b in model.named_buffers()
        }
        self._has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        # hvp_many batches its rows (one vmapped double backward) for dense networks only:
        # on convolutions the batched backward was 2-3x slower than the loop
        self._batch_rows = all(
            isinstance(m, nn.Linear)
            for m in modules.values()
            if any(p.requires_grad for p in m.parameters(recurse=False))
        )
        self._statistics = StatisticsCache()
        self._causal = type(model).__name__.endswith(_CAUSAL_SUFFIXES)
        # Only dropout layers that are themselves in training mode: a wrapper in train mode
        # around dropout layers in eval mode is not random.
        dropouts = [
            n or type(model).__name__
            for n, m in modules.items()
            if isinstance(m, _DROPOUT_TYPES) and m.training
        ]
        if dropouts and dropout is None:
            raise ValueError(
                f"`model` has dropout in training mode ({', '.join(dropouts[:3])}"
                f"{', ...' if len(dropouts) > 3 else ''}), which would make its loss random. "
                "Call model.eval() before wrapping it, or pass dropout='off' to evaluate it "
                "with dropout disabled (probecore always evaluates with dropout off; the option "
                "confirms that this is what you want)."
            )
        memory_format = check_option(
            "memory_format", memory_format, ("auto", "channels_last", "preserve")
        )
        self._channels_last = memory_format == "channels_last" or (
            memory_format == "auto"
            and self._tdtype == torch.float32
            and self.device.type == "cpu"
            and any(isinstance(m, nn.Conv2d) for m in model.modules())
        )
        self.stream = check_bool("stream", stream)
        self._data: Any = None
        self._batches: list[_Batch] | None = None
        self._counts: list[int] = []
        self._data_digest = ""
        if self.stream:
            _check_stream(data, batch_size)
            self._data = data
        else:
            self._batches = _read_batches(data, self.device, self._tdtype, batch_size, forward)
            if self._channels_last:
                self._batches = [b._replace(inputs=_channels_last(b.inputs)) for b in self._batches]
            self._set_counts([b.count for b in self._batches])
        self.x0 = (
            torch.cat([p.detach().reshape(-1) for _, p in named])
            .to("cpu", self._tdtype)
            .numpy()
            .copy()
        )
        self._options = dict(
            dtype=self.dtype,
            device=self.device,
            batchnorm=self.batchnorm,
            dropout=dropout,
            layout=layout,
            forward=forward,
            metrics_fn=metrics_fn,
            retain_graph=retain_graph,
            check_determinism=check_determinism,
            memory_format=memory_format,
            stream=self.stream,
        )
        self._graph_x = np.empty(0)
        self._key_buffer: np.ndarray | None = None
        self._evaluator: tuple[_Call, list[torch.Tensor]] | None | bool = None
        self._evaluating = False  # an evaluation through the copy is under way
        self._graph: tuple[torch.Tensor, list[torch.Tensor]] | None = None
        self._fingerprint: dict[str, str] | None = None
        if not all_finite(self.x0):
            bad = int(np.flatnonzero(~np.isfinite(self.x0))[0])
            block = next(b for b in self.layout if b.offset <= bad < b.offset + b.size)
            raise ValueError(
                f"the model's parameters are not finite: {block.name!r} holds "
                f"{self.x0[bad]} (and {int(np.sum(~np.isfinite(self.x0))) - 1} more)."
            )
        # first evaluation: a scalar, finite and deterministic loss (one pass over the
        # data, and the first batch once more for the determinism probe)
        flat = self._to_tensor(self.x0)
        # (under the model's lock, which _serialized_init holds for the whole construction)
        self._first_evaluation(flat, loss_fn, check_bool("check_determinism", check_determinism))

    def _first_evaluation(self, flat: torch.Tensor, loss_fn: Any, determinism: bool) -> None:
        """A scalar, finite and deterministic loss at the model's parameters, or raise."""
        if self.stream:
            self._scan(flat, loss_fn, determinism)
            return
        values: list[float] = []
        with torch.no_grad():
            for batch in self._batches:
                values.append(self._first_loss(flat, batch, loss_fn, first=not values))
            value = sum(w * v for w, v in zip(self._weights, values, strict=True))
            if not np.isfinite(value):
                raise ValueError(f"the loss at the model's parameters is not finite ({value}).")
            if determinism:
                self._check_determinism(flat, self._batches[0], values[0])

    def _first_loss(self, flat: torch.Tensor, batch: _Batch, loss_fn: Any, first: bool) -> float:
        """The loss of one batch at the model's parameters, its type and shape checked."""
        what = "`loss_fn`" if loss_fn is not None else "the model output's `.loss`"
        verb = "return" if loss_fn is not None else "be"
        out = self._batch_loss(flat, batch)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"{what} must {verb} a scalar torch tensor (the batch mean, with "
                f"its graph), so that it can be differentiated; it returned "
                f"{type(out).__name__}. Do not call .item() or float() on it."
            )
        if out.ndim != 0:
            raise ValueError(
                f"{what} must {verb} a scalar (the batch mean); it returned a tensor "
                f"of shape {tuple(out.shape)}. Use reduction='mean'."
            )
        if first and out.is_floating_point() and out.dtype != self._tdtype:
            coarse = torch.finfo(out.dtype).eps > torch.finfo(self._tdtype).eps
            if coarse:
                warnings.warn(
                    f"{what} is {str(out.dtype).removeprefix('torch.')} in a "
                    f"{self.dtype} objective, so losses, gradients and HVPs carry "
                    f"{str(out.dtype).removeprefix('torch.')} rounding (Hugging "
                    "Face's causal and masked language-model losses cast the logits "
                    "with .float()). For full precision pass a loss_fn(output, "
                    "batch) computed in the objective's dtype (docs/models.md).",
                    UserWarning,
                    stacklevel=_caller_level(),
                )
        return float(out)

    def _check_determinism(self, flat: torch.Tensor, batch: _Batch, value: float) -> None:
        again = float(self._batch_loss(flat, batch))
        if again != value:
            raise ValueError(
                "the loss is not deterministic: two evaluations of the first batch at "
                f"the same parameters differ ({value!r} vs {again!r}). Put the "
                "model in eval mode and remove random layers or sampling from the "
                "forward pass and loss."
            )

    def _set_counts(self, counts: list[int]) -> None:
        self._counts = counts
        self.n_examples = int(sum(counts))
        self._weights = [c / self.n_examples for c in counts]
        self._batch_size_hint = counts[0]

    def _scan(self, flat: torch.Tensor, loss_fn: Any, determinism: bool) -> None:
        """The construction pass over streamed data: counts, checks, data digest, loss.

        Each batch is converted, checked for non-finite values, digested and evaluated at
        the model's parameters, then dropped; only the counts and the digest are kept.
        """
        counts: list[int] = []
        digests: list[str] = []
        values: list[float] = []
        with torch.no_grad():
            for i, batch in enumerate(
                _stream_batches(self._data, self.device, self._tdtype, self.forward)
            ):
                _check_finite(i, batch)
                if self._channels_last:
                    batch = batch._replace(inputs=_channels_last(batch.inputs))
                counts.append(batch.count)
                digests.append(_tensors_digest(_batch_data(batch)))
                values.append(self._first_loss(flat, batch, loss_fn, first=not values))
                if i == 0 and determinism:
                    self._check_determinism(flat, batch, values[0])
                del batch
        if not counts:
            raise ValueError("`data` holds no examples.")
        _warn_partial(self._data, sum(counts))
        self._set_counts(counts)
        self._data_digest = digest("batches", digests)
        value = sum(w * v for w, v in zip(self._weights, values, strict=True))
        if not np.isfinite(value):
            raise ValueError(f"the loss at the model's parameters is not finite ({value}).")

    def _each(self) -> Iterator[tuple[float, _Batch]]:
        """``(weight, batch)`` for every batch: the kept ones, or read again (streamed)."""
        if self._batches is not None:
            yield from zip(self._weights, self._batches, strict=True)
            return
        n = len(self._counts)
        i = -1
        for i, batch in enumerate(
            _stream_batches(self._data, self.device, self._tdtype, self.forward)
        ):
            if i >= n or batch.count != self._counts[i]:
                raise RuntimeError(
                    f"`data` changed between passes: batch {i} holds {batch.count} examples, "
                    f"{'none' if i >= n else self._counts[i]} at construction. With "
                    "stream=True, iter(data) must give the same batches in the same order "
                    "every time (a DataLoader with shuffle=False)."
                )
            if self._channels_last:
                batch = batch._replace(inputs=_channels_last(batch.inputs))
            yield self._weights[i], batch
            del batch
        if i + 1 != n:
            raise RuntimeError(
                f"`data` changed between passes: it gave {i + 1} batches, {n} at "
                "construction. With stream=True, iter(data) must give the same batches in "
                "the same order every time."
            )

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        """Everything but the cached gradient graph (workers rebuild it when needed).

        An objective pickles when its model and ``loss_fn`` do (a module-level function
        such as ``torch.nn.functional.cross_entropy`` does; a lambda does not): process
        pools and Dask workers receive it this way.
        """
        state = self.__dict__.copy()
        state["_graph"], state["_graph_x"], state["_key_buffer"] = None, np.empty(0), None
        state["_evaluator"], state["_evaluating"] = None, False
        state["_statistics"] = StatisticsCache()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """The state of :meth:`__getstate__`, with the lock of the (new) model."""
        self.__dict__.update(state)
        self._lock = _model_lock(self.model)

    # ------------------------------------------------------------------ plumbing
    def _to_tensor(self, x: np.ndarray, name: str = "x") -> torch.Tensor:
        x = check_vector(name, x, dim=self.dim, dtype=self.dtype)
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def _params(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(flat, self._sizes)
        return {n: t.view(s) for n, t, s in zip(self._call_names, parts, self._shapes, strict=True)}

    @contextlib.contextmanager
    def _modes(self) -> Iterator[None]:
        """Evaluation modes for the duration of a call; the user's flags come back after.

        Scaled-dot-product attention runs on its math kernel here: the fused CPU kernel
        (flash attention) has no double backward, so an HVP through it failed with
        "derivative for aten::_scaled_dot_product_flash_attention_for_cpu_backward is not
        implemented". Losses without gradients (the private copy) keep the fused kernel.
        """
        saved = [(m, m.training) for m in self.model.modules()]
        try:
            self.model.eval()
            if self.batchnorm == "batch":
                for m in self.model.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.train()
            with _math_attention():
                yield
        finally:
            for m, flag in saved:
                m.training = flag

    def _forward(self, flat: torch.Tensor, inputs: Any) -> Any:
        buffers = self._buffers
        if self.batchnorm == "batch" and self._has_bn:
            buffers = {n: b.clone() for n, b in buffers.items()}  # train-mode BN writes them
        elif self.batchnorm == "recompute" and self._has_bn and self._counts:
            if flat.requires_grad:
                raise ValueError(
                    "batchnorm='recompute' defines the loss at each point through statistics "
                    "recomputed over the data there, and probecore does not differentiate "
                    "through that recomputation, so this objective gives losses and metrics "
                    "(paths, lines, planes, rays) but no gradients or HVPs. For the "
                    "curvature at one point, take objective.statistics_at(x): the same "
                    "model with the statistics recomputed at x, in batchnorm='running' mode. "
                    "To fit a curve, use batchnorm='batch' (what Garipov et al. train with)."
                )
            buffers = self._statistics.at(self, flat)
        tensors = self._params(flat)
        for n, t in (*self._frozen.items(), *buffers.items()):
            tensors[f"model.{n}"] = t
        return functional_call(self._call, tensors, (inputs,))

    def _loss_of(self, out: Any, target: Any) -> Any:
        """The batch loss from the model's output: ``loss_fn``, or the output's ``.loss``."""
        if self.loss_fn is not None:
            return self.loss_fn(out, target)
        loss = getattr(out, "loss", None)
        if loss is None and isinstance(out, Mapping):
            loss = out.get("loss")
        if loss is None:
            raise ValueError(
                "`loss_fn` is None, so the loss is the model output's `.loss` (Hugging Face "
                "models compute it when the batch holds `labels`), but the output "
                f"({type(out).__name__}) has none. Put the labels in the batch, e.g. "
                "{'input_ids': ..., 'labels': ...}, or pass loss_fn(output, targets)."
            )
        return loss

    def _batch_loss(self, flat: torch.Tensor, batch: _Batch) -> Any:
        with self._modes():
            return self._loss_of(self._forward(flat, batch.inputs), batch.target)

    def _np(self, t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu").numpy().astype(self.dtype, copy=False)

    # ------------------------------------------------------------------ contract
    def _eval_copy(self) -> tuple[_Call, list[torch.Tensor]] | None:
        """A private copy of the model for gradient-free evaluations (made on first use).

        Writing a point into the copy's parameters and calling it costs what a plain torch
        loop costs; ``functional_call`` adds its parameter swapping to every call (about
        4% per loss on the digits CNN). Not used with ``batchnorm="batch"`` (a train-mode
        forward would update the copy's running statistics) or when the model cannot be
        deep-copied; those evaluate through ``functional_call``.
        """
        if self._evaluator is None:
            self._evaluator = False
            if not (self.batchnorm == "batch" and self._has_bn):
                try:
                    clone = copy.deepcopy(self.model).to(self.device, self._tdtype).eval()
                    if self._channels_last:
                        clone = clone.to(memory_format=torch.channels_last)
                except Exception:  # any failure: evaluate through functional_call instead
                    clone = None
                if clone is not None:
                    named = dict(clone.named_parameters())
                    with torch.no_grad():
                        for name, b in clone.named_buffers():
                            b.copy_(self._buffers[name])
                        for name, value in self._frozen.items():
                            named[name].copy_(value)
                    for p in clone.parameters():
                        p.requires_grad_(False)
                    params = [named[n] for n in self._names]
                    if self.device.type == "cpu" and not self._channels_last:
                        params = _flat_views(clone, params)
                    self._evaluator = (_Call(clone, self.forward), params)
        return self._evaluator or None

    def _write(self, params: list[torch.Tensor], flat: torch.Tensor) -> None:
        if isinstance(params, _Views):  # the copy's parameters are views of one buffer
            params.flat.copy_(flat)
            return
        for p, t in zip(params, torch.split(flat, self._sizes), strict=True):
            p.copy_(t.view_as(p))

    @contextlib.contextmanager
    def _copy_in_use(self) -> Iterator[None]:
        """Mark the evaluation copy in use; refuse an evaluation nested inside one.

        The lock is re-entrant (the objective's methods call each other), so a
        ``loss_fn``, ``metrics_fn`` or ``forward`` that calls the objective would get in,
        write its point into the copy and return, and the evaluation that called it would
        go on at that point: refused instead.
        """
        if self._evaluating:
            raise RuntimeError(
                "the objective was called from inside one of its own evaluations (a "
                "loss_fn, metrics_fn or forward that calls it): that call would move the "
                "point under the evaluation that made it. Compute what the function needs "
                "before or after the evaluation, or from another objective."
            )
        self._evaluating = True
        try:
            yield
        finally:
            self._evaluating = False

    def _outputs(self, flat: torch.Tensor) -> Iterator[tuple[float, _Batch, Any]]:
        """``(weight, batch, output)`` for every batch at ``flat``, without gradients."""
        ev = self._eval_copy()
        # the private copy is already in eval mode; only functional_call needs the flags set
        modes = contextlib.nullcontext() if ev is not None else self._modes()
        # functional_call puts the parameters back after each batch: only the copy can
        # be moved under an evaluation
        in_use = self._copy_in_use() if ev is not None else contextlib.nullcontext()
        with in_use, torch.no_grad(), modes:
            if ev is not None:
                self._write(ev[1], flat)
                if self.batchnorm == "recompute" and self._has_bn:
                    copy_into(ev[0].model, self._statistics.at(self, flat))
            for w, batch in self._each():
                if ev is not None:
                    out = ev[0](batch.inputs)
                else:
                    out = self._forward(flat, batch.inputs)
                yield w, batch, out
                del batch, out  # one batch on the device: none held while the next is read

    @_serialized
    def loss(self, x: np.ndarray) -> float:
        """Example-weighted mean loss over the data set at ``x``."""
        total = 0.0
        for w, batch, out in self._outputs(self._to_tensor(x)):
            total += w * float(self._loss_of(out, batch.target))
            del batch, out
        return total

    @_serialized
    def losses_in_span(
        self, origin: np.ndarray, basis: np.ndarray, coeffs: np.ndarray
    ) -> np.ndarray:
        """Losses at ``origin + coeffs @ basis``, one point at a time.

        As :meth:`AbstractObjective.losses_in_span` (the same points, bit for bit, in
        ``O(dim)`` memory), with ``origin``, ``basis`` and ``coeffs`` checked once per
        call rather than each point once per point: on the 2,410-parameter MLP of
        ``docs/benchmarks.md`` the checks were a tenth of the time per point. Each point
        is formed straight into the parameters of the objective's evaluation copy, so the
        only parameter vector a call adds is that copy (made once, on first use):

        - models of at most ``SPAN_ROWS_NUMBERS // 2`` parameters, whose copy's
          parameters are views of one buffer, have their points formed a block at a time
          (``probecore.backend.span_points``, the same bits; at most
          ``SPAN_ROWS_NUMBERS`` numbers a block, whatever the chunk) and copied in;
        - larger ones are formed straight into that buffer (``span_point(out=...)``);
        - a copy whose parameters are separate tensors (channels-last convolutions, a
          GPU) gets the same blocks copied in parameter by parameter on a small model,
          and a larger one's points piece by piece (rows of a parameter along its first
          axis) through one scratch vector of at most ``SPAN_ROWS_NUMBERS`` numbers (or
          one such row, if longer).

        Streamed data (``stream=True``) is read again for every point, as :meth:`loss`
        reads it. One forward pass per point: on the digits CNN a ``torch.func.vmap``
        over 4, 8 or 16 points was 2.6-3.2x slower per point than this loop (batched
        convolutions with per-point weights), and on the MLP no faster.
        """
        ev = self._eval_copy()
        if ev is None or (self._has_bn and self.batchnorm != "running"):
            return super().losses_in_span(origin, basis, coeffs)
        origin, basis, coeffs = check_span(self, origin, basis, coeffs)
        out = np.empty(coeffs.shape[0], dtype=np.float64)
        loss_of = self._loss_of if self.loss_fn is None else self.loss_fn
        # a tensor batch without `forward` is the model's only argument: call the copy
        # itself rather than through _Call (what _Call.forward would do)
        bare = ev[0].model if self.forward is None else ev[0]

        def call(inputs: Any) -> Any:
            return (bare if isinstance(inputs, torch.Tensor) else ev[0])(inputs)

        kept = (  # resolved once: no generator per point over kept batches
            None
            if self._batches is None
            else [
                (w, bare if isinstance(b.inputs, torch.Tensor) else ev[0], b)
                for w, b in zip(self._weights, self._batches, strict=True)
            ]
        )
        write = self._span_writer(ev[1], origin, basis, coeffs)
        with self._copy_in_use(), torch.no_grad():
            for j in range(len(coeffs)):
                write(j)
                total = 0.0
                if kept is not None:  # the kept batches, without a generator per point
                    for w, f, batch in kept:
                        total += w * float(loss_of(f(batch.inputs), batch.target))
                else:
                    for w, batch in self._each():
                        total += w * float(loss_of(call(batch.inputs), batch.target))
                        del batch
                out[j] = total
        return out

    def _span_writer(
        self, params: list[torch.Tensor], origin: np.ndarray, basis: np.ndarray, coeffs: np.ndarray
    ) -> Callable[[int], object]:
        """A function of ``j`` that writes point ``j`` into the copy's ``params``."""
        work: dict[str, np.ndarray] = {}
        bounds = np.cumsum([0, *self._sizes]).tolist()
        rows = SPAN_ROWS_NUMBERS // max(self.dim, 1)
        if rows > 1:  # a small model: whole points, a block of them formed together
            block = np.empty((min(rows, len(coeffs)), self.dim), self.dtype)

            def row(j: int) -> np.ndarray:
                i = j % len(block)
                if i == 0:
                    span_points(
                        origin, basis, coeffs[j : j + len(block)], out=block[: len(coeffs) - j]
                    )
                return block[i]

            if isinstance(params, _Views):
                buffer = params.flat.numpy()
                return lambda j: np.copyto(buffer, row(j))
            targets = [
                (p, lo, hi, p.shape)
                for p, lo, hi in zip(params, bounds[:-1], bounds[1:], strict=True)
            ]

            def whole(j: int) -> None:  # copied in parameter by parameter
                point = torch.from_numpy(row(j))
                for p, lo, hi, shape in targets:
                    p.copy_(point[lo:hi].view(shape))

            return whole
        if isinstance(params, _Views):
            buffer = params.flat.numpy()
            return lambda j: span_point(origin, basis, coeffs[j], work=work, out=buffer)
        # separate parameter tensors of a large model: each slice of the point through one
        # scratch vector of at most SPAN_ROWS_NUMBERS numbers (or one row along the first
        # axis, which is outermost in memory in channels-last layout too)
        pieces: list[tuple[torch.Tensor, int, int]] = []  # (target, start, stop) in the point
        for p, size, start in zip(params, self._sizes, bounds[:-1], strict=True):
            n_rows = p.shape[0] if p.dim() else 1
            width = size // max(n_rows, 1)
            step = max(1, SPAN_ROWS_NUMBERS // max(width, 1))
            for r in range(0, n_rows, step):
                target = p[r : r + step] if p.dim() else p
                pieces.append((target, start + r * width, start + r * width + target.numel()))
        scratch = np.empty(max((hi - lo for _, lo, hi in pieces), default=0), self.dtype)

        def by_parameter(j: int) -> None:
            for target, lo, hi in pieces:
                part = span_point(
                    origin[lo:hi], basis[:, lo:hi], coeffs[j], work=work, out=scratch[: hi - lo]
                )
                target.copy_(torch.from_numpy(part).view(target.shape))

        return by_parameter

    @_serialized
    def loss_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient in one pass over the data."""
        flat = self._to_tensor(x).requires_grad_(True)
        total, grad = 0.0, None
        for w, batch in self._each():
            value = self._batch_loss(flat, batch) * w
            (g,) = torch.autograd.grad(value, flat)
            grad = g if grad is None else grad + g
            total += float(value.detach())
            del batch, value
        return total, self._np(grad)

    def grad(self, x: np.ndarray) -> np.ndarray:
        """Gradient of :meth:`loss` at ``x``."""
        return self.loss_and_grad(x)[1]

    def _gradient_graph(self, x: np.ndarray) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-batch weighted gradients at ``x`` with their graphs (cached for one point).

        A cache hit costs one comparison of ``x`` with the cached point (no copy, no
        validation: the cached point was validated when it was stored); a different point
        is usually told apart by 64 sampled entries. The graph is built on a private copy
        of ``x`` (one buffer, reused), so changing the caller's array later cannot change
        the cached graph.
        """
        cached = self._graph_x
        if self._graph is not None and (
            x is cached or (isinstance(x, np.ndarray) and _same_point(x, cached))
        ):
            return self._graph
        self._graph = None  # free the old graph before building a new one
        x = check_vector("x", x, dim=self.dim, dtype=self.dtype)
        key = self._key_buffer
        if key is None or not self.retain_graph:
            key = np.empty(self.dim, dtype=self.dtype)
        np.copyto(key, x)
        flat = torch.from_numpy(key).to(self.device).requires_grad_(True)
        grads = []
        for w, batch in zip(self._weights, self._batches, strict=True):
            (g,) = torch.autograd.grad(self._batch_loss(flat, batch) * w, flat, create_graph=True)
            grads.append(g)
        if self.retain_graph:
            self._graph, self._graph_x, self._key_buffer = (flat, grads), key, key
        return flat, grads

    def _second_backward(
        self, graph: tuple[torch.Tensor, list[torch.Tensor]], vt: torch.Tensor, batched=False
    ):
        """H·v by double backward, restricted to the entries torch trains.

        With ``batched``, H·vᵢ for each row of ``vt`` in one vmapped backward.

        The padding row of an ``nn.Embedding(padding_idx=...)`` gets no gradient from torch,
        so the double backward would return a non-symmetric operator (it ignores v on that
        row but writes into it); its rows are zeroed, which leaves the Hessian of the loss
        with the padding rows held fixed, symmetric.
        """
        flat, grads = graph
        out = None
        for g in grads:
            (h,) = torch.autograd.grad(g, flat, vt, retain_graph=True, is_grads_batched=batched)
            out = h if out is None else out + h
        for rows in self._padding_rows:
            out[..., rows] = 0
        return out

    def _streamed_hvps(self, x: np.ndarray, V: torch.Tensor) -> torch.Tensor:
        """H·v for each row of ``V``, batch by batch: no graph outlives its batch.

        For each batch: its weighted gradient with its graph, one second backward per row,
        then the graph is freed. The per-batch products are summed in batch order, as
        :meth:`_second_backward` sums them, so the result is that of ``stream=False``.
        """
        flat = self._to_tensor(x).requires_grad_(True)
        out = None
        for w, batch in self._each():
            (g,) = torch.autograd.grad(self._batch_loss(flat, batch) * w, flat, create_graph=True)
            del batch
            for j in range(len(V)):
                (h,) = torch.autograd.grad(g, flat, V[j], retain_graph=j + 1 < len(V))
                if out is None:
                    out = torch.zeros((len(V), *h.shape), dtype=h.dtype, device=h.device)
                out[j] += h
            del g
        for rows in self._padding_rows:
            out[:, rows] = 0
        return out

    @_serialized
    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Exact Hessian-vector product by double backward (graph reused at one point)."""
        if self.stream:
            return self._np(self._streamed_hvps(x, self._to_tensor(v, "v")[None])[0])
        graph = self._gradient_graph(x)
        return self._np(self._second_backward(graph, self._to_tensor(v, "v")))

    @_serialized
    def hvp_many(self, x: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Hessian times each row of ``V``, reusing the gradient graph at ``x``.

        Networks whose trained parameters all sit in ``nn.Linear`` layers (MLPs) take
        blocks of rows through torch's batched backward (``is_grads_batched``, a vmap over
        rows; at most ``BATCHED_ROWS`` rows and ``BATCHED_NUMBERS`` numbers a block, one
        row at a time when ``dim`` exceeds half of ``BATCHED_NUMBERS``): on the digits MLP
        64-32-10, 33 rows took 15-28 ms against the loop's 25-36 ms, and 36-44 ms against
        94-119 ms with passive OpenMP threads (docs/benchmarks.md). The products equal ``hvp``'s to
        rounding, not bitwise. A model that the batched backward cannot run (an operation
        without a vmap rule) falls back to the loop for good. Other networks make one
        backward pass per row: on a digits CNN the batched backward was 2-3× slower.
        """
        V = check_matrix("V", V, dim=self.dim, dtype=self.dtype)
        if self.stream:
            if len(V) == 0:
                return np.empty_like(V)
            vt = torch.from_numpy(np.ascontiguousarray(V)).to(self.device)
            return self._np(self._streamed_hvps(x, vt))
        graph = self._gradient_graph(x)
        block = min(BATCHED_ROWS, BATCHED_NUMBERS // max(self.dim, 1))
        if self._batch_rows and len(V) > 1 and block > 1:
            try:
                return self._batched_hvps(graph, V, block)
            except RuntimeError:  # an operation without a vmap rule: loop from now on
                self._batch_rows = False
        out = np.empty_like(V)
        for i, row in enumerate(V):
            vt = torch.from_numpy(np.ascontiguousarray(row)).to(self.device)
            out[i] = self._np(self._second_backward(graph, vt))
        return out

    def _batched_hvps(
        self, graph: tuple[torch.Tensor, list[torch.Tensor]], V: np.ndarray, block: int
    ) -> np.ndarray:
        """H times the rows of ``V``, ``block`` rows per batched double backward."""
        out = np.empty_like(V)
        for i in range(0, len(V), block):
            vt = torch.from_numpy(np.ascontiguousarray(V[i : i + block])).to(self.device)
            out[i : i + block] = self._np(self._second_backward(graph, vt, batched=True))
        return out

    @_serialized
    def metrics(self, x: np.ndarray) -> dict[str, float]:
        """Accuracy of classification logits, or the means of ``metrics_fn``.

        With ``metrics_fn``: the example-weighted means over the data set of the batch
        means it returns. Without: the logits are the model's output, or its first
        element when it returns a tuple or list (``(logits, aux)``), or its ``.logits``
        (a Hugging Face ``ModelOutput``) or ``["logits"]``; the targets are those of
        ``(inputs, targets)`` batches or the ``labels`` of dict batches. Logits
        ``(n, classes)`` with integer targets ``(n,)`` give accuracy; sequence logits
        ``(..., classes)`` with targets ``(...)`` give token-level accuracy, targets of
        -100 (the ignore index of ``cross_entropy``) left out. For a Hugging Face causal
        language model (a class named ``...ForCausalLM`` or ``...LMHeadModel``) fed dict
        batches, the logits at position t predict label t + 1, as its own loss shifts
        them. Other outputs report no metrics (``{}``).
        """
        flat = self._to_tensor(x)
        if self.metrics_fn is not None:
            return self._user_metrics(flat)
        counts = self._accuracy_counts(flat)
        return {"accuracy": counts[0] / counts[1]} if counts is not None and counts[1] else {}

    def _accuracy_counts(self, flat: torch.Tensor) -> tuple[float, int] | None:
        """Correct predictions and examples (tokens) counted, or None without logits."""
        correct, seen = 0.0, 0
        for _, batch, out in self._outputs(flat):
            targets = batch.target.get("labels") if batch.is_dict else batch.target
            logits = _logits(out)
            if (
                logits is None
                or not isinstance(targets, torch.Tensor)
                or targets.is_floating_point()
                or logits.ndim != targets.ndim + 1
                or logits.shape[:-1] != targets.shape
            ):
                return None
            if batch.is_dict and self._causal and targets.ndim >= 2:
                logits, targets = logits[..., :-1, :], targets[..., 1:]
            kept = targets != -100
            correct += float(((logits.argmax(dim=-1) == targets) & kept).sum())
            seen += int(kept.sum())
            del batch, out, logits, targets, kept
        return correct, seen

    def _user_metrics(self, flat: torch.Tensor) -> dict[str, float]:
        sums: dict[str, float] = {}
        for i, (w, batch, out) in enumerate(self._outputs(flat)):
            values = self.metrics_fn(out, batch.target)
            if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
                raise TypeError(
                    "`metrics_fn` must return a dict of metric names to batch means (scalar "
                    f"tensors or floats); it returned {type(values).__name__}."
                )
            if i and set(values) != set(sums):
                raise ValueError(
                    "`metrics_fn` must return the same metric names for every batch; batch "
                    f"0 gave {sorted(sums)}, batch {i} {sorted(values)}."
                )
            for k, v in values.items():
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    v = float(v)
                if not isinstance(v, int | float | np.floating | np.integer) or isinstance(v, bool):
                    raise TypeError(
                        f"`metrics_fn` must return scalars (one batch mean per metric); "
                        f"{k!r} is {type(v).__name__}"
                        + (f" of shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else "")
                        + "."
                    )
                sums[k] = sums.get(k, 0.0) + w * float(v)
            del batch, out, values
        return sums

    def fingerprint(self) -> dict[str, str]:
        """What identifies this objective to a run store (computed once, on first use).

        The model's structure (its repr: layer types and sizes) and trainable parameters'
        names and shapes, its buffers and frozen parameters, the loss function (and
        ``forward`` and ``metrics_fn`` when given), the data (a digest of every tensor of
        every batch), the batch-norm mode and the layout (roles and filter axes). A store
        refuses to resume when any of them differs.
        """
        if self._fingerprint is None:
            loss_state = (
                _tensors_digest(dict(self.loss_fn.state_dict()))
                if isinstance(self.loss_fn, nn.Module)
                else ""
            )
            loss_options = (
                {k: v for k, v in vars(self.loss_fn).items() if _plain(k, v)}
                if isinstance(self.loss_fn, nn.Module)
                else {}
            )
            loss_name = "output.loss" if self.loss_fn is None else callable_name(self.loss_fn)
            if self._batches is None:
                data_digest = self._data_digest
            else:
                digests = [_tensors_digest(_batch_data(b)) for b in self._batches]
                data_digest = digest("batches", digests)
            self._fingerprint = {
                "backend": "torch",
                "model": f"{type(self.model).__qualname__} "
                + digest(stable_repr(self.model), self._names, [list(s) for s in self._shapes]),
                "state": _tensors_digest({**self._frozen, **self._buffers}),
                "loss_fn": f"{loss_name} {digest(loss_options, loss_state)}",
                "data": data_digest,
                "batchnorm": self.batchnorm,
                "layout": digest(self.layout.to_json()),
            }
            for key in ("forward", "metrics_fn"):
                value = getattr(self, key)
                if value is not None:
                    self._fingerprint[key] = (
                        value if isinstance(value, str) else callable_name(value)
                    )
        return dict(self._fingerprint)

    @_serialized
    def statistics_at(self, x: np.ndarray) -> TorchObjective:
        """The objective with BatchNorm statistics recomputed at ``x``, in running mode.

        The running statistics are those ``batchnorm="recompute"`` uses at ``x`` (one
        train-mode pass over the data, Garipov et al.'s ``update_bn``); the objective
        returned evaluates the eval-mode network with them at every point and has
        gradients and HVPs: the curvature at a point of a path between two trained models.
        The user's model is not changed.
        """
        flat = self._to_tensor(x)
        if not self._has_bn:
            raise ValueError("`statistics_at` needs a model with BatchNorm layers; this has none.")
        stats = self._statistics.at(self, flat)
        other = copy.copy(self)
        other.batchnorm = "running"
        other._buffers = {n: t.clone() for n, t in stats.items()}
        other._options = {**self._options, "batchnorm": "running"}
        # copy.copy goes through __getstate__/__setstate__: no graph, evaluation copy or
        # statistics cache is shared, and the lock is the model's
        other._fingerprint = None
        return other

    @_serialized
    def subset(self, indices: np.ndarray) -> TorchObjective:
        """The same objective on examples ``indices`` of the data set (same batch size)."""
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
            raise ValueError("`indices` must be a non-empty 1-D integer array.")
        if idx.min() < 0 or idx.max() >= self.n_examples:
            raise ValueError(f"`indices` must lie in [0, {self.n_examples - 1}].")
        data: Any
        if self._batches is None:
            data = self._streamed_subset(idx)
        else:
            sel = torch.as_tensor(idx, device=self.device)
            inputs = _take(_cat([b.inputs for b in self._batches]), sel)
            if self._batches[0].is_dict:
                data = inputs
            else:
                data = (inputs, _take(_cat([b.target for b in self._batches]), sel))
        # the final layout: no second warning about module types without a known axis
        options = {**self._options, "batch_size": self._batch_size_hint, "layout": self.layout}
        options["stream"] = False
        options["dtype"] = self.dtype
        out = TorchObjective(self.model, self.loss_fn, data, **options)
        # the same state (e.g. statistics from `statistics_at`), not the model's buffers
        out._buffers = {n: t.clone() for n, t in self._buffers.items()}
        return record_subset(self, out, idx)

    def _streamed_subset(self, idx: np.ndarray) -> Any:
        """Examples ``idx`` (in that order) of streamed data, gathered in one pass."""
        parts: list[_Batch] = []
        where: list[np.ndarray] = []
        start, last = 0, int(idx.max())
        for _, b in self._each():
            hit = np.flatnonzero((idx >= start) & (idx < start + b.count))
            if hit.size:
                local = torch.as_tensor(idx[hit] - start, device=self.device)
                parts.append(
                    b._replace(inputs=_take(b.inputs, local), target=_take(b.target, local))
                )
                where.append(hit)
            start += b.count
            del b
            if start > last:
                break
        order = np.argsort(np.concatenate(where), kind="stable")
        perm = torch.as_tensor(order, device=self.device)
        inputs = _take(_cat([b.inputs for b in parts]), perm)
        if parts[0].is_dict:
            return inputs
        return (inputs, _take(_cat([b.target for b in parts]), perm))


class _Views(list):
    """Parameters that are views of one flat buffer, ``flat``, in the objective's order."""

    flat: torch.Tensor


def _flat_views(model: nn.Module, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Point ``params`` (the private copy's, on the CPU) at views of one flat buffer.

    Writing a point is then one copy instead of one per parameter tensor (on the
    2,410-parameter MLP of ``docs/benchmarks.md``, a split and four copies cost 35 µs
    of each point's 0.5-1 ms). Left as they are when a module may re-point its
    parameters itself (recurrent layers flatten theirs) or a parameter is not
    contiguous.
    """
    if any(isinstance(m, nn.RNNBase) for m in model.modules()) or not all(
        p.is_contiguous() for p in params
    ):
        return params
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    views = _Views(params)
    views.flat = flat
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat[offset : offset + n].view(p.shape)
        offset += n
    return views


def _batch_data(b: _Batch) -> Any:
    """What a batch's data digest covers: the mapping, or the inputs and targets."""
    return b.inputs if b.is_dict else (b.inputs, b.target)


def _math_attention() -> Any:
    """Scaled-dot-product attention on its math kernel (twice differentiable)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch < 2.3 has no kernel selection
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def _logits(out: Any) -> torch.Tensor | None:
    """The logits in a model's output: itself, its first element, ``.logits`` or ``["logits"]``."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    value = getattr(out, "logits", None)
    if value is None and isinstance(out, dict):
        value = out.get("logits")
    return value if isinstance(value, torch.Tensor) else None


def _plain(key: str, value: Any) -> bool:
    """A public setting of a loss module (``reduction``, ``label_smoothing``, ...)."""
    return not key.startswith("_") and isinstance(value, int | float | str | bool | None)


def _tensors_digest(value: Any) -> str:
    """Digest of the tensors in nested tuples, lists and dicts (dtype, shape and bytes)."""

    def walk(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            t = v.detach().to("cpu").contiguous().reshape(-1)
            return [str(v.dtype), list(v.shape), t.view(torch.uint8).numpy()]
        if isinstance(v, dict):
            return {str(k): walk(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        return stable_repr(v)

    return digest(walk(value))


def _same_point(x: np.ndarray, cached: np.ndarray) -> bool:
    """Exact equality of two flat vectors; 64 strided entries first, to reject fast."""
    if x.shape != cached.shape:
        return False
    step = max(1, x.size // 64)
    if not np.array_equal(x[::step], cached[::step]):
        return False
    return bool(np.array_equal(x, cached))


def _torch_dtype(dtype: Any) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float32, torch.float64):
            return dtype
        raise ValueError(f"`dtype` must be float32 or float64; got {dtype}.")
    try:
        npd = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"`dtype` must be a torch or numpy float dtype; got {dtype!r}.") from exc
    if npd not in _DTYPES:
        raise ValueError(f"`dtype` must be float32 or float64; got {npd}.")
    return _DTYPES[npd]
