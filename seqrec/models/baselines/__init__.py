"""Classic session-based baselines, each scored by the shared evaluator."""

from __future__ import annotations

from seqrec.models.baselines.base import Baseline
from seqrec.models.baselines.popularity import Pop, SessionPop
from seqrec.models.baselines.rules import AssociationRules, ItemKNN, SequentialRules
from seqrec.models.baselines.sknn import VARIANTS, SessionKNN

BASELINES = ("pop", "spop", "itemknn", "ar", "sr", *VARIANTS)


def make_baseline(name: str, **params) -> Baseline:
    """Build a baseline by its name (``pop``, ``spop``, ``itemknn``, ``ar``, ``sr``, ``sknn``, ``vsknn``,
    ``stan``, ``vstan``) with optional hyper-parameter overrides."""
    from dataclasses import replace

    if name in VARIANTS:
        return SessionKNN.variant(name, **params)
    classes = {"pop": Pop, "spop": SessionPop, "itemknn": ItemKNN, "ar": AssociationRules, "sr": SequentialRules}
    if name not in classes:
        raise ValueError(f"unknown baseline {name!r}, expected one of {BASELINES}")
    cls = classes[name]
    default = cls().config
    return cls(replace(default, **params))


__all__ = ["BASELINES", "Baseline", "make_baseline"]
