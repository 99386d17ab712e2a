"""Reading a recipe: a file or a shipped name, strict YAML (no aliases, no key written twice), `extends:`,
`key.sub=value` overrides, validation, and the checks of a local teacher source that need its config.json."""

from __future__ import annotations

import copy
import difflib
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from edgekd.errors import ConfigError, EdgekdError
from edgekd.files import read_at_most
from edgekd.packaged import PACKAGED_TEACHERS, packaged_dir

from .render import _clip, _shown, validate_config
from .methods import VocabPruneConfig
from .run import Recipe
from .training import StudentConfig, TeacherConfig

# A recipe or a budget is a page of YAML: anything larger is a mistake (or an attack on the parser).
MAX_YAML_BYTES = 1 << 20


def shipped_recipes() -> dict[str, Path]:
    """Names and paths of the recipes shipped inside the package."""
    folder = resources.files("edgekd.recipes")
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def resolve_recipe_path(recipe: str | os.PathLike[str]) -> Path:
    """A recipe argument is a YAML path or the name of a shipped recipe (`demo`, `sst2-tinybert`, ...)."""
    path = Path(recipe)
    if _is_file(path):
        return path
    shipped = shipped_recipes()
    if str(recipe) in shipped:
        return shipped[str(recipe)]
    hint = f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(str(recipe), shipped, 1)) else ""
    raise ConfigError(
        f"{_clip(str(recipe))}: no such recipe file{hint}. Give a YAML path or a shipped recipe: {', '.join(sorted(shipped))}"
    )


def load_recipe(recipe: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe file (or shipped name), apply `key.sub=value` overrides, and validate it."""
    path = resolve_recipe_path(recipe)
    raw = read_yaml(path, "recipe")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a YAML mapping of sections (name, data, teacher, ...), found {type(raw).__name__}")
    if "extends" in raw:
        raw = _extend(raw, path, seen=(path.resolve(),))
    recipe = validate_recipe(apply_overrides(raw, overrides), source=str(path))
    try:
        check_teacher_source(recipe.teacher, recipe)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    # A local data.dataset folder's splits, columns and label names (edgekd.data imports config: imported here).
    from edgekd.data import check_data_source

    check_data_source(recipe.data)
    return recipe


def teacher_config_dir(model: str) -> Path | None:
    """The local folder holding a teacher source's config.json: the packaged model's, or a folder given by path;
    None for a hub id, a missing path or a packaged model whose package is absent (the teacher stage says so)."""
    if model in PACKAGED_TEACHERS:
        try:
            return packaged_dir(model)
        except ConfigError:
            return None
    path = Path(model).expanduser()
    return path if _is_file(path / "config.json") else None


def check_teacher_config(cfg: TeacherConfig, model_config: dict[str, Any]) -> None:
    """Refuse a teacher of a family edgekd does not take, whose config.json describes an impossible model, or whose
    position embeddings are shorter than teacher.max_length (the fine-tune would fail at its first batch with a
    tensor-size mismatch)."""
    from edgekd.hf_config import check_max_length, check_sizes
    from edgekd.hf_families import hf_family, unsupported_family

    model_type = model_config.get("model_type")
    if not isinstance(model_type, str) or hf_family(model_type) is None:
        raise ConfigError(unsupported_family(model_type, f"teacher.model {_shown(cfg.model)}"))
    check_sizes(model_config, f"teacher.model {_shown(cfg.model)}: its config.json", ConfigError)
    check_max_length(cfg.max_length, model_config, "teacher.max_length", "the teacher's", ConfigError)


def check_teacher_source(cfg: TeacherConfig, recipe: Recipe | None = None) -> None:
    """`check_teacher_config` on a local teacher source (the packaged model or a folder), read with json alone: no
    torch, no download; a hub id is checked by the teacher stage once its config is fetched. With the `recipe`, also
    what its students and artifacts ask of the teacher's family (`check_family_stages`)."""
    from edgekd.hf_config import read_model_config

    directory = teacher_config_dir(cfg.model)
    if directory is not None:
        model_config = read_model_config(directory / "config.json", ConfigError)
        check_teacher_config(cfg, model_config)
        if recipe is not None:
            check_family_stages(recipe, model_config, _tokenizer_kind(directory))


def _tokenizer_kind(directory: Path) -> str | None:
    """The teacher folder's tokenizer type (wordpiece, bpe, unigram), or None where it has no readable tokenizer.json
    (the teacher stage says so)."""
    from edgekd.bundle import TokenizerInfo

    try:
        return TokenizerInfo.kind_of(directory)
    except EdgekdError:
        return None


def check_family_stages(recipe: Recipe, teacher_config: dict[str, Any], tokenizer: str | None = None) -> None:
    """Refuse, all at once, what the recipe asks of a family that cannot do it: the attention loss from DeBERTa-v2 or
    ModernBERT, `init: teacher` into a student of another family, a student checkpoint of another family or
    vocabulary, structured pruning where heads cannot be removed, ONNX Runtime's fusion (`fuse`) of a graph that is
    not BERT's, vocabulary pruning of a tokenizer whose pieces depend on each other (BPE, Unigram).
    `teacher_config`: the recipe's teacher's config.json; `tokenizer`: its tokenizer type, when known."""
    from edgekd.hf_families import hf_family

    problems: list[str] = []
    families: dict[str, str] = {"teacher": str(teacher_config.get("model_type"))}
    for name, spec in recipe.students.items():
        # A student distilled from another teacher bundle is checked against that bundle's config, when it is there.
        theirs = _model_config(spec.teacher) if spec.teacher else teacher_config
        families[name], found = _student_problems(f"students.{_clip(name, 80)}", spec, theirs)
        problems += found
    for name, artifact in recipe.artifacts.items():
        family = families[name] = families.get(artifact.parent, "")
        entry = hf_family(family)
        where = f"artifacts.{_clip(name, 80)}"
        if getattr(artifact.config, "method", None) == "structured" and entry is not None and not entry.structured_pruning:
            problems.append(f"{where}: structured pruning of a {family} model is not supported (its attention heads "
                            "cannot be removed one layer at a time); use prune method magnitude, or quantize instead")
        if isinstance(artifact.config, VocabPruneConfig) and entry is not None and tokenizer is not None \
                and tokenizer not in VocabPruneConfig.tokenizers:
            problems.append(f"{where}.prune: vocabulary pruning remaps WordPiece and word vocabularies; the teacher's "
                            f"tokenizer is {tokenizer} ({family}), whose pieces are merged or scored together; prune "
                            "with method structured or magnitude, or drop this artifact")
        if getattr(artifact.config, "fuse", False) and entry is not None and family != "bert":
            problems.append(f"{where}.export.fuse: ONNX Runtime's transformer fusion is applied to BERT graphs only; this "
                            f"model is a {family}: export it with fuse: false")
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) with the teacher's family ({families['teacher']}):\n"
                          + "\n".join(f"  - {line}" for line in problems))


def _student_problems(where: str, spec: StudentConfig, teacher_config: dict[str, Any] | None) -> tuple[str, list[str]]:
    """The family of a student ("" where its teacher is not known yet, "bilstm") and what it asks that cannot be."""
    from edgekd.hf_families import attention_loss_problem

    student = spec.student
    if student.type == "bilstm" or teacher_config is None:
        return ("bilstm" if student.type == "bilstm" else ""), []
    teacher = str(teacher_config.get("model_type"))
    family = teacher if student.family == "teacher" else "bert"
    problems = []
    if student.init == "teacher" and family != teacher:
        problems.append(f"{where}.student.init: 'teacher' copies the teacher's layers, but the student is a {family} and "
                        f"the teacher a {teacher}; set student.family: teacher, or init: random")
    checkpoint = _model_config(student.init) if student.init not in ("random", "teacher") else None
    if checkpoint is not None and checkpoint.get("model_type") != family:
        problems.append(f"{where}.student.init: {_shown(student.init)} is a {_shown(checkpoint.get('model_type'))} "
                        f"checkpoint, but the student is a {family} (student.family: {student.family}, teacher {teacher}); "
                        "give a checkpoint of the student's family, or init: random")
    elif checkpoint is not None and checkpoint.get("vocab_size") != teacher_config.get("vocab_size"):
        problems.append(f"{where}.student.init: {_shown(student.init)} has a vocabulary of {checkpoint.get('vocab_size')} "
                        f"but the teacher's tokenizer has {teacher_config.get('vocab_size')}; TinyBERT shares the "
                        "teacher's tokenizer, so they must match")
    for number, stage in enumerate(spec.stages):
        if stage.kind != "prediction":
            problem = attention_loss_problem([teacher, family], stage.layer_losses(), f"{where}.stages[{number}]")
            problems += [problem] if problem else []
    return family, problems


def _model_config(path: str) -> dict[str, Any] | None:
    """The config.json of a model folder (a teacher bundle, a student checkpoint), when the folder is there to read."""
    from edgekd.hf_config import read_model_config

    config = Path(path).expanduser() / "config.json"
    return read_model_config(config, ConfigError) if _is_file(config) else None


def _extend(raw: dict[str, Any], path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """`extends: BASE` (a shipped name or a path relative to this recipe): BASE's mapping, deep-merged with this one."""
    base_name = raw.pop("extends")
    candidate = path.parent / str(base_name)
    base_path = candidate if _is_file(candidate) else resolve_recipe_path(str(base_name))
    if base_path.resolve() in seen:
        raise ConfigError(f"{path}: `extends: {_clip(str(base_name))}` makes a cycle of recipes")
    base = read_yaml(base_path, "recipe") or {}
    if not isinstance(base, dict):
        raise ConfigError(f"{base_path}: a recipe is a YAML mapping, found {type(base).__name__}")
    if "extends" in base:
        base = _extend(base, base_path, (*seen, base_path.resolve()))
    return _deep_merge(base, raw)


def read_yaml(path: Path, what: str) -> Any:
    """Parse a YAML file (a recipe, a budget); a file that cannot be read, is larger than 1 MiB, is not UTF-8 or is
    not YAML (or uses aliases or writes a key twice) is a ConfigError naming it."""
    data = read_at_most(path, MAX_YAML_BYTES, ConfigError, f"{what} file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc}); save the {what} as UTF-8") from None
    return parse_yaml(text, f"{path}: not valid YAML", source=str(path))


class _Refused(yaml.YAMLError):
    """YAML that parses but that edgekd refuses to build (an alias, a key written twice); its message is final."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and without duplicate keys.

    An alias (`*a`) repeats the node anchored as `&a` by reference: nine nested levels of ten aliases are a 500-byte
    file that expands to 10**9 values once validated or printed, so aliases are refused where they are read, before
    anything is built. A key written twice in one mapping would silently keep its last value.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            anchor = _clip(str(event.anchor), 40)
            raise _Refused(
                f"line {event.start_mark.line + 1}, column {event.start_mark.column + 1}: YAML aliases are not allowed "
                f"(`*{anchor}` repeats the value anchored as `&{anchor}`); write the value out in full where it is used"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            first_seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = first_seen.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: the safe constructor refuses it with its own message
                if first is not key_node:
                    raise _Refused(
                        f"line {key_node.start_mark.line + 1}: the key {_shown(key)} is written twice in one mapping "
                        f"(first on line {first.start_mark.line + 1}); YAML would silently keep only the last value: "
                        "keep one of them"
                    )
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, what: str, *, source: str | None = None) -> Any:
    """Safe-load YAML without aliases or duplicate keys; every failure a ConfigError starting with `what` (a syntax
    error) or `source` (a refused alias or duplicate key; default `what`)."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as exc:
        raise ConfigError(f"{source or what}: {exc}") from None
    except yaml.YAMLError as exc:
        # PyYAML quotes the offending token (a tag, an anchor's name), which can be as long as the file.
        raise ConfigError(f"{what}: {_clip(str(exc), 1_000)}") from None
    except (ValueError, LookupError, TypeError, AttributeError, RecursionError) as exc:
        # PyYAML's constructors let plain errors out for a tagged value they cannot build (`!!int x`, `!!float ''`,
        # `!!bool x`, `!!timestamp x`) and for a decimal integer past Python's 4,300-digit limit; its parser recurses
        # once per level of nesting.
        raise ConfigError(f"{what}: {type(exc).__name__}: {str(exc)[:200]}") from None


def _is_file(path: Path) -> bool:
    """`Path.is_file`, except that a name the OS refuses (longer than NAME_MAX) is no file rather than an OSError."""
    try:
        return path.is_file()
    except OSError:
        return False


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in top.items():
        merged[key] = _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


# The grammar of an override's key: sections joined by dots, a list entry picked by `.N` or `[N]` (one grammar for the
# parser, the CLI help and the README): `students.s.stages.0.train.epochs` and `students.s.stages[0].train.epochs`.
OVERRIDE_SYNTAX = "key.sub=value (a list entry: key.0.sub=value or key[0].sub=value)"
# One dotted part of a key: a name, then any number of `[N]` list indexes.
_PART = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_INDEX = re.compile(r"\[([^\[\]]*)\]")


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of `raw` with each `a.b.c=value` set; values are parsed as YAML (`3`, `true`, `[a, b]`). A list
    entry is `a.b.0.c=value` or `a.b[0].c=value`."""
    result = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        shown = f"override {_shown(item)}"
        steps = _key_steps(key.strip()) if sep else None
        if not steps:
            raise ConfigError(f"{shown}: write it as {OVERRIDE_SYNTAX}, e.g. teacher.train.epochs=1")
        value = parse_yaml(text, f"{shown}: the value is not valid YAML", source=shown) if text.strip() else None
        node: Any = result
        for i, (part, indexed, where) in enumerate(steps):
            last = i == len(steps) - 1
            if isinstance(node, list):  # stages.0.train.epochs or stages[0].train.epochs: a list element by index
                # ASCII digits only: int() refuses other "digits" (²) and decimal strings past 4,300 digits.
                if not re.fullmatch(r"[0-9]{1,9}", part) or int(part) >= len(node):
                    raise ConfigError(f"{shown}: {_clip(where)}: the list has {len(node)} entries (0..{len(node) - 1})")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict) and not indexed:
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            elif isinstance(node, dict):
                what = "a section, not a list" if node else "not a list of the recipe"
                raise ConfigError(f"{shown}: {_clip(steps[i - 1][2])} is {what}; [{_clip(part, 40)}] picks an entry of a list")
            else:
                raise ConfigError(f"{shown}: {_clip(steps[i - 1][2])} is a value, not a section")
    return result


def _key_steps(key: str) -> list[tuple[str, bool, str]] | None:
    """The steps of an override's key: (a key or a list index, whether it was written `[N]`, the key up to it as
    written); None when the key does not follow the grammar (an empty part, a stray bracket)."""
    steps: list[tuple[str, bool, str]] = []
    written = ""
    for dotted in key.split("."):
        match = _PART.fullmatch(dotted)
        if match is None:
            return None
        written += ("." if written else "") + match[1]
        steps.append((match[1], False, written))
        for index in _INDEX.finditer(match[2]):
            written += index[0]
            steps.append((index[1], True, written))
    return steps


def validate_recipe(raw: dict[str, Any], *, source: str = "recipe") -> Recipe:
    """Validate a recipe mapping; all problems are raised together as one ConfigError."""
    return validate_config(Recipe, raw, source=source)
