"""The ssh target without `python=`: a venv made on the device, edgekd[runtime] installed from the pushed wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekd.bundle import Bundle
from edgekd.config import ExportConfig
from edgekd.export.stage import export
from edgekd.runtime.targets import parse_target, run_child

pytestmark = pytest.mark.slow


def test_ssh_target_installs_its_own_runtime(tiny_bundles: dict[str, Bundle], ssh_server: Any, tmp_path: Path) -> None:
    bundle = export(tiny_bundles["tinybert"].path, ExportConfig(format="onnx"), tmp_path / "onnx")
    columns = 2 if bundle.manifest.task.kind == "pair" else 1
    texts = [("a good film",) * columns]
    with parse_target("local") as local:
        expected = run_child(local, bundle.path, texts)
    target = parse_target(ssh_server.url())
    with target:
        result = run_child(target, bundle.path, texts, timeout=900)
        workdir = target.workdir  # type: ignore[attr-defined]
    assert np.allclose(result["logits"], expected["logits"], atol=1e-6)
    assert "onnxruntime" in result["machine"]["versions"] and not Path(workdir).exists()
