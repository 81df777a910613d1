"""GLUE tasks through the `datasets` library (not a dependency): only where it is installed and a hub
(or its cache) is reachable. The eval split is GLUE's validation split (validation_matched for MNLI),
since test labels are hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from intrinsic_dim.tasks.base import Split, Task, TaskError

GLUE_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueSpec:
    """How one GLUE task is read and scored."""

    columns: tuple[str, ...]
    label_names: tuple[str, ...]
    metric: str
    eval_split: str = "validation"


GLUE: dict[str, GlueSpec] = {
    "cola": GlueSpec(("sentence",), ("unacceptable", "acceptable"), "matthews_correlation"),
    "sst2": GlueSpec(("sentence",), ("negative", "positive"), "accuracy"),
    "mrpc": GlueSpec(("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "f1"),
    "qqp": GlueSpec(("question1", "question2"), ("not_duplicate", "duplicate"), "f1"),
    "stsb": GlueSpec(("sentence1", "sentence2"), (), "spearmanr"),
    "mnli": GlueSpec(("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), "accuracy", "validation_matched"),
    "qnli": GlueSpec(("question", "sentence"), ("entailment", "not_entailment"), "accuracy"),
    "rte": GlueSpec(("sentence1", "sentence2"), ("entailment", "not_entailment"), "accuracy"),
    "wnli": GlueSpec(("sentence1", "sentence2"), ("not_entailment", "entailment"), "accuracy"),
}
"""Primary metrics follow the BERT paper: F1 for MRPC/QQP, Spearman for STS-B, Matthews for CoLA."""


def _split(rows, spec: GlueSpec) -> Split:
    columns = [list(rows[c]) for c in spec.columns]
    dtype = torch.float32 if not spec.label_names else torch.int64
    return Split(labels=torch.tensor(list(rows["label"]), dtype=dtype), texts=list(zip(*columns)))


def glue_task(name: str) -> Task:
    """GLUE task ``name`` loaded with `datasets`; a TaskError says what to install or do when it cannot be."""
    spec = GLUE[name]
    offline_hint = (
        f"GLUE is not packaged offline. Either install `datasets` (pip install datasets) on a machine that "
        f"can reach the Hugging Face hub (HF_HUB_OFFLINE unset) or has {GLUE_DATASET} cached, or export "
        f"the task to files and pass them as the task name (train.csv,validation.csv with columns "
        f"{', '.join(spec.columns)}, label)."
    )
    try:
        import datasets
    except ImportError:
        raise TaskError(f"GLUE task {name!r} needs the `datasets` library, which is not installed. {offline_hint}") from None
    try:
        data = datasets.load_dataset(GLUE_DATASET, name)
        train, held = _split(data["train"], spec), _split(data[spec.eval_split], spec)
    except Exception as e:  # datasets raises many types for an unreachable hub or a missing cache
        raise TaskError(f"could not load GLUE task {name!r} with `datasets` ({type(e).__name__}: {e}). {offline_hint}") from None
    return Task(
        name=name, kind="text", label_names=list(spec.label_names), metric=spec.metric, train=train, eval=held,
        description=f"GLUE {name.upper()} from {GLUE_DATASET} via `datasets`; eval is its {spec.eval_split} split.",
    )
