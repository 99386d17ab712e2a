"""edgekd under the transformers users have: the pinned 4.57 (the venv running the tests) and the newest 5.x (a second
venv, built once per lock and transformers version under ~/.cache/edgekd/venvs). The same command-line path runs in
both: a tiny teacher fine-tuned, TinyBERT and BiLSTM students distilled, exported to ONNX, and their predictions read
with `edgekd predict`; each venv's predictions equal the other's. Skipped when PyPI cannot be reached (pip download).
Also (fast): optimum, which caps transformers below 4.58, is an extra of its own, outside the core and `full`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgekd import testing
from edgekd.cli import EXTRAS

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements" / "lock.txt"
PYPROJECT = REPO / "pyproject.toml"
# What the teacher -> distill -> ONNX export -> predict path imports (and pytest), pinned as in the lock. transformers
# 5 comes with the huggingface_hub and tokenizers it needs (the lock's pins of those predate it); optimum and
# optimum-onnx stay out: optimum-onnx caps transformers below 4.58.
PATH_PACKAGES = ("torch", "datasets", "accelerate", "onnx", "onnxruntime", "onnxscript", "safetensors", "numpy",
                 "pydantic", "pyyaml", "tqdm", "matplotlib", "jsonschema", "pytest")
TRANSFORMERS = "transformers>=5"
TEXTS = ["a good film", "the plot was awful", "it is very boring and sad", "great acting with a happy story",
         "the movie was poor", "this is a fine film of love"]
# The same torch, data and seeds on both sides: what differs is transformers' forward code (summation order).
TOLERANCE = 1e-4


def _pins(names: tuple[str, ...]) -> list[str]:
    """`name==version` from the lock for each of `names` (the lock's spelling of a name may differ in case, - and _)."""
    def key(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    locked = dict(line.split("==", 1) for line in LOCK.read_text(encoding="utf-8").splitlines() if "==" in line and not line.startswith("#"))
    versions = {key(name): version for name, version in locked.items()}
    missing = [name for name in names if key(name) not in versions]
    assert not missing, f"{LOCK} does not pin {missing}"
    return [f"{name}=={versions[key(name)]}" for name in names]


def _pip(python: Path | str, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True, timeout=timeout)


def _newest_transformers(directory: Path) -> str:
    """The newest transformers 5 on PyPI (its wheel downloaded to `directory`); skip when PyPI cannot be reached."""
    done = _pip(sys.executable, "download", "--no-deps", "--only-binary=:all:", "-d", str(directory), TRANSFORMERS, timeout=600)
    wheels = sorted(directory.glob("transformers-*.whl"))
    if done.returncode != 0 or not wheels:
        lines = (done.stderr or done.stdout).strip().splitlines()
        pytest.skip(f"PyPI cannot be reached (pip download {TRANSFORMERS} failed: {lines[-1] if lines else 'no wheel'})")
    return wheels[-1].name.split("-")[1]


@pytest.fixture(scope="module")
def transformers5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a venv holding the newest transformers 5 with the path's packages and this checkout (editable),
    built once per lock, package list and transformers version, and reused after."""
    version = _newest_transformers(tmp_path_factory.mktemp("wheel"))
    pins = _pins(PATH_PACKAGES)
    key = hashlib.sha256(json.dumps([LOCK.read_text(encoding="utf-8"), pins, version, str(REPO)]).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgekd" / "venvs"
    venv = cache / f"transformers-{version}-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".ready").is_file():
        shutil.rmtree(venv, ignore_errors=True)  # a build cut short
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=600)
        # torch named in the same command as everything else: pip never swaps in another build (the CPU wheel of
        # PIP_FIND_LINKS where this machine has one).
        for args in (["install", "-q", "setuptools>=68", "wheel", *pins, f"transformers=={version}"], ["check"]):
            done = _pip(python, *args)
            assert done.returncode == 0, f"pip {' '.join(args)} in {venv}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        (venv / ".ready").write_text(f"transformers=={version}\n", encoding="utf-8")
    # The checkout, every time: its package list may have changed since the venv was built (no network needed).
    done = _pip(python, "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(REPO), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    installed = subprocess.run([str(python), "-c", "import transformers; print(transformers.__version__)"],
                               capture_output=True, text=True, timeout=300, check=True).stdout.strip()
    assert installed == version and installed.startswith("5."), installed
    return python


def _run(python: Path | str, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "EDGEKD_CACHE_DIR": str(root / "cache")}
    return subprocess.run([str(python), "-m", "edgekd.cli", *args], capture_output=True, text=True, env=env, timeout=1800)


def _edgekd(python: Path | str, root: Path, *args: str) -> str:
    done = _run(python, root, *args)
    assert done.returncode == 0, f"edgekd {' '.join(args)} ({python}):\n{done.stderr[-4000:]}"
    return done.stdout


def _predictions(python: Path | str, bundle: Path) -> list[dict]:
    return [json.loads(line) for line in _edgekd(python, bundle.parent, "predict", str(bundle), "--logits", *TEXTS).splitlines()]


def _path(python: Path | str, root: Path, encoder: Path, data: Path) -> dict[str, list[dict]]:
    """teacher -> distill (tinybert, bilstm) -> export --to onnx -> predict, by the command line in `python`'s venv;
    the predictions of the teacher (torch) and of both ONNX students."""
    raw = testing.tiny_recipe(data, encoder, root / "run")
    raw["students"] = testing.tiny_students()
    recipe = root / "recipe.yaml"
    root.mkdir(parents=True, exist_ok=True)
    recipe.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    _edgekd(python, root, "teacher", str(recipe))
    _edgekd(python, root, "distill", str(recipe))
    run = root / "run"
    for student in ("tinybert", "bilstm"):
        _edgekd(python, root, "export", str(run / student), "--to", "onnx")
        manifest = json.loads((run / f"{student}-onnx" / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["format"] == "onnx"
    teacher = json.loads((run / "teacher" / "manifest.json").read_text(encoding="utf-8"))
    # A teacher that learned the task: predictions at chance would agree between any two versions and prove nothing.
    assert teacher["metrics"]["dev"]["accuracy"] >= 0.75, teacher["metrics"]["dev"]
    return {name: _predictions(python, run / name) for name in ("teacher", "tinybert-onnx", "bilstm-onnx")}


def _assert_same(got: list[dict], expected: list[dict], what: str) -> None:
    assert [row["text"] for row in got] == TEXTS and [row["label"] for row in got] == [row["label"] for row in expected], what
    for row, reference in zip(got, expected):
        for name in ("probabilities", "logits"):
            values, reference_values = row[name], reference[name]
            pairs = zip(values.values(), reference_values.values()) if isinstance(values, dict) else zip(values, reference_values)
            assert all(abs(a - b) <= TOLERANCE for a, b in pairs), f"{what}, {row['text']!r} {name}: {values} != {reference_values}"


@pytest.fixture(scope="module")
def paths(transformers5: Path, tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """The path run in this venv (`pinned`) and in the transformers 5 venv (`newest`), from one encoder and one task:
    (their root, the pinned predictions, the newest predictions)."""
    root = tmp_path_factory.mktemp("paths")
    data = testing.write_fixture_task(root / "data", "single")
    return root, _path(sys.executable, root / "pinned", tiny_encoder, data), _path(transformers5, root / "newest", tiny_encoder, data)


@pytest.mark.slow
def test_the_path_predicts_the_same_on_transformers_4_and_5(paths: tuple[Path, dict, dict], transformers5: Path) -> None:
    root, pinned, newest = paths
    for name in pinned:
        _assert_same(newest[name], pinned[name], f"{name} on transformers 5 vs the pinned")
    # A bundle made under one version loads under the other: the teachers (config.json, tokenizer files) swapped.
    _assert_same(_predictions(sys.executable, root / "newest" / "run" / "teacher"), newest["teacher"], "5.x teacher on 4.57")
    _assert_same(_predictions(transformers5, root / "pinned" / "run" / "teacher"), pinned["teacher"], "4.57 teacher on 5.x")


@pytest.mark.slow
def test_head_pruning_is_refused_by_name_on_transformers_5(paths: tuple[Path, dict, dict], transformers5: Path) -> None:
    """transformers 5 has no prune_heads (nor config.pruned_heads): structured pruning removes FFN neurons there, and
    refuses heads in one line, writing nothing; the pinned transformers removes both."""
    root = paths[0]
    run = root / "newest" / "run"
    ffn = _edgekd(transformers5, root, "prune", str(run / "teacher"), "--method", "structured", "--ffn", "0.5", "-o", str(run / "ffn"))
    assert "structured bundle" in ffn and json.loads((run / "ffn" / "config.json").read_text())["intermediate_size"] == 32
    done = _run(transformers5, root, "prune", str(run / "teacher"), "--method", "structured", "--heads", "0.5", "-o", str(run / "heads"))
    assert done.returncode == 2 and not (run / "heads").exists()
    assert "set heads to 0 to remove FFN neurons only" in done.stderr and "Traceback" not in done.stderr
    pinned = root / "pinned" / "run"
    _edgekd(sys.executable, root, "prune", str(pinned / "teacher"), "--method", "structured", "--heads", "0.5", "-o", str(pinned / "heads"))
    assert json.loads((pinned / "heads" / "manifest.json").read_text())["architecture"]["prune"]["heads_kept"] == 2


def test_optimum_is_an_extra_of_its_own_pinned_as_in_the_lock() -> None:
    import tomllib

    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}

    assert not names(project["dependencies"]) & {"optimum", "optimum-onnx"}, "optimum in the core install"
    assert [name for name, requirements in extras.items() if names(requirements) & {"optimum", "optimum-onnx"}] == ["optimum"]
    assert {re.sub(r"\[.*\]", "", r) for r in extras["optimum"]} == set(_pins(("optimum", "optimum-onnx")))
    # The one-line hint of a missing module names an extra that exists (`pip install 'edgekd[EXTRA]'`).
    assert EXTRAS["optimum"] == "optimum" and set(EXTRAS.values()) <= set(extras)
