"""The method registries: every export format, quantize method and prune method is one config class (its facts: the
format it reads and makes, its output suffix) plus one handler registered beside its code; validation, the pipeline
and the CLI help read them. A toy method added at test time shows that adding one touches nothing else."""

from __future__ import annotations

import shutil
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from edgekd.bundle import Bundle
from edgekd.cli import build_parser
from edgekd.config import (
    METHODS,
    ExportConfig,
    PruneConfig,
    QuantizeConfig,
    Recipe,
    bundle_formats,
    graph_problems,
    method_configs,
    validate_recipe,
)
from edgekd.config.methods import _QuantizeBase
from edgekd.config.run import ArtifactConfig
from edgekd.derive import default_output
from edgekd.export.stage import EXPORTERS
from edgekd.pipeline import Step, _make
from edgekd.quantize.prune import PRUNERS
from edgekd.quantize.stage import HANDLERS, register
from edgekd.runtime.encoder import Example

FORMATS = {"torch", "onnx", "tflite", "executorch"}
REGISTRIES = {"export": EXPORTERS, "quantize": HANDLERS, "prune": PRUNERS}
# The recipe schema's unions: what a recipe may name for each stage.
SCHEMA = {"export": [ExportConfig], "quantize": list(typing.get_args(typing.get_args(QuantizeConfig)[0])),
          "prune": list(typing.get_args(typing.get_args(PruneConfig)[0]))}


@pytest.mark.parametrize("stage", sorted(REGISTRIES))
def test_every_method_has_a_config_with_its_facts_and_a_handler(stage: str) -> None:
    configs = method_configs(stage)
    table = REGISTRIES[stage].table()
    # The same names on both sides, each handler registered for the config class of its name.
    assert set(configs) == set(table), f"{stage}: config without a handler or handler without a config"
    assert all(table[name][0] is cls for name, cls in configs.items())
    # Every config class of the recipe schema is a registered method, and nothing registered is missing from it.
    assert set(configs.values()) == set(SCHEMA[stage])
    for name, cls in configs.items():
        assert cls.stage == stage and cls.parent_format in FORMATS and (cls.output_format or cls.parent_format) in FORMATS, name
        assert cls.suffix or "output_suffix" in vars(cls), f"{name}: no default output suffix"


def test_default_outputs_keep_their_names() -> None:
    from edgekd.config import IncConfig, MagnitudePruneConfig, OnnxDynamicConfig, StructuredPruneConfig, TfliteInt8Config, VocabPruneConfig

    source = Path("runs/demo/tinybert")
    assert default_output(source, ExportConfig(format="onnx", fuse=True)).name == "tinybert-onnx-fused"
    assert default_output(source, ExportConfig(format="tflite")).name == "tinybert-tflite"
    assert default_output(source, OnnxDynamicConfig()).name == "tinybert-dynamic"
    assert default_output(source, TfliteInt8Config()).name == "tinybert-int8"
    assert default_output(source, IncConfig()).name == "tinybert-inc"
    assert MagnitudePruneConfig(sparsity=0.5).output_suffix() == "sparse50"
    assert StructuredPruneConfig(heads=0.25, ffn=0.5).output_suffix() == "heads25-ffn50"
    assert VocabPruneConfig().output_suffix() == "vocab"


# ---- a toy quantize method, registered at test time and never shipped ------------------------------------------------


@pytest.fixture
def toy_method() -> Iterator[type[_QuantizeBase]]:
    """The whole of a new method: one config class (what edgekd/config/methods.py would gain) and one registered handler
    (what a new quantize/<method>.py would hold). Removed from both registries afterwards."""

    class OnnxCopyConfig(_QuantizeBase):
        """A copy of the parent's ONNX file: the simplest method that passes parity."""

        method: Literal["onnx-copy"] = "onnx-copy"
        parent_format: ClassVar[str] = "onnx"
        suffix: ClassVar[str] = "copy"

    @register(OnnxCopyConfig)
    def copy_model(source: Path, target: Path, cfg: OnnxCopyConfig, calibration: list[Example], pad_id: int) -> dict[str, Any]:
        shutil.copyfile(source, target)
        return {"copied": source.name}

    try:
        yield OnnxCopyConfig
    finally:
        HANDLERS.unregister("onnx-copy")
        METHODS["quantize"].pop("onnx-copy", None)


RECIPE = {
    "name": "r", "output_dir": "out", "data": {"task": "sst2", "path": "d"},
    "students": {"s": {"student": {"type": "bilstm"}, "stages": [{"kind": "prediction"}]}},
    "artifacts": {"s-onnx": {"parent": "s", "export": {"format": "onnx"}}},
}


def _with_artifact(recipe: Recipe, name: str, parent: str, cfg: Any) -> Recipe:
    # The recipe schema's union is fixed when run.py is imported, so the toy artifact is added past validation; the
    # graph check below is the part of validation that reads the method's facts.
    artifact = ArtifactConfig.model_construct(parent=parent, export=None, quantize=cfg, prune=None)
    return recipe.model_copy(update={"artifacts": {**recipe.artifacts, name: artifact}})


def test_a_toy_method_is_picked_up_by_validation_the_pipeline_and_the_cli(
    toy_method: type[_QuantizeBase], untrained_onnx: dict[str, Bundle], tmp_path: Path
) -> None:
    cfg = toy_method()
    # Validation: the graph reads the format it needs and the one it makes from the config class.
    recipe = validate_recipe(RECIPE)
    good = _with_artifact(recipe, "s-copy", "s-onnx", cfg)
    assert graph_problems(good) == [] and bundle_formats(good)["s-copy"] == "onnx"
    assert graph_problems(_with_artifact(recipe, "s-copy", "s", cfg)) == ["artifacts.s-copy: quantize onnx-copy needs a onnx parent, but 's' is torch"]
    # The CLI's help lists it.
    assert "onnx-copy" in _quantize_help()
    # The pipeline's dispatch reaches its handler through the quantize stage's registry, and the stage runs it.
    parent = untrained_onnx["bilstm-single"]
    bundle = _make(good, Step("s-copy", "quantize", tmp_path / "s-copy"), parent)
    assert bundle.manifest.architecture.quantize == {"method": "onnx-copy", "copied": "model.onnx"}
    assert bundle.manifest.metrics.parity["outputs"][-1]["agreement"] == 1.0
    assert default_output(parent.path, cfg).name == f"{parent.path.name}-copy"


def test_the_toy_method_is_gone_after_its_test() -> None:
    assert "onnx-copy" not in method_configs("quantize") and "onnx-copy" not in HANDLERS.table()
    assert "onnx-copy" not in _quantize_help() and "onnx-dynamic" in _quantize_help()


def _quantize_help() -> str:
    import argparse

    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return verbs.choices["quantize"].format_help()
