"""PNG figures of a run: confusion matrix, learning curves and reliability diagrams (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from models.atomic import atomic_save  # noqa: E402
from models.calibration import Reliability  # noqa: E402


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, label="row-normalised (recall)")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    return _save(fig, path)


def plot_learning_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, [h["train_loss"] for h in history], label="train loss (total)")
    a.plot(epochs, [h["val_loss"] for h in history], label="val loss (weighted CE)")
    a.set_xlabel("epoch")
    a.legend()
    a.set_yscale("log")
    b.plot(epochs, [h.get("val_accuracy", np.nan) for h in history], label="val accuracy")
    b.plot(epochs, [h.get("val_balanced_accuracy", np.nan) for h in history], label="val balanced accuracy")
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_reliability(panels: Sequence[tuple[str, Sequence[tuple[str, Reliability]]]], path: str | Path,
                     title: str = "") -> Path:
    """Reliability diagrams, one panel per ``(panel title, [(curve label, Reliability), ...])``: per confidence bin,
    accuracy against mean top-1 probability (on the diagonal: probabilities that mean what they say), and below it
    the share of images in each bin (a bin holding few images says little)."""
    fig, axes = plt.subplots(2, len(panels), figsize=(5.4 * len(panels), 6.4), squeeze=False, sharex=True,
                             gridspec_kw={"height_ratios": [3, 1]})
    for (name, curves), top, bottom in zip(panels, axes[0], axes[1]):
        top.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="perfectly calibrated")
        for label, r in curves:
            full = [i for i, c in enumerate(r.count) if c]
            line, = top.plot([r.confidence[i] for i in full], [r.accuracy[i] for i in full], marker="o", ms=4,
                             label=f"{label} (ECE {r.ece:.3f})")
            bottom.stairs(np.asarray(r.count) / max(r.n, 1), r.edges, color=line.get_color())
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        top.set_title(name, fontsize=10)
        top.legend(loc="upper left", fontsize=8)
        bottom.set_xlabel(f"confidence: top-1 probability ({curves[0][1].bins} bins)" if curves else "confidence")
        bottom.set_ylabel("share of images")
        bottom.set_ylim(bottom=0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    try:
        return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
