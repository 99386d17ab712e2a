"""How far the gate can be trusted on this machine: its false-fail and false-pass rates on known answers.

    python -m edgekd.benchmarks.gate_trust FAST_BUNDLE SLOW_BUNDLE [--trials 20] [--margin 0.10] data.path=...

- a model against itself with a budget of 1 + margin: every trial must PASS (a FAIL is a false fail);
- SLOW_BUNDLE (about 1.5x slower) against FAST_BUNDLE with the same budget: every trial must FAIL (a PASS is a false
  pass). INCONCLUSIVE verdicts are counted apart (the gate then measures again; here each trial is one measurement).
Each trial is a full `bench` run: fresh child processes, interleaved pairs, a bootstrap interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from edgekd.config import BenchConfig, Budget, ModelBudget

from .bench import bench
from .gate import judge


def trial(candidate: Path, reference: Path, budget: float, overrides: tuple[str, ...], seed_texts: int) -> str:
    report = bench([candidate], BenchConfig(reference=str(reference), texts=seed_texts, accuracy=False), overrides)
    (check,) = judge(report, Budget(default=ModelBudget(max_latency_ratio=budget)))
    ratio = report.models[0].runs[0].vs_reference
    assert ratio is not None, "a model measured against a reference has a paired ratio"
    print(f"  {check.verdict:<12} ratio {ratio.median:.3f} [{ratio.low:.3f}, {ratio.high:.3f}]", file=sys.stderr)
    return check.verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekd.benchmarks.gate_trust")
    parser.add_argument("fast", type=Path)
    parser.add_argument("slow", type=Path)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--margin", type=float, default=0.10)
    parser.add_argument("--texts", type=int, default=BenchConfig.model_fields["texts"].default)
    args, overrides = parser.parse_known_args(argv)
    budget = 1 + args.margin
    results = {}
    for name, candidate, reference in (("self", args.fast, args.fast), ("slower", args.slow, args.fast)):
        print(f"{name}: {candidate.name} against {reference.name}, budget {budget:.2f}", file=sys.stderr)
        verdicts = Counter(trial(candidate, reference, budget, tuple(overrides), args.texts) for _ in range(args.trials))
        results[name] = dict(verdicts)
    summary = {
        "trials": args.trials,
        "budget_ratio": budget,
        "self": results["self"],
        "slower": results["slower"],
        "false_fail_rate": results["self"].get("FAIL", 0) / args.trials,
        "false_pass_rate": results["slower"].get("PASS", 0) / args.trials,
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
