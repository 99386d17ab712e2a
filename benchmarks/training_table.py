"""A markdown table of trained bundles (teacher and students): accuracy, agreement, size, training time.

`edgekd inspect --table runs/sst2/teacher runs/sst2/bilstm ...` prints it. The numbers come from the bundles'
manifests (verified on open), so a results page is regenerated, never typed.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgekd.bundle import Bundle
from edgekd.records import Metrics
from edgekd.seeds import mean_sd, read_summary


def _seconds(metrics: Metrics) -> float:
    """Training seconds: a teacher records them whole, a student per distillation stage."""
    if metrics.extra("train_seconds") is not None:
        return float(metrics.extra("train_seconds"))
    return float(sum(stage.get("seconds", 0.0) for stage in metrics.extra("stages", [])))


def table(bundles: Sequence[Bundle]) -> str:
    """One row per bundle; dev metrics as percentages; for a student trained under several seeds (a
    <student>.seeds.json beside it), the mean ± sd of each dev metric over them."""
    scores = {b.path: b.manifest.metrics.scores() for b in bundles}
    names = list(dict.fromkeys(k for s in scores.values() if s for k in s.values))
    seeded = {b.path: read_summary(b.path) for b in bundles}
    spread = [f"dev {n} over seeds" for n in names] if any(seeded.values()) else []
    header = ["bundle", "kind", "model", "parameters", *[f"dev {n}" for n in names], *spread, "retained", "agreement",
              "train s", "sha256"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for bundle in bundles:
        m = bundle.manifest
        arch = m.architecture
        model = arch.shape("student") or arch.family
        if arch.shape("layers"):
            model = f"{model} {arch.shape('layers')}L/{arch.shape('hidden')}"
        elif arch.shape("hidden"):
            model = f"{model} {arch.shape('hidden')}x2"
        dev = scores[bundle.path].values if scores[bundle.path] else {}
        # A student records how much of the teacher's metric it retained as `<metric>_retained`.
        retained = next((v for k, v in (m.metrics.model_extra or {}).items() if k.endswith("_retained")), None)
        agreement = m.metrics.extra("agreement_with_teacher")
        row = [
            str(bundle.path), m.kind, str(model), f"{arch.parameters or 0:,}",
            *[f"{100 * dev[n]:.2f}" if n in dev else "" for n in names],
            *[mean_sd(seeded[bundle.path] or {}, n) for n in (names if spread else [])],
            f"{100 * retained:.1f}%" if retained is not None else "",
            f"{100 * agreement:.2f}" if agreement is not None else "",
            f"{_seconds(m.metrics):.0f}", bundle.sha256[:12],
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
