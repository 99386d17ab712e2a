"""The model card (README.md) written into every bundle, in the Hugging Face hub's style."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekd.bundle import Manifest

_LOADERS = {
    "torch": (
        "```python\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
        "model = AutoModelForSequenceClassification.from_pretrained(\"{path}\")\n"
        "tokenizer = AutoTokenizer.from_pretrained(\"{path}\")\n```"
    ),
    "onnx": "```python\nfrom edgekd.runtime import Classifier\nClassifier.load(\"{path}\").predict([\"some text\"])\n```",
    "tflite": "```python\nfrom edgekd.runtime import Classifier\nClassifier.load(\"{path}\").predict([\"some text\"])\n```",
}


def model_card(manifest: Manifest, path: str = ".") -> str:
    """Render the card from a manifest (its file table may still be empty: the card is written before hashing)."""
    m = manifest
    task = m.task
    lines = [
        "---",
        "library_name: " + ("transformers" if m.format == "torch" else "edgekd"),
        "pipeline_tag: text-classification",
        "tags: [edgekd, " + m.kind + ", " + m.format + "]",
        "---",
        "",
        f"# {task.name} {m.kind} ({m.format})",
        "",
        f"A {m.architecture.family} {m.kind} for the {task.kind}-text {task.problem} task "
        f"`{task.name}`, written by edgekd {m.edgekd_version} (stage `{m.produced_by.stage}`, {m.produced_by.time}).",
        "",
        "## Labels",
        "",
        *(f"- {i}: {name}" for i, name in enumerate(task.labels)),
        "",
        "## Architecture",
        "",
        *(f"- {k}: {v}" for k, v in m.architecture.facts().items()),
        "",
        "## Metrics",
        "",
        "```json",
        m.metrics.model_dump_json(indent=2),
        "```",
        "",
        "## Lineage",
        "",
        f"- parent: {m.parent.path + ' (sha256 ' + m.parent.sha256[:12] + ')' if m.parent else 'none'}",
        f"- seed: {m.produced_by.seed}",
        f"- git commit: {m.produced_by.git_commit or 'unknown'}",
        f"- tokenizer: {m.tokenizer.type}, max length {m.tokenizer.max_length}, lowercase {m.tokenizer.lowercase}",
        "",
        "## How to load",
        "",
        _LOADERS[m.format].format(path=path),
        "",
    ]
    return "\n".join(lines)
