"""``transformers.Trainer`` integration: a callback that logs the subspace's statistics and writes
the adapter into every checkpoint (docs/ecosystem.md).

The Trainer itself needs nothing from here to train a :class:`SubspaceModel`: the model exposes the
wrapped model's forward signature and its ``state_dict`` holds only the trained numbers.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from intrinsic_dim.adapter import AdapterError
from intrinsic_dim.subspace import SubspaceModel


def subspace_stats(sm: SubspaceModel) -> dict[str, float]:
    """d, the norm of z and, for SAID, the mean / min / max / standard deviation of lambda."""
    with torch.no_grad():
        stats = {"subspace/d": float(sm.d), "subspace/z_norm": sm.z.detach().norm().item()}
        if sm.lam is not None:
            lam = sm.lam.detach().float()
            stats |= {"subspace/lambda_mean": lam.mean().item(), "subspace/lambda_min": lam.min().item(),
                      "subspace/lambda_max": lam.max().item(), "subspace/lambda_std": lam.std(unbiased=False).item()}
    return stats


def _base_of(sm: SubspaceModel) -> dict[str, str]:
    """The base model's identity as an adapter records it: its name and the fingerprint of its weights."""
    config = sm.adapter_config()
    return {"base_model_name": config["base_model_name"], "base_fingerprint": config["base_fingerprint"]}


class SubspaceCallback(TrainerCallback, ExportableState):
    """Adds :func:`subspace_stats` to every log entry (``trainer_state.json``'s ``log_history`` and the
    callbacks after this one), and saves the adapter (``adapter_config.json``,
    ``adapter_model.safetensors``, ``README.md``) into every checkpoint folder, with ``metadata``.
    Every checkpoint's ``trainer_state.json`` records the base model's fingerprint, and training resumed from a
    checkpoint of another base model (whose z would silently move other weights) is refused at its start."""

    def __init__(self, metadata: dict[str, Any] | None = None, save_adapter: bool = True) -> None:
        self.metadata = metadata or {}
        self.save_adapter = save_adapter
        self.base: dict[str, str] | None = None

    def state(self) -> dict[str, Any]:
        """What a checkpoint's ``trainer_state.json`` keeps of this callback: its arguments and the base it trained."""
        return {"args": {"metadata": self.metadata, "save_adapter": self.save_adapter}, "attributes": {"base": self.base}}

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: Any = None, **kwargs: Any) -> None:
        """Refuse to resume from a checkpoint whose adapter was trained on other base weights than the model's."""
        ours = _base_of(self._subspace(model))
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        for record in saved if isinstance(saved, list) else [saved]:
            theirs = ((record or {}).get("attributes") or {}).get("base")
            if state.global_step > 0 and theirs and theirs.get("base_fingerprint") != ours["base_fingerprint"]:
                raise AdapterError(
                    f"the checkpoint being resumed (step {state.global_step}) was trained on base model "
                    f"{theirs.get('base_model_name')!r} with other weights than this Trainer's model {ours['base_model_name']!r} "
                    f"(base fingerprint {str(theirs.get('base_fingerprint'))[:12]}... against {ours['base_fingerprint'][:12]}...): "
                    "resume with the exact base model and head initialisation it was trained from, or train without "
                    "resume_from_checkpoint")
        self.base = ours

    @staticmethod
    def _subspace(model: Any) -> SubspaceModel:
        if not isinstance(model, SubspaceModel):
            raise TypeError(f"SubspaceCallback needs a Trainer whose model is a SubspaceModel, got {type(model).__name__}")
        return model

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, model: Any = None, **kwargs: Any) -> None:
        """Add the subspace statistics to ``logs`` and to the log-history entry just made from it."""
        stats = subspace_stats(self._subspace(model))
        if logs is not None:
            logs.update(stats)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(stats)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                model: Any = None, **kwargs: Any) -> None:
        """Write the adapter into the checkpoint folder the Trainer has just saved."""
        if self.save_adapter and args.should_save:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            self._subspace(model).save_pretrained(folder, self.metadata | {"step": state.global_step})
