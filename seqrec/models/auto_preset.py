"""``preset=auto``: each model's settings sized from the dataset's statistics, with the reason for each choice.

The rule is data, in two parts. ``BANDS`` picks a named preset (``seqrec.models.presets``) by the number of
training clicks: the presets tuned on the real YooChoose sample for small data, the YooChoose-size ones for
large data. ``adjust`` then resizes what depends on the data's shape rather than its size band: the width for
very small data, the window for long sessions, the batch (and its learning rate) so that an epoch has enough
steps, the sampled negatives for a small catalogue, the loss for a large one, the epoch cap so that the
learning-rate schedule spans as many steps as where the preset was tuned. ``choose`` returns the settings with one
line per field saying why; the training run logs them (``preset_auto.json``) and prints them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from seqrec.models.presets import PRESETS

if TYPE_CHECKING:
    from seqrec.data.dataset import ProcessedDataset

AUTO = "auto"


@dataclass(frozen=True)
class DataShape:
    """The statistics ``auto`` sizes a model from: those of the split the model selects its epochs on."""

    items: int  # the catalogue
    clicks: int  # training clicks (train_tr)
    sessions: int  # training sessions
    p99_length: int  # 99th percentile of the training sessions' lengths

    @classmethod
    def of(cls, data: ProcessedDataset) -> DataShape:
        train = data.split("train_tr")
        lengths = train.lengths
        p99 = int(np.ceil(np.percentile(lengths, 99))) if len(lengths) else 0
        return cls(items=data.n_items, clicks=int(train.n_clicks), sessions=int(train.n_sessions), p99_length=p99)

    def rows(self, prefixes: bool) -> int:
        """Training rows of one epoch: one per predicted click (``prefixes``) or one per session."""
        return max(1, self.clicks - self.sessions) if prefixes else max(1, self.sessions)


@dataclass(frozen=True)
class Band:
    """Training clicks up to ``max_clicks`` start from ``presets[model]``, for the reason ``why``; ``tuned_on``:
    the data those presets were tuned on, whose steps per epoch their epoch counts assume (``None``: none)."""

    max_clicks: float
    presets: dict[str, str]
    why: str
    tuned_on: DataShape | None = None


# The real YooChoose sample's training split (train_tr), on whose valid split the ``sample`` presets were chosen.
YOOCHOOSE_SAMPLE = DataShape(items=2_933, clicks=53_254, sessions=13_629, p99_length=18)
# Up to 2M training clicks the settings tuned on the real YooChoose sample: heavy dropout and one training row per
# prefix regularise data this small; GRU4Rec at 100 units. Above it the YooChoose-size settings: the official
# GRU4Rec (480 units) and lighter regularisation for the Transformers.
BANDS: tuple[Band, ...] = (
    Band(2_000_000, {"sasrec": "sample", "bert4rec": "sample", "gru4rec": "sample"},
         "up to 2M training clicks: the setting chosen on the real YooChoose sample's valid split",
         tuned_on=YOOCHOOSE_SAMPLE),
    Band(math.inf, {"sasrec": "default", "bert4rec": "default", "gru4rec": "default"},
         "over 2M training clicks: the YooChoose-size setting, with less regularisation"),
)
SMALL_CLICKS = 20_000  # below it, Transformers get SMALL_HIDDEN units: a quarter of the parameters
SMALL_HIDDEN = 64
MIN_STEPS = 16  # an epoch has at least this many optimisation steps (the batch shrinks for small data)
MIN_BATCH = 16
MIN_EPOCHS = 10  # larger data shortens a tuned preset's epoch cap down to this
MAX_WINDOW = 200  # the longest window a long-session dataset gets
FULL_SOFTMAX_ITEMS = 200_000  # above it, SASRec's full softmax (batch x window x items logits) becomes sampled
LARGE_CATALOGUE_NEGATIVES = 1_024


@dataclass
class AutoChoice:
    """What ``auto`` chose for one model: the base preset and every field it sets, each with its reason."""

    model: str
    base: str
    shape: DataShape
    defaults: dict[str, Any]  # every field of the model's config and of ``TrainConfig`` at its default
    model_fields: dict[str, Any] = field(default_factory=dict)
    train_fields: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    why_base: str = ""

    def set(self, name: str, value: Any, why: str) -> None:
        """Set a field of the model's config or of ``TrainConfig`` for ``why``."""
        (self.train_fields if name in self.defaults["train"] else self.model_fields)[name] = value
        self.reasons[name] = why

    def get(self, name: str) -> Any:
        """The field's value as chosen so far (the preset's, else the config's default)."""
        for values in (self.model_fields, self.train_fields, self.defaults["model"], self.defaults["train"]):
            if name in values:
                return values[name]
        raise KeyError(name)

    def lines(self) -> list[str]:
        """One line per field: ``name=value: why``."""
        return [f"{name}={self.get(name)}: {why}" for name, why in self.reasons.items()]

    def summary(self) -> str:
        """The base preset and what was resized from it, in one paragraph."""
        resized = [f"{name}={self.get(name)} ({why})" for name, why in self.reasons.items()
                   if not why.startswith(f"preset {self.base} ")]
        return (f"preset auto: {self.base} ({self.why_base}; {self.shape.clicks:,} training clicks, "
                f"{self.shape.items:,} items); " + ("; ".join(resized) or "nothing resized for this data"))

    def record(self) -> dict[str, Any]:
        """The choice as JSON-ready data (logged as ``preset_auto.json``)."""
        return {"model": self.model, "base": self.base, "why_base": self.why_base, "shape": asdict(self.shape),
                "choices": {name: {"value": self.get(name), "why": why} for name, why in self.reasons.items()}}


def choose(model: str, shape: DataShape, model_defaults: dict[str, Any], train_defaults: dict[str, Any]) -> AutoChoice:
    """The settings of ``model`` for data of ``shape``; ``model_defaults`` and ``train_defaults`` are the fields
    of its config and of ``TrainConfig`` at their defaults."""
    band = next(b for b in BANDS if shape.clicks <= b.max_clicks)
    base = band.presets.get(model, "default")
    why = band.why if model in band.presets else "the model's own default setting"
    entry = PRESETS[model][base]
    choice = AutoChoice(model, base, shape, {"model": model_defaults, "train": train_defaults},
                        dict(entry["model"]), dict(entry["train"]), why_base=why)
    for name in (*entry["model"], *entry["train"]):
        choice.reasons[name] = f"preset {base} ({why}; {shape.clicks:,} training clicks)"
    _adjust(choice, set(model_defaults), band.tuned_on if model in band.presets else None)
    return choice


def _adjust(c: AutoChoice, config_fields: set[str], tuned_on: DataShape | None) -> None:
    """Resize what depends on the data's shape beyond its size band."""
    s = c.shape
    transformer = "heads" in config_fields
    if transformer and s.clicks < SMALL_CLICKS and c.get("hidden") > SMALL_HIDDEN:
        c.set("hidden", SMALL_HIDDEN, f"{s.clicks:,} training clicks (< {SMALL_CLICKS:,}): {SMALL_HIDDEN} units "
                                      f"rather than {c.get('hidden')}, fewer parameters to fit")
    if "max_len" in config_fields:
        window = c.get("max_len")
        if s.p99_length > window:
            wider = min(MAX_WINDOW, int(math.ceil(s.p99_length / 10) * 10))
            c.set("max_len", wider, f"99% of training sessions have at most {s.p99_length} clicks: a window of "
                                    f"{wider} (was {window}) sees them whole")
    prefixes = transformer and c.get("train_on") == "prefixes"
    rows = s.rows(prefixes)
    batch = c.get("batch_size")
    fit = max(MIN_BATCH, 2 ** int(math.floor(math.log2(max(1, rows // MIN_STEPS)))))
    if fit < batch:
        c.set("batch_size", fit, f"{rows:,} training rows: batches of {fit} (not {batch}) give at least "
                                 f"{MIN_STEPS} steps an epoch")
        if c.get("optimizer") != "adagradm":  # Adagrad's per-row rates adapt by themselves
            lr = c.get("lr")
            scaled = float(f"{lr * math.sqrt(fit / batch):.3g}")
            c.set("lr", scaled, f"the batch is {batch // fit}x smaller: the rate {lr} scaled by its square root")
    if "n_negatives" in config_fields and c.get("loss") != "full" and c.get("n_negatives") >= s.items:
        fewer = max(1, s.items // 2)
        c.set("n_negatives", fewer, f"a catalogue of {s.items:,} items: {fewer} sampled negatives (not "
                                    f"{c.get('n_negatives')}, more than the items)")
    if "loss" in config_fields and c.get("loss") == "full" and s.items > FULL_SOFTMAX_ITEMS:
        c.set("loss", "sampled", f"a catalogue of {s.items:,} items (> {FULL_SOFTMAX_ITEMS:,}): a sampled softmax, "
                                 f"the full one's logits would not fit a batch")
        c.set("n_negatives", LARGE_CATALOGUE_NEGATIVES, f"{LARGE_CATALOGUE_NEGATIVES} popularity-sampled negatives "
                                                        f"a batch for the sampled softmax")
    if tuned_on is not None and c.get("schedule") == "cosine":
        steps, tuned_steps = max(1, rows // c.get("batch_size")), max(1, tuned_on.rows(prefixes) // batch)
        cap = int(np.clip(round(c.get("epochs") * tuned_steps / steps), MIN_EPOCHS, c.get("epochs")))
        if cap != c.get("epochs"):
            c.set("epochs", cap, f"{steps} steps an epoch, {tuned_steps} where the preset was tuned: at most {cap} "
                                 f"epochs (not {c.get('epochs')}), so the cosine schedule spans as many steps")
