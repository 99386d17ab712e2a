"""A bundle from a bundle: the one skeleton export, quantize, prune and Neural Compressor share.

`derive` opens and verifies the parent once, lets the stage refuse it, resolves the task data its lineage names, copies
the parent's tokenizer files (and config.json) to the new folder's root, and runs the stage's transform there with a
`Parent` (its encoder at any max length, its data, golden texts and model). It then compares the new model with the parent on the
golden texts, the stage's extra sets and the dev split (all of it or a spread sample), each side reading the text
through its own tokenizer; lets the stage judge that parity; writes golden and commits a typed manifest. A stage is
its transform and its judgement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from edgekd import metrics
from edgekd.bundle import GOLDEN, Bundle, copy_support_files, produced_by, set_tokenizer_max_length, write_golden
from edgekd.config import DataConfig, MethodConfig, to_dict
from edgekd.data import TaskData, lineage_data, load_task_data, resolve_task
from edgekd.batching import spread_by_length
from edgekd.families import family_spec
from edgekd.footprint import footprint
from edgekd.modeling import load_torch_model
from edgekd.parity import OutputParity, Runner, compare_sets
from edgekd.progress import bar, counted
from edgekd.records import MODEL_FILES, Metrics, Scores
from edgekd.runtime.backends import open_backend
from edgekd.runtime.encoder import Encoder, Example, bundle_encoder, collate, load_encoder, sequence_length
from edgekd.runtime.word_tokenizer import WordTokenizer
from edgekd.tasks import Task
from edgekd.writer import BundleWriter, check_output

logger = logging.getLogger(__name__)


@dataclass
class Parent:
    """The opened, verified parent bundle and the task data of its lineage, as a transform reads them."""

    bundle: Bundle
    data_cfg: DataConfig
    task: Task

    @property
    def manifest(self) -> Any:
        return self.bundle.manifest

    @property
    def path(self) -> Path:
        return self.bundle.path

    def encoder(self, max_length: int | None = None) -> Encoder:
        """The parent's tokenizer, at its max length or a shorter one."""
        return bundle_encoder(self.bundle, max_length)

    @cached_property
    def data(self) -> TaskData:
        return load_task_data(self.data_cfg)

    def calibration(self, encoder: Encoder, samples: int) -> list[Example]:
        """`samples` training examples spread over the length range, so that short and long inputs both set the
        activation ranges of a calibrated quantization."""
        train = encoder.encode(self.data.train.texts)
        return [train[i] for i in spread_by_length(np.asarray([sequence_length(e) for e in train]), samples)]

    @cached_property
    def golden(self) -> tuple[dict[str, np.ndarray], list[tuple[str, ...]]]:
        """The stored golden arrays and texts."""
        return self.bundle.read_golden()

    @cached_property
    def model(self) -> nn.Module:
        """The parent's torch model, for reading only (a transform that changes weights loads `fresh_model()`)."""
        return load_torch_model(self.bundle)

    def fresh_model(self) -> nn.Module:
        return load_torch_model(self.bundle)

    def model_file(self) -> Path:
        return self.bundle.file(MODEL_FILES[self.manifest.format])

    def runner(self, pad_id: int) -> Runner:
        """The parent's logits of encoded examples: its torch model, or its file through the runtime backend."""
        if self.manifest.format == "torch":
            return family_spec(self.manifest.architecture).runner(self.model, pad_id)
        return open_backend(self.model_file(), pad_id, input_names=[s.name for s in self.manifest.inputs]).run


@dataclass
class Derived:
    """What a transform made in the new bundle's folder, and how to run it."""

    # Recorded under the stage's key of the manifest's architecture.
    details: dict[str, Any]
    # The new model's runner, given the encoder of the new bundle's tokenizer.
    runner: Callable[[Encoder], Runner]
    # None: the parent's format, max length and inputs.
    format: str | None = None
    max_length: int | None = None
    inputs: list[dict[str, Any]] | None = None
    # The name of the group (e.g. a TFLite length bucket) an example's parity is also reported under.
    group: Callable[[Example], str] | None = None
    # Named texts compared besides golden and dev (an export's edge cases).
    extra_sets: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    # Architecture facts besides the details (parameters, vocab).
    architecture: dict[str, Any] = field(default_factory=dict)
    # Raises a ParityError when the comparison is not good enough; returns facts recorded with it (a tolerance).
    judge: Callable[[list[OutputParity]], dict[str, Any]] | None = None


Transform = Callable[[Parent, Path], Derived]


def _fit_tokenizer(directory: Path, kind: str, max_length: int) -> None:
    """Make the tokenizer files at the new bundle's root say its max length (`set_tokenizer_max_length`). A word
    vocabulary is saved again (word_vocab.json with that max length, and its tokenizer.json, which a parent written
    before the root layout lacks)."""
    if kind == "word":
        vocabulary = WordTokenizer.load(directory)
        vocabulary.max_length = max_length
        vocabulary.save(directory)
    else:
        set_tokenizer_max_length(directory, max_length)


def default_output(source: Path, cfg: MethodConfig) -> Path:
    """The parent's folder name + "-" + the method's suffix, beside the parent."""
    return source.parent / f"{source.name}-{cfg.output_suffix()}"


def derive(
    source: str | Path,
    cfg: MethodConfig,
    stage: str,
    transform: Transform,
    out: str | Path | None = None,
    *,
    accepts: Callable[[Bundle], None] = lambda bundle: None,
    samples: int | Literal["all"] = "all",
    key: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    force: bool = False,
) -> Bundle:
    """Write the bundle `transform` derives from the bundle at `source` (refused by `accepts` before any work).

    `samples`: how many dev examples (spread over the length range) the parity and the metrics use, or "all".
    `key`: the architecture key the details go under (the stage's name by default).
    """
    bundle = Bundle.open(source)
    accepts(bundle)
    out_path = check_output(Path(out) if out is not None else default_output(bundle.path, cfg), overwrite=force, sources=(bundle.path,))
    data_cfg = lineage_data(bundle, overrides)
    parent = Parent(bundle, data_cfg, resolve_task(data_cfg))
    manifest = bundle.manifest
    with BundleWriter(out_path, overwrite=force) as writer:
        copy_support_files(bundle, writer.path)
        made = transform(parent, writer.path)
        fmt = made.format or manifest.format
        tokenizer = {**manifest.tokenizer.model_dump(), "max_length": made.max_length or manifest.tokenizer.max_length}
        _fit_tokenizer(writer.path, manifest.tokenizer.type, tokenizer["max_length"])
        inputs = made.inputs if made.inputs is not None else [i.model_dump() for i in manifest.inputs]
        theirs = parent.encoder(tokenizer["max_length"])
        ours = load_encoder(writer.path, manifest.tokenizer.type, tokenizer["max_length"], manifest.task.columns,
                            inputs=[i["name"] for i in inputs], pad_id=manifest.tokenizer.pad_id)
        dev = parent.data.dev
        if samples == "all":
            picks = np.arange(len(dev))
        else:  # the sample spreads over the lengths the new model sees
            picks = spread_by_length(np.asarray([sequence_length(e) for e in ours.encode(dev.texts)]), int(samples))
        golden, golden_texts = parent.golden
        texts = {"golden": golden_texts, **made.extra_sets, "dev": [dev.texts[i] for i in picks]}
        # The long step of an export or a quantization: both models run every text.
        with bar(2 * sum(len(t) for t in texts.values()), f"{stage}: comparing with the parent", unit="ex") as shown:
            results, outputs = compare_sets(
                counted(parent.runner(theirs.pad_id), shown), counted(made.runner(ours), shown),
                {n: ours.encode(t) for n, t in texts.items()}, made.group, reference_sets={n: theirs.encode(t) for n, t in texts.items()},
            )
        parity: dict[str, Any] = {**(made.judge(results) if made.judge else {}), "outputs": [r.as_dict() for r in results]}
        write_golden(writer.path, collate(ours.encode(golden_texts), ours.pad_id), outputs["golden"], golden_texts, np.asarray(golden["logits"]))
        task = parent.task
        scores = Scores.measured(metrics.compute(task.metrics, outputs["dev"], dev.labels[picks], task.problem), len(picks), len(dev))
        return writer.commit(
            kind=manifest.kind,
            format=fmt,
            task=manifest.task.model_dump(),
            architecture=manifest.architecture.derived(**{key or stage: made.details}, **made.architecture),
            inputs=inputs,
            outputs=[o.model_dump() for o in manifest.outputs],
            tokenizer=tokenizer,
            parent={"path": str(bundle.path), "sha256": bundle.sha256},
            produced_by=produced_by(stage, {stage: to_dict(cfg), "data": data_cfg.model_dump(mode="json")}, None),
            metrics=Metrics.of(
                scores, manifest.metrics.full_dev(), parity=parity,
                footprint=footprint(writer.path / MODEL_FILES[fmt]), parent_footprint=footprint(parent.model_file()),
            ),
            golden=GOLDEN,
        )
