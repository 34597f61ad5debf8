"""probecore: measure the geometry of neural-network loss landscapes, for any framework.

The core works on an :class:`Objective` -- a scalar loss of one flat parameter vector with
exact gradients and Hessian-vector products -- and never imports a deep-learning framework.
Backends (``probecore-torch``, ``probecore-jax`` or your own) turn models into Objectives
through :func:`objective`.

The public names load on first use: ``import probecore`` costs milliseconds (the command
line's ``--help`` and plugin discovery stay fast), and the first ``probecore.<name>``
imports them all (:mod:`probecore._api`, numpy and scipy).
"""

from typing import TYPE_CHECKING, Any

from probecore._version import __version__

if TYPE_CHECKING:  # static analysers and IDEs see every public name
    from probecore._api import *  # noqa: F403

__all__ = [
    # The contract
    "ROLES",
    "AbstractObjective",
    "Block",
    "Layout",
    "Objective",
    # Backends
    "backend_names",
    "hookimpl",
    "objective",
    "sample_examples",
    # Operators
    "HessianOperator",
    "as_operator",
    # Spectrum
    "eigenvalues",
    "lanczos",
    "power_iteration",
    # Trace and density
    "hutchinson",
    "hutchpp",
    "spectral_density",
    # Directions and landscape
    "Directions",
    "random_directions",
    "eigen_directions",
    "filter_normalize",
    "orthogonalize",
    "line",
    "interpolate",
    "plane",
    "rays",
    "ray_directions",
    "default_ray_eps",
    "load_run",
    "LineResult",
    "PlaneResult",
    "RayResult",
    # Mode connectivity
    "Curve",
    "CurveFit",
    "PathResult",
    "curve_loss_and_grad",
    "evaluate_path",
    "fit_curve",
    "linear_curve",
    # Sharpness
    "SharpnessResult",
    "epsilon_sharpness",
    # Effective dimension and trajectories
    "EffectiveDimension",
    "GradientSketch",
    "TrajectoryPCA",
    "effective_dimension",
    "trajectory_directions",
    # Distributed
    "ShardedObjective",
    "ShardLostError",
    # Results
    "EigResult",
    "PowerIterationResult",
    "SpectralDensity",
    "TraceResult",
    "load",
    "save",
    # Errors
    "ConvergenceError",
    "InvalidResultError",
    "NoBackendError",
    "ObjectiveCheckError",
    # Submodules
    "analytic",
    "plot",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import the public API on first use of any of its names (PEP 562)."""
    if name in __all__:
        from probecore import _api

        module = globals()
        for public in __all__:
            module.setdefault(public, getattr(_api, public))
        return module[name]
    if not name.startswith("__"):  # a submodule not imported yet (plugins, testing, ...)
        import importlib

        try:
            return importlib.import_module(f"probecore.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"probecore.{name}":
                raise
    raise AttributeError(f"module 'probecore' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, loaded or not."""
    return sorted(set(globals()) | set(__all__))
