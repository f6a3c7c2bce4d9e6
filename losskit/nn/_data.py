"""Checks of what ``fit``, ``evaluate``, ``predict``, ``set_weights`` and the model loader accept as
numbers: real numbers only (bool, integer or floating dtypes). Complex values are refused rather than
cut to their real part, arrays of Python objects (``None`` among numbers, mixed types) rather than
turned into NaN, and strings rather than parsed, each with a ``TypeError`` naming the argument.

>>> as_numbers("x", [[1, 2], [3, 4]]).dtype.kind
'i'
>>> as_numbers("x", [1.0, None])
Traceback (most recent call last):
...
TypeError: x is an array of Python objects (dtype object, e.g. None at index 1); convert it to
    numbers first, e.g. np.asarray(x, dtype=float), after filling in missing values
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _first_non_number(a: np.ndarray) -> str:
    for index, item in enumerate(a.reshape(-1)[:100_000]):
        if isinstance(item, bool | int | float | np.bool_ | np.integer | np.floating):
            continue
        where = np.unravel_index(index, a.shape) if a.ndim > 1 else (index,)
        shown = repr(item) if len(repr(item)) <= 40 else repr(item)[:37] + "..."
        return f", e.g. {shown} at index {', '.join(map(str, where))}"
    return ""


def check_numbers(name: str, a: np.ndarray) -> np.ndarray:
    """``a`` itself when its dtype holds real numbers; else a ``TypeError`` naming ``name``."""
    kind = a.dtype.kind
    if kind in "biuf":
        return a
    if kind == "c":
        raise TypeError(f"{name} has complex dtype {a.dtype}; losskit.nn trains on real numbers and does "
                        f"not drop the imaginary part silently: pass {name}.real (or np.abs({name})) if that "
                        "is what you mean")
    if kind == "O":
        raise TypeError(f"{name} is an array of Python objects (dtype object{_first_non_number(a)}); "
                        f"convert it to numbers first, e.g. np.asarray({name}, dtype=float), after filling "
                        "in missing values")
    if kind in "US":
        raise TypeError(f"{name} holds strings (dtype {a.dtype}); losskit.nn does not parse numbers from "
                        f"text: convert them first, e.g. {name}.astype(float)")
    raise TypeError(f"{name} must hold real numbers (bool, integer or float); found dtype {a.dtype}")


def as_numbers(name: str, value: Any, dtype: Any = None) -> np.ndarray:
    """``value`` as a NumPy array of real numbers (cast to ``dtype`` if given), checked as above.

    Masked arrays are refused when any element is masked (NumPy would drop the mask); ragged nested
    lists get a ``ValueError`` naming ``name``.
    """
    if isinstance(value, np.ma.MaskedArray) and np.ma.getmask(value) is not np.ma.nomask and \
            np.ma.getmaskarray(value).any():
        raise TypeError(f"{name} is a masked array with masked elements; losskit.nn does not honour masks: "
                        f"fill them ({name}.filled(...)) or drop those samples")
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value if dtype is None or value.dtype == dtype else value.astype(dtype)
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name} cannot be read as an array ({error})") from None
    check_numbers(name, a)
    return a if dtype is None or a.dtype == dtype else a.astype(dtype)
