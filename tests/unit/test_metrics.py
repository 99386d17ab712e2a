"""Metrics against hand-computed values and against scikit-learn / SciPy as reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk

from edgekd import metrics


def test_hand_computed() -> None:
    predictions, labels = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    assert metrics.accuracy(predictions, labels) == pytest.approx(3 / 5)
    # tp 2, fp 1, fn 1 -> 2*2 / (2*2 + 1 + 1)
    assert metrics.f1(predictions, labels) == pytest.approx(4 / 6)
    assert metrics.f1(np.zeros(3, int), np.zeros(3, int)) == 0.0
    # MCC = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2*1 - 1*1) / sqrt(3*3*2*2)
    assert metrics.matthews(predictions, labels) == pytest.approx(1 / 6)
    assert metrics.spearman(np.array([1.0, 2.0, 2.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.9486833)


@pytest.mark.parametrize("seed", range(5))
def test_against_references(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels, predictions = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert metrics.accuracy(predictions, labels) == pytest.approx(sk.accuracy_score(labels, predictions))
    assert metrics.matthews(predictions, labels) == pytest.approx(sk.matthews_corrcoef(labels, predictions))
    assert metrics.macro_f1(predictions, labels) == pytest.approx(sk.f1_score(labels, predictions, average="macro"))
    binary_l, binary_p = labels % 2, predictions % 2
    assert metrics.f1(binary_p, binary_l) == pytest.approx(sk.f1_score(binary_l, binary_p))
    x, y = rng.normal(size=100), rng.normal(size=100).round(1)  # ties in y
    assert metrics.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert metrics.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


def test_compute_from_logits() -> None:
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5]])
    result = metrics.compute(["accuracy", "f1"], logits, np.array([0, 1, 1]), "classification")
    assert result == {"accuracy": pytest.approx(2 / 3), "f1": pytest.approx(2 / 3)}
    scores = metrics.compute(["pearson"], np.array([[0.1], [0.2], [0.3]]), np.array([1.0, 2.0, 3.0]), "regression")
    assert scores["pearson"] == pytest.approx(1.0)
