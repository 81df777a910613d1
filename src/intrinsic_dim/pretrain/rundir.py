"""A pre-training run directory: its checkpoints (saved, listed, described), its lock, its log."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from intrinsic_dim.pretrain.config import CHECKPOINT_DIR, PretrainConfig, PretrainError, STATE_FILE, non_embedding_params
from intrinsic_dim.pretrain.model import eval_loss


def checkpoints(out: str | Path) -> list[Path]:
    """The finished ``checkpoint-<step>`` folders of a run directory, by step."""
    found = [(int(m.group(1)), p) for p in Path(out).glob("checkpoint-*") if (m := CHECKPOINT_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def checkpoint_info(path: str | Path) -> dict[str, Any] | None:
    """What a pre-training checkpoint folder records (step, tokens, train_loss, eval_loss = held-out MLM loss,
    params, non_embedding_params), or None for a folder or model name that is not one."""
    state = Path(path) / "trainer_state.json"
    if not state.is_file():
        return None
    info = json.loads(state.read_text())
    keys = ("step", "tokens", "train_loss", "eval_loss", "params", "non_embedding_params")
    return {k: info.get(k) for k in keys} if isinstance(info, dict) and "step" in info else None


def check_run_dir(out: Path, cfg: PretrainConfig) -> None:
    """Refuse a run directory holding checkpoints of other options; options recorded by a start that failed before its
    first checkpoint bind nothing (they are rewritten), so the corrected command runs in the same directory."""
    saved = out / "pretrain_config.json"
    if saved.is_file() and checkpoints(out):
        old = json.loads(saved.read_text())
        diff = sorted(k for k in set(old) | set(cfg.identity()) if old.get(k) != cfg.identity().get(k))
        if diff:
            raise PretrainError(
                f"{out} holds a pre-training run with other options ({', '.join(f'{k}: {old.get(k)!r}' for k in diff)}); "
                "rerun with the same options to resume it, or give a new --out"
            )
    elif checkpoints(out):
        raise PretrainError(f"{out} holds checkpoints but no pretrain_config.json; give a new --out")


def lock_run_dir(out: Path) -> Any:
    """The run directory's single-writer lock (dropped by the kernel if this process dies)."""
    from intrinsic_dim.store import LOCK_NAME, RunDirError, RunLock

    try:
        return RunLock(out)
    except RunDirError:
        holder = (out / LOCK_NAME).read_text().strip() if (out / LOCK_NAME).is_file() else ""
        raise PretrainError(f"{out} is in use by {holder or 'another process'}: wait for it to finish, or give another --out") from None


def save_checkpoint(out: Path, step: int, model: nn.Module, tokenizer: Any, state: dict[str, Any], info: dict[str, Any]) -> Path:
    """Write checkpoint-<step> atomically (a temporary folder renamed), then drop older training states."""
    final = out / f"checkpoint-{step}"
    tmp = out / f".checkpoint-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "trainer_state.json").write_text(json.dumps(info, indent=2) + "\n")
    torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for older in checkpoints(out):
        if older != final:
            (older / STATE_FILE).unlink(missing_ok=True)
    return final


def read_log(path: Path, upto: int | None = None) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if upto is None or int(r["step"]) <= upto]


LOG_FIELDS = ["step", "loss", "lr", "tokens", "seconds"]
