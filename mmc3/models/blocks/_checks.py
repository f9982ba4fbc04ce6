"""Argument checks shared by the blocks, with one message format.

``Owner: name must be <what>, got <value>``: a wrong type is reported with
the type's name before the value (``got float 4.0``), a wrong value with the
value alone (``got 0``). Every check returns the accepted value.
"""
import warnings
from typing import Sequence, Tuple


def _type_error(owner: str, name: str, what: str, value: object):
    return TypeError(f'{owner}: {name} must be {what}, got '
                     f'{type(value).__name__} {value!r}')


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(owner: str, name: str, value: object, minimum: int = 1) -> int:
    """An ``int`` (not ``bool``) ``>= minimum``."""
    what = 'a positive int' if minimum == 1 else f'an int >= {minimum}'
    if not _is_int(value):
        raise _type_error(owner, name, what, value)
    if value < minimum:
        raise ValueError(f'{owner}: {name} must be {what}, got {value!r}')
    return value


def check_bool(owner: str, name: str, value: object) -> bool:
    """A ``bool`` (``0``/``1`` are refused: a typo more often than not)."""
    if not isinstance(value, bool):
        raise _type_error(owner, name, 'a bool', value)
    return value


def check_float(owner: str, name: str, value: object, low: float,
                high: float, low_open: bool = False,
                high_open: bool = False) -> float:
    """A real number (not ``bool``) in the interval from ``low`` to
    ``high``, each end open or closed; returned as ``float``."""
    what = (f'a float in {"(" if low_open else "["}{low}, {high}'
            f'{")" if high_open else "]"}')
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(owner, name, what, value)
    value = float(value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        raise ValueError(f'{owner}: {name} must be {what}, got {value!r}')
    return value


def check_choice(owner: str, name: str, value: object,
                 choices: Sequence[object]) -> object:
    """One of ``choices`` (compared by equality, bools kept apart from
    ints)."""
    if isinstance(value, bool) or value not in choices or not any(
            type(value) is type(c) for c in choices if c == value):
        raise ValueError(f'{owner}: {name} must be one of '
                         f'{", ".join(map(repr, choices))}, got {value!r}')
    return value


def check_size(owner: str, name: str, value: object) -> Tuple[int, int]:
    """A map size: a positive int ``s`` (meaning ``(s, s)``) or a pair
    ``(h, w)`` of positive ints; returned as a tuple."""
    what = 'a positive int or (h, w)'
    if _is_int(value):
        pair = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            _is_int(s) for s in value):
        pair = (value[0], value[1])
    else:
        raise _type_error(owner, name, what, value)
    if min(pair) < 1:
        raise ValueError(f'{owner}: {name} must be {what}, got {value!r}')
    return pair


def renamed(owner: str, new: str, new_value: object, new_default: object,
            old: str, old_value: object) -> object:
    """Resolve an argument that was renamed: ``old=value`` still works, with
    a ``DeprecationWarning``; both spellings with different values are an
    error. Returns the value to use."""
    if old_value is None:
        return new_value
    warnings.warn(f'{owner}: {old} is now called {new}; write '
                  f'{new}={old_value!r}', DeprecationWarning, stacklevel=3)
    if new_value != new_default and new_value != old_value:
        raise ValueError(f'{owner}: got {new}={new_value!r} and its former '
                         f'name {old}={old_value!r}; give {new} only')
    return old_value
