"""The process a target runs next to a bundle: classify the bundle's golden texts and given texts, check the golden
logits, and write one JSON file. It imports only the runtime (numpy, pydantic, the backend, tokenizers).

    python -m edgekd.runtime.child BUNDLE --out result.json [--texts texts.jsonl] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def machine() -> dict[str, object]:
    """Where this ran: architecture, CPU model and flags of interest, cores, Python and runtime versions."""
    cpu, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Model") and not cpu:
                cpu = value.strip()
            if key.strip() in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    versions = {}
    for module in ("numpy", "onnxruntime", "ai_edge_litert", "tokenizers"):
        loaded = sys.modules.get(module)
        if loaded is not None:
            versions[module] = getattr(loaded, "__version__", "unknown")
    return {
        "arch": platform.machine(),
        "cpu": cpu or platform.processor(),
        "flags": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "sve", "i8mm"}),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "versions": versions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekd.runtime.child")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--texts", type=Path, help="JSON lines, each a list of one or two strings")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    from edgekd.errors import EdgekdError
    from edgekd.runtime.classifier import Classifier

    try:
        started = time.perf_counter()
        classifier = Classifier.load(args.bundle, threads=args.threads)
        load_seconds = time.perf_counter() - started
        golden = np.load(classifier.bundle.file(classifier.bundle.manifest.golden or "golden.npz"))
        golden_texts = [tuple(str(t) for t in row) for row in golden["texts"]]
        golden_logits = classifier.logits(golden_texts)
        texts = [tuple(json.loads(line)) for line in args.texts.read_text(encoding="utf-8").splitlines()] if args.texts else []
        logits = classifier.logits(texts) if texts else np.zeros((0, golden_logits.shape[1]), dtype=np.float32)
        result = {
            "bundle_sha256": classifier.bundle.sha256,
            "machine": machine(),
            "load_seconds": round(load_seconds, 4),
            "golden_max_abs_diff": float(np.abs(golden_logits - golden["logits"]).max()),
            "golden_logits": golden_logits.tolist(),
            "logits": logits.tolist(),
        }
    except EdgekdError as exc:
        print(f"edgekd child: error: {exc}", file=sys.stderr)
        return exc.exit_code
    args.out.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
