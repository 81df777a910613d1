"""Merging an adapter into its base model and writing the result as a plain Hugging Face model folder.

:func:`merge_adapter` writes what ``AutoTokenizer`` / ``AutoModelFor...`` / ``pipeline`` load as they are: the
model's config and safetensors weights, the tokenizer when given, and a model card whose front matter says
``base_model_relation: merged``. The folder is filled under a temporary name beside ``out_dir`` and renamed into
place, so a failure leaves nothing behind (and nothing that blocks the corrected command).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from intrinsic_dim.adapter.card import merged_card, pipeline_tag_of
from intrinsic_dim.adapter.format import CONFIG_NAME, read_config
from intrinsic_dim.adapter.hub import CARD_NAME, resolve_adapter
from intrinsic_dim.store import OutputError, atomic_folder
from intrinsic_dim.subspace import SubspaceModel

FILE_MODE = 0o644
"""The mode of every file written (weights included): a model folder is meant to be shared."""


def _earlier_merge(folder: Path) -> bool:
    """True when ``folder`` holds a model card this module wrote (an earlier merge, which may be replaced)."""
    from huggingface_hub import ModelCard

    card = folder / CARD_NAME
    if not card.is_file():
        return False
    try:
        data = ModelCard.load(card).data
    except (ValueError, OSError):
        return False
    return data.get("base_model_relation") == "merged" and "intrinsic-dim" in (data.get("tags") or [])


def check_out_dir(out_dir: str | Path) -> bool:
    """Refuse (OutputError) an ``out_dir`` that is a file, a folder holding other things than an earlier merge, or
    not writable, before any work; returns whether an earlier merge is there to be replaced."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output folder {out} is an existing file: pass a new folder (or an earlier merge's, which is replaced)")
    replaceable = out.is_dir() and any(out.iterdir())
    if replaceable and not _earlier_merge(out):
        raise OutputError(f"output folder {out} is not empty and holds no earlier merge (its {CARD_NAME} does not say "
                          "base_model_relation: merged): pass a new folder, or empty it")
    home = out.absolute().parent
    anchor = next(p for p in (home, *home.parents) if p.exists())  # the folder made beside out_dir, then renamed
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {out} cannot be written (no write permission on {anchor}): pass a writable folder")
    return replaceable


def merge_adapter(model: nn.Module, adapter_path: str | Path, out_dir: str | Path, tokenizer: Any = None,
                  metadata: dict[str, Any] | None = None, revision: str | None = None) -> Path:
    """Merge the adapter at ``adapter_path`` (folder or Hub repo id) into ``model`` (its exact base model; changed in
    place) and write a plain model folder to ``out_dir``: config, weights (safetensors), ``tokenizer`` when given and
    a model card; ``metadata`` adds to or overrides the adapter's (e.g. ``license``, ``d90``). Returns ``out_dir``.
    An absurd adapter (weights beyond their dtype's safe range) is refused before anything is written."""
    out = Path(out_dir)
    replaceable = check_out_dir(out)
    path = resolve_adapter(adapter_path, revision)
    config = read_config(path / CONFIG_NAME)
    merged = SubspaceModel.from_pretrained(model, path).merge_and_unload()
    card_config = config | {"metadata": (config.get("metadata") or {}) | (metadata or {})}
    with atomic_folder(out, replaceable=replaceable) as tmp:
        if hasattr(merged, "save_pretrained"):
            merged.save_pretrained(tmp, safe_serialization=True)
        else:
            from safetensors.torch import save_file

            save_file({k: v.detach().contiguous() for k, v in merged.state_dict().items()}, str(tmp / "model.safetensors"))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / CARD_NAME).write_text(merged_card(card_config, pipeline_tag_of(merged)))
        for f in tmp.rglob("*"):
            if f.is_file():
                f.chmod(FILE_MODE)
    return out

