"""A wrapper's class specialised to the model it wraps: its ``forward`` shows the wrapped model's signature, which is
what ``transformers.Trainer`` inspects (column filter, label names, ``can_return_loss``)."""

from __future__ import annotations

import inspect
from typing import Any

_SPECIALISED: dict[tuple[type, type], type] = {}


def specialised(cls: type, base_cls: type) -> type:
    """``cls`` with ``forward`` showing ``base_cls.forward``'s signature and a name ending in the base
    class's, so that code inspecting the class (``transformers.Trainer``'s column filter, label names
    and ``can_return_loss``) sees the wrapped model's arguments."""
    cls = getattr(cls, "_generic", cls)  # from_pretrained called on a specialised class
    key = (cls, base_cls)
    if key not in _SPECIALISED:
        try:
            sig = inspect.signature(base_cls.forward)
        except (TypeError, ValueError, AttributeError):
            return cls
        parent = cls.forward

        def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
            return parent(self, *args, **kwargs)

        forward.__signature__ = sig  # type: ignore[attr-defined]
        forward.__doc__ = parent.__doc__
        name = f"{cls.__name__}[{base_cls.__name__}]"
        _SPECIALISED[key] = type(name, (cls,), {"forward": forward, "_generic": cls, "__module__": cls.__module__, "__qualname__": name})
    return _SPECIALISED[key]
