"""SubspaceModel on the packaged MiniLM-L6 (22.7M parameters) and the packaged tweet data."""

import pytest
import torch

import intrinsic_dim as idim
from intrinsic_dim.models import load_model
from intrinsic_dim.tasks import load_task

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tweets():
    return load_task("tweet-sentiment", max_train=64, max_eval=32, seed=0)


def _batch(loaded, split, idx):
    return loaded.encode(split, idx)


def test_minilm_zero_z_exact_and_adapter_roundtrip(tweets, tmp_path):
    loaded = load_model("minilm-l6", tweets, seed=0, max_length=64)
    loaded.model.eval()
    batch = _batch(loaded, tweets.eval, range(8))
    ref = loaded.model(**batch).logits
    sm = idim.SubspaceModel(loaded.model, d=1000, said=True)
    assert sm.num_trainable() == 1000 and sm.D == 22_713_216 + 384 * 3 + 3
    assert torch.equal(sm(**batch).logits, ref)
    with torch.no_grad():
        sm.z.normal_(generator=torch.Generator().manual_seed(0))
        sm.lam.uniform_(0.5, 2.0)
    out = sm(**batch).logits
    assert not torch.allclose(out, ref)
    sm.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").stat().st_size < 8000
    fresh = load_model("minilm-l6", tweets, seed=0, max_length=64)
    fresh.model.eval()
    sm2 = idim.SubspaceModel.from_pretrained(fresh.model, tmp_path)
    assert torch.equal(sm2(**batch).logits, out)
    other_head = load_model("minilm-l6", tweets, seed=1, max_length=64)
    with pytest.raises(idim.AdapterError, match="fingerprint"):
        idim.SubspaceModel.from_pretrained(other_head.model, tmp_path)
    merged = sm2.merge_and_unload()
    assert torch.allclose(merged(**batch).logits, out, atol=1e-5)


def test_minilm_loss_falls_on_tweets_with_d_1000(tweets):
    torch.manual_seed(0)
    loaded = load_model("minilm-l6", tweets, seed=0, max_length=64)
    sm = idim.SubspaceModel(loaded.model, d=1000, said=True)
    train = tweets.train
    full = _batch(loaded, train, range(len(train)))

    def train_loss():
        sm.eval()
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(sm(**full).logits, train.labels).item()

    before = train_loss()
    opt = torch.optim.Adam(sm.trainable_parameters(), lr=0.1)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    sm.train()
    for step in range(16):
        idx = order[(step * 16) % 64 : (step * 16) % 64 + 16].tolist()
        loss = torch.nn.functional.cross_entropy(sm(**_batch(loaded, train, idx)).logits, train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = train_loss()
    print(f"train loss {before:.4f} -> {after:.4f}")
    assert after < 0.95 * before, (before, after)
