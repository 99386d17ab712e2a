"""Peers: a student's FP32 ONNX file quantized the ways a user gets without edgekd, measured beside edgekd's own files.

    python -m edgekd.peers STUDENT_ONNX -o DIR [--with BUNDLE ...] [--lengths 16 32 64 128] [data.path=...]

The peers are Optimum's `ORTQuantizer` with its `avx512_vnni` and `arm64` presets (dynamic INT8) and ONNX Runtime's
`quantize_dynamic` with its defaults, each written as a bundle under DIR by the quantize stage (re-made only when the
student or the method changed), then measured with edgekd's files by `edgekd.benchmarks.peers`. It sits beside the
pipeline because it runs two stages (quantize, then the benchmark), which do not import each other.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekd.benchmarks.bench import task_metric, timing_texts
from edgekd.benchmarks.peers import REFERENCE, markdown, measure, summarize
from edgekd.bundle import Bundle
from edgekd.config import OnnxDynamicConfig, OptimumDynamicConfig, QuantizeConfig
from edgekd.config.base import to_dict
from edgekd.data import lineage_data, load_task_data
from edgekd.errors import ConfigError, EdgekdError, UnsupportedError
from edgekd.records import DEPLOYABLE_FORMATS

# What a user gets without edgekd, by the name each peer's bundle gets under DIR.
PEERS: dict[str, QuantizeConfig] = {
    REFERENCE: OptimumDynamicConfig(preset="avx512_vnni"),
    "optimum-arm64": OptimumDynamicConfig(preset="arm64"),
    "ort-quantize-dynamic": OnnxDynamicConfig(per_channel=False, operators="ort-defaults"),
}


def fp32_onnx(path: Path) -> Bundle:
    bundle = Bundle.open(path)
    m = bundle.manifest
    if m.format != "onnx" or m.architecture.quantize:
        what = "a quantized ONNX bundle" if m.architecture.quantize else f"a {m.format} bundle"
        raise UnsupportedError(f"{path}: is {what}; give the student's FP32 ONNX export (edgekd export STUDENT --to onnx)")
    return bundle


def derived_under(student: Bundle, methods: dict[str, QuantizeConfig], out: Path, overrides: Sequence[str] = ()) -> dict[str, Bundle]:
    """Each method's quantization of `student` as the bundle `out/<name>`: the one there when it was made from this
    student by the same method, else made now (the quantize stage evaluates it against the student)."""
    from edgekd.quantize.stage import quantize

    made = {}
    for name, cfg in methods.items():
        target = out / name
        try:
            existing = Bundle.open(target)
            current = existing.manifest.parent.sha256 == student.sha256 and existing.manifest.produced_by.config.get("quantize") == to_dict(cfg)
        except (EdgekdError, AttributeError):
            current = False
        made[name] = existing if current else quantize(student.path, cfg, target, overrides=overrides, force=True)
    return made


def peers(student_path: Path, out: Path, others: Sequence[Path] = (), *, lengths: Sequence[int] = (16, 32, 64, 128), rounds: int = 200,
          threads: int = 1, target: str = "local", overrides: Sequence[str] = (), command: str = "") -> dict[str, Any]:
    student = fp32_onnx(student_path)
    with_bundles = {}
    for path in others:
        bundle = Bundle.open(path)
        if bundle.manifest.format not in DEPLOYABLE_FORMATS:
            raise UnsupportedError(f"{path}: is a {bundle.manifest.format} bundle; --with takes ONNX, TFLite or ExecuTorch bundles")
        if path.name in with_bundles or path.name in PEERS or path.name == student.path.name:
            raise ConfigError(f"--with {path}: another file measured here is already named {path.name!r}; each needs its own folder name")
        with_bundles[path.name] = bundle
    dev = load_task_data(lineage_data(student, list(overrides))).dev
    models = {student.path.name: student, **derived_under(student, PEERS, out, overrides), **with_bundles}
    measured = measure(models, target, list(lengths), rounds, threads, timing_texts(dev.texts))
    result = {
        "student": str(student.path), "command": command, "target": measured["target"], "machine": measured["machine"],
        "threads": threads, "rounds": rounds, "lengths": list(lengths), "reference": REFERENCE, "dev_examples": len(dev),
        "metric": task_metric(student.manifest),
        "models": summarize(models, measured, dev, REFERENCE),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (out / "peers.md").write_text(markdown(result), encoding="utf-8")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekd.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("student", type=Path, help="the student's FP32 ONNX bundle (edgekd export STUDENT --to onnx)")
    parser.add_argument("overrides", nargs="*", metavar="data.key=value", help="where the dev text comes from")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the peers' bundles, peers.json and peers.md")
    parser.add_argument("--with", dest="others", type=Path, action="append", default=[], help="an edgekd bundle measured beside them")
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--target", default="local")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if any(n < 2 for n in args.lengths) or args.rounds < 10 or args.threads < 1:
            raise ConfigError(f"--lengths {args.lengths} --rounds {args.rounds} --threads {args.threads}: lengths of at least 2, "
                              "at least 10 rounds and 1 thread")
        result = peers(args.student, args.output, args.others, lengths=args.lengths, rounds=args.rounds, threads=args.threads,
                       target=args.target, overrides=args.overrides, command=" ".join(["python -m edgekd.peers", *(argv or sys.argv[1:])]))
    except EdgekdError as exc:
        print(f"edgekd peers: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
