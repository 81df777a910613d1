"""intrinsic-dim: fine-tune any PyTorch model in a random subspace and measure intrinsic dimension."""

__version__ = "0.1.0"

from intrinsic_dim.adapter import AdapterError  # noqa: E402
from intrinsic_dim.projection import Projection, make_projection  # noqa: E402
from intrinsic_dim.subspace import SubspaceModel  # noqa: E402

__all__ = ["AdapterError", "Projection", "SubspaceModel", "make_projection"]
