"""Overrides checked against the field types of a config dataclass, before anything is built or run.

A bad override (``epochs=2.5``, ``train_on=1``, ``dropout="x"``) would otherwise be stored as given and
fail far from its cause, or not at all. A field annotated ``int``, ``float``, ``bool`` or ``str`` takes
only a value of that type, with one widening: an int is a float. A bool is only a bool (``True`` for an
int field is refused, though Python's ``bool`` is an ``int``).
"""

from __future__ import annotations

import numbers
import typing
from dataclasses import fields
from functools import cache
from typing import Any

# field type -> (what a value must be, how the error names it)
_ACCEPTS: dict[type, tuple[type, str]] = {
    bool: (bool, "a bool (true or false)"),
    int: (numbers.Integral, "an int"),
    float: (numbers.Real, "a float (or an int)"),
    str: (str, "a str"),
}


def parse_value(text: str) -> int | float | bool | str:
    """An override value as typed on a command line: int, float, bool or text, in that order of preference."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def check_types(owner: str, config_class: type, values: dict[str, Any]) -> None:
    """Refuse a value of ``values`` that its field of ``config_class`` does not take, naming ``owner``
    (the model or the settings), the field, the value and the expected type.

    Names that are not fields are left to the caller (it names the unknown ones).
    """
    types = _field_types(config_class)
    for name, value in values.items():
        if name not in types:
            continue
        accepted, expected = _ACCEPTS[types[name]]
        if isinstance(value, accepted) and (types[name] is bool or not isinstance(value, bool)):
            continue
        raise ValueError(f"{owner}: {name}={value!r} ({type(value).__name__}) is not {expected}")


@cache
def _field_types(config_class: type) -> dict[str, type]:
    """Each field of the dataclass ``config_class`` and its type (``int``, ``float``, ``bool`` or ``str``)."""
    hints = typing.get_type_hints(config_class)
    types = {f.name: hints[f.name] for f in fields(config_class)}
    unsupported = {name: t for name, t in types.items() if t not in _ACCEPTS}
    if unsupported:
        raise TypeError(f"{config_class.__name__}: fields of unsupported types {unsupported} "
                        f"(a config takes {', '.join(t.__name__ for t in _ACCEPTS)})")
    return types
