"""The data of a torch objective: batches read once (or streamed), checked, on the device.

A batch is an ``(inputs, targets)`` pair or a mapping (Hugging Face style, called as
``model(**batch)``); nested tuples and dicts are converted leaf by leaf, floating tensors
to the objective's dtype.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import RandomSampler, SubsetRandomSampler, WeightedRandomSampler

from probecore.backend import caller_stacklevel as _caller_level
from probecore.backend import check_int


class _Batch(NamedTuple):
    """One batch: what the model is called with, the loss's second argument, examples."""

    inputs: Any  # a tensor, a dict (called as **kwargs) or a tuple (forward="args")
    target: Any  # targets of an (inputs, targets) pair; the whole mapping of a dict batch
    count: int
    is_dict: bool


def _as_tensor(value: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Tensors (and arrays) in nested mappings, tuples and lists on ``device``.

    Floating tensors become ``dtype``; mappings become dicts, lists tuples; other leaves
    (ints, strings, None) stay as they are.
    """
    if isinstance(value, Mapping):
        return {k: _as_tensor(v, device, dtype) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return tuple(_as_tensor(v, device, dtype) for v in value)
    if isinstance(value, torch.Tensor | np.ndarray):
        t = torch.as_tensor(value)
        return t.to(device, dtype) if t.is_floating_point() else t.to(device)
    return value


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """``(path, tensor)`` for every tensor in nested dicts and tuples."""
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}[{k!r}]")
    elif isinstance(value, tuple):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")


def _take(value: Any, index: Any) -> Any:
    """Examples ``index`` (a slice or an index tensor) of every tensor in ``value``."""
    if isinstance(value, torch.Tensor):
        return value[index] if value.ndim else value
    if isinstance(value, dict):
        return {k: _take(v, index) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_take(v, index) for v in value)
    return value


def _cat(values: list[Any]) -> Any:
    """Concatenate batches of the same structure along the examples."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(values) if first.ndim else first
    if isinstance(first, dict):
        return {k: _cat([v[k] for v in values]) for k in first}
    if isinstance(first, tuple):
        return tuple(_cat([v[i] for v in values]) for i in range(len(first)))
    return first


def _channels_last(inputs: Any) -> Any:
    """4-D floating tensors (in nested dicts and tuples, or alone) in channels-last layout."""
    if isinstance(inputs, dict):
        return {k: _channels_last(v) for k, v in inputs.items()}
    if isinstance(inputs, tuple):
        return tuple(_channels_last(t) for t in inputs)
    if isinstance(inputs, torch.Tensor) and inputs.ndim == 4 and inputs.is_floating_point():
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def _examples(i: int, value: Any, what: str) -> int:
    """Leading dimension of the first tensor in ``value`` (the batch's example count)."""
    for _, t in _leaves(value):
        if t.ndim:
            return len(t)
    raise ValueError(
        f"batch {i} of `data`: its {what} hold no tensor with a leading (examples) dimension, "
        "so the batch's number of examples is unknown."
    )


def _pair_batch(i: int | None, inputs: Any, targets: Any, forward: Any) -> _Batch:
    """An ``(inputs, targets)`` batch, checked: its example count, how the model is called."""
    where = "`data`" if i is None else f"batch {i} of `data`"
    if isinstance(inputs, tuple) and forward is None:
        raise TypeError(
            f"the inputs of {where} are a tuple of {len(inputs)}; probecore does not guess "
            "how your model takes them. Pass forward='args' to call model(*inputs), or "
            "forward=lambda model, inputs: model(...) for any other call (a tensor is "
            "passed as model(inputs), a dict as model(**inputs))."
        )
    count = len(targets) if isinstance(targets, torch.Tensor) and targets.ndim else None
    if count is None:
        count = _examples(i or 0, targets, "targets")
    first = next((t for _, t in _leaves(inputs) if t.ndim), None)
    if first is not None and len(first) != count:
        if i is None:
            raise ValueError(
                f"`data` inputs and targets differ in length: {len(first)} vs {count}."
            )
        raise ValueError(f"batch {i} of `data` has {len(first)} inputs but {count} targets.")
    return _Batch(inputs, targets, count, False)


def _dict_batch(i: int | None, batch: dict[str, Any]) -> _Batch:
    """A mapping batch, called as ``model(**batch)``; examples from ``labels`` or the first."""
    where = "`data`" if i is None else f"batch {i} of `data`"
    if not batch:
        raise ValueError(f"{where} is an empty mapping.")
    labels = batch.get("labels")
    if isinstance(labels, torch.Tensor) and labels.ndim:
        key, count = "labels", len(labels)
    else:
        key, count = next(
            ((k, len(v)) for k, v in batch.items() if isinstance(v, torch.Tensor) and v.ndim),
            (None, None),
        )
        if count is None:
            count = _examples(i or 0, batch, "entries")
    for k, v in batch.items():
        if isinstance(v, torch.Tensor) and v.ndim and len(v) != count:
            raise ValueError(
                f"{where}: every tensor holds its examples along its leading dimension, but "
                f"{k!r} has {len(v)} and {key!r} {count}."
            )
    return _Batch(batch, batch, count, True)


def _read_batches(
    data: Any,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int | None,
    forward: Any = None,
) -> list[_Batch]:
    """Materialize ``data`` as a list of batches on ``device``."""
    if data is None:
        raise TypeError(
            "`data` is required: (inputs, targets) tensors, a mapping of tensors, or an "
            "iterable of batches."
        )
    whole: _Batch | None = None
    if isinstance(data, Mapping):
        whole = _dict_batch(None, _as_tensor(data, device, dtype))
    elif (
        isinstance(data, tuple | list)
        and len(data) == 2
        and isinstance(data[1], torch.Tensor | np.ndarray)
        and (
            isinstance(data[0], torch.Tensor | np.ndarray | Mapping)
            or (
                isinstance(data[0], tuple | list)
                and all(isinstance(t, torch.Tensor | np.ndarray) for t in data[0])
            )
        )
    ):
        whole = _pair_batch(None, *(_as_tensor(t, device, dtype) for t in data), forward)
    if whole is not None:
        if whole.count == 0:
            raise ValueError("`data` holds no examples: its inputs and targets are empty.")
        size = whole.count if batch_size is None else check_int("batch_size", batch_size, lo=1)
        batches = []
        for start in range(0, whole.count, size):
            sl = slice(start, start + size)
            if whole.is_dict:
                batches.append(_dict_batch(None, _take(whole.inputs, sl)))
            else:
                part = _Batch(_take(whole.inputs, sl), _take(whole.target, sl), 0, False)
                batches.append(part._replace(count=len(range(whole.count)[sl])))
    else:
        if batch_size is not None:
            raise TypeError(
                "`batch_size` applies only when `data` is the whole data set (an "
                "(inputs, targets) pair or a mapping of tensors)."
            )
        if not isinstance(data, Iterable):
            raise TypeError(
                "`data` must be an (inputs, targets) pair of tensors, a mapping of tensors, "
                "or an iterable of such batches (e.g. a DataLoader); got "
                f"{type(data).__name__}."
            )
        _check_sampling(data)
        batches = []
        for i, batch in enumerate(data):
            made = _convert_batch(i, batch, device, dtype, forward)
            _check_kind(i, made, batches[0] if batches else None)
            batches.append(made)
        _warn_partial(data, sum(b.count for b in batches))
    batches = [b for b in batches if b.count]
    if not batches:
        raise ValueError("`data` holds no examples.")
    for i, b in enumerate(batches):
        _check_finite(i, b)
    return batches


def _convert_batch(
    i: int, batch: Any, device: torch.device, dtype: torch.dtype, forward: Any
) -> _Batch:
    """Batch ``i`` of an iterable on ``device`` (floating tensors ``dtype``), checked."""
    if isinstance(batch, Mapping):
        return _dict_batch(i, _as_tensor(batch, device, dtype))
    if isinstance(batch, tuple | list) and len(batch) == 2:
        return _pair_batch(i, *(_as_tensor(t, device, dtype) for t in batch), forward)
    raise TypeError(
        f"batch {i} of `data` must be an (inputs, targets) pair or a mapping "
        f"such as {{'input_ids': ..., 'labels': ...}}; got {type(batch).__name__}."
    )


def _check_kind(i: int, made: _Batch, first: _Batch | None) -> None:
    """Refuse a batch of another kind (pair or mapping) than the first."""
    if first is not None and made.is_dict != first.is_dict:
        raise TypeError(
            f"batch {i} of `data` is {'a mapping' if made.is_dict else 'a pair'} but "
            f"batch 0 is {'a mapping' if first.is_dict else 'a pair'}; all "
            "batches must be of one kind."
        )


def _check_finite(i: int, b: _Batch) -> None:
    """Refuse NaN or infinity in the floating tensors of batch ``i``."""
    if b.is_dict:
        for path, t in _leaves(b.inputs):
            _refuse_non_finite(i, f"entry {path[1:-1]}" if path.count("[") == 1 else path, t)
    else:
        for path, t in _leaves(b.inputs):
            _refuse_non_finite(i, f"inputs{path}", t)
        for path, t in _leaves(b.target):
            _refuse_non_finite(i, f"targets{path}", t)


_SHUFFLING_SAMPLERS = (RandomSampler, SubsetRandomSampler, WeightedRandomSampler)
_WHOLE_DATA_FIX = (
    "Build the DataLoader with shuffle=False (and drop_last=False) to measure the data set; "
    "for the Hessian on n random examples, use probecore.sample_examples(objective, n, "
    "rng=...), which records which ones."
)


def _samplers(data: Any) -> list[Any]:
    batch_sampler = getattr(data, "batch_sampler", None)
    found = (getattr(data, "sampler", None), getattr(batch_sampler, "sampler", None))
    return [s for s in found if s is not None]


def _size(obj: Any) -> int | None:
    try:
        return len(obj)
    except (TypeError, NotImplementedError):  # iterable-style, or no length
        return None


def _drops_last(data: Any) -> bool:
    batch_sampler = getattr(data, "batch_sampler", None)
    return bool(getattr(data, "drop_last", False) or getattr(batch_sampler, "drop_last", False))


def _check_sampling(data: Any) -> None:
    """Refuse a DataLoader that would give a random resample of its data set.

    Read once (stream=False), a loader whose sampler draws with replacement, draws a
    random number of examples smaller than its population, or shuffles and drops an
    incomplete last batch gives an objective over a random subset or resample, another
    each time it is built, recorded nowhere.
    """
    size = getattr(getattr(data, "batch_sampler", None), "batch_size", None)
    for s in _samplers(data):
        if isinstance(s, RandomSampler | WeightedRandomSampler) and s.replacement:
            raise ValueError(
                f"`data` draws its examples with replacement ({type(s).__name__} with "
                "replacement=True): the objective would hold some examples several times "
                "and miss others, a different resample each time it is built. " + _WHOLE_DATA_FIX
            )
        population = (
            len(s.data_source)
            if isinstance(s, RandomSampler)
            else len(s.weights)
            if isinstance(s, WeightedRandomSampler)
            else None
        )
        if population is not None and s.num_samples < population:
            raise ValueError(
                f"`data` draws {s.num_samples} random examples of {population} "
                f"({type(s).__name__}(num_samples={s.num_samples})): the objective would "
                "hold a random subset, a different one each time it is built. " + _WHOLE_DATA_FIX
            )
        n = _size(s)
        if (
            isinstance(s, _SHUFFLING_SAMPLERS)
            and _drops_last(data)
            and n is not None
            and isinstance(size, int)
            and n % size
        ):
            raise ValueError(
                f"`data` shuffles and drops its last incomplete batch (drop_last=True): "
                f"the objective would hold {n - n % size} random examples of the {n} its "
                "sampler draws, a different subset each time it is built. " + _WHOLE_DATA_FIX
            )


def _warn_partial(data: Any, n_read: int) -> None:
    """Warn when a DataLoader gave fewer examples than its data set holds."""
    n = _size(getattr(data, "dataset", None))
    if n is None or n_read >= n:
        return
    # only with a reason: a collate function may pack several items into one example
    why = []
    sampler = getattr(data, "sampler", None)
    drawn = n if sampler is None else _size(sampler)
    size = getattr(getattr(data, "batch_sampler", None), "batch_size", None)
    if _drops_last(data) and drawn is not None and isinstance(size, int) and drawn % size:
        why.append("drop_last=True leaves an incomplete last batch out")
    if drawn is not None and drawn < n:
        why.append(f"its sampler ({type(sampler).__name__}) draws {drawn} of them")
    if not why:
        return
    warnings.warn(
        f"`data` gave {n_read} of its data set's {n} examples ({'; '.join(why)}): the "
        f"objective is the loss on those {n_read}. To measure the whole data set, build "
        "the DataLoader over all of it (drop_last=False, no subset sampler); for a random "
        "subset, probecore.sample_examples(objective, n, rng=...) records which examples.",
        UserWarning,
        stacklevel=_caller_level(),
    )


def _check_stream(data: Any, batch_size: int | None) -> None:
    """Refuse ``data`` that cannot be streamed: read once, shuffled, or a whole data set.

    A streamed objective reads ``data`` again at every evaluation, so ``iter(data)`` must
    give the same batches in the same order each time.
    """
    if data is None:
        raise TypeError(
            "`data` is required: with stream=True, a re-iterable of batches such as a "
            "torch DataLoader (shuffle=False)."
        )
    if isinstance(data, Mapping) or (
        isinstance(data, tuple | list)
        and len(data) == 2
        and isinstance(data[1], torch.Tensor | np.ndarray)
    ):
        raise TypeError(
            "stream=True reads `data` batch by batch at every evaluation, but `data` is a "
            f"whole data set ({type(data).__name__} of tensors) already in memory. Pass "
            "stream=False with batch_size=... to bound the memory of each pass, or stream it "
            "from the host: data=DataLoader(TensorDataset(inputs, targets), batch_size=...)."
        )
    if batch_size is not None:
        raise TypeError(
            "`batch_size` applies only when `data` is the whole data set; with stream=True "
            f"the batches are those `data` yields (got batch_size={batch_size!r}). Set the "
            "batch size in your DataLoader instead."
        )
    if not isinstance(data, Iterable):
        raise TypeError(
            "with stream=True, `data` must be a re-iterable of batches (e.g. a DataLoader); "
            f"got {type(data).__name__}."
        )
    if isinstance(data, Iterator):  # a generator, iter(list), map(...): read once
        raise TypeError(
            "with stream=True, `data` is read again at every evaluation, but it is a "
            f"one-shot iterator ({type(data).__name__}), which can be read only once. "
            "Pass a re-iterable: a DataLoader, a list of batches, or an object whose "
            "__iter__ returns a fresh generator, e.g. "
            "class Batches: def __iter__(self): return make_batches()."
        )
    sampler = getattr(data, "sampler", None)
    batch_sampler = getattr(data, "batch_sampler", None)
    for s in (sampler, getattr(batch_sampler, "sampler", None)):
        if isinstance(s, _SHUFFLING_SAMPLERS):
            raise ValueError(
                "with stream=True, `data` is read again at every evaluation and must give "
                "the same batches in the same order each time, but it is a DataLoader with "
                f"a {type(s).__name__} (shuffle=True): every pass would mix different batches "
                "and the loss, gradients and HVPs would change between calls. Build it with "
                "shuffle=False (the order does not change the mean loss)."
            )


def _stream_batches(
    data: Any, device: torch.device, dtype: torch.dtype, forward: Any
) -> Iterator[_Batch]:
    """The batches of ``data`` one at a time on ``device``, empty batches skipped.

    Each batch is converted and its structure checked (not its values: the construction
    pass does that once); only the batch being yielded is referenced here.
    """
    first: _Batch | None = None
    for i, batch in enumerate(data):
        made = _convert_batch(i, batch, device, dtype, forward)
        del batch
        _check_kind(i, made, first)
        if first is None:
            first = made._replace(inputs=None, target=None)
        if made.count:
            yield made
        del made


def _refuse_non_finite(batch: int, what: str, t: Any) -> None:
    """Raise if a floating tensor of the data holds NaN or infinity (naming where)."""
    if not (isinstance(t, torch.Tensor) and t.is_floating_point()):
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        where = tuple(int(k) for k in torch.nonzero(bad)[0])
        raise ValueError(
            f"batch {batch} of `data`: its {what} hold {int(bad.sum())} non-finite values "
            f"(the first, {float(t[where])}, at index {where}); every gradient and HVP would "
            "be NaN. Clean or drop those examples."
        )
