"""Session-based k-nearest-neighbours, one vectorised implementation of four published variants.

* S-KNN: Jannach & Ludewig 2017, "When recurrent neural networks meet the neighborhood for
  session-based recommendation" (Jaccard similarity of item sets).
* V-SKNN: Ludewig & Jannach 2018, "Evaluation of session-based recommendation algorithms"
  (position-weighted similarity, scores decayed by how far back the shared item was clicked).
* STAN: Garg et al. 2019, "Sequence and time aware neighborhood for session-based
  recommendations" (position, recency and item-neighbourhood weights).
* V-STAN: Ludewig, Latifi & Jannach 2021, "Empirical analysis of session-based recommendation
  algorithms" (STAN plus V-SKNN's ideas: cosine, IDF weighting, insertion-position weighting).

For a prefix, the candidate neighbours are the training sessions sharing an item with it; the
``sample_size`` most recent candidates are kept, the ``k`` most similar of those are the
neighbours, and every item of a neighbour gets the neighbour's (weighted) similarity. A batch is
computed with sparse products (prefix x item) @ (item x session) and flat per-pair arrays, never
a Python loop over prefixes, sessions or items.

Time decay (STAN's ``snh``) is measured from the end of the training data rather than from the
prefix's own time: that scales all neighbours of one prefix by the same factor, so rankings are
identical and the model needs only item ids.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from seqrec.configs import RangeError, at_least, check_ranges, one_of, ranged
from seqrec.data.dataset import SessionSplit
from seqrec.models.baselines.base import Baseline

DAY = 86_400.0


@dataclass(frozen=True)
class SKNNConfig:
    """Hyper-parameters of the session-kNN family; ``VARIANTS`` holds the published settings."""

    k: int = ranged(100, at_least(1))  # neighbours per prefix
    sample_size: int = ranged(1000, at_least(1))  # most recent candidate sessions the neighbours are taken from
    similarity: str = ranged("vec", one_of("jaccard", "vec", "cosine"))
    position_weight: str = ranged("quadratic", one_of("none", "div", "quadratic", "exp"))  # exp uses spw
    spw: float = ranged(0.0, at_least(0))  # STAN lambda_spw: exp((position - length) / spw), > 0 with exp
    score_decay: str = ranged("quadratic", one_of("none", "div", "quadratic"))  # V-SKNN: by the shared item's step
    snh_days: float = ranged(0.0, at_least(0))  # STAN lambda_snh: exp(-age / snh), 0 = off
    inh: float = ranged(0.0, at_least(0))  # STAN lambda_inh: exp(-|pos(item) - pos(shared)| / inh), 0 = off
    ipw: float = ranged(0.0, at_least(0))  # V-STAN lambda_ipw: exp((shared item's position - length) / ipw), 0 = off
    idf: float = ranged(0.0, at_least(0))  # V-STAN lambda_idf: score * (1 + idf(item) * idf), 0 = off

    def __post_init__(self) -> None:
        check_ranges("sknn", self)
        if self.position_weight == "exp" and self.spw <= 0:
            raise RangeError("sknn", f"spw={self.spw!r} must be > 0 with position_weight='exp'")


VARIANTS: dict[str, SKNNConfig] = {
    "sknn": SKNNConfig(k=500, sample_size=10_000, similarity="jaccard", position_weight="none", score_decay="none"),
    "vsknn": SKNNConfig(k=100, sample_size=1_000, similarity="vec", position_weight="quadratic",
                        score_decay="quadratic"),
    "stan": SKNNConfig(k=1_000, sample_size=10_000, similarity="cosine", position_weight="exp", spw=1e-5,
                       score_decay="none", snh_days=10, inh=2),
    "vstan": SKNNConfig(k=1_500, sample_size=10_000, similarity="cosine", position_weight="exp", spw=0.5,
                        score_decay="none", snh_days=5, inh=2, ipw=2, idf=2),
}


def _lookup(matrix: sp.spmatrix, keys: np.ndarray, n_cols: int) -> np.ndarray:
    """Values of ``matrix`` at the flat positions ``keys`` (row * n_cols + col); 0 where absent."""
    coo = matrix.tocoo()
    own = coo.row.astype(np.int64) * n_cols + coo.col
    order = np.argsort(own, kind="stable")
    own, values = own[order], coo.data[order]
    if len(own) == 0:
        return np.zeros(len(keys))
    found = np.minimum(np.searchsorted(own, keys), len(own) - 1)
    return np.where(own[found] == keys, values[found], 0.0)


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """0-based rank of each entry within its run of equal ``groups`` values (already grouped)."""
    new = np.ones(len(groups), dtype=bool)
    new[1:] = groups[1:] != groups[:-1]
    starts = np.flatnonzero(new)
    return np.arange(len(groups)) - np.repeat(starts, np.diff(np.append(starts, len(groups))))


def _last_of_runs(groups: np.ndarray, items: np.ndarray) -> np.ndarray:
    """True at the last entry of each run of equal ``(groups, items)`` (entries already sorted by both)."""
    last = np.ones(len(groups), dtype=bool)
    last[:-1] = (groups[1:] != groups[:-1]) | (items[1:] != items[:-1])
    return last


def _top_per_prefix(prefix: np.ndarray, key: np.ndarray, limit: int,
                    *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """``prefix`` and ``columns`` sorted by prefix, keeping each prefix's ``limit`` entries of smallest ``key``
    (ties in their current order)."""
    order = np.lexsort((key, prefix))
    prefix = prefix[order]
    keep = _rank_within(prefix) < limit
    return (prefix[keep], *(column[order][keep] for column in columns))


@dataclass(frozen=True)
class _Prefixes:
    """The distinct items of a batch's prefixes as flat entries sorted by (row, item), each with the
    weight and step (1 = the prefix's last click) of the item's last click in the prefix."""

    batch: int
    rows: np.ndarray
    items: np.ndarray
    weight: np.ndarray
    step: np.ndarray
    n_distinct: np.ndarray  # [batch] distinct items per prefix

    def matrix(self, values: np.ndarray, n_cols: int) -> sp.csr_matrix:
        """``values`` of the entries as a sparse (prefix x item) matrix."""
        return sp.csr_matrix((values, (self.rows, self.items)), shape=(self.batch, n_cols))


class SessionKNN(Baseline):
    """S-KNN, V-SKNN, STAN and V-STAN (see the module docstring)."""

    name = "sknn"
    state_arrays = ("session_size", "session_end", "age_days", "idf_values")
    state_matrices = ("session_items", "item_sessions")

    def __init__(self, config: SKNNConfig = VARIANTS["vsknn"], name: str | None = None):
        super().__init__()
        self.config = config
        if name:
            self.name = name

    @classmethod
    def variant(cls, name: str, **overrides) -> SessionKNN:
        if name not in VARIANTS:
            raise ValueError(f"unknown session-kNN variant {name!r}, expected one of {sorted(VARIANTS)}")
        try:
            config = replace(VARIANTS[name], **overrides)
        except RangeError as exc:  # the variants share one config class: name the variant asked for
            raise RangeError(name, exc.problem) from None
        return cls(config, name=name)

    def fit(self, split: SessionSplit, n_items: int) -> SessionKNN:
        self.n_items = n_items
        session = split.session_of_click()
        pos = np.arange(split.n_clicks) - split.offsets[:-1][session] + 1  # 1-based position
        # distinct items of each session with their last position (sessions x items, value = position)
        order = np.lexsort((pos, split.items, session))
        s_o, i_o, p_o = session[order], split.items[order], pos[order]
        is_last = _last_of_runs(s_o, i_o)
        s_l, i_l, p_l = s_o[is_last], i_o[is_last], p_o[is_last]
        self.session_items = sp.csr_matrix((p_l.astype(np.float64), (s_l, i_l)), shape=(split.n_sessions, n_items + 1))
        self.item_sessions = (self.session_items > 0).T.tocsr().astype(np.float64)  # items x sessions, binary
        self.session_size = np.diff(self.session_items.indptr).astype(np.float64)  # distinct items per session
        end_time = split.times[split.offsets[1:] - 1]
        self.session_end = end_time
        self.age_days = (end_time.max() - end_time) / DAY
        item_sessions = np.diff(self.item_sessions.indptr)
        self.idf_values = np.log(split.n_sessions / np.maximum(item_sessions, 1))
        self.idf_values[item_sessions == 0] = 0.0
        return self

    @property
    def n_parameters(self) -> int:
        return int(self.session_items.nnz)

    def _position_weights(self, pos: np.ndarray, length: np.ndarray) -> np.ndarray:
        scheme = self.config.position_weight
        if scheme == "none":
            return np.ones(len(pos))
        if scheme == "div":
            return pos / length
        if scheme == "quadratic":
            return (pos / length) ** 2
        if scheme == "exp":
            return np.exp((pos - length) / self.config.spw)
        raise ValueError(f"unknown position_weight {scheme!r}")

    def score_numpy(self, inputs: np.ndarray) -> np.ndarray:
        """Scores of every item for each prefix; a prefix of only padding has no neighbours and scores zeros."""
        cfg = self.config
        prefixes = self._prefixes(inputs)
        b, s, inter, w_sum, shared_step = self._candidates(prefixes)
        # sample: the most recent candidate sessions per prefix
        b, s, inter, w_sum, shared_step = _top_per_prefix(b, -self.session_end[s], cfg.sample_size,
                                                          s, inter, w_sum, shared_step)
        sim = self._similarity(prefixes, b, s, inter, w_sum)
        # neighbours: the k most similar sampled sessions per prefix
        b, s, sim, shared_step = _top_per_prefix(b, -sim, cfg.k, s, sim, shared_step)
        return self._item_scores(prefixes, b, s, self._decayed(sim, shared_step))

    def _prefixes(self, inputs: np.ndarray) -> _Prefixes:
        """Distinct items of each left-padded prefix with their last 1-based position's weight and step."""
        batch, width = inputs.shape
        length = (inputs > 0).sum(1).astype(np.float64)
        pos = np.arange(1, width + 1)[None, :] - (width - length)[:, None]
        rows = np.repeat(np.arange(batch), width)
        flat_items, flat_pos = inputs.ravel(), pos.ravel()
        keep = flat_items > 0
        rows, flat_items, flat_pos = rows[keep], flat_items[keep], flat_pos[keep]
        # the last occurrence of an item in a prefix wins (max position), like a dict being overwritten
        order = np.lexsort((flat_pos, flat_items, rows))
        rows, flat_items, flat_pos = rows[order], flat_items[order], flat_pos[order]
        last = _last_of_runs(rows, flat_items)
        rows, flat_items, flat_pos = rows[last], flat_items[last], flat_pos[last]
        n_distinct = np.bincount(rows, minlength=batch).astype(np.float64)
        weight = self._position_weights(flat_pos, length[rows])
        step = length[rows] - flat_pos + 1
        return _Prefixes(batch, rows, flat_items, weight, step, n_distinct)

    def _candidates(self, prefixes: _Prefixes) -> tuple[np.ndarray, ...]:
        """Training sessions sharing an item with each prefix: ``(prefix, session, shared item count,
        summed weight of the shared items, step of the most recent shared item)`` per pair."""
        n_sessions, n_cols = len(self.session_size), self.n_items + 1
        overlap = (prefixes.matrix(np.ones(len(prefixes.rows)), n_cols) @ self.item_sessions).tocoo()
        b, s, inter = overlap.row, overlap.col, overlap.data
        keys = b.astype(np.int64) * n_sessions + s
        w_sum = _lookup(prefixes.matrix(prefixes.weight, n_cols) @ self.item_sessions, keys, n_sessions)
        # sum of 2^-step over shared items is dominated by its largest term: recovers the most recent one
        recency = _lookup(prefixes.matrix(np.exp2(-prefixes.step), n_cols) @ self.item_sessions, keys, n_sessions)
        return b, s, inter, w_sum, -np.floor(np.log2(recency))

    def _similarity(self, prefixes: _Prefixes, b: np.ndarray, s: np.ndarray, inter: np.ndarray,
                    w_sum: np.ndarray) -> np.ndarray:
        """Similarity of prefix ``b`` and session ``s`` per pair, decayed by the session's age (STAN)."""
        cfg = self.config
        if cfg.similarity == "jaccard":
            sim = inter / (prefixes.n_distinct[b] + self.session_size[s] - inter)
        elif cfg.similarity == "vec":
            sim = w_sum / prefixes.n_distinct[b]
        elif cfg.similarity == "cosine":
            norm = np.sqrt(np.bincount(prefixes.rows, weights=prefixes.weight**2, minlength=prefixes.batch))
            sim = w_sum / (norm[b] * np.sqrt(self.session_size[s]))
        else:
            raise ValueError(f"unknown similarity {cfg.similarity!r}")
        if cfg.snh_days > 0:
            sim = sim * np.exp(-self.age_days[s] / cfg.snh_days)
        return sim

    def _decayed(self, sim: np.ndarray, shared_step: np.ndarray) -> np.ndarray:
        """Neighbour weights: similarity decayed by the step of the most recent shared item (V-SKNN, V-STAN)."""
        cfg = self.config
        if cfg.score_decay == "div":
            sim = sim / shared_step
        elif cfg.score_decay == "quadratic":
            sim = sim / shared_step**2
        if cfg.ipw > 0:
            sim = sim * np.exp((1.0 - shared_step) / cfg.ipw)  # position of the shared item - length
        return sim

    def _item_scores(self, prefixes: _Prefixes, b: np.ndarray, s: np.ndarray, sim: np.ndarray) -> np.ndarray:
        """Sum over each prefix's neighbours of their weight on their items, times STAN's item-neighbourhood
        and V-STAN's IDF factors when set."""
        cfg = self.config
        n_cols = self.n_items + 1
        if cfg.inh <= 0 and cfg.idf <= 0:
            neighbours = sp.csr_matrix((sim, (b, s)), shape=(prefixes.batch, len(self.session_size)))
            return np.asarray((neighbours @ (self.session_items > 0).astype(np.float64)).todense())
        pair, item, item_pos = self._neighbour_items(s)
        value = sim[pair]
        if cfg.inh > 0:
            value = value * self._item_neighbourhood(prefixes, b, pair, item, item_pos)
        if cfg.idf > 0:
            value = value * (1.0 + self.idf_values[item] * cfg.idf)
        flat = np.bincount(b[pair] * n_cols + item, weights=value, minlength=prefixes.batch * n_cols)
        return flat.reshape(prefixes.batch, n_cols)

    def _neighbour_items(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each neighbour pair expanded to its session's distinct items: ``(pair, item, item's last position)``."""
        indptr = self.session_items.indptr
        counts = indptr[s + 1] - indptr[s]
        pair = np.repeat(np.arange(len(s)), counts)
        entry = np.repeat(indptr[s] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        return pair, self.session_items.indices[entry], self.session_items.data[entry]

    def _item_neighbourhood(self, prefixes: _Prefixes, b: np.ndarray, pair: np.ndarray, item: np.ndarray,
                            item_pos: np.ndarray) -> np.ndarray:
        """STAN's factor exp(-|pos(item) - pos(shared)| / inh), where pos(shared) is the neighbour's last
        position of an item of the prefix."""
        n_cols = self.n_items + 1
        prefix_keys = prefixes.rows.astype(np.int64) * n_cols + prefixes.items  # sorted: rows, then items
        pair_keys = b[pair].astype(np.int64) * n_cols + item
        found = np.minimum(np.searchsorted(prefix_keys, pair_keys), len(prefix_keys) - 1)
        in_prefix = prefix_keys[found] == pair_keys
        star = np.zeros(len(b))
        np.maximum.at(star, pair[in_prefix], item_pos[in_prefix])
        return np.exp(-np.abs(item_pos - star[pair]) / self.config.inh)
