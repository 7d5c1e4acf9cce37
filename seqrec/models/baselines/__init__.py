"""Classic session-based baselines, each scored by the shared evaluator."""

from __future__ import annotations

from seqrec.configs import check_types
from seqrec.models.baselines.base import Baseline
from seqrec.models.baselines.popularity import Pop, SessionPop
from seqrec.models.baselines.rules import AssociationRules, ItemKNN, SequentialRules
from seqrec.models.baselines.sknn import VARIANTS, SessionKNN

BASELINES = ("pop", "spop", "itemknn", "ar", "sr", *VARIANTS)


def make_baseline(name: str, **params) -> Baseline:
    """Build a baseline by its name (``pop``, ``spop``, ``itemknn``, ``ar``, ``sr``, ``sknn``, ``vsknn``,
    ``stan``, ``vstan``) with optional hyper-parameter overrides, checked against its config's fields, their
    types and their ranges (``seqrec.configs``: ``vsknn: k=-5 must be >= 1``)."""
    from dataclasses import fields, replace

    classes = {"pop": Pop, "spop": SessionPop, "itemknn": ItemKNN, "ar": AssociationRules, "sr": SequentialRules}
    if name not in VARIANTS and name not in classes:
        raise ValueError(f"unknown baseline {name!r}, expected one of {BASELINES}")
    default = VARIANTS[name] if name in VARIANTS else classes[name]().config
    unknown = set(params) - {f.name for f in fields(default)}
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for baseline {name}; "
                         f"expected fields of {type(default).__name__}: {[f.name for f in fields(default)]}")
    check_types(name, type(default), params)
    if name in VARIANTS:
        return SessionKNN.variant(name, **params)
    return classes[name](replace(default, **params))


__all__ = ["BASELINES", "Baseline", "make_baseline"]
