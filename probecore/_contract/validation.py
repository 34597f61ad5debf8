"""Input validation shared by the public functions.

Every message names the parameter, the constraint and the value it got. Wrong kinds raise
``TypeError``; wrong values raise ``ValueError``.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_int(name: str, value: Any, *, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` as an int in ``[lo, hi]`` or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer; got {type(value).__name__} {_short(value)}.")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None:
            constraint = f">= {lo}"
        elif lo is None:
            constraint = f"<= {hi}"
        else:
            constraint = f"in [{lo}, {hi}]"
        raise ValueError(f"`{name}` must be {constraint}; got {value}.")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
) -> float:
    """Return ``value`` as a finite float with ``lo <= value <= hi`` (``lo < value`` if open)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be a real number; got {type(value).__name__} {_short(value)}."
        )
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"`{name}` must be finite; got {value}.")
    if lo is not None and (value <= lo if lo_open else value < lo):
        op = ">" if lo_open else ">="
        raise ValueError(f"`{name}` must be {op} {lo}; got {value}.")
    if hi is not None and value > hi:
        raise ValueError(f"`{name}` must be <= {hi}; got {value}.")
    return value


def check_option(name: str, value: Any, options: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``options``; otherwise list them in the error."""
    options = tuple(options)
    if not isinstance(value, str):
        raise TypeError(
            f"`{name}` must be one of {', '.join(map(repr, options))}; "
            f"got {type(value).__name__} {_short(value)}."
        )
    if value not in options:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, options))}; got {value!r}.")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            f"`{name}` must be True or False; got {type(value).__name__} {_short(value)}."
        )
    return bool(value)


def check_dtype(name: str, value: Any) -> np.dtype:
    """Return a floating dtype supported by probecore (float32 or float64)."""
    try:
        dtype = np.dtype(value)
    except TypeError as exc:
        raise TypeError(f"`{name}` must be a numpy dtype; got {_short(value)}.") from exc
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"`{name}` must be float32 or float64; got {dtype}.")
    return dtype


def all_finite(a: np.ndarray) -> bool:
    """Whether every entry is finite, without a temporary array in the common case.

    ``a·a`` is a sum of non-negative squares, so one NaN or infinity makes it non-finite;
    a finite result proves every entry finite. Only when it is not (a non-finite entry,
    or squares overflowing) is the exact element-wise test run.
    """
    flat = a.reshape(-1)
    if flat.size and np.isfinite(np.dot(flat, flat)):
        return True
    return bool(np.all(np.isfinite(a)))


def check_vector(name: str, x: Any, *, dim: int, dtype: np.dtype | None = None) -> np.ndarray:
    """Validate a flat parameter vector of length ``dim`` with finite entries.

    The array is returned as is when it already has ``dtype``; float arrays of another
    precision are cast. Integer, complex or object arrays are refused.
    """
    if not isinstance(x, np.ndarray):
        if isinstance(x, list | tuple):
            x = np.asarray(x)
        else:
            raise TypeError(
                f"`{name}` must be a 1-D numpy array of length {dim}; got {type(x).__name__}."
            )
    if x.dtype.kind != "f":
        raise TypeError(f"`{name}` must have a floating dtype; got {x.dtype}.")
    if x.ndim != 1 or x.shape[0] != dim:
        raise ValueError(f"`{name}` must have shape ({dim},); got {x.shape}.")
    if not all_finite(x):
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise ValueError(
            f"`{name}` must be finite; entry {bad} is {x[bad]} "
            f"({int(np.sum(~np.isfinite(x)))} non-finite in all)."
        )
    if dtype is not None and x.dtype != dtype:
        x = _cast_finite(name, x, dtype)
    return x


def check_matrix(name: str, V: Any, *, dim: int, dtype: np.dtype | None = None) -> np.ndarray:
    """Validate a stack of vectors with shape ``(k, dim)``, finite entries."""
    if not isinstance(V, np.ndarray):
        raise TypeError(
            f"`{name}` must be a 2-D numpy array of shape (k, {dim}); got {type(V).__name__}."
        )
    if V.dtype.kind != "f":
        raise TypeError(f"`{name}` must have a floating dtype; got {V.dtype}.")
    if V.ndim != 2 or V.shape[1] != dim:
        raise ValueError(f"`{name}` must have shape (k, {dim}); got {V.shape}.")
    if not all_finite(V):
        raise ValueError(
            f"`{name}` must be finite; it has {int(np.sum(~np.isfinite(V)))} non-finite entries."
        )
    if dtype is not None and V.dtype != dtype:
        V = _cast_finite(name, V, dtype)
    return V


def _cast_finite(name: str, a: np.ndarray, dtype: Any) -> np.ndarray:
    """``a`` in ``dtype``, refusing entries that the cast turns into infinities."""
    with np.errstate(over="ignore"):
        out = a.astype(dtype)
    if not all_finite(out):
        bad = int(np.flatnonzero(~np.isfinite(out.reshape(-1)))[0])
        big = float(np.finfo(dtype).max)
        raise ValueError(
            f"`{name}` does not fit in {np.dtype(dtype)}: entry {bad} is "
            f"{a.reshape(-1)[bad]:.6g}, beyond its largest value {big:.4g} "
            f"({int(np.sum(~np.isfinite(out)))} such entries). Scale it down, or use an "
            f"objective in {a.dtype}."
        )
    return out


def as_rng(rng: Any) -> tuple[np.random.Generator, int | dict | None]:
    """Normalize ``rng`` and return it with a record that reproduces the run.

    The record is the integer seed when one was given or drawn, and the generator's
    bit-generator state when a ``Generator`` was passed.
    """
    if isinstance(rng, np.random.Generator):
        return rng, {"bit_generator_state": _jsonable_state(rng.bit_generator.state)}
    if rng is None:
        entropy = np.random.SeedSequence().entropy
        assert isinstance(entropy, int)  # a fresh SeedSequence draws one integer
        seed = entropy
        return np.random.default_rng(seed), seed
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if int(rng) < 0:
            raise ValueError(f"`rng` must be a non-negative integer seed; got {int(rng)}.")
        return np.random.default_rng(int(rng)), int(rng)
    raise TypeError(
        "`rng` must be None, a non-negative int seed or a numpy.random.Generator; "
        f"got {type(rng).__name__}."
    )


def _jsonable_state(state: Any) -> Any:
    if isinstance(state, dict):
        return {k: _jsonable_state(v) for k, v in state.items()}
    if isinstance(state, np.integer):
        return int(state)
    if isinstance(state, np.ndarray):
        return state.tolist()
    return state


#: Environment variable that sets the memory budget of a probe's per-point arrays, in
#: bytes (``"2e9"`` and ``"2000000000"`` both work); see :func:`grid_memory_budget`.
MAX_GRID_BYTES_ENV = "PROBECORE_MAX_GRID_BYTES"
_FALLBACK_GRID_BYTES = 8 * 2**30


def format_bytes(n: float) -> str:
    """``n`` bytes in decimal units, e.g. ``"6.4 GB"``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def grid_memory_budget() -> tuple[int, str]:
    """The memory budget of a probe's per-point arrays, and the rule that set it.

    ``PROBECORE_MAX_GRID_BYTES`` (bytes, > 0) when set; otherwise half the machine's
    physical memory (``os.sysconf``), or 8 GiB where that is not available.

    Returns
    -------
    budget : int
        Bytes.
    rule : str
        Where the number comes from, for messages.
    """
    raw = os.environ.get(MAX_GRID_BYTES_ENV, "").strip()
    if raw:
        try:
            budget = float(raw)
        except ValueError:
            budget = float("nan")
        if not np.isfinite(budget) or budget <= 0:
            raise ValueError(
                f"{MAX_GRID_BYTES_ENV} must be a positive number of bytes (such as 4e9); "
                f"got {raw!r}."
            )
        return int(budget), f"{MAX_GRID_BYTES_ENV}={raw}"
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        physical = -1
    if physical > 0:
        return physical // 2, f"half the physical memory of {format_bytes(physical)}"
    return _FALLBACK_GRID_BYTES, "8 GiB, as the physical memory is unknown"


def check_points_budget(
    name: str, n_points: int, *, floats_per_point: int, advice: str = ""
) -> int:
    """Refuse a probe whose per-point arrays would not fit in :func:`grid_memory_budget`.

    Call it before allocating anything proportional to ``n_points``. The estimate is
    ``n_points · (8·floats_per_point + 1)`` bytes: the float64 arrays the run holds at its
    peak (the caller counts them: coefficients, one array per recorded field, the
    result's copies, temporaries) and the one-byte done mask.

    Parameters
    ----------
    name : str
        What sets the number of points, as the user wrote it (``"`n_points` = 10**9"``,
        ``"`alphas` × `betas` (20000 × 20000)"``).
    n_points : int
    floats_per_point : int
    advice : str
        How to proceed, appended to the message.

    Returns
    -------
    int
        The estimated bytes, when within the budget.

    Raises
    ------
    ValueError
        Naming ``name``, the number of points, the bytes they would take, the budget
        and its rule, and ``advice``.
    """
    nbytes = int(n_points) * (8 * int(floats_per_point) + 1)
    budget, rule = grid_memory_budget()
    if nbytes > budget:
        raise ValueError(
            f"{name} asks for {int(n_points):,} points, whose arrays would take "
            f"{format_bytes(nbytes)} of memory, more than the budget of "
            f"{format_bytes(budget)} ({rule}); refused before allocating them. "
            f"{advice} To allow more, set {MAX_GRID_BYTES_ENV} (bytes)."
        )
    return nbytes
