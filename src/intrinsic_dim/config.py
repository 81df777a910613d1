"""SubspaceConfig: the one description of a subspace fine-tune.

It is what :class:`~intrinsic_dim.subspace.SubspaceModel` is built from, and the body of an adapter's
``adapter_config.json`` (beside the file's own keys: format version, checksums, the base model's
fingerprint). Adapters written by intrinsic-dim 0.1.0, whose config nested the projection under
``"projection": {"kind", "seed", "layout", ...}`` and said ``"method": "did" | "said"``, still load.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from intrinsic_dim.groups import GROUPINGS
from intrinsic_dim.projection import DEFAULT_MAX_DENSE_ELEMENTS, KINDS, LAYOUTS, NORMALISATIONS
from intrinsic_dim.quant import QUANTS
from intrinsic_dim.rng import MASK64

CONFIG_NAME = "adapter_config.json"
# keys of adapter_config.json that describe the file or the base model, not the subspace
FILE_KEYS = frozenset(
    {"format_version", "library_version", "weights_sha256", "config_sha256", "projected", "D", "base_model_name",
     "base_fingerprint", "base_quant_fingerprint", "metadata"}
)
MAX_PATTERN_LENGTH = 1000

Patterns = list[str] | None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _patterns(name: str, p: Any) -> Patterns:
    """``p`` (a regular expression, a list of them or None) as a list or None, each one compiled to check it."""
    if p is None:
        return None
    patterns = [p] if isinstance(p, str) else p
    if not isinstance(patterns, (list, tuple)):
        raise ValueError(f"{name} must be a regular expression or a list of them, got {p!r}")
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ValueError(f"{name} must hold regular expressions (text), got {pattern!r}")
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise ValueError(f"{name} pattern of {len(pattern)} characters is longer than {MAX_PATTERN_LENGTH}")
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as e:
            raise ValueError(f"{name} pattern {pattern!r} is not a valid regular expression ({e})") from None
    return list(patterns) or None


@dataclass
class SubspaceConfig:
    """How to reparameterise a model as theta0 + P(z): see docs/method.md for every field.

    ``d``: trained subspace numbers (SAID: z and the lambdas together). ``projection``: 'dense',
    'sparse' or 'fastfood'. ``layout``/``normalisation``: Fastfood's block layout ('stacked' or
    'per_tensor') and, for 'per_tensor', column length ('released': sqrt(#tensors) as the released
    code, 'unit'). ``groups``: SAID grouping ('tensor', 'module', 'block' or a name -> group dict).
    ``include``/``exclude``/``train_directly``: regular expressions on parameter names.
    ``dense_max_elements``: the largest d * D a dense projection may materialise. ``base_quant``: 'int8' stores
    the projected matrices of the base as int8 codes with a scale per output channel (quant.py), dequantised when read.
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
    base_quant: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _is_int(self.d) or self.d < 1:
            raise ValueError(f"d must be a positive integer, got {self.d!r}")
        if self.projection not in KINDS:
            raise ValueError(f"unknown projection {self.projection!r}; choose one of {KINDS}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; choose one of {LAYOUTS}")
        if self.layout != "stacked" and self.projection != "fastfood":
            raise ValueError(f"layout {self.layout!r} applies to the fastfood projection only, not {self.projection!r}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {self.normalisation!r}; choose one of {NORMALISATIONS}")
        if isinstance(self.groups, dict):
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.groups.items()):
                raise ValueError(f"a SAID grouping dict maps parameter names to group names (text), got {self.groups!r}")
        elif not (callable(self.groups) or self.groups in GROUPINGS):
            raise ValueError(f"unknown SAID grouping {self.groups!r}; choose one of {GROUPINGS} or a name -> group dict")
        if not _is_int(self.seed) or not 0 <= self.seed <= MASK64:
            raise ValueError(f"seed must be an integer from 0 to 2**64 - 1 (the generator's range), got {self.seed!r}")
        if not _is_int(self.dense_max_elements) or self.dense_max_elements < 1:
            raise ValueError(f"dense_max_elements must be a positive integer, got {self.dense_max_elements!r}")
        if self.base_quant is not None and self.base_quant not in QUANTS:
            raise ValueError(f"unknown base_quant {self.base_quant!r}; choose one of {QUANTS} or None (the base's own dtype)")
        if not isinstance(self.said, bool):
            raise ValueError(f"said must be true or false, got {self.said!r}")
        self.include, self.exclude = _patterns("include", self.include), _patterns("exclude", self.exclude)
        self.train_directly = _patterns("train_directly", self.train_directly)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable fields (``extra`` left out; ``base_quant`` only when set, so that an adapter of an
        unquantised base is written as before it existed)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return out if self.base_quant else {k: v for k, v in out.items() if k != "base_quant"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SubspaceConfig":
        """Build from :meth:`to_dict`'s form or a 0.1.0 adapter config; unknown keys give a warning
        and are kept in ``extra``."""
        if not isinstance(data, dict):
            raise ValueError(f"a subspace config is a mapping of field names to values, got {type(data).__name__}")
        data = _upgrade(data)
        if "d" not in data:
            raise ValueError("the config has no 'd' (the number of trained subspace numbers)")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = {k: v for k, v in data.items() if k not in names and k not in FILE_KEYS}
        if unknown:
            warnings.warn(f"SubspaceConfig: ignoring unknown keys {sorted(unknown)}", UserWarning, stacklevel=2)
        return cls(**{k: v for k, v in data.items() if k in names}, extra=unknown)


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A 0.1.0 adapter config (nested projection, 'method') in the current flat form."""
    proj = data.get("projection")
    if not isinstance(proj, dict):
        return dict(data)
    missing = sorted({"kind", "seed"} - set(proj))
    if missing:
        raise ValueError(f"the nested 'projection' of a 0.1.0 config has no {missing}")
    if data.get("method", "did") not in ("did", "said"):
        raise ValueError(f"method must be 'did' or 'said', got {data['method']!r}")
    out = {k: v for k, v in data.items() if k not in ("projection", "method")}
    out |= {"projection": proj["kind"], "seed": proj["seed"], "layout": proj.get("layout", "stacked")}
    out["said"] = data.get("method") == "said"
    out["groups"] = "tensor" if data.get("groups") is None else data["groups"]
    return out
