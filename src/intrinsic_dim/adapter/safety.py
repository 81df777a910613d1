"""The safe-range checks an adapter's numbers pass before they reach a model: no weight they give and no output they
make may be NaN, infinite or absurdly large (a corrupt or hostile adapter fails here, with what to do)."""

from __future__ import annotations

import math
from typing import Any

import torch

from intrinsic_dim.adapter.format import AdapterError


def check_range(name: str, w: torch.Tensor, base: torch.Tensor, where: str, how: str) -> None:
    """Refuse a weight that is not finite or larger than max(sqrt(its dtype's largest value), the base's largest |value|)."""
    limit = max(torch.finfo(base.dtype).max ** 0.5, float(base.detach().abs().max()) if base.numel() else 0.0)
    largest = float(w.abs().max()) if w.numel() else 0.0
    if not largest <= limit:
        value = f"reach {largest:.3g}" if math.isfinite(largest) else "be NaN or infinite"
        raise AdapterError(
            f"{where}: {name} would {value} {how}, beyond the safe range +-{limit:.3g} of {base.dtype} "
            "(z, lambda or a directly trained tensor is absurdly large): retrain the adapter or restore the original file"
        )


def check_outputs(out: Any, source: str) -> None:
    """Refuse the outputs of a model running an adapter loaded from ``source`` unless every floating tensor is finite."""
    if isinstance(out, torch.Tensor):
        items: list[Any] = [out]
    elif isinstance(out, dict):
        items = list(out.values())
    elif isinstance(out, (tuple, list)):
        items = list(out)
    else:
        return
    for t in items:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t.detach()).all()):
            raise AdapterError(f"adapter at {source} makes the model output NaN or infinite values (its z or lambda is too "
                               "large for this model): retrain the adapter or restore the original file")
        if isinstance(t, (dict, tuple, list)):
            check_outputs(t, source)
