"""The target of a probe command: ``module:function``, checked, imported and built.

Errors become :class:`CLIError` lines that name the stage, and a framework that is not
installed is named with its ``pip install``. Nothing heavy is imported here.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

__all__ = ["CLIError", "check_target", "install_hint", "load_objective", "one_line"]


class CLIError(Exception):
    """A user error reported as one line (no traceback).

    Parameters
    ----------
    message : str
        The line to print after ``probecore <command>: error:``.
    where : bool
        Whether the error came from the user's code or the framework, so that the
        traceback (``--traceback``) shows where; the one line then says so.
    """

    def __init__(self, message: str, *, where: bool = False) -> None:
        super().__init__(message)
        self.where = where


# --------------------------------------------------------------------------- install hints

# The frameworks a target may need, by the top-level module that fails to import:
# (framework, the module a `pip install` of it is named by). A library built on a
# framework (flax on JAX) is installed by its own name, and needs the framework's backend.
_FRAMEWORK_OF = {
    "torch": "torch",
    "torchvision": "torch",
    "torchaudio": "torch",
    "jax": "jax",
    "jaxlib": "jax",
    "flax": "jax",
    "equinox": "jax",
    "optax": "jax",
    "haiku": "jax",
}
_PIP_NAME = {"jaxlib": "jax", "haiku": "dm-haiku"}
# framework -> (its name, its backend's module, distribution and folder in a checkout)
_BACKENDS = {
    "torch": ("PyTorch", "probecore_torch", "probecore-torch", "./backends/torch"),
    "jax": ("JAX", "probecore_jax", "probecore-jax", "./backends/jax"),
}


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _backend_install(framework: str) -> str:
    _, _, dist, folder = _BACKENDS[framework]
    return f"pip install {dist} (from a probecore checkout: python3 -m pip install {folder})"


def install_hint(exc: ModuleNotFoundError) -> str | None:
    """What to install when a target fails with ``exc``; None if not a framework.

    Parameters
    ----------
    exc : ModuleNotFoundError
        Raised while importing the user's module or running its function.

    Returns
    -------
    str or None
        For a missing framework (torch, jax, ...) or a library built on one (flax,
        optax, ...): the ``pip install`` that brings it, with the probecore backend when
        that is missing too. None for any other module.
    """
    name = (exc.name or "").split(".")[0]
    framework = _FRAMEWORK_OF.get(name)
    if framework is None:
        return None
    label, backend, dist, folder = _BACKENDS[framework]
    has_backend = _installed(backend)
    if name in (framework, "jaxlib"):  # the framework itself
        if has_backend:
            return f"{label} is not installed: pip install {framework}"
        return (
            f"{label} is not installed, nor the {label} backend: pip install {dist}, which "
            f"brings {framework} (from a probecore checkout: python3 -m pip install {folder})"
        )
    text = f"{name} is not installed: pip install {_PIP_NAME.get(name, name)}"
    if not has_backend:
        text += f"; {label} models also need the {label} backend: {_backend_install(framework)}"
    return text


def _failed(what: str, exc: BaseException) -> CLIError:
    """The one-line error for ``exc``, raised by the user's code: ``what Type: message``.

    A missing framework gets what to install instead of the hint to ``--traceback``.
    """
    hint = install_hint(exc) if isinstance(exc, ModuleNotFoundError) else None
    if hint is not None:
        return CLIError(f"{what} {one_line(exc)}; {hint}")
    return CLIError(f"{what} {one_line(exc)}", where=True)


def _framework_of_model(model: Any) -> str | None:
    """The framework of ``model`` (its type's, or its first leaf's in a container)."""
    stack, seen = [model], 0
    while stack and seen < 200:
        obj = stack.pop()
        seen += 1
        framework = _FRAMEWORK_OF.get(type(obj).__module__.split(".")[0])
        if framework is not None:
            return framework
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple):
            stack.extend(obj)
    return None


def _no_backend(exc: Exception, model: Any) -> str:
    """The one-line error for a NoBackendError, naming the backend to install."""
    first = str(exc).strip().splitlines()[0]
    framework = _framework_of_model(model)
    if framework is None or framework in getattr(exc, "backends", ()):
        return first
    label, backend, _, _ = _BACKENDS[framework]
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    start = f"no installed backend recognises a model of type {kind} (a {label} model)"
    if os.environ.get("PROBECORE_DISABLE_PLUGIN_AUTOLOAD"):
        return (
            f"{start}: PROBECORE_DISABLE_PLUGIN_AUTOLOAD is set, so the {label} backend "
            "was not loaded; unset it."
        )
    if _installed(backend):
        return (
            f"{start}: {backend} can be imported but is not registered as a probecore "
            f"plugin; reinstall it: {_backend_install(framework)}."
        )
    return f"{start}: the {label} backend is not installed: {_backend_install(framework)}."


# --------------------------------------------------------------------------- targets


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, with the place of a syntax error."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, SyntaxError) and exc.filename:
        text = f"{exc.msg} ({os.path.basename(exc.filename)}, line {exc.lineno})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cwd_first() -> None:
    """Put the current folder first on ``sys.path``, where ``module:function`` is looked up."""
    cwd = os.getcwd()
    if not sys.path or sys.path[0] != cwd:
        sys.path.insert(0, cwd)


def _is_file(module: str) -> bool:
    return module.endswith(".py") or os.sep in module or (os.altsep or os.sep) in module


def _split(target: str, label: str) -> tuple[str, str]:
    """``(module or file, function)`` of ``target``, or a CLIError naming ``label``."""
    mod_name, _, fn_name = target.rpartition(":")
    if ":" not in target or not mod_name or not fn_name:
        raise CLIError(
            f"{label} {target!r} must be 'module:function' (or 'path/to/file.py:function')."
        )
    if not fn_name.isidentifier():
        raise CLIError(f"{label} {target!r}: {fn_name!r} is not a function name.")
    return mod_name, fn_name


def _not_found(mod_name: str, reason: str) -> CLIError:
    return CLIError(
        f"cannot import module {mod_name!r} ({reason}); run from the folder that "
        "contains it, add it to PYTHONPATH, or give a path to the .py file."
    )


def check_target(target: str, label: str = "target") -> None:
    """Check ``target`` without importing or running any of it.

    Parameters
    ----------
    target : str
        ``module:function`` or ``path/to/file.py:function``.
    label : str
        How the error names it (``target``, ```--end```).

    Raises
    ------
    CLIError
        If it is not of that form, names a file that does not exist, or a top-level
        module that cannot be found (looked up, not imported).
    """
    mod_name, _ = _split(target, label)
    if _is_file(mod_name):
        if not os.path.isfile(mod_name):
            raise CLIError(f"no such file: {mod_name!r} (from {label} {target!r}).")
        return
    top = mod_name.split(".")[0]
    if top in sys.modules:
        return
    _cwd_first()
    try:
        found = importlib.util.find_spec(top) is not None  # a top-level name: not executed
    except (ImportError, ValueError):
        return  # let the import itself say what is wrong
    if not found:
        raise _not_found(mod_name, f"no module named {top!r}")


def _import(target: str, label: str = "target") -> Any:
    mod_name, fn_name = _split(target, label)
    if _is_file(mod_name):
        if not os.path.isfile(mod_name):
            raise CLIError(f"no such file: {mod_name!r} (from {label} {target!r}).")
        spec = importlib.util.spec_from_file_location(
            f"_probecore_target_{abs(hash(mod_name))}", mod_name
        )
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.path.insert(0, os.path.dirname(os.path.abspath(mod_name)))
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as exc:
            raise _failed(f"importing {mod_name!r} failed:", exc) from exc
    else:
        _cwd_first()
        try:
            module = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name != mod_name.split(".")[0] and exc.name != mod_name:
                raise _failed(f"importing {mod_name!r} failed:", exc) from exc
            raise _not_found(mod_name, str(exc)) from None
        except Exception as exc:
            raise _failed(f"importing {mod_name!r} failed:", exc) from exc
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        raise CLIError(f"module {mod_name!r} has no function {fn_name!r}.")
    return fn


def load_objective(target: str, label: str = "target") -> Any:
    """The Objective that ``module:function`` describes.

    Parameters
    ----------
    target : str
        ``module:function`` or ``path/to/file.py:function``.
    label : str
        How errors about the target name it.

    Returns
    -------
    Objective

    Raises
    ------
    CLIError
        If the target cannot be imported, raises, or returns something that is no model.
    """
    import probecore as pc

    fn = _import(target, label)
    try:
        got = fn()
    except Exception as exc:
        raise _failed(f"{target} raised", exc) from exc
    if hasattr(got, "loss_and_grad") and hasattr(got, "dim"):
        return got
    options: dict = {}
    if isinstance(got, dict):
        missing = [k for k in ("model", "loss_fn", "data") if k not in got]
        if missing:
            raise CLIError(
                f"{target} returned a dict without {missing}; it must have 'model', "
                "'loss_fn' and 'data' (and optionally 'options')."
            )
        options = dict(got.get("options") or {})
        got = (got["model"], got["loss_fn"], got["data"])
    if not isinstance(got, tuple) or len(got) != 3:
        raise CLIError(
            f"{target} returned {type(got).__name__}; it must return (model, loss_fn, data), "
            "a dict with those keys, or a probecore Objective."
        )
    try:
        return pc.objective(*got, **options)
    except pc.NoBackendError as exc:
        raise CLIError(_no_backend(exc, got[0])) from None
    except (TypeError, ValueError):
        raise
    except Exception as exc:  # the framework, evaluating the model for the first time
        raise _failed(f"building the objective of {target} failed:", exc) from exc
