"""SubspaceModel: any nn.Module reparameterised as theta = theta0 + P(z) (DID) or
theta_i = theta0_i + lambda_g(i) * P_i(z) (SAID), with z (and lambda) the only trained numbers.

Just in time, per tensor (docs/memory.md): every projected tensor of the wrapped model is a
``torch.nn.utils.parametrize`` parametrization whose value, computed each time a module reads the
weight, is theta0_i + P_i(z) for its own slice P_i of the projection (bit-identical to the slice of
the whole P(z)). Tensors that autograd saves for the backward pass and that share storage with
such a weight are replaced, by saved-tensor hooks, with a recipe to recompute them, so no effective
weight outlives the operation that reads it; z's gradient accumulates through P_i^T tensor by
tensor. A training step's extra memory is therefore a few times the largest tensor plus O(d), not
O(D). The wrapped model's theta0 is never copied; while wrapped, its parameter names gain
``parametrizations.<name>.original`` as with any parametrization.

Accounting (docs/method.md): d is the number of trained subspace numbers. DID: z has d entries.
SAID with m groups: z has d - m entries and lambda m, so d <= m is an error.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.module import _IncompatibleKeys
from torch.nn.utils import parametrize

from intrinsic_dim.adapter import io as adapter_io
from intrinsic_dim.adapter.format import AdapterError, fingerprint
from intrinsic_dim.adapter.safety import check_outputs, check_range
from intrinsic_dim.config import SubspaceConfig
from intrinsic_dim.effective import transpose, weight
from intrinsic_dim.groups import assign_groups, select_parameters
from intrinsic_dim.lazyweights import check_readable, read_into
from intrinsic_dim.projection import Projection, make_projection
from intrinsic_dim.quant import dequantize, dequantize_range, quantizable, quantize_int8
from intrinsic_dim.specialise import specialised
from intrinsic_dim.version import __version__


class _Update(torch.autograd.Function):
    """W_i = theta0_i + (lambda_g * P_i(z)) in theta0's dtype. Backward: t = P_i^T(grad),
    grad_z = lambda_g t, grad_lambda_g = <grad, P_i(z)> = <t, z>; nothing D_i-sized is saved."""

    @staticmethod
    def forward(ctx, theta0: torch.Tensor, z: torch.Tensor, lam: torch.Tensor | None, sm: "SubspaceModel", i: int) -> torch.Tensor:  # type: ignore[override]
        ctx.sm, ctx.i = sm, i
        ctx.save_for_backward(z, lam)
        return sm._effective(i, theta0, z, lam)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        z, lam = ctx.saved_tensors
        t = transpose(ctx.sm.projection, ctx.i, grad, z.dtype)
        grad_z = grad_lam = None
        if lam is None:
            grad_z = t
        else:
            k = ctx.sm._group_index[ctx.i]
            grad_z = t * lam[k] if ctx.needs_input_grad[1] else None
            if ctx.needs_input_grad[2]:  # <grad, P_i(z)> = <P_i^T(grad), z>: no second projection
                grad_lam = torch.zeros_like(lam)
                grad_lam[k] = torch.dot(t, z)
        return None, grad_z, grad_lam, None, None


class _Reparametrization(nn.Module):
    """The parametrization of projected tensor i: theta0_i -> theta0_i + P_i(z), computed when read."""

    def __init__(self, owner: "SubspaceModel", i: int) -> None:
        super().__init__()
        self._owner = [owner]  # a list, so that the owner is not registered as a submodule
        self.i = i

    def forward(self, theta0: torch.Tensor) -> torch.Tensor:
        owner = self._owner[0]
        return owner._base(self.i, theta0) if owner._disabled else owner._weight(self.i, theta0)


@dataclass(frozen=True)
class _Recipe:
    """What a saved-tensor hook keeps instead of (a view of) an effective weight."""

    i: int
    size: torch.Size
    stride: tuple[int, ...]
    offset: int
    versions: tuple[int, ...]


class SubspaceModel(nn.Module):
    """Wrap ``model`` so that only a d-dimensional random subspace of its weights is trained.

    ``SubspaceModel(model, SubspaceConfig(d=1000, said=True))`` or, with the same keywords,
    ``SubspaceModel(model, d=1000, said=True)``. ``include``/``exclude``/``train_directly``: regular
    expressions (``re.search``) on parameter names. By default every floating-point parameter with
    ``requires_grad`` is projected; ``train_directly`` parameters (e.g. ``r"^classifier\\."``) are
    trained as usual and count in :meth:`num_trainable`. Frozen parameters and buffers are left
    alone; tied weights count once. Base weights may be bfloat16/float16: z and lambda stay float32
    and the update is added in the weight's dtype. ``base_quant="int8"`` stores the projected matrices as int8 codes
    with a scale per output channel (one byte a number), dequantised when read; the fingerprint stays the
    unquantised base's, and an adapter records the quantisation and the codes' own fingerprint. ``base_weights``: where
    parameters built on the meta device get their values (a mapping name -> tensor, e.g. ``SafetensorsWeights``), read
    one tensor at a time and, with ``base_quant``, quantised before the next is read (lazyweights.py).

    Wrapping is in place: ``model`` itself is changed (every parameter frozen but the ``train_directly`` ones, each
    projected tensor's name gaining ``parametrizations.<name>.original``); :meth:`unload` undoes it,
    :meth:`merge_and_unload` writes theta0 + P(z) in, :meth:`disable_adapter` computes with theta0 for a while.

    An instance's class is a subclass named after the wrapped model's (``SubspaceModel[BertFor...]``)
    whose ``forward`` has that model's signature; :meth:`state_dict` holds only what training changes.
    Both are what ``transformers.Trainer`` reads (docs/ecosystem.md).
    """

    def __new__(cls, model: nn.Module | None = None, *args: Any, **kwargs: Any) -> "SubspaceModel":
        """An instance of the subclass specialised to ``type(model)`` (copies and unpickling pass no model)."""
        return super().__new__(specialised(cls, type(model)) if isinstance(model, nn.Module) else cls)

    def __init__(self, model: nn.Module, config: SubspaceConfig | int | None = None, *,
                 base_weights: Mapping[str, torch.Tensor] | None = None, **kwargs: Any) -> None:
        super().__init__()
        if isinstance(config, SubspaceConfig):
            if kwargs:
                raise TypeError(f"pass either a SubspaceConfig or keywords, not both (got {sorted(kwargs)})")
        else:
            config = SubspaceConfig(**({"d": config} if config is not None else {}), **kwargs)
        if any(isinstance(mod, _Reparametrization) for mod in model.modules()):
            raise ValueError("this model is already wrapped by a SubspaceModel; merge_and_unload() it first or use a fresh model")
        unread = check_readable(model, base_weights)
        self.subspace_config = config
        self.base = model
        self.d, self.said = config.d, config.said
        self.include, self.exclude, self.train_directly = config.include, config.exclude, config.train_directly

        params, self._names, self._direct = select_parameters(model, self.include, self.exclude, self.train_directly)
        self._requires_grad = {name: p.requires_grad for name, p in params.items()}
        if not self._names:
            raise ValueError(
                "no parameter to project: the model has no trainable floating-point parameter left after "
                f"include={self.include} exclude={self.exclude} train_directly={self.train_directly}"
            )
        self._theta0 = [params[n] for n in self._names]
        self._shapes = [p.shape for p in self._theta0]
        self._sizes = [p.numel() for p in self._theta0]
        self.D = sum(self._sizes)

        self._group_index, self.group_names = assign_groups(self._names, config.groups) if self.said else ([], [])
        m = len(self.group_names)
        if self.said and self.d <= m:
            raise ValueError(
                f"SAID with d = {self.d} but {m} groups: d counts z and the {m} scales lambda, so d must exceed {m}; "
                "raise d or use a coarser grouping (groups='module' or 'block')"
            )
        self.projection: Projection = make_projection(
            config.projection, self.d - m, self.D, config.seed, layout=config.layout, sizes=self._sizes,
            normalisation=config.normalisation, max_dense_elements=config.dense_max_elements,
        )
        self._quantised: list[int] = []
        self._fingerprint = fingerprint(self._read_base(params, unread, base_weights, config.base_quant))
        device = self._theta0[0].device
        self.z = nn.Parameter(torch.zeros(self.d - m, device=device))
        self.lam = nn.Parameter(torch.ones(m, device=device)) if self.said else None
        self._live: dict[int, tuple[weakref.ref, int]] = {}
        self._merged = self._disabled = False
        self._source: tuple[str, tuple[int, ...]] | None = None  # the adapter file loaded, and z/lambda's versions then
        # only now, so that a refused configuration leaves the model as it was
        for name, p in params.items():
            p.requires_grad_(name in self._direct)
        self._quant_fingerprint = fingerprint(
            [(f"{self._names[i]}{suffix}", t) for i in self._quantised for suffix, t in (("", self._theta0[i]), (".scale", self._scale(i)))]
        ) if config.base_quant else None
        self._owners = self._find_owners(model)
        for i, owners in enumerate(self._owners):
            for module, pname in owners:
                parametrize.register_parametrization(module, pname, _Reparametrization(self, i), unsafe=True)

    def _find_owners(self, model: nn.Module) -> list[list[tuple[nn.Module, str]]]:
        """Every (module, attribute) holding each projected tensor (several for tied weights)."""
        index = {id(p): i for i, p in enumerate(self._theta0)}
        owners: list[list[tuple[nn.Module, str]]] = [[] for _ in self._theta0]
        for module in model.modules():
            for pname, p in module._parameters.items():
                if p is not None and id(p) in index:
                    owners[index[id(p)]].append((module, pname))
        return owners

    def _read_base(self, params: dict[str, nn.Parameter], unread: list[str], weights: Mapping[str, torch.Tensor] | None,
                   quant: str | None) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield each projected tensor (name, unquantised values) for the fingerprint, one at a time: a meta parameter is
        read from ``weights`` just before, and with ``quant`` a quantizable one is replaced by its int8 codes (the
        Parameter object is kept, so the model's references stay valid; scales kept as buffers) just after, so that
        at most one tensor is ever held unquantised. Unread parameters that are not projected are read first."""
        projected = set(self._names)
        for name in unread:
            if name not in projected:
                read_into(params[name], name, weights)
        for i, (name, p) in enumerate(zip(self._names, self._theta0)):
            if p.is_meta:
                read_into(p, name, weights)
            yield name, p
            if quant == "int8" and quantizable(p):
                q, scale = quantize_int8(p)
                self.register_buffer(f"base_scale_{i}", scale, persistent=False)
                p.requires_grad_(False)  # as every projected tensor ends up; an int8 tensor cannot require gradients
                p.data = q
                self._quantised.append(i)

    def _scale(self, i: int) -> torch.Tensor:
        return getattr(self, f"base_scale_{i}")

    def _base(self, i: int, theta0: torch.Tensor) -> torch.Tensor:
        """theta0_i as the model computes with it: dequantised where the base is quantised, else itself."""
        return dequantize(theta0, self._scale(i)) if theta0.dtype == torch.int8 else theta0

    # ---- the just-in-time weights ----------------------------------------------------------
    def _effective(self, i: int, theta0: torch.Tensor, z: torch.Tensor, lam: torch.Tensor | None) -> torch.Tensor:
        """theta0_i + lambda_g * P_i(z) in the weight's dtype, without autograd: one tensor-sized buffer, no float32
        copy of a half-precision weight, the base dequantised a piece at a time (effective.py)."""
        if theta0.dtype == torch.int8:
            scale = self._scale(i)
            base, dtype = (lambda a, b: dequantize_range(theta0, scale, a, b)), scale.dtype
        else:
            flat = theta0.reshape(-1)
            base, dtype = (lambda a, b: flat[a:b]), theta0.dtype
        with torch.autocast(theta0.device.type, enabled=False):  # P(z) in z's dtype under a caller's autocast, as in backward
            return weight(self.projection, i, z, None if lam is None else lam[self._group_index[i]], base, theta0.shape, dtype)

    def _weight(self, i: int, theta0: torch.Tensor) -> torch.Tensor:
        w = _Update.apply(theta0, self.z, self.lam, self, i)
        if torch.is_grad_enabled():
            self._live[w.untyped_storage().data_ptr()] = (weakref.ref(w), i)
        return w

    def _versions(self) -> tuple[int, ...]:
        return (self.z._version,) + ((self.lam._version,) if self.lam is not None else ())

    def _pack(self, t: torch.Tensor) -> Any:
        """Saved-tensor hook: (a view of) a live effective weight is saved as a recipe."""
        if not self._live or t.layout != torch.strided:
            return t
        entry = self._live.get(t.untyped_storage().data_ptr())
        if entry is None or entry[0]() is None:
            return t
        return _Recipe(entry[1], t.size(), t.stride(), t.storage_offset(), self._versions())

    def _unpack(self, saved: Any) -> torch.Tensor:
        """Saved-tensor hook: recompute an effective weight from its recipe."""
        if not isinstance(saved, _Recipe):
            return saved
        if saved.versions != self._versions():
            raise RuntimeError("z or lambda was modified in place between the forward and the backward pass")
        with torch.no_grad():
            w = self._effective(saved.i, self._theta0[saved.i], self.z, self.lam)
        return w.as_strided(saved.size, saved.stride, saved.offset)

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
        tensors; the wrapped model is untouched."""
        return {n: _Update.apply(t, self.z, self.lam, self, i) for i, (n, t) in enumerate(zip(self._names, self._theta0))}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's forward with the subspace weights."""
        if self._merged:
            raise RuntimeError("this SubspaceModel was merged into its base model; use the model merge_and_unload returned")
        self._live.clear()
        if not torch.is_grad_enabled():
            out = self.base(*args, **kwargs)
        else:
            with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
                out = self.base(*args, **kwargs)
        if self._source is not None and self._source[1] == self._versions():
            check_outputs(out, self._source[0])
        return out

    @contextlib.contextmanager
    def merged(self) -> Iterator["SubspaceModel"]:
        """Inside the block, each effective weight is built once (on first use) and reused, with
        gradients off: for evaluation. theta0 is never written, so leaving restores it exactly."""
        with torch.no_grad(), parametrize.cached():
            yield self

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator["SubspaceModel"]:
        """Inside the block the model computes with theta0 alone (z and lambda ignored), as PEFT's ``disable_adapter``:
        the base model's outputs without unwrapping it."""
        self._disabled, before = True, self._disabled
        try:
            yield self
        finally:
            self._disabled = before

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

    # ---- state: what training changes ---------------------------------------------------
    def state_dict(self, *, destination: dict[str, Any] | None = None, prefix: str = "", keep_vars: bool = False) -> dict[str, Any]:
        """z, lambda, the directly trained tensors and the buffers, under their usual keys; never the
        frozen weights theta0 (a Trainer checkpoint's model file is then a few KB)."""
        full = super().state_dict(prefix=prefix, keep_vars=True)
        out = OrderedDict() if destination is None else destination
        for k, v in full.items():
            if not (isinstance(v, nn.Parameter) and not v.requires_grad):
                out[k] = v if keep_vars else v.detach()
        if hasattr(full, "_metadata"):  # the modules' state-dict versions, as nn.Module records them
            if not hasattr(out, "_metadata"):
                out._metadata = OrderedDict()  # type: ignore[attr-defined]
            out._metadata.update(full._metadata)  # type: ignore[attr-defined]
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> _IncompatibleKeys:
        """Load :meth:`state_dict`'s tensors; the frozen weights are not expected (they are theta0)."""
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        trained = set(self.state_dict(keep_vars=True))
        missing = [k for k in result.missing_keys if k in trained]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {result.unexpected_keys}"
            )
        return _IncompatibleKeys(missing, result.unexpected_keys)

    # ---- adapters --------------------------------------------------------------------------
    def adapter_config(self) -> dict[str, Any]:
        """The JSON-serialisable description written to ``adapter_config.json``: the SubspaceConfig
        (SAID groups resolved to a name -> group dict unless given by name) and the base model's
        identity."""
        cfg = self.subspace_config.to_dict()
        if self.said and not isinstance(cfg["groups"], str):
            cfg["groups"] = dict(zip(self._names, (self.group_names[i] for i in self._group_index)))
        base_cfg = getattr(self.base, "config", None)
        return {"library_version": __version__} | cfg | {
            "D": self.D,
            "projected": [[n, list(s)] for n, s in zip(self._names, self._shapes)],
            "base_model_name": getattr(base_cfg, "_name_or_path", None) or type(self.base).__name__,
            "base_fingerprint": self._fingerprint,
        } | ({"base_quant_fingerprint": self._quant_fingerprint} if self._quant_fingerprint else {})

    def save_pretrained(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write the adapter (config JSON + safetensors with z, lambda, direct tensors) and its README.md
        model card to ``path``; ``metadata`` (JSON-serialisable: e.g. model name, task, seed, metric,
        d90 run; ``base_model``: the base model's Hub id) is stored in the config and shown in the card."""
        return adapter_io.save(self, path, metadata)

    def push_to_hub(self, repo_id: str, metadata: dict[str, Any] | None = None, private: bool | None = None,
                    token: str | None = None, commit_message: str = "Upload intrinsic-dim adapter") -> str:
        """Save the adapter with its model card and upload it to the Hub repository ``repo_id``
        (created if missing); returns the commit URL. Needs network access and a Hub token."""
        return adapter_io.push(self, repo_id, metadata, private=private, token=token, commit_message=commit_message)

    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        """The trained numbers an adapter file holds: z, lambda (SAID) and the directly trained tensors."""
        params = dict(self.base.named_parameters())
        tensors = {"z": self.z} | ({"lambda": self.lam} if self.said else {})
        return tensors | {f"direct.{n}": params[n] for n in self._direct}

    @classmethod
    def from_pretrained(cls, model: nn.Module, path: str | Path, revision: str | None = None, *,
                        base_weights: Mapping[str, torch.Tensor] | None = None) -> "SubspaceModel":
        """Rebuild the adapter saved in the folder or Hub repo id ``path`` on ``model`` (``revision``: the
        Hub branch, tag or commit; ``base_weights``: where a model built on the meta device reads its tensors, one at
        a time); refuses a different base model."""
        return adapter_io.load(cls, model, path, revision, base_weights=base_weights)

    def check_base(self, raw: dict[str, Any], path: str | Path) -> None:
        """Refuse an adapter config made for other parameter names, shapes or base weights than the wrapped model's."""
        saved = [[n, list(s)] for n, s in raw["projected"]]
        if saved != [[n, list(s)] for n, s in zip(self._names, self._shapes)]:
            raise AdapterError(
                f"adapter at {path} was made for a model with other parameters (names or shapes differ); "
                f"it expects base model {raw['base_model_name']!r}"
            )
        if raw.get("base_quant_fingerprint") != self._quant_fingerprint:
            raise AdapterError(
                f"adapter at {path} was trained on a base quantised as {raw.get('base_quant') or 'none'} but this model's is "
                f"{self.subspace_config.base_quant or 'none'}, or the int8 codes differ: wrap the base with the adapter's "
                "base_quant (SubspaceModel.from_pretrained does) and the library version that made it"
            )
        if self._fingerprint != raw["base_fingerprint"]:
            raise AdapterError(
                f"adapter at {path} was trained on different base weights (fingerprint mismatch): load the exact "
                f"base model {raw['base_model_name']!r} it was made for, with the same head initialisation"
            )

    def load_tensors(self, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
        """Copy an adapter file's tensors into z, lambda and the directly trained tensors, after checking their names,
        shapes and that every weight they give stays in its dtype's safe range (nothing is changed on a refusal)."""
        expected = self.adapter_tensors()
        if set(tensors) != set(expected):
            raise AdapterError(f"adapter at {path} holds tensors {sorted(tensors)}, expected {sorted(expected)}")
        for k, target in expected.items():
            if tensors[k].shape != target.shape:
                raise AdapterError(f"adapter tensor {k} at {path} has shape {tuple(tensors[k].shape)}, expected {tuple(target.shape)}")
            if k.startswith("direct.") and tensors[k].dtype != target.dtype:
                raise AdapterError(f"adapter tensor {k} at {path} is {tensors[k].dtype}, but the model's is {target.dtype}")
        lam = tensors["lambda"].to(self.lam.dtype) if self.lam is not None else None
        self.check_weights(tensors["z"].to(self.z.dtype), lam, {k[7:]: v for k, v in tensors.items() if k.startswith("direct.")},
                           f"adapter at {path}")
        with torch.no_grad():
            for k, target in expected.items():
                target.copy_(tensors[k])
        self._source = (str(path), self._versions())

    def check_weights(self, z: torch.Tensor, lam: torch.Tensor | None, direct: dict[str, torch.Tensor], where: str) -> None:
        """Refuse (AdapterError) a z, lambda or directly trained tensor that gives a weight beyond its dtype's safe range:
        finite, and no larger than sqrt(the dtype's largest value) (so a product of two such values stays finite) or
        than the base tensor's own largest value; checked tensor by tensor, O(largest tensor) memory."""
        params = dict(self.base.named_parameters())
        with torch.no_grad():
            for i, (name, theta0) in enumerate(zip(self._names, self._theta0)):
                check_range(name, self._effective(i, theta0, z, lam), self._base(i, theta0), where, "after adding P(z)")
            for name, t in direct.items():
                check_range(name, t, params[name], where, "as stored")

    def unwrap(self) -> None:
        """Remove the parametrizations and give the parameters their requires_grad flags back (a quantised base its
        dequantised values, in the dtype it had)."""
        for owners in self._owners:
            for module, pname in owners:
                parametrize.remove_parametrizations(module, pname, leave_parametrized=False)
        for i in self._quantised:
            self._theta0[i].data = self._base(i, self._theta0[i])
        params = dict(self.base.named_parameters())
        for name, flag in self._requires_grad.items():
            params[name].requires_grad_(flag)
        self._merged = True

    def unload(self) -> nn.Module:
        """The wrapped model as it was before wrapping (the inverse of ``SubspaceModel(model)``): parametrizations removed,
        theta0 and each parameter's requires_grad given back; z is dropped (directly trained tensors keep their training)."""
        self.unwrap()
        return self.base

    def merge_and_unload(self) -> nn.Module:
        """Write theta0 + update into the wrapped model and return it as a plain module."""
        self.check_weights(self.z, self.lam, {}, f"merging the adapter at {self._source[0]}" if self._source else "merging")
        with torch.no_grad():
            for i, theta0 in enumerate(self._theta0):  # tensor by tensor: O(largest tensor) extra memory
                if theta0.dtype == torch.int8:
                    theta0.data = self._effective(i, theta0, self.z, self.lam)
                else:
                    theta0.copy_(self._effective(i, theta0, self.z, self.lam))
        self.unwrap()
        return self.base
