"""Causal LMs and generative tasks: exact z = 0, tied weights once, loss on completion tokens only,
the lower-is-better threshold rule, and `measure --method lora` end to end on tiny budgets."""

from __future__ import annotations

import json
import math

import pytest
import torch

import intrinsic_dim as idim
from intrinsic_dim.cli import main
from intrinsic_dim.generative import lm_loss, token_nll
from intrinsic_dim.results import TrialResult
from intrinsic_dim.search import measure_d90, passes, threshold
from intrinsic_dim.tasks import Split, Task, load_task
from intrinsic_dim.tasks.encoders import IGNORE_INDEX
from intrinsic_dim.train import TrialConfig

pytest.importorskip("transformers")
pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def gen_task() -> Task:
    return load_task("tweet-sentiment-gen", max_train=24, max_eval=12)


@pytest.fixture
def tiny_llama(gen_task):
    from intrinsic_dim.models import load_model

    return load_model("llama-tiny-random", gen_task, seed=0, max_length=48)


def test_tiny_llama_ties_embeddings_and_counts_them_once(tiny_llama):
    model = tiny_llama.model
    assert model.lm_head.weight is model.model.embed_tokens.weight
    unique = sum(p.numel() for p in dict(model.named_parameters()).values())
    assert unique < sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    sm = idim.SubspaceModel(model, d=100, said=False, seed=0)
    assert sm.D == unique
    assert sum(name.endswith("embed_tokens.weight") or name.endswith("lm_head.weight") for name in sm._names) == 1
    with torch.no_grad():
        sm.z.normal_()
    with sm.merged():
        assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)  # one projected tensor serves both


def test_any_causal_lm_folder_loads_for_a_generative_task(tmp_path, tiny_llama, gen_task):
    from intrinsic_dim.models import load_model

    tiny_llama.model.save_pretrained(tmp_path)
    tiny_llama.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), gen_task, max_length=48)
    assert loaded.kind == "generative" and type(loaded.model).__name__ == "LlamaForCausalLM"
    batch = loaded.encode(gen_task.train, range(2))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    assert torch.equal(loaded.model(**inputs).logits, tiny_llama.model(**inputs).logits)


@pytest.mark.parametrize("said", [False, True])
def test_zero_z_reproduces_the_base_causal_lm_exactly(tiny_llama, gen_task, said):
    batch = tiny_llama.encode(gen_task.train, range(4))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    want = tiny_llama.model(**inputs).logits
    sm = idim.SubspaceModel(tiny_llama.model, d=200, said=said, seed=3)
    assert torch.equal(sm(**inputs).logits, want)
    with sm.merged():
        assert torch.equal(sm(**inputs).logits, want)


def test_loss_is_on_the_completion_tokens_only(tiny_llama, gen_task):
    enc = tiny_llama.encode
    tok = tiny_llama.tokenizer
    batch = enc.pairs(["Tweet: good day\nSentiment:", "a much longer prompt that gets padded less: bad"], [" positive", " negative"])
    completion = tok(" positive", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    n_prompt = len(tok("Tweet: good day\nSentiment:")["input_ids"])
    labels = batch["labels"][0]
    assert labels[:n_prompt].eq(IGNORE_INDEX).all()
    assert labels[n_prompt : n_prompt + len(completion)].tolist() == completion
    assert labels[n_prompt + len(completion) :].eq(IGNORE_INDEX).all()
    assert batch["attention_mask"][0].sum() == n_prompt + len(completion)

    model = tiny_llama.model
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    pos = [(i, t) for i in range(2) for t in range(1, logits.shape[1]) if batch["labels"][i, t] != IGNORE_INDEX]
    manual = torch.stack([torch.nn.functional.cross_entropy(logits[i, t - 1], batch["input_ids"][i, t]) for i, t in pos]).mean()
    assert torch.allclose(lm_loss(model, batch), manual, rtol=1e-5)
    total, count = token_nll(logits, batch["labels"])
    assert count.tolist() == [len(completion), len(tok(" negative", add_special_tokens=False)["input_ids"]) + 1]
    everything = torch.nn.functional.cross_entropy(logits[0, : n_prompt + len(completion) - 1], batch["input_ids"][0, 1 : n_prompt + len(completion)])
    assert not torch.allclose(total[0] / count[0], everything)


def test_long_prompts_lose_their_oldest_tokens_and_keep_the_completion(tiny_llama):
    from intrinsic_dim.tasks.encoders import CausalEncoder

    enc = CausalEncoder(tiny_llama.tokenizer, 8, "completion")
    batch = enc.pairs(["one two three four five six seven eight nine ten"], [" positive"])
    assert batch["input_ids"].shape[1] == 8
    assert (batch["labels"][0] != IGNORE_INDEX).sum() == len(tiny_llama.tokenizer(" positive", add_special_tokens=False)["input_ids"]) + 1


def test_messages_use_the_chat_template_and_train_on_the_last_reply(tmp_path, tiny_llama):
    from intrinsic_dim.models import load_model

    rows = [{"messages": [{"role": "user", "content": f"say {i}"}, {"role": "assistant", "content": f"number {i}"}]} for i in range(30)]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = load_task(str(path))
    assert task.kind == "generative" and task.text_format == "messages" and task.metric == "loss" and task.lower_is_better
    loaded = load_model("llama-tiny-random", task, max_length=64)
    batch = loaded.encode(task.train, [0])
    reply = loaded.tokenizer.decode(batch["input_ids"][0][batch["labels"][0] != IGNORE_INDEX])
    assert reply.startswith("number ") and "say" not in reply


def test_bad_generative_files_are_refused_before_any_work(tmp_path):
    from intrinsic_dim.tasks import TaskError

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "completion": "y"}) + "\n" + json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(TaskError, match="example 2"):
        load_task(str(bad))
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(TaskError, match="assistant"):
        load_task(str(chat))


def test_text_file_is_plain_language_modelling(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(f"line {i} of some text" for i in range(40)))
    task = load_task(str(path))
    assert task.text_format == "text" and task.metric == "loss" and len(task.train) == 36


def test_lower_is_better_threshold_is_a_fraction_of_the_improvement_over_the_base():
    assert threshold(0.9, 0.8) == pytest.approx(0.72)
    assert threshold(0.9, 2.0, start=3.0, lower_is_better=True) == pytest.approx(2.1)
    assert passes(2.05, 2.1, True) and not passes(2.15, 2.1, True)
    assert passes(0.75, 0.72) and not passes(0.7, 0.72)
    with pytest.raises(ValueError):
        threshold(0.9, 2.0, lower_is_better=True)


def _loss_task() -> Task:
    split = Split(labels=torch.zeros(4, dtype=torch.int64), texts=[("a",)] * 4)
    return Task(name="synthetic-lm", kind="generative", label_names=[], metric="loss", train=split, eval=split,
                test=split, description="", text_format="text")


def _synthetic_loss(cfg: TrialConfig) -> TrialResult:
    """Base model 3.0, full fine-tuning 2.0, the subspace's loss falling with d: 2.0 + 1.0 / (1 + d / 100)."""
    value = {"base": 3.0, "full": 2.0}.get(cfg.method, 2.0 + 1.0 / (1 + (cfg.d or 0) / 100))
    return TrialResult(config=cfg.to_dict(), status="ok", metric=value, val_metric=value, trainable=cfg.d or 0)


def test_measure_on_a_loss_finds_d90_on_the_improvement_and_records_it(tmp_path):
    res = measure_d90(None, _loss_task(), dims=[10, 100, 1000, 10000], seeds=1, precision=0.05, runner=_synthetic_loss,
                      log=lambda s: None, run_dir=tmp_path)
    # tau = 3 - 0.9 * (3 - 2) = 2.1: 1 / (1 + d / 100) <= 0.1 from d = 900 on
    assert res.lower_is_better and res.base_value == 3.0 and res.threshold == pytest.approx(2.1)
    assert 900 <= res.d90 <= 900 * 1.05 and res.bracket[0] < 900
    assert res.status == "found" and res.trainable_params == res.d90
    assert res.crossing == pytest.approx(900, rel=0.01) and res.crossing < res.d90  # interpolated inside the bracket


def test_on_a_loss_the_lowest_validation_value_wins_checkpoints_and_rates():
    from intrinsic_dim.train import improves

    assert improves(1.9, 2.0, True) and not improves(2.1, 2.0, True) and improves(0.8, 0.7, False)

    def runner(cfg: TrialConfig) -> TrialResult:
        if cfg.method != "subspace":
            return _synthetic_loss(cfg)
        value = 2.0 + abs(math.log10(cfg.lr or 0.1) + 1) * 0.5 + 1.0 / (1 + cfg.d / 100)  # best rate 0.1
        return TrialResult(config=cfg.to_dict(), status="ok", metric=value, val_metric=value, lr=cfg.lr or 0.0)

    res = measure_d90(None, _loss_task(), dims=[10, 100], seeds=1, runner=runner, log=lambda s: None,
                      lr_candidates=[0.01, 0.1, 1.0], lr_search_d=100)
    assert res.lr == 0.1


def test_measure_on_a_loss_refuses_a_baseline_that_did_not_improve():
    from intrinsic_dim.search import BaselineError

    def runner(cfg: TrialConfig) -> TrialResult:
        value = 3.5 if cfg.method == "full" else 3.0
        return TrialResult(config=cfg.to_dict(), status="ok", metric=value, val_metric=value)

    with pytest.raises(BaselineError, match="did not improve"):
        measure_d90(None, _loss_task(), dims=[10], seeds=1, runner=runner, log=lambda s: None)


def _measure_args(tmp_path, *extra):
    return ["measure", "--max-train", "16", "--max-eval", "8", "--max-length", "32", "--max-steps", "2", "--batch-size", "8",
            "--seeds", "1", "--threads", "1", "--quiet", *extra]


def test_measure_method_lora_end_to_end_on_a_causal_lm_resumes_and_reports(tmp_path, capsys):
    rows = [{"prompt": f"Q: {i} plus one?\nA:", "completion": f" {i + 1}"} for i in range(80)]
    data = tmp_path / "sft.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    run = tmp_path / "lora"
    argv = _measure_args(tmp_path, "--model", "llama-tiny-random", "--task", str(data), "--method", "lora", "--dims", "1,4",
                         "--lr", "0.05", "--full-lr", "0.01", "--run-dir", str(run))
    assert main(argv) == 0
    first = json.loads((run / "d90.json").read_text())
    assert first["method"] == "lora" and first["lower_is_better"] and first["metric"] == "loss"
    assert first["base_value"] > first["baseline"] and first["threshold"] == pytest.approx(
        first["base_value"] - 0.9 * (first["base_value"] - first["baseline"]))
    roles = [t["role"] for t in first["trials"]]
    assert roles.count("base") == 1 and roles.count("baseline") == 1
    trainable = {p["d"]: p["trainable"] for p in first["points"]}
    assert trainable[4] == 4 * trainable[1] > 0  # LoRA's A and B grow linearly with the rank
    assert all(t["config"]["method"] == "lora" for t in first["trials"] if t["role"] == "search")
    assert main(argv) == 0  # resumed: the same answer from the store
    again = json.loads((run / "d90.json").read_text())
    assert [p["values"] for p in again["points"]] == [p["values"] for p in first["points"]]
    assert "resumed" in capsys.readouterr().out


def test_measure_method_lora_on_an_encoder_classifier_and_report_on_trainable_parameters(tmp_path):
    common = ["--model", "bert-tiny-random", "--task", "tweet-sentiment", "--baseline", "0.6"]
    said, lora = tmp_path / "said", tmp_path / "lora"
    assert main(_measure_args(tmp_path, *common, "--dims", "100", "--run-dir", str(said))) == 0
    assert main(_measure_args(tmp_path, *common, "--method", "lora", "--dims", "1,2", "--run-dir", str(lora))) == 0
    result = json.loads((lora / "d90.json").read_text())
    trainable = {p["d"]: p["trainable"] for p in result["points"]}
    head = 32 * 3 + 3  # the classifier head is trained whole, as PEFT's SEQ_CLS does
    assert trainable[2] - head == 2 * (trainable[1] - head)
    assert main(["report", str(said), str(lora), "--out", str(tmp_path / "both")]) == 0
    assert (tmp_path / "both" / "params.png").is_file() and (tmp_path / "both" / "params.pdf").is_file()
    text = (tmp_path / "both" / "report.md").read_text()
    assert "LoRA" in text and "SAID" in text and "trained params" in text


def test_summary_rows_carry_method_and_trainable_params():
    from intrinsic_dim.experiment import summary_row

    r = {"model": "m", "task": "t", "method": "lora", "trainable_params": 448, "n_train": 10, "baseline": 1.0,
         "baseline_source": "given", "threshold": 0.9, "d90": 2, "crossing": 2.0, "status": "found", "points": [],
         "trials": [], "compute_s": 1.0}
    row = summary_row("lora", r)
    assert row["method"] == "lora" and row["trainable_params"] == 448


def test_lora_without_peft_says_how_to_install(monkeypatch, gen_task, tiny_llama):
    import builtins

    from intrinsic_dim.train import train_model

    real = builtins.__import__

    def no_peft(name, *args, **kwargs):
        if name == "peft":
            raise ImportError("no peft")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    with pytest.raises(ValueError, match="peft=="):
        train_model(tiny_llama, gen_task, TrialConfig(method="lora", d=2, max_steps=1), progress=False)


def test_generative_tweets_score_label_words_and_lora_trains_deterministically(gen_task):
    pytest.importorskip("peft")
    from intrinsic_dim.models import load_model
    from intrinsic_dim.train import train_model

    cfg = TrialConfig(method="lora", d=2, max_steps=2, batch_size=8)
    runs = [train_model(load_model("llama-tiny-random", gen_task, seed=0, max_length=48), gen_task, cfg, progress=False)[1]
            for _ in range(2)]
    assert runs[0].ok and 0.0 <= runs[0].metric <= 1.0 and set(runs[0].metrics) == {"accuracy", "loss", "perplexity"}
    assert runs[0].metric == runs[1].metric and runs[0].train_loss == runs[1].train_loss
    assert math.isfinite(runs[0].train_loss)


def test_train_and_evaluate_a_subspace_adapter_on_a_generative_task(tmp_path, capsys):
    rows = [{"prompt": f"Q: {i} plus one?\nA:", "completion": f" {i + 1}"} for i in range(40)]
    data = tmp_path / "sft.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    adapter = tmp_path / "adapter"
    assert main(["train", "--model", "llama-tiny-random", "--task", str(data), "--d", "100", "--max-steps", "2",
                 "--batch-size", "4", "--max-train", "8", "--max-eval", "4", "--max-length", "32", "--threads", "1",
                 "--quiet", "--out", str(adapter)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--adapter", str(adapter), "--max-eval", "4", "--threads", "1"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["model"] == "llama-tiny-random" and metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))


@pytest.mark.parametrize("max_length", [6, 12, 48])
@pytest.mark.parametrize("choices, n_lengths", [
    ([" negative", " neutral", " positive"], 1),  # one token each, as the packaged task's label words
    ([" no way", " yes sure", " maybe not"], 1),  # several tokens each, sharing one cached prompt
    ([" no", " yes, of course", " maybe not", " x"], 3),  # different lengths: prompts truncated differently
])
@pytest.mark.parametrize("wrap", ["plain", "subspace", "lora"])
def test_cached_choice_scores_match_one_full_pass_per_choice(gen_task, max_length, choices, n_lengths, wrap):
    """The prompt run once with its cache scores every choice as the plain per-choice passes do: single- and
    multi-token choices of different lengths, prompts truncated to fit, through the subspace and LoRA wrappers."""
    from intrinsic_dim.generative import choice_scores, choice_scores_reference
    from intrinsic_dim.models import load_model
    from intrinsic_dim.train import build

    loaded = load_model("llama-tiny-random", gen_task, seed=0, max_length=max_length)
    model = loaded.model
    with torch.no_grad():  # larger layer weights, so that a score depends on the context and the positions
        for name, p in model.named_parameters():
            if ".layers." in name and "norm" not in name:
                p.mul_(10.0)
    if wrap != "plain":
        if wrap == "lora":
            pytest.importorskip("peft")
        model = build(loaded, TrialConfig(method="lora" if wrap == "lora" else "subspace", d=2 if wrap == "lora" else 50, seed=1))[0]
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    model.eval()
    prompts = [gen_task.eval.texts[i][0] for i in range(3)] + ["Hi", "the cat sat on", "zebra", "one two three four five six seven"]
    lengths = {len(loaded.encode.target_ids(c)) for c in choices}
    assert len(lengths) == n_lengths
    with torch.no_grad():
        fast = choice_scores(model, loaded, prompts, choices)
        plain = choice_scores_reference(model, loaded, prompts, choices)
    assert fast.shape == (len(prompts), len(choices)) and torch.isfinite(fast).all()
    assert (plain[3:] - plain[3]).abs().max() > 0.01  # the short prompts are scored differently
    torch.testing.assert_close(fast, plain.float(), rtol=1e-4, atol=1e-4)


def test_a_label_word_task_reports_the_true_completions_loss(gen_task, tiny_llama):
    """Scoring the label words also gives the loss of the true completion per target token: the same number
    the training loss computes on that completion."""
    from intrinsic_dim.generative import batch_nll, evaluate_generative

    model = tiny_llama.model.eval()
    split = gen_task.eval
    metrics = evaluate_generative(model, tiny_llama, gen_task, split, batch_size=5)
    with torch.no_grad():
        nll, count = batch_nll(model, tiny_llama.encode(split, range(len(split))))
    assert set(metrics) == {"accuracy", "loss", "perplexity"}
    assert metrics["loss"] == pytest.approx(nll.sum().item() / count.sum().item(), rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))


def test_measure_on_the_loss_of_a_label_word_task(tmp_path, capsys):
    run = tmp_path / "loss"
    argv = _measure_args(tmp_path, "--model", "llama-tiny-random", "--task", "tweet-sentiment-gen", "--metric", "loss",
                         "--dims", "100", "--lr", "0.05", "--full-lr", "0.01", "--run-dir", str(run))
    assert main(argv) == 0
    r = json.loads((run / "d90.json").read_text())
    assert r["metric"] == "loss" and r["lower_is_better"] and r["chance"] is None
    assert r["threshold"] == pytest.approx(r["base_value"] - 0.9 * (r["base_value"] - r["baseline"]))
    assert any("metric: loss" in n for n in r["notes"])
    capsys.readouterr()
    # a resume must ask for the same metric: the stored trials selected their checkpoints on the loss
    assert main(_measure_args(tmp_path, "--model", "llama-tiny-random", "--task", "tweet-sentiment-gen", "--dims", "100",
                              "--lr", "0.05", "--full-lr", "0.01", "--run-dir", str(run))) != 0
    assert "{'metric': ('loss', None)}" in capsys.readouterr().err


@pytest.mark.parametrize("task, metric", [("tweet-sentiment", "loss"), ("tweet-sentiment-gen", "f1")])
def test_a_metric_the_task_does_not_offer_is_refused_before_any_work(tmp_path, task, metric, capsys):
    run = tmp_path / "run"
    assert main(["measure", "--model", "bert-tiny-random", "--task", task, "--metric", metric, "--threads", "1", "--run-dir", str(run)]) != 0
    err = capsys.readouterr().err
    assert f"--metric {metric}" in err and "pick one of those" in err
    assert not run.exists()


@pytest.mark.parametrize("n, small", [(80, True), (250, False)])
def test_a_generative_file_with_a_tiny_held_out_split_is_noted_once(tmp_path, n, small):
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps({"prompt": f"Q: {i}?\nA:", "completion": f" {i}"}) + "\n" for i in range(n)))
    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"line {i} of the corpus\n" for i in range(n)))
    for path in (sft, text):
        notes = [m for m in load_task(str(path), max_eval=1000).notes if "held-out examples" in m]
        assert notes == ([f"{path}: only {n // 10} held-out examples, halved into validation and test: their losses are too "
                          "few to tell trials apart reliably; hold out at least 20 (more data, or a larger EVAL file)"]
                         if small else [])
