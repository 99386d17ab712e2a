"""A markdown table of trained bundles (teacher and students): accuracy, agreement, size, training time.

`edgekd inspect --table runs/sst2/teacher runs/sst2/bilstm ...` prints it. The numbers come from the bundles'
manifests (verified on open), so a results page is regenerated, never typed.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgekd.bundle import Bundle


def _seconds(metrics: dict) -> float:
    if "train_seconds" in metrics:
        return float(metrics["train_seconds"])
    return float(sum(stage.get("seconds", 0.0) for stage in metrics.get("stages", [])))


def table(bundles: Sequence[Bundle]) -> str:
    """One row per bundle; dev metrics as percentages."""
    names = list(dict.fromkeys(k for b in bundles for k in b.manifest.metrics.get("dev", {}) if k != "examples"))
    header = ["bundle", "kind", "model", "parameters", *[f"dev {n}" for n in names], "retained", "agreement", "train s", "sha256"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for bundle in bundles:
        m = bundle.manifest
        arch = m.architecture
        model = arch.get("student") or arch.get("family")
        if arch.get("layers"):
            model = f"{model} {arch['layers']}L/{arch['hidden']}"
        elif arch.get("hidden"):
            model = f"{model} {arch['hidden']}x2"
        dev = m.metrics.get("dev", {})
        retained = next((v for k, v in m.metrics.items() if k.endswith("_retained")), None)
        agreement = m.metrics.get("agreement_with_teacher")
        row = [
            str(bundle.path), m.kind, str(model), f"{arch.get('parameters', 0):,}",
            *[f"{100 * dev[n]:.2f}" if n in dev else "" for n in names],
            f"{100 * retained:.1f}%" if retained is not None else "",
            f"{100 * agreement:.2f}" if agreement is not None else "",
            f"{_seconds(m.metrics):.0f}", bundle.sha256[:12],
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
