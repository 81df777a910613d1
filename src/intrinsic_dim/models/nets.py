"""Li et al. 2018's image networks: the fully connected net and LeNet, with a loader per architecture."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from intrinsic_dim.models.base import LoadedModel, ModelError, seeded
from intrinsic_dim.tasks import Task
from intrinsic_dim.tasks.encoders import ImageEncoder


class FCNet(nn.Module):
    """Li et al.'s fully connected net: flatten -> 200 -> 200 -> classes, ReLU (199,210 weights on MNIST)."""

    def __init__(self, in_features: int, num_labels: int, hidden: Sequence[int] = (200, 200)) -> None:
        super().__init__()
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], num_labels))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_labels)."""
        return self.net(pixel_values)


class LeNet(nn.Module):
    """LeNet-5 as in Li et al.: conv 6@5x5 (no padding) -> max-pool 2 -> conv 16@5x5 -> max-pool 2 ->
    FC 120 -> 84 -> classes, ReLU. 44,426 weights on 1x28x28 MNIST, 62,006 on 3x32x32 CIFAR-10."""

    def __init__(self, channels: int, size: tuple[int, int], num_labels: int) -> None:
        super().__init__()
        side = [((s - 4) // 2 - 4) // 2 for s in size]
        if min(side) < 1:
            raise ModelError(f"lenet needs images of at least 12x12 pixels, got {size[0]}x{size[1]}")
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * side[0] * side[1], 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_labels)
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_labels)."""
        return self.classifier(self.features(pixel_values))


def _image_shape(task: Task) -> tuple[int, int, int]:
    if task.train.images is None:
        raise ModelError(f"task {task.name!r} has no images")
    c, h, w = task.train.images.shape[1:]
    return int(c), int(h), int(w)


def _image_model(name: str, build: Callable[[int, int, int, int], nn.Module]) -> Callable[..., LoadedModel]:
    def load(task: Task, seed: int, max_length: int) -> LoadedModel:
        c, h, w = _image_shape(task)
        with seeded(seed):
            model = build(c, h, w, task.num_labels)
        return LoadedModel(name=name, model=model.eval(), encode=ImageEncoder(), kind="image")

    return load
