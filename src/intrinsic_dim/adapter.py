"""Adapter files: ``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT layout).

The weights file holds only the trained numbers (z, lambda, directly trained tensors); the config
says how to rebuild the projection and carries a SHA-256 fingerprint of the frozen weights theta0
and of the weights file, so a different base model or a corrupt file is refused. Nothing is
unpickled.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT_VERSION = 1


class AdapterError(ValueError):
    """An adapter that cannot be used with this base model: missing, corrupt or mismatched."""


def fingerprint(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 over the names, shapes, dtypes and exact bytes of the given tensors."""
    h = hashlib.sha256()
    for name, t in named:
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}\n".encode())
        flat = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_adapter(path: str | Path, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    """Write the two adapter files into directory ``path`` (created if needed)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_NAME
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(weights))
    full = {"format_version": FORMAT_VERSION, **config, "weights_sha256": _file_sha256(weights)}
    (out / CONFIG_NAME).write_text(json.dumps(full, indent=2) + "\n")
    return out


def read_adapter(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read and verify an adapter directory; raises AdapterError saying what is wrong."""
    src = Path(path)
    cfg_path, weights = src / CONFIG_NAME, src / WEIGHTS_NAME
    for p in (cfg_path, weights):
        if not p.is_file():
            raise AdapterError(f"{p} is missing: an adapter directory holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AdapterError(f"{cfg_path} is not valid JSON ({e}); the adapter is corrupt, save it again") from e
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        raise AdapterError(f"{cfg_path} is not an intrinsic-dim adapter config of format version {FORMAT_VERSION}")
    if _file_sha256(weights) != config.get("weights_sha256"):
        raise AdapterError(
            f"{weights} does not match the checksum in {CONFIG_NAME}: the file is corrupt or truncated, "
            "or was replaced; save the adapter again"
        )
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise AdapterError(f"{weights} cannot be read as safetensors ({e})") from e
    return config, tensors
