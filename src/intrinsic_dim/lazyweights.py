"""Base weights read one tensor at a time into a model whose parameters were built on the meta device.

A 7B model in bf16 is 12.6 GiB; quantised to int8 it is 6.3 GiB. Building it whole and then quantising
needs the first figure. Built with its parameters on the meta device (``accelerate.init_empty_weights()``,
which leaves buffers real) and read from a mapping name -> tensor one parameter at a time, the model is
never whole in its stored dtype: ``SubspaceModel(model, base_quant="int8", base_weights=...)`` reads,
fingerprints and quantises each tensor before reading the next. :class:`SafetensorsWeights` is such a
mapping over a folder of ``*.safetensors`` files (a Hugging Face checkpoint), reading nothing until asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Mapping

import torch
from torch import nn


class SafetensorsWeights(Mapping[str, torch.Tensor]):
    """The tensors of every ``*.safetensors`` file in a folder (or of one file), by name, each read from disk only
    when looked up (safetensors maps the file; nothing is unpickled)."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu") -> None:
        from safetensors import safe_open

        path = Path(path)
        files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
        if not files or not all(f.is_file() for f in files):
            raise FileNotFoundError(f"no .safetensors file at {path}: give a checkpoint folder holding model*.safetensors or one such file")
        self._device = str(device)
        self._files = {f: safe_open(str(f), framework="pt", device=self._device) for f in files}
        self._where: dict[str, Path] = {}
        for f, handle in self._files.items():
            for name in handle.keys():
                if name in self._where:
                    raise ValueError(f"tensor {name!r} is in both {self._where[name].name} and {f.name}: give one checkpoint's files")
                self._where[name] = f

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._files[self._where[name]].get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __repr__(self) -> str:
        return f"SafetensorsWeights({len(self)} tensors in {json.dumps([f.name for f in self._files])}, device={self._device!r})"


def unread(model: nn.Module) -> list[str]:
    """Names of the model's parameters still on the meta device (tied ones once)."""
    return [name for name, p in model.named_parameters() if p.is_meta]


def check_readable(model: nn.Module, weights: Mapping[str, torch.Tensor] | None) -> list[str]:
    """The meta parameters ``weights`` will give, after refusing (ValueError, before anything is read) a model with meta
    buffers, meta parameters and no weights, or names the weights do not hold."""
    names = unread(model)
    buffers = [name for name, b in model.named_buffers() if b.is_meta]
    if buffers:
        raise ValueError(f"buffers {buffers[:3]} are on the meta device: build the model with accelerate.init_empty_weights() "
                         "(it leaves buffers real), or materialise them before wrapping")
    if names and weights is None:
        raise ValueError(f"parameters {names[:3]} are on the meta device and no base_weights were given to read them from")
    missing = [n for n in names if n not in weights] if names else []
    if missing:
        raise ValueError(f"base_weights hold no tensor for parameters {missing[:5]}{' ...' if len(missing) > 5 else ''}: give the "
                         "checkpoint this model's architecture was built from (names as model.named_parameters() gives them)")
    return names


def read_into(p: nn.Parameter, name: str, weights: Mapping[str, torch.Tensor]) -> None:
    """Give the meta parameter ``p`` (the same object, so every module holding it sees the values) the tensor
    ``weights[name]`` in ``p``'s dtype; refuses a shape that differs."""
    t = weights[name]
    if tuple(t.shape) != tuple(p.shape):
        raise ValueError(f"base_weights[{name!r}] has shape {tuple(t.shape)}, the model's parameter {tuple(p.shape)}: "
                         "give the checkpoint of this architecture")
    torch.utils.swap_tensors(p, nn.Parameter(t.to(p.dtype), requires_grad=p.requires_grad))
