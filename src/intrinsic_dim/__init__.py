"""intrinsic-dim: fine-tune any PyTorch model in a random subspace and measure intrinsic dimension."""

__version__ = "0.1.0"

from intrinsic_dim.adapter import AdapterError  # noqa: E402
from intrinsic_dim.projection import Projection, make_projection  # noqa: E402
from intrinsic_dim.config import SubspaceConfig  # noqa: E402
from intrinsic_dim.subspace import SubspaceModel  # noqa: E402

__all__ = ["AdapterError", "D90Result", "Projection", "SubspaceConfig", "SubspaceModel", "make_projection", "measure_d90"]


def __getattr__(name: str) -> object:
    """``measure_d90`` and ``D90Result`` load the search (and its trainer) only when first used."""
    if name in ("measure_d90", "D90Result"):
        from intrinsic_dim import search

        return getattr(search, name)
    raise AttributeError(f"module 'intrinsic_dim' has no attribute {name!r}")
