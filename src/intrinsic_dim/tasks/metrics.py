"""GLUE-convention metrics computed locally, under the key names of Hugging Face `evaluate`.

Degenerate cases follow scikit-learn's answers where it has one and are 0.0 otherwise: F1 with no
positive prediction or label, Matthews with a constant column, and Pearson/Spearman when either
side is constant (scipy would give NaN, which no d90 threshold could compare against).
"""

from __future__ import annotations

import torch

METRIC_KEYS: dict[str, list[str]] = {
    "accuracy": ["accuracy"],
    "f1": ["f1", "accuracy"],
    "matthews_correlation": ["matthews_correlation"],
    "pearson": ["pearson", "spearmanr"],
    "spearmanr": ["pearson", "spearmanr"],
}
"""For each primary metric, every key that compute_metrics reports alongside it."""


def accuracy(pred: torch.Tensor, label: torch.Tensor) -> float:
    """Fraction of exact matches."""
    return (pred == label).double().mean().item()


def f1_binary(pred: torch.Tensor, label: torch.Tensor) -> float:
    """F1 of the positive class (id 1), as GLUE scores MRPC and QQP."""
    tp = ((pred == 1) & (label == 1)).sum().item()
    wrong = ((pred == 1) != (label == 1)).sum().item()
    return 2 * tp / (2 * tp + wrong) if tp else 0.0


def matthews(pred: torch.Tensor, label: torch.Tensor) -> float:
    """Matthews correlation coefficient (the multiclass form, equal to the usual one for two classes)."""
    k = int(max(pred.max().item(), label.max().item())) + 1
    conf = torch.bincount(label * k + pred, minlength=k * k).reshape(k, k).double()
    t, p = conf.sum(1), conf.sum(0)
    s, c = conf.sum(), conf.trace()
    denom = ((s * s - p @ p) * (s * s - t @ t)).sqrt()
    return ((c * s - t @ p) / denom).item() if denom > 0 else 0.0


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = (x @ x * (y @ y)).sqrt()
    return (x @ y / denom).item() if denom > 0 else 0.0


def ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks with ties given their average rank (as scipy.stats.rankdata)."""
    values, order = torch.sort(x.double(), stable=True)
    _, inverse, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    average = ends - (counts.double() - 1) / 2
    out = torch.empty_like(values)
    out[order] = average[inverse]
    return out


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation (Pearson on tie-averaged ranks)."""
    return pearson(ranks(x), ranks(y))


def metric_values(metric: str, predictions: torch.Tensor, labels: torch.Tensor, regression: bool) -> dict[str, float]:
    """Every metric reported with primary ``metric``, from class ids (or real values for regression)."""
    if metric not in METRIC_KEYS:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRIC_KEYS)}")
    pred, label = torch.as_tensor(predictions).detach().cpu(), torch.as_tensor(labels).detach().cpu()
    if regression:
        pred, label = pred.reshape(-1).double(), label.reshape(-1).double()
    else:
        pred = pred.argmax(-1) if pred.dim() == 2 else pred
        pred, label = pred.reshape(-1).long(), label.reshape(-1).long()
    if pred.numel() != label.numel() or pred.numel() == 0:
        raise ValueError(f"need one prediction per label and at least one of each, got {pred.numel()} and {label.numel()}")
    funcs = {"accuracy": accuracy, "f1": f1_binary, "matthews_correlation": matthews, "pearson": pearson, "spearmanr": spearman}
    return {key: float(funcs[key](pred, label)) for key in METRIC_KEYS[metric]}
