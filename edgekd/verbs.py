"""What each `edgekd` verb does with its parsed arguments: run the stage, print the result, return the exit code.

`edgekd.cli` builds the parser and dispatches here through HANDLERS. Backends are imported inside each handler, so
`edgekd --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable


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


def _pack(args: argparse.Namespace) -> int:
    from edgekd.archive import pack

    print(f"packed {args.bundle} into {pack(args.bundle, args.archive, overwrite=args.force)}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from edgekd.archive import unpack

    limits = {"max_bytes": args.max_bytes} if args.max_bytes else {}
    bundle = unpack(args.archive, args.output, overwrite=args.force, **limits)
    print(format_summary(bundle))
    return 0


def _validate(args: argparse.Namespace) -> int:
    import yaml

    from edgekd.config import load_recipe, resolve_recipe_path

    recipe = load_recipe(args.recipe, args.overrides)
    print(f"ok: {resolve_recipe_path(args.recipe)} is a valid recipe ({recipe.name})")
    if args.print:
        print(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False), end="")
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run, "teacher": _teacher, "distill": _distill, "export": _export, "quantize": _quantize, "prune": _prune,
    "predict": _predict, "target check": _target_check, "target setup": _target_setup, "bench": _bench, "gate": _gate,
    "inspect": _inspect, "pack": _pack, "import": _import, "validate": _validate,
}
