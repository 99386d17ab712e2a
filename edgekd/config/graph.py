"""The run graph of a recipe: the format of every bundle it makes, what is wrong with it, what its benchmark measures."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from edgekd.records import DEPLOYABLE_FORMATS

from .base import NAME
from .render import _clip, _shown, nearest_key

if TYPE_CHECKING:
    from .run import Recipe


def bundle_formats(recipe: Recipe) -> dict[str, str]:
    """The format of every bundle a run makes, by name: teacher and students are torch; artifacts follow their stage."""
    formats = {"teacher": "torch", **{name: "torch" for name in recipe.students}}
    for name, artifact in recipe.artifacts.items():
        # What a method makes is a fact of its config class (methods.py), not derived from its name.
        formats[name] = artifact.config.made_format()
    return formats


def graph_problems(recipe: Recipe) -> list[str]:
    """What is wrong with the run's graph: unknown or later parents, a stage given the wrong format, bench and gate
    naming models the run does not make."""
    problems: list[str] = []
    for name, student in recipe.students.items():
        if student.augment is not None and student.augment not in recipe.augment:
            problems.append(f"students.{_clip(name, 80)}.augment: {_shown(student.augment)} is not in the recipe's `augment:` section "
                            f"({', '.join(recipe.augment) or 'empty'})")
    known = {"teacher": "torch", **{name: "torch" for name in recipe.students}}
    formats = bundle_formats(recipe)
    reserved = {"teacher", "cache", *(recipe.students)}
    for name, artifact in recipe.artifacts.items():
        where = f"artifacts.{_clip(name, 80)}"
        if not re.fullmatch(NAME, name) or name in reserved:
            problems.append(f"{where}: use letters, digits, - _ . and not the name of the teacher, a student or the cache")
        if artifact.parent not in known:
            hint = f"did you mean {close!r}? " if (close := nearest_key(artifact.parent, list(known))) else ""
            problems.append(f"{where}.parent: {_shown(artifact.parent)} is not the teacher, a student or an earlier artifact; {hint}"
                            f"known here: {', '.join(known)}")
        else:
            have = known[artifact.parent]
            need = artifact.config.parent_format
            if have != need:
                problems.append(f"{where}: {artifact.stage} {getattr(artifact.config, 'method', '')}".rstrip()
                                + f" needs a {need} parent, but {_shown(artifact.parent)} is {have}")
        known[name] = formats[name]
    deployable = [name for name, artifact in recipe.artifacts.items() if formats[name] in DEPLOYABLE_FORMATS]
    if recipe.bench is not None:
        bench = recipe.bench
        if bench.reference != "bert-base-shape" and bench.reference not in deployable:
            problems.append(f"bench.reference: {_shown(bench.reference)} is neither bert-base-shape nor an ONNX/TFLite artifact "
                            f"of this recipe ({', '.join(deployable) or 'none'})")
        for model in bench.models or []:
            if model not in deployable:
                problems.append(f"bench.models: {_shown(model)} is not an ONNX/TFLite artifact of this recipe ({', '.join(deployable) or 'none'})")
        if not bench_models(recipe):
            problems.append("bench: nothing to measure; add ONNX, TFLite or ExecuTorch artifacts (export, quantize)")
        if bench.output in formats:
            problems.append(f"bench.output: {_shown(bench.output)} is also the name of a bundle of this recipe")
    if recipe.gate is not None:
        if recipe.bench is None:
            problems.append("gate: judges the benchmark report; add a `bench:` section")
        else:
            unknown = sorted(set(recipe.gate.models) - set(bench_models(recipe)))
            if unknown:
                problems.append(f"gate.models: {', '.join(unknown)} not benchmarked as candidates (bench models: "
                                f"{', '.join(bench_models(recipe))})")
    return problems


def bench_models(recipe: Recipe) -> list[str]:
    """The artifacts `edgekd run` measures as candidates (the reference apart)."""
    if recipe.bench is None:
        return []
    if recipe.bench.models is not None:
        return [m for m in recipe.bench.models if m != recipe.bench.reference]
    formats = bundle_formats(recipe)
    return [name for name in recipe.artifacts if formats[name] in DEPLOYABLE_FORMATS and name != recipe.bench.reference]
