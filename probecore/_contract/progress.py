"""Progress bars (tqdm) for the long calls: shown on a terminal, or when asked."""

from __future__ import annotations

from typing import Any

from probecore._contract.validation import check_bool

__all__ = ["progress_bar"]


def progress_bar(
    total: int | None, done: int, desc: str, progress: bool | None, *, unit: str = "chunk"
) -> Any:
    """A tqdm bar over ``total`` units (None: unknown), ``done`` of them already done.

    Parameters
    ----------
    total : int or None
        Units of work expected (None when only a budget's order is known: the bar counts).
    done : int
        Units already done (chunks read back from a store).
    desc : str
        The bar's label (the function's name).
    progress : bool or None
        True always shows it, False never, None only when stderr is a terminal.
    unit : str
        What a unit is (``"chunk"``, ``"HVP"``, ``"epoch"``).

    Returns
    -------
    tqdm.tqdm
    """
    from tqdm.auto import tqdm

    # disable=None: tqdm turns itself off when stderr is not a terminal
    disable = None if progress is None else not check_bool("progress", progress)
    return tqdm(total=total, initial=done, desc=desc, unit=unit, disable=disable, leave=False)
