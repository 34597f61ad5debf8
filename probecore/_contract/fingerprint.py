"""Content digests: how a run store tells one objective, data set or array from another.

A stored run (``store=`` of the probes) is resumed only with the objective it was started
with. An objective says what identifies it through an optional method ``fingerprint()``
returning a flat dict of short strings (model structure, loss function, a digest of the
data, ...); :func:`digest` is the hash the backends build those strings with, and the
one the store uses for its chunks.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["callable_name", "digest", "objective_fingerprint", "stable_repr"]

# " at 0x7f3a..." in reprs: a memory address, different in every process
_ADDRESS = re.compile(r"\s+at\s+0x[0-9a-fA-F]+|0x[0-9a-fA-F]{8,}")


def _feed(h: Any, value: Any) -> None:
    """Add ``value`` to the hash ``h``, tagged with its kind so that kinds never collide."""
    if value is None or isinstance(value, bool):
        h.update(f"<{value!r}>".encode())
    elif isinstance(value, str):
        h.update(b"s%d:" % len(value.encode()) + value.encode())
    elif isinstance(value, bytes | bytearray | memoryview):
        b = bytes(value)
        h.update(b"b%d:" % len(b) + b)
    elif isinstance(value, numbers.Integral):
        h.update(f"i{int(value)};".encode())
    elif isinstance(value, numbers.Real):
        h.update(f"f{float(value).hex()};".encode())
    elif isinstance(value, np.ndarray | np.generic):
        a = np.ascontiguousarray(value)
        if a.dtype.hasobject:
            raise TypeError("digest() takes numeric arrays, not object arrays.")
        h.update(f"a{a.dtype.str}{a.shape};".encode())
        h.update(a.reshape(-1).view(np.uint8).data)
    elif isinstance(value, Mapping):
        h.update(b"m%d{" % len(value))
        for key in sorted(value, key=str):
            _feed(h, str(key))
            _feed(h, value[key])
        h.update(b"}")
    elif isinstance(value, list | tuple):
        h.update(b"l%d[" % len(value))
        for item in value:
            _feed(h, item)
        h.update(b"]")
    else:
        raise TypeError(
            f"digest() takes arrays, numbers, strings, bytes, lists and dicts; got "
            f"{type(value).__name__}."
        )


def digest(*values: Any) -> str:
    """A 128-bit BLAKE2b digest (32 hex digits) of arrays, numbers, strings and containers.

    Arrays are hashed with their dtype and shape, so ``float32`` and ``float64`` copies of
    the same numbers differ, and dict keys are sorted, so insertion order does not matter.

    Parameters
    ----------
    *values
        numpy arrays, numbers, strings, bytes, None, and lists, tuples and dicts of them.

    Returns
    -------
    str

    Examples
    --------
    >>> digest(np.zeros(3)) == digest(np.zeros(3, dtype=np.float32))
    False
    >>> digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
    True
    """
    h = hashlib.blake2b(digest_size=16)
    for value in values:
        _feed(h, value)
    return h.hexdigest()


def stable_repr(value: Any) -> str:
    """``repr(value)`` without memory addresses, so that it is the same in every process.

    Examples
    --------
    >>> class Loss: pass
    >>> stable_repr(Loss()).endswith("Loss object>")
    True
    """
    return _ADDRESS.sub("", repr(value))


def callable_name(fn: Any) -> str:
    """A readable name of a function for a fingerprint: ``module.qualname`` or its repr.

    An instance (a loss module, a ``functools.partial``, a callable object) is named by
    its class and its :func:`stable_repr` (arguments included, addresses left out).

    Examples
    --------
    >>> import functools, operator
    >>> callable_name(functools.partial(operator.add, 1))
    'functools.partial functools.partial(<built-in function add>, 1)'
    """
    name = getattr(fn, "__qualname__", None)
    module = _main(getattr(fn, "__module__", None))
    if name is None:
        cls = type(fn)
        return f"{_main(cls.__module__)}.{cls.__qualname__} {stable_repr(fn)[:200]}"
    return f"{module}.{name}" if module else str(name)


def _main(module: str | None) -> str | None:
    """The user's script is ``__main__`` here and ``__mp_main__`` in spawned workers."""
    return "__main__" if module == "__mp_main__" else module


def objective_fingerprint(objective: Any, loss_at_origin: float | None = None) -> dict[str, Any]:
    """What a run store records to recognise ``objective`` when a run is resumed.

    Parameters
    ----------
    objective : Objective
        The objective; its optional ``fingerprint()`` adds what the backend knows (model
        structure, loss function, a digest of the data).
    loss_at_origin : float, optional
        The loss at the run's origin: a last check that catches other data or another loss
        function even for objectives without a fingerprint (left out when None).

    Returns
    -------
    dict
        ``type``, ``dim``, ``dtype``, ``n_examples``, the backend's entries and
        ``loss_at_origin``.
    """
    record: dict[str, Any] = {
        "type": f"{_main(type(objective).__module__)}.{type(objective).__qualname__}",
        "dim": int(objective.dim),
        "dtype": str(np.dtype(objective.dtype)),
        "n_examples": getattr(objective, "n_examples", None),
    }
    extra = getattr(objective, "fingerprint", None)
    if callable(extra):
        entries = extra()
        if not isinstance(entries, Mapping):
            raise TypeError(
                f"{type(objective).__name__}.fingerprint() must return a dict; got "
                f"{type(entries).__name__}."
            )
        for key, value in entries.items():
            record[str(key)] = value if isinstance(value, str | int | bool) else str(value)
    if loss_at_origin is not None:
        loss = float(loss_at_origin)
        record["loss_at_origin"] = loss if math.isfinite(loss) else str(loss)
    return record


def record_subset(parent: Any, child: Any, indices: Any) -> Any:
    """Mark ``child`` as ``parent`` restricted to examples ``indices``; returns ``child``.

    Sets ``child.data_subset`` to ``{"n", "of", "indices", "data"}``: how many examples,
    out of how many in the full data set, which ones (positions in the full data set: a
    subset of a subset is composed), and the full data set's digest when the parent has a
    ``fingerprint()``. Runs record it (``metadata["objective"]["subset"]``), so a result
    says on which examples its Hessian was measured. Backends call it from ``subset``.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    prior = getattr(parent, "data_subset", None)
    if prior:
        idx = np.asarray(prior["indices"], dtype=np.int64)[idx]
        of, data = prior["of"], prior["data"]
    else:
        of = getattr(parent, "n_examples", None)
        extra = getattr(parent, "fingerprint", None)
        data = extra().get("data") if callable(extra) else None
    child.data_subset = {
        "n": int(idx.size),
        "of": None if of is None else int(of),
        "indices": idx.tolist(),
        "data": data,
    }
    return child


def sample_examples(objective: Any, n: int, *, rng: Any = None) -> Any:
    """The objective on ``n`` of its examples, drawn without replacement: the Hessian on n.

    Curvature on a few thousand examples is what most papers report for large data sets
    (PyHessian measures on one batch). The examples are drawn uniformly without
    replacement and kept in data-set order; the objective returned records them
    (``data_subset``: positions in the full data set, their number, the full set's size
    and digest), and every run made with it stores that record in
    ``metadata["objective"]["subset"]``.

    Parameters
    ----------
    objective : Objective
        An objective built from data (``n_examples`` set, ``subset`` implemented).
    n : int
        How many examples, in ``[1, objective.n_examples]``.
    rng : int, numpy Generator or None
        Which examples; the record holds the indices, so any choice is reproducible.

    Returns
    -------
    Objective
        ``objective.subset(indices)``, carrying ``data_subset``.

    Examples
    --------
    >>> import numpy as np
    >>> from probecore.analytic import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> full = LogisticRegression(rng.standard_normal((500, 5)), rng.integers(0, 3, 500))
    >>> sub = sample_examples(full, 100, rng=0)
    >>> sub.n_examples, sub.data_subset["n"], sub.data_subset["of"]
    (100, 100, 500)
    """
    from probecore._contract.validation import as_rng, check_int

    total = getattr(objective, "n_examples", None)
    if total is None:
        raise ValueError(
            f"`objective` ({type(objective).__name__}) has no data set (n_examples is None), "
            "so it has no examples to sample; sample_examples applies to objectives built "
            "from data."
        )
    n = check_int("n", n, lo=1, hi=int(total))
    gen, _ = as_rng(rng)
    idx = np.sort(gen.choice(int(total), size=n, replace=False))
    sub = objective.subset(idx)
    if getattr(sub, "data_subset", None) is None:  # a backend that does not record it
        record_subset(objective, sub, idx)
    return sub
