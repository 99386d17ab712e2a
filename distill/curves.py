"""Training curves written into a bundle: the per-step history as CSV and a PNG plot of loss and dev metric."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def write_curves(history: list[dict[str, float]], directory: Path, title: str, stem: str = "training_curves") -> list[Path]:
    """Write `<stem>.csv` and `<stem>.png` into `directory`; returns their paths."""
    if not history:
        return []
    columns = list(dict.fromkeys(key for row in history for key in row))
    csv_path = directory / f"{stem}.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, loss_axis = plt.subplots(figsize=(7, 3.5), dpi=100)
    steps = [row["step"] for row in history]
    loss = np.asarray([row["loss"] for row in history])
    loss_axis.plot(steps, loss, color="tab:blue", linewidth=0.6, alpha=0.35)
    window = max(1, len(loss) // 50)  # a moving average shows the trend of a long, noisy run
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    loss_axis.plot(steps[window - 1 :], smooth, color="tab:blue", linewidth=1.5)
    loss_axis.set_xlabel("optimizer step")
    loss_axis.set_ylabel("train loss", color="tab:blue")
    # Evaluations during training are on the selection split (histories written before it existed say dev_).
    evaluated_keys = [key for key in columns if key.startswith(("selection_", "dev_"))]
    if evaluated_keys:
        metric_axis = loss_axis.twinx()
        evaluated = [row for row in history if evaluated_keys[0] in row]
        metric_axis.plot([row["step"] for row in evaluated], [row[evaluated_keys[0]] for row in evaluated], "o-", color="tab:red")
        metric_axis.set_ylabel(evaluated_keys[0].replace("_", " "), color="tab:red")
    loss_axis.set_title(title)
    figure.tight_layout()
    png_path = directory / f"{stem}.png"
    figure.savefig(png_path)
    plt.close(figure)
    return [csv_path, png_path]
