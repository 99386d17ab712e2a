"""Numbers that validate and then break a stage: non-finite losses and weights in training, NaN benchmark settings,
model sizes in a bundle's config.json that would allocate hundreds of gigabytes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from edgekd.distill.loop import Checkpoint, Trainer

from edgekd.config import BenchConfig, TrainConfig, validate_config
from edgekd.config.run import MIN_QUERIES, MIN_SECONDS
from edgekd.errors import BundleError, ConfigError
from edgekd.modeling import bilstm_config, check_hf_config


class _Regression(torch.nn.Module):
    """A linear model in the Trainer's module shape whose loss becomes `poison` from step `poisoned_from` on."""

    def __init__(self, poisoned_from: int | None = None, poison: float = math.nan) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)
        self.calls, self.poisoned_from, self.poison = 0, poisoned_from, poison

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        self.calls += 1
        loss = (self.linear(batch["x"]).squeeze(-1) - batch["y"]).pow(2).mean()
        if self.poisoned_from is not None and self.calls >= self.poisoned_from:
            loss = loss * self.poison
        return loss, {}


def _fit(tmp_path: Path, module: torch.nn.Module, **train: Any) -> Any:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = x.sum(axis=1).astype(np.float32)
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 8, "learning_rate": 1e-2, "device": "cpu", "checkpoint_every": 1_000, **train})
    trainer = Trainer(cfg, module, lambda indices: {"x": x[indices], "y": y[indices]}, np.full(64, 4), seed=0,
                      checkpoint=Checkpoint(tmp_path / "checkpoint", "f"), desc="teacher fine-tune")
    return trainer.fit()


@pytest.mark.parametrize("poison", [math.nan, math.inf])
def test_a_non_finite_loss_stops_training_before_the_update(tmp_path: Path, poison: float) -> None:
    module = _Regression(poisoned_from=3, poison=poison)
    before: dict[str, torch.Tensor] = {}

    def remember(step_module: torch.nn.Module, args: Any) -> None:
        before.update({k: v.detach().clone() for k, v in step_module.state_dict().items()})

    module.register_forward_pre_hook(remember)
    with pytest.raises(ConfigError) as info:
        _fit(tmp_path, module)
    message = str(info.value)
    assert f"teacher fine-tune: the loss at step 3 is {poison} (learning rate" in message
    assert "training diverged and the stage stopped; nothing was written. Lower the learning_rate" in message
    # The poisoned step changed nothing: the weights are those its forward pass saw, all finite.
    assert all(torch.equal(before[k], v) and torch.isfinite(v).all() for k, v in module.state_dict().items())


def test_weights_made_non_finite_by_the_last_update_are_refused(tmp_path: Path) -> None:
    module = _Regression()
    # Finite losses, NaN gradients: the one update leaves NaN weights behind a finite loss.
    module.linear.weight.register_hook(lambda grad: torch.full_like(grad, math.nan))
    # (gradient clipping spreads the NaN norm to the bias)
    with pytest.raises(ConfigError, match=r"after step 1, 2 weight tensor\(s\) hold NaN or infinite values \(linear.weight, linear.bias\)"):
        _fit(tmp_path, module, max_steps=1)


def test_a_finite_run_is_untouched(tmp_path: Path) -> None:
    result = _fit(tmp_path, _Regression())
    assert result.steps == 16 and all(math.isfinite(row["loss"]) for row in result.history)


@pytest.mark.parametrize(("change", "message"), [
    ({"seconds": math.nan}, r"seconds: Input should be a finite number \(got nan\)"),
    ({"seconds": math.inf}, r"seconds: Input should be a finite number \(got inf\)"),
    ({"seconds": 0.5}, rf"seconds: Input should be greater than or equal to {MIN_SECONDS:g}"),
    ({"queries": MIN_QUERIES - 1}, rf"queries: Input should be greater than or equal to {MIN_QUERIES} \(got {MIN_QUERIES - 1}\)"),
    ({"timeout": math.nan}, r"timeout: Input should be a finite number"),
    ({"timeout": -1.0}, r"timeout: Input should be greater than 0"),
    ({"threads": [0]}, r"threads \[0\]: positive counts"),
])
def test_bench_config_refuses_nan_infinity_and_less_than_the_protocol(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(BenchConfig, change, source="bench")
    validate_config(BenchConfig, {}, source="bench")


def test_bench_cli_refuses_nan_seconds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgekd.cli import main

    # `edgekd bench --seconds nan` once wrote `"seconds": NaN` into report.json, and the gate passed it.
    assert main(["bench", str(tmp_path / "missing"), "-o", str(tmp_path / "out"), "--seconds", "nan"]) == 2
    assert "seconds: Input should be a finite number (got nan)" in capsys.readouterr().err


def _bert_config(folder: Path, **changes: Any) -> Path:
    folder.mkdir(exist_ok=True)
    config = {"model_type": "bert", "architectures": ["BertForSequenceClassification"], "vocab_size": 100, "hidden_size": 32,
              "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 128}
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


def test_a_bundle_config_with_a_4e9_vocabulary_is_refused_before_allocation(tmp_path: Path) -> None:
    check_hf_config(_bert_config(tmp_path / "fine"))
    with pytest.raises(BundleError, match=r"config.json: vocab_size is 4000000000; a model's sizes are whole numbers from 1 to 2,147,483,647"):
        check_hf_config(_bert_config(tmp_path / "huge", vocab_size=4_000_000_000))
    with pytest.raises(BundleError, match=r"describes a model of about 2.56e\+10 parameters \(vocab_size 200,000,000, hidden_size 128"):
        check_hf_config(_bert_config(tmp_path / "wide", vocab_size=200_000_000, hidden_size=128))
    (tmp_path / "fine" / "config.json").write_text("[1, 2]")
    with pytest.raises(BundleError, match="a model's config.json is a JSON object, found list"):
        check_hf_config(tmp_path / "fine")


@pytest.mark.parametrize(("change", "message"), [
    ({"vocab": 4_000_000_000}, "vocab is 4000000000; a whole number from 1"),
    ({"vocab": 1_000_000_000, "embedding_dim": 100}, r"describes a BiLSTM of about 1e\+11 parameters"),
    ({"hidden": None}, "hidden is None"),
    ({"dropout": math.nan}, r"`dropout` a number in \[0, 1\)"),
])
def test_a_bilstm_config_of_impossible_sizes_is_refused(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    config = {"vocab": 200, "embedding_dim": 16, "hidden": 16, "fc": 16, "num_labels": 2, "pair": False, "dropout": 0.0}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert bilstm_config(tmp_path) == config
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(BundleError, match=message):
        bilstm_config(tmp_path)
