"""The stock transformers.Trainer on a SubspaceModel: no subclass, d-sized optimizer state, adapter
checkpoints, exact resume and the SubspaceCallback's statistics (a tiny BERT built from a config)."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import intrinsic_dim as idim

transformers = pytest.importorskip("transformers")
from transformers import Trainer, TrainingArguments  # noqa: E402
from transformers.utils.generic import find_labels  # noqa: E402

from intrinsic_dim.hf import SubspaceCallback  # noqa: E402

D_SUB = 60
README = Path(__file__).parents[1] / "README.md"


@pytest.fixture
def accelerate():
    """The Trainer needs accelerate (the `hf` and `test` extras install it)."""
    return pytest.importorskip("accelerate")


def _bert() -> nn.Module:
    """The same small BERT classifier (~90k parameters) on every call (a config, no download)."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=2000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32, num_labels=3)
    return transformers.BertForSequenceClassification(cfg)


def _data(n: int = 16) -> list[dict]:
    """Examples as a tokenised dataset holds them, with a text column the model does not take."""
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(0, 120, (9,), generator=g), "attention_mask": torch.ones(9, dtype=torch.long),
             "label": i % 3, "text": f"example {i}"} for i in range(n)]


def _trainer(out: Path, callbacks=None, base: nn.Module | None = None, **options) -> Trainer:
    sm = idim.SubspaceModel(base or _bert(), d=D_SUB, said=True, seed=3)
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=4, max_steps=4, save_steps=2,
                             logging_steps=1, learning_rate=0.1, report_to=[], use_cpu=True, seed=7,
                             disable_tqdm=True, **options)
    return Trainer(model=sm, args=args, train_dataset=_data(), eval_dataset=_data(8), callbacks=callbacks)


def test_wrapper_shows_the_wrapped_models_signature_and_labels(tiny_bert, make_tiny_bert, tmp_path):
    sm = idim.SubspaceModel(tiny_bert, d=50)
    assert inspect.signature(sm.forward) == inspect.signature(tiny_bert.forward)
    assert find_labels(type(sm)) == ["labels"] and isinstance(sm, idim.SubspaceModel)
    assert type(sm).__name__ == "SubspaceModel[BertForSequenceClassification]"
    sm.save_pretrained(tmp_path)
    assert type(type(sm).from_pretrained(make_tiny_bert(), tmp_path)) is type(sm)
    mlp = nn.Sequential(nn.Linear(3, 4))
    assert list(inspect.signature(idim.SubspaceModel(mlp, d=5).forward).parameters) == ["input"]


def test_state_dict_holds_only_trained_tensors_and_loads_back(tiny_bert, tiny_batch, make_tiny_bert):
    sm = idim.SubspaceModel(tiny_bert, d=50, said=True, train_directly=[r"^classifier\."])
    assert set(sm.state_dict()) == {"z", "lam", "base.classifier.weight", "base.classifier.bias"}
    with torch.no_grad():
        sm.z.normal_()
        sm.lam.mul_(1.5)
    saved = {k: v.clone() for k, v in sm.state_dict().items()}
    out = sm(**tiny_batch).logits
    other = idim.SubspaceModel(make_tiny_bert(), d=50, said=True, train_directly=[r"^classifier\."])
    other.load_state_dict(saved)
    assert torch.equal(other(**tiny_batch).logits, out)
    with pytest.raises(RuntimeError, match="missing keys \\['z'\\]"):
        other.load_state_dict({k: v for k, v in saved.items() if k != "z"})
    nested = nn.ModuleDict({"sub": sm}).state_dict()
    assert set(nested) == {f"sub.{k}" for k in saved} and "sub.base.bert.encoder.layer.0.attention" in nested._metadata


def test_stock_trainer_trains_z_only_and_checkpoints_the_adapter(accelerate, tmp_path):
    trainer = _trainer(tmp_path / "run", callbacks=[SubspaceCallback({"task": "toy", "base_model": "org/tiny-bert"})])
    sm = trainer.model
    theta0 = {n: p.detach().clone() for n, p in sm.base.named_parameters()}
    trainer.train()
    assert sm.z.abs().sum() > 0
    assert all(torch.equal(p, theta0[n]) for n, p in sm.base.named_parameters())
    # the optimizer has z and lambda only, and its state is d-sized (Adam: two moments per number)
    opt_params = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in opt_params} == {id(sm.z), id(sm.lam)}
    moments = sum(v.numel() for s in trainer.optimizer.state.values() for v in s.values() if v.dim() > 0)
    assert moments == 2 * D_SUB
    ckpt = tmp_path / "run" / "checkpoint-2"
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "model.safetensors", "optimizer.pt"):
        assert (ckpt / name).is_file(), name
    model_bytes = sum(p.numel() * p.element_size() for p in sm.base.parameters())
    for name in ("model.safetensors", "adapter_model.safetensors"):
        assert (ckpt / name).stat().st_size < 2048 < model_bytes / 100, name
    assert (ckpt / "optimizer.pt").stat().st_size < 8192
    # the checkpoint's adapter is the model at step 2, and loads on a fresh copy of the base model
    from safetensors.torch import load_file

    z2 = load_file(str(ckpt / "model.safetensors"))["z"]
    assert torch.equal(idim.SubspaceModel.from_pretrained(_bert(), ckpt).z, z2)
    card = (ckpt / "README.md").read_text()
    assert "base_model: org/tiny-bert" in card and "base_model_relation: adapter" in card
    # the callback's statistics, in every training log entry
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert len(logged) == 4 and all(e["subspace/d"] == D_SUB for e in logged)
    assert logged[-1]["subspace/z_norm"] == pytest.approx(sm.z.norm().item())
    assert logged[-1]["subspace/lambda_min"] <= logged[-1]["subspace/lambda_mean"] <= logged[-1]["subspace/lambda_max"]
    state = json.loads((tmp_path / "run" / "checkpoint-4" / "trainer_state.json").read_text())
    assert "subspace/z_norm" in state["log_history"][-1]


def test_resume_from_a_trainer_checkpoint_is_bit_identical(accelerate, tmp_path):
    straight = _trainer(tmp_path / "a")
    straight.train()
    resumed = _trainer(tmp_path / "b")
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    assert resumed.state.global_step == 4
    assert torch.equal(resumed.model.z, straight.model.z) and torch.equal(resumed.model.lam, straight.model.lam)
    assert not torch.equal(straight.model.z, _checkpoint_z(tmp_path / "a" / "checkpoint-2"))


def test_resuming_onto_other_base_weights_is_refused_before_any_step(accelerate, tmp_path):
    _trainer(tmp_path / "a", callbacks=[SubspaceCallback()]).train()
    checkpoint = str(tmp_path / "a" / "checkpoint-2")
    same = _trainer(tmp_path / "b", callbacks=[SubspaceCallback()])
    same.train(resume_from_checkpoint=checkpoint)  # the same base: resumes
    assert same.state.global_step == 4
    other = _bert()
    with torch.no_grad():
        other.classifier.bias.add_(0.01)  # another head, as another seed would give: z would move other weights
    refused = _trainer(tmp_path / "c", callbacks=[SubspaceCallback()], base=other)
    with pytest.raises(idim.AdapterError, match="with other weights than this Trainer's model .*resume with the exact base model"):
        refused.train(resume_from_checkpoint=checkpoint)
    assert refused.state.global_step == 2 and not list((tmp_path / "c").glob("checkpoint-*"))


def test_evaluation_finds_the_labels_and_the_best_checkpoint_loads_back(accelerate, tmp_path):
    scores = iter([1.0, 0.0])  # the step-2 checkpoint is the best: loading it at the end changes z

    def metrics(p) -> dict[str, float]:
        assert p.label_ids is not None and len(p.label_ids) == 8  # found through the wrapped model's label names
        return {"score": next(scores)}

    trainer = _trainer(tmp_path / "run", eval_strategy="steps", eval_steps=2, load_best_model_at_end=True,
                       metric_for_best_model="score")
    trainer.compute_metrics = metrics
    trainer.train()
    assert len([e for e in trainer.state.log_history if "eval_loss" in e]) == 2
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-2")
    assert torch.equal(trainer.model.z, _checkpoint_z(tmp_path / "run" / "checkpoint-2"))
    assert not torch.equal(trainer.model.z, _checkpoint_z(tmp_path / "run" / "checkpoint-4"))


def _checkpoint_z(folder: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))["z"]


def test_readme_trainer_example_runs(accelerate, tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(r"### With the Hugging Face Trainer\n.*?```python\n(.*?)```", text, re.S)
    assert block, "README has no Trainer example"
    _bert().save_pretrained(tmp_path / "base")
    monkeypatch.chdir(tmp_path)
    scope = {"path": str(tmp_path / "base"), "train_ds": _data(32)}
    exec(compile(block.group(1), "README.md", "exec"), scope)
    assert (tmp_path / "adapter" / "README.md").is_file()
    assert scope["trainer"].state.global_step == 20
