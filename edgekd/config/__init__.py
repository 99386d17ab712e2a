"""Recipes: YAML validated into frozen pydantic models, with `key.sub=value` overrides.

Every problem in a recipe is reported in one `ConfigError`; an unknown key names the nearest valid one. The models are
in `training` (data, teacher, students), `methods` (export, quantize, prune) and `run` (artifacts, bench, budget, the
recipe); `graph` checks a run's graph, `loading` reads YAML, `extends:` and overrides, `render` words the errors.
"""

from __future__ import annotations

from .base import NAME, RECIPE_VERSION, SEED_MAX, TAG_KEYS, ConfigT, from_dict, student_lineage, teacher_lineage, to_dict
from .graph import bench_models, bundle_formats, graph_problems
from .loading import (
    MAX_YAML_BYTES,
    OVERRIDE_SYNTAX,
    apply_overrides,
    check_teacher_config,
    check_teacher_source,
    load_recipe,
    parse_yaml,
    read_yaml,
    resolve_recipe_path,
    shipped_recipes,
    teacher_config_dir,
    validate_recipe,
)
from .methods import (
    METHODS,
    MethodConfig,
    ExportConfig,
    Handlers,
    IncConfig,
    MagnitudePruneConfig,
    OnnxDynamicConfig,
    OnnxFp16Config,
    OnnxInt4Config,
    OptimumDynamicConfig,
    OnnxStaticConfig,
    PruneConfig,
    QuantizeConfig,
    StructuredPruneConfig,
    TfliteDynamicConfig,
    TfliteFp16Config,
    TfliteInt8Config,
    VocabPruneConfig,
    method_configs,
    method_names,
    registered_methods,
)
from .render import MAX_PROBLEMS, SHOWN_CHARS, nearest_key, shorten, validate_config
from .run import STAGES, ArtifactConfig, BenchConfig, Budget, ModelBudget, Recipe
from .training import (
    TANG_KEYS,
    TINYBERT_KEYS,
    AugmentConfig,
    BiLSTMConfig,
    DataConfig,
    StageConfig,
    StudentConfig,
    TeacherConfig,
    TinyBertConfig,
    TrainConfig,
)

__all__ = [
    "MAX_PROBLEMS", "MAX_YAML_BYTES", "METHODS", "NAME", "OVERRIDE_SYNTAX", "RECIPE_VERSION", "SEED_MAX",
    "SHOWN_CHARS", "STAGES", "TAG_KEYS", "TANG_KEYS", "TINYBERT_KEYS", "ArtifactConfig", "AugmentConfig", "BenchConfig", "BiLSTMConfig",
    "Budget", "ConfigT", "DataConfig", "ExportConfig", "Handlers", "IncConfig", "MagnitudePruneConfig", "MethodConfig", "ModelBudget", "OnnxDynamicConfig",
    "OnnxFp16Config", "OnnxInt4Config", "OnnxStaticConfig", "OptimumDynamicConfig", "PruneConfig", "QuantizeConfig", "Recipe", "StageConfig",
    "StructuredPruneConfig", "StudentConfig", "TeacherConfig", "TfliteDynamicConfig", "TfliteFp16Config", "TfliteInt8Config",
    "TinyBertConfig", "TrainConfig", "VocabPruneConfig", "apply_overrides", "bench_models", "bundle_formats",
    "check_teacher_config", "check_teacher_source", "from_dict", "graph_problems", "load_recipe", "method_configs", "method_names", "nearest_key",
    "parse_yaml", "read_yaml", "registered_methods", "resolve_recipe_path", "shipped_recipes", "shorten", "student_lineage", "teacher_config_dir",
    "teacher_lineage", "to_dict", "validate_config", "validate_recipe",
]
