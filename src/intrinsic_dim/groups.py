"""SAID groupings: which projected tensors share one learned scale lambda."""

from __future__ import annotations

import re
from typing import Callable, Sequence

from torch import nn

GROUPINGS = ("tensor", "module", "block")
_NUMBERED = re.compile(r"^(.*?\.\d+)\.")

Grouping = str | dict[str, str] | Callable[[str], str]


def group_key(name: str, grouping: str) -> str:
    """The group of parameter ``name``: itself ('tensor'), its module ('module'), or its numbered
    block such as ``encoder.layer.3`` ('block'; unnumbered parameters fall back to their module)."""
    module = name.rsplit(".", 1)[0] if "." in name else name
    if grouping == "tensor":
        return name
    if grouping == "module":
        return module
    if grouping == "block":
        m = _NUMBERED.match(name)
        return m.group(1) if m else module
    raise ValueError(f"unknown SAID grouping {grouping!r}; choose one of {GROUPINGS} or pass a callable name -> group")


def assign_groups(names: Sequence[str], grouping: Grouping) -> tuple[list[int], list[str]]:
    """Group index per name and the group keys, in order of first appearance."""
    if isinstance(grouping, dict):
        keyof: Callable[[str], str] = grouping.__getitem__
    else:
        keyof = grouping if callable(grouping) else (lambda n: group_key(n, grouping))
    keys: dict[str, int] = {}
    index = [keys.setdefault(str(keyof(n)), len(keys)) for n in names]
    return index, list(keys)


def num_groups(model: nn.Module, grouping: Grouping) -> int:
    """How many SAID groups the trainable floating-point parameters of ``model`` form."""
    names = [n for n, p in model.named_parameters() if p.requires_grad and p.is_floating_point()]
    return len(assign_groups(names, grouping)[1])
