"""Distillation losses: TinyBERT's layer-wise losses and prediction losses, and Tang et al.'s BiLSTM loss.

Each loss reads `Features` records, so a new student architecture needs no change here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .features import Features


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """-sum_c softmax(z_T / t)_c * log_softmax(z_S / t)_c, averaged over the batch (TinyBERT's prediction loss)."""
    targets = F.softmax(teacher_logits / temperature, dim=-1)
    return -(targets * F.log_softmax(student_logits / temperature, dim=-1)).sum(dim=-1).mean()


def hard_targets(labels: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Gold labels where known; the teacher's argmax for unlabeled examples (label -1, e.g. augmented text)."""
    return torch.where(labels >= 0, labels, teacher_logits.argmax(dim=-1))


class PredictionLoss(nn.Module):
    """`alpha * CE(student, hard target) + (1 - alpha) * distill(student, teacher)` on the logits.

    distill is `soft_ce` (TinyBERT, with a temperature) or `mse` (Tang et al.: MSE between logits, alpha 0 default).
    For regression there is no class distribution: both terms are MSE.
    """

    def __init__(self, kind: str, alpha: float = 0.0, temperature: float = 1.0, regression: bool = False) -> None:
        super().__init__()
        self.kind, self.alpha, self.temperature, self.regression = kind, alpha, temperature, regression

    def forward(self, student: Features, teacher_logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        s = student.logits.float()
        t = teacher_logits.float()
        if self.regression:
            distill = F.mse_loss(s.squeeze(-1), t.squeeze(-1))
            gold = torch.where(torch.isfinite(labels), labels.float(), t.squeeze(-1))
            hard = F.mse_loss(s.squeeze(-1), gold)
        else:
            distill = soft_cross_entropy(s, t, self.temperature) if self.kind == "soft_ce" else F.mse_loss(s, t)
            hard = F.cross_entropy(s, hard_targets(labels, t)) if self.alpha > 0 else s.new_zeros(())
        parts = {"distill": distill}
        if self.alpha > 0:
            parts["hard"] = hard
        parts["loss"] = self.alpha * hard + (1 - self.alpha) * distill
        return parts


def attention_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between unnormalised attention scores, (batch, heads, seq, seq); masked positions were zeroed upstream."""
    return F.mse_loss(student.float(), teacher.float())


class IntermediateLoss(nn.Module):
    """TinyBERT's Transformer-layer distillation: embeddings, attention scores and hidden states, through a layer map.

    L = MSE(E_S W_e, E_T) + sum_m [ MSE(A_S^m, A_T^g(m)) + MSE(H_S^m W_h, H_T^g(m)) ]
    W_e and W_h are learned projections from the student's width to the teacher's; they are trained with the student
    and dropped afterwards. `losses` keeps some of the three terms (a DeBERTa teacher has no attention scores to match).
    """

    def __init__(self, student_hidden: int, teacher_hidden: int, layer_map: list[int],
                 losses: tuple[str, ...] = ("embedding", "attention", "hidden")) -> None:
        super().__init__()
        self.layer_map, self.losses = layer_map, losses
        # Only the projections a kept term uses: an unused parameter would stop data-parallel training.
        self.embedding_projection = nn.Linear(student_hidden, teacher_hidden) if "embedding" in losses else None  # W_e
        self.hidden_projection = nn.Linear(student_hidden, teacher_hidden) if "hidden" in losses else None  # W_h

    def forward(self, student: Features, teacher: Features) -> dict[str, torch.Tensor]:
        assert student.hidden_states and teacher.hidden_states
        parts: dict[str, torch.Tensor] = {}
        if self.embedding_projection is not None:
            parts["embedding"] = F.mse_loss(self.embedding_projection(student.hidden_states[0]), teacher.hidden_states[0])
        if "attention" in self.losses:
            assert student.attentions and teacher.attentions, "refused at validate for a family without attention scores"
            parts["attention"] = sum(  # type: ignore[assignment]
                attention_mse(student.attentions[m], teacher.attentions[t - 1]) for m, t in enumerate(self.layer_map)
            )
        if self.hidden_projection is not None:
            parts["hidden"] = sum(  # type: ignore[assignment]
                F.mse_loss(self.hidden_projection(student.hidden_states[m + 1]), teacher.hidden_states[t])
                for m, t in enumerate(self.layer_map)
            )
        total = sum(parts.values())
        assert isinstance(total, torch.Tensor)
        return {**parts, "loss": total}
