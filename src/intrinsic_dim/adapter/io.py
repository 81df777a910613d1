"""Saving and loading a subspace model's adapter: the files, the model card and the Hub, on any object
that offers the engine's adapter methods (``adapter_config``, ``adapter_tensors``, ``check_base``,
``load_tensors``, ``unwrap``), so that this layer never imports the engine."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from intrinsic_dim.adapter.card import model_card, pipeline_tag_of
from intrinsic_dim.adapter.format import CONFIG_NAME, AdapterError, open_adapter, read_config, read_weights, write_adapter
from intrinsic_dim.adapter.hub import CARD_NAME, resolve_adapter, upload_folder
from intrinsic_dim.config import SubspaceConfig


class AdapterHolder(Protocol):
    """What saving and loading need of a subspace model."""

    def adapter_config(self) -> dict[str, Any]: ...

    def adapter_tensors(self) -> dict[str, torch.Tensor]: ...

    def check_base(self, raw: dict[str, Any], path: str | Path) -> None: ...

    def load_tensors(self, tensors: dict[str, torch.Tensor], path: str | Path) -> None: ...

    def unwrap(self) -> None: ...


H = TypeVar("H", bound=AdapterHolder)


def save(holder: AdapterHolder, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write the adapter files and the README.md model card of ``holder`` into ``path``."""
    config = holder.adapter_config() | {"metadata": metadata or {}}
    out = write_adapter(path, config, holder.adapter_tensors())
    (out / CARD_NAME).write_text(model_card(config, pipeline_tag_of(getattr(holder, "base", None))))
    return out


def push(holder: AdapterHolder, repo_id: str, metadata: dict[str, Any] | None = None, private: bool | None = None,
         token: str | None = None, commit_message: str = "Upload intrinsic-dim adapter") -> str:
    """Save the adapter into a temporary folder and upload it to the Hub repository ``repo_id``; the commit URL."""
    with tempfile.TemporaryDirectory(prefix="intrinsic-dim-push-") as tmp:
        save(holder, tmp, metadata)
        return upload_folder(tmp, repo_id, private=private, token=token, commit_message=commit_message)


def load(cls: type[H], model: nn.Module, path: str | Path, revision: str | None = None, **options: Any) -> H:
    """``cls(model, config, **options)`` with the adapter at the folder or Hub repo id ``path`` loaded into it; a
    different base model or a corrupt file is refused and ``model`` is left unwrapped."""
    path = resolve_adapter(path, revision)
    raw, shapes = open_adapter(path)
    try:
        holder = cls(model, SubspaceConfig.from_dict(raw), **options)  # type: ignore[call-arg]
    except (KeyError, ValueError, TypeError) as e:
        raise AdapterError(f"adapter at {path} does not fit this model: {e}") from e
    try:
        holder.check_base(raw, path)
        direct = {k: (tuple(t.shape), t.dtype) for k, t in holder.adapter_tensors().items() if k.startswith("direct.")}
        holder.load_tensors(read_weights(path, raw, shapes, direct), path)
    except AdapterError:
        holder.unwrap()
        raise
    return holder


def load_config(path: str | Path) -> SubspaceConfig:
    """The SubspaceConfig of the adapter saved in directory ``path`` (or of that JSON file), verified."""
    p = Path(path)
    return SubspaceConfig.from_dict(read_config(p / CONFIG_NAME if p.is_dir() else p))
