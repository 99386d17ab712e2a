"""Neural Compressor (3.x) accuracy-driven post-training quantization of a torch student.

What works with INC 3.10 on CPU and still exports through the TorchScript ONNX exporter: weight-only
round-to-nearest (RTN) of the Linear layers. Its static mode needs a torch.export graph (not exportable with
`dynamo=False`), its dynamic mode gives wrong predictions, SmoothQuant needs IPEX. So `autotune` tries RTN bit widths
from the most aggressive, with dev accuracy as the objective, and stops at the first within the tolerated loss; the
chosen weights are then written back as ordinary float tensors (exactly the rounded values), so the result is a
normal torch bundle that `edgekd export` takes. It measures what the rounding costs; the size gain comes when the
export is quantized (`edgekd quantize --method onnx-dynamic`).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from torch import nn

from edgekd import metrics
from edgekd.config import IncConfig
from edgekd.derive import Parent
from edgekd.errors import ParityError
from edgekd.families import family_spec
from edgekd.runtime.backends import run_batched

from .prune import save_model
from .stage import register

logger = logging.getLogger(__name__)


@register(IncConfig)
def tune(model: nn.Module, parent: Parent, cfg: IncConfig, directory: Path) -> dict[str, Any]:
    from neural_compressor.common.utils.logger import Logger

    if not logger.isEnabledFor(logging.DEBUG):
        # INC prints every trial's full config at INFO and its accelerator probing at WARNING; its logger resets its
        # level when first used, so set it before the torch part of INC is imported.
        Logger().get_logger().setLevel(logging.ERROR)
    from neural_compressor.torch.algorithms.weight_only.modules import INCWeightOnlyLinear
    from neural_compressor.torch.quantization import RTNConfig, TuningConfig, autotune
    task, data = parent.task, parent.data
    spec = family_spec(parent.manifest.architecture)
    encoder = parent.encoder()
    dev = encoder.encode(data.dev.texts)
    primary = task.metrics[0]

    def dev_metric(candidate: nn.Module) -> float:
        logits = run_batched(dev, spec.runner(candidate, encoder.pad_id))
        return _metric(primary, logits, data.dev.labels, task.problem)

    configs = [RTNConfig(bits=b, group_size=-1 if b == 8 else cfg.group_size, use_layer_wise=False) for b in cfg.bits]
    scores: list[float] = []

    def recorded(candidate: nn.Module) -> float:
        # Call 0 is the float baseline, call k the k-th config (each config is one trial: no list-valued fields).
        scores.append(dev_metric(candidate))
        return scores[-1]

    original = copy.deepcopy(model).eval()
    tuned = autotune(model.eval(), TuningConfig(config_set=configs, tolerable_loss=cfg.tolerable_loss), eval_fn=recorded)
    baseline, trials = scores[0], scores[1 : 1 + len(configs)]
    rows = [{"bits": c.bits, "group_size": c.group_size, primary: round(s, 6)} for c, s in zip(configs, trials)]
    target = baseline * (1 - cfg.tolerable_loss)
    passing = [row for row in rows if row[primary] >= target]
    if not passing:
        lines = "\n".join(f"  - RTN {r['bits']}-bit (group {r['group_size']}): {primary} {r[primary]:.4f}" for r in rows)
        raise ParityError(
            f"Neural Compressor found no configuration within {cfg.tolerable_loss:.1%} of the float {primary} "
            f"{baseline:.4f} (needs >= {target:.4f}):\n{lines}\nAllow a larger loss (tolerable_loss) or wider bits; no bundle was written."
        )
    plain = _dequantized(original, tuned, INCWeightOnlyLinear)
    check = dev_metric(plain)
    if abs(check - passing[0][primary]) > 1e-6:
        raise ParityError(f"the float copy of the tuned model scores {check:.6f}, the tuned model {passing[0][primary]:.6f}: not the same weights")
    save_model(plain, parent.bundle, directory)
    return {
        "tool": "neural-compressor (autotune, weight-only RTN)",
        "objective": f"dev {primary}",
        "baseline": round(baseline, 6),
        "tolerable_loss": cfg.tolerable_loss,
        "trials": rows,
        "chosen": passing[0],
        "stored_as": "float32 weights holding the rounded values (quantize the export for the size gain)",
    }


def _metric(name: str, logits: Any, labels: Any, problem: str) -> float:
    """The tuning objective (a seam: tests script it, the fixture task being too easy for rounding to hurt)."""
    return metrics.compute([name], logits, labels, problem)[name]


def _dequantized(original: nn.Module, tuned: nn.Module, packed_type: type) -> nn.Module:
    """The original model with every INC weight-only Linear's recovered (rounded) weights copied in."""
    state = original.state_dict()
    replaced = 0
    for name, module in tuned.named_modules():
        if isinstance(module, packed_type):
            state[f"{name}.weight"] = module.recover().float()
            if module.bias is not None:
                state[f"{name}.bias"] = module.bias.float()
            replaced += 1
    assert replaced, "Neural Compressor quantized no Linear layer"
    plain = copy.deepcopy(original)
    plain.load_state_dict(state)
    logger.info("RTN weights of %d Linear layers written back as float", replaced)
    return plain.eval()


def inc_trials_table(details: dict[str, Any]) -> list[str]:
    """Lines describing every configuration tried (for the CLI)."""
    metric = details["objective"].split()[-1]
    return [f"RTN {r['bits']}-bit (group {r['group_size']}): {metric} {r[metric]:.4f}" for r in details["trials"]] + [
        f"float baseline {details['baseline']:.4f}; chosen: {details['chosen']['bits']}-bit"
    ]
