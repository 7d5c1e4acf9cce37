"""Exploratory data analysis of a processed dataset: figures, plots and a one-page HTML report.

Everything is aggregated with vectorised numpy over the compact click arrays and only aggregates
are plotted (never millions of points), so a dataset of full YooChoose size takes about a minute.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from seqrec.data.dataset import ProcessedDataset, SessionSplit  # noqa: E402

DAY = 86_400.0
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _concat(a: SessionSplit, b: SessionSplit) -> SessionSplit:
    """All processed sessions: train_full followed by test."""
    return SessionSplit(
        np.concatenate([a.items, b.items]), np.concatenate([a.offsets, b.offsets[1:] + a.offsets[-1]]),
        np.concatenate([a.times, b.times]), np.concatenate([a.session_ids, b.session_ids]),
    )


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of a distribution of counts (0 = equal, 1 = concentrated on one item)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def power_law_exponent(counts: np.ndarray) -> float:
    """Slope of log(frequency) against log(rank) by least squares (Zipf: about -1)."""
    freq = np.sort(counts[counts > 0])[::-1].astype(np.float64)
    if len(freq) < 2:
        return 0.0
    ranks = np.arange(1, len(freq) + 1)
    slope, _ = np.polyfit(np.log(ranks), np.log(freq), 1)
    return float(slope)


def category_group(code: str) -> str:
    """YooChoose category codes: 0 (unknown), S (special offer), 1-12, or a brand id (grouped)."""
    if code in ("0", "S"):
        return code
    if code.isdigit() and 1 <= int(code) <= 12:
        return code
    return "brand"


def compute(data: ProcessedDataset, buy_sessions: np.ndarray | None = None) -> tuple[dict, dict]:
    """Return ``(summary, aggregates)``: figures for ``summary.json`` and arrays for the plots."""
    full, test = data.split("train_full"), data.split("test")
    alls = _concat(full, test)
    s: dict = {}
    agg: dict = {}
    _add_lengths(alls, data, s, agg)
    _add_popularity(alls, data.n_items, s, agg)
    cat_of_item = _add_categories(alls, data, agg)
    _add_time_of_day(alls.times, s, agg)
    same = _add_timing(alls, s, agg)
    _add_repeats(alls, data.n_items, same, cat_of_item, s)
    if buy_sessions is not None:
        _add_buyers(alls, buy_sessions, s)
    if all((data.path / "splits" / split / "buys.npz").exists() for split in ("train_full", "test")):
        _add_baskets(data, s, agg)
    _add_per_day(alls.times, data, agg)
    return s, agg


def _add_lengths(alls: SessionSplit, data: ProcessedDataset, s: dict, agg: dict) -> None:
    """Sizes, session-length figures and histogram, and the shares the filtering dropped."""
    lengths = alls.lengths
    raw = data.stats.get("raw", {})
    s["clicks"], s["sessions"], s["items"] = alls.n_clicks, alls.n_sessions, data.n_items
    s["session_length_mean"] = float(lengths.mean())
    s["session_length_median"] = float(np.median(lengths))
    s["session_length_p95"] = float(np.percentile(lengths, 95))
    if raw.get("sessions"):
        s["share_length1_sessions_dropped"] = raw.get("length1_sessions", 0) / raw["sessions"]
    if raw.get("items"):
        s["share_items_under_support"] = raw.get("items_under_support", 0) / raw["items"]
    agg["length_hist"] = np.bincount(np.minimum(lengths, 100))


def _add_popularity(alls: SessionSplit, n_items: int, s: dict, agg: dict) -> None:
    """How concentrated clicks are on popular items: power-law slope, top shares, Gini, Lorenz curve."""
    counts = np.bincount(alls.items, minlength=n_items + 1)[1:]
    s["power_law_exponent"] = power_law_exponent(counts)
    desc = np.sort(counts)[::-1]
    total = desc.sum()
    for pct in (1, 10, 20):
        s[f"share_clicks_top_{pct}pct_items"] = float(desc[: max(1, len(desc) * pct // 100)].sum() / total)
    s["gini"] = gini(counts)
    agg["rank_freq"] = desc
    agg["lorenz"] = np.concatenate([[0.0], np.cumsum(np.sort(counts)) / total])


def _add_categories(alls: SessionSplit, data: ProcessedDataset, agg: dict) -> np.ndarray:
    """Clicks per category group; returns each item's group (by dense id), reused by ``_add_repeats``."""
    table = data.item_table
    cat_of_item = np.empty(data.n_items + 1, dtype=object)
    cat_of_item[table["item"].to_numpy()] = [category_group(str(c)) for c in table["category"]]
    groups = ["0", "S", *map(str, range(1, 13)), "brand"]
    click_cat = cat_of_item[alls.items]
    agg["category_clicks"] = {g: int((click_cat == g).sum()) for g in groups}
    return cat_of_item


def _add_time_of_day(seconds: np.ndarray, s: dict, agg: dict) -> None:
    """The time range and the clicks per hour of day and per weekday (UTC)."""
    s["first_day"], s["last_day"] = float(seconds.min()), float(seconds.max())
    agg["by_hour"] = np.bincount(((seconds // 3600) % 24).astype(np.int64), minlength=24)
    weekday = ((seconds // DAY).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    agg["by_weekday"] = np.bincount(weekday, minlength=7)


def _add_timing(alls: SessionSplit, s: dict, agg: dict) -> np.ndarray:
    """Gaps between clicks and session durations; returns the mask of within-session click pairs."""
    seconds = alls.times
    same = np.ones(alls.n_clicks - 1, dtype=bool)
    same[alls.offsets[1:-1] - 1] = False  # pairs that cross a session boundary
    gaps = np.diff(seconds)[same]
    s["median_seconds_between_clicks"] = float(np.median(gaps)) if len(gaps) else 0.0
    duration = seconds[alls.offsets[1:] - 1] - seconds[alls.offsets[:-1]]
    s["median_session_seconds"] = float(np.median(duration))
    agg["gaps"], agg["durations"] = gaps, duration
    return same


def _add_repeats(alls: SessionSplit, n_items: int, same: np.ndarray, cat_of_item: np.ndarray, s: dict) -> None:
    """Sequential signals: consecutive and in-session repeats, and next click in the same category."""
    prev, nxt = alls.items[:-1][same], alls.items[1:][same]
    s["share_consecutive_repeats"] = float((prev == nxt).mean()) if len(prev) else 0.0
    session = alls.session_of_click()
    key = session.astype(np.int64) * (n_items + 1) + alls.items
    uniq = len(np.unique(key))
    s["share_repeat_clicks"] = float(1 - uniq / alls.n_clicks)
    known = (cat_of_item[prev] != "0") & (cat_of_item[nxt] != "0")  # category 0 means unknown
    if known.any():
        s["share_next_click_same_category"] = float((cat_of_item[prev] == cat_of_item[nxt])[known].mean())


def _add_buyers(alls: SessionSplit, buy_sessions: np.ndarray, s: dict) -> None:
    """The share of sessions with a buy and the mean length of buying and non-buying sessions."""
    lengths = alls.lengths
    buyers = np.isin(alls.session_ids, buy_sessions)
    s["share_sessions_with_buy"] = float(buyers.mean())
    s["clicks_per_buying_session"] = float(lengths[buyers].mean()) if buyers.any() else 0.0
    s["clicks_per_non_buying_session"] = float(lengths[~buyers].mean()) if (~buyers).any() else 0.0


def _add_baskets(data: ProcessedDataset, s: dict, agg: dict) -> None:
    """From the buys joined to train_full and test: conversion by session length, the share of bought items
    the session clicked, and the time from a session's last click to its first buy of each item."""
    from seqrec.data.buys import BasketLabels

    lengths, bought_lengths, clicked, delays = [], [], [], []
    for split_name in ("train_full", "test"):
        split = data.split(split_name)
        labels = BasketLabels.load(data.path / "splits" / split_name)
        n = split.n_sessions
        lengths.append(split.lengths)
        bought_lengths.append(split.lengths[labels.buying(n)])
        click_keys = split.session_of_click().astype(np.int64) * (data.n_items + 1) + split.items
        clicked.append(np.isin(labels.session * (data.n_items + 1) + labels.item, click_keys) & (labels.item > 0))
        delays.append(labels.time - split.times[split.offsets[1:] - 1][labels.session])
    cap = 20
    per_length = np.bincount(np.minimum(np.concatenate(lengths), cap), minlength=cap + 1)[2:]
    buying = np.bincount(np.minimum(np.concatenate(bought_lengths), cap), minlength=cap + 1)[2:]
    agg["conversion_by_length"] = np.divide(buying, per_length, out=np.zeros(len(buying)), where=per_length > 0)
    agg["sessions_by_length"] = per_length
    clicked_all, delay = np.concatenate(clicked), np.concatenate(delays)
    agg["buy_delays"] = delay
    s["basket_buying_sessions"] = int(sum(len(b) for b in bought_lengths))
    s["basket_bought_items"] = int(len(clicked_all))
    s["share_bought_items_clicked"] = float(clicked_all.mean()) if len(clicked_all) else 0.0
    s["median_seconds_last_click_to_buy"] = float(np.median(delay)) if len(delay) else 0.0
    s["share_buys_before_last_click"] = float((delay < 0).mean()) if len(delay) else 0.0


def _add_per_day(seconds: np.ndarray, data: ProcessedDataset, agg: dict) -> None:
    """Clicks per day since the first click, with the split boundaries to draw over them."""
    day0 = np.floor(seconds.min() / DAY)
    agg["clicks_per_day"] = np.bincount((np.floor(seconds / DAY) - day0).astype(np.int64))
    agg["day0"] = day0
    agg["boundaries"] = data.stats.get("boundaries", {})


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot(summary: dict, agg: dict, out: Path) -> list[Path]:
    """Write the EDA plots under ``out`` and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    steps = [_plot_session_lengths, _plot_item_popularity, _plot_lorenz_curve, _plot_categories,
             _plot_clicks_by_time, _plot_timing, _plot_split]
    if "conversion_by_length" in agg:
        steps.append(_plot_buys)
    return [step(summary, agg, out) for step in steps]


def _plot_session_lengths(summary: dict, agg: dict, out: Path) -> Path:
    """Histogram of clicks per session (log scale), titled with mean, median and p95."""
    fig, ax = plt.subplots(figsize=(7, 4))
    hist = agg["length_hist"]
    ax.bar(np.arange(len(hist)), hist, width=1.0)
    ax.set(yscale="log", xlabel="clicks per session (100 = 100 or more)", ylabel="sessions (log scale)",
           title=f"Session lengths (mean {summary['session_length_mean']:.2f}, "
                 f"median {summary['session_length_median']:.0f}, p95 {summary['session_length_p95']:.0f})")
    return _save(fig, out / "session_lengths.png")


def _plot_item_popularity(summary: dict, agg: dict, out: Path) -> Path:
    """Rank-frequency plot of item clicks on log-log axes (about 300 log-spaced ranks)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    freq = agg["rank_freq"]
    ranks = np.unique(np.geomspace(1, len(freq), 300).astype(np.int64))
    ax.loglog(ranks, np.maximum(freq[ranks - 1], 0.5), marker=".", linestyle="")
    ax.set(xlabel="item popularity rank (log scale)", ylabel="clicks (log scale)",
           title=f"Item popularity: rank-frequency (slope {summary['power_law_exponent']:.2f})")
    return _save(fig, out / "item_popularity.png")


def _plot_lorenz_curve(summary: dict, agg: dict, out: Path) -> Path:
    """Lorenz curve of clicks over items against the line of equal popularity."""
    fig, ax = plt.subplots(figsize=(5, 5))
    lorenz = agg["lorenz"]
    idx = np.unique(np.linspace(0, len(lorenz) - 1, 300).astype(np.int64))
    ax.plot(idx / (len(lorenz) - 1), lorenz[idx], label="items")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="equal popularity")
    ax.set(xlabel="share of items (least clicked first)", ylabel="share of clicks",
           title=f"Lorenz curve (Gini {summary['gini']:.3f})")
    ax.legend()
    return _save(fig, out / "lorenz_curve.png")


def _plot_categories(summary: dict, agg: dict, out: Path) -> Path:
    """Clicks per category group (log scale)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    cats = agg["category_clicks"]
    ax.bar(list(cats), list(cats.values()))
    ax.set(yscale="log", xlabel="category code (brands grouped)", ylabel="clicks (log scale)",
           title="Clicks by item category")
    return _save(fig, out / "categories.png")


def _plot_clicks_by_time(summary: dict, agg: dict, out: Path) -> Path:
    """Clicks by hour of day and by weekday, side by side."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.bar(np.arange(24), agg["by_hour"])
    a1.set(xlabel="hour of day (UTC)", ylabel="clicks", title="Clicks by hour of day")
    a2.bar(WEEKDAYS, agg["by_weekday"])
    a2.set(xlabel="weekday", ylabel="clicks", title="Clicks by weekday")
    return _save(fig, out / "clicks_by_time.png")


def _plot_timing(summary: dict, agg: dict, out: Path) -> Path:
    """Histograms of the time between clicks and of session durations (log-log, shared bins)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    bins = np.geomspace(1, 1e5, 60)
    a1.hist(np.clip(agg["gaps"], 1, 1e5), bins=bins)
    a1.set(xscale="log", yscale="log", xlabel="seconds between clicks (log scale)", ylabel="click pairs (log)",
           title=f"Time between clicks (median {summary['median_seconds_between_clicks']:.0f} s)")
    a2.hist(np.clip(agg["durations"], 1, 1e5), bins=bins)
    a2.set(xscale="log", yscale="log", xlabel="session duration in seconds (log scale)", ylabel="sessions (log)",
           title=f"Session duration (median {summary['median_session_seconds']:.0f} s)")
    return _save(fig, out / "timing.png")


def _plot_buys(summary: dict, agg: dict, out: Path) -> Path:
    """Conversion by session length, and the time from a session's last click to its buys."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    conversion = agg["conversion_by_length"]
    labels = [str(n) for n in range(2, 2 + len(conversion) - 1)] + [f"{1 + len(conversion)}+"]
    a1.bar(range(len(conversion)), conversion)
    a1.set_xticks(range(len(conversion)), labels, fontsize=7)
    a1.set(xlabel="session length (clicks)", ylabel="share of sessions that buy",
           title=f"Conversion by length ({summary['share_bought_items_clicked']:.0%} of bought items were clicked)")
    minutes = agg["buy_delays"] / 60.0
    a2.hist(np.clip(minutes, -60, 120), bins=90)
    a2.set(xlabel="minutes from the last click to the buy (clipped to -60..120)", ylabel="bought items",
           title=f"Last click to buy (median {summary['median_seconds_last_click_to_buy'] / 60:.1f} min)")
    return _save(fig, out / "buys.png")


def _plot_split(summary: dict, agg: dict, out: Path) -> Path:
    """Clicks per day with the valid and test boundaries marked, to check the time split by eye."""
    fig, ax = plt.subplots(figsize=(9, 4))
    per_day = agg["clicks_per_day"]
    ax.bar(np.arange(len(per_day)), per_day, width=1.0)
    for name, color in (("valid_start", "orange"), ("test_start", "red")):
        if name in agg["boundaries"]:
            ax.axvline(agg["boundaries"][name] / DAY - agg["day0"], color=color, label=name.replace("_", " "))
    ax.set(xlabel="day since the first click", ylabel="clicks",
           title="Clicks per day with the train_tr / valid / test boundaries")
    ax.legend()
    return _save(fig, out / "split.png")


def write_report(summary: dict, plots: list[Path], path: Path, title: str) -> Path:
    """One self-contained HTML page with the figures and the plots embedded."""
    rows = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{v:,.4g}</td></tr>" if isinstance(v, float)
                     else f"<tr><td>{html.escape(k)}</td><td>{v:,}</td></tr>" for k, v in summary.items())
    images = "\n".join(
        f'<h2>{html.escape(p.stem.replace("_", " "))}</h2>'
        f'<img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        for p in plots)
    path.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:auto}}td{{padding:2px 12px}}img{{max-width:100%}}</style>
</head><body><h1>{html.escape(title)}</h1><table>{rows}</table>{images}</body></html>""")
    return path


def buy_sessions_of(data: ProcessedDataset, buys: str | Path | None) -> np.ndarray | None:
    """Session ids with a buy: from a raw buys file when given, else the dataset's ``buys.parquet``."""
    if buys:
        from seqrec.data.readers import read_buys

        return np.unique(read_buys(buys).session)
    stored = data.path / "buys.parquet"
    return np.unique(pq.read_table(stored, columns=["session"])["session"].to_numpy()) if stored.exists() else None


def run(data: ProcessedDataset, out: Path, buys: str | Path | None = None) -> tuple[dict, list[Path], Path]:
    """Compute, plot and report into ``out`` (``plots/eda/*.png``, ``summary.json``, ``report.html``)."""
    summary, agg = compute(data, buy_sessions_of(data, buys))
    plots = plot(summary, agg, out / "plots" / "eda")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    report = write_report(summary, plots, out / "report.html", f"EDA of {data.name}")
    return summary, plots, report
