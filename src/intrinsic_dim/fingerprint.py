"""A fingerprint of a local model folder's weight files, kept in a run's configuration so that a resume notices when
the checkpoint at the same path was made again (other bits, same name) and refuses to mix trials of the two."""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.gguf")
"""The files of a Hugging Face model folder that hold its weights (config and tokenizer files are not hashed)."""

KEY = "model_weights"
"""The run configuration's key for the fingerprint."""


def weights_fingerprint(model: str) -> str | None:
    """The SHA-256 (first 16 hex digits) of the weight files of ``model`` when it names a local folder holding some,
    over their names and bytes in name order; None for a registered short name, a hub id or a folder without weights."""
    folder = Path(model)
    if not folder.is_dir():
        return None
    files = sorted({p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def same_run_config(stored: dict | None, wanted: dict) -> bool:
    """Whether a store's recorded run configuration matches this run's. A configuration recorded before fingerprints
    existed has no :data:`KEY` and matches on the rest, so stores made then still resume."""
    if stored is None:
        return False
    if KEY not in stored:
        wanted = {k: v for k, v in wanted.items() if k != KEY}
    return stored == wanted
