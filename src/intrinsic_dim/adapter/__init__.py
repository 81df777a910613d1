"""Adapter files and where they go: the file format (:mod:`.format`), the model card (:mod:`.card`), the
Hub (:mod:`.hub`) and saving / loading a subspace model's trained numbers (:mod:`.io`).

This package sits beside the subspace engine and never imports it: :mod:`.io` works on any object with
the engine's adapter methods, so the engine can call down into it without a circle.
"""

from intrinsic_dim.adapter.format import (
    CONFIG_NAME,
    MAX_DEPTH,
    WEIGHTS_NAME,
    AdapterError,
    config_checksum,
    fingerprint,
    open_adapter,
    read_adapter,
    read_config,
    read_weights,
    write_adapter,
)
from intrinsic_dim.adapter.io import load_config

__all__ = ["CONFIG_NAME", "MAX_DEPTH", "WEIGHTS_NAME", "AdapterError", "config_checksum", "fingerprint", "load_config",
           "open_adapter", "read_adapter", "read_config", "read_weights", "write_adapter"]
