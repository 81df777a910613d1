"""Adapters in the ecosystem: the README.md model card, loading from a folder or a Hub repo id,
push_to_hub (the Hub itself is never reached: offline here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import intrinsic_dim as idim
from intrinsic_dim.adapter.card import model_card


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _trained(tiny_bert) -> idim.SubspaceModel:
    sm = idim.SubspaceModel(tiny_bert, d=50, said=True, seed=4)
    with torch.no_grad():
        sm.z.normal_()
    return sm


def test_every_saved_adapter_has_a_model_card(tiny_bert, tmp_path):
    meta = {"model": "minilm-l6", "task": "tweet-sentiment", "seed": 0, "metric": "accuracy", "validation": 0.61,
            "test": 0.6, "d90": 150, "d90_run": "runs/minilm-l6-tweet-sentiment-said"}
    out = _trained(tiny_bert).save_pretrained(tmp_path / "a", metadata=meta)
    card = (out / "README.md").read_text()
    front = _front_matter(card)
    assert front["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert front["base_model_relation"] == "adapter" and front["library_name"] == "intrinsic-dim"
    for text in ("SAID", "tweet-sentiment", "50", "accuracy: validation 0.6100, test 0.6000", "d90 = 150 (`runs/minilm-l6-tweet-sentiment-said`)",
                 "intrinsic-dim evaluate --adapter"):
        assert text in card, text
    assert "README.md" not in json.loads((out / "adapter_config.json").read_text())


def test_card_names_no_base_model_it_cannot_identify(tiny_bert, tmp_path, monkeypatch):
    config = _trained(tiny_bert).adapter_config() | {"metadata": {}}
    card = model_card(config)
    assert "base_model" not in _front_matter(card) and "not a Hub id" in card and "DID" not in card
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "base").mkdir(parents=True)  # a local folder shaped like a repo id
    assert _front_matter(model_card(config | {"base_model_name": "models/base"})).get("base_model") is None
    assert _front_matter(model_card(config | {"base_model_name": "google/bert_uncased_L-2_H-128_A-2"}))["base_model"] == (
        "google/bert_uncased_L-2_H-128_A-2")


def test_from_pretrained_reads_a_local_folder_and_refuses_an_unreachable_hub_id(tiny_bert, make_tiny_bert, tmp_path, monkeypatch):
    sm = _trained(tiny_bert)
    sm.save_pretrained(tmp_path / "adapter")
    assert torch.equal(idim.SubspaceModel.from_pretrained(make_tiny_bert(), str(tmp_path / "adapter")).z, sm.z)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(idim.AdapterError, match="could not be fetched.*Offline"):
        idim.SubspaceModel.from_pretrained(make_tiny_bert(), "intrinsic-dim-tests/no-such-adapter")
    with pytest.raises(idim.AdapterError, match="neither an existing folder nor a valid Hub repo id"):
        idim.SubspaceModel.from_pretrained(make_tiny_bert(), "no/such/adapter/folder")


def test_a_hub_repo_id_is_downloaded_then_read_like_a_folder(tiny_bert, make_tiny_bert, tmp_path, monkeypatch):
    import huggingface_hub

    sm = _trained(tiny_bert)
    sm.save_pretrained(tmp_path / "snapshot")
    asked = {}

    def fake_download(repo_id, revision=None, allow_patterns=None):
        asked.update(repo_id=repo_id, revision=revision, allow_patterns=allow_patterns)
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.chdir(tmp_path)
    loaded = idim.SubspaceModel.from_pretrained(make_tiny_bert(), "someone/adapter", revision="v1")
    assert torch.equal(loaded.z, sm.z)
    assert asked == {"repo_id": "someone/adapter", "revision": "v1",
                     "allow_patterns": ["adapter_config.json", "adapter_model.safetensors", "README.md"]}


def test_push_to_hub_uploads_the_adapter_folder_with_its_card(tiny_bert, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls.append(("create", repo_id, private, exist_ok))

        def upload_folder(self, repo_id, folder_path, commit_message):
            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir()), commit_message))
            return f"https://hub.example/{repo_id}/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = _trained(tiny_bert).push_to_hub("me/adapter", metadata={"task": "toy"}, private=True, token="t")
    assert url == "https://hub.example/me/adapter/commit/1"
    assert calls == [("token", "t"), ("create", "me/adapter", True, True),
                     ("upload", "me/adapter", ["README.md", "adapter_config.json", "adapter_model.safetensors"],
                      "Upload intrinsic-dim adapter")]


def _snippet(card: str, folder: Path) -> str:
    block = card.split("## Use\n\n```python\n")[1].split("```")[0]
    return block.replace('"FOLDER or owner/repo"', repr(str(folder)))


def test_the_cards_use_snippet_rebuilds_the_seeded_head_and_reproduces_the_adapter(tmp_path):
    from intrinsic_dim.models import load_model
    from intrinsic_dim.tasks import load_task

    task = load_task("tweet-sentiment", max_train=8, max_eval=4)
    loaded = load_model("bert-tiny-random", task, seed=5, max_length=16)  # its head (and here all of it) drawn from seed 5
    sm = idim.SubspaceModel(loaded.model, d=100, said=True, seed=2)
    with torch.no_grad():
        sm.z.normal_()
    meta = {"model": "bert-tiny-random", "task": "tweet-sentiment", "seed": 5, "max_length": 16}
    out = sm.save_pretrained(tmp_path / "adapter", metadata=meta)
    batch = loaded.encode(task.test, list(range(4)))
    expected = sm(**batch).logits
    scope: dict = {}
    exec(compile(_snippet((out / "README.md").read_text(), out), "README.md", "exec"), scope)
    assert torch.equal(scope["model"](**batch).logits, expected)
