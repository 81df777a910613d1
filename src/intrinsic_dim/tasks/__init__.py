"""Task registry: datasets, text columns, label sets and GLUE-convention metrics."""

from __future__ import annotations

import torch

from intrinsic_dim.tasks.base import Split, Task, TaskError
from intrinsic_dim.tasks.encoders import ImageEncoder, TextEncoder
from intrinsic_dim.tasks.metrics import METRIC_KEYS, metric_values
from intrinsic_dim.tasks.registry import from_datasets, list_tasks, load_task


def compute_metrics(task: Task, predictions: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The task's metrics under `evaluate`'s key names, from class ids (or logits) or regression values."""
    return metric_values(task.metric, predictions, labels, task.is_regression)


__all__ = ["METRIC_KEYS", "ImageEncoder", "Split", "Task", "TaskError", "TextEncoder", "compute_metrics", "from_datasets", "list_tasks",
           "load_task"]
