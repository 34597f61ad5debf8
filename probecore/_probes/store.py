"""Resumable on-disk runs: a Zarr group written one computed chunk at a time.

A landscape run (line, plane, rays or path) is a list of points cut into chunks of a
fixed size. Each computed chunk is written to its own Zarr chunk files, then its digest,
then its mark in the ``done`` mask. Restarting the same run on the same path reads back
the chunks whose digests verify and computes only the others.

A store is a verifiable record of one run:

- **What it holds.** The record names the run (kind, grid, directions, seed, chunking)
  and the objective (type, dimension, dtype, number of examples, what the backend's
  ``fingerprint()`` reports, such as a digest of the data and the loss function's name,
  and the loss at the origin). Resuming with anything else is refused, naming what
  differs. The record carries its own digest, and each fixed array (grid, origin,
  directions) has one in the record.
- **One writer at a time.** A writer holds an operating-system lock on
  ``<store>/.probecore.lock`` from opening to :meth:`RunStore.close`; a second writer is
  refused at once. The system releases the lock when a process dies, so a killed writer
  never leaves it stuck.
- **Verified chunks.** Every chunk has a 64-bit digest of its values (and its index) in
  the array ``digest``. A chunk whose files are missing, truncated or altered fails it
  (or fails to decompress): a resumed run warns and computes it again, and
  :func:`~probecore.load_run` warns and reports it as not computed. Never trusted.
- **Never in someone else's folder.** A store is created only in a new or empty folder
  (or one that an interrupted creation left: it holds the marker ``.probecore-run``);
  anything else is refused without touching a file.

Layout of the group (readable with ``zarr.open_group(path)`` or any Zarr v3 reader)::

    attrs["probecore"]   format, kind, identity, objective, fixed (array digests),
                         metadata, digest (of all the rest)
    done                 bool (n_points,): which points are computed (no sentinel values)
    digest               uint64 (n_chunks,): each computed chunk's digest, 0 if none
    <value arrays>       float64 (n_points,): "loss", metrics, "loss_plus", ...
    <fixed arrays>       what defines the run: "coords", "origin", "basis", ...
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import json
import math
import os
import shutil
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from probecore._contract.errors import caller_stacklevel
from probecore._contract.fingerprint import digest

__all__ = ["FORMAT", "RunStore", "open_run", "verified_chunks"]

FORMAT = "probecore-run/2"
LOCK_NAME = ".probecore.lock"
MARKER_NAME = ".probecore-run"

# How a refusal names an entry of the objective's record.
_OBJECTIVE_NAMES = {
    "type": "objective type",
    "backend": "backend",
    "dim": "number of parameters",
    "dtype": "precision (dtype)",
    "model": "model",
    "params": "parameter structure",
    "function": "function",
    "loss_fn": "loss function",
    "n_examples": "number of examples",
    "data": "data (digest)",
    "state": "model state (buffers and frozen parameters)",
}
_IDENTITY_NAMES = {
    "fields": "recorded values (loss and `metrics`)",
    "entropy": "seed (`rng`)",
    "chunk_size": "`chunk_size`",
    "n_points": "number of points",
    "curvature": "`curvature`",
}
# Settings that older runs do not record, with the value they had; compared first, as
# they name the difference best (a rays run of the other `curvature` also differs in
# its step and checks).
_IDENTITY_DEFAULTS = {"curvature": "difference"}


def _store_module(name: str, requirement: str) -> Any:
    """``zarr`` or ``filelock``, which the ``store`` extra brings, or an error naming it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"saving landscape runs needs {name}: pip install 'probecore[store]' (or "
            f"{requirement})."
        ) from exc


def _zarr() -> Any:
    return _store_module("zarr", "zarr>=3.1")


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _record_digest(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "digest"}
    return hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=16).hexdigest()


def chunk_digest(index: int, values: Mapping[str, np.ndarray], fields: list[str]) -> int:
    """64-bit digest of chunk ``index``'s values, never 0 (0 marks a chunk not written)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(b"chunk %d;" % index)
    for name in fields:
        h.update(np.ascontiguousarray(values[name], dtype="<f8").view(np.uint8).data)
    return int.from_bytes(h.digest(), "little") or 1


def _same_loss(a: Any, b: Any, dtype: str) -> bool:
    """Losses at the origin equal up to a few hundred roundings of the dtype (or both NaN)."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    try:
        eps = float(np.finfo(np.dtype(dtype)).eps)
    except TypeError:
        eps = float(np.finfo(np.float64).eps)
    return math.isclose(float(a), float(b), rel_tol=1e3 * eps, abs_tol=1e3 * eps)


def _is_store(path: str) -> bool:
    """Whether ``path`` holds a probecore store, or what an interrupted creation left."""
    return os.path.exists(os.path.join(path, MARKER_NAME))


class RunStore:
    """A run's results on disk, created on first use and resumed afterwards.

    The writer holds the store's lock until :meth:`close`; the probes close it when they
    return, normally or not.

    Parameters
    ----------
    path : str or os.PathLike
        Directory of the Zarr group: new, empty, or a probecore store.
    kind : str
        ``"line"``, ``"plane"``, ``"rays"`` or ``"path"``.
    n_points : int
        Number of values per field.
    chunk_size : int
        Points per chunk (one Zarr chunk per computed chunk).
    fields : sequence of str
        Names of the float64 value arrays.
    fixed : mapping of str to numpy.ndarray
        Arrays that define the run (grid, origin, directions). On resume they must be
        bitwise equal to the stored ones (compared by digest).
    identity : dict
        JSON-serialisable settings that must match on resume.
    objective : dict
        The objective's fingerprint (``objective_fingerprint``): it must match on resume
        (the loss at the origin up to rounding).
    metadata : dict
        Everything else worth recording (versions, the user's metadata, ...).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        kind: str,
        n_points: int,
        chunk_size: int,
        fields: list[str],
        fixed: Mapping[str, np.ndarray],
        identity: dict,
        objective: dict,
        metadata: dict,
    ) -> None:
        self.path = os.fspath(path)
        if not self.path:
            raise ValueError("`store` must be a folder path; got an empty string.")
        self.n_points = n_points
        self.chunk_size = chunk_size
        self.n_chunks = -(-n_points // chunk_size)
        self.fields = list(fields)
        self._lock: Any = None
        identity = _canonical(
            {
                **identity,
                "kind": kind,
                "n_points": n_points,
                "chunk_size": chunk_size,
                "fields": self.fields,
            }
        )
        objective = _canonical(objective)
        fixed_digests = {name: digest(np.asarray(v)) for name, v in fixed.items()}
        self._claim()
        try:
            record = self._read_record()
            if record is not None:
                self._check_same_run(record, kind, identity, objective, fixed_digests)
                self.group = _zarr().open_group(self.path, mode="r+")
                self._check_arrays()
                self._remove_partial_writes()
                self.resumed = True
            else:
                self._create(kind, identity, objective, fixed, fixed_digests, metadata)
                self.resumed = False
        except BaseException:
            self.close()
            raise
        self.metadata = self.record["metadata"]

    # ------------------------------------------------------------------ opening
    def _claim(self) -> None:
        """Refuse a folder that is not ours, then take the writer's lock."""
        path = self.path
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"`store` {path!r} exists and is not a directory.")
        entries = sorted(set(os.listdir(path)) - {LOCK_NAME}) if os.path.isdir(path) else []
        if entries and not _is_store(path):
            raise ValueError(
                f"`store` {path!r} is a folder that is neither empty nor a probecore store "
                f"(it holds {entries[:3]}{' ...' if len(entries) > 3 else ''}); a store is "
                "created only in a new or empty folder, so that no file of yours is "
                "touched. Pass a new path."
            )
        os.makedirs(path, exist_ok=True)
        filelock = _store_module("filelock", "filelock>=3.12")
        lock = filelock.FileLock(os.path.join(path, LOCK_NAME), timeout=0)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise ValueError(
                f"`store` {path!r} is being written by another run (its lock "
                f"{LOCK_NAME!r} is held): one writer at a time. Wait for that run to "
                "finish (a killed run releases the lock at once), or pass another path."
            ) from None
        self._lock = lock

    def _read_record(self) -> dict | None:
        """The store's record, None for a new store; a damaged record is refused."""
        name = os.path.join(self.path, "zarr.json")
        if not os.path.exists(name):
            return None
        try:
            with open(name, encoding="utf-8") as fh:
                meta = json.load(fh)
            record = meta.get("attributes", {}).get("probecore")
        except (OSError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"`store` {self.path!r} is damaged: its zarr.json cannot be read ({exc}). "
                "Delete the store to start over."
            ) from None
        if record is None:
            return None  # an interrupted creation: the record is written last
        _check_record(self.path, record)
        self.record = record
        return record

    def _check_same_run(
        self, record: dict, kind: str, identity: dict, objective: dict, fixed: dict
    ) -> None:
        path = self.path
        again = "Pass another path, or delete the old run to start over."
        if record.get("kind") != kind:
            raise ValueError(
                f"`store` {path!r} holds a {record.get('kind')!r} run, not a {kind!r} run. " + again
            )
        # The objective first (its precision or data names the difference best), then
        # the run's settings and arrays, and the loss at the origin last: a different
        # origin is named as such, not as a different loss.
        theirs = record["objective"]
        order = list(_OBJECTIVE_NAMES)
        keys = sorted(
            set(theirs) | set(objective), key=lambda k: (order.index(k) if k in order else 99, k)
        )
        for key in [k for k in keys if k != "loss_at_origin"]:
            if theirs.get(key) != objective.get(key):
                self._other_objective(_OBJECTIVE_NAMES.get(key, repr(key)), theirs, objective, key)
        stored = record["identity"]
        first = sorted(set(stored) | set(identity), key=lambda k: (k not in _IDENTITY_DEFAULTS, k))
        for key in first:
            default = _IDENTITY_DEFAULTS.get(key)
            if stored.get(key, default) != identity.get(key, default):
                raise ValueError(
                    f"`store` {path!r} holds a different run: its "
                    f"{_IDENTITY_NAMES.get(key, key)} is {stored.get(key, default)!r}, this "
                    f"run's is {identity.get(key, default)!r}. " + again
                )
        for name in sorted(set(record["fixed"]) | set(fixed)):
            if record["fixed"].get(name) != fixed.get(name):
                raise ValueError(
                    f"`store` {path!r} holds a different run: its {name!r} array differs "
                    "from this run's. " + again
                )
        a, b = theirs.get("loss_at_origin"), objective.get("loss_at_origin")
        if (a is None) != (b is None) or (
            a is not None and not _same_loss(a, b, objective.get("dtype", "float64"))
        ):
            what = "loss at the origin (other data, another loss function or another precision?)"
            self._other_objective(what, theirs, objective, "loss_at_origin")

    def _other_objective(self, what: str, theirs: dict, ours: dict, key: str) -> None:
        raise ValueError(
            f"`store` {self.path!r} holds a run of another objective: its {what} is "
            f"{theirs.get(key)!r}, this objective's is {ours.get(key)!r}. Resume with the "
            "objective the run was started with (same model, data, loss function and dtype). "
            "Pass another path, or delete the old run to start over."
        )

    def _create(
        self,
        kind: str,
        identity: dict,
        objective: dict,
        fixed: Mapping[str, np.ndarray],
        fixed_digests: dict,
        metadata: dict,
    ) -> None:
        """A new store: the marker first, then the arrays, then the record (last)."""
        leftovers = sorted(set(os.listdir(self.path)) - {LOCK_NAME, MARKER_NAME})
        if leftovers:  # an interrupted creation of ours, or a store that lost its record
            warnings.warn(
                f"`store` {self.path!r} is a probecore store without a readable record "
                f"(its creation was interrupted, or its zarr.json was deleted): its "
                f"{len(leftovers)} entries are removed and the run starts over.",
                RuntimeWarning,
                stacklevel=caller_stacklevel(),
            )
        for entry in leftovers:
            full = os.path.join(self.path, entry)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.remove(full)
        with open(os.path.join(self.path, MARKER_NAME), "w", encoding="utf-8") as fh:
            fh.write(f"{FORMAT}: a probecore run store (probecore.load_run reads it)\n")
        zarr = _zarr()
        group = zarr.open_group(self.path, mode="a")
        for name, value in fixed.items():
            arr = np.asarray(value)
            group.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=arr.shape or None)[
                ...
            ] = arr
        for name in self.fields:
            group.create_array(
                name,
                shape=(self.n_points,),
                dtype="f8",
                chunks=(self.chunk_size,),
                fill_value=np.nan,
            )
        group.create_array(
            "done",
            shape=(self.n_points,),
            dtype="bool",
            chunks=(self.chunk_size,),
            fill_value=False,
        )
        group.create_array("digest", shape=(self.n_chunks,), dtype="u8", chunks=(1,), fill_value=0)
        record = {
            "format": FORMAT,
            "kind": kind,
            "identity": identity,
            "objective": objective,
            "fixed": fixed_digests,
            "metadata": _canonical(metadata),
        }
        record["digest"] = _record_digest(record)
        group.attrs["probecore"] = record
        self.group = group
        self.record = record

    def _check_arrays(self) -> None:
        """Refuse a store whose value arrays cannot be opened or have the wrong shape."""
        want = {name: ((self.n_points,), (self.chunk_size,)) for name in [*self.fields, "done"]}
        want["digest"] = ((self.n_chunks,), (1,))
        for name, (shape, chunks) in want.items():
            try:
                arr = self.group[name]
                ok = tuple(arr.shape) == shape and tuple(arr.chunks) == chunks
            except Exception as exc:
                ok, why = False, f"cannot be opened ({type(exc).__name__}: {exc})"
            else:
                why = f"has shape {tuple(arr.shape)} and chunks {tuple(arr.chunks)}"
            if not ok:
                raise ValueError(
                    f"`store` {self.path!r} is damaged: its {name!r} array {why}. Delete the "
                    "store to start over."
                )

    def _remove_partial_writes(self) -> None:
        """Temporary chunk files that a killed writer left (Zarr writes ``*.partial``)."""
        for name in glob.glob(
            os.path.join(glob.escape(self.path), "**", "*.partial"), recursive=True
        ):
            os.remove(name)

    # ------------------------------------------------------------------ reading, writing
    def read_verified(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The computed points whose chunks verify, and the values; damaged chunks warned.

        Returns
        -------
        done : numpy.ndarray
            Mask of the points that are computed and verified.
        values : dict of str to numpy.ndarray
            Each field, NaN where not done.
        """
        return verified_chunks(
            self.group,
            self.path,
            self.fields,
            self.chunk_size,
            self.n_points,
            action="computed again",
        )

    def write(self, index: int, start: int, stop: int, values: Mapping[str, np.ndarray]) -> None:
        """Store chunk ``index``: values, then its digest, then the done mark (last)."""
        vals = {name: np.asarray(values[name], dtype=np.float64) for name in self.fields}
        for name in self.fields:
            self.group[name][start:stop] = vals[name]
        self.group["digest"][index] = chunk_digest(index, vals, self.fields)
        self.group["done"][start:stop] = True

    def close(self) -> None:
        """Release the writer's lock (idempotent)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()


def _check_record(path: str, record: Any) -> None:
    """Refuse a record of another format, or one whose digest does not verify."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        fmt = record.get("format") if isinstance(record, dict) else None
        raise ValueError(
            f"`store` {path!r} holds format {fmt!r}, not {FORMAT!r}"
            + (" (written by an older probecore, without checksums)" if fmt else "")
            + ". Delete it to start over, or pass another path."
        )
    keys = {"kind", "identity", "objective", "fixed", "metadata", "digest"}
    if not keys <= set(record) or record.get("digest") != _record_digest(record):
        raise ValueError(
            f"`store` {path!r} is damaged: its record (the 'probecore' attribute in "
            "zarr.json) fails its checksum. Delete the store to start over."
        )


def verified_chunks(
    group: Any, path: str, fields: list[str], chunk_size: int, n_points: int, *, action: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Read the values of every computed chunk whose digest verifies.

    A chunk marked done whose values cannot be read, or whose digest does not match, is
    left out with a :class:`RuntimeWarning` naming the store, the chunk and the arrays.

    Parameters
    ----------
    group : zarr.Group
        The store.
    path : str
        The store's path, for messages.
    fields : list of str
        The value arrays.
    chunk_size, n_points : int
        The run's chunking.
    action : str
        What happens to a damaged chunk (``"computed again"``, ``"not computed"``).

    Returns
    -------
    done, values
        As for :meth:`RunStore.read_verified`.
    """
    done = np.zeros(n_points, dtype=bool)
    values = {name: np.full(n_points, np.nan) for name in fields}

    def whole(name: str, dtype: Any) -> np.ndarray | None:
        try:
            return np.asarray(group[name][...], dtype=dtype)
        except Exception:  # a damaged chunk somewhere: read chunk by chunk instead
            return None

    # The marks before the values: a writer writes values, digest, then `done`, so a chunk
    # that is done when `done` is read has its values written when they are read after it.
    arrays = {"done": whole("done", np.float64)}
    stored_digest = whole("digest", np.uint64)
    arrays.update({name: whole(name, np.float64) for name in fields})
    damaged: list[tuple[int, int, int, str]] = []
    for index in range(-(-n_points // chunk_size)):
        s, e = index * chunk_size, min((index + 1) * chunk_size, n_points)
        chunk: dict[str, np.ndarray] = {}
        problem = None
        for name in ["done", *fields]:
            arr = arrays[name]
            try:
                chunk[name] = (
                    arr[s:e] if arr is not None else np.asarray(group[name][s:e], dtype=np.float64)
                )
            except Exception as exc:
                problem = f"its {name!r} values cannot be read ({type(exc).__name__}: {exc})"
                break
        if problem is None and not np.all(chunk["done"] == 1):
            if np.any(chunk["done"] == 1):
                problem = "it is marked done only in part"
            else:
                continue  # not computed yet
        if problem is None:
            try:
                want = (
                    int(stored_digest[index])
                    if stored_digest is not None
                    else int(np.asarray(group["digest"][index : index + 1])[0])
                )
            except Exception as exc:
                want, problem = 0, f"its digest cannot be read ({type(exc).__name__})"
            if problem is None and want != chunk_digest(index, chunk, fields):
                problem = (
                    "its values do not match its digest"
                    if want
                    else "it is marked done but has no digest"
                )
        if problem is not None:
            damaged.append((index, s, e, problem))
            continue
        done[s:e] = True
        for name in fields:
            values[name][s:e] = chunk[name]
    if damaged:
        shown = "; ".join(f"chunk {i} (points {s}-{e - 1}): {p}" for i, s, e, p in damaged[:3])
        more = f"; and {len(damaged) - 3} more" if len(damaged) > 3 else ""
        warnings.warn(
            f"`store` {path!r}: {len(damaged)} damaged chunk(s), {action}: {shown}{more}.",
            RuntimeWarning,
            stacklevel=caller_stacklevel(),
        )
    return done, values


def open_run(path: str | os.PathLike) -> tuple[Any, dict]:
    """The Zarr group of a stored run and its verified probecore record."""
    zarr = _zarr()
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"no stored run at {path!r} (not a directory).")
    try:
        group = zarr.open_group(path, mode="r")
        record = group.attrs.asdict().get("probecore")
    except Exception as exc:
        raise ValueError(
            f"{path!r} is not a readable probecore run ({type(exc).__name__}: {exc})."
        ) from None
    if record is None:
        raise ValueError(f"{path!r} is not a probecore run (no {FORMAT!r} record).")
    _check_record(path, record)
    return group, record
