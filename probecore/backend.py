"""The contract for backend authors: everything a backend needs, and nothing private.

A backend turns a framework's model into an :class:`Objective` -- a scalar loss of one
flat parameter vector with exact gradients and Hessian-vector products -- and registers a
hook implementation in the entry-point group ``probecore`` (see ``docs/plugins.md``)::

    from probecore.backend import AbstractObjective, Layout, check_vector, hookimpl

    class MyObjective(AbstractObjective):
        ...  # dim, dtype, layout, x0, loss, grad, hvp

    @hookimpl
    def probecore_make_objective(model, loss_fn, data, options):
        return MyObjective(model, loss_fn, data, **options) if is_mine(model) else None

The built-in PyTorch and JAX backends import from this module and from the top-level
``probecore`` API only; a test keeps it so. The checks raise ``TypeError`` for a value of
the wrong kind and ``ValueError`` for a wrong value, with messages that name the
parameter, the constraint and the value received.

Contents
--------
Objective, AbstractObjective
    The protocol every algorithm consumes, and a base class that completes an objective
    from ``loss``, ``grad`` and ``hvp``.
Layout, Block, ROLES, override_layout, uncovered_by_override
    Named blocks of the flat vector, with their role and filter axis; ``override_layout``
    applies a user's ``layout=`` option (roles and filter axes by block name or pattern),
    ``uncovered_by_override`` tells which blocks it leaves unmentioned.
hookimpl, ENTRY_POINT_GROUP
    The marker for hook implementations and the entry-point group they register in.
check_int, check_float, check_bool, check_option, check_dtype, check_vector, check_matrix
    Argument checks with uniform messages.
all_finite, FLOAT_DTYPES, as_rng
    A memory-light finiteness test, the supported dtypes, and ``rng`` normalisation.
require_objective
    The structural check of an objective argument that the algorithms use.
check_span, span_point, span_points, SPAN_ROWS_NUMBERS
    The argument checks of ``losses_in_span``, and a point ``origin + c @ basis`` formed
    as ``AbstractObjective.losses_in_span`` forms it (bit for bit, one vector of memory),
    for a backend's own ``losses_in_span``; ``span_points`` forms a block of such points
    at once (the same bits, fewer array operations per point), at most
    ``SPAN_ROWS_NUMBERS`` numbers a block keeping its memory independent of the chunk.
digest, callable_name, stable_repr
    Content digests, function names and address-free reprs for an objective's optional
    ``fingerprint()``: what a run store records to refuse resuming with other data,
    another loss function or another model (``docs/plugins.md``).
record_subset
    What an objective's ``subset`` calls on the objective it returns, so that results
    record which examples of the full data set they were measured on.
caller_stacklevel
    The ``stacklevel`` that points a backend's warning at the user's line, however deep
    in probecore, its backends and pluggy the warning is raised.
"""

from __future__ import annotations

from probecore._contract.errors import NoBackendError, caller_stacklevel
from probecore._contract.fingerprint import callable_name, digest, record_subset, stable_repr
from probecore._contract.layout import ROLES, Block, Layout, override_layout, uncovered_by_override
from probecore._contract.objective import (
    SPAN_ROWS_NUMBERS,
    AbstractObjective,
    Objective,
    check_span,
    require_objective,
    span_point,
    span_points,
)
from probecore._contract.validation import (
    FLOAT_DTYPES,
    all_finite,
    as_rng,
    check_bool,
    check_dtype,
    check_float,
    check_int,
    check_matrix,
    check_option,
    check_vector,
)
from probecore.plugins import ENTRY_POINT_GROUP, hookimpl

__all__ = [
    "ENTRY_POINT_GROUP",
    "FLOAT_DTYPES",
    "ROLES",
    "SPAN_ROWS_NUMBERS",
    "AbstractObjective",
    "Block",
    "Layout",
    "override_layout",
    "uncovered_by_override",
    "NoBackendError",
    "Objective",
    "all_finite",
    "as_rng",
    "callable_name",
    "caller_stacklevel",
    "check_bool",
    "check_dtype",
    "check_float",
    "check_int",
    "check_matrix",
    "check_option",
    "check_span",
    "check_vector",
    "digest",
    "hookimpl",
    "record_subset",
    "require_objective",
    "span_point",
    "span_points",
    "stable_repr",
]
