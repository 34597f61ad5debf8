"""probecore: measure the geometry of neural-network loss landscapes, for any framework.

The core works on an :class:`Objective` -- a scalar loss of one flat parameter vector with
exact gradients and Hessian-vector products -- and never imports a deep-learning framework.
Backends (``probecore-torch``, ``probecore-jax`` or your own) turn models into Objectives
through :func:`objective`.
"""

from probecore import analytic, plot  # plot imports matplotlib only when called
from probecore._connectivity import (
    Curve,
    CurveFit,
    PathResult,
    curve_loss_and_grad,
    evaluate_path,
    fit_curve,
    linear_curve,
)
from probecore._directions import (
    Directions,
    eigen_directions,
    filter_normalize,
    orthogonalize,
    random_directions,
)
from probecore._errors import ConvergenceError, NoBackendError, ObjectiveCheckError
from probecore._estimators import hutchinson, hutchpp, spectral_density
from probecore._landscape import (
    LineResult,
    PlaneResult,
    RayResult,
    default_ray_eps,
    interpolate,
    line,
    load_run,
    plane,
    ray_directions,
    rays,
)
from probecore._objective import ROLES, AbstractObjective, Block, Layout, Objective
from probecore._operators import HessianOperator, as_operator
from probecore._results import (
    EigResult,
    PowerIterationResult,
    SpectralDensity,
    TraceResult,
    load,
    save,
)
from probecore._sharpness import SharpnessResult, epsilon_sharpness
from probecore._spectrum import eigenvalues, lanczos, power_iteration
from probecore._subspace import (
    EffectiveDimension,
    GradientSketch,
    TrajectoryPCA,
    effective_dimension,
    trajectory_directions,
)
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
