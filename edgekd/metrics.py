"""Task metrics in plain numpy: accuracy, F1, Matthews correlation, Pearson and Spearman correlation."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predictions == labels))


def f1(predictions: np.ndarray, labels: np.ndarray, positive: int = 1) -> float:
    """Binary F1 of the positive class (GLUE's MRPC convention); 0 when there is no true or predicted positive."""
    tp = float(np.sum((predictions == positive) & (labels == positive)))
    fp = float(np.sum((predictions == positive) & (labels != positive)))
    fn = float(np.sum((predictions != positive) & (labels == positive)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def macro_f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """The mean over classes of each class's F1 against the rest (classes seen in the labels or the predictions), as
    scikit-learn's `f1_score(average="macro")`: a rare class weighs as much as a frequent one."""
    classes = np.union1d(predictions, labels)
    return float(np.mean([f1(predictions, labels, positive=c) for c in classes])) if len(classes) else 0.0


def matthews(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation for any number of classes (Gorodkin's R_K); 0 when undefined."""
    classes = np.union1d(predictions, labels)
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)))
    for p, t in zip(predictions, labels):
        confusion[index[t], index[p]] += 1
    t_sum, p_sum = confusion.sum(axis=1), confusion.sum(axis=0)
    n, correct = confusion.sum(), np.trace(confusion)
    cov_ytyp = correct * n - t_sum @ p_sum
    cov_ypyp = n * n - p_sum @ p_sum
    cov_ytyt = n * n - t_sum @ t_sum
    denominator = np.sqrt(cov_ytyt * cov_ypyp)
    return 0.0 if denominator == 0 else float(cov_ytyp / denominator)


def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    x, y = predictions.astype(np.float64), labels.astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return 0.0 if denominator == 0 else float((x * y).sum() / denominator)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks starting at 1, ties given their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(predictions: np.ndarray, labels: np.ndarray) -> float:
    return pearson(_ranks(np.asarray(predictions)), _ranks(np.asarray(labels)))


METRIC_FUNCTIONS = {"accuracy": accuracy, "f1": f1, "macro_f1": macro_f1, "matthews": matthews, "pearson": pearson, "spearman": spearman}


def compute(names: Iterable[str], outputs: np.ndarray, labels: np.ndarray, problem: str) -> dict[str, float]:
    """Compute the named metrics from model outputs: logits (batch, classes) or scores (batch,) for regression."""
    predictions = outputs.reshape(-1) if problem == "regression" else np.argmax(outputs, axis=-1)
    return {name: METRIC_FUNCTIONS[name](predictions, labels) for name in names}
