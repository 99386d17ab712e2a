"""`pip install edgekd[runtime]` on a fresh venv: no torch, no transformers, and it classifies with an ONNX bundle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.bundle import Bundle
from edgekd.config import ExportConfig
from edgekd.export.stage import export
from edgekd.runtime.classifier import Classifier

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def test_runtime_extra_installs_alone_and_predicts(tiny_bundles: dict[str, Bundle], tmp_path: Path) -> None:
    bundle = export(tiny_bundles["tinybert"].path, ExportConfig(format="onnx"), tmp_path / "onnx")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", f"{REPO}[runtime]"], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-2000:]
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert {"edgekd", "onnxruntime", "tokenizers"} <= names
    assert not names & {"torch", "transformers", "onnx", "datasets", "accelerate"}, names
    pair = bundle.manifest.task.kind == "pair"
    text = "a good film\tit was happy" if pair else "a good film"
    out = subprocess.run([str(venv / "bin" / "edgekd"), "predict", str(bundle.path), text], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    expected = Classifier.load(bundle.path).predict([tuple(text.split("\t"))])[0]
    assert row["label"] == expected.label
    site = next((venv / "lib").glob("python3*/site-packages"))
    print(f"runtime venv: {_size(site) / 1e6:.0f} MB of site-packages, {len(names)} distributions")
