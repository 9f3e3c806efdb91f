"""PNG plots of a round's loss curve and of an evaluation, drawn headless with matplotlib."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    return plt


def smooth(values: Sequence[float], window: int) -> list[float]:
    """A trailing moving average, so the trend shows through step-to-step noise."""
    out: list[float] = []
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def loss_plot(losses: Sequence[float], path: Path, title: str) -> Path:
    plt = _pyplot()
    steps = list(range(1, len(losses) + 1))
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    axes.plot(steps, losses, color="#9ab", linewidth=1, label="loss per step")
    if len(losses) >= 10:
        axes.plot(steps, smooth(losses, max(2, len(losses) // 10)), color="#d35", linewidth=2, label="moving average")
    axes.set_xlabel("optimiser step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
    return path


def bar_plot(groups: dict[str, dict[str, float]], path: Path, title: str) -> Path:
    """Metrics side by side for each model: {model: {metric: value}}."""
    plt = _pyplot()
    models = list(groups)
    metrics = sorted({metric for values in groups.values() for metric in values})
    width = 0.8 / max(1, len(models))
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    for i, model in enumerate(models):
        xs = [m + i * width for m in range(len(metrics))]
        axes.bar(xs, [groups[model].get(metric, 0.0) for metric in metrics], width=width, label=model)
    axes.set_xticks([m + width * (len(models) - 1) / 2 for m in range(len(metrics))], metrics)
    axes.set_title(title)
    axes.grid(alpha=0.3, axis="y")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
    return path
