"""The ``README.md`` model cards, built with ``huggingface_hub.ModelCard`` / ``ModelCardData`` so the Hub reads
their YAML front matter: the adapter's (``base_model_relation: adapter``) and a merged model's (``merged``).

Written from the adapter's config and its ``metadata`` (``model``, ``task``, ``metric``, ``validation``/``test``
values, ``d90`` and ``d90_run`` when the caller knows them; ``base_model`` names the Hub id of the base model
explicitly, ``license`` and ``pipeline_tag`` override what is known of the base model).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

# registry names of intrinsic_dim.models whose weights are a public Hub model, and those models' licenses
HUB_IDS = {"minilm-l6": "sentence-transformers/all-MiniLM-L6-v2", "mpnet-base": "sentence-transformers/all-mpnet-base-v2"}
HUB_LICENSES = {"sentence-transformers/all-MiniLM-L6-v2": "apache-2.0", "sentence-transformers/all-mpnet-base-v2": "apache-2.0"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PIPELINES = {"ForSequenceClassification": "text-classification", "ForCausalLM": "text-generation",
              "ForImageClassification": "image-classification", "ForMaskedLM": "fill-mask",
              "ForTokenClassification": "token-classification", "ForQuestionAnswering": "question-answering"}


def pipeline_tag_of(model: Any) -> str | None:
    """The Hub pipeline tag a transformers model's architecture (its config's, else its class name) implies, or None."""
    names = list(getattr(getattr(model, "config", None), "architectures", None) or []) + [type(model).__name__]
    for arch in names:
        for suffix, tag in _PIPELINES.items():
            if str(arch).endswith(suffix):
                return tag
    return None


def hub_base_model(config: dict[str, Any]) -> str | None:
    """The base model's Hub id when known: metadata ``base_model``, a registry name, or a repo-id-shaped name."""
    meta = config.get("metadata") or {}
    if meta.get("base_model"):
        return str(meta["base_model"])
    if meta.get("model") in HUB_IDS:
        return HUB_IDS[meta["model"]]
    for name in (meta.get("model"), config.get("base_model_name")):
        if isinstance(name, str) and _REPO_ID.match(name) and not Path(name).exists():
            return name
    return None


def _card_data(config: dict[str, Any], relation: str, pipeline_tag: str | None) -> ModelCardData:
    """The front matter: base model and relation, library, license and pipeline tag where known, and the metric and
    d90 as model-index results when the metadata has them."""
    meta = config.get("metadata") or {}
    base = hub_base_model(config)
    method = "SAID" if config["said"] else "DID"
    tag = meta.get("pipeline_tag") if isinstance(meta.get("pipeline_tag"), str) else pipeline_tag
    task = str(meta.get("task", "unknown"))
    results = [
        EvalResult(task_type=tag or "other", dataset_type=task, dataset_name=task, dataset_split=split,
                   metric_type=str(meta["metric"]), metric_value=meta[split])
        for split in ("validation", "test") if "metric" in meta and isinstance(meta.get(split), (int, float))
    ]
    if isinstance(meta.get("d90"), (int, float)):
        results.append(EvalResult(task_type=tag or "other", dataset_type=task, dataset_name=task, metric_type="d90",
                                  metric_name=f"d90 (intrinsic dimension, {method})", metric_value=meta["d90"]))
    license_ = meta.get("license") if isinstance(meta.get("license"), str) else HUB_LICENSES.get(base or "")
    return ModelCardData(
        base_model=base, base_model_relation=relation if base else None,
        library_name="intrinsic-dim" if relation == "adapter" else "transformers", license=license_, pipeline_tag=tag,
        tags=["intrinsic-dimension", method.lower(), config["projection"]] + (["intrinsic-dim"] if relation == "merged" else []),
        model_name=f"{Path(str(base or config['base_model_name'])).name} {method} d={config['d']}" if results else None,
        eval_results=results or None,
    )


def _rows(config: dict[str, Any]) -> str:
    """The card's table of base model, task, method, d, metric and d90 run."""
    meta = config.get("metadata") or {}
    base = hub_base_model(config)
    method = "SAID" if config["said"] else "DID"
    rows = [
        ("Base model", f"`{base}`" if base else f"`{config['base_model_name']}` (not a Hub id; add `base_model` to the front matter)"),
        ("Task", meta.get("task", "not recorded")),
        ("Method", f"{method} (θ = θ0 + {'λ_g·' if config['said'] else ''}P(z)), {config['projection']} projection, "
                   f"layout {config['layout']}, seed {config['seed']}"),
        ("d (trained numbers)", f"{config['d']:,} of D = {config['D']:,} projected weights"),
    ]
    if "metric" in meta:
        values = ", ".join(f"{k} {meta[k]:.4f}" for k in ("validation", "test") if isinstance(meta.get(k), (int, float)))
        rows.append(("Metric", f"{meta['metric']}" + (f": {values}" if values else "")))
    if "d90" in meta or "d90_run" in meta:
        run = f"d90 = {meta['d90']}" if "d90" in meta else "d90"
        rows.append(("d90 run", run + (f" (`{meta['d90_run']}`)" if "d90_run" in meta else "")))
    return "\n".join(f"| {k} | {v} |" for k, v in rows)


def _use_snippet(meta: dict[str, Any]) -> str:
    """Python that loads the adapter onto its base model: for one made by intrinsic-dim (model, task and seed recorded),
    the base rebuilt by the library's own loader, so that a fresh head is drawn from the same seed as in training."""
    if not all(isinstance(meta.get(k), t) for k, t in (("model", str), ("task", str), ("seed", int))):
        return """import intrinsic_dim as idim

base = ...  # the exact model it was trained on: the same weights, a new head's initialisation included
sm = idim.SubspaceModel.from_pretrained(base, "FOLDER or owner/repo")  # refuses other base weights
model = sm.merge_and_unload()  # a plain model with θ0 + P(z) written in"""
    columns = "".join(f", {k}={meta[k]!r}" for k in ("text_columns", "label_column") if meta.get(k))
    length = f", max_length={meta['max_length']!r}" if isinstance(meta.get("max_length"), int) else ""
    return f"""import intrinsic_dim as idim
from intrinsic_dim.models import load_model
from intrinsic_dim.tasks import load_task

task = load_task({meta['task']!r}, max_train=1, max_eval=1{columns})  # its labels size the head
loaded = load_model({meta['model']!r}, task, seed={meta['seed']!r}{length})  # the base, its new head drawn from the seed, as in training
sm = idim.SubspaceModel.from_pretrained(loaded.model, "FOLDER or owner/repo")  # refuses other base weights
model = sm.merge_and_unload()  # a plain model with θ0 + P(z) written in"""


def model_card(config: dict[str, Any], pipeline_tag: str | None = None) -> str:
    """Markdown with YAML front matter describing the adapter whose ``adapter_config.json`` is ``config``."""
    meta = config.get("metadata") or {}
    method = "SAID" if config["said"] else "DID"
    cli = ("\nThe command line rebuilds that model (model, task and seed are in `adapter_config.json`):\n\n"
           "```sh\nintrinsic-dim evaluate --adapter FOLDER\nintrinsic-dim merge FOLDER --out merged/\n```\n") if "model" in meta else ""
    body = f"""
# intrinsic-dim adapter ({method}, d = {config['d']:,})

Fine-tuned by training only d numbers z in a fixed random subspace of the base model's weights
(Li et al. 2018; Aghajanyan et al. 2021), with intrinsic-dim
{config.get('library_version', '')}. The projection is regenerated from its seed: this folder holds
z{', the SAID scales λ' if config['said'] else ''} and the config, a few kilobytes.

| | |
|---|---|
{_rows(config)}

## Use

```python
{_use_snippet(meta)}
```
{cli}
PEFT cannot load this adapter type (its `PeftType` is a closed enum); `merge_and_unload()` or
`intrinsic-dim merge ADAPTER --out FOLDER` gives a plain Hugging Face model.
"""
    return str(ModelCard(f"---\n{_card_data(config, 'adapter', pipeline_tag).to_yaml()}\n---\n{body}"))


def merged_card(config: dict[str, Any], pipeline_tag: str | None = None) -> str:
    """Markdown with YAML front matter (``base_model_relation: merged``) for a model with the adapter ``config`` merged in."""
    method = "SAID" if config["said"] else "DID"
    body = f"""
# {method} fine-tune (d = {config['d']:,}), merged

The base model with θ0 + {'λ_g·' if config['said'] else ''}P(z) written into its weights by intrinsic-dim
{config.get('library_version', '')}: a plain model that `transformers` loads as it is (`AutoModel...`,
`AutoTokenizer` when the tokenizer was saved with it, `pipeline`). Only d numbers z were trained, in a fixed
random subspace of the base model's weights (Li et al. 2018; Aghajanyan et al. 2021).

| | |
|---|---|
{_rows(config)}
"""
    return str(ModelCard(f"---\n{_card_data(config, 'merged', pipeline_tag).to_yaml()}\n---\n{body}"))
