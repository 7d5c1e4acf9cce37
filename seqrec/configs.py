"""Settings checked before anything is built or run: the value types of overrides, and the range of every field.

Types. A bad override (``epochs=2.5``, ``train_on=1``, ``dropout="x"``) would otherwise be stored as given and
fail far from its cause, or not at all. A field annotated ``int``, ``float``, ``bool`` or ``str`` takes only a
value of that type, with one widening: an int is a float. A bool is only a bool (``True`` for an int field is
refused, though Python's ``bool`` is an ``int``).

Ranges. A value of the right type can still be meaningless (``hidden=0``, ``k=-5``, ``dropout=1.5``): it would
train a "successful" run of recall 0, or fail with a traceback after the data was loaded. A config dataclass
declares the values each field allows next to the field, as data::

    hidden: int = ranged(64, at_least(1))
    dropout: float = ranged(0.2, share())
    loss: str = ranged("full", one_of("full", "sampled"))

and its ``__post_init__`` calls ``check_ranges(owner, self)`` (plus any check relating two fields, such as
``heads`` dividing ``hidden``), so that every way of building it (presets, overrides, tuning trials, code) is
checked before any data is read or any MLflow run is started. A value out of its range is a ``RangeError`` (a
``ValueError``) that names the owner, the field, the value and the range: ``TrainConfig: epochs=-1 must be >= 1``.

Names. One concept has one name in every model (the glossary in ``docs/models.md``); a config class may list the
names a field had before (``aliases``, old name -> field) and old values of a field (``value_aliases``, field ->
old value -> value), which ``resolve_aliases`` accepts with a ``FutureWarning`` until they are removed.
"""

from __future__ import annotations

import numbers
import typing
import warnings
from dataclasses import dataclass, field, fields
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


class RangeError(ValueError):
    """A setting outside its range, or at odds with another setting: ``"{owner}: {problem}"``."""

    def __init__(self, owner: str, problem: str) -> None:
        super().__init__(f"{owner}: {problem}")
        self.owner, self.problem = owner, problem

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return RangeError, (self.owner, self.problem)


@dataclass(frozen=True)
class Range:
    """The values a setting allows: a number from ``low`` to ``high`` (``None``: no bound; an end is included
    unless ``*_open``), or one of ``choices``. NaN is in no range."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()

    def allows(self, value: Any) -> bool:
        if self.choices:
            return any(value == c and type(value) is type(c) for c in self.choices)
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return False
        value = float(value)
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.choices:
            return f"one of {self.choices}"
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


def at_least(low: float) -> Range:
    """``value >= low`` (counts: ``at_least(1)``; weights and switches where 0 means off: ``at_least(0)``)."""
    return Range(low=low)


def above(low: float) -> Range:
    """``value > low`` (a learning rate: ``above(0)``)."""
    return Range(low=low, low_open=True)


def in_range(low: float, high: float, high_open: bool = False) -> Range:
    """``low <= value <= high`` (``< high`` if ``high_open``)."""
    return Range(low=low, high=high, high_open=high_open)


def share() -> Range:
    """``0 <= value < 1``: a dropout, smoothing, masking or averaging rate."""
    return in_range(0, 1, high_open=True)


def one_of(*choices: Any) -> Range:
    """One of the given values (a choice of text: an optimizer, a loss, a schedule)."""
    return Range(choices=choices)


def ranged(default: Any, allowed: Range) -> Any:
    """A dataclass field with its ``default`` and the ``Range`` of values it allows (``check_ranges`` reads it)."""
    return field(default=default, metadata={"range": allowed})


def check_range(owner: str, name: str, value: Any, allowed: Range) -> None:
    """Refuse a ``value`` of setting ``name`` outside ``allowed``, naming ``owner``, the field, the value and the
    range."""
    if not allowed.allows(value):
        verb = "is not" if allowed.choices else "must be"
        raise RangeError(owner, f"{name}={value!r} {verb} {allowed}")


def check_ranges(owner: str, config: Any) -> None:
    """Check every field of the dataclass instance ``config`` that declares a range (``ranged``), in field order."""
    for f in fields(config):
        if "range" in f.metadata:
            check_range(owner, f.name, getattr(config, f.name), f.metadata["range"])


def resolve_aliases(owner: str, config_class: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the old names and old values that ``config_class`` still accepts replaced by the current
    ones, each with a ``FutureWarning`` naming both; an old name given together with its new one is refused."""
    aliases: dict[str, str] = getattr(config_class, "aliases", {})
    value_aliases: dict[str, dict[Any, Any]] = getattr(config_class, "value_aliases", {})
    resolved = dict(values)
    for old, new in aliases.items():
        if old not in resolved:
            continue
        if new in resolved:
            raise ValueError(f"{owner}: {old} and {new} are the same setting ({old} is its old name); give {new} only")
        resolved[new] = resolved.pop(old)
        warnings.warn(f"{owner}: {old} is now called {new}; the old name will stop working in a later release",
                      FutureWarning, stacklevel=3)
    for name, renamed in value_aliases.items():
        value = resolved.get(name)
        if isinstance(value, str) and value in renamed:
            resolved[name] = renamed[value]
            warnings.warn(f"{owner}: {name}={value!r} is now {name}={renamed[value]!r}; the old value will stop "
                          f"working in a later release", FutureWarning, stacklevel=3)
    return resolved
