"""SubspaceModel: any nn.Module reparameterised as theta = theta0 + P(z) (DID) or
theta_i = theta0_i + lambda_i * P(z)_i (SAID), with z (and lambda) the only trained numbers.

The wrapped model keeps its own weights as theta0 (frozen, never copied); each forward builds the
effective weights from one projection P(z) and runs the model through
``torch.func.functional_call``, so gradients flow to z through P's exact transpose.

Accounting (DESIGN.md): d is the number of trained subspace numbers. DID: z has d entries. SAID
with m groups: z has d - m entries and lambda m, so d <= m is an error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.func import functional_call

from intrinsic_dim import __version__
from intrinsic_dim.adapter import AdapterError, fingerprint, read_adapter, write_adapter
from intrinsic_dim.groups import Grouping, assign_groups
from intrinsic_dim.projection import Projection, make_projection


def _matches(name: str, patterns: Sequence[str] | None) -> bool:
    return bool(patterns) and any(re.search(p, name) for p in patterns)


def _as_patterns(p: str | Sequence[str] | None) -> list[str] | None:
    return [p] if isinstance(p, str) else (list(p) if p else None)


class SubspaceModel(nn.Module):
    """Wrap ``model`` so that only a d-dimensional random subspace of its weights is trained.

    ``include``/``exclude``/``train_directly``: regular expressions (``re.search``) on parameter
    names. By default every floating-point parameter with ``requires_grad`` is projected;
    ``train_directly`` parameters (e.g. ``r"^classifier\\."``) are trained as usual and count in
    :meth:`num_trainable`. Frozen parameters and buffers are left alone; tied weights count once.
    """

    def __init__(
        self,
        model: nn.Module,
        d: int,
        projection: str = "fastfood",
        said: bool = False,
        seed: int = 0,
        include: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        train_directly: str | Sequence[str] | None = None,
        groups: Grouping = "tensor",
        layout: str = "stacked",
    ) -> None:
        super().__init__()
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise ValueError(f"d must be a positive integer, got {d!r}")
        self.base = model
        self.include, self.exclude = _as_patterns(include), _as_patterns(exclude)
        self.train_directly = _as_patterns(train_directly)
        self.said, self.d = bool(said), d

        self._names: list[str] = []
        self._direct: list[str] = []
        self._requires_grad: dict[str, bool] = {}
        params = dict(model.named_parameters())  # de-duplicates tied parameters
        for name, p in params.items():
            self._requires_grad[name] = p.requires_grad
            if not (p.requires_grad and p.is_floating_point()):
                continue
            if _matches(name, self.train_directly):
                self._direct.append(name)
            elif (self.include is None or _matches(name, self.include)) and not _matches(name, self.exclude):
                self._names.append(name)
        if not self._names:
            raise ValueError(
                "no parameter to project: the model has no trainable floating-point parameter left after "
                f"include={self.include} exclude={self.exclude} train_directly={self.train_directly}"
            )
        self._shapes = [params[n].shape for n in self._names]
        self._sizes = [params[n].numel() for n in self._names]
        self.D = sum(self._sizes)

        self._group_index, self.group_names = assign_groups(self._names, groups) if said else ([], [])
        m = len(self.group_names)
        if said and d <= m:
            raise ValueError(
                f"SAID with d = {d} but {m} groups: d counts z and the {m} scales lambda, so d must exceed {m}; "
                "raise d or use a coarser grouping (groups='module' or 'block')"
            )
        self.projection: Projection = make_projection(
            projection, d - m, self.D, seed, layout=layout, sizes=self._sizes if layout == "per_tensor" else None
        )
        for name, p in params.items():  # only now, so that a refused configuration leaves the model as it was
            p.requires_grad_(name in self._direct)
        device = params[self._names[0]].device
        self.z = nn.Parameter(torch.zeros(d - m, device=device))
        self.lam = nn.Parameter(torch.ones(m, device=device)) if said else None
        self._fingerprint = fingerprint(self._frozen_named())
        self._merged = False

    # ---- behaving like the wrapped model -------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base":
                raise
            return getattr(self.base, name)

    def effective_parameters(self) -> dict[str, torch.Tensor]:
        """theta0 + P(z) (scaled by lambda per group for SAID) for every projected tensor, as new
        tensors built from one projection call; the wrapped model is untouched."""
        params = dict(self.base.named_parameters())
        out = {}
        parts = self.projection(self.z).split(self._sizes)
        for i, (name, shape, part) in enumerate(zip(self._names, self._shapes, parts)):
            if self.said:
                part = part * self.lam[self._group_index[i]]
            p = params[name]
            out[name] = p + part.view(shape).to(p.dtype)
        return out

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._merged:
            raise RuntimeError("this SubspaceModel was merged into its base model; use the model merge_and_unload returned")
        return functional_call(self.base, self.effective_parameters(), args, kwargs, tie_weights=True, strict=False)

    # ---- accounting ------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        """z, lambda (SAID) and the directly trained tensors: what an optimiser should get."""
        params = dict(self.base.named_parameters())
        return [self.z] + ([self.lam] if self.said else []) + [params[n] for n in self._direct]

    def num_trainable(self) -> int:
        """Trained numbers: d, plus the size of any directly trained tensors."""
        return sum(p.numel() for p in self.trainable_parameters())

    def num_total(self) -> int:
        """Parameters of the wrapped model (tied ones once)."""
        return sum(p.numel() for p in self.base.parameters())

    def print_trainable_parameters(self) -> None:
        """Print trained / total parameters, as PEFT does."""
        extra = f" (z: {self.z.numel():,}, lambda: {self.lam.numel():,})" if self.said else ""
        direct = sum(p.numel() for p in self.trainable_parameters()[1 + self.said :])
        extra += f" + directly trained: {direct:,}" if direct else ""
        t, n = self.num_trainable(), self.num_total()
        print(f"trainable params: {t:,}{extra} || all params: {n:,} || projected D: {self.D:,} || trainable%: {100 * t / n:.4f}")

    # ---- adapters --------------------------------------------------------------------------
    def _frozen_named(self) -> list[tuple[str, torch.Tensor]]:
        params = dict(self.base.named_parameters())
        return [(n, params[n]) for n in self._names]

    def adapter_config(self) -> dict[str, Any]:
        """The JSON-serialisable description written to ``adapter_config.json``."""
        base_cfg = getattr(self.base, "config", None)
        return {
            "library_version": __version__,
            "method": "said" if self.said else "did",
            "d": self.d,
            "projection": self.projection.config(),
            "include": self.include,
            "exclude": self.exclude,
            "train_directly": self.train_directly,
            "groups": dict(zip(self._names, (self.group_names[i] for i in self._group_index))) if self.said else None,
            "projected": [[n, list(s)] for n, s in zip(self._names, self._shapes)],
            "base_model_name": getattr(base_cfg, "_name_or_path", None) or type(self.base).__name__,
            "base_fingerprint": self._fingerprint,
        }

    def save_pretrained(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write the adapter (config JSON + safetensors with z, lambda, direct tensors) to ``path``;
        ``metadata`` (JSON-serialisable: e.g. model name, task, seed) is stored in the config."""
        params = dict(self.base.named_parameters())
        tensors = {"z": self.z} | ({"lambda": self.lam} if self.said else {})
        tensors |= {f"direct.{n}": params[n] for n in self._direct}
        return write_adapter(path, self.adapter_config() | {"metadata": metadata or {}}, tensors)

    @classmethod
    def from_pretrained(cls, model: nn.Module, path: str | Path) -> "SubspaceModel":
        """Rebuild the adapter saved at ``path`` on ``model``; refuses a different base model."""
        cfg, tensors = read_adapter(path)
        proj = cfg["projection"]
        groups = cfg["groups"]
        try:
            sm = cls(
                model,
                d=cfg["d"],
                projection=proj["kind"],
                said=cfg["method"] == "said",
                seed=proj["seed"],
                include=cfg["include"],
                exclude=cfg["exclude"],
                train_directly=cfg["train_directly"],
                groups=(lambda n: groups[n]) if groups else "tensor",
                layout=proj.get("layout", "stacked"),
            )
        except (KeyError, ValueError) as e:
            raise AdapterError(f"adapter at {path} does not fit this model: {e}") from e
        saved = [[n, list(s)] for n, s in cfg["projected"]]
        if saved != [[n, list(s)] for n, s in zip(sm._names, sm._shapes)]:
            raise AdapterError(
                f"adapter at {path} was made for a model with other parameters (names or shapes differ); "
                f"it expects base model {cfg['base_model_name']!r}"
            )
        if sm._fingerprint != cfg["base_fingerprint"]:
            raise AdapterError(
                f"adapter at {path} was trained on different base weights (fingerprint mismatch): load the exact "
                f"base model {cfg['base_model_name']!r} it was made for, with the same head initialisation"
            )
        sm._load_tensors(tensors, path)
        return sm

    def _load_tensors(self, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
        params = dict(self.base.named_parameters())
        expected = {"z": self.z} | ({"lambda": self.lam} if self.said else {})
        expected |= {f"direct.{n}": params[n] for n in self._direct}
        if set(tensors) != set(expected):
            raise AdapterError(f"adapter at {path} holds tensors {sorted(tensors)}, expected {sorted(expected)}")
        with torch.no_grad():
            for k, target in expected.items():
                if tensors[k].shape != target.shape:
                    raise AdapterError(f"adapter tensor {k} at {path} has shape {tuple(tensors[k].shape)}, expected {tuple(target.shape)}")
                target.copy_(tensors[k])

    def merge_and_unload(self) -> nn.Module:
        """Write theta0 + update into the wrapped model and return it as a plain module."""
        with torch.no_grad():
            merged = self.effective_parameters()
            params = dict(self.base.named_parameters())
            for name, value in merged.items():
                params[name].copy_(value)
            for name, flag in self._requires_grad.items():
                params[name].requires_grad_(flag)
        self._merged = True
        return self.base
