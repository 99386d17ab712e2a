"""The report's plots (matplotlib, no display): accuracy against latency with the Pareto front, latency
distributions, size bars. Each is written as a PNG and returned for embedding in report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .report_model import Report
from .report_view import display_names, source_words

PLOTS = {
    "accuracy_latency": "Dev accuracy against p50 latency (real inputs); the Pareto front joins the models no other beats on both",
    "latency_distribution": "Latency of each measured query (real inputs), one box per model",
    "size": "Model file size and its gzip size",
}


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (latency, accuracy) that no other point beats on both (lower latency, higher accuracy)."""
    front = []
    for i, (latency, accuracy) in enumerate(points):
        dominated = any(
            (other_latency <= latency and other_accuracy >= accuracy) and (other_latency, other_accuracy) != (latency, accuracy)
            for j, (other_latency, other_accuracy) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def draw(report: Report, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = report.settings.threads[0]
    models = report.models
    # Short names (bert-base-shape, long names cut in the middle), as the tables show them.
    # The reference is marked: a model measured twice (as a candidate and as the reference) gets two bars, not one.
    names = {id(m): name + (" (reference)" if m.role == "reference" else "") for m, name in zip(models, display_names(report))}
    source = source_words(report.target.latency_source)
    paths: dict[str, Path] = {}

    scored = [(m, m.accuracy) for m in models if m.accuracy is not None]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    if scored:
        points = [(m.run_at(threads).real.p50, 100 * accuracy.value) for m, accuracy in scored]
        ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:blue", zorder=3)
        for (model, _), (x, y) in zip(scored, points):
            ax.annotate(names[id(model)], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        front = pareto(points)
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="tab:orange", label="Pareto front", zorder=2)
        ax.legend(loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency, ms (batch 1, {threads} thread(s), {source})", fontsize=9)
    ax.set_ylabel("dev accuracy, %")
    ax.set_title("Accuracy against latency")
    ax.grid(True, which="both", alpha=0.3)
    paths["accuracy_latency"] = _save(fig, out / "accuracy_latency.png")

    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(models) + 1.5))
    ax.boxplot([m.run_at(threads).latencies_ms.real for m in models], orientation="horizontal", showfliers=True)
    ax.set_yticks(range(1, len(models) + 1), [names[id(m)] for m in models], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"latency per query, ms ({source})", fontsize=9)
    ax.set_title("Latency distributions (real dev inputs)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    paths["latency_distribution"] = _save(fig, out / "latency_distribution.png")

    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(models) + 1.5))
    labels = [names[id(m)] for m in models]
    ax.barh(labels, [m.size.bytes / 1e6 for m in models], color="tab:blue", label="file")
    ax.barh(labels, [m.size.gzip_bytes / 1e6 for m in models], color="tab:green", height=0.4, label="gzip")
    ax.set_xscale("log")
    ax.set_xlabel("MB")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("Size")
    ax.legend(loc="lower right")
    paths["size"] = _save(fig, out / "size.png")
    return paths


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    for ax in fig.axes:  # log axes read as plain numbers (2, 5, 20), not 2 x 10^0
        if ax.get_xscale() == "log":
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:g}" if str(f"{x:g}")[0] in "25" else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
