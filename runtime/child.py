"""The process a target runs next to a bundle: classify the bundle's golden texts and given texts, check the golden
logits, and write one JSON file. It imports only the runtime (numpy, pydantic, the backend, tokenizers).

    python -m edgekd.runtime.child BUNDLE --out result.json [--texts texts.jsonl] [--threads 1]
    ... --bench [--queries N] [--seconds S] [--reference REF_BUNDLE]    # the benchmark protocol (runtime/latency.py)
    python -m edgekd.runtime.child --baseline --out result.json           # the runtime imported, no model: memory floor
    python -m edgekd.runtime.child --side-by-side B1 B2 ... --texts T --lengths 16 64 --rounds N --out r.json  # rounds.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekd.protocol import MIN_QUERIES, MIN_SECONDS, MIN_WARMUP


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


def texts_file_text(texts: Sequence[tuple[str, ...]]) -> str:
    """The texts file the host pushes for the child: one JSON list of 1 or 2 strings per line."""
    return "".join(json.dumps(list(text), ensure_ascii=False) + "\n" for text in texts)


def read_texts_file(path: Path) -> list[tuple[str, ...]]:
    """The texts of `texts_file_text`. Lines end at "\n" only: the JSON keeps U+2028 and NEL unescaped, and
    str.splitlines() would split a text there."""
    return [tuple(json.loads(line)) for line in path.read_text(encoding="utf-8").split("\n") if line]


def _import_backend_of(bundle: Path) -> None:
    """Import the bundle's backend library before start-up is timed: start-up is the model's (reading the file, creating
    the session), not Python importing onnxruntime, LiteRT or ExecuTorch (which brings torch: seconds), which an app
    links instead. A manifest that cannot be read is left to `Classifier.load` to report."""
    import importlib

    from edgekd.runtime.backends import BACKEND_MODULES

    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, ImportError):
        importlib.import_module(BACKEND_MODULES[json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))["format"]])


def _bench(args: argparse.Namespace) -> dict[str, object]:
    from edgekd.runtime.classifier import Classifier
    from edgekd.runtime.latency import (
        measure,
        measure_end_to_end,
        measure_pairs,
        padded_worst_case,
        peak_rss_kb,
        warm_up,
    )

    texts = read_texts_file(args.texts)
    _import_backend_of(args.bundle)
    started = time.perf_counter()
    # No golden self-check here: start-up and the first inference are timed, and are the model's alone.
    classifier = Classifier.load(args.bundle, threads=args.threads, verify=False)
    startup = time.perf_counter() - started
    real = classifier.encoder.encode(texts)
    started = time.perf_counter()
    classifier.backend.run([real[0]])
    first = time.perf_counter() - started
    result: dict[str, object] = {"bundle_sha256": classifier.bundle.sha256, "machine": machine(), "threads": args.threads,
                                 "startup_seconds": startup, "first_inference_seconds": first}
    warm_up(classifier, real, args.warmup, args.seconds)
    result["real"] = measure(classifier, real, args.queries, args.seconds)
    # The same texts from the string on (the model already warm): what an app waits for.
    result["end_to_end"] = measure_end_to_end(classifier, texts, args.queries, args.seconds)
    padded = [padded_worst_case(classifier, texts)]
    warm_up(classifier, padded, args.warmup, args.seconds / 4)
    result["padded"] = measure(classifier, padded, args.queries, args.seconds)
    result["padded_tokens"] = max(len(v) for v in padded[0].values() if hasattr(v, "__len__"))
    result["vm_hwm_kb"] = peak_rss_kb()
    if args.reference:
        reference = Classifier.load(args.reference, threads=args.threads, verify=False)
        reference_real = reference.encoder.encode(texts)
        warm_up(reference, reference_real, args.warmup, args.seconds)
        candidate_times, reference_times = measure_pairs(classifier, reference, real, reference_real, max(args.queries, len(texts)))
        result["pairs"] = {"candidate": candidate_times, "reference": reference_times, "reference_sha256": reference.bundle.sha256}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekd.runtime.child")
    parser.add_argument("bundle", type=Path, nargs="?")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--texts", type=Path, help="JSON lines, each a list of one or two strings")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bench", action="store_true", help="measure latency (the texts are the real inputs)")
    parser.add_argument("--queries", type=int, default=MIN_QUERIES)
    parser.add_argument("--seconds", type=float, default=MIN_SECONDS)
    parser.add_argument("--warmup", type=int, default=MIN_WARMUP)
    parser.add_argument("--reference", type=Path, help="with --bench: also measure pairs against this bundle")
    parser.add_argument("--baseline", action="store_true", help="import the runtime, load nothing, report memory")
    parser.add_argument("--side-by-side", type=Path, nargs="+", metavar="BUNDLE", help="measure these bundles in rounds (rounds.py)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64, 128], help="with --side-by-side: sequence lengths")
    parser.add_argument("--rounds", type=int, default=2 * MIN_QUERIES, help="with --side-by-side: rounds per length")
    args = parser.parse_args(argv)
    from edgekd.errors import EdgekdError
    from edgekd.runtime.classifier import Classifier
    from edgekd.runtime.golden import check_golden

    if args.baseline:
        import edgekd.runtime.backends  # noqa: F401 - what a measured child imports before loading a model
        from edgekd.runtime.latency import peak_rss_kb

        args.out.write_text(json.dumps({"machine": machine(), "vm_hwm_kb": peak_rss_kb()}), encoding="utf-8")
        return 0
    if args.bundle is None and not args.side_by_side:
        parser.error("BUNDLE is required (or --baseline, or --side-by-side)")
    try:
        if args.side_by_side:
            from edgekd.runtime.rounds import side_by_side

            rounds = side_by_side(args.side_by_side, read_texts_file(args.texts), args.lengths, args.rounds, args.threads)
            args.out.write_text(json.dumps(rounds), encoding="utf-8")
            return 0
        if args.bench:
            result = _bench(args)
            args.out.write_text(json.dumps(result), encoding="utf-8")
            return 0
        started = time.perf_counter()
        # The golden check is reported, not raised: the host decides (and shows the difference either way).
        classifier = Classifier.load(args.bundle, threads=args.threads, verify=False)
        load_seconds = time.perf_counter() - started
        golden, golden_texts = classifier.bundle.read_golden()
        check, golden_logits = check_golden(classifier.bundle.manifest, golden, classifier.encoder.encode(golden_texts),
                                            classifier.encoder.pad_id, classifier.backend.run)
        texts = read_texts_file(args.texts) if args.texts else []
        logits = classifier.logits(texts) if texts else np.zeros((0, golden_logits.shape[1]), dtype=np.float32)
        result = {
            "bundle_sha256": classifier.bundle.sha256,
            "machine": machine(),
            "load_seconds": round(load_seconds, 4),
            # JSON has no NaN or infinity: a non-finite difference is written as a string ("nan", "inf").
            "golden_max_abs_diff": check.max_abs_diff if np.isfinite(check.max_abs_diff) else str(check.max_abs_diff),
            "golden_tolerance": check.tolerance,
            "golden_tokenizer_problems": list(check.tokenizer_problems),
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
