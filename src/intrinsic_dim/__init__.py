"""intrinsic-dim: fine-tune any PyTorch model in a random subspace and measure intrinsic dimension."""

from intrinsic_dim.version import __version__
from intrinsic_dim.adapter import AdapterError
from intrinsic_dim.projection import Projection, make_projection
from intrinsic_dim.config import SubspaceConfig
from intrinsic_dim.lazyweights import SafetensorsWeights
from intrinsic_dim.subspace import SubspaceModel

__all__ = ["AdapterError", "D90Result", "MeasureSpec", "Projection", "SafetensorsWeights", "SubspaceConfig", "SubspaceModel",
           "__version__", "make_projection", "measure_d90"]


def __getattr__(name: str) -> object:
    """``measure_d90``, ``D90Result`` and ``MeasureSpec`` load the search (and its trainer) only when first used."""
    if name in ("measure_d90", "D90Result"):
        from intrinsic_dim import search

        return getattr(search, name)
    if name == "MeasureSpec":
        from intrinsic_dim.spec import MeasureSpec

        return MeasureSpec
    raise AttributeError(f"module 'intrinsic_dim' has no attribute {name!r}")
