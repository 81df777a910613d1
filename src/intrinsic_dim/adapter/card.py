"""The ``README.md`` model card of an adapter folder, with the YAML front matter the Hub reads.

Written by :meth:`SubspaceModel.save_pretrained` from the adapter's config and its ``metadata``
(``model``, ``task``, ``metric``, ``validation``/``test`` values, ``d90`` and ``d90_run`` when the
caller knows them; ``base_model`` names the Hub id of the base model explicitly).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

# registry names of intrinsic_dim.models whose weights are a public Hub model
HUB_IDS = {"minilm-l6": "sentence-transformers/all-MiniLM-L6-v2", "mpnet-base": "sentence-transformers/all-mpnet-base-v2"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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


def model_card(config: dict[str, Any]) -> str:
    """Markdown with YAML front matter describing the adapter whose ``adapter_config.json`` is ``config``."""
    meta = config.get("metadata") or {}
    base = hub_base_model(config)
    method = "SAID" if config["said"] else "DID"
    front: dict[str, Any] = {}
    if base:
        front |= {"base_model": base, "base_model_relation": "adapter"}
    front |= {"library_name": "intrinsic-dim", "tags": ["intrinsic-dimension", method.lower(), config["projection"]]}
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
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    cli = ("\nThe command line rebuilds that model (model, task and seed are in `adapter_config.json`):\n\n"
           "```sh\nintrinsic-dim evaluate --adapter FOLDER\nintrinsic-dim merge FOLDER --out merged/\n```\n") if "model" in meta else ""
    return f"""---
{yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip()}
---

# intrinsic-dim adapter ({method}, d = {config['d']:,})

Fine-tuned by training only d numbers z in a fixed random subspace of the base model's weights
(Li et al. 2018; Aghajanyan et al. 2021), with intrinsic-dim
{config.get('library_version', '')}. The projection is regenerated from its seed: this folder holds
z{', the SAID scales λ' if config['said'] else ''} and the config, a few kilobytes.

| | |
|---|---|
{table}

## Use

```python
import intrinsic_dim as idim

base = ...  # the exact model it was trained on: the same weights, a new head's initialisation included
sm = idim.SubspaceModel.from_pretrained(base, "FOLDER or owner/repo")  # refuses other base weights
model = sm.merge_and_unload()  # a plain model with θ0 + P(z) written in
```
{cli}
PEFT cannot load this adapter type (its `PeftType` is a closed enum); `merge_and_unload()` or
`intrinsic-dim merge ADAPTER --out FOLDER` gives a plain Hugging Face model.
"""
