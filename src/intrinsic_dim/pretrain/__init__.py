"""Masked-language-model pre-training of a BERT-style encoder from scratch, with exact resume.

A run directory holds ``pretrain_config.json`` (what defines the run), ``checkpoint-<step>/``
folders (Hugging Face folders: ``config.json``, ``model.safetensors``, tokenizer files and
``trainer_state.json``; each one is a model for ``intrinsic-dim measure --model``), ``log.csv``
(step, loss, learning rate, tokens, seconds), ``checkpoints.json`` (held-out MLM loss per
checkpoint), ``loss.png`` / ``loss.pdf`` and ``summary.json``.

Determinism: weights are drawn under ``seed``; the data order of epoch e is a counter-based
permutation of (seed, e); masking draws from its own generator and dropout from torch's global
one, and both generators' states, the optimizer and the scheduler are stored in the latest
checkpoint (``training_state.pt``). Rerunning the same command resumes from it, and the result
equals an uninterrupted run's bit for bit at the same thread count.

The package: :mod:`.config` (settings), :mod:`.corpus` (text, tokenizer, blocks, masking), :mod:`.model`
(the MLM model, loss, optimiser, held-out loss), :mod:`.rundir` (checkpoints, lock, log) and :mod:`.loop`.
"""

from intrinsic_dim.pretrain.config import CORPORA, SIZES, PretrainConfig, PretrainError, non_embedding_params
from intrinsic_dim.pretrain.corpus import mask_tokens, read_corpus, train_wordpiece
from intrinsic_dim.pretrain.loop import pretrain
from intrinsic_dim.pretrain.model import mlm_loss
from intrinsic_dim.pretrain.rundir import checkpoint_info, checkpoints

__all__ = ["CORPORA", "SIZES", "PretrainConfig", "PretrainError", "checkpoint_info", "checkpoints", "mask_tokens", "mlm_loss",
           "non_embedding_params", "pretrain", "read_corpus", "train_wordpiece"]
