"""Generative tasks for causal language models: prompt/completion and chat-message JSONL files, plain
language modelling on a text file, and the packaged tweets as text-to-text with label-word scoring.

A generative task's split holds one text tuple per example, in the task's ``text_format``:
``completion`` (prompt, completion), ``messages`` (the chat as JSON; the last turn, an assistant's,
is the completion) or ``text`` (one document, every token is a target). Its metric is ``loss`` (mean
token cross-entropy on the targets, lower is better, perplexity alongside) or, for a task with
``choices``, ``accuracy`` of picking the class whose completion the model scores highest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from intrinsic_dim.tasks.base import SPLIT_SEED, Split, Task, TaskError, seeded_order, validation_test_halves
from intrinsic_dim.tasks.files import SINGLE_FILE_EVAL_FRACTION, read_rows

GENERATIVE_KIND = "generative"
TEXT_FORMATS = ("completion", "messages", "text")
TWEET_PROMPT = "Tweet: {text}\nSentiment (negative, neutral or positive):"
_GEN_SPLIT_STREAM = 0x5B13
SMALL_HELD_OUT = 20
"""Fewer held-out examples than this give validation and test losses too noisy to compare trials on: noted once."""


def _zeros(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.int64)


def tweet_sentiment_generative() -> Task:
    """The packaged tweet-sentiment task (same splits) as text-to-text: the completion is the label word."""
    from intrinsic_dim.tasks.text import tweet_sentiment

    base = tweet_sentiment()
    validation, test = validation_test_halves(base.eval, regression=False)  # halved by tweet, as the classifier's

    def convert(split: Split) -> Split:
        texts = [(TWEET_PROMPT.format(text=t[0]), " " + base.label_names[int(y)]) for t, y in zip(split.texts, split.labels)]
        return Split(labels=split.labels.clone(), texts=texts)

    return Task(
        name="tweet-sentiment-gen", kind=GENERATIVE_KIND, label_names=list(base.label_names), metric="accuracy",
        train=convert(base.train), eval=convert(validation), test=convert(test), text_format="completion",
        choices=[" " + n for n in base.label_names],
        description=(
            "tweet-sentiment as text-to-text for causal LMs (same tweets and splits): prompt "
            f"{TWEET_PROMPT!r}, completion the label word; trained with the loss on the completion tokens only, "
            "scored by accuracy of the label word with the highest total log-probability (comparable with the classifier)."
        ),
    )


def looks_generative(name: str) -> bool:
    """True when ``name`` is a text file (plain LM) or a JSONL whose first row has prompt/completion or messages."""
    if name.lower().endswith(".txt"):
        return True
    first = name.split(",")[0].strip()
    if not first.lower().endswith(".jsonl") or not Path(first).is_file():
        return False
    with open(first, encoding="utf-8-sig") as f:
        line = next((ln for ln in f if ln.strip()), "")
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, RecursionError):  # read as data files then, which says what is wrong
        return False
    return isinstance(row, dict) and ("messages" in row or ("prompt" in row and "completion" in row))


def _check_messages(messages: Any, where: str) -> str:
    if not isinstance(messages, list) or not messages or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    ):
        raise TaskError(f"{where}: 'messages' must be a non-empty list of {{'role': ..., 'content': ...}} with text values")
    if messages[-1]["role"] != "assistant":
        raise TaskError(f"{where}: the last message must be the assistant's (it is the completion trained on), got {messages[-1]['role']!r}")
    return json.dumps(messages, ensure_ascii=False)


def _sft_rows(path: Path) -> tuple[str, list[tuple[str, ...]]]:
    rows = read_rows(path)
    fmt = "messages" if "messages" in rows[0] else "completion"
    texts = []
    for i, r in enumerate(rows):
        where = f"{path}: example {i + 1}"
        if fmt == "messages":
            texts.append((_check_messages(r.get("messages"), where),))
        elif not (isinstance(r.get("prompt"), str) and isinstance(r.get("completion"), str) and r["completion"]):
            raise TaskError(f"{where}: needs text 'prompt' and non-empty text 'completion' (as the first example has)")
        else:
            texts.append((r["prompt"], r["completion"]))
    return fmt, texts


def _hold_out(n: int, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    order = seeded_order(n, SPLIT_SEED, _GEN_SPLIT_STREAM)
    k = round(SINGLE_FILE_EVAL_FRACTION * n)
    if k < 2 or n - k < 1:
        raise TaskError(f"{path} has too few examples ({n}) to hold out {SINGLE_FILE_EVAL_FRACTION:g} (at least 2) for evaluation")
    return torch.sort(order[k:]).values, torch.sort(order[:k]).values


def _small_split_notes(held: int, where: str) -> list[str]:
    """The task's note when its held-out split is too small to select on and report from (empty otherwise)."""
    if held >= SMALL_HELD_OUT:
        return []
    return [f"{where}: only {held} held-out examples, halved into validation and test: their losses are too few to tell "
            f"trials apart reliably; hold out at least {SMALL_HELD_OUT} (more data, or a larger EVAL file)"]


def sft_task(name: str) -> Task:
    """Prompt/completion or chat-message JSONL: ``TRAIN.jsonl,EVAL.jsonl`` or one file split 90/10 (fixed seed)."""
    paths = [Path(p.strip()) for p in name.split(",")]
    if len(paths) > 2 or not all(p.name for p in paths):
        raise TaskError(f"{name!r}: give one JSONL file or TRAIN.jsonl,EVAL.jsonl")
    parsed = [_sft_rows(p) for p in paths]
    formats = {fmt for fmt, _ in parsed}
    if len(formats) > 1:
        raise TaskError(f"{name}: the files mix the formats {sorted(formats)}; use one of them in both")
    fmt = parsed[0][0]
    if len(paths) == 2:
        train, held = parsed[0][1], parsed[1][1]
        how = f"train {paths[0]}, eval {paths[1]}"
    else:
        texts = parsed[0][1]
        train_idx, eval_idx = _hold_out(len(texts), paths[0])
        train, held = [texts[i] for i in train_idx.tolist()], [texts[i] for i in eval_idx.tolist()]
        how = f"one file {paths[0]}, split 0.9/0.1 by a fixed shuffle (seed {SPLIT_SEED})"
    what = "chat messages (tokenizer's chat template; loss on the last assistant turn)" if fmt == "messages" else (
        "prompt/completion (loss on the completion tokens only)")
    return Task(
        name=name, kind=GENERATIVE_KIND, label_names=[], metric="loss", text_format=fmt,
        train=Split(labels=_zeros(len(train)), texts=train), eval=Split(labels=_zeros(len(held)), texts=held),
        description=f"Your files: {how}; {what}; metric: validation loss per target token (perplexity alongside).",
        notes=_small_split_notes(len(held), name),
    )


def text_lm_task(name: str) -> Task:
    """Plain language modelling on a UTF-8 text file: one example per non-empty line, split 90/10 (fixed seed)."""
    path = Path(name)
    if path.exists() and not path.is_file():
        raise TaskError(f"{path} is not a regular file (a folder, named pipe or device cannot be read as data): pass a text file")
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise TaskError(f"text file not found: {path}") from None
    except UnicodeDecodeError:
        raise TaskError(f"{path} is not UTF-8 text; re-save it as UTF-8") from None
    train_idx, eval_idx = _hold_out(len(lines), path)
    texts = [(t,) for t in lines]
    full = Split(labels=_zeros(len(texts)), texts=texts)
    return Task(
        name=name, kind=GENERATIVE_KIND, label_names=[], metric="loss", text_format="text",
        train=full.subset(train_idx), eval=full.subset(eval_idx),
        description=(
            f"Language modelling on {path}: one example per non-empty line (truncated to --max-length tokens), "
            f"split 0.9/0.1 by a fixed shuffle (seed {SPLIT_SEED}); metric: loss per token (perplexity alongside)."
        ),
        notes=_small_split_notes(len(eval_idx), name),
    )


def generative_file_task(name: str) -> Task:
    """A generative task from a .txt file (plain LM) or prompt/completion / messages JSONL."""
    return text_lm_task(name) if name.lower().endswith(".txt") else sft_task(name)
