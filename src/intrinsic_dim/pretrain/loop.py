"""The pre-training loop: build or resume, train with checkpoints and the log, summarise; exact resume (see the package doc)."""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from intrinsic_dim.pretrain.config import EVAL_SEED, PretrainConfig, PretrainError, STATE_FILE, non_embedding_params
from intrinsic_dim.pretrain.corpus import load_tokenizer, mask_tokens, pack_blocks, read_corpus
from intrinsic_dim.pretrain.model import Blocks, Masking, build_model, eval_loss, make_optimizer, mlm_loss
from intrinsic_dim.pretrain.rundir import LOG_FIELDS, check_run_dir, checkpoints, lock_run_dir, read_log, save_checkpoint
from intrinsic_dim.report import plot_loss
from intrinsic_dim.tasks.base import seeded_order


def pretrain(cfg: PretrainConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) MLM pre-training as ``cfg`` says; returns the summary written to ``summary.json``."""
    out = Path(cfg.out)
    check_run_dir(out, cfg)
    for stale in out.glob(".checkpoint-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    made = [p for p in (out, out / "tokenizer") if not p.exists()] if not checkpoints(out) else []
    try:
        docs = read_corpus(cfg.corpus)
        tokenizer = load_tokenizer(cfg.tokenizer, docs, out / "tokenizer")
        tokenizer.model_max_length = cfg.max_length
        blocks = pack_blocks(docs, tokenizer, cfg.max_length)
        held = seeded_order(len(blocks), EVAL_SEED, 0)
        eval_blocks, train_blocks = blocks[held[: cfg.eval_blocks]], blocks[held[cfg.eval_blocks :]]
        if len(train_blocks) < cfg.batch_size:
            raise PretrainError(
                f"the corpus gives {len(train_blocks)} training blocks of {cfg.max_length} tokens (after {len(eval_blocks)} held out), "
                f"fewer than --batch-size {cfg.batch_size}; give more text, or lower --batch-size, --max-length or --eval-blocks"
            )
    except Exception:
        for p in made:  # a tokenizer trained on a corpus the corrected command may not use: nothing of a failed start is kept
            shutil.rmtree(p, ignore_errors=True)
        raise
    lock = lock_run_dir(out)
    (out / "pretrain_config.json").write_text(json.dumps(cfg.identity(), indent=2) + "\n")
    special = sorted(set(tokenizer.all_special_ids))

    def masking(batch: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return mask_tokens(batch, special, tokenizer.mask_token_id, len(tokenizer), gen, cfg.mask_prob)

    with lock, torch.random.fork_rng(devices=[]):
        return _train(cfg, out, tokenizer, Blocks(train_blocks, cfg.batch_size, cfg.seed), eval_blocks, masking, len(docs), progress, log)


def _train(
    cfg: PretrainConfig, out: Path, tokenizer: Any, data: Blocks, eval_blocks: torch.Tensor, masking: Masking, n_docs: int,
    progress: bool, log: Callable[[str], None],
) -> dict[str, Any]:
    from transformers import BertForMaskedLM

    torch.manual_seed(cfg.seed)
    mask_gen = torch.Generator().manual_seed(cfg.seed)
    resumable = [p for p in checkpoints(out) if (p / STATE_FILE).is_file()]
    if resumable:
        ckpt = resumable[-1]
        model = BertForMaskedLM.from_pretrained(ckpt)
        opt, sched = make_optimizer(model, cfg)
        state = torch.load(ckpt / STATE_FILE, weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        mask_gen.set_state(state["mask_rng"])
        step = int(state["step"])
        log(f"resuming from {ckpt} (step {step:,})")
        if int(state["threads"]) != torch.get_num_threads():
            log(f"note: this part runs on {torch.get_num_threads()} threads, the run so far on {int(state['threads'])}: "
                "the result will differ in the last bits from an uninterrupted run (--threads)")
    else:
        model = build_model(cfg, tokenizer)
        opt, sched = make_optimizer(model, cfg)
        step = 0
    enc = non_embedding_params(cfg.layers, cfg.hidden, cfg.intermediate)
    tokens_per_step = cfg.batch_size * cfg.max_length
    stop = cfg.max_steps if cfg.stop_at is None else cfg.stop_at
    log(f"MLM pre-training {cfg.size or 'custom'} (layers {cfg.layers}, hidden {cfg.hidden}, heads {cfg.heads}, intermediate "
        f"{cfg.intermediate}; {enc:,} non-embedding / {model.num_parameters():,} parameters) on {n_docs:,} documents = "
        f"{len(data.blocks):,} blocks of {cfg.max_length} tokens ({data.per_epoch:,} steps per epoch; {len(eval_blocks)} held out); "
        f"steps {step:,} -> {stop:,} of {cfg.max_steps:,}; results in {out}/")

    rows = read_log(out / "log.csv", step)
    with open(out / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    recent: list[float] = [float(r["loss"]) for r in rows[-cfg.save_every :]]

    def save() -> None:
        info = {
            "step": step, "epoch": step / data.per_epoch, "tokens": step * tokens_per_step, "lr": sched.get_last_lr()[0],
            "train_loss": sum(recent) / len(recent) if recent else None,
            "eval_loss": eval_loss(model, eval_blocks, masking, cfg.batch_size), "non_embedding_params": enc,
            "params": model.num_parameters(), "config": cfg.identity(),
        }
        state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                 "mask_rng": mask_gen.get_state(), "step": step, "threads": torch.get_num_threads()}
        save_checkpoint(out, step, model, tokenizer, state, info)

    if not resumable:
        save()
    t0, trained, train_s = time.perf_counter() - (float(rows[-1]["seconds"]) if rows else 0.0), 0, 0.0
    bar = tqdm(total=stop, initial=step, desc=f"pretrain {cfg.size or 'custom'}", disable=not progress, unit="step")
    with open(out / "log.csv", "a", newline="") as f:
        writer = csv.DictWriter(f, LOG_FIELDS)
        while step < stop:
            ts = time.perf_counter()
            model.train()
            inputs, labels = masking(data.batch(step), mask_gen)
            loss = mlm_loss(model, inputs, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            lr = sched.get_last_lr()[0]
            opt.step()
            sched.step()
            step += 1
            value = float(f"{loss.detach().item():.6f}")  # as logged, so a resumed run's running mean is the same
            if not math.isfinite(value):
                raise PretrainError(f"the MLM loss became {value} at step {step}; lower --lr (now {cfg.lr:g})")
            train_s += time.perf_counter() - ts
            trained += 1
            recent = (recent + [value])[-cfg.save_every :]
            writer.writerow({"step": step, "loss": f"{value:.6f}", "lr": f"{lr:.6g}", "tokens": step * tokens_per_step,
                             "seconds": f"{time.perf_counter() - t0:.2f}"})
            f.flush()
            bar.set_postfix(loss=f"{value:.3f}", tok_s=f"{trained * tokens_per_step / train_s:,.0f}")
            bar.update()
            if step % cfg.save_every == 0 or step in cfg.save_at or step in (stop, cfg.max_steps):
                save()
    bar.close()
    part = None
    if trained:
        part = {"from_step": step - trained, "to_step": step, "tokens_per_s": trained * tokens_per_step / train_s,
                "train_s": train_s, "threads": torch.get_num_threads()}
        log(f"{trained:,} steps at {part['tokens_per_s']:,.0f} tokens/s on {part['threads']} CPU thread(s)")
    summary = _summarise(out, cfg, model, enc, part, time.perf_counter() - t0, step)
    return summary


def _summarise(out: Path, cfg: PretrainConfig, model: nn.Module, enc: int, part: dict[str, Any] | None, wall_s: float, step: int) -> dict[str, Any]:
    old = json.loads((out / "summary.json").read_text()).get("parts", []) if (out / "summary.json").is_file() else []
    parts = [p for p in old if p["to_step"] <= (part["from_step"] if part else step)] + ([part] if part else [])
    points = []
    for p in checkpoints(out):
        info = json.loads((p / "trainer_state.json").read_text())
        points.append({k: info[k] for k in ("step", "epoch", "tokens", "train_loss", "eval_loss")} | {"path": str(p)})
    (out / "checkpoints.json").write_text(json.dumps(points, indent=2) + "\n")
    plot_loss(out)
    summary = {
        "size": cfg.size, "layers": cfg.layers, "hidden": cfg.hidden, "heads": cfg.heads, "intermediate": cfg.intermediate,
        "non_embedding_params": enc, "params": model.num_parameters(), "step": step, "max_steps": cfg.max_steps,
        "finished": step == cfg.max_steps, "tokens_per_s": parts[-1]["tokens_per_s"] if parts else None,
        "threads": parts[-1]["threads"] if parts else None, "wall_s": wall_s, "parts": parts, "checkpoints": points,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
