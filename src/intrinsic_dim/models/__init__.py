"""Models: the registry (:mod:`.registry`: names, Hugging Face folders and hub ids, each with a fresh head for
the task), the packaged weights (:mod:`.packaged`), Li et al.'s image networks (:mod:`.nets`) and what a
loader returns (:mod:`.base`). Every fresh weight is drawn inside a seeded ``fork_rng``: the same
(name, task, seed) gives bit-identical weights in any process."""

from intrinsic_dim.models.base import LoadedModel, ModelError, seeded
from intrinsic_dim.models.nets import FCNet, LeNet
from intrinsic_dim.models.packaged import assemble_split_zip, minilm_path, mpnet_path, smollm2_path, smollm2_tokenizer_path
from intrinsic_dim.models.registry import list_models, load_model

__all__ = ["FCNet", "LeNet", "LoadedModel", "ModelError", "assemble_split_zip", "list_models", "load_model", "minilm_path",
           "mpnet_path", "seeded", "smollm2_path", "smollm2_tokenizer_path"]
