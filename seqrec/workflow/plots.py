"""Loss and metric curves of a training run, as matplotlib figures (logged with :func:`log_figure`) or PNG
files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from seqrec.evaluation import EvalResult  # noqa: E402
from seqrec.trainer import History  # noqa: E402


def log_figure(fig, artifact_file: str) -> None:
    """Log a matplotlib figure as the active run's PNG artifact ``artifact_file`` (``plots/name.png``), then
    close it."""
    import mlflow

    try:
        mlflow.log_figure(fig, artifact_file, save_kwargs={"dpi": 100})
    finally:
        plt.close(fig)


def curve_figures(history: History, title: str) -> dict[str, plt.Figure]:
    """``loss_curves.png`` (train/valid loss per epoch) and ``metric_curves.png`` (valid Recall/MRR), by file
    name."""
    epochs = [r["epoch"] for r in history.select]
    figures = {}
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [r["train_loss"] for r in history.select], marker="o", label="train loss (train_tr)")
    ax.plot(epochs, [r["val_loss"] for r in history.select], marker="o", label="valid loss")
    if history.refit:
        ax.plot([r["epoch"] for r in history.refit], [r["refit_train_loss"] for r in history.refit],
                marker="x", linestyle="--", label="refit loss (train_full)")
    ax.axvline(history.best_epoch, color="grey", linestyle=":", label=f"best epoch {history.best_epoch}")
    ax.set(xlabel="epoch", ylabel="cross-entropy loss (nats)", title=f"{title}: loss")
    ax.legend()
    fig.tight_layout()
    figures["loss_curves.png"] = fig
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("val_recall_at_20", "Recall@20"), ("val_recall_at_10", "Recall@10"),
                       ("val_mrr_at_20", "MRR@20"), ("val_mrr_at_10", "MRR@10")):
        ax.plot(epochs, [r[key] for r in history.select], marker="o", label=f"valid {label}")
    ax.axvline(history.best_epoch, color="grey", linestyle=":")
    ax.set(xlabel="epoch", ylabel="metric value", title=f"{title}: validation metrics", ylim=(0, 1))
    ax.legend()
    fig.tight_layout()
    figures["metric_curves.png"] = fig
    return figures


def plot_curves(history: History, out_dir: Path, title: str) -> list[Path]:
    """The curves of :func:`curve_figures`, saved as PNG files in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in curve_figures(history, title).items():
        paths.append(out_dir / name)
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def by_length_figure(result: EvalResult, title: str = "Accuracy by prefix length") -> plt.Figure:
    """Bar chart of Recall@20 and MRR@20 per prefix-length bucket."""
    names = list(result.by_length)
    recall = [result.by_length[b]["recall_at_20"] for b in names]
    mrr = [result.by_length[b]["mrr_at_20"] for b in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(x - 0.2, recall, 0.4, label="Recall@20")
    ax.bar(x + 0.2, mrr, 0.4, label="MRR@20")
    ax.set_xticks(x, [f"{b}\n(n={result.by_length[b]['predictions']:,})" for b in names])
    ax.set_xlabel("prefix length (clicks before the target)")
    ax.set_ylabel("metric value")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_by_length(result: EvalResult, path: str | Path, title: str = "Accuracy by prefix length") -> Path:
    """:func:`by_length_figure`, saved as a PNG."""
    fig = by_length_figure(result, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
