"""What defines a study run: its stages, the settings of a full and a quick run, the pairs.

Every field of :class:`Settings` is recorded in ``results.json``. Importing this module is
cheap (the ``probecore study`` parser reads :data:`STAGES` from it).
"""

from __future__ import annotations

from dataclasses import dataclass

STAGES = ("spectrum", "batch", "architecture", "connectivity")
KINDS = ("plain", "residual", "residual-norm")


@dataclass(frozen=True)
class Settings:
    """Everything that defines a study run (recorded in ``results.json``)."""

    seeds_batch: tuple[int, ...] = (0, 1, 2, 3, 4)
    seeds_arch: tuple[int, ...] = (0, 1, 2, 3, 4)
    # batch stage: MLP 64-64-10, plain SGD, the same learning rate for both batch sizes
    hidden: int = 64
    batch_sizes: tuple[int, int] = (32, 512)
    batch_lr: float = 0.5
    batch_target: float = 0.02
    batch_max_epochs: int = 3000
    # architecture stage: stem + 4 blocks of two 64×64 layers + head, He initialization
    width: int = 64
    blocks: int = 4
    arch_lr: float = 0.02
    arch_batch: int = 64
    arch_target: float = 0.02
    arch_max_epochs: int = 150
    grad_window: int = 200
    plane_points: int = 25
    n_rays: int = 200
    # measurements
    trace_matvecs: int = 99
    density_probes: int = 8
    density_steps: int = 60
    sharpness_eps: float = 1e-3
    sharpness_maxiter: int = 1000
    bezier_epochs: int = 30
    path_points: int = 31
    # spectrum stage
    k: int = 5
    l2: float = 1e-3


FULL = Settings()
QUICK = Settings(
    seeds_batch=(0, 1),
    seeds_arch=(0, 1),
    grad_window=60,
    plane_points=9,
    n_rays=30,
    trace_matvecs=30,
    density_probes=3,
    density_steps=30,
    sharpness_maxiter=20,
    bezier_epochs=5,
    path_points=11,
    k=3,
)


def pairs(S: Settings, deep: bool) -> list[tuple[str, int, int]]:
    """(network, seed, seed) pairs to connect.

    Every pair of small-batch MLPs, then (``deep``) every pair of each deep network.
    """

    def every(seeds: list[int]) -> list[tuple[int, int]]:
        return [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1 :]]

    out = [("mlp", a, b) for a, b in every(S.seeds_batch)]
    if deep:
        out += [(kind, a, b) for kind in KINDS for a, b in every(S.seeds_arch)]
    return out
