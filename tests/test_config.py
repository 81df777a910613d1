"""SubspaceConfig: checks, round trips, the adapter body, old adapters; normalisation; dense cap."""

import json
import math

import pytest
import torch
from torch import nn

import intrinsic_dim as idim
from intrinsic_dim.adapter import load_config
from intrinsic_dim.config import SubspaceConfig
from intrinsic_dim.train import TrialConfig


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def test_round_trip_and_checks():
    cfg = SubspaceConfig(d=50, projection="fastfood", layout="per_tensor", normalisation="unit", said=True, groups="module",
                         seed=3, include="w", exclude=["b"], train_directly=None, dense_max_elements=10)
    assert cfg.include == ["w"]
    again = SubspaceConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    for bad, match in [(dict(d=0), "d must"), (dict(d=5, projection="x"), "unknown projection"),
                       (dict(d=5, layout="per_tensor", projection="dense"), "fastfood projection only"),
                       (dict(d=5, normalisation="x"), "normalisation"), (dict(d=5, groups="x"), "grouping"),
                       (dict(d=5, seed=-1), "seed"), (dict(d=5, dense_max_elements=0), "dense_max_elements")]:
        with pytest.raises(ValueError, match=match):
            SubspaceConfig(**bad)


def test_unknown_keys_warn_and_are_kept():
    with pytest.warns(UserWarning, match="unknown keys.*'shiny'"):
        cfg = SubspaceConfig.from_dict({"d": 5, "shiny": 1})
    assert cfg.extra == {"shiny": 1} and cfg.d == 5


def test_config_and_keyword_forms_agree_and_config_is_the_adapter_body(tmp_path):
    x = torch.randn(4, 6)
    a = idim.SubspaceModel(_mlp(), idim.SubspaceConfig(d=12, said=True, seed=2))
    b = idim.SubspaceModel(_mlp(), d=12, said=True, seed=2)
    with torch.no_grad():
        a.z.normal_()
        b.z.copy_(a.z)
    assert torch.equal(a(x), b(x))
    with pytest.raises(TypeError, match="not both"):
        idim.SubspaceModel(_mlp(), idim.SubspaceConfig(d=12), seed=1)
    a.save_pretrained(tmp_path)
    assert load_config(tmp_path) == a.subspace_config
    body = json.loads((tmp_path / "adapter_config.json").read_text())
    assert {k: body[k] for k in a.subspace_config.to_dict()} == a.subspace_config.to_dict()
    assert torch.equal(idim.SubspaceModel.from_pretrained(_mlp(), tmp_path)(x), a(x))


def test_old_adapter_config_reads_as_a_subspace_config():
    with pytest.warns(UserWarning, match="format version 1"):  # no config checksum in 0.1.0
        cfg = load_config("tests/data/adapter_v0_1_0")
    assert (cfg.d, cfg.said, cfg.seed, cfg.projection, cfg.layout) == (12, True, 4, "fastfood", "stacked")
    assert cfg.train_directly == ["^2\\.bias"] and isinstance(cfg.groups, dict)


def _column_norms2(P, sizes):
    cols = torch.stack([torch.cat([P.forward_part(e, i) for i in range(len(sizes))]) for e in torch.eye(P.d, dtype=torch.float64)])
    return cols.pow(2).sum(1)


@pytest.mark.parametrize("seed", [0, 1])
def test_per_tensor_normalisations_column_lengths(seed):
    sizes = [64, 128, 256, 512, 256, 64]  # powers of two >= d: each tensor's part of a column is exactly unit length
    released = idim.make_projection("fastfood", 32, sum(sizes), seed, layout="per_tensor", sizes=sizes)
    unit = idim.make_projection("fastfood", 32, sum(sizes), seed, layout="per_tensor", sizes=sizes, normalisation="unit")
    assert torch.allclose(_column_norms2(released, sizes), torch.full((32,), float(len(sizes)), dtype=torch.float64))
    assert torch.allclose(_column_norms2(unit, sizes), torch.ones(32, dtype=torch.float64))
    z = torch.randn(32)
    assert torch.allclose(unit(z) * math.sqrt(len(sizes)), released(z), atol=1e-6)
    default = idim.make_projection("fastfood", 32, sum(sizes), seed, layout="per_tensor", sizes=sizes)
    assert torch.equal(default(z), released(z))


def test_dense_cap_is_an_option_named_in_the_error():
    with pytest.raises(ValueError, match="dense_max_elements"):
        idim.SubspaceModel(_mlp(), d=20, projection="dense", dense_max_elements=100)
    assert idim.SubspaceModel(_mlp(), d=20, projection="dense", dense_max_elements=20 * 53).D == 53


def test_trial_config_keys_unchanged_at_the_new_defaults():
    assert "normalisation" not in TrialConfig(d=5).to_dict() and "dense_max_elements" not in TrialConfig(d=5).to_dict()
    assert TrialConfig(d=5, normalisation="unit").to_dict()["normalisation"] == "unit"
