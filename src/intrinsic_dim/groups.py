"""Which parameters a subspace projects, and SAID groupings: which projected tensors share one learned scale lambda.

The one place that decides what is projected (:func:`select_parameters`); the engine, the search's range of d
and the adapter checks all count through it."""

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


def _matches(name: str, patterns: Sequence[str] | None) -> bool:
    return bool(patterns) and any(re.search(p, name) for p in patterns)


def select_parameters(
    model: nn.Module, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
    train_directly: Sequence[str] | None = None,
) -> tuple[dict[str, nn.Parameter], list[str], list[str]]:
    """The model's parameters by name (tied ones once), the names projected and the names trained directly.

    Every floating-point parameter with ``requires_grad`` is projected, unless ``train_directly`` matches it
    (then it is trained as it is) or ``include`` / ``exclude`` (regular expressions, ``re.search``) leave it out."""
    params = dict(model.named_parameters())
    projected, direct = [], []
    for name, p in params.items():
        if not (p.requires_grad and p.is_floating_point()):
            continue
        if _matches(name, train_directly):
            direct.append(name)
        elif (include is None or _matches(name, include)) and not _matches(name, exclude):
            projected.append(name)
    return params, projected, direct


def subspace_extent(model: nn.Module, said: bool, grouping: Grouping = "tensor", include: Sequence[str] | None = None,
                    exclude: Sequence[str] | None = None, train_directly: Sequence[str] | None = None) -> tuple[int, int]:
    """(m, D): the SAID groups (0 for DID) and the projected weights of ``model``, so d ranges over (m, D + m]."""
    params, names, _ = select_parameters(model, include, exclude, train_directly)
    m = len(assign_groups(names, grouping)[1]) if said else 0
    return m, sum(params[n].numel() for n in names)


def num_groups(model: nn.Module, grouping: Grouping) -> int:
    """How many SAID groups the projected parameters of ``model`` form (every trainable floating-point one)."""
    return subspace_extent(model, True, grouping)[0]
