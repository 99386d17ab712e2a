"""The table of benchmarks/results/teacher_vs_plain.sh: each arm's runs with their mean and sample sd (issue 22).

    python benchmarks/results/teacher_vs_plain_table.py /tmp/teacher-vs-plain [EARLIER.jsonl ...] > new-lines.jsonl

Reads the plain loop's JSON lines (plain-<task>.jsonl) and the recipe runs' teacher bundles (<task>-recipe-seed<S>/)
in the folder; prints one JSON line per recipe run (as the plain loop prints its own) and, on stderr, a markdown table
per task with each arm's mean ± sd, over these and the lines of EARLIER files (a run in both is counted once).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

from edgekd.bundle import Bundle


def recipe_lines(folder: Path) -> list[dict]:
    lines = []
    for path in sorted(folder.glob("*-recipe-seed*")):
        match = re.fullmatch(r"(\w+)-recipe-seed(\d+)", path.name)
        if not match or not (path / "manifest.json").is_file():
            continue
        m = Bundle.open(path).manifest
        dev, selection = m.metrics.dev, m.metrics.selection or {}
        epochs = m.produced_by.config["teacher"]["train"]["epochs"]
        line = {"task": match.group(1), "arm": f"recipe ({match.group(1)}, epochs={epochs})", "seed": int(match.group(2)),
                "dev_accuracy": dev["accuracy"], "dev_examples": dev["examples"]}
        if "f1" in dev:
            line["dev_f1"] = dev["f1"]
        if selection:
            line |= {"selection_accuracy": selection["accuracy"], "selection_examples": selection["examples"]}
        lines.append(line)
    return lines


def table(lines: list[dict]) -> str:
    out = []
    for task in sorted({line["task"] for line in lines}):
        out += [f"{task}:", "| arm | seeds | dev accuracy, each | mean ± sd | dev F1 mean ± sd |", "|---|---|---|---|---|"]
        for arm in sorted({line["arm"] for line in lines if line["task"] == task}):
            runs = sorted((line for line in lines if line["task"] == task and line["arm"] == arm), key=lambda line: line["seed"])
            acc = [100 * r["dev_accuracy"] for r in runs]
            f1 = [100 * r["dev_f1"] for r in runs if "dev_f1" in r]

            def spread(values: list[float]) -> str:
                return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else (f"{values[0]:.2f}" if values else "")

            out.append(f"| {arm} | {', '.join(str(r['seed']) for r in runs)} | {', '.join(f'{a:.2f}' for a in acc)} | {spread(acc)} | {spread(f1)} |")
    return "\n".join(out)


def main() -> None:
    folder, earlier = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    files = [*earlier, *sorted(folder.glob("plain-*.jsonl"))]
    read = [json.loads(line) for path in files for line in path.read_text().splitlines() if line.strip()]
    recipe = recipe_lines(folder)
    for line in recipe:
        print(json.dumps(line))
    runs = {(line["task"], line["arm"], line["seed"]): line for line in read + recipe}
    print(table(list(runs.values())), file=sys.stderr)


if __name__ == "__main__":
    main()
