"""Checks of public-API arguments that give one consistent rule everywhere.

Flags must be real booleans (``"no"`` is not ``False``); counts accept any integer type,
numpy's included (``np.int64(2)`` is 2), but not ``bool``.
"""

from __future__ import annotations

import numbers

import numpy as np


def check_flag(name: str, value: object) -> bool:
    """``value`` as a bool; ``TypeError`` unless it is ``True``/``False`` (or a numpy bool)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def is_integer(value: object) -> bool:
    """True for Python and numpy integers, False for bools and everything else."""
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1 (any integer type); ``ValueError`` otherwise."""
    if not is_integer(value) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
