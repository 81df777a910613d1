"""Task registry: packaged tasks, own-file tasks, GLUE errors, metrics and error messages."""

import gzip
import json
import struct
import sys
import types

import pytest
import torch

from intrinsic_dim.tasks import Split, Task, TaskError, compute_metrics, list_tasks, load_task
from intrinsic_dim.tasks.generative import TWEET_PROMPT
from intrinsic_dim.tasks.images import FASHION_DIR, FASHION_ENV

PACKAGED = {
    # name: (train size, validation size, test size, number of classes); validation + test = the held-out split
    "tweet-sentiment": (34387, 1888, 1883, 3),
    "tweet-sentiment-gen": (34387, 1888, 1883, 3),
    "reuters-r8": (5485, 1094, 1095, 8),
    "newsgroups-20": (11293, 3767, 3761, 20),
    "mnist-5k": (4000, 500, 500, 10),
    "fashion-mnist": (60000, 5000, 5000, 10),
}
GLUE = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]


def _load(name, **kw):
    if name == "fashion-mnist" and not FASHION_DIR.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    return load_task(name, **kw)


def test_list_tasks_names_packaged_then_glue():
    assert list_tasks() == list(PACKAGED) + GLUE


@pytest.mark.parametrize("name", list(PACKAGED))
def test_packaged_task_sizes_labels_and_inputs(name):
    n_train, n_val, n_test, k = PACKAGED[name]
    task = _load(name)
    assert (len(task.train), len(task.eval), len(task.test), task.num_labels) == (n_train, n_val, n_test, k)
    assert task.name == name and task.metric == "accuracy" and not task.is_regression
    assert len(task.label_names) == k and task.description and task.notes == []
    for split in (task.train, task.eval, task.test):
        assert split.labels.dtype == torch.int64
        assert set(split.labels.tolist()) == set(range(k))
        if task.kind == "text":
            assert split.images is None and all(len(t) == 1 and isinstance(t[0], str) for t in split.texts[:50])
        elif task.kind == "generative":  # (prompt, completion): the completion is the label word
            assert all(t[1] == task.choices[y] for t, y in zip(split.texts[:50], split.labels[:50].tolist()))
        else:
            assert split.texts is None and split.images.dtype == torch.float32
            assert split.images.shape[1:] == (1, 28, 28)
            assert split.images.min() >= 0 and split.images.max() == 1


def test_generative_tweets_hold_the_same_tweets_in_the_same_splits():
    plain, gen = load_task("tweet-sentiment", max_eval=300), load_task("tweet-sentiment-gen", max_eval=300)
    assert gen.kind == "generative" and gen.choices == [" negative", " neutral", " positive"]
    for a, b in ((plain.train, gen.train), (plain.eval, gen.eval), (plain.test, gen.test)):
        assert torch.equal(a.labels, b.labels)
        assert all(g[0] == TWEET_PROMPT.format(text=p[0]) for p, g in zip(a.texts, b.texts))


def test_fixed_splits_are_stratified_and_do_not_depend_on_the_seed():
    tweets = load_task("tweet-sentiment")
    assert tweets.label_names == ["negative", "neutral", "positive"]
    # ~10% of each class's distinct tweets held out, then halved into validation and test
    assert torch.bincount(tweets.eval.labels).tolist() == [809, 732, 347]
    assert torch.bincount(tweets.test.labels).tolist() == [805, 733, 345]
    for a, b in ((tweets.train, tweets.eval), (tweets.train, tweets.test), (tweets.eval, tweets.test)):
        assert not set(a.texts) & set(b.texts)  # retweets stay on one side of every split
    mnist = load_task("mnist-5k", seed=7)
    assert torch.bincount(mnist.train.labels).tolist() == [400] * 10
    assert torch.bincount(mnist.eval.labels).tolist() == torch.bincount(mnist.test.labels).tolist() == [50] * 10
    again = load_task("mnist-5k", seed=0)
    assert torch.equal(mnist.train.images, again.train.images) and torch.equal(mnist.eval.labels, again.eval.labels)
    assert not (mnist.eval.images.flatten(1)[:, None] == mnist.test.images.flatten(1)[None]).all(-1).any()


def test_subsample_is_deterministic_seeded_and_drawn_from_the_split():
    a = load_task("tweet-sentiment", max_train=200, max_eval=50, seed=3)
    b = load_task("tweet-sentiment", max_train=200, max_eval=50, seed=3)
    c = load_task("tweet-sentiment", max_train=200, max_eval=50, seed=4)
    assert (len(a.train), len(a.eval), len(a.test)) == (200, 50, 50)
    assert a.train.texts == b.train.texts and torch.equal(a.train.labels, b.train.labels)
    assert a.eval.texts == b.eval.texts and a.test.texts == b.test.texts
    assert a.train.texts != c.train.texts
    full = load_task("tweet-sentiment")
    assert set(a.train.texts) <= set(full.train.texts) and set(a.eval.texts) <= set(full.eval.texts)
    assert set(a.test.texts) <= set(full.test.texts)
    assert a.notes[0] == "train split subsampled from 34,387 to 200 examples (max_train=200, seed 3)"
    big = load_task("reuters-r8", max_train=10**9)
    assert len(big.train) == 5485 and "max_train=1,000,000,000 is more than the 5,485 train examples" in big.notes[0]


def test_images_subsample_scaled_after_subsampling():
    task = load_task("mnist-5k", max_train=30, max_eval=20, seed=1)
    assert task.train.images.shape == (30, 1, 28, 28) and task.train.images.dtype == torch.float32
    assert task.eval.images.shape == task.test.images.shape == (20, 1, 28, 28) and task.test.images.dtype == torch.float32


def test_a_label_missing_from_training_is_an_error(tmp_path):
    train = _write_csv(tmp_path / "train.csv", ["text", "label"], [(f"t{i}", "ab"[i % 2]) for i in range(10)])
    held = _write_csv(tmp_path / "validation.csv", ["text", "label"], [("u", "a"), ("v", "c"), ("w", "b")])
    with pytest.raises(TaskError, match=r"\['c'\] appear in the held-out split but never in the training split"):
        load_task(f"{train},{held}")


def test_too_small_held_out_split_is_an_error(tmp_path):
    train = _write_csv(tmp_path / "train.csv", ["text", "label"], [(f"t{i}", "ab"[i % 2]) for i in range(10)])
    held = _write_csv(tmp_path / "validation.csv", ["text", "label"], [("u", "a")])
    with pytest.raises(TaskError, match="needs at least 2"):
        load_task(f"{train},{held}")


def test_split_subset_and_validation():
    s = Split(labels=torch.tensor([0, 1, 2]), texts=[("a",), ("b",), ("c",)])
    sub = s.subset(torch.tensor([2, 0]))
    assert len(sub) == 2 and sub.texts == [("c",), ("a",)] and sub.labels.tolist() == [2, 0]
    img = Split(labels=torch.tensor([0, 1]), images=torch.zeros(2, 1, 2, 2)).subset([1])
    assert img.images.shape == (1, 1, 2, 2)
    with pytest.raises(TaskError, match="either texts or images"):
        Split(labels=torch.tensor([0]))
    with pytest.raises(TaskError, match="one label per example"):
        Split(labels=torch.tensor([0, 1]), texts=[("a",)])


# --- own files -----------------------------------------------------------------------------------


def _write_csv(path, header, rows, sep=","):
    path.write_text("\n".join([sep.join(header)] + [sep.join(map(str, r)) for r in rows]) + "\n", encoding="utf-8")
    return path


def test_csv_pair_with_string_labels_and_an_id_column(tmp_path):
    rows = [(i, f"first {i}", f"second {i}", ["pos", "neg"][i % 2]) for i in range(10)]
    train = _write_csv(tmp_path / "train.csv", ["id", "premise", "hypothesis", "label"], rows)
    held = _write_csv(tmp_path / "validation.csv", ["id", "premise", "hypothesis", "label"], rows[:4])
    for name in (str(tmp_path), f"{train},{held}"):
        task = load_task(name)
        assert task.kind == "text" and task.label_names == ["neg", "pos"] and task.metric == "accuracy"
        assert len(task.train) == 10 and len(task.eval) == len(task.test) == 2
        assert task.train.texts[1] == ("first 1", "second 1") and task.train.labels[:2].tolist() == [1, 0]
        assert "premise, hypothesis" in task.description


def test_sentence1_sentence2_take_precedence(tmp_path):
    rows = [("x", f"a{i}", f"b{i}", i % 2) for i in range(6)]
    path = _write_csv(tmp_path / "data.csv", ["title", "sentence1", "sentence2", "label"], rows)
    task = load_task(f"{path},{path}")
    assert task.train.texts[0] == ("a0", "b0") and task.label_names == ["0", "1"]


def test_json_and_jsonl_with_int_labels_renumbered(tmp_path):
    records = [{"sentence": f"text {i}", "label": 1 + i % 3} for i in range(9)]
    (tmp_path / "train.json").write_text(json.dumps(records))
    (tmp_path / "dev.jsonl").write_text("\n".join(json.dumps(r) for r in records[:3]) + "\n")
    task = load_task(str(tmp_path))
    assert task.label_names == ["1", "2", "3"] and task.train.labels[:3].tolist() == [0, 1, 2]
    assert task.train.texts[0] == ("text 0",) and len(task.eval) + len(task.test) == 3
    (tmp_path / "cols.json").write_text(json.dumps({"text": ["a", "b"], "label": ["x", "y"]}))
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": [{"text": "c", "label": "y"}, {"text": "d", "label": "x"}]}))
    both = load_task(f"{tmp_path / 'cols.json'},{tmp_path / 'wrapped.json'}")
    assert both.train.texts == [("a",), ("b",)] and sorted(both.eval.labels.tolist() + both.test.labels.tolist()) == [0, 1]
    (tmp_path / "flags.jsonl").write_text('{"text": "a", "label": true}\n{"text": "b", "label": false}\n')
    assert load_task(str(tmp_path / "flags.jsonl") + "," + str(tmp_path / "flags.jsonl")).label_names == ["False", "True"]


def test_tsv_float_labels_are_a_regression(tmp_path):
    rows = [(f"s{i}", f"t{i}", i * 0.5) for i in range(6)]
    path = _write_csv(tmp_path / "sts.tsv", ["sentence1", "sentence2", "label"], rows, sep="\t")
    task = load_task(f"{path},{path}")
    assert task.is_regression and task.num_labels == 1 and task.metric == "spearmanr"
    assert task.train.labels.dtype == torch.float32 and task.train.labels[3].item() == 1.5


def test_single_file_gets_a_fixed_stratified_split(tmp_path):
    path = _write_csv(tmp_path / "all.csv", ["text", "label"], [(f"t{i}", "ab"[i % 2]) for i in range(40)])
    a, b = load_task(str(path)), load_task(str(path), seed=9)
    assert (len(a.train), len(a.eval), len(a.test)) == (36, 2, 2) and a.eval.texts == b.eval.texts
    assert torch.bincount(a.eval.labels).tolist() == torch.bincount(a.test.labels).tolist() == [1, 1]
    assert not set(a.train.texts) & set(a.eval.texts + a.test.texts) and not set(a.eval.texts) & set(a.test.texts)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "holds no examples"),
        ("text,label\n", "holds no examples"),
        ("text,target\nhello,1\nbye,0\n", "no 'label' column .*columns: text, target"),
        ("text,label\nhello,1\nbye,\n", "example 2 has a bad label"),
        ("text,label\nhello,a\nbye,a\n", "single class 'a'"),
        ("id,label\n1,a\n2,b\n", "no text column"),
        ("text,label\nhi,nan\nbye,1\n", "non-finite"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TaskError, match=message):
        load_task(f"{path},{path}")


def test_unreadable_files(tmp_path):
    with pytest.raises(TaskError, match="data file not found"):
        load_task(f"{tmp_path / 'missing.csv'},{tmp_path / 'missing.csv'}")
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(TaskError, match="cannot read"):
        load_task(str(broken))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    with pytest.raises(TaskError, match="not UTF-8"):
        load_task(str(latin))
    scalars = tmp_path / "scalars.jsonl"
    scalars.write_text("1\n2\n")
    with pytest.raises(TaskError, match="not an object"):
        load_task(str(scalars))
    (tmp_path / "train.csv").write_text("text,label\na,1\n")
    with pytest.raises(TaskError, match="needs train.EXT and validation.EXT"):
        load_task(str(tmp_path))


# --- registry errors and GLUE --------------------------------------------------------------------


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(TaskError, match="unknown task 'tweets'.*tweet-sentiment.*mrpc.*label"):
        load_task("tweets")


@pytest.mark.parametrize("kw", [{"max_train": 0}, {"max_train": -5}, {"max_eval": 0}, {"max_train": 2.5}, {"seed": -1}])
def test_bad_limits_and_seed(kw):
    with pytest.raises(TaskError, match="max_train|max_eval|seed"):
        load_task("reuters-r8", **kw)


def test_glue_without_datasets_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(TaskError, match="needs the `datasets` library.*pip install datasets.*train.csv,validation.csv"):
        load_task("mrpc")


def test_glue_offline_hub_error_is_wrapped(monkeypatch):
    def fail(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fail))
    with pytest.raises(TaskError, match="could not load GLUE task 'rte'.*hub unreachable.*HF_HUB_OFFLINE"):
        load_task("rte")


def test_glue_rows_become_a_task(monkeypatch):
    rows = {"sentence1": ["a", "b", "c"], "sentence2": ["x", "y", "z"], "label": [1, 0, 1]}
    stsb = {"sentence1": ["a", "b"], "sentence2": ["x", "y"], "label": [4.5, 0.25]}

    def load_dataset(path, name):
        data = stsb if name == "stsb" else rows
        return {"train": data, "validation": data}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    mrpc = load_task("MRPC", max_train=2)
    assert mrpc.label_names == ["not_equivalent", "equivalent"] and mrpc.metric == "f1"
    assert len(mrpc.train) == 2 and len(mrpc.eval) + len(mrpc.test) == 3
    sts = load_task("stsb")
    assert sts.is_regression and sts.train.labels.dtype == torch.float32 and sts.metric == "spearmanr"


def _write_idx(path, array):
    header = struct.pack(f">{array.ndim + 1}i", 2051 if array.ndim == 3 else 2049, *array.shape)
    path.write_bytes(gzip.compress(header + array.numpy().tobytes()))


def test_fashion_mnist_reads_idx_files_from_the_override_folder(monkeypatch, tmp_path):
    for part, n in (("train", 5), ("t10k", 3)):
        _write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", torch.full((n, 28, 28), 255, dtype=torch.uint8))
        _write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", torch.arange(n, dtype=torch.uint8))
    monkeypatch.setenv(FASHION_ENV, str(tmp_path))
    task = load_task("fashion-mnist", max_eval=1)
    assert (len(task.train), len(task.eval), len(task.test)) == (5, 1, 1) and task.train.labels.tolist() == [0, 1, 2, 3, 4]
    assert task.train.images.shape == (5, 1, 28, 28) and torch.all(task.train.images == 1.0)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(8)))
    with pytest.raises(TaskError, match="not an IDX file"):
        load_task("fashion-mnist")


def test_fashion_mnist_missing_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv(FASHION_ENV, str(tmp_path))
    with pytest.raises(TaskError, match="apt-get install dataset-fashion-mnist"):
        load_task("fashion-mnist")


# --- metrics -------------------------------------------------------------------------------------


def _task(metric, label_names=("a", "b")):
    split = Split(labels=torch.tensor([0]), texts=[("x",)])
    return Task("t", "text", list(label_names), metric, split, split, "test")


def test_accuracy_and_logits():
    m = compute_metrics(_task("accuracy", "abc"), torch.tensor([0, 1, 2, 1]), torch.tensor([0, 2, 2, 1]))
    assert m == {"accuracy": 0.75}
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    assert compute_metrics(_task("accuracy", "abc"), logits, torch.tensor([0, 1])) == {"accuracy": 0.5}


def test_f1_and_accuracy_for_paraphrase_tasks():
    pred, label = torch.tensor([1, 1, 0, 0, 1]), torch.tensor([1, 0, 0, 1, 1])
    m = compute_metrics(_task("f1"), pred, label)  # tp 2, fp 1, fn 1
    assert m["f1"] == pytest.approx(4 / 6) and m["accuracy"] == pytest.approx(3 / 5)
    assert compute_metrics(_task("f1"), torch.zeros(3, dtype=torch.long), torch.tensor([0, 1, 0]))["f1"] == 0.0


def test_matthews_correlation():
    task = _task("matthews_correlation")
    pred, label = torch.tensor([1, 1, 0, 0, 1]), torch.tensor([1, 0, 0, 1, 1])
    assert compute_metrics(task, pred, label) == {"matthews_correlation": pytest.approx(1 / 6)}  # (2*1-1*1)/sqrt(3*3*2*2)
    negative = compute_metrics(task, torch.tensor([1, 0, 1, 1]), torch.tensor([1, 1, 1, 0]))
    assert negative["matthews_correlation"] == pytest.approx(-1 / 3)  # sklearn's documented example
    assert compute_metrics(task, torch.ones(4, dtype=torch.long), torch.tensor([1, 0, 1, 0]))["matthews_correlation"] == 0.0
    three = compute_metrics(_task("matthews_correlation", "abc"), torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 0]))
    assert three["matthews_correlation"] == pytest.approx(1.0)


def test_pearson_and_spearman_with_ties():
    task = _task("spearmanr", ())
    m = compute_metrics(task, torch.tensor([[1.0], [2.0], [3.0], [4.0]]), torch.tensor([2.0, 4.0, 5.0, 9.0]))
    assert m["pearson"] == pytest.approx(11 / 130**0.5) and m["spearmanr"] == pytest.approx(1.0)
    m = compute_metrics(task, torch.tensor([1.0, 2.0, 2.0, 3.0]), torch.tensor([1.0, 3.0, 2.0, 4.0]))
    assert m["spearmanr"] == pytest.approx(4.5 / 22.5**0.5)  # ranks 1, 2.5, 2.5, 4 against 1, 3, 2, 4
    assert compute_metrics(task, torch.ones(3), torch.tensor([1.0, 2.0, 3.0])) == {"pearson": 0.0, "spearmanr": 0.0}


def test_metric_input_errors():
    with pytest.raises(ValueError, match="one prediction per label"):
        compute_metrics(_task("accuracy"), torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(_task("bleu"), torch.tensor([0]), torch.tensor([0]))


@pytest.mark.parametrize("max_eval, subsampled, more", [(6, 0, 0), (5, 2, 0), (7, 0, 2), (None, 0, 0)])
def test_a_split_is_noted_as_subsampled_only_when_it_was(tmp_path, max_eval, subsampled, more):
    (tmp_path / "train.csv").write_text("sentence,label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(20)))
    (tmp_path / "validation.csv").write_text("sentence,label\n" + "".join(f"held {i},{'ab'[i % 2]}\n" for i in range(12)))
    task = load_task(str(tmp_path), max_eval=max_eval)
    assert (len(task.eval), len(task.test)) == (min(6, max_eval or 6),) * 2
    assert sum("subsampled" in n for n in task.notes) == subsampled and sum("is more than" in n for n in task.notes) == more
