"""Adapters that are finite but absurd, and weights files far larger than their config implies, are refused."""

from __future__ import annotations

import hashlib
import json
import resource
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, save
from torch import nn
from torch.nn.utils import parametrize

import intrinsic_dim as idim
from intrinsic_dim.adapter import CONFIG_NAME, WEIGHTS_NAME, config_checksum, read_adapter

X = torch.linspace(-1, 1, 12).reshape(2, 6)


def _mlp(depth: int = 2) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(6, 6) for _ in range(depth)]
    return nn.Sequential(*layers, nn.Linear(6, 3))


def _saved(tmp_path: Path, depth: int = 2, direct: str | None = r"^2\.bias") -> tuple[Path, dict]:
    sm = idim.SubspaceModel(_mlp(depth), d=12, seed=4, train_directly=direct)
    with torch.no_grad():
        sm.z.normal_(generator=torch.Generator().manual_seed(1))
    path = sm.save_pretrained(tmp_path / "adapter")
    return path, json.loads((path / CONFIG_NAME).read_text())


def _resign(path: Path, tensors: dict[str, torch.Tensor] | None = None, weights: bytes | None = None) -> None:
    """Rewrite the weights (given as tensors or bytes) and recompute both checksums, as a deliberate edit would."""
    data = weights if weights is not None else save(tensors)
    (path / WEIGHTS_NAME).write_bytes(data)
    config = json.loads((path / CONFIG_NAME).read_text()) | {"weights_sha256": hashlib.sha256(data).hexdigest()}
    config["config_sha256"] = config_checksum(config)
    (path / CONFIG_NAME).write_text(json.dumps(config))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("edit", ["z", "direct"])
def test_a_finite_but_huge_adapter_is_refused_on_load_and_the_model_left_as_it_was(tmp_path, edit):
    path, _ = _saved(tmp_path)
    tensors = load((path / WEIGHTS_NAME).read_bytes())
    key = "z" if edit == "z" else "direct.2.bias"
    _resign(path, tensors | {key: tensors[key] * 1e30})
    assert bool(torch.isfinite(load((path / WEIGHTS_NAME).read_bytes())[key]).all())
    model = _mlp()
    before = _state(model)
    with pytest.raises(idim.AdapterError, match=rf"adapter at {path}: .* beyond the safe range \+-1.84e\+19 of torch.float32"):
        idim.SubspaceModel.from_pretrained(model, path)
    assert all(torch.equal(v, before[k]) for k, v in _state(model).items())
    assert not any(parametrize.is_parametrized(m) for m in model.modules())


def test_merging_a_huge_z_is_refused_before_any_weight_is_written(tmp_path):
    model = _mlp()
    before = _state(model)
    sm = idim.SubspaceModel(model, d=12, seed=4)
    with torch.no_grad():
        sm.z.fill_(1e30)
    with pytest.raises(idim.AdapterError, match="merging: .* after adding P\\(z\\), beyond the safe range"):
        sm.merge_and_unload()
    sm.unwrap()
    assert all(torch.equal(v, before[k]) for k, v in _state(model).items())


def test_an_adapter_in_range_whose_outputs_are_not_finite_is_refused_at_first_use(tmp_path):
    path, _ = _saved(tmp_path, depth=4, direct=None)
    sm = idim.SubspaceModel.from_pretrained(_mlp(4), path)
    scale = 1e16 / max(float(w.detach().abs().max()) for w in sm.effective_parameters().values())
    _resign(path, {"z": sm.z.detach() * scale})
    sm = idim.SubspaceModel.from_pretrained(_mlp(4), path)  # every weight within +-1.8e19: loads
    with pytest.raises(idim.AdapterError, match=f"adapter at {path} makes the model output NaN or infinite values"):
        sm(X)
    with torch.no_grad():
        sm.z.mul_(1e-20)  # changed since loading (as training does): no longer the file's adapter, not checked
    assert torch.isfinite(sm(X)).all()


def test_a_weights_file_with_bytes_appended_is_refused_before_it_is_read(tmp_path):
    path, _ = _saved(tmp_path)
    with open(path / WEIGHTS_NAME, "r+b") as f:
        f.truncate(3 << 30)  # sparse: 3 GiB on paper, nothing on disk
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(idim.AdapterError, match=rf"{path / WEIGHTS_NAME} is 3,221,225,472 bytes, but its header describes \d+"):
        read_adapter(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 100_000  # KiB: the file was never read


def _with_huge_direct(path: Path) -> None:
    """The weights file re-headed to declare a 1 GiB direct.2.bias, made that long (sparse), not re-signed."""
    data = (path / WEIGHTS_NAME).read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    header["direct.2.bias"] = {"dtype": "F32", "shape": [1 << 28], "data_offsets": [len(body), len(body) + (1 << 30)]}
    text = json.dumps(header).encode()
    (path / WEIGHTS_NAME).write_bytes(len(text).to_bytes(8, "little") + text + body)
    with open(path / WEIGHTS_NAME, "r+b") as f:
        f.truncate(8 + len(text) + len(body) + (1 << 30))


def test_a_huge_declared_tensor_is_refused_by_size_with_the_model_and_by_a_chunked_checksum_without(tmp_path):
    path, _ = _saved(tmp_path)
    _with_huge_direct(path)
    with pytest.raises(idim.AdapterError, match=r"direct.2.bias takes 1,073,741,824 bytes, but the model's 2.bias is \(3,\)"):
        idim.SubspaceModel.from_pretrained(_mlp(), path)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(idim.AdapterError, match="does not match the checksum"):
        read_adapter(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 100_000


def test_a_z_declared_larger_than_the_config_allows_is_refused_from_the_header(tmp_path):
    path, _ = _saved(tmp_path, direct=None)
    _resign(path, {"z": torch.zeros(10_000)})
    with pytest.raises(idim.AdapterError, match=r"z takes 40,000 bytes, more than 12 float64 values"):
        read_adapter(path)
