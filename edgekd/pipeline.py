"""`edgekd run RECIPE`: the recipe's stages in order (teacher, students, artifacts, bench, gate), each skipped when
its finished output was made from the same config and the same input bundles.

A bundle records what made it (`produced_by.config`, `parent.sha256`), so the key of a finished bundle is read from its
own manifest and compared with the key the recipe asks for: a re-run skips what matches (bundles written by the
single verbs, `edgekd teacher` and the rest, count too), re-runs a changed stage and, since that changes its sha256,
everything after it. Bundles are written atomically and training resumes from its checkpoints, so a killed run
continues where it stopped. The report and the gate's verdict are not bundles: their keys live in <report>/run.json.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.bundle import Bundle
from edgekd.config import (
    DataConfig,
    MethodConfig,
    Recipe,
    bench_models,
    from_dict,
    student_lineage,
    teacher_lineage,
    to_dict,
)
from edgekd.data import lineage_data
from edgekd.errors import BundleError, ConfigError
from edgekd.hashing import sha256_json
from edgekd.seeds import seeded_path, seeds_of, write_summary
from edgekd.writer import check_folder, check_output, write_text_atomic

logger = logging.getLogger(__name__)
STATE = "run.json"


@dataclass(frozen=True)
class Step:
    name: str  # teacher, a student or an artifact name (<student>-seed<S> for a student's extra seeds), bench, gate
    stage: str  # teacher | distill | export | quantize | prune | bench | gate
    path: Path
    # A distill step's student and seed (the recipe's seed, or one of the extra `seeds`).
    student: str = ""
    seed: int = 0

    @property
    def title(self) -> str:
        return self.name if self.name == self.stage else f"{self.stage} {self.name}"


@dataclass
class Outcome:
    """What a run did: per step `cached` or its seconds, the report folder, the gate's exit code."""

    steps: list[tuple[Step, float | None]] = field(default_factory=list)
    report: Path | None = None
    exit_code: int = 0


def plan(recipe: Recipe) -> list[Step]:
    """The steps of a recipe, in the order they run."""
    out = recipe.out
    steps = [Step("teacher", "teacher", out / "teacher")]
    for name in recipe.students:
        for seed in seeds_of(recipe.seed, recipe.seeds):
            path = seeded_path(out / name, seed, recipe.seed)
            steps.append(Step(path.name, "distill", path, name, seed))
    steps += [Step(name, artifact.stage, out / name) for name, artifact in recipe.artifacts.items()]
    if recipe.bench is not None:
        steps.append(Step("bench", "bench", out / recipe.bench.output))
    if recipe.gate is not None:
        steps.append(Step("gate", "gate", out / recipe.bench.output if recipe.bench else out))
    return steps


def lineage(bundle: Bundle, step: Step) -> tuple[Any, str | None]:
    """What a finished bundle was made from, read from its manifest: (the config it depends on, its parent's sha256)."""
    made = bundle.manifest.produced_by
    config: Any = _current(made.stage, made.config)
    if step.stage == "teacher":
        config = teacher_lineage(config)
    elif step.stage == "distill":
        config = student_lineage(config, step.student)
    if step.stage in ("teacher", "distill"):
        # A model trained before selection splits chose its checkpoints on dev: never taken as cached.
        config = {**config, "selection_split": bundle.manifest.metrics.splits is not None}
    parent = bundle.manifest.parent.sha256 if bundle.manifest.parent else None
    return {"stage": made.stage, "config": config}, parent


def _current(stage: str, config: dict[str, Any]) -> dict[str, Any]:
    """A recorded config read with today's models: keys added since (whose defaults keep the old behaviour) get their
    defaults, so a bundle made before them still matches. A config that no longer validates is left as it was."""
    try:
        if stage in ("teacher", "distill"):
            return to_dict(from_dict(config, Recipe))
        made = from_dict(config[stage], MethodConfig)
        if made.stage != stage:
            return config
        return {stage: to_dict(made), "data": from_dict(config["data"], DataConfig).model_dump(mode="json")}
    except (ValueError, KeyError, TypeError, AttributeError):  # pydantic's ValidationError is a ValueError
        return config


def wanted(recipe: Recipe, step: Step, parent: Bundle | None) -> tuple[Any, str | None]:
    """What the recipe asks a step's bundle to be made from, in the form `lineage` reads back."""
    raw = to_dict(recipe)
    if step.stage == "teacher":
        return {"stage": "teacher", "config": {**teacher_lineage(raw), "selection_split": True}}, None
    assert parent is not None
    if step.stage == "distill":
        return {"stage": "distill", "config": {**student_lineage({**raw, "seed": step.seed}, step.student), "selection_split": True}}, parent.sha256
    artifact = recipe.artifacts[step.name]
    config = {artifact.stage: to_dict(artifact.config), "data": lineage_data(parent).model_dump(mode="json")}
    return {"stage": artifact.stage, "config": config}, parent.sha256


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys where two JSON values differ (a changed `method` or `type` first: it explains the rest)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=lambda k: (k not in ("method", "type"), k))
        return [d for key in keys for d in differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".") or "(value)"]


def _finished(step: Step, want: tuple[Any, str | None]) -> tuple[Bundle | None, str]:
    """The finished bundle of a step when it matches `want`; else None and why it will be (re)made."""
    if not (step.path / "manifest.json").is_file():
        return None, ""
    try:
        bundle = Bundle.open(step.path)
    except BundleError as exc:
        return None, f"the bundle there is damaged ({str(exc).splitlines()[0]}); replacing it"
    have = lineage(bundle, step)
    if have == want:
        return bundle, ""
    if have[1] != want[1]:
        return None, "made from another version of its input; replacing it"
    changed = [key.removeprefix("config.") for key in differences(have[0], want[0])]
    shown = [f"{key} {_value(have[0]['config'], key)} -> {_value(want[0]['config'], key)}" for key in changed[:3]]
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    return None, f"made with another config ({'; '.join(shown)}{more}); replacing it"


def _value(tree: Any, key: str) -> str:
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    text = json.dumps(tree)
    return text if len(text) <= 40 else text[:37] + "..."


def _make(recipe: Recipe, step: Step, parent: Bundle | None) -> Bundle:
    if step.stage == "teacher":
        from edgekd.distill.teacher import teacher

        return teacher(recipe, step.path, resume="auto", force=True)
    if step.stage == "distill":
        from edgekd.distill.distill import distill

        return distill(recipe.model_copy(update={"seed": step.seed}), step.student, step.path, resume="auto", force=True)
    assert parent is not None
    cfg = recipe.artifacts[step.name].config
    # The stage's verb finds the method's handler in that stage's registry, by the config's type.
    return _artifact_verbs()[cfg.stage](parent.path, cfg, step.path, force=True)


def _artifact_verbs() -> dict[str, Callable[..., Bundle]]:
    """The verb of each stage that derives an artifact (imported here, when a run reaches one: each pulls in torch)."""
    from edgekd.export.stage import export
    from edgekd.quantize.prune import prune
    from edgekd.quantize.stage import quantize

    return {"export": export, "quantize": quantize, "prune": prune}


def _parent(recipe: Recipe, step: Step, bundles: dict[str, Bundle]) -> Bundle | None:
    if step.stage == "teacher":
        return None
    if step.stage == "distill":
        external = recipe.students[step.student].teacher
        return Bundle.open(external) if external else bundles["teacher"]
    return bundles[recipe.artifacts[step.name].parent]


def _describe(bundle: Bundle) -> str:
    scores = bundle.manifest.metrics.scores()
    return f"{bundle.path}" + (f" ({scores.describe()})" if scores else "")


def _read_state(folder: Path) -> dict[str, Any]:
    try:
        state = json.loads((folder / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    write_text_atomic(folder / STATE, json.dumps(state, indent=1) + "\n")


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One `edgekd run` per output folder at a time (two would replace each other's bundles)."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".run.lock", "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another `edgekd run` is writing to {out}; wait for it to finish or give another -o") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run(recipe: Recipe, *, force: bool = False, echo: Callable[[str], None] = print) -> Outcome:
    """Run every step of a recipe, skipping finished ones (all of them re-run with `force`)."""
    steps = plan(recipe)
    outcome = Outcome()
    bundles: dict[str, Bundle] = {}
    width = max(len(s.title) for s in steps)
    echo(f"edgekd run {recipe.name}: {len(steps)} steps into {recipe.out}")
    started = time.perf_counter()
    check_folder(recipe.out)
    with _exclusive(recipe.out):
        # Every stage is called with force (the run decides what is cached), which replaces bundles only: a step's
        # output path holding anything else stops the run here, before the first stage trains for minutes.
        for step in steps:
            if step.stage not in ("bench", "gate"):
                check_output(step.path, overwrite=True)
        for number, step in enumerate(steps, 1):
            prefix = f"[{number:>{len(str(len(steps)))}}/{len(steps)}] {step.title:<{width}}"
            if step.stage == "bench":
                seconds = _bench(recipe, step, bundles, force, prefix, echo)
                outcome.report = step.path
            elif step.stage == "gate":
                seconds, outcome.exit_code = _gate(recipe, step, force, prefix, echo)
            else:
                parent = _parent(recipe, step, bundles)
                want = wanted(recipe, step, parent)
                bundle, why = _finished(step, want)
                if bundle is not None and not force:
                    echo(f"{prefix}  cached: {_describe(bundle)}")
                    bundles[step.name] = bundle
                    outcome.steps.append((step, None))
                    if _last_seed(recipe, step):
                        _summarize_seeds(recipe, step.student, bundles)
                    continue
                echo(f"{prefix}  running" + (f": {why}" if why else ""))
                clock = time.perf_counter()
                bundles[step.name] = _make(recipe, step, parent)
                seconds = time.perf_counter() - clock
                echo(f"{prefix}  done in {_duration(seconds)}: {_describe(bundles[step.name])}")
            outcome.steps.append((step, seconds))
            if _last_seed(recipe, step):
                _summarize_seeds(recipe, step.student, bundles)
    _finish(recipe, outcome, bundles, time.perf_counter() - started, echo)
    return outcome


def _last_seed(recipe: Recipe, step: Step) -> bool:
    """Whether a step is the last run of a student distilled under several seeds."""
    return step.stage == "distill" and recipe.seeds > 1 and step.seed == recipe.seed + recipe.seeds - 1


def _summarize_seeds(recipe: Recipe, student: str, bundles: dict[str, Bundle]) -> None:
    """After a student's last seed: <student>.seeds.json over all its runs."""
    out = recipe.out / student
    write_summary(out, [bundles[seeded_path(out, seed, recipe.seed).name] for seed in seeds_of(recipe.seed, recipe.seeds)])


def _bench(recipe: Recipe, step: Step, bundles: dict[str, Bundle], force: bool, prefix: str, echo: Callable[[str], None]) -> float | None:
    from edgekd.benchmarks import report
    from edgekd.benchmarks.bench import bench

    cfg = recipe.bench
    assert cfg is not None
    models = [bundles[name] for name in bench_models(recipe)]
    reference = bundles[cfg.reference] if cfg.reference != "bert-base-shape" else None
    extra = []
    if cfg.bert_base_shape and reference is not None:
        from edgekd.benchmarks.reference import bert_base_shape

        extra = [bert_base_shape(models[0])]
    key = sha256_json({
        "bench": cfg.model_dump(mode="json"), "models": {b.path.name: b.sha256 for b in [*models, *extra]},
        "reference": reference.sha256 if reference else cfg.reference, "teacher": bundles["teacher"].sha256,
    })
    state = _read_state(step.path)
    if not force and state.get("bench") == key and (step.path / "report.json").is_file():
        echo(f"{prefix}  cached: {step.path / 'report.html'}")
        return None
    echo(f"{prefix}  running: {len(models) + len(extra)} models against {cfg.reference} on {cfg.target}")
    clock = time.perf_counter()
    # The recipe names artifacts; bench() is given their paths (and the recipe's teacher unless the section names one).
    measured = cfg.model_copy(update={"reference": str(reference.path) if reference else cfg.reference,
                                      "teacher": cfg.teacher or str(bundles["teacher"].path)})
    result = bench([b.path for b in [*models, *extra]], measured)
    report.write(result, step.path)
    _write_state(step.path, {"bench": key})  # after the report: a kill before this re-measures
    seconds = time.perf_counter() - clock
    echo(f"{prefix}  done in {_duration(seconds)}: {step.path / 'report.html'}")
    return seconds


def _gate(recipe: Recipe, step: Step, force: bool, prefix: str, echo: Callable[[str], None]) -> tuple[float | None, int]:
    from edgekd.benchmarks import gate, report

    budget = recipe.gate
    assert budget is not None
    state = _read_state(step.path)
    key = sha256_json({"budget": budget.model_dump(mode="json"), "bench": state.get("bench")})
    previous = state.get("gate")
    if not force and isinstance(previous, dict) and previous.get("key") == key:
        echo(f"{prefix}  cached: {'PASS' if previous['exit_code'] == 0 else 'FAIL'} ({step.path / 'gate.md'})")
        return None, int(previous["exit_code"])
    clock = time.perf_counter()
    measured = report.load(step.path / "report.json")
    checks = gate.judge(measured, budget, gate.remeasurer(measured, budget))
    code = gate.exit_code(checks)
    (step.path / "gate.xml").write_text(gate.junit(checks), encoding="utf-8")
    (step.path / "gate.md").write_text(gate.markdown(checks, measured), encoding="utf-8")
    gate.publish(step.path / "report.json", measured, checks, budget)  # report.html, the verdict at its top
    for check in checks:
        echo(" " * (len(prefix) + 2) + check.line())
    _write_state(step.path, {**state, "gate": {"key": key, "exit_code": code, "checks": [c.line() for c in checks]}})
    seconds = time.perf_counter() - clock
    echo(f"{prefix}  {'PASS' if code == 0 else 'FAIL'} in {_duration(seconds)} ({step.path / 'gate.md'})")
    return seconds, code


def _finish(recipe: Recipe, outcome: Outcome, bundles: dict[str, Bundle], seconds: float, echo: Callable[[str], None]) -> None:
    timings = ", ".join(f"{s.name} {'cached' if t is None else _duration(t)}" for s, t in outcome.steps)
    echo(f"\ntime: {_duration(seconds)} ({timings})")
    if outcome.report is None:
        return
    from edgekd.benchmarks import report, summary

    measured = report.load(outcome.report / "report.json")
    teacher_export = next((name for name, a in recipe.artifacts.items() if a.stage == "export" and a.parent == "teacher"), None)
    teacher = bundles["teacher"].manifest.metrics.scores()
    echo(f"\nteacher {bundles['teacher'].path}: {teacher.describe() if teacher else 'no dev scores'}")
    echo(summary.table(measured, teacher_export))
    echo(f"\nreport: {outcome.report / 'report.html'} (and report.md, report.json)")
    if recipe.gate is not None:
        echo(f"gate: {'PASS' if outcome.exit_code == 0 else 'FAIL'} ({outcome.report / 'gate.md'}, {outcome.report / 'gate.xml'})")


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{int(seconds // 60)} min {int(seconds % 60)} s"
