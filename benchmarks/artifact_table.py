"""A markdown table of derived bundles (exported, quantized, pruned): what was done, dev accuracy, agreement and
SQNR against the parent, size. `edgekd inspect --table` prints it for bundles of those stages; the numbers come from
the manifests (verified on open) and the model files themselves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgekd.bundle import Bundle
from edgekd.footprint import footprint
from edgekd.records import MODEL_FILES, Metrics


def _what(bundle: Bundle) -> str:
    m = bundle.manifest
    arch = m.architecture
    steps = []
    export = arch.export or {}
    if m.format != "torch":
        steps.append(m.format + (" fused" if export.get("fusions") else "") + (f" buckets {export['buckets']}" if "buckets" in export else ""))
    for key, details in (("prune", arch.prune), ("inc", arch.inc), ("quantize", arch.quantize)):
        if details:
            steps.append(_describe(key, details))
    return ", ".join(steps) or m.format


def _describe(key: str, details: dict[str, Any]) -> str:
    method = details.get("method", key)
    if method == "vocab":
        return f"vocab {details['vocab_before']} -> {details['vocab']}" + (f" (min count {details['min_count']})" if details.get("min_count", 1) > 1 else "")
    if method == "structured":
        return f"heads {details['heads_before']} -> {details['heads_kept']}, FFN {details['ffn_before']} -> {details['ffn_kept']}"
    if method == "magnitude":
        return f"magnitude sparsity {details['sparsity']}"
    if method == "inc":
        return f"INC RTN {details['chosen']['bits']}-bit"
    if method == "onnx-static":
        return f"static INT8 ({details.get('calibration')}, {details.get('activations')} activations)"
    return method


def _parity(metrics: Metrics) -> dict[str, Any]:
    """The parity row of the dev inputs against the parent, or {}."""
    rows = (metrics.parity or {}).get("outputs", [])
    return next((r for r in rows if r["name"] == "dev"), {})


def table(bundles: Sequence[Bundle]) -> str:
    header = ["bundle", "what", "dev accuracy", "float parent", "agreement", "SQNR dB", "file MB", "gzip MB", "parameters"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for bundle in bundles:
        m = bundle.manifest
        scores, parent = m.metrics.scores(), m.metrics.parent_dev or {}
        accuracy = scores.values.get("accuracy") if scores else None
        parity = _parity(m.metrics)
        size = footprint(bundle.file(MODEL_FILES[m.format]))
        sqnr = parity.get("sqnr_db")
        row = [
            bundle.path.name,
            _what(bundle),
            f"{100 * accuracy:.2f} ({scores.examples})" if scores and accuracy is not None else "",
            f"{100 * parent['accuracy']:.2f}" if "accuracy" in parent else "",
            f"{100 * parity['agreement']:.2f}" if parity else "",
            f"{sqnr:.1f}" if isinstance(sqnr, float) else str(sqnr or ""),
            f"{size['bytes'] / 1e6:.2f}",
            f"{size['gzip_bytes'] / 1e6:.2f}",
            f"{size['parameters']:,}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
