"""SubspaceConfig: the one description of a subspace fine-tune.

It is what :class:`~intrinsic_dim.subspace.SubspaceModel` is built from, and the body of an adapter's
``adapter_config.json`` (beside the file's own keys: format version, checksums, the base model's
fingerprint). Adapters written by intrinsic-dim 0.1.0, whose config nested the projection under
``"projection": {"kind", "seed", "layout", ...}`` and said ``"method": "did" | "said"``, still load.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from intrinsic_dim.groups import GROUPINGS
from intrinsic_dim.projection import DEFAULT_MAX_DENSE_ELEMENTS, KINDS, LAYOUTS, NORMALISATIONS

CONFIG_NAME = "adapter_config.json"
# keys of adapter_config.json that describe the file or the base model, not the subspace
FILE_KEYS = frozenset(
    {"format_version", "library_version", "weights_sha256", "projected", "D", "base_model_name", "base_fingerprint", "metadata"}
)

Patterns = list[str] | None


def _patterns(p: str | list[str] | tuple[str, ...] | None) -> Patterns:
    return [p] if isinstance(p, str) else (list(p) if p else None)


@dataclass
class SubspaceConfig:
    """How to reparameterise a model as theta0 + P(z): see docs/method.md for every field.

    ``d``: trained subspace numbers (SAID: z and the lambdas together). ``projection``: 'dense',
    'sparse' or 'fastfood'. ``layout``/``normalisation``: Fastfood's block layout ('stacked' or
    'per_tensor') and, for 'per_tensor', column length ('released': sqrt(#tensors) as the released
    code, 'unit'). ``groups``: SAID grouping ('tensor', 'module', 'block' or a name -> group dict).
    ``include``/``exclude``/``train_directly``: regular expressions on parameter names.
    ``dense_max_elements``: the largest d * D a dense projection may materialise.
    """

    d: int
    projection: str = "fastfood"
    layout: str = "stacked"
    normalisation: str = "released"
    said: bool = False
    groups: str | dict[str, str] | Callable[[str], str] = "tensor"
    seed: int = 0
    include: Patterns = None
    exclude: Patterns = None
    train_directly: Patterns = None
    dense_max_elements: int = DEFAULT_MAX_DENSE_ELEMENTS
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.d, int) or isinstance(self.d, bool) or self.d < 1:
            raise ValueError(f"d must be a positive integer, got {self.d!r}")
        if self.projection not in KINDS:
            raise ValueError(f"unknown projection {self.projection!r}; choose one of {KINDS}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; choose one of {LAYOUTS}")
        if self.layout != "stacked" and self.projection != "fastfood":
            raise ValueError(f"layout {self.layout!r} applies to the fastfood projection only, not {self.projection!r}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {self.normalisation!r}; choose one of {NORMALISATIONS}")
        if not (isinstance(self.groups, dict) or callable(self.groups) or self.groups in GROUPINGS):
            raise ValueError(f"unknown SAID grouping {self.groups!r}; choose one of {GROUPINGS} or a name -> group dict")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.dense_max_elements, int) or self.dense_max_elements < 1:
            raise ValueError(f"dense_max_elements must be a positive integer, got {self.dense_max_elements!r}")
        self.said = bool(self.said)
        self.include, self.exclude = _patterns(self.include), _patterns(self.exclude)
        self.train_directly = _patterns(self.train_directly)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable fields (``extra`` left out)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SubspaceConfig":
        """Build from :meth:`to_dict`'s form or a 0.1.0 adapter config; unknown keys give a warning
        and are kept in ``extra``."""
        data = _upgrade(data)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = {k: v for k, v in data.items() if k not in names and k not in FILE_KEYS}
        if unknown:
            warnings.warn(f"SubspaceConfig: ignoring unknown keys {sorted(unknown)}", UserWarning, stacklevel=2)
        return cls(**{k: v for k, v in data.items() if k in names}, extra=unknown)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "SubspaceConfig":
        """The config of the adapter saved in directory ``path`` (or of that JSON file)."""
        p = Path(path)
        return cls.from_dict(json.loads((p / CONFIG_NAME if p.is_dir() else p).read_text()))


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A 0.1.0 adapter config (nested projection, 'method') in the current flat form."""
    proj = data.get("projection")
    if not isinstance(proj, dict):
        return dict(data)
    out = {k: v for k, v in data.items() if k not in ("projection", "method")}
    out |= {"projection": proj["kind"], "seed": proj["seed"], "layout": proj.get("layout", "stacked")}
    out["said"] = data.get("method") == "said"
    out["groups"] = data.get("groups") or "tensor"
    return out
