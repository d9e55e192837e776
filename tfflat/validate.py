"""Checks of numeric inputs at the library's edge: one :class:`~tfflat.errors.UserError` line each, naming
the Python parameter in backticks (the CLI turns `learning_rate` into ``--lr``).

    number("learning_rate", lr, above=0)      # finite and > 0
    integer("batch_size", bs, least=1)        # an int ≥ 1 (no bool, no 3.5)
    seed("seed", s)                            # 0 … 2³² − 1 (what NumPy and Keras accept)
"""

from __future__ import annotations

import math
import numbers

from tfflat.errors import UserError

MAX_SEED = 2 ** 32 - 1


def _q(name: str) -> str:
    """`name` in backticks; for ``"opt_args momentum"`` only the parameter: `opt_args` momentum."""
    head, _, rest = name.partition(" ")
    return f"`{head}`" + (f" {rest}" if rest else "")


def number(name: str, value, *, above=None, least=None, below=None, most=None, none: bool = False):
    """``value`` as a float, finite and within the given bounds (``above``/``below`` strict,
    ``least``/``most`` inclusive); ``None`` passes when ``none``."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{_q(name)} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise UserError(f"{_q(name)} must be a finite number, got {v}")
    for bound, ok, text in ((above, lambda b: v > b, ">"), (least, lambda b: v >= b, "≥"),
                            (below, lambda b: v < b, "<"), (most, lambda b: v <= b, "≤")):
        if bound is not None and not ok(bound):
            raise UserError(f"{_q(name)} must be {text} {bound:g}, got {v:g}")
    return v


def integer(name: str, value, *, least=None, most=None, none: bool = False):
    """``value`` as an int within [``least``, ``most``] (integral floats such as 5.0 pass; 5.5 does not)."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{_q(name)} must be an integer, got {value!r}")
    if not isinstance(value, numbers.Integral):
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise UserError(f"{_q(name)} must be an integer, got {value!r}")
    v = int(value)
    if least is not None and v < least:
        raise UserError(f"{_q(name)} must be ≥ {least}, got {v}")
    if most is not None and v > most:
        raise UserError(f"{_q(name)} must be ≤ {most}, got {v}")
    return v


def seed(name: str, value, none: bool = False):
    """A random seed: an integer in 0 … 2³² − 1."""
    return integer(name, value, least=0, most=MAX_SEED, none=none)
