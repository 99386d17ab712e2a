"""The `edgekd` command line: the parser, overrides, logging, exit codes (0 ok, 1 a check failed, 2 bad usage or
input). What each verb does is in `edgekd.verbs`; backends are imported inside the verbs, so `edgekd --help` stays
instant.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from edgekd import __version__
from edgekd.errors import EdgekdError, Terminated, describe_os_error
from edgekd.logs import setup_cli
from edgekd.verbs import HANDLERS

VERBS: dict[str, tuple[str, str]] = {
    "run": ("run a recipe end to end (teacher, students, export, quantize, bench, gate), skipping finished stages; exit code from the gate",
            "edgekd run demo"),
    "teacher": ("fine-tune (or import) the teacher of a recipe and write a teacher bundle", "edgekd teacher demo teacher.train.epochs=1"),
    "distill": ("distil the recipe's students from its teacher bundle", "edgekd distill sst2-bilstm --student bilstm"),
    "export": ("export a torch bundle to ONNX, TFLite or ExecuTorch, checked against it (exit 1 on a parity failure)", "edgekd export runs/demo/tinybert --to onnx --fuse"),
    "quantize": ("quantize an ONNX or TFLite bundle and evaluate it against its parent", "edgekd quantize runs/demo/tinybert-onnx --preset x86-vnni"),
    "prune": ("prune a torch student (magnitude sparsity, vocabulary) and evaluate it against its parent", "edgekd prune runs/demo/tinybert --method vocab"),
    "predict": ("classify texts with a bundle: torch, ONNX, TFLite or ExecuTorch (JSON lines out; --format pipeline as transformers gives)",
                "edgekd predict runs/demo/tinybert-onnx \"what a lovely day\""),
    "target": ("run a bundle on a target (local, ssh://..., qemu-aarch64://...) and compare it with this machine; set up the emulated one", "edgekd target check runs/demo/tinybert-onnx --target ssh://pi@raspberrypi.local"),
    "bench": ("measure latency, memory, size and accuracy of bundles against a reference (report.json, report.md)",
              "edgekd bench runs/demo/tinybert-onnx --reference bert-base-shape -o runs/demo/bench"),
    "gate": ("judge a benchmark report against a budget file and/or a baseline report: PASS/FAIL/INCONCLUSIVE per check (exit 0, 1; 2 bad input)",
             "edgekd gate runs/demo/bench/report.json --budget budget.yaml --baseline main/report.json --junit gate.xml"),
    "optimize": ("search quantizations of a student's ONNX file for the fastest one within a budget, measured side by side (exit 1: none fits)",
                 "edgekd optimize runs/demo/tinybert-onnx --budget budget.yaml -o runs/demo/optimize"),
    "inspect": ("print a readable summary of bundles (checks every file's hash)", "edgekd inspect runs/demo/teacher --json"),
    "pack": ("write a verified bundle into one .tar.gz or .zip file to ship it", "edgekd pack runs/demo/tinybert-int8 tinybert-int8.tar.gz"),
    "import": ("unpack a bundle archive, refusing unsafe members, and verify it before it appears",
               "edgekd import tinybert-int8.tar.gz -o models/tinybert-int8"),
    "validate": ("check a recipe and its overrides, reporting every problem at once", "edgekd validate sst2 data.path=../shared/data/sst2"),
}


# `key.sub=value` or `key.list[0].sub=value` on the command line.
OVERRIDE = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+|\[\d+\])*=")
# The grammar edgekd.config.apply_overrides reads (its OVERRIDE_SYNTAX), written out so that `edgekd --help` does not
# import pydantic.
OVERRIDE_HELP = "recipe overrides: key.sub=value (a list entry: key.0.sub=value or key[0].sub=value); values are YAML"
# The verbs that read overrides; the others' positional arguments are taken as they are (`predict`'s texts).
TAKE_OVERRIDES = ("run", "teacher", "distill", "export", "quantize", "prune", "target", "bench", "optimize", "validate")


def _epilog() -> str:
    width = max(len(v) for v in VERBS)
    lines = ["verbs (with an example each):"]
    for verb, (what, example) in VERBS.items():
        lines += [f"  {verb:<{width}}  {what}", f"  {'':<{width}}  $ {example}"]
    lines += ["", "exit codes: 0 ok, 1 a gate or parity check failed, 2 bad usage or bad input"]
    return "\n".join(lines)


def _default(model: str, field: str) -> str:
    """A flag's help note on its default: the flag itself defaults to None, so that the config's own default applies;
    the number shown is read from that config field, never written twice."""
    import edgekd.config

    value = getattr(edgekd.config, model).model_fields[field].default
    shown = ",".join(str(v) for v in value) if isinstance(value, list) else f"{value:g}" if isinstance(value, float) else str(value)
    return f"default: from the config, {shown}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgekd",
        description="Distill a BERT teacher into an edge-ready student, export, quantize, and prove how it runs.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgekd {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs (of every library too)")
    chatter = parser.add_mutually_exclusive_group()
    chatter.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors in the log; no progress bars")
    chatter.add_argument("-v", "--verbose", action="store_true",
                         help="also show what the libraries underneath log, warn and print (torch, jax, LiteRT, ...)")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True, help="one of the verbs below; edgekd VERB --help for its options")

    def add(name: str) -> argparse.ArgumentParser:
        what, example = VERBS[name]
        # No `help=`: argparse would list every verb a second time above the epilog's list (which has the examples).
        return verbs.add_parser(name, description=what, epilog=f"example:\n  $ {example}", formatter_class=argparse.RawDescriptionHelpFormatter)

    run = add("run")
    run.add_argument("recipe", help="a recipe YAML path or a shipped recipe name (demo, sst2-tinybert, ...)")
    run.add_argument("overrides", nargs="*", metavar="key.sub=value", help=OVERRIDE_HELP)
    run.add_argument("-o", "--output", type=Path, help="the run's folder (default runs/<recipe name>; sets output_dir)")
    run.add_argument("--force", action="store_true", help="re-run every stage, finished or not")
    run.set_defaults(run=HANDLERS["run"])

    teacher = add("teacher")
    teacher.add_argument("recipe", help="a recipe YAML path or a shipped recipe name (demo, sst2-tinybert, ...)")
    teacher.add_argument("overrides", nargs="*", metavar="key.sub=value", help=OVERRIDE_HELP)
    teacher.add_argument("-o", "--output", type=Path, help="bundle directory to write (default <output_dir>/teacher)")
    teacher.add_argument("--resume", action="store_true", help="continue from the last checkpoint of an interrupted run")
    teacher.add_argument("--force", action="store_true", help="replace an existing bundle at the output path")
    teacher.set_defaults(run=HANDLERS["teacher"])

    distill = add("distill")
    distill.add_argument("recipe", help="a recipe YAML path or a shipped recipe name")
    distill.add_argument("overrides", nargs="*", metavar="key.sub=value", help=OVERRIDE_HELP)
    distill.add_argument("--student", action="append", help="distil only this student (repeatable; default: all)")
    distill.add_argument("-o", "--output", type=Path, help="bundle directory (only with one student; default <output_dir>/<student>)")
    distill.add_argument("--resume", action="store_true", help="continue an interrupted run: finished stages are skipped")
    distill.add_argument("--force", action="store_true", help="replace an existing bundle at the output path")
    distill.add_argument("--seeds", type=int, metavar="N",
                         help="distil each student under N seeds (the recipe's `seeds`): mean ± sd in <student>.seeds.json")
    distill.set_defaults(run=HANDLERS["distill"])

    export = add("export")
    export.add_argument("bundle", type=Path, metavar="BUNDLE", help="a torch bundle (teacher or student)")
    export.add_argument("overrides", nargs="*", metavar="data.key=value", help="where the parity dev examples come from, e.g. data.path=DIR")
    export.add_argument("--to", dest="format", required=True, help="onnx, tflite or executorch")
    export.add_argument("-o", "--output", type=Path, help="bundle directory to write (default BUNDLE-onnx, BUNDLE-onnx-fused, BUNDLE-tflite, "
                        "BUNDLE-executorch[-int8])")
    export.add_argument("--fuse", action="store_true", help="ONNX: apply ONNX Runtime's transformer fusions (BERT family)")
    export.add_argument("--opset", type=int, help=f"ONNX opset ({_default('ExportConfig', 'opset')})")
    export.add_argument("--buckets", help=f"TFLite, ExecuTorch: comma-separated sequence lengths ({_default('ExportConfig', 'buckets')})")
    export.add_argument("--int8", choices=["static", "dynamic"], help="ExecuTorch: INT8 through its XNNPACK quantizer, static (calibrated on "
                        "training text) or dynamic")
    export.add_argument("--calibration-samples", type=int, help=f"ExecuTorch --int8 static: training examples run to calibrate "
                        f"({_default('ExportConfig', 'calibration_samples')})")
    export.add_argument("--parity-samples", help=f"dev examples compared with the parent, or 'all' ({_default('ExportConfig', 'parity_samples')})")
    export.add_argument("--force", action="store_true", help="replace an existing bundle at the output path")
    export.set_defaults(run=HANDLERS["export"])

    from edgekd.config import registered_methods

    quantize = add("quantize")
    quantize.add_argument("bundle", type=Path, metavar="BUNDLE", help="an ONNX or TFLite bundle (edgekd export)")
    quantize.add_argument("overrides", nargs="*", metavar="data.key=value", help="where calibration and dev text come from")
    quantize.add_argument("--method", help=f"one of: {', '.join(registered_methods('quantize'))}")
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
    quantize.set_defaults(run=HANDLERS["quantize"])

    prune = add("prune")
    prune.add_argument("bundle", type=Path, metavar="BUNDLE", help="a torch bundle (a distilled student)")
    prune.add_argument("overrides", nargs="*", metavar="data.key=value", help="where the training and dev text come from")
    prune.add_argument("--method", required=True, help=f"one of: {', '.join(registered_methods('prune'))}")
    prune.add_argument("--sparsity", type=float, help="magnitude: the share of Linear weights set to zero, in [0, 1)")
    prune.add_argument("--heads", type=float, help="structured: the share of attention heads removed, in [0, 1)")
    prune.add_argument("--ffn", type=float, help="structured: the share of FFN neurons removed from every layer, in [0, 1)")
    prune.add_argument("--samples", type=int, help="structured: training examples that rank the units (default 512)")
    prune.add_argument("--min-count", type=int, help="vocab: keep pieces the training text uses at least this often (default 1)")
    prune.add_argument("-o", "--output", type=Path, help="bundle directory (default BUNDLE-sparse<N> or BUNDLE-vocab)")
    prune.add_argument("--force", action="store_true", help="replace an existing bundle at the output path")
    prune.set_defaults(run=HANDLERS["prune"])

    predict = add("predict")
    predict.add_argument("bundle", type=Path, metavar="BUNDLE", help="a torch (teacher or student), ONNX, TFLite or ExecuTorch bundle")
    predict.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify (a pair model: the two texts joined by a tab)")
    predict.add_argument("--input", type=Path, help="a UTF-8 file: one text (or one tab-separated pair) per line; - reads stdin")
    predict.add_argument("--threads", type=int, default=1, help="backend intra-op threads (default 1)")
    predict.add_argument("--batch-size", type=int, default=32, help="texts per inference call (default 32)")
    predict.add_argument("--format", dest="output_format", choices=["json", "pipeline"], default="json",
                         help="json (default): {text, label, probabilities} per line; pipeline: [{label, score}] per line, "
                         "what transformers' text-classification pipeline returns for the text")
    predict.add_argument("--logits", action="store_true", help="json format: add the model's raw outputs (logits) to each line")
    predict.set_defaults(run=HANDLERS["predict"])

    target = add("target")
    target_verbs = target.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = target_verbs.add_parser("check", help="run the golden texts and dev samples on the target; agreement with this machine")
    check.add_argument("bundle", type=Path, metavar="BUNDLE", help="an ONNX, TFLite or ExecuTorch bundle")
    check.add_argument("overrides", nargs="*", metavar="data.key=value", help="where the dev texts come from")
    check.add_argument("--target", required=True, help="local, ssh://user@host[:port][?python=PATH&identity=KEY&known_hosts=FILE] or qemu-aarch64://ROOTFS[?cpu=MODEL]")
    check.add_argument("--samples", type=int, default=64, help="dev texts spread over the length range (default 64)")
    check.add_argument("--timeout", type=float, default=600, help="seconds the run on the target may take (default 600)")
    check.set_defaults(run=HANDLERS["target check"])
    target_setup = target_verbs.add_parser("setup", help="make an emulated target: an arm64 Debian root filesystem run through qemu (as root)")
    target_setup.add_argument("kind", choices=["qemu-aarch64"], help="the kind of target")
    target_setup.add_argument("directory", type=Path, metavar="DIR", help="an empty or new directory (about 550 MB); then --target qemu-aarch64://DIR")
    target_setup.set_defaults(run=HANDLERS["target setup"])

    from edgekd.config.run import MIN_QUERIES, MIN_SECONDS

    bench = add("bench")
    bench.add_argument("bundles", type=Path, nargs="+", metavar="BUNDLE", help="ONNX, TFLite or ExecuTorch bundles")
    bench.add_argument("-o", "--output", type=Path, required=True, help="report directory (report.json, report.md)")
    bench.add_argument("--reference", help="a bundle, or bert-base-shape (BERT-base-sized, random weights: latency only)")
    bench.add_argument("--teacher", help="the teacher bundle whose dev metric accuracy drops are measured against")
    bench.add_argument("--target", help=f"local, ssh://user@host[:port][?python=PATH] or qemu-aarch64://ROOTFS ({_default('BenchConfig', 'target')})")
    bench.add_argument("--threads", help=f"comma-separated thread counts ({_default('BenchConfig', 'threads')})")
    bench.add_argument("--queries", type=int, help=f"measured queries per measurement, at least {MIN_QUERIES} ({_default('BenchConfig', 'queries')})")
    bench.add_argument("--seconds", type=float, help=f"minimum measured seconds, at least {MIN_SECONDS:g} ({_default('BenchConfig', 'seconds')})")
    bench.add_argument("--texts", type=int, help=f"real dev sentences cycled through ({_default('BenchConfig', 'texts')})")
    bench.set_defaults(run=HANDLERS["bench"], overrides=[])

    gate = add("gate")
    gate.add_argument("report", type=Path, metavar="REPORT", help="report.json written by edgekd bench")
    gate.add_argument("--budget", type=Path, help="the budget YAML (optional with --baseline)")
    gate.add_argument("--baseline", type=Path, metavar="OLD_REPORT",
                      help="a report.json of the same task and dev set (e.g. main's): each model against the same name in it")
    gate.add_argument("--junit", type=Path, help="write JUnit XML here (CI test reports)")
    gate.add_argument("--summary", type=Path, help="write a markdown summary here (e.g. $GITHUB_STEP_SUMMARY)")
    gate.add_argument("--no-remeasure", action="store_true", help="leave an inconclusive latency ratio as it is")
    gate.add_argument("--target", help="where to measure again (default: the report's target)")
    gate.set_defaults(run=HANDLERS["gate"])

    optimize = add("optimize")
    optimize.add_argument("student", type=Path, metavar="STUDENT_ONNX", help="the student's FP32 ONNX bundle (edgekd export STUDENT --to onnx)")
    optimize.add_argument("overrides", nargs="*", metavar="data.key=value", help="where calibration and dev text come from")
    optimize.add_argument("--budget", type=Path, required=True, help="a budget YAML; its `default` limits: points below the FP32 file, bytes, latency ratio")
    optimize.add_argument("-o", "--output", type=Path, help="folder for the candidates, optimize.json/.md and the winner `best` (default STUDENT-optimize)")
    optimize.add_argument("--target", default="local", help="where to measure: local, ssh://user@host, qemu-aarch64://ROOTFS")
    optimize.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    optimize.add_argument("--lengths", default="16,32,64,128", help="sequence lengths measured (default 16,32,64,128)")
    optimize.add_argument("--rounds", type=int, default=100, help="interleaved rounds per length (default 100)")
    optimize.set_defaults(run=HANDLERS["optimize"])

    inspect = add("inspect")
    inspect.add_argument("bundles", type=Path, nargs="+", metavar="BUNDLE")
    inspect_format = inspect.add_mutually_exclusive_group()
    inspect_format.add_argument("--json", action="store_true", help="print the manifest as JSON")
    inspect_format.add_argument("--table", action="store_true", help="one markdown table row per bundle (results pages)")
    inspect.set_defaults(run=HANDLERS["inspect"])

    pack = add("pack")
    pack.add_argument("bundle", type=Path, metavar="BUNDLE")
    pack.add_argument("archive", type=Path, metavar="ARCHIVE", help="the file to write: .tar.gz, .tgz or .zip")
    pack.add_argument("--force", action="store_true", help="replace an existing archive")
    pack.set_defaults(run=HANDLERS["pack"])

    imp = add("import")
    imp.add_argument("archive", type=Path, metavar="ARCHIVE", help="a .tar.gz or .zip bundle archive")
    imp.add_argument("-o", "--output", type=Path, help="bundle directory to write (default: the archive's top folder name, here)")
    imp.add_argument("--force", action="store_true", help="replace an existing bundle at the output path")
    imp.add_argument("--max-bytes", type=int, help="refuse archives larger than this unpacked (default 8 GiB)")
    imp.set_defaults(run=HANDLERS["import"])

    validate = add("validate")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*", metavar="key.sub=value", help=OVERRIDE_HELP)
    validate.add_argument("--print", action="store_true", help="print the resolved recipe as YAML")
    validate.set_defaults(run=HANDLERS["validate"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, list(sys.argv[1:] if argv is None else argv))
    setup_cli("debug" if args.debug else "quiet" if args.quiet else "verbose" if args.verbose else "normal")
    run: Callable[[argparse.Namespace], int] = args.run
    with _sigterm_unwinds():
        return _guarded(run, args)


def _parse(parser: argparse.ArgumentParser, tokens: list[str]) -> argparse.Namespace:
    """Parse the command line. Overrides (key.sub=value) may come anywhere before `--`: they are taken out before
    argparse reads the rest, so that `edgekd quantize data.path=DIR BUNDLE` does not read the override as the bundle,
    nor `bench` as one more bundle. Verbs that take no overrides (`predict`'s texts) and everything after `--` are
    left as they are."""
    cut = tokens.index("--") if "--" in tokens else len(tokens)
    verb = next((t for t in tokens[:cut] if not t.startswith("-")), None)
    if verb == "predict":
        # Texts may follow options (`predict BUNDLE --format pipeline "a text"`): argparse takes the positionals
        # before the first option as BUNDLE and TEXTs and leaves the later ones over; they are texts too.
        args, left = parser.parse_known_args(tokens)
        end = left.index("--") if "--" in left else len(left)  # what follows `--` is text, whatever it looks like
        unknown = [t for t in left[:end] if t.startswith("-")]
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.texts = [*args.texts, *left[:end], *left[end + 1:]]
        return args
    if verb not in TAKE_OVERRIDES:
        return parser.parse_args(tokens)
    overrides = [t for t in tokens[:cut] if OVERRIDE.match(t)]
    args = parser.parse_args([t for t in tokens[:cut] if not OVERRIDE.match(t)] + tokens[cut:])
    if overrides and not hasattr(args, "overrides"):
        parser.error(f"unrecognized arguments: {' '.join(overrides)} ({_verb_name(args)} takes no key=value overrides)")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    return args


def _guarded(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a verb; every failure becomes one line on stderr and an exit code (the traceback too with --debug)."""
    try:
        return run(args)
    except (KeyboardInterrupt, Terminated) as exc:
        print(f"edgekd {_verb_name(args)}: {'interrupted' if isinstance(exc, KeyboardInterrupt) else 'terminated'}", file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 143
    except BrokenPipeError:
        # The reader of our output went away (`edgekd predict ... | head`): stop quietly, as a shell pipeline expects.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # noqa: BLE001 - every failure is reported below, as one line
        if args.debug:
            traceback.print_exception(exc)
        code, message = _failure(exc)
        print(f"edgekd {_verb_name(args)}: error: {message}", file=sys.stderr)
        return code


# The extra of edgekd that installs a module a verb imports (`pip install 'edgekd[EXTRA]'`), by top-level name.
EXTRAS = {
    **dict.fromkeys(("onnxruntime", "tokenizers"), "runtime"),
    "ai_edge_litert": "runtime-tflite",
    **dict.fromkeys(("torch", "transformers", "datasets", "safetensors", "accelerate", "onnx", "onnxscript",
                     "litert_torch", "ai_edge_quantizer", "neural_compressor", "torchao", "spacy", "matplotlib", "jsonschema"), "full"),
    "optimum": "optimum",
}


def _failure(exc: Exception) -> tuple[int, str]:
    """The exit code and the one-line message of a failure."""
    if isinstance(exc, EdgekdError):
        return exc.exit_code, str(exc)
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in EXTRAS:
        # A backend this install lacks: the extra that brings it, not a traceback.
        module = (exc.name or "").split(".")[0]
        return 2, f"this needs {module}, which is not installed here: pip install 'edgekd[{EXTRAS[module]}]'"
    if isinstance(exc, OSError):
        # A file edgekd could not read or write: permissions, a full or read-only disk, a file where a folder belongs.
        return 2, describe_os_error(exc, _operation(exc))
    if isinstance(exc, MemoryError):
        return 2, f"ran out of memory {_operation(exc)}; give it smaller inputs or a machine with more memory"
    # The last resort: a bug, or an input no check catches yet.
    detail = str(exc).splitlines()[0][:300] if str(exc).strip() else ""
    return 2, (f"unexpected {type(exc).__name__}{': ' + detail if detail else ''} {_operation(exc)}. This is an input "
               "edgekd does not check yet, or a bug: run again with --debug for the traceback, and report it")


def _verb_name(args: argparse.Namespace) -> str:
    """The verb as typed: `quantize`, `target check`."""
    return " ".join(filter(None, (args.verb, getattr(args, "action", None))))


def _operation(exc: BaseException) -> str:
    """What edgekd was doing when `exc` was raised: its innermost frame in edgekd's own code (module.function)."""
    where = "while running"
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if (module == "edgekd" or module.startswith("edgekd.")) and module != __name__:
            where = f"in {module}.{tb.tb_frame.f_code.co_name}"
        tb = tb.tb_next
    return where


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While a verb runs, SIGTERM raises `Terminated` where the process is, so temporary folders and partial bundles
    are removed on the way out (the default action would end the process on the spot)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
