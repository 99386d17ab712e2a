"""What each `edgekd` verb does with its parsed arguments: run the stage, print the result, return the exit code.

`edgekd.cli` builds the parser and dispatches here through HANDLERS. Backends are imported inside each handler, so
`edgekd --help` stays instant.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO


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
    from edgekd.writer import check_output

    recipe = load_recipe(args.recipe, args.overrides)
    check_output(args.output or recipe.out / "teacher", overwrite=args.force)  # before torch is imported (seconds)
    from edgekd.distill.teacher import teacher

    bundle = teacher(recipe, args.output, resume=args.resume, force=args.force)
    scores = bundle.manifest.metrics.scores()
    print(f"teacher bundle: {bundle.path}")
    print(scores.describe() if scores else "dev: not measured")
    return 0


def _distill(args: argparse.Namespace) -> int:
    from edgekd.config import load_recipe
    from edgekd.errors import ConfigError
    from edgekd.seeds import mean_sd, seeded_path, seeds_of, summary_path, write_summary
    from edgekd.writer import check_output

    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: distil each student under at least 1 seed (e.g. --seeds 3)")
    # --seeds N is the recipe's `seeds` key.
    recipe = load_recipe(args.recipe, [*args.overrides, *([f"seeds={args.seeds}"] if args.seeds is not None else [])])
    names = args.student or list(recipe.students)
    if not names:
        raise ConfigError(f"recipe {recipe.name!r} has no students; add a `students:` section")
    if args.output and len(names) > 1:
        raise ConfigError(f"-o names one bundle but {len(names)} students would be written; add --student NAME")
    seeds = seeds_of(recipe.seed, recipe.seeds)
    for name in names:  # every output, before torch is imported (seconds) and before the first student trains
        if name in recipe.students:  # (an unknown one is refused by `distill`, with the recipe's students)
            spec = recipe.students[name]
            for seed in seeds:
                check_output(seeded_path(args.output or recipe.out / name, seed, recipe.seed), overwrite=args.force,
                             sources=(spec.teacher or recipe.out / "teacher",))
    from edgekd.distill.distill import distill

    for name in names:
        out = args.output or recipe.out / name
        runs = []
        for seed in seeds:
            bundle = distill(recipe.model_copy(update={"seed": seed}), name, seeded_path(out, seed, recipe.seed),
                             resume=args.resume, force=args.force)
            runs.append(bundle)
            if int(os.environ.get("RANK", "0")) == 0:  # under a data-parallel launcher, the main process reports
                _print_student(name, bundle, seed if len(seeds) > 1 else None)
        if len(seeds) > 1 and int(os.environ.get("RANK", "0")) == 0:
            summary = write_summary(out, runs)
            metrics = [k for k in summary.get("dev", {}).get("mean", {})]
            print(f"student {name}, {len(seeds)} seeds: dev " + ", ".join(f"{k} {mean_sd(summary, k)}" for k in metrics)
                  + f" -> {summary_path(out)}")
    return 0


def _print_student(name: str, bundle: Any, seed: int | None) -> None:
    m = bundle.manifest.metrics
    scores = m.scores()
    print(f"student {name}{f' (seed {seed})' if seed is not None else ''}: {bundle.path}")
    print(f"  {scores.describe() if scores else 'dev: not measured'}; teacher: "
          + ", ".join(f"{k} {v:.4f}" for k, v in m.extra("teacher_dev", {}).items() if isinstance(v, float)))
    if m.extra("agreement_with_teacher") is not None:
        print(f"  agreement with the teacher {m.extra('agreement_with_teacher'):.4f}; parameters {m.extra('parameters'):,} "
              f"(teacher {m.extra('teacher_parameters'):,})")


def _export(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from edgekd.config import ExportConfig
    from edgekd.errors import ConfigError
    from edgekd.records import DEPLOYABLE_FORMATS

    formats = DEPLOYABLE_FORMATS
    if args.format not in formats:
        raise ConfigError(f"--to {args.format!r} is not an export format; valid: {', '.join(formats)}")
    # Only the options given: the config's own defaults apply to the rest.
    given: dict[str, object] = {"format": args.format, "fuse": args.fuse, "opset": args.opset, "int8": args.int8,
                                "calibration_samples": args.calibration_samples}
    try:
        if args.buckets is not None:
            given["buckets"] = [int(b) for b in args.buckets.split(",") if b.strip()]
        if args.parity_samples is not None:
            given["parity_samples"] = args.parity_samples if args.parity_samples == "all" else int(args.parity_samples)
        cfg = ExportConfig(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:  # int() of a bad number, and pydantic's ValidationError (a ValueError)
        detail = "; ".join(e["msg"] for e in exc.errors()) if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(f"export options: {detail} (--buckets takes e.g. 32,64,128; --parity-samples a number or 'all')") from None
    _check_output(args, cfg)
    with _loading("export"):
        from edgekd.export.stage import export

    bundle = export(args.bundle, cfg, args.output, overrides=args.overrides, force=args.force)
    from edgekd.show import print_export

    print_export(bundle)
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from edgekd.config import QuantizeConfig, method_names
    from edgekd.errors import ConfigError
    from edgekd.quantize.presets import PRESETS, for_target

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
    _check_output(args, cfg)
    with _loading("quantize"):
        from edgekd.quantize.stage import quantize
    from edgekd.show import print_derived

    print_derived(quantize(args.bundle, cfg, args.output, overrides=args.overrides, force=args.force))
    return 0


def _prune(args: argparse.Namespace) -> int:
    from edgekd.config import PruneConfig

    given = {"sparsity": args.sparsity, "heads": args.heads, "ffn": args.ffn, "samples": args.samples, "min_count": args.min_count}
    raw = {"method": args.method, **{k: v for k, v in given.items() if v is not None}}
    cfg = _validated(PruneConfig, raw, "prune options", "methods: magnitude --sparsity S; structured --heads H --ffn F; vocab; shares in [0, 1)")
    _check_output(args, cfg)
    with _loading("prune"):
        from edgekd.quantize.prune import prune
    from edgekd.show import print_derived

    print_derived(prune(args.bundle, cfg, args.output, overrides=args.overrides, force=args.force))
    return 0


def _check_output(args: argparse.Namespace, cfg: Any) -> None:
    """Refuse the output path of a bundle-to-bundle verb before its stage imports torch and loads data (seconds).
    The default is `edgekd.derive.default_output`'s (BUNDLE-<method suffix>, beside BUNDLE), which the stage checks
    again; it is spelt here because importing derive imports torch."""
    from edgekd.writer import check_output

    source = Path(args.bundle)
    check_output(args.output or source.parent / f"{source.name}-{cfg.output_suffix()}", overwrite=args.force, sources=(source,))


def _loading(verb: str) -> AbstractContextManager[None]:
    """Importing a stage (torch, transformers, the backends) takes seconds before its first log line: show it."""
    from edgekd.progress import step

    return step(f"{verb}: loading torch and the backends")


def _validated(union: object, raw: dict[str, object], what: str, hint: str) -> object:
    """A config of a tagged union from command-line options; every problem in one ConfigError."""
    from pydantic import TypeAdapter, ValidationError

    from edgekd.errors import ConfigError

    try:
        return TypeAdapter(union).validate_python(raw)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'method'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{what}:\n  " + "\n  ".join(lines) + f"\n({hint})") from None


def _predict(args: argparse.Namespace) -> int:
    from edgekd.bundle import Bundle
    from edgekd.errors import ConfigError
    from edgekd.runtime.classifier import Classifier, iter_texts

    if bool(args.texts) == bool(args.input):
        raise ConfigError("give texts on the command line or --input FILE (one text, or a tab-separated pair, per line)")
    if args.threads < 1 or args.batch_size < 1:
        raise ConfigError(f"--threads {args.threads} and --batch-size {args.batch_size} must be at least 1")
    pipeline = args.output_format == "pipeline"
    if pipeline and args.logits:
        raise ConfigError("--logits adds the raw outputs to the json format; the pipeline format has no place for them "
                          "(drop --format pipeline or --logits)")
    lines = _input_lines(args.input) if args.input else _argv_texts(args.texts)
    bundle = Bundle.open(args.bundle)
    if bundle.manifest.format == "torch":  # a teacher or a student before export: through torch (edgekd[full])
        from edgekd.torch_classifier import load_classifier

        classifier = load_classifier(bundle, threads=args.threads, batch_size=args.batch_size)
    else:
        classifier = Classifier.load(bundle, threads=args.threads, batch_size=args.batch_size)
    columns = classifier.bundle.manifest.task.columns
    texts = iter_texts(lines, columns, f"--input {args.input}" if args.input else "the command line")
    # Streamed: each batch is classified and printed as soon as it is read, so the first results come before a large
    # file (or a pipe) is read to its end, and memory stays flat in the number of lines.
    while batch := list(itertools.islice(texts, args.batch_size)):
        logits = classifier.logits(batch)
        if pipeline:
            rows: list[object] = pipeline_rows(logits, classifier.labels, classifier.regression)
        else:
            rows = [{"text": text[0] if columns == 1 else list(text), **prediction.as_dict(),
                     **({"logits": [float(v) for v in row]} if args.logits else {})}
                    for text, prediction, row in zip(batch, classifier.predictions(logits), logits)]
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        sys.stdout.flush()
    return 0


def pipeline_rows(logits: Any, labels: list[str], regression: bool) -> list[list[dict[str, object]]]:
    """Per text, what transformers' text-classification pipeline returns for it (`pipe(text)`, its defaults): one
    `{label, score}`, the top label and its softmax probability computed in float32 as the pipeline computes it; for a
    regression model (problem_type regression) the raw output under the one label (`score` when the task names none)."""
    import numpy as np

    outputs = np.asarray(logits, dtype=np.float32)
    if regression:
        return [[{"label": labels[0] if labels else "score", "score": float(row[0])}] for row in outputs]
    shifted = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
    scores = shifted / shifted.sum(axis=-1, keepdims=True)  # (texts, labels)
    return [[{"label": labels[int(row.argmax())], "score": float(row.max())}] for row in scores]


def _input_lines(source: Path) -> Iterator[str]:
    """The lines of a UTF-8 file (`-`: stdin), opened now, then decoded strictly as they are read. Lines end at `\n`
    only: str.splitlines would also split at U+2028, NEL, form feeds and \x1c-\x1e, which are text here."""
    from edgekd.errors import DataError

    where = f"--input {source}"
    if str(source) == "-":
        if sys.stdin is None or sys.stdin.closed:
            raise DataError("--input -: standard input is closed; pipe texts into it or give a file")
        return _decoded(sys.stdin.buffer, where, close=False)
    try:
        return _decoded(open(source, "rb"), where, close=True)  # noqa: SIM115 - closed by _decoded
    except FileNotFoundError:
        raise DataError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{where}: is a folder; give a text file with one text per line") from None
    except PermissionError:
        raise DataError(f"{where}: permission denied; check the file's permissions") from None


def _decoded(handle: BinaryIO, where: str, *, close: bool) -> Iterator[str]:
    from edgekd.errors import DataError

    try:
        for number, raw in enumerate(handle, start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where} line {number}: not UTF-8 text ({exc.reason} at byte {exc.start} of the line)") from None
    finally:
        if close:
            handle.close()


def _argv_texts(texts: list[str]) -> Iterator[str]:
    """Command-line texts, checked to be UTF-8: Python hands undecodable argv bytes over as lone surrogates."""
    from edgekd.errors import DataError

    for number, text in enumerate(texts, start=1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raw = os.fsencode(text)
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"text {number} on the command line is not UTF-8 ({exc.reason} at byte {exc.start}); "
                                "pass UTF-8 text, or a UTF-8 file with --input") from None
            raise DataError(f"text {number} on the command line holds unpaired surrogates; pass UTF-8 text") from None
        yield text


def _target_check(args: argparse.Namespace) -> int:
    import math

    import numpy as np

    from edgekd.bundle import Bundle
    from edgekd.data import lineage_data, load_task_data
    from edgekd.batching import spread_by_length
    from edgekd.errors import ConfigError
    from edgekd.runtime.golden import GoldenCheck, golden_tolerance
    from edgekd.runtime.targets import parse_target, run_child

    # A week bounds the timeout: waits past what the OS clock functions take overflow (and no check runs that long).
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= 7 * 86400):
        raise ConfigError(f"--timeout {args.timeout}: seconds the run on the target may take, more than 0 and at most 604800 (a week)")
    if args.samples < 1:
        raise ConfigError(f"--samples {args.samples}: the number of dev texts to compare, at least 1")
    target = parse_target(args.target)
    bundle = Bundle.open(args.bundle)
    golden, _ = bundle.read_golden()
    tolerance = golden_tolerance(bundle.manifest, golden)  # decided here, by this edgekd, whatever the device runs
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
    checks = {
        where: GoldenCheck(len(golden["logits"]), float(result["golden_max_abs_diff"]), tolerance,
                           tuple(result.get("golden_tokenizer_problems", ())))
        for where, result in (("this machine", host), (f"{remote['target']}", remote))
    }
    print(f"{remote['target']} ({remote['latency_source']}): {machine['arch']}, {machine['cpu']}, {machine['cores']} cores, "
          f"Python {machine['python']}, {', '.join(f'{k} {v}' for k, v in machine['versions'].items())}")
    print(f"  golden: max |logit - stored| {checks[remote['target']].max_abs_diff:.2e} (tolerance {tolerance:.2e})")
    print(f"  {len(texts)} dev texts: agreement with this machine {agreement:.4f}, max |logit diff| {np.abs(ours - theirs).max():.2e}")
    # A model that does not reproduce its golden logits is a failed parity check (exit 1), the device's or this host's.
    for where, check in reversed(checks.items()):
        check.raise_on_failure(bundle.path, where)
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
    from edgekd.benchmarks.bench import bench
    from edgekd.config import BenchConfig, validate_config
    from edgekd.errors import ConfigError

    # Only the options given: the config's own defaults apply to the rest. No --reference means no ratios.
    given: dict[str, object] = {"reference": args.reference, "teacher": args.teacher}
    if args.threads is not None:
        try:
            given["threads"] = [int(t) for t in args.threads.split(",") if t.strip()]
        except ValueError:
            raise ConfigError(f"--threads {args.threads!r}: comma-separated counts, e.g. 1,2") from None
    options = {"target": args.target, "queries": args.queries, "seconds": args.seconds, "texts": args.texts}
    given.update({k: v for k, v in options.items() if v is not None})
    cfg = validate_config(BenchConfig, given, source="edgekd bench options (--threads, --queries, --seconds, --texts)")
    result = bench(args.bundles, cfg, args.overrides)
    paths = report.write(result, args.output)
    print(report.markdown(result))
    print(f"report: {paths['json']} and {paths['md']}")
    return 0


def _gate(args: argparse.Namespace) -> int:
    from edgekd.benchmarks import gate, gate_baseline, report
    from edgekd.config import Budget
    from edgekd.errors import ConfigError

    if args.budget is None and args.baseline is None:
        raise ConfigError("edgekd gate: give --budget BUDGET.yaml, --baseline OLD_REPORT.json, or both")
    measured = report.load(args.report)
    budget = gate.load_budget(args.budget) if args.budget is not None else Budget()
    # Everything is read and checked before anything is measured or written.
    baseline = gate_baseline.load_baseline(args.baseline, measured) if args.baseline is not None else None
    checks = []
    if args.budget is not None:
        remeasure = None if args.no_remeasure else gate.remeasurer(measured, budget, args.target)
        checks += gate.judge(measured, budget, remeasure, require_checks=baseline is None)
    if baseline is not None:
        measure = gate_baseline.measurer(measured, args.target)
        checks += gate_baseline.judge_baseline(measured, baseline, budget, measure, remeasure=not args.no_remeasure)
    for check in checks:
        print(check.line())
    page = gate.publish(args.report, measured, checks, budget, args.budget, args.baseline)  # report.html, the verdict at its top
    if args.junit:
        args.junit.write_text(gate.junit(checks), encoding="utf-8")
    if args.summary:
        with open(args.summary, "a", encoding="utf-8") as summary:  # GitHub's step summary is appended to
            summary.write(gate.markdown(checks, measured))
    code = gate.exit_code(checks)
    print("gate: " + ("PASS" if code == 0 else "FAIL") + f" ({page})")
    return code


def _inspect(args: argparse.Namespace) -> int:
    from edgekd.bundle import Bundle

    from edgekd.show import format_summary

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


def _pack(args: argparse.Namespace) -> int:
    from edgekd.archive import pack

    print(f"packed {args.bundle} into {pack(args.bundle, args.archive, overwrite=args.force)}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from edgekd.archive import unpack
    from edgekd.show import format_summary

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


def _optimize(args: argparse.Namespace) -> int:
    from edgekd.benchmarks.gate import load_budget
    from edgekd.errors import ConfigError
    from edgekd.runtime.targets import parse_target

    try:
        lengths = [int(n) for n in args.lengths.split(",") if n.strip()]
    except ValueError:
        lengths = []
    if not lengths or any(n < 2 for n in lengths) or args.rounds < 10 or args.threads < 1:
        raise ConfigError(f"optimize: --lengths {args.lengths!r} --rounds {args.rounds} --threads {args.threads}: lengths of at least 2 "
                          "(e.g. 16,32,64,128), at least 10 rounds and 1 thread")
    parse_target(args.target)  # an unknown target is refused here, before any candidate is made (nothing is opened yet)
    budget = load_budget(args.budget)
    with _loading("optimize"):
        from edgekd.optimize import limits, optimize
    limits(budget)
    out = args.output or args.student.with_name(args.student.name + "-optimize")
    result = optimize(args.student, budget, out, target=args.target, lengths=lengths, rounds=args.rounds, threads=args.threads,
                      overrides=args.overrides)
    print(f"optimize: chose {result['best']} (Pareto front: {', '.join(result['pareto'])}); {out / 'best'}, {out / 'optimize.md'}")
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run, "teacher": _teacher, "distill": _distill, "export": _export, "quantize": _quantize, "prune": _prune,
    "predict": _predict, "target check": _target_check, "target setup": _target_setup, "bench": _bench, "gate": _gate, "optimize": _optimize,
    "inspect": _inspect, "pack": _pack, "import": _import, "validate": _validate,
}
