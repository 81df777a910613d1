"""Size of a transformers.Trainer checkpoint of a SubspaceModel against the model's own weights.

    PYTHONPATH=src python benchmarks/trainer_checkpoint.py [--layers 4 --hidden 256 --d 1000]

A BERT classifier built from a config (no download; bert-mini's shape by default) is wrapped with
SAID, trained for 2 steps by the stock Trainer with SubspaceCallback, and checkpointed once; the
model's size is what ``save_pretrained`` writes for it (model.safetensors).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import intrinsic_dim as idim
from intrinsic_dim.hf import SubspaceCallback


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def main() -> None:
    """Train, checkpoint and print the sizes."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--d", type=int, default=1000)
    a = ap.parse_args()
    torch.manual_seed(0)
    cfg = BertConfig(num_hidden_layers=a.layers, hidden_size=a.hidden, num_attention_heads=max(1, a.hidden // 64),
                     intermediate_size=4 * a.hidden, num_labels=3)
    model = BertForSequenceClassification(cfg)
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": torch.randint(0, cfg.vocab_size, (16,), generator=g), "attention_mask": torch.ones(16, dtype=torch.long),
             "label": i % 3} for i in range(16)]
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(Path(tmp) / "model")
        model_bytes = (Path(tmp) / "model" / "model.safetensors").stat().st_size
        sm = idim.SubspaceModel(model, d=a.d, said=True, seed=0)
        args = TrainingArguments(output_dir=str(Path(tmp) / "run"), max_steps=2, save_steps=2, per_device_train_batch_size=8,
                                 learning_rate=0.1, report_to=[], use_cpu=True, disable_tqdm=True)
        Trainer(model=sm, args=args, train_dataset=data, callbacks=[SubspaceCallback()]).train()
        ckpt = Path(tmp) / "run" / "checkpoint-2"
        print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters; model.safetensors {model_bytes:,} bytes")
        for p in sorted(ckpt.iterdir()):
            print(f"  checkpoint-2/{p.name}: {p.stat().st_size:,} bytes")
        total = _size(ckpt)
        print(f"checkpoint folder {total:,} bytes = {total / model_bytes:.2e} x the model; "
              f"model.safetensors {(ckpt / 'model.safetensors').stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
