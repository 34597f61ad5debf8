"""Stored runs read back as results."""

from __future__ import annotations

import os

import numpy as np

from probecore._probes.rays import ray_stats
from probecore._probes.results import LineResult, PlaneResult, RayResult
from probecore._probes.store import open_run

__all__ = ["load_run"]

# --------------------------------------------------------------------------- reload


def load_run(path: str | os.PathLike) -> LineResult | PlaneResult | RayResult:
    """Read a stored line, plane or ray run back as its result (complete or not).

    Points not computed are NaN in the values and False in ``computed``.
    """
    group, record = open_run(path)
    kind = record["kind"]
    done = np.asarray(group["done"][...], dtype=bool)
    fields = record["identity"]["fields"]
    meta = {**record["metadata"], "store": os.fspath(path)}
    vals = {name: np.where(done, np.asarray(group[name][...]), np.nan) for name in fields}
    names = tuple(f for f in fields if f != "loss")
    if kind == "line":
        t = np.asarray(group["coords"][...])
        return LineResult(
            coords=t,
            losses=vals["loss"],
            computed=done,
            metric_names=names,
            metric_values=np.array([vals[m] for m in names]).reshape(len(names), t.size),
            metadata=meta,
        )
    if kind == "plane":
        a, b = np.asarray(group["alphas"][...]), np.asarray(group["betas"][...])
        shape = (b.size, a.size)
        return PlaneResult(
            alphas=a,
            betas=b,
            losses=vals["loss"].reshape(shape),
            computed=done.reshape(shape),
            metric_names=names,
            metric_values=np.array([vals[m].reshape(shape) for m in names]).reshape(
                len(names), *shape
            ),
            metadata=meta,
        )
    ident = record["identity"]
    eps, loss0 = float(ident["eps"]), float(record["metadata"]["loss0"])
    kappa = np.full(done.size, np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        kappa[done] = (vals["loss_plus"][done] - 2 * loss0 + vals["loss_minus"][done]) / eps**2
    confidence = float(record["metadata"].get("confidence", 0.95))
    dtype = np.dtype(record["metadata"]["objective"]["dtype"])
    return RayResult(
        kappa=kappa,
        losses_plus=vals["loss_plus"],
        losses_minus=vals["loss_minus"],
        computed=done,
        loss0=loss0,
        eps=eps,
        confidence=confidence,
        rounding_error=4 * float(np.finfo(dtype).eps) * abs(loss0) / eps**2,
        n_loss_evals=0,
        seed=ident["entropy"],
        metadata=meta,
        **ray_stats(kappa[done], confidence),
    )
