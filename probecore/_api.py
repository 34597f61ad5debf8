"""Every public name of probecore, imported (what ``probecore.<name>`` loads on first use).

``import probecore`` itself imports only the version and these names' list
(``probecore.__all__``), so that ``probecore --help`` and the plugin hooks start in
milliseconds; the first attribute access (``pc.plane``) imports this module, which pulls
in numpy, scipy and every algorithm. Every result type and stored-run reader registers
itself here, so :func:`probecore.load` and :func:`probecore.load_run` know them all.
"""
# ruff: noqa: F401  (every import is a public name, listed in probecore.__all__)

import probecore.analytic as analytic
import probecore.plot as plot  # imports matplotlib only when called
from probecore._cluster import ShardedObjective, ShardLostError
from probecore._contract.errors import (
    ConvergenceError,
    InvalidResultError,
    NoBackendError,
    ObjectiveCheckError,
)
from probecore._contract.fingerprint import sample_examples
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
from probecore._linalg.eigen import eigenvalues, lanczos
from probecore._linalg.operators import HessianOperator, as_operator
from probecore._linalg.power import power_iteration
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
