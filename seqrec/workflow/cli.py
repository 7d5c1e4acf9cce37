"""Argument helpers shared by the entry-point scripts under ``steps/``."""

from __future__ import annotations


def int_arg(value: str) -> int:
    """Parse an integer that MLflow may pass as a float string (``"64"`` or ``"64.0"``)."""
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"expected an integer, got {value!r}")
    return int(number)


def bool_arg(value: str) -> bool:
    """Parse ``true/false/1/0/yes/no``."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")
