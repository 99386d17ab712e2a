"""The model card (README.md) written into every bundle: Hugging Face hub metadata (front matter built with
huggingface_hub's `ModelCardData` and `EvalResult`) and sections a reader needs, with loading snippets that run.

The card names no machine path: lineage is given by bundle folder names. Facts a derived bundle cannot know from its
own manifest (the teacher's license and hub id, the dataset, the teacher's accuracy) come from its parent's card and
manifest, read when the card is written (`Card.of`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.records import DEPLOYABLE_FORMATS

if TYPE_CHECKING:
    from edgekd.bundle import Manifest

logger = logging.getLogger(__name__)

# The hub ids of the packaged teachers (`edgekd.packaged`).
PACKAGED_HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "mpnet": "sentence-transformers/all-mpnet-base-v2"}
# `library_name` by format: transformers for Hugging Face families in torch; the hub's file-format libraries otherwise.
_LIBRARY = {"torch": "transformers", "onnx": "onnx", "tflite": "tflite", "executorch": "executorch"}
# Parents followed when tracing a bundle's lineage (teacher -> student -> export -> quantize is four).
_MAX_ANCESTORS = 8
_EXAMPLE = {"single": ("what a lovely day",), "pair": ("The cat sat on the mat.", "A cat was sitting on the mat.")}


@dataclass
class Card:
    """The facts a card states beyond its manifest's own fields."""

    license: str | None = None
    base_model: str | None = None
    base_model_note: str | None = None
    datasets: list[str] = field(default_factory=list)
    dataset_note: str = ""
    language: str | None = None
    dataset_config: str | None = None
    split: str = "dev"
    seed: int | None = None
    lineage: list[str] = field(default_factory=list)  # folder names, nearest parent first
    teacher_dev: dict[str, Any] | None = None

    @classmethod
    def of(cls, manifest: Manifest) -> Card:
        """Gather the facts: from the recipe a teacher or student stage recorded, else from the parent bundle."""
        card = cls(seed=manifest.produced_by.seed)
        ancestors = _ancestors(manifest)
        card.lineage = [name for name, _ in ancestors]
        inherited = _parent_metadata(manifest)
        config = manifest.produced_by.config
        teacher_model = (config.get("teacher") or {}).get("model") if isinstance(config.get("teacher"), dict) else None
        if teacher_model is not None:
            card._teacher_facts(str(teacher_model))
        elif inherited:
            card.license = inherited.get("license") if inherited.get("license") != "unknown" else None
            card.base_model = inherited.get("base_model")
            if card.base_model is None:
                card.base_model_note = ("The parent bundle's card names no base model (the teacher was read from a "
                                        "local folder, or its source is not known).")
        if isinstance(config.get("data"), dict):
            card._data_facts(config["data"], manifest.task.name)
        elif inherited.get("datasets"):
            card.datasets = list(inherited["datasets"])
        if card.language is None and inherited.get("language"):
            card.language = inherited["language"]
        for _, parent in ancestors:
            if card.seed is None:
                card.seed = parent.produced_by.seed
        card.teacher_dev = _teacher_dev(manifest, ancestors)
        return card

    def _teacher_facts(self, model: str) -> None:
        from edgekd.packaged import PACKAGED_TEACHERS

        folder: Path | None = None
        if model in PACKAGED_TEACHERS:
            self.base_model = PACKAGED_HUB_IDS[model]
            folder = _packaged_folder(model)
        elif Path(model).expanduser().exists():
            folder = Path(model).expanduser()
            self.base_model_note = "The teacher was read from a local folder, so no hub id is given as `base_model`."
        else:
            self.base_model = model
            folder = _hub_cache_folder(model)
        if folder is not None:
            self.license = _front_matter(folder / "README.md").get("license")

    def _data_facts(self, data: dict[str, Any], task_name: str) -> None:
        from edgekd.hf_data import hub_name
        from edgekd.tasks import PRESETS

        preset = PRESETS.get(str(data.get("task")))
        self.language = "en" if preset is not None else None
        dataset, config = data.get("dataset"), data.get("dataset_config")
        if dataset is None and preset is not None:
            dataset, config = preset.dataset, preset.dataset_config
        self.split = str(data.get("dev_split") or (preset.dev_split if preset else "dev"))
        if data.get("path") is None and dataset is not None and not Path(str(dataset)).expanduser().exists():
            hub_id, config = hub_name(str(dataset), config)
            self.datasets, self.dataset_config = [hub_id], config
            self.dataset_note = f"the hub dataset `{hub_id}`" + (f" (config `{config}`)" if config else "")
        else:
            self.datasets = [task_name]
            self.dataset_note = f"the `{task_name}` task's local files (no hub dataset id)"


def model_card(manifest: Manifest) -> str:
    """Render the card from a manifest (its file table may still be empty: the card is written before hashing)."""
    from huggingface_hub import ModelCard

    card = Card.of(manifest)
    data = _card_data(manifest, card)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + _body(manifest, card)))


def _card_data(m: Manifest, card: Card) -> Any:
    from huggingface_hub import EvalResult, ModelCardData

    hf_family = m.architecture.family != "bilstm"
    library = _LIBRARY[m.format] if hf_family or m.format != "torch" else "pytorch"
    quantization = (m.architecture.quantize or {}).get("method") or (m.architecture.quantize or {}).get("scheme")
    tags = ["edgekd", "distillation", m.kind, m.format, m.architecture.family]
    if m.format == "onnx" and hf_family:
        tags.append("optimum")
    if quantization:
        tags.append(str(quantization))
    scores = m.metrics.scores()
    results = []
    if scores is not None:
        dataset = card.datasets[0] if card.datasets else m.task.name
        args = {"examples": scores.examples, **({"seed": card.seed} if card.seed is not None else {})}
        results = [
            EvalResult(task_type="text-classification", dataset_type=dataset, dataset_name=m.task.name,
                       dataset_config=card.dataset_config, dataset_split=card.split, metric_type=name, metric_value=value, metric_args=args)
            for name, value in scores.values.items()
        ]
    return ModelCardData(
        license=card.license or "unknown",
        base_model=card.base_model,
        datasets=card.datasets or [m.task.name],
        language=card.language,
        library_name=library,
        pipeline_tag="text-classification",
        tags=tags,
        model_name=_title(m),
        eval_results=results or None,
    )


def _title(m: Manifest) -> str:
    return f"{m.task.name} {m.architecture.family} {m.kind} ({m.format})"


def _body(m: Manifest, card: Card) -> str:
    task = m.task
    scores = m.metrics.scores()
    lines = [
        f"# {_title(m)}",
        "",
        (f"A {m.architecture.family} {m.kind} for the {task.kind}-text {task.problem} task `{task.name}`, written by "
         f"edgekd {m.edgekd_version} (stage `{m.produced_by.stage}`)."),
        "",
        "## Intended use",
        "",
        (f"Classifying {'single texts' if task.kind == 'single' else 'pairs of texts'} into the labels of `{task.name}`, "
         "on text like the training data's. Labels, in id order:"),
        "",
        *(f"- {i}: {name}" for i, name in enumerate(task.labels)),
        "",
        "## Training data",
        "",
        f"Trained and measured on {card.dataset_note or f'the data of the `{task.name}` task'}"
        + (f"; scores are on its `{card.split}` split." if scores else "."),
        "",
        "## How it was made",
        "",
        *_lineage_lines(m, card),
        "",
        "## Evaluation",
        "",
        (f"- {scores.describe()}" if scores else "- not measured"),
        *([f"- seed: {card.seed}"] if card.seed is not None else []),
        "",
        "## Limitations",
        "",
        *_limitations(m, card),
        "",
        "## Architecture",
        "",
        *(f"- {k}: {_fact(v)}" for k, v in m.architecture.facts().items()),
        "",
        "## How to load",
        "",
        *_snippets(m),
    ]
    return "\n".join(lines) + "\n"


def _fact(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)


def _lineage_lines(m: Manifest, card: Card) -> list[str]:
    lines = [f"- stage: `{m.produced_by.stage}`"]
    if card.lineage:
        lines.append("- from: " + " <- ".join(f"`{name}`" for name in card.lineage) + " (bundle folders, nearest first)")
    else:
        lines.append("- from: no parent bundle")
    lines.append(f"- teacher base model: `{card.base_model}`" if card.base_model else
                 f"- teacher base model: not named. {card.base_model_note or 'Its source is not known to this bundle.'}")
    if card.license is None:
        lines.append("- license: unknown (the teacher's card gives none that edgekd could read); check the teacher's "
                     "license before using this model.")
    lines.append(f"- git commit: {m.produced_by.git_commit or 'unknown'}")
    lines.append(f"- tokenizer: {m.tokenizer.type}, max length {m.tokenizer.max_length}, lowercase {m.tokenizer.lowercase}")
    return lines


def _limitations(m: Manifest, card: Card) -> list[str]:
    lines = [f"- Inputs longer than {m.tokenizer.max_length} tokens are cut; the model saw only `{m.task.name}` data."]
    scores = m.metrics.scores()
    if m.kind == "student" and scores and card.teacher_dev:
        drops = [f"{name} {value:.4f} vs the teacher's {float(card.teacher_dev[name]):.4f} "
                 f"({value - float(card.teacher_dev[name]):+.4f})"
                 for name, value in scores.values.items() if isinstance(card.teacher_dev.get(name), int | float)]
        if drops:
            lines.append("- Accuracy against the teacher: " + "; ".join(drops) + ".")
    elif m.kind == "student":
        lines.append("- The teacher's scores are not known to this bundle, so the drop against it is not given.")
    parity = m.metrics.parity
    if parity:
        lines.append("- Exported or quantized from a parent bundle: outputs differ from it within the parity checks "
                     "recorded in manifest.json.")
    return lines


def _snippets(m: Manifest) -> list[str]:
    texts = _EXAMPLE[m.task.kind]
    runtime_input = repr(texts[0]) if m.task.kind == "single" else repr(tuple(texts))
    hf_family = m.architecture.family != "bilstm"
    pipeline_input = repr(texts[0]) if m.task.kind == "single" else repr({"text": texts[0], "text_pair": texts[1]})
    blocks = []
    if m.format == "torch" and hf_family:
        blocks.append(("With transformers, from this folder:", [
            "from transformers import pipeline",
            "",
            'classifier = pipeline("text-classification", model=".")',
            f"print(classifier({pipeline_input}))",
        ]))
    elif m.format == "torch":
        blocks.append(("With edgekd (a BiLSTM is not a transformers model), from this folder:", [
            "from edgekd.torch_classifier import load_classifier",
            "",
            f'print([p.label for p in load_classifier(".").predict([{runtime_input}])])',
        ]))
    if m.format == "onnx" and hf_family:
        blocks.append(("With Optimum's ONNX Runtime classes, from this folder:", [
            "from optimum.onnxruntime import ORTModelForSequenceClassification",
            "from transformers import AutoTokenizer, pipeline",
            "",
            'model = ORTModelForSequenceClassification.from_pretrained(".")',
            'classifier = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained("."))',
            f"print(classifier({pipeline_input}))",
        ]))
    if m.format in DEPLOYABLE_FORMATS:
        blocks.append(("With edgekd's runtime (numpy, tokenizers and ONNX Runtime, LiteRT or ExecuTorch), from this folder:", [
            "from edgekd.runtime.classifier import Classifier",
            "",
            f'print([p.label for p in Classifier.load(".").predict([{runtime_input}])])',
        ]))
    lines = []
    for intro, code in blocks:
        lines += [intro, "", "```python", *code, "```", ""]
    # A pair is one argument with a tab between its texts (bash's $'...' quoting writes the tab).
    shell_texts = json.dumps(texts[0]) if m.task.kind == "single" else "$'" + "\\t".join(texts) + "'"
    lines += ["From the command line:", "", "```bash", f"edgekd predict . {shell_texts}", "```"]
    return lines


def _ancestors(manifest: Manifest) -> list[tuple[str, Manifest]]:
    """(folder name, manifest) of each parent bundle that can still be read, nearest first."""
    from edgekd.bundle import MANIFEST, parse_manifest
    from edgekd.errors import BundleError

    found: list[tuple[str, Manifest]] = []
    parent = manifest.parent
    while parent is not None and len(found) < _MAX_ANCESTORS:
        path = Path(parent.path)
        try:
            current = parse_manifest((path / MANIFEST).read_bytes(), where=path / MANIFEST)
        except (OSError, BundleError):
            found.append((path.name, manifest))  # named, though its manifest is gone
            logger.info("%s: the parent bundle cannot be read; the card names it only", path)
            break
        found.append((path.name, current))
        parent = current.parent
    return found


def _parent_metadata(manifest: Manifest) -> dict[str, Any]:
    if manifest.parent is None:
        return {}
    from edgekd.bundle import CARD

    return _front_matter(Path(manifest.parent.path) / CARD)


def _teacher_dev(manifest: Manifest, ancestors: list[tuple[str, Manifest]]) -> dict[str, Any] | None:
    """The teacher's dev scores: a student's record of them, or the teacher bundle's own, up the lineage."""
    for current in [manifest, *(a for _, a in ancestors)]:
        if current.kind == "teacher" and current is not manifest:
            return current.metrics.dev
        recorded = current.metrics.extra("teacher_dev")
        if recorded:
            return dict(recorded)
    return None


def _front_matter(path: Path) -> dict[str, Any]:
    """The YAML front matter of a model card; {} when there is no card or it has none."""
    from huggingface_hub import metadata_load

    try:
        return metadata_load(path) or {} if path.is_file() else {}
    except (OSError, ValueError) as exc:
        logger.info("%s: front matter not read (%s)", path, exc)
        return {}


def _packaged_folder(name: str) -> Path | None:
    from edgekd.errors import ConfigError
    from edgekd.packaged import packaged_dir

    try:
        return packaged_dir(name)
    except ConfigError:
        return None


def _hub_cache_folder(model: str) -> Path | None:
    """The folder of a hub model's README.md in the local hub cache, when it is there (the hub is never asked)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model, "README.md")
    except ValueError:  # not a valid repo id
        return None
    return Path(found).parent if isinstance(found, str) else None
