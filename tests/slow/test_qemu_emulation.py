"""The qemu-aarch64 target for real: an arm64 Debian root filesystem (made here, or the one EDGEKD_QEMU_ROOTFS names)
runs the child on ONNX and TFLite bundles; its logits match this machine's and its work directory is gone afterwards.

    EDGEKD_QEMU_ROOTFS=/work/qemu-rootfs pytest -m slow tests/slow/test_qemu_target.py
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

from edgekd.bundle import Bundle
from edgekd.config import ExportConfig
from edgekd.export.stage import export
from edgekd.runtime.targets import TargetError, parse_target, run_child
from edgekd.runtime.targets.qemu import MARKER

pytestmark = pytest.mark.slow

TEXTS = ["a good film", "sad and boring", "it was happy and fun", "the plot is bad", "a lovely, warm story", "dull"]


def _unreachable() -> str | None:
    for host, port in (("deb.debian.org", 80), ("pypi.org", 443)):
        try:
            socket.create_connection((host, port), timeout=10).close()
        except OSError as exc:
            return f"{host}:{port} is unreachable ({exc})"
    return None


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("the qemu-aarch64 target needs root (chroot; the setup also debootstrap and binfmt_misc)")
    given = os.environ.get("EDGEKD_QEMU_ROOTFS")
    root = Path(given) if given else tmp_path_factory.mktemp("qemu") / "arm64"
    if (root / MARKER).is_file():
        return root
    reason = _unreachable()
    if reason:
        pytest.skip(f"no finished root filesystem at {root} and the setup cannot download one: {reason}")
    from edgekd.runtime.targets.qemu_setup import setup

    try:
        setup(root)
    except TargetError as exc:
        if "check the network" in str(exc):
            pytest.skip(f"the qemu-aarch64 setup failed for lack of network: {exc}")
        raise
    return root


@pytest.fixture(scope="module", params=["onnx", "tflite"])
def bundle(request: pytest.FixtureRequest, tiny_bundles: dict[str, Bundle], tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    config = ExportConfig(format=request.param, buckets=[16])
    return export(tiny_bundles["tinybert"].path, config, tmp_path_factory.mktemp("qemu-bundle") / f"tinybert-{request.param}")


def test_qemu_target_matches_local(rootfs: Path, bundle: Bundle) -> None:
    columns = 2 if bundle.manifest.task.kind == "pair" else 1
    texts = [(text,) * columns for text in TEXTS]
    with parse_target("local") as local:
        expected = run_child(local, bundle.path, texts)
    target = parse_target(f"qemu-aarch64://{rootfs}")
    with target:
        result = run_child(target, bundle.path, texts)
        workdir = target.workdir  # type: ignore[attr-defined]
    assert result["machine"]["arch"] == "aarch64" and result["latency_source"] == "emulated"
    assert result["target"] == f"qemu-aarch64://{rootfs}"
    assert result["golden_max_abs_diff"] < 1e-4, result["golden_max_abs_diff"]
    ours, theirs = np.asarray(expected["logits"]), np.asarray(result["logits"])
    assert theirs.shape == ours.shape == (len(texts), ours.shape[1])
    assert float(np.mean(ours.argmax(-1) == theirs.argmax(-1))) == 1.0
    assert float(np.abs(ours - theirs).max()) < 1e-3, np.abs(ours - theirs).max()
    # The work directory under ROOTFS/tmp is gone, and nothing else of ours is left there.
    assert workdir is not None and workdir.parent == rootfs.resolve() / "tmp" and not workdir.exists()
