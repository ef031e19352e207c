"""PNG figures for detection experiments (matplotlib, Agg backend, written atomically).

* :func:`plot_mean_distributions`: the mean uncertainty distribution ``E_x[P^char_x]`` (as a
  fraction of the ``I`` realisations per distance to the medoid), one panel per set
  (original, CW, DR, ...) - the paper's Fig. 1;
* :func:`plot_histograms`: overlaid histograms of a scalar feature (e.g. entropy) per set;
* :func:`plot_roc_curves`: ROC curves, one panel per labelled score set (the others faint
  behind it), each titled with its AUROC, bootstrap interval and n;
* :func:`distinct_styles`: line styles that keep overlapping curves in one panel apart;
* :func:`plot_uncertainty_pair`: two ``P^char`` histograms side by side (the demo).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..fileio import atomic_write  # noqa: E402
from .detection import AUROC_CI_LEVEL, auroc, auroc_interval, roc_curve  # noqa: E402


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"), suffix=".png")
    plt.close(fig)
    return path


def mean_distribution(histograms) -> np.ndarray:
    """``E_x[P^char_x]`` normalised per input: mean over rows of ``hist / hist.sum()``."""
    h = np.asarray(histograms, dtype=np.float64)
    h = np.atleast_2d(h)
    return (h / np.clip(h.sum(axis=1, keepdims=True), 1e-12, None)).mean(axis=0)


def plot_mean_distributions(sets: Mapping[str, np.ndarray], path: str | os.PathLike, *,
                            title: str = "Mean uncertainty distribution E_x[P^char_x]") -> Path:
    """One bar panel per entry of ``sets`` (label -> ``(N, C+1)`` histograms)."""
    labels = list(sets)
    if not labels:
        raise ValueError("no sets to plot")
    cols = min(3, len(labels))
    rows = int(np.ceil(len(labels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True)
    for k, (ax, label) in enumerate(zip(axes.flat, labels)):
        h = np.atleast_2d(np.asarray(sets[label]))
        mean = mean_distribution(h)
        benign = "original" in label.lower() or "benign" in label.lower()
        ax.bar(np.arange(len(mean)), mean, color="tab:blue" if benign else "tab:red")
        ax.set_title(f"{label} (n={h.shape[0]})", fontsize=10)
        if k // cols == rows - 1 or k + cols >= len(labels):
            ax.set_xlabel("edit distance to medoid")
        ax.set_xticks(np.arange(0, len(mean), max(1, len(mean) // 10)))
        ax.set_ylim(0, 1)
    for ax in axes.flat[len(labels):]:
        ax.axis("off")
    for r in range(rows):
        axes[r, 0].set_ylabel("fraction of realisations")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return _save(fig, path)


def plot_histograms(sets: Mapping[str, Sequence[float]], path: str | os.PathLike, *, xlabel: str = "entropy",
                    title: str | None = None, bins: int = 30) -> Path:
    """Overlaid, density-normalised histograms of a scalar feature per set."""
    values = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in sets.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()]) if values else np.array([])
    if finite.size == 0:
        finite = np.array([0.0, 1.0])
    lo, hi = float(finite.min()), float(finite.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, v in values.items():
        ax.hist(v[np.isfinite(v)], bins=edges, alpha=0.5, density=True, label=f"{label} (n={v.size})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title(title or f"{xlabel} per set")
    return _save(fig, path)


def distinct_styles(n: int) -> list[dict]:
    """``n`` keyword sets for ``ax.plot`` that differ in colour, dash pattern, marker and width.

    Widths shrink from the first curve to the last and markers sit at staggered places along
    each line, so a curve drawn exactly on top of another still leaves the one below visible.

    Example:
        >>> styles = distinct_styles(5)
        >>> len({(s["color"], s["linestyle"], s["marker"]) for s in styles}), styles[0]["lw"] > styles[-1]["lw"]
        (5, True)
    """
    colours = plt.get_cmap("tab10").colors
    dashes = ("-", "--", "-.", ":")
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    return [{"color": colours[k % len(colours)], "linestyle": dashes[k % len(dashes)],
             "marker": markers[k % len(markers)], "lw": max(0.8, 3.0 - 0.45 * k), "markersize": 4.5,
             "markevery": (0.03 * (k % 4), 0.12), "fillstyle": "none" if k % 2 else "full"} for k in range(n)]


def plot_roc_curves(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], path: str | os.PathLike, *,
                    title: str = "ROC") -> Path:
    """ROC curves from ``label -> (labels, scores)``, one panel each, so no curve hides another.

    Every panel draws the other curves faint grey behind its own for comparison, and is
    titled with the AUROC, its bootstrap interval and n (adversarial/benign). Score sets
    with a single class have no ROC curve and get no panel.
    """
    shown = {label: (np.asarray(y), np.asarray(s)) for label, (y, s) in curves.items()
             if len(np.unique(np.asarray(y))) == 2}
    cols = max(1, min(4, len(shown)))
    rows = max(1, int(np.ceil(len(shown) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.1 * rows + 0.4), squeeze=False,
                             sharex=True, sharey=True)
    lines = {label: roc_curve(y, s)[:2] for label, (y, s) in shown.items()}
    for k, (ax, style, (label, (y, s))) in enumerate(zip(axes.flat, distinct_styles(len(shown)), shown.items())):
        for other, (fpr, tpr) in lines.items():
            if other != label:
                ax.plot(fpr, tpr, color="0.82", lw=0.9)
        fpr, tpr = lines[label]
        ax.plot(fpr, tpr, color=style["color"], lw=1.8)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        low, high = auroc_interval(y, s)
        ax.set_title(f"{label}\nAUC {auroc(y, s):.3f} [{low:.2f}, {high:.2f}], n={int(np.sum(y == 1))}/"
                     f"{int(np.sum(y == 0))}", fontsize=8)
        # a margin, so a perfect detector's curve is not hidden in the frame
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        if k % cols == 0:
            ax.set_ylabel("true-positive rate")
        if k + cols >= len(shown):  # the last panel of its column
            ax.set_xlabel("false-positive rate")
            ax.tick_params(labelbottom=True)
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no set with both classes", ha="center", va="center")
    fig.suptitle(f"{title}\n(AUC [{100 * AUROC_CI_LEVEL:g} % bootstrap interval], n = adversarial/benign; "
                 "the other panels' curves in grey)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_uncertainty_pair(left: tuple[str, np.ndarray], right: tuple[str, np.ndarray], path: str | os.PathLike,
                          *, title: str = "P^char: edit distance of each realisation to the medoid") -> Path:
    """Two ``P^char`` histograms side by side (counts of realisations per distance)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, (label, hist), colour in zip(axes, (left, right), ("tab:blue", "tab:red")):
        h = np.asarray(hist)
        ax.bar(np.arange(len(h)), h, color=colour)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("edit distance to medoid")
    axes[0].set_ylabel("realisations")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


__all__ = ["distinct_styles", "mean_distribution", "plot_histograms", "plot_mean_distributions", "plot_roc_curves",
           "plot_uncertainty_pair"]
