"""The `edgekd` command line: argparse verbs, printing, exit codes (0 ok, 1 a check failed, 2 bad usage or input).

Backends are imported inside the verbs, so `edgekd --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from edgekd import __version__
from edgekd.errors import EdgekdError

VERBS: dict[str, tuple[str, str]] = {
    "run": ("run a recipe end to end (teacher, students, export, quantize, bench, gate), skipping finished stages; exit code from the gate",
            "edgekd run demo"),
    "teacher": ("fine-tune (or import) the teacher of a recipe and write a teacher bundle", "edgekd teacher demo teacher.train.epochs=1"),
    "distill": ("distil the recipe's students from its teacher bundle", "edgekd distill sst2-students --student bilstm"),
    "export": ("export a torch bundle to ONNX or TFLite, checked against it (exit 1 on a parity failure)", "edgekd export runs/demo/tinybert --to onnx --fuse"),
    "quantize": ("quantize an ONNX or TFLite bundle and evaluate it against its parent", "edgekd quantize runs/demo/tinybert-onnx --preset x86-vnni"),
    "prune": ("prune a torch student (magnitude sparsity, vocabulary) and evaluate it against its parent", "edgekd prune runs/demo/tinybert --method vocab"),
    "predict": ("classify texts with an ONNX or TFLite bundle (JSON lines out)", "edgekd predict runs/demo/tinybert-onnx \"what a lovely day\""),
    "target": ("run a bundle on a target (local, ssh://..., qemu-aarch64://...) and compare it with this machine; set up the emulated one", "edgekd target check runs/demo/tinybert-onnx --target ssh://pi@raspberrypi.local"),
    "bench": ("measure latency, memory, size and accuracy of bundles against a reference (report.json, report.md)",
              "edgekd bench runs/demo/tinybert-onnx --reference bert-base-shape -o runs/demo/bench"),
    "gate": ("judge a benchmark report against a budget file: PASS/FAIL/INCONCLUSIVE per check (exit 0, 1; 2 bad input)",
             "edgekd gate runs/demo/bench/report.json --budget budget.yaml --junit gate.xml"),
    "inspect": ("print a readable summary of bundles (checks every file's hash)", "edgekd inspect runs/demo/teacher --json"),
    "validate": ("check a recipe and its overrides, reporting every problem at once", "edgekd validate sst2 data.path=../shared/data/sst2"),
}


# `key.sub=value` or `key.list[0].sub=value` on the command line.
OVERRIDE = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+|\[\d+\])*=")


def _epilog() -> str:
    width = max(len(v) for v in VERBS)
    lines = ["verbs (with an example each):"]
    for verb, (what, example) in VERBS.items():
        lines += [f"  {verb:<{width}}  {what}", f"  {'':<{width}}  $ {example}"]
    lines += ["", "exit codes: 0 ok, 1 a gate or parity check failed, 2 bad usage or bad input"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgekd",
        description="Distill a BERT teacher into an edge-ready student, export, quantize, and prove how it runs.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgekd {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors in the log")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def add(name: str) -> argparse.ArgumentParser:
        what, example = VERBS[name]
        return verbs.add_parser(name, help=what, description=what, epilog=f"example:\n  $ {example}", formatter_class=argparse.RawDescriptionHelpFormatter)

    run = add("run")
    run.add_argument("recipe", help="a recipe YAML path or a shipped recipe name (demo, sst2-tinybert, ...)")
    run.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides")
    run.add_argument("-o", "--output", type=Path, help="the run's folder (default runs/<recipe name>; sets output_dir)")
    run.add_argument("--force", action="store_true", help="re-run every stage, finished or not")
    run.set_defaults(run=_run)

    teacher = add("teacher")
    teacher.add_argument("recipe", help="a recipe YAML path or a shipped recipe name (demo, sst2-tinybert, ...)")
    teacher.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides")
    teacher.add_argument("-o", "--output", type=Path, help="bundle directory to write (default <output_dir>/teacher)")
    teacher.add_argument("--resume", action="store_true", help="continue from the last checkpoint of an interrupted run")
    teacher.add_argument("--force", action="store_true", help="replace an existing bundle at the output path")
    teacher.set_defaults(run=_teacher)

    distill = add("distill")
    distill.add_argument("recipe", help="a recipe YAML path or a shipped recipe name")
    distill.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides")
    distill.add_argument("--student", action="append", help="distil only this student (repeatable; default: all)")
    distill.add_argument("-o", "--output", type=Path, help="bundle directory (only with one student; default <output_dir>/<student>)")
    distill.add_argument("--resume", action="store_true", help="continue an interrupted run: finished stages are skipped")
    distill.add_argument("--force", action="store_true", help="replace an existing bundle at the output path")
    distill.set_defaults(run=_distill)

    export = add("export")
    export.add_argument("bundle", type=Path, metavar="BUNDLE", help="a torch bundle (teacher or student)")
    export.add_argument("overrides", nargs="*", metavar="data.key=value", help="where the parity dev examples come from, e.g. data.path=DIR")
    export.add_argument("--to", dest="format", required=True, help="onnx or tflite")
    export.add_argument("-o", "--output", type=Path, help="bundle directory to write (default BUNDLE-onnx, BUNDLE-onnx-fused, BUNDLE-tflite)")
    export.add_argument("--fuse", action="store_true", help="ONNX: apply ONNX Runtime's transformer fusions (BERT family)")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    export.add_argument("--buckets", default="32,64,128", help="TFLite: comma-separated sequence lengths (default 32,64,128)")
    export.add_argument("--parity-samples", default="256", help="dev examples compared with the parent, or 'all' (default 256)")
    export.add_argument("--force", action="store_true", help="replace an existing bundle at the output path")
    export.set_defaults(run=_export)

    from edgekd.config import QuantizeConfig, method_names

    quantize = add("quantize")
    quantize.add_argument("bundle", type=Path, metavar="BUNDLE", help="an ONNX or TFLite bundle (edgekd export)")
    quantize.add_argument("overrides", nargs="*", metavar="data.key=value", help="where calibration and dev text come from")
    quantize.add_argument("--method", help=f"one of: {', '.join(method_names(QuantizeConfig))}")
    quantize.add_argument("--preset", help="a hardware preset instead of --method: x86-vnni, avx2, arm64")
    quantize.add_argument("--calibration", help="onnx-static: minmax, entropy or percentile")
    quantize.add_argument("--samples", type=int, help="onnx-static: calibration examples from the training text (default 128)")
    quantize.add_argument("--activations", help="onnx-static: uint8 (x86) or int8 (ARM64)")
    quantize.add_argument("--per-tensor", action="store_true", help="one scale per weight tensor instead of per channel")
    quantize.add_argument("--reduce-range", action="store_true", help="7-bit weights (AVX2 without VNNI)")
    quantize.add_argument("--eval-samples", help="dev examples evaluated, or 'all' (default all)")
    quantize.add_argument("--min-agreement", type=float, help="floor on top-1 agreement with the parent (default 0.9)")
    quantize.add_argument("-o", "--output", type=Path, help="bundle directory (default BUNDLE-<method suffix>)")
    quantize.add_argument("--force", action="store_true", help="replace an existing bundle at the output path")
    quantize.set_defaults(run=_quantize)

    prune = add("prune")
    prune.add_argument("bundle", type=Path, metavar="BUNDLE", help="a torch bundle (a distilled student)")
    prune.add_argument("overrides", nargs="*", metavar="data.key=value", help="where the training and dev text come from")
    prune.add_argument("--method", required=True, help="magnitude, structured or vocab")
    prune.add_argument("--sparsity", type=float, help="magnitude: the share of Linear weights set to zero, in [0, 1)")
    prune.add_argument("--heads", type=float, help="structured: the share of attention heads removed, in [0, 1)")
    prune.add_argument("--ffn", type=float, help="structured: the share of FFN neurons removed from every layer, in [0, 1)")
    prune.add_argument("--samples", type=int, help="structured: training examples that rank the units (default 512)")
    prune.add_argument("--min-count", type=int, help="vocab: keep pieces the training text uses at least this often (default 1)")
    prune.add_argument("-o", "--output", type=Path, help="bundle directory (default BUNDLE-sparse<N> or BUNDLE-vocab)")
    prune.add_argument("--force", action="store_true", help="replace an existing bundle at the output path")
    prune.set_defaults(run=_prune)

    predict = add("predict")
    predict.add_argument("bundle", type=Path, metavar="BUNDLE", help="an ONNX or TFLite bundle")
    predict.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify (a pair model: the two texts joined by a tab)")
    predict.add_argument("--input", type=Path, help="a UTF-8 file: one text (or one tab-separated pair) per line; - reads stdin")
    predict.add_argument("--threads", type=int, default=1, help="backend intra-op threads (default 1)")
    predict.add_argument("--batch-size", type=int, default=32, help="texts per inference call (default 32)")
    predict.set_defaults(run=_predict)

    target = add("target")
    target_verbs = target.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = target_verbs.add_parser("check", help="run the golden texts and dev samples on the target; agreement with this machine")
    check.add_argument("bundle", type=Path, metavar="BUNDLE", help="an ONNX or TFLite bundle")
    check.add_argument("overrides", nargs="*", metavar="data.key=value", help="where the dev texts come from")
    check.add_argument("--target", required=True, help="local, ssh://user@host[:port][?python=PATH&identity=KEY&known_hosts=FILE] or qemu-aarch64://ROOTFS[?cpu=MODEL]")
    check.add_argument("--samples", type=int, default=64, help="dev texts spread over the length range (default 64)")
    check.add_argument("--timeout", type=float, default=600, help="seconds the run on the target may take (default 600)")
    check.set_defaults(run=_target_check)
    target_setup = target_verbs.add_parser("setup", help="make an emulated target: an arm64 Debian root filesystem run through qemu (as root)")
    target_setup.add_argument("kind", choices=["qemu-aarch64"], help="the kind of target")
    target_setup.add_argument("directory", type=Path, metavar="DIR", help="an empty or new directory (about 550 MB); then --target qemu-aarch64://DIR")
    target_setup.set_defaults(run=_target_setup)

    bench = add("bench")
    bench.add_argument("bundles", type=Path, nargs="+", metavar="BUNDLE", help="ONNX or TFLite bundles")
    bench.add_argument("-o", "--output", type=Path, required=True, help="report directory (report.json, report.md)")
    bench.add_argument("--reference", help="a bundle, or bert-base-shape (BERT-base-sized, random weights: latency only)")
    bench.add_argument("--teacher", help="the teacher bundle whose dev metric accuracy drops are measured against")
    bench.add_argument("--target", default="local", help="local or ssh://user@host[:port][?python=PATH] (default local)")
    bench.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    bench.add_argument("--queries", type=int, default=64, help="measured queries per measurement, at least 64 (default 64)")
    bench.add_argument("--seconds", type=float, default=1.0, help="minimum measured seconds, at least 1 (default 1)")
    bench.add_argument("--texts", type=int, default=200, help="real dev sentences cycled through (default 200)")
    bench.set_defaults(run=_bench, overrides=[])

    gate = add("gate")
    gate.add_argument("report", type=Path, metavar="REPORT", help="report.json written by edgekd bench")
    gate.add_argument("--budget", type=Path, required=True, help="the budget YAML")
    gate.add_argument("--junit", type=Path, help="write JUnit XML here (CI test reports)")
    gate.add_argument("--summary", type=Path, help="write a markdown summary here (e.g. $GITHUB_STEP_SUMMARY)")
    gate.add_argument("--no-remeasure", action="store_true", help="leave an inconclusive latency ratio as it is")
    gate.add_argument("--target", help="where to measure again (default: the report's target)")
    gate.set_defaults(run=_gate)

    inspect = add("inspect")
    inspect.add_argument("bundles", type=Path, nargs="+", metavar="BUNDLE")
    inspect_format = inspect.add_mutually_exclusive_group()
    inspect_format.add_argument("--json", action="store_true", help="print the manifest as JSON")
    inspect_format.add_argument("--table", action="store_true", help="one markdown table row per bundle (results pages)")
    inspect.set_defaults(run=_inspect)

    validate = add("validate")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*", metavar="key.sub=value")
    validate.add_argument("--print", action="store_true", help="print the resolved recipe as YAML")
    validate.set_defaults(run=_validate)
    return parser


def _run(args: argparse.Namespace) -> int:
    from edgekd.config import load_recipe
    from edgekd.pipeline import run

    recipe = load_recipe(args.recipe, args.overrides)
    if args.output:
        recipe = recipe.model_copy(update={"output_dir": str(args.output)})
    outcome = run(recipe, force=args.force, echo=lambda line: print(line, flush=True))
    return outcome.exit_code


def _teacher(args: argparse.Namespace) -> int:
    from edgekd.config import load_recipe
    from edgekd.distill.teacher import teacher

    recipe = load_recipe(args.recipe, args.overrides)
    bundle = teacher(recipe, args.output, resume=args.resume, force=args.force)
    dev = bundle.manifest.metrics.get("dev", {})
    shown = ", ".join(f"{k} {v:.4f}" for k, v in dev.items() if k != "examples")
    print(f"teacher bundle: {bundle.path}")
    print(f"dev ({dev.get('examples')} examples): {shown}")
    return 0


def _distill(args: argparse.Namespace) -> int:
    from edgekd.config import load_recipe
    from edgekd.distill.distill import distill
    from edgekd.errors import ConfigError

    recipe = load_recipe(args.recipe, args.overrides)
    names = args.student or list(recipe.students)
    if not names:
        raise ConfigError(f"recipe {recipe.name!r} has no students; add a `students:` section")
    if args.output and len(names) > 1:
        raise ConfigError(f"-o names one bundle but {len(names)} students would be written; add --student NAME")
    for name in names:
        bundle = distill(recipe, name, args.output, resume=args.resume, force=args.force)
        if int(os.environ.get("RANK", "0")) != 0:
            continue  # under a data-parallel launcher, the main process reports
        m = bundle.manifest.metrics
        dev = ", ".join(f"{k} {v:.4f}" for k, v in m["dev"].items() if k != "examples")
        print(f"student {name}: {bundle.path}")
        print(f"  dev ({m['dev']['examples']} examples): {dev}; teacher: "
              + ", ".join(f"{k} {v:.4f}" for k, v in m["teacher_dev"].items() if isinstance(v, float)))
        if "agreement_with_teacher" in m:
            print(f"  agreement with the teacher {m['agreement_with_teacher']:.4f}; parameters {m['parameters']:,} "
                  f"(teacher {m['teacher_parameters']:,})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from edgekd.config import ExportConfig
    from edgekd.errors import ConfigError
    from edgekd.export.stage import export

    formats = ("onnx", "tflite")
    if args.format not in formats:
        raise ConfigError(f"--to {args.format!r} is not an export format; valid: {', '.join(formats)}")
    try:
        buckets = [int(b) for b in args.buckets.split(",") if b.strip()]
        samples = args.parity_samples if args.parity_samples == "all" else int(args.parity_samples)
        cfg = ExportConfig(format=args.format, fuse=args.fuse, opset=args.opset, buckets=buckets, parity_samples=samples)
    except ValueError as exc:  # int() of a bad number, and pydantic's ValidationError (a ValueError)
        detail = "; ".join(e["msg"] for e in exc.errors()) if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(f"export options: {detail} (--buckets takes e.g. 32,64,128; --parity-samples a number or 'all')") from None
    bundle = export(args.bundle, cfg, args.output, overrides=args.overrides, force=args.force)
    m = bundle.manifest.metrics
    print(f"{cfg.format} bundle: {bundle.path}")
    for row in m["parity"]["outputs"]:
        print(f"  parity {row['name']:<22} {row['examples']:>5} examples  max|diff| {row['max_abs_diff']:.2e}  "
              f"agreement {row['agreement']:.4f}  SQNR {_db(row['sqnr_db'])}")
    key = "dev" if "dev" in m else "dev_sample"
    print(f"  {key}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in m[key].items()))
    fusions = bundle.manifest.architecture.get("export", {}).get("fusions")
    if fusions is not None:
        print("  fusions: " + (", ".join(f"{k} {v}" for k, v in fusions.items()) or "none fired"))
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from edgekd.config import QuantizeConfig, method_names
    from edgekd.errors import ConfigError
    from edgekd.quantize.presets import PRESETS, for_target
    from edgekd.quantize.stage import quantize

    methods = ", ".join(method_names(QuantizeConfig))
    if bool(args.method) == bool(args.preset):
        raise ConfigError(f"give one of --method ({methods}) or --preset ({', '.join(PRESETS)})")
    samples = args.eval_samples
    options: dict[str, object] = {
        "calibration": args.calibration, "samples": args.samples, "activations": args.activations,
        "eval_samples": int(samples) if samples and samples.isdigit() else samples, "min_agreement": args.min_agreement,
        "per_channel": False if args.per_tensor else None, "reduce_range": True if args.reduce_range else None,
    }
    base = for_target(args.preset).model_dump() if args.preset else {"method": args.method}
    raw = {**base, **{k: v for k, v in options.items() if v is not None}}
    cfg = _validated(QuantizeConfig, raw, f"quantize options for {raw['method']!r}", f"valid methods: {methods}; an option of another method does not apply")
    _print_derived(quantize(args.bundle, cfg, args.output, overrides=args.overrides, force=args.force))
    return 0


def _prune(args: argparse.Namespace) -> int:
    from edgekd.config import PruneConfig
    from edgekd.quantize.prune import prune

    given = {"sparsity": args.sparsity, "heads": args.heads, "ffn": args.ffn, "samples": args.samples, "min_count": args.min_count}
    raw = {"method": args.method, **{k: v for k, v in given.items() if v is not None}}
    cfg = _validated(PruneConfig, raw, "prune options", "methods: magnitude --sparsity S; structured --heads H --ffn F; vocab; shares in [0, 1)")
    _print_derived(prune(args.bundle, cfg, args.output, overrides=args.overrides, force=args.force))
    return 0


def _validated(union: object, raw: dict[str, object], what: str, hint: str) -> object:
    """A config of a tagged union from command-line options; every problem in one ConfigError."""
    from pydantic import TypeAdapter, ValidationError

    from edgekd.errors import ConfigError

    try:
        return TypeAdapter(union).validate_python(raw)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'method'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{what}:\n  " + "\n  ".join(lines) + f"\n({hint})") from None


def _print_derived(bundle: object) -> None:
    """What a quantize or prune run wrote: dev metrics, agreement and SQNR against the parent, sizes."""
    from edgekd.bundle import Bundle

    assert isinstance(bundle, Bundle)
    m = bundle.manifest.metrics
    size, parent_size = m["footprint"], m["parent_footprint"]
    key = "dev" if "dev" in m else "dev_sample"
    details = next((bundle.manifest.architecture[k] for k in ("quantize", "prune", "inc") if k in bundle.manifest.architecture), {})
    print(f"{details.get('method', bundle.manifest.produced_by.stage)} bundle: {bundle.path}")
    print(f"  {key}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in m[key].items())
          + "; parent: " + ", ".join(f"{k} {v:.4f}" for k, v in m["parent_dev"].items() if isinstance(v, float)))
    for row in m["parity"]["outputs"]:
        print(f"  vs parent {row['name']:<8} {row['examples']:>5} examples  agreement {row['agreement']:.4f}  SQNR {_db(row['sqnr_db'])}")
    print(f"  parameters {size['parameters']:,} ({size['nonzero_parameters']:,} non-zero), parent {parent_size['parameters']:,}; "
          f"file {size['bytes'] / 1e6:.2f} MB (gzip {size['gzip_bytes'] / 1e6:.2f} MB), parent {parent_size['bytes'] / 1e6:.2f} MB "
          f"(gzip {parent_size['gzip_bytes'] / 1e6:.2f} MB)")
    if details.get("method") == "inc":
        from edgekd.quantize.inc import inc_trials_table

        print("  Neural Compressor trials:\n    " + "\n    ".join(inc_trials_table(details)))


def _predict(args: argparse.Namespace) -> int:
    from edgekd.errors import ConfigError, DataError
    from edgekd.runtime.classifier import Classifier, read_texts

    if bool(args.texts) == bool(args.input):
        raise ConfigError("give texts on the command line or --input FILE (one text, or a tab-separated pair, per line)")
    if args.threads < 1 or args.batch_size < 1:
        raise ConfigError(f"--threads {args.threads} and --batch-size {args.batch_size} must be at least 1")
    classifier = Classifier.load(args.bundle, threads=args.threads, batch_size=args.batch_size)
    columns = classifier.bundle.manifest.task.columns
    if args.input:
        try:
            raw = sys.stdin.read() if str(args.input) == "-" else args.input.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(f"--input {args.input}: no such file") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"--input {args.input}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        texts = read_texts(raw.splitlines(), columns, str(args.input))
    else:
        texts = read_texts(args.texts, columns, "the command line")
    for text, prediction in zip(texts, classifier.predict(texts)):
        print(json.dumps({"text": text[0] if columns == 1 else list(text), **prediction.as_dict()}, ensure_ascii=False))
    return 0


def _target_check(args: argparse.Namespace) -> int:
    import numpy as np

    from edgekd.bundle import Bundle
    from edgekd.data import lineage_data, load_task_data, spread_by_length
    from edgekd.runtime.targets import parse_target, run_child

    target = parse_target(args.target)
    bundle = Bundle.open(args.bundle)
    dev = load_task_data(lineage_data(bundle, args.overrides)).dev
    lengths = np.asarray([sum(len(part.split()) for part in text) for text in dev.texts])
    texts = [dev.texts[i] for i in spread_by_length(lengths, args.samples)]
    with parse_target("local") as local:
        host = run_child(local, bundle.path, texts, timeout=args.timeout)
    with target:
        remote = run_child(target, bundle.path, texts, timeout=args.timeout)
    ours, theirs = np.asarray(host["logits"]), np.asarray(remote["logits"])
    agreement = float(np.mean(ours.argmax(-1) == theirs.argmax(-1))) if len(ours) else 1.0
    machine = remote["machine"]
    print(f"{remote['target']} ({remote['latency_source']}): {machine['arch']}, {machine['cpu']}, {machine['cores']} cores, "
          f"Python {machine['python']}, {', '.join(f'{k} {v}' for k, v in machine['versions'].items())}")
    print(f"  golden: max |logit - stored| {remote['golden_max_abs_diff']:.2e}")
    print(f"  {len(texts)} dev texts: agreement with this machine {agreement:.4f}, max |logit diff| {np.abs(ours - theirs).max():.2e}")
    return 0


def _target_setup(args: argparse.Namespace) -> int:
    from edgekd.runtime.targets.qemu_setup import setup

    facts, done = setup(args.directory)
    root = os.path.abspath(args.directory)
    packages = ", ".join(f"{k} {v}" for k, v in facts["packages"].items())
    if done:
        print(f"{root}: arm64 {facts['suite']} root filesystem ready in {facts['setup_seconds']:.0f} s")
    else:
        print(f"{root}: already a finished arm64 {facts['suite']} root filesystem; nothing done")
    print(f"  Python {facts['python']}, {packages}; {facts['qemu']}")
    print(f"  use: --target qemu-aarch64://{root}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from edgekd.benchmarks import report
    from edgekd.benchmarks.bench import BenchSettings, bench
    from edgekd.errors import ConfigError

    try:
        threads = tuple(int(t) for t in args.threads.split(",") if t.strip())
    except ValueError:
        raise ConfigError(f"--threads {args.threads!r}: comma-separated counts, e.g. 1,2") from None
    settings = BenchSettings(
        target=args.target, reference=args.reference, teacher=args.teacher, threads=threads, queries=args.queries,
        seconds=args.seconds, texts=args.texts, overrides=tuple(args.overrides),
    )
    result = bench(args.bundles, settings)
    paths = report.write(result, args.output)
    print(report.markdown(result))
    print(f"report: {paths['json']} and {paths['md']}")
    return 0


def _gate(args: argparse.Namespace) -> int:
    from edgekd.benchmarks import gate, report

    measured = report.load(args.report)
    budget = gate.load_budget(args.budget)
    remeasure = None if args.no_remeasure else gate.remeasurer(measured, budget, args.target)
    checks = gate.judge(measured, budget, remeasure)
    for check in checks:
        print(check.line())
    if args.junit:
        args.junit.write_text(gate.junit(checks), encoding="utf-8")
    if args.summary:
        with open(args.summary, "a", encoding="utf-8") as summary:  # GitHub's step summary is appended to
            summary.write(gate.markdown(checks, measured))
    code = gate.exit_code(checks)
    print("gate: " + ("PASS" if code == 0 else "FAIL"))
    return code


def _db(value: float | str) -> str:
    return f"{value:.1f} dB" if isinstance(value, float) else f"{value} dB"


def _inspect(args: argparse.Namespace) -> int:
    from edgekd.bundle import Bundle

    bundles = [Bundle.open(path) for path in args.bundles]
    if args.table:
        from edgekd.benchmarks import artifact_table, training_table

        trained = [b for b in bundles if b.manifest.produced_by.stage in ("teacher", "distill")]
        derived = [b for b in bundles if b not in trained]
        print("\n\n".join(t for t in (trained and training_table.table(trained), derived and artifact_table.table(derived)) if t))
        return 0
    for bundle in bundles:
        if args.json:
            print(json.dumps({"path": str(bundle.path), "sha256": bundle.sha256, **bundle.manifest.model_dump(mode="json")}, indent=2))
        else:
            print(format_summary(bundle))
    return 0


def format_summary(bundle: object) -> str:
    """A human-readable summary of a bundle for `edgekd inspect`."""
    from edgekd.bundle import Bundle

    assert isinstance(bundle, Bundle)
    m = bundle.manifest
    total = sum(f.bytes for f in m.files.values())
    lines = [
        f"{bundle.path}  ({m.kind}, {m.format}, schema {m.schema_version}, edgekd {m.edgekd_version})",
        f"  sha256     {bundle.sha256}",
        f"  task       {m.task.name}: {m.task.kind}-text {m.task.problem}, labels {', '.join(m.task.labels)}",
        "  model      " + ", ".join(f"{k} {v}" for k, v in m.architecture.items()),
        f"  tokenizer  {m.tokenizer.type}, max length {m.tokenizer.max_length}, lowercase {m.tokenizer.lowercase}",
        "  inputs     " + ", ".join(f"{t.name} {t.dtype}{t.shape}" for t in m.inputs),
        "  outputs    " + ", ".join(f"{t.name} {t.dtype}{t.shape}" for t in m.outputs),
        f"  files      {len(m.files)} files, {total / 1e6:.1f} MB, all hashes verified",
    ]
    for name, entry in sorted(m.files.items(), key=lambda kv: -kv[1].bytes)[:5]:
        lines.append(f"             {entry.bytes / 1e6:9.2f} MB  {name}")
    dev = m.metrics.get("dev")
    if isinstance(dev, dict):
        lines.append("  dev        " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in dev.items()))
    parent = f"{m.parent.path} ({m.parent.sha256[:12]})" if m.parent else "none"
    lines.append(f"  lineage    stage {m.produced_by.stage}, {m.produced_by.time}, seed {m.produced_by.seed}, parent {parent}")
    return "\n".join(lines)


def _validate(args: argparse.Namespace) -> int:
    import yaml

    from edgekd.config import load_recipe, resolve_recipe_path

    recipe = load_recipe(args.recipe, args.overrides)
    print(f"ok: {resolve_recipe_path(args.recipe)} is a valid recipe ({recipe.name})")
    if args.print:
        print(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # Overrides (key.sub=value) may come anywhere: they are taken out before argparse reads the rest, so that
    # `edgekd quantize data.path=DIR BUNDLE` does not read the override as the bundle, nor `bench` as one more bundle.
    tokens = list(sys.argv[1:] if argv is None else argv)
    overrides = [t for t in tokens if OVERRIDE.match(t)]
    args = parser.parse_args([t for t in tokens if not OVERRIDE.match(t)])
    if overrides:
        if not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(overrides)} ({args.verb} takes no key=value overrides)")
        args.overrides = [*args.overrides, *overrides]
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.debug:
        # Third-party libraries are chatty at INFO; keep our own logs.
        for name in ("datasets", "urllib3", "filelock", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # transformers' "newly initialized head" notice is expected when fine-tuning; torchao and torch warn about
        # kernels this CPU machine does not use.
        for name in ("transformers", "torchao", "torch"):
            logging.getLogger(name).setLevel(logging.ERROR)
        # transformers resets its own logger's level on import; its environment variable survives that.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except EdgekdError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"edgekd {args.verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"edgekd {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
