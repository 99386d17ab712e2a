"""Every distillation loss against hand-computed values; layer maps and their errors; attention-score masking."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from edgekd.distill.features import Features, hf_features
from edgekd.distill.layer_map import layer_map
from edgekd.distill.losses import IntermediateLoss, PredictionLoss, attention_mse, hard_targets, soft_cross_entropy
from edgekd.errors import ConfigError


def test_soft_cross_entropy_by_hand() -> None:
    student, teacher = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    # teacher distribution (0.5, 0.5); student log-probs (log(e/(e+1)), log(1/(e+1)))
    expected = -0.5 * (math.log(math.e / (math.e + 1)) + math.log(1 / (math.e + 1)))
    assert soft_cross_entropy(student, teacher).item() == pytest.approx(expected)
    # temperature 2 divides both logits by 2
    halved = -0.5 * (math.log(math.exp(0.5) / (math.exp(0.5) + 1)) + math.log(1 / (math.exp(0.5) + 1)))
    assert soft_cross_entropy(student, teacher, temperature=2.0).item() == pytest.approx(halved)


def test_soft_cross_entropy_is_minimised_at_the_teacher() -> None:
    teacher = torch.tensor([[2.0, -1.0, 0.5]])
    student = torch.zeros(1, 3, requires_grad=True)
    optimizer = torch.optim.SGD([student], lr=1.0)
    for _ in range(500):
        optimizer.zero_grad()
        soft_cross_entropy(student, teacher).backward()
        optimizer.step()
    torch.testing.assert_close(F.softmax(student, -1), F.softmax(teacher, -1), atol=1e-3, rtol=0)


def test_bilstm_loss_alpha_mix_and_teacher_argmax_for_unlabeled() -> None:
    student = Features(logits=torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    teacher = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1, -1])  # the second example has no gold label
    assert hard_targets(labels, teacher).tolist() == [1, 1]
    mse = ((1 - 3) ** 2 + (2 - 0) ** 2 + 0 + (0 - 1) ** 2) / 4
    ce = (F.cross_entropy(student.logits[:1], torch.tensor([1])) + F.cross_entropy(student.logits[1:], torch.tensor([1]))) / 2
    pure = PredictionLoss("mse", alpha=0.0)(student, teacher, labels)
    assert pure["loss"].item() == pytest.approx(mse) and "hard" not in pure
    mixed = PredictionLoss("mse", alpha=0.25)(student, teacher, labels)
    assert mixed["hard"].item() == pytest.approx(ce.item())
    assert mixed["loss"].item() == pytest.approx(0.25 * ce.item() + 0.75 * mse)


def test_regression_prediction_loss_is_mse() -> None:
    student = Features(logits=torch.tensor([[1.0], [2.0]]))
    teacher = torch.tensor([[0.0], [4.0]])
    parts = PredictionLoss("soft_ce", alpha=0.5, regression=True)(student, teacher, torch.tensor([1.0, float("nan")]))
    assert parts["distill"].item() == pytest.approx((1 + 4) / 2)
    # the unlabeled example's target is the teacher's score
    assert parts["hard"].item() == pytest.approx((0 + 4) / 2)


def test_attention_mse_by_hand() -> None:
    student, teacher = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 2.0], [0.0, 3.0]]]])
    assert attention_mse(student, teacher).item() == pytest.approx((1 + 4 + 0 + 9) / 4)


def test_intermediate_loss_by_hand() -> None:
    loss = IntermediateLoss(student_hidden=2, teacher_hidden=3, layer_map=[2])
    with torch.no_grad():
        for projection in (loss.embedding_projection, loss.hidden_projection):
            projection.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
            projection.bias.zero_()
    s_hidden = (torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[0.0, 1.0]]]))  # embeddings, layer 1
    t_hidden = (torch.tensor([[[1.0, 2.0, 0.0]]]), torch.zeros(1, 1, 3), torch.tensor([[[0.0, 0.0, 1.0]]]))
    s_att = (torch.ones(1, 1, 1, 1),)
    t_att = (torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 3.0))
    parts = loss(Features(torch.zeros(1, 2), s_hidden, s_att), Features(torch.zeros(1, 2), t_hidden, t_att))
    # embedding: W_e [1,2] = [1,2,3] vs [1,2,0] -> 9/3; hidden: W_h [0,1] = [0,1,1] vs teacher layer 2 [0,0,1] -> 1/3
    assert parts["embedding"].item() == pytest.approx(3.0)
    assert parts["hidden"].item() == pytest.approx(1 / 3)
    assert parts["attention"].item() == pytest.approx(4.0)  # student layer 1 vs teacher layer 2: (1-3)^2
    assert parts["loss"].item() == pytest.approx(3.0 + 1 / 3 + 4.0)


@pytest.mark.parametrize(
    ("spec", "n", "m", "expected"),
    [("uniform", 12, 4, [3, 6, 9, 12]), ("uniform", 6, 3, [2, 4, 6]), ("top", 6, 4, [3, 4, 5, 6]),
     ("bottom", 6, 4, [1, 2, 3, 4]), ([2, 3, 5, 6], 6, 4, [2, 3, 5, 6]), ("uniform", 4, 4, [1, 2, 3, 4])],
)
def test_layer_maps(spec: str | list[int], n: int, m: int, expected: list[int]) -> None:
    assert layer_map(spec, n, m) == expected


@pytest.mark.parametrize(
    ("spec", "n", "m", "message"),
    [("uniform", 6, 4, r"needs the teacher's 6 layers to divide evenly over the student's 4; use 'top', 'bottom', or an explicit list such as \[2, 3, 5, 6\]"),
     ("top", 4, 6, "the student has 6 layers but the teacher only 4"),
     ([1, 2, 3], 6, 4, "it has 3 entries but the student has 4 layers"),
     ([0, 2, 3, 7], 6, 4, r"every entry must be a teacher layer in 1..6"),
     ([3, 2, 4, 5], 6, 4, "strictly increasing"),
     ("middle", 6, 4, "layer map 'middle' is unknown; valid: uniform, top, bottom")],
)
def test_layer_map_errors(spec: str | list[int], n: int, m: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        layer_map(spec, n, m)


def test_raw_attention_scores_match_the_models_probabilities_and_mask_padding() -> None:
    from transformers import BertForSequenceClassification

    from edgekd import testing

    torch.manual_seed(0)
    config = testing.tiny_bert_config()
    config._attn_implementation = "eager"
    model = BertForSequenceClassification(config).eval()
    batch = {
        "input_ids": torch.tensor([[2, 5, 6, 3, 0], [2, 7, 3, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]]),
        "token_type_ids": torch.zeros(2, 5, dtype=torch.long),
    }
    features = hf_features(model, batch, intermediate=True)
    assert len(features.attentions) == 2 and features.attentions[0].shape == (2, 2, 5, 5)
    assert len(features.hidden_states) == 3
    reference = model(**batch, output_attentions=True).attentions
    for scores, probabilities in zip(features.attentions, reference):
        # masked key positions are zeroed, as TinyBERT's reference code does
        assert torch.all(scores[0, :, :, 4] == 0) and torch.all(scores[1, :, :, 3:] == 0)
        # softmax of the unmasked scores reproduces the model's own attention probabilities
        for row, length in enumerate((4, 3)):
            recomputed = torch.softmax(scores[row, :, :, :length], dim=-1)
            torch.testing.assert_close(recomputed, probabilities[row, :, :, :length], atol=1e-5, rtol=1e-4)
    plain = hf_features(model, batch, intermediate=False)
    assert plain.attentions is None and torch.allclose(plain.logits, features.logits)
