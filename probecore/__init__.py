"""probecore: measure the geometry of neural-network loss landscapes, for any framework.

The core works on an :class:`Objective` -- a scalar loss of one flat parameter vector with
exact gradients and Hessian-vector products -- and never imports a deep-learning framework.
Backends (``probecore-torch``, ``probecore-jax`` or your own) turn models into Objectives
through :func:`objective`.
"""

from probecore import analytic, plot  # plot imports matplotlib only when called
from probecore._contract.errors import ConvergenceError, NoBackendError, ObjectiveCheckError
from probecore._contract.layout import ROLES, Block, Layout
from probecore._contract.objective import AbstractObjective, Objective
from probecore._contract.results import load, save
from probecore._geometry.curve_fit import CurveFit, curve_loss_and_grad, fit_curve
from probecore._geometry.curves import Curve, linear_curve
from probecore._geometry.paths import PathResult, evaluate_path
from probecore._geometry.sharpness import SharpnessResult, epsilon_sharpness
from probecore._geometry.subspace import EffectiveDimension, GradientSketch, effective_dimension
from probecore._geometry.trajectory import TrajectoryPCA, trajectory_directions
from probecore._linalg.density import spectral_density
from probecore._linalg.eigen import eigenvalues, lanczos, power_iteration
from probecore._linalg.operators import HessianOperator, as_operator
from probecore._linalg.results import EigResult, PowerIterationResult, SpectralDensity, TraceResult
from probecore._linalg.trace import hutchinson, hutchpp
from probecore._probes.directions import (
    Directions,
    eigen_directions,
    filter_normalize,
    orthogonalize,
    random_directions,
)
from probecore._probes.grids import interpolate, line, plane
from probecore._probes.rays import default_ray_eps, ray_directions, rays
from probecore._probes.results import LineResult, PlaneResult, RayResult
from probecore._probes.runs import load_run
from probecore._version import __version__
from probecore.plugins import backend_names, hookimpl, objective

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
    # Results
    "EigResult",
    "PowerIterationResult",
    "SpectralDensity",
    "TraceResult",
    "load",
    "save",
    # Errors
    "ConvergenceError",
    "NoBackendError",
    "ObjectiveCheckError",
    # Submodules
    "analytic",
    "plot",
    "__version__",
]
