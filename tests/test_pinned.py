"""P(z) is pinned: values computed by intrinsic-dim 0.1.0 (before per-tensor just-in-time projection)
for several shapes, seeds, projections, layouts, DID and SAID, on the native and the pure-torch kernels.
Adapters and result stores made before must keep meaning the same weights."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import intrinsic_dim as idim
from intrinsic_dim.kernels import native

DATA = Path(__file__).parent / "data"
PINNED = json.loads((DATA / "pinned_projection.json").read_text())
SHAPES = {"a": [(7, 5), (3,), (64, 33), (1,), (130,)], "b": [(300, 40), (40,), (10, 10)]}
OLD_ADAPTER_OUTPUT = [[0.5446463823318481, 0.40360262989997864, 0.21051451563835144],
                      [0.39186719059944153, 0.39525818824768066, 0.6138150691986084]]


def _hash(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()[:16]


def _model(shapes):
    torch.manual_seed(0)
    m = nn.Module()
    for i, s in enumerate(shapes):
        m.register_parameter(f"p{i}", nn.Parameter(torch.randn(*s)))
    return m


@pytest.mark.parametrize("kernel", ["native", "torch"])
def test_effective_weights_are_bit_identical_to_0_1_0(kernel, monkeypatch):
    if kernel == "native" and native.load() is None:
        pytest.skip("native kernel unavailable")
    monkeypatch.setenv("INTRINSIC_DIM_KERNEL", kernel)
    for case, expected in PINNED[kernel].items():
        key, proj, layout, method, seed = case.split("/")
        sm = idim.SubspaceModel(_model(SHAPES[key]), d=20, projection=proj, said=method == "said", seed=int(seed), layout=layout)
        g = torch.Generator().manual_seed(int(seed) + 1)
        with torch.no_grad():
            sm.z.copy_(torch.randn(sm.z.shape, generator=g))
            if sm.said:
                sm.lam.copy_(1 + 0.1 * torch.randn(sm.lam.shape, generator=g))
            eff = sm.effective_parameters()
        assert _hash(torch.cat([eff[n].reshape(-1) for n in eff])) == expected, case


def test_adapter_written_by_0_1_0_loads_and_gives_the_same_outputs():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    with pytest.warns(UserWarning, match="format version 1"):  # no config checksum in 0.1.0
        sm = idim.SubspaceModel.from_pretrained(m, DATA / "adapter_v0_1_0")
    assert sm.subspace_config.said and sm.subspace_config.d == 12 and sm.subspace_config.seed == 4
    x = torch.linspace(-1, 1, 12).reshape(2, 6)
    assert torch.allclose(sm(x), torch.tensor(OLD_ADAPTER_OUTPUT), atol=1e-6)
