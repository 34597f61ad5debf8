"""Frozen result objects and their storage on disk.

Results are keyword-only frozen dataclasses whose array fields are read-only copies. Each
carries its cost (``n_matvecs``: Hessian-vector products, or loss evaluations), how it
ended (``converged``), the randomness that reproduces it (``seed``) and its error
estimates. Every result class derives from :class:`ResultBase` and is registered with
:func:`register`, so that :func:`save` and :func:`load` know it.

:func:`save` writes a result to a NumPy ``.npz`` archive (no pickle) holding every array
and a JSON record of the scalar fields, the result type, the probecore version and any
metadata the caller adds; :func:`load` reads it back into the same type, after checking
the file against the result class (see :func:`load` for what it checks and how it bounds
the memory it uses), and raises :class:`~probecore.InvalidResultError` for any file that
is not a valid result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import sys
import types
import typing
import uuid
import zipfile
import zlib
from typing import IO, Any, ClassVar, Literal, Union

import numpy as np
from numpy.lib import format as npy_format

from probecore._contract.errors import InvalidResultError
from probecore._version import __version__

__all__ = ["ResultBase", "load", "register", "save"]

_REGISTRY: dict[str, type] = {}
_FORMAT = "probecore-result/1"
_HEADER = "__probecore__"  # the archive member holding the JSON record
_RECORD_KEYS = ("format", "type", "probecore_version", "fields")

# Longest JSON record `save` writes and `load` reads, in characters (4 Mi; stored as
# UTF-32, so 16 MiB in the file). Records are ASCII and hold only scalars and metadata.
_MAX_HEADER_CHARS = 1 << 22
# Most dimensions an array field may have (results hold vectors, matrices and grids).
_MAX_NDIM = 8
# A member may declare at most `_EXPANSION * its stored bytes + _ALLOWANCE` bytes of data.
_EXPANSION = 64
_ALLOWANCE = 1 << 20
_CHUNK = 1 << 20  # bytes read at a time
_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats (no result is complex)


def register(cls: type) -> type:
    """Make a result dataclass known to :func:`save` and :func:`load`, by its class name.

    :func:`load` checks every field read from a file against the class's type
    annotations, so register the class after ``@dataclass`` (as the outer decorator).
    """
    _REGISTRY[cls.__name__] = cls
    return cls


class ResultBase:
    """Shared behaviour: read-only array fields and a compact repr."""

    __slots__ = ()

    _array_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in self._array_fields:
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.array(value, copy=True)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        if hasattr(self, "metadata"):
            object.__setattr__(self, "metadata", dict(self.metadata or {}))

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                text = f"array(shape={value.shape}, dtype={value.dtype})"
                if value.size <= 6:
                    text = np.array2string(value, precision=6, separator=", ")
            elif isinstance(value, dict) and len(repr(value)) > 60:
                text = "{...}"
            else:
                text = repr(value)
            parts.append(f"{f.name}={text}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return {"__float__": repr(value)}
    return value


_NON_FINITE = {"nan", "inf", "-inf"}  # repr() of the floats _to_json encodes


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"} and value["__float__"] in _NON_FINITE:
            return float(value["__float__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


# --------------------------------------------------------------------------- checks


class _Refused(Exception):
    """Why a file (or, in :func:`save`, a result) is not a valid probecore result."""


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hint_name(hint: Any) -> str:
    if isinstance(hint, type):
        return "array" if hint is np.ndarray else hint.__name__
    return str(hint).replace("typing.", "").replace("numpy.ndarray", "array")


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a value read from a file (JSON, or an array) matches a field annotation.

    JSON has no tuples, so a list stands for a ``tuple``; an ``int`` is a ``float``, but
    a ``bool`` is neither. Annotations this does not understand accept any value.
    """
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Union or origin is types.UnionType:
        return any(_type_ok(value, arm) for arm in args)
    if origin is Literal:
        return any(type(value) is type(arg) and value == arg for arg in args)
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    container = origin if origin is not None else hint
    if container is np.ndarray:
        return isinstance(value, np.ndarray)
    if container is dict:
        if not isinstance(value, dict):
            return False
        if len(args) == 2:
            return all(_type_ok(k, args[0]) and _type_ok(v, args[1]) for k, v in value.items())
        return True
    if container is tuple or container is list:
        if not isinstance(value, list | tuple):
            return False
        if container is tuple and len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        if container is tuple and origin is tuple:
            if args in ((), ((),)):  # tuple[()]: get_args gives () or ((),)
                return len(value) == 0
            return len(value) == len(args) and all(map(_type_ok, value, args))
        if container is list and len(args) == 1:
            return all(_type_ok(v, args[0]) for v in value)
        return True
    if isinstance(container, type):
        return isinstance(value, container)
    return True


def _wants_tuple(hint: Any) -> bool:
    """Whether a JSON list for this annotation should be read back as a tuple."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return any(_wants_tuple(arm) for arm in typing.get_args(hint))
    return hint is tuple or typing.get_origin(hint) is tuple


@functools.cache
def _field_specs(cls: type) -> dict[str, tuple[Any, bool]]:
    """``{name: (type hint, required)}`` of a result class's ``__init__`` fields."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve at run time: check it lazily
        hints = {}
    specs: dict[str, tuple[Any, bool]] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = hints.get(f.name, f.type if not isinstance(f.type, str) else Any)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        specs[f.name] = (hint, required)
    return specs


def _check_record(record: Any) -> tuple[type, dict[str, Any], str]:
    """Check a decoded JSON record; return its class, its scalar fields and its version."""
    if not isinstance(record, dict):
        raise _Refused(f"the header is not a JSON object but {type(record).__name__}")
    missing = [k for k in _RECORD_KEYS if k not in record]
    if missing:
        raise _Refused(f"the header lacks the key(s) {missing}")
    extra = sorted(set(record) - set(_RECORD_KEYS))
    if extra:
        raise _Refused(f"the header has unknown key(s) {_short(extra)}")
    if record["format"] != _FORMAT:
        raise _Refused(
            f"unsupported result format {_short(record['format'])} "
            f"(this probecore reads {_FORMAT!r})"
        )
    version = record["probecore_version"]
    if not isinstance(version, str):
        raise _Refused(f"'probecore_version' must be a string; got {_short(version)}")
    name = record["type"]
    if not isinstance(name, str):
        raise _Refused(f"'type' must be a string; got {_short(name)}")
    cls = _REGISTRY.get(name)
    if cls is None:
        raise _Refused(f"unknown result type {_short(name)}")
    fields = record["fields"]
    if not isinstance(fields, dict):
        raise _Refused(f"'fields' must be a JSON object; got {type(fields).__name__}")
    specs = _field_specs(cls)
    array_fields = set(getattr(cls, "_array_fields", ()))
    kwargs: dict[str, Any] = {}
    for key, raw in fields.items():
        if key not in specs:
            raise _Refused(f"unknown field {_short(key)} for {name}")
        if key in array_fields:
            raise _Refused(f"array field {key!r} of {name} is in the header, not an array")
        hint = specs[key][0]
        value = _from_json(raw)
        if not _type_ok(value, hint):
            raise _Refused(
                f"field {key!r} of {name} must be {_hint_name(hint)}; got {_short(value)}"
            )
        if isinstance(value, list) and _wants_tuple(hint):
            value = tuple(value)
        kwargs[key] = value
    return cls, kwargs, version


def _check_array(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.hasobject:
        raise _Refused(f"array {name!r} has dtype {str(dtype)[:80]}, not a real numeric dtype")
    if len(shape) > _MAX_NDIM:
        raise _Refused(f"array {name!r} has {len(shape)} dimensions (at most {_MAX_NDIM})")


def _complete(cls: type, kwargs: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Check the arrays against the class, add them to ``kwargs``, refuse missing fields."""
    specs = _field_specs(cls)
    for key, arr in arrays.items():
        if key not in specs or key not in getattr(cls, "_array_fields", ()):
            raise _Refused(f"unknown array {_short(key)} for {cls.__name__}")
        if not _type_ok(arr, specs[key][0]):
            raise _Refused(f"field {key!r} of {cls.__name__} must not be an array")
        kwargs[key] = arr
    missing = [k for k, (_, required) in specs.items() if required and k not in kwargs]
    if missing:
        raise _Refused(f"{cls.__name__} field(s) {missing} missing")


# --------------------------------------------------------------------------- save


def save(result: Any, path: str | os.PathLike, *, metadata: dict | None = None) -> str:
    """Write a probecore result to ``path`` (a ``.npz`` file; the suffix is added if missing).

    The archive holds each array field as a ``.npy`` member under its name (stored
    uncompressed; ``None`` fields are left out) and a JSON record under ``__probecore__``:
    the format, the result type, the probecore version and the other fields, metadata
    included. It is written to a temporary file in the same directory (named after
    ``path``, the process id and a random suffix) and renamed onto ``path``, so that a
    crash never leaves a half-written result; a save that fails removes its temporary
    file.

    Parameters
    ----------
    result : result object
        Any probecore result (``EigResult``, ``SpectralDensity``, ...).
    path : str or os.PathLike
        Destination file.
    metadata : dict, optional
        Extra JSON-serialisable information (model name, data size, ...), merged into the
        result's own ``metadata`` when read back.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    TypeError
        If ``result`` is not a registered result, ``metadata`` is not a JSON-serialisable
        dict, or a field does not match its type (a non-numeric array, say): such a file
        would not load.
    ValueError
        If the JSON record would exceed 4 Mi characters (the limit :func:`load` reads);
        keep large data in arrays, not in metadata.

    Examples
    --------
    >>> import tempfile, os
    >>> from probecore import TraceResult
    >>> r = TraceResult(estimate=3.0, std_error=0.1, samples=np.ones(4), method="hutchinson",
    ...                 n_matvecs=4)
    >>> p = save(r, os.path.join(tempfile.mkdtemp(), "trace"), metadata={"model": "toy"})
    >>> load(p).metadata["model"]
    'toy'
    """
    cls = type(result)
    if _REGISTRY.get(cls.__name__) is not cls:
        raise TypeError(f"`result` must be a probecore result object; got {cls.__name__}.")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"`metadata` must be a dict; got {type(metadata).__name__}.")
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if f.name in cls._array_fields:
            if value is not None:
                arrays[f.name] = np.asarray(value)
        else:
            scalars[f.name] = value
    scalars["metadata"] = {**scalars.get("metadata", {}), **(metadata or {})}
    record = {
        "format": _FORMAT,
        "type": cls.__name__,
        "probecore_version": __version__,
        "fields": _to_json(scalars),
    }
    try:
        header = json.dumps(record, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`metadata` must be JSON-serialisable: {exc}") from exc
    if len(header) > _MAX_HEADER_CHARS:
        raise ValueError(
            f"the JSON record of this result has {len(header)} characters, more than "
            f"{_MAX_HEADER_CHARS} (the most `load` reads); keep large data out of metadata."
        )
    try:  # what load will check: refuse here rather than write a file that does not load
        _, kwargs, _ = _check_record(json.loads(header))
        for key, arr in arrays.items():
            _check_array(key, arr.dtype, arr.shape)
        _complete(cls, kwargs, arrays)
    except _Refused as exc:
        raise TypeError(f"cannot save this {cls.__name__}: {exc}.") from None
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    tmp = f"{path}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp"
    payload: dict[str, Any] = {_HEADER: np.array(header), **arrays}
    try:
        with open(tmp, "xb") as fh:
            np.savez(fh, allow_pickle=False, **payload)
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written result
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return path


# --------------------------------------------------------------------------- load

# What a damaged archive can raise while zipfile and numpy parse it.
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    KeyError,
    IndexError,
    SyntaxError,
    TypeError,
    UnicodeError,
)


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int, *, header: bool
) -> np.ndarray:
    """Read one ``.npy`` member, checking its declared dtype and size before reading data."""
    name = info.filename[:-4]
    if info.flag_bits & 0x1:
        raise _Refused(f"member {name!r} is encrypted")
    if info.compress_size > file_size:
        raise _Refused(
            f"member {name!r} claims {info.compress_size} stored bytes in a file of {file_size}"
        )
    with zf.open(info) as fp:
        version = npy_format.read_magic(fp)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(fp)
        else:
            raise _Refused(f"member {name!r} has unsupported .npy version {version}")
        if header:
            if dtype.kind != "U" or shape != () or dtype.itemsize == 0:
                raise _Refused(f"the header member holds {str(dtype)[:80]} {shape}, not a string")
            if dtype.itemsize // 4 > _MAX_HEADER_CHARS:
                raise _Refused(
                    f"the header has {dtype.itemsize // 4} characters (at most {_MAX_HEADER_CHARS})"
                )
        else:
            _check_array(name, dtype, shape)
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        limit = _EXPANSION * info.compress_size + _ALLOWANCE
        if nbytes > limit:
            raise _Refused(
                f"member {name!r} declares shape {shape} of {dtype} ({nbytes} bytes) but "
                f"stores {info.compress_size} bytes (at most {limit} allowed)"
            )
        offset = fp.tell()
        if offset + nbytes != info.file_size:
            raise _Refused(
                f"member {name!r} declares {nbytes} bytes of data but holds "
                f"{info.file_size - offset}"
            )
        raw = np.empty(nbytes, dtype=np.uint8)  # bounded above; filled in chunks
        view = raw.data
        filled = 0
        while filled < nbytes:
            chunk = fp.read(min(_CHUNK, nbytes - filled))
            if not chunk:
                break
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        if filled != nbytes or fp.read(1):  # the last read also checks the CRC
            raise _Refused(f"member {name!r} is truncated or has trailing bytes")
    if header:
        little = dtype.byteorder == "<" or (dtype.byteorder in "=|" and sys.byteorder == "little")
        text = raw.tobytes().decode("utf-32-le" if little else "utf-32-be").rstrip("\x00")
        return np.array(text)
    array = raw.view(dtype)
    if fortran_order:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def _read(fh: IO[bytes], file_size: int) -> tuple[type, dict[str, Any]]:
    if not zipfile.is_zipfile(fh):
        raise _Refused("not a zip archive (.npz)")
    fh.seek(0)
    with zipfile.ZipFile(fh) as zf:
        infos = zf.infolist()
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise _Refused("the archive holds duplicate members")
        members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise _Refused(f"member {_short(info.filename)} is not a .npy array")
            members[info.filename[:-4]] = info
        if _HEADER not in members:
            raise _Refused(f"no {_HEADER!r} header (a plain .npz archive?)")
        text = str(_read_member(zf, members.pop(_HEADER), file_size, header=True)[()])
        try:
            record = json.loads(text, parse_constant=_no_constant)
        except RecursionError:
            raise _Refused("the header is nested too deeply") from None
        except ValueError as exc:
            raise _Refused(f"the header is not valid JSON ({_short(str(exc))})") from None
        cls, kwargs, version = _check_record(record)
        unknown = [k for k in members if k not in getattr(cls, "_array_fields", ())]
        if unknown:  # before reading any data
            raise _Refused(f"unknown array(s) {_short(unknown)} for {cls.__name__}")
        arrays = {k: _read_member(zf, info, file_size, header=False) for k, info in members.items()}
    _complete(cls, kwargs, arrays)
    meta = kwargs.get("metadata", {})
    kwargs["metadata"] = {**meta, "saved_with_probecore": version}
    return cls, kwargs


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-standard constant {name}")


def load(path: str | os.PathLike) -> Any:
    """Read a result written by :func:`save` (arrays read-only, metadata restored).

    The file is checked before anything is built from it, and any file that is not a valid
    result raises :class:`~probecore.InvalidResultError` (a :class:`ValueError`) whose
    message starts with ``"not a probecore result: "`` and names the file and the problem:

    * the archive: a zip file whose members are all ``.npy`` arrays, one of them the JSON
      header ``__probecore__`` (a string of at most 4 Mi characters) holding exactly the
      keys ``format`` (``"probecore-result/1"``), ``type`` (a registered result class),
      ``probecore_version`` (a string) and ``fields``;
    * the fields: each must be a field of that class, every required field must be there,
      and each value must match the field's type annotation (``bool`` a JSON boolean,
      ``int`` an integer but not a boolean, ``float`` any number, ``str`` a string,
      ``dict`` an object, ``tuple`` a list; ``X | None``, ``tuple[...]`` and the like are
      followed), and the class must accept them;
    * the arrays: one member per array field of the class, of a numeric dtype (bool,
      integer, float or complex; never object or string) with at most 8 dimensions.

    Memory is bounded before it is allocated: each member's ``.npy`` header is read first
    and the member refused if its declared data (shape × item size) exceeds
    ``64 × its stored (compressed) size + 1 MiB``, or differs from what the member holds.
    :func:`save` stores every member uncompressed, so the data of a file it wrote is never
    larger than its stored size and always passes; a crafted header or a zip bomb cannot
    make ``load`` allocate more than about 64 times the size of the file.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.

    Returns
    -------
    result object
        The result, of the type it was saved as; its ``metadata`` gains
        ``"saved_with_probecore"``, the version that wrote the file.

    Raises
    ------
    InvalidResultError
        If the file is not a valid probecore result (see above).
    OSError
        If the file cannot be opened (``FileNotFoundError``, ...).
    """
    fspath = os.fspath(path)
    with open(fspath, "rb") as fh:
        file_size = os.fstat(fh.fileno()).st_size
        try:
            cls, kwargs = _read(fh, file_size)
        except _Refused as exc:
            raise InvalidResultError(fspath, str(exc)) from None
        except _ARCHIVE_ERRORS as exc:
            reason = f"damaged archive ({type(exc).__name__}: {_short(str(exc))})"
            raise InvalidResultError(fspath, reason) from exc
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        reason = f"its fields do not make a valid {cls.__name__} ({_short(str(exc), 200)})"
        raise InvalidResultError(fspath, reason) from exc
