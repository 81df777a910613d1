"""Model registry: Hugging Face sequence classifiers (packaged MiniLM-L6, any local folder or hub id,
a tiny random BERT), causal language models for generative tasks (packaged SmolLM2-135M, any folder
or hub id, a tiny random Llama) and the image networks of Li et al. 2018, each with a fresh head for
the task (a causal LM keeps its own).

Every freshly initialised weight (a pretrained model's new head, a whole random model) is drawn
inside ``torch.random.fork_rng`` seeded with ``seed``: the same (name, task, seed) gives
bit-identical weights in any process, and the caller's global RNG is left exactly as it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from safetensors import SafetensorError

from intrinsic_dim.models.base import LoadedModel, ModelError, seeded
from intrinsic_dim.models.nets import FCNet, LeNet, _image_model
from intrinsic_dim.models.packaged import minilm_path, mpnet_path, smollm2_path, smollm2_tokenizer_path
from intrinsic_dim.tasks import Task
from intrinsic_dim.tasks.encoders import CausalEncoder, TextEncoder


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


def hub_offline() -> bool:
    """Whether the user switched the Hugging Face hub off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE set to a true value)."""
    return any(os.environ.get(k, "").strip().upper() in ("1", "ON", "YES", "TRUE") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _exists(name: str) -> bool:
    """Whether ``name`` is an existing path (a name too long for the file system is not one)."""
    try:
        return Path(name).exists()
    except OSError:
        return False


def is_local(name: str) -> bool:
    """Whether ``name`` loads without the hub: a registered short name or an existing path."""
    return name in list_models() or _exists(name)


def check_reachable(name: str) -> None:
    """Refuse at once, without contacting the hub, a model name that can only be a hub id when the hub cannot serve it:
    a name with no '/' (hub ids are owner/name), or any hub id while HF_HUB_OFFLINE is set."""
    if is_local(name):
        return
    known = ", ".join(list_models())
    if "/" not in name:
        raise ModelError(f"unknown model {name!r}: not a registered name ({known}) nor an existing folder; pass one of those, "
                         "a Hugging Face model folder, or a hub id of the form owner/name")
    if hub_offline():
        raise ModelError(f"model {name!r} is not a folder here and HF_HUB_OFFLINE is set, so the hub is not asked: pass a "
                         f"registered name ({known}) or a local model folder, or unset HF_HUB_OFFLINE to download it")


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
    check_reachable(name)
    if _exists(name) and Path(name).is_dir() and not (Path(name) / "config.json").is_file():
        raise ModelError(
            f"{name} is a folder without config.json, so not a Hugging Face model folder (which holds config.json, "
            f"the weights and the tokenizer files). Known short names: {', '.join(list_models())}"
        )
    try:
        loaded = (causal_lm if task.kind == "generative" else hf_model)(name, name, task, seed, max_length)
    except SafetensorError as e:
        weights = Path(name) / "model.safetensors"
        raise ModelError(f"{weights if weights.is_file() else name}: the weights file cannot be read ({e}); it is cut off or "
                         "damaged: copy or download it again") from None
    except (OSError, ValueError, KeyError) as e:
        where = "a local folder" if _exists(name) else "a Hugging Face hub id"
        reason = " ".join(str(e).split()).rstrip(".")
        raise ModelError(
            f"cannot load model {name!r}: it is not a known short name ({', '.join(list_models())}), and loading it "
            f"as {where} failed: {type(e).__name__}: {reason}. Any local Hugging Face model folder or hub id works too"
        ) from None
    if _exists(name) and Path(name).is_dir() and not any((Path(name) / f).is_file() for f in TOKENIZER_FILES):
        raise ModelError(
            f"{name} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); transformers would silently build an empty "
            "vocabulary from config.json alone. Save the tokenizer into the folder (tokenizer.save_pretrained)"
        )
    return loaded
