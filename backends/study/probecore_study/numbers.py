"""How the report writes a number: three significant figures, units, and nothing else.

Every number in ``report.md`` goes through :func:`fmt`, so that a table never shows 0.932
next to 0.7794, and the test that finds every table cell in ``results.json`` can format
the stored values the same way and compare strings.

* integers (counts, seeds, parameters) in full, with thousands separators: ``38,090``;
* other numbers to three significant figures, in positional notation between 0.001 and
  100,000 (``0.0195``, ``1.96``, ``1,230``), else as ``3.38×10⁻⁶``;
* a percentage is the stored fraction times 100, formatted the same way.
"""

from __future__ import annotations

import math
from typing import Any

SIG = 3
_SUP = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def fmt(x: Any, unit: str = "") -> str:
    """``x`` as the report writes it (see the module's rules), followed by ``unit``."""
    if isinstance(x, bool):
        raise TypeError(f"`x` must be a number, not a bool; got {x!r}.")
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, int) or (hasattr(x, "dtype") and x.dtype.kind in "iu"):
        return f"{int(x):,}{unit}"
    x = float(x)
    if math.isinf(x):
        return ("∞" if x > 0 else "−∞") + unit
    if x == 0:
        return "0" + unit
    r = float(f"{x:.{SIG}g}")  # rounded first: 9.996 becomes 10.0, not 9.9960
    exp = math.floor(math.log10(abs(r)))
    if -3 <= exp < 5:
        digits = SIG - 1 - exp
        text = f"{r:,.{digits}f}" if digits > 0 else f"{r:,.0f}"
    else:
        mantissa = r / 10**exp
        text = f"{mantissa:.{SIG - 1}f}×10{str(exp).translate(_SUP)}"
    return text.replace("-", "−") + unit


def pct(fraction: Any, unit: str = "%") -> str:
    """A stored fraction as a percentage (``0.58`` → ``58.0%``)."""
    return fmt(100 * float(fraction), unit)


def parse(token: str) -> float:
    """The number a :func:`fmt` string stands for (used by the tests)."""
    t = token.replace("−", "-").replace(",", "")
    if "×10" in t:
        mantissa, exp = t.split("×10")
        back = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")
        return float(mantissa) * 10 ** int(exp.translate(back))
    return float(t)
