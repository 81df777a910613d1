"""One trial is a function of its configuration: same seed, same result, caller's RNG untouched."""

import math

import torch

from intrinsic_dim.models import load_model
from intrinsic_dim.tasks.base import Split, Task, train_sample
from intrinsic_dim.train import TrialConfig, evaluate, run_trial, train_model


def _task():
    texts = [("good day",), ("bad day",), ("lovely film",), ("awful film",)] * 8
    labels = torch.tensor([1, 0, 1, 0] * 8)
    split = Split(labels=labels, texts=texts)
    return Task(name="toy", kind="text", label_names=["neg", "pos"], metric="accuracy", train=split, eval=split, description="toy")


def test_trial_is_reproducible_with_dropout_and_leaves_global_rng_alone():
    task = _task()
    factory = lambda seed: load_model("bert-tiny-random", task, seed=seed, max_length=8)  # noqa: E731
    cfg = TrialConfig(d=50, seed=1, max_steps=6, batch_size=8, lr=0.3)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = run_trial(factory, task, cfg, progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(999)
    b = run_trial(factory, task, cfg, progress=False)
    assert a.ok and b.ok and math.isfinite(a.train_loss)
    assert (a.train_loss, a.metric, a.curve) == (b.train_loss, b.metric, b.curve)


def _held_out_task():
    task = _task()
    held = Split(labels=torch.tensor([1, 0, 1, 0]), texts=[("good film",), ("bad film",), ("lovely day",), ("awful day",)])
    task.eval, task.test = held.subset([0, 1]), held.subset([2, 3])
    return task


def test_trial_trains_its_whole_budget_and_reports_the_selected_checkpoint_on_test(monkeypatch):
    """Validation scores are scripted (0.2, 0.9, 0.1, 0.3): 'best' must restore the weights of the
    second evaluation and 'final' keep the last, and the test metric is that checkpoint's."""
    import intrinsic_dim.train as train

    task = _held_out_task()
    for select, pick in (("best", 1), ("final", 3)):
        loaded = load_model("bert-tiny-random", task, seed=0, max_length=8)
        script, seen = iter([0.2, 0.9, 0.1, 0.3]), []

        def scripted(model, loaded_, task_, split=None, batch_size=128):
            if split is None or split is task_.eval:
                seen.append([p.detach().clone() for p in model.trainable_parameters()])
                return {"accuracy": next(script)}
            return evaluate(model, loaded_, task_, split, batch_size)

        monkeypatch.setattr(train, "evaluate", scripted)
        cfg = TrialConfig(d=50, seed=0, max_steps=8, eval_every=2, batch_size=8, lr=0.5, select=select, select_examples=None,
                          gap_examples=None)  # every evaluation on the whole validation split; a training sample as large as test
        model, res = train_model(loaded, task, cfg, progress=False)
        monkeypatch.undo()
        assert res.ok and res.steps == 8 and res.curve == [(2, 0.2), (4, 0.9), (6, 0.1), (8, 0.3)]
        assert res.val_metric == [0.2, 0.9, 0.1, 0.3][pick]
        assert not torch.equal(seen[1][0], seen[3][0])
        assert all(torch.equal(p, q) for p, q in zip(model.trainable_parameters(), seen[pick]))
        assert evaluate(model, loaded, task, task.test)["accuracy"] == res.metric == res.metrics["accuracy"]
        assert res.train_sample == "random 2 of 32"
        assert res.train_metric == evaluate(model, loaded, task, train_sample(task.train, 2))["accuracy"]


def test_the_training_sample_is_drawn_from_the_whole_split_not_its_head():
    """mnist-5k's and tweet-sentiment's files are sorted by label: their first 500 examples are one or two
    classes, so the sample behind the train - test gap must be drawn across the split (and the same every time)."""
    split = Split(labels=torch.arange(10).repeat_interleave(400), images=torch.zeros(4000, 1))
    sample = train_sample(split, 500)
    counts = torch.bincount(sample.labels, minlength=10)
    assert len(sample) == 500 and counts.min() >= 30 and counts.max() <= 70
    assert torch.equal(train_sample(split, 500).labels, sample.labels)
    assert len(train_sample(split, 5000)) == 4000


def test_every_example_is_seen_once_per_epoch():
    from intrinsic_dim.train import _batches

    batches = _batches(10, 4, torch.Generator().manual_seed(0))
    epoch = [next(batches) for _ in range(3)]
    assert [len(b) for b in epoch] == [4, 4, 2] and sorted(sum(epoch, [])) == list(range(10))


def test_absurd_finite_loss_is_a_divergence():
    """An FC net (no normalisation) at a huge rate reaches finite losses of ~1e6: diverged, not 'ok'."""
    images = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    split = Split(labels=torch.arange(64) % 10, images=images)
    task = Task(name="img", kind="image", label_names=[str(i) for i in range(10)], metric="accuracy", train=split, eval=split,
                description="random images")
    factory = lambda seed: load_model("fc-784-200-200-10", task, seed=seed)  # noqa: E731
    res = run_trial(factory, task, TrialConfig(d=50, seed=0, max_steps=30, batch_size=16, lr=1e3, said=False), progress=False)
    assert res.status == "diverged" and "loss became" in res.error and "nan" not in res.error and "inf" not in res.error


def test_a_trial_has_one_key_whether_numbers_come_as_int_or_float():
    from intrinsic_dim.store import config_key

    assert config_key(TrialConfig(d=10, epochs=30, lr=1, warmup=0).to_dict()) == config_key(
        TrialConfig(d=10, epochs=30.0, lr=1.0, warmup=0.0).to_dict()
    )


def test_an_explicit_evaluation_budget_selects_on_a_subset_and_skips_the_gap_sample(monkeypatch):
    """select_examples: checkpoints are compared on a fixed subset of validation, and the chosen one is measured on
    the whole split once; gap_examples 0: no training-sample evaluation. The old settings (whole split, a sample as
    large as test) leave a trial's key as stores written before them hold it; the new defaults are part of the key."""
    import intrinsic_dim.train as train

    task = _task()
    sizes = []

    def counting(model, loaded_, task_, split=None, batch_size=128):
        sizes.append(len(split if split is not None else task_.eval))
        return evaluate(model, loaded_, task_, split, batch_size)

    monkeypatch.setattr(train, "evaluate", counting)
    loaded = load_model("bert-tiny-random", task, seed=0, max_length=8)
    cfg = TrialConfig(d=50, seed=0, max_steps=4, eval_every=2, batch_size=8, lr=0.5, select_examples=10, gap_examples=0)
    _, res = train_model(loaded, task, cfg, progress=False)
    assert res.ok and sizes == [10, 10, 32, 32]  # two selections on the subset, validation once, test once
    assert math.isnan(res.train_metric) and res.train_sample == ""
    old = TrialConfig(d=50, select_examples=None, gap_examples=None).to_dict()
    assert "select_examples" not in old and "gap_examples" not in old
    assert TrialConfig(d=50).to_dict()["select_examples"] == 250 and TrialConfig(d=50).to_dict()["gap_examples"] == 0




def test_evaluation_batches_text_by_length_and_scores_each_example_where_it_stands(monkeypatch):
    """Padded text is evaluated shortest first (fewer padded tokens), and every prediction goes back to its own
    example: the logits of batches of 3 equal those of each example alone (no padding at all), and a model that
    names each example's first token scores every example right."""
    import intrinsic_dim.train as train
    from intrinsic_dim.models.base import LoadedModel
    from intrinsic_dim.train import eval_order

    texts = [("a rather long sentence about a lovely film indeed",), ("bad",), ("good day",), ("an awful film",),
             ("ok",), ("it was a day like any other day",), ("fine film",), ("so so",)]
    task = _task()
    loaded = load_model("bert-tiny-random", task, seed=3, max_length=16)
    first = [int(loaded.encode(Split(labels=torch.zeros(1), texts=[t]), [0])["input_ids"][0, 1]) for t in texts]
    split = Split(labels=torch.tensor(first), texts=texts)
    lengths, order = loaded.encode.lengths(split), eval_order(loaded, split)
    assert lengths.tolist() == [int(loaded.encode(split, [i])["attention_mask"].sum()) for i in range(len(texts))]
    assert lengths[order].tolist() == sorted(lengths.tolist()) and order.tolist() != list(range(len(texts)))
    assert eval_order(LoadedModel("img", loaded.model, lambda s, i: {}, kind="image"), split).tolist() == list(range(len(texts)))

    logits = []
    real_logits = train._logits
    monkeypatch.setattr(train, "_logits", lambda out: logits.append(real_logits(out)) or logits[-1])
    evaluate(loaded.model, loaded, task, split, batch_size=3)
    batched = torch.cat(logits)[torch.argsort(order)]
    logits.clear()
    for i in range(len(texts)):
        evaluate(loaded.model, loaded, task, split.subset([i]), batch_size=1)
    assert torch.allclose(batched, torch.cat(logits), atol=1e-5), (batched - torch.cat(logits)).abs().max()

    class NamesFirstToken(torch.nn.Module):
        def forward(self, input_ids, **_):
            return torch.nn.functional.one_hot(input_ids[:, 1], 30522).float()

    names_first_token = NamesFirstToken()
    echo = LoadedModel("echo", names_first_token, loaded.encode)
    named = Task(name="first-token", kind="text", label_names=[str(k) for k in range(30522)], metric="accuracy", train=split,
                 eval=split, description="toy")
    assert len(set(first)) == len(texts) and evaluate(names_first_token, echo, named, split, batch_size=3)["accuracy"] == 1.0


def test_a_trial_records_the_machine_it_ran_on(monkeypatch):
    """The store keeps what a trial's float32 digits depend on: the processor (and its vector instructions), torch's
    thread count and build; a crashed trial too, so a reader can tell which machine to rerun it on."""
    from intrinsic_dim import machine

    task = _task()
    factory = lambda seed: load_model("bert-tiny-random", task, seed=seed, max_length=8)  # noqa: E731
    cfg = TrialConfig(d=50, seed=0, max_steps=2, batch_size=8, lr=0.3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_trial(factory, task, cfg, progress=False)
        here = machine.describe(torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    assert one.ok and one.machine == here != ""
    assert machine.cpu_model() in one.machine and "; 1 thread; torch " + torch.__version__ in one.machine
    monkeypatch.setattr("intrinsic_dim.train.build", lambda loaded, cfg: 1 / 0)
    crashed = run_trial(factory, task, cfg, progress=False)
    assert crashed.status == "failed" and crashed.machine == machine.describe()
