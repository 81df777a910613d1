"""`intrinsic-dim pretrain`: masking, checkpoints, determinism, exact resume after a kill, use by `measure`."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from intrinsic_dim.cli import main
from intrinsic_dim.pretrain import (
    SIZES, PretrainConfig, PretrainError, checkpoint_info, checkpoints, mask_tokens, mlm_loss, non_embedding_params, pretrain, read_corpus,
    train_wordpiece,
)

pytest.importorskip("transformers")

WORDS = "the cat sat on a mat and dog ran far away from home into night while birds sang songs of old times".split()
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    rng = random.Random(0)
    path.write_text("\n\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80))) for _ in range(120)))
    return path


def _tiny(corpus, out, *extra):
    return ["pretrain", "--size", "custom", "--layers", "2", "--hidden", "32", "--heads", "2", "--intermediate", "64",
            "--corpus", str(corpus), "--max-length", "32", "--batch-size", "8", "--eval-blocks", "8", "--lr", "2e-3",
            "--threads", "1", "--quiet", "--out", str(out), *extra]


def _weights(ckpt):
    return (Path(ckpt) / "model.safetensors").read_bytes()


def test_size_table_matches_the_models():
    from transformers import BertConfig, BertModel

    for name, (layers, hidden, heads, inter) in SIZES.items():
        if layers * hidden > 1024:
            continue
        model = BertModel(BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                     intermediate_size=inter), add_pooling_layer=False)
        assert sum(p.numel() for p in model.encoder.parameters()) == non_embedding_params(layers, hidden, inter), name


def test_mask_tokens_rates_and_specials():
    special = [0, 100, 101, 102, 103]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (256, 128), generator=g)
    ids[:, 0], ids[:, -1], ids[::3, 60] = 101, 102, 0
    inputs, labels = mask_tokens(ids, special, 103, 30522, torch.Generator().manual_seed(1), 0.15)
    target = labels != -100
    is_special = torch.isin(ids, torch.tensor(special))
    assert not (target & is_special).any() and torch.equal(inputs[is_special], ids[is_special])
    assert torch.equal(labels[target], ids[target]) and torch.equal(inputs[~target], ids[~target])
    assert target.sum() / (~is_special).sum() == pytest.approx(0.15, abs=0.005)
    n = target.sum()
    masked = inputs[target] == 103
    kept = inputs[target] == ids[target]
    swapped = target & (inputs != 103) & (inputs != ids)
    assert masked.sum() / n == pytest.approx(0.8, abs=0.015) and kept.sum() / n == pytest.approx(0.1, abs=0.012)
    assert swapped.sum() / n == pytest.approx(0.1, abs=0.012)
    assert not torch.isin(inputs[swapped], torch.tensor(special)).any()
    again = mask_tokens(ids, special, 103, 30522, torch.Generator().manual_seed(1), 0.15)
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)


def test_mlm_loss_without_targets_is_zero_not_nan():
    from transformers import BertConfig, BertForMaskedLM

    model = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).eval()
    ids = torch.randint(5, 50, (2, 6))
    loss = mlm_loss(model, ids, torch.full_like(ids, -100))
    loss.backward()
    assert loss.item() == 0.0
    labels = torch.full_like(ids, -100)
    labels[0, 2] = ids[0, 2]
    reference = model(input_ids=ids, labels=labels).loss
    assert mlm_loss(model, ids, labels).item() == pytest.approx(reference.item(), rel=1e-6)


def test_tiny_run_writes_checkpoints_logs_and_plot(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert main(_tiny(corpus, out, "--max-steps", "25", "--save-every", "10", "--save-at", "3")) == 0
    assert "held-out MLM loss" in capsys.readouterr().out
    ckpts = checkpoints(out)
    assert [p.name for p in ckpts] == ["checkpoint-0", "checkpoint-3", "checkpoint-10", "checkpoint-20", "checkpoint-25"]
    for p in ckpts:
        assert {"config.json", "model.safetensors", "tokenizer_config.json", "trainer_state.json"} <= {f.name for f in p.iterdir()}
    assert [p.name for p in ckpts if (p / "training_state.pt").exists()] == ["checkpoint-25"]
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 26))
    points = json.loads((out / "checkpoints.json").read_text())
    assert [p["step"] for p in points] == [0, 3, 10, 20, 25] and points[0]["train_loss"] is None
    assert points[-1]["eval_loss"] < points[0]["eval_loss"]
    assert (out / "loss.png").stat().st_size > 10_000 and (out / "loss.pdf").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["non_embedding_params"] == non_embedding_params(2, 32, 64) and summary["tokens_per_s"] > 0
    info = checkpoint_info(ckpts[1])
    assert info["step"] == 3 and info["eval_loss"] == points[1]["eval_loss"] and info["tokens"] == 3 * 8 * 32
    assert checkpoint_info(out) is None and checkpoint_info("minilm-l6") is None
    config = json.loads((ckpts[-1] / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"] and config["num_hidden_layers"] == 2


def test_same_seed_same_bits_other_seed_other_bits(tmp_path, corpus):
    runs = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert main(_tiny(corpus, tmp_path / name, "--max-steps", "12", "--save-every", "6", "--seed", seed)) == 0
        runs[name] = [_weights(p) for p in checkpoints(tmp_path / name)]
    assert runs["a"] == runs["b"] and len(runs["a"]) == 3
    assert all(x != y for x, y in zip(runs["a"], runs["c"]))


def test_stop_at_then_resume_equals_one_run(tmp_path, corpus, capsys):
    assert main(_tiny(corpus, tmp_path / "one", "--max-steps", "16", "--save-every", "5")) == 0
    two = _tiny(corpus, tmp_path / "two", "--max-steps", "16", "--save-every", "5")
    assert main([*two, "--stop-at", "7"]) == 0
    assert [p.name for p in checkpoints(tmp_path / "two")][-1] == "checkpoint-7"
    assert main(two) == 0
    assert "resuming from" in capsys.readouterr().out
    parts = json.loads((tmp_path / "two" / "summary.json").read_text())["parts"]
    assert [(p["from_step"], p["to_step"], p["threads"]) for p in parts] == [(0, 7, 1), (7, 16, 1)]
    assert main(two) == 0  # finished: nothing to do, the record of the parts is kept
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["parts"] == parts
    for p in checkpoints(tmp_path / "one"):
        for name in ("model.safetensors", "trainer_state.json", "config.json", "tokenizer.json"):
            assert (p / name).read_bytes() == (tmp_path / "two" / p.name / name).read_bytes(), (p.name, name)
    log = lambda d: [(r["step"], r["loss"]) for r in csv.DictReader(open(d / "log.csv"))]  # noqa: E731
    assert log(tmp_path / "one") == log(tmp_path / "two")


def _last_logged(out):
    try:
        lines = (out / "log.csv").read_text().splitlines()
        return int(lines[-1].split(",")[0]) if len(lines) > 1 and lines[-1].count(",") == 4 else 0
    except (FileNotFoundError, ValueError):
        return 0


def test_exact_resume_after_kill(tmp_path, corpus):
    """Kill the CLI with SIGKILL after a checkpoint, rerun it: the final weights equal an uninterrupted run's."""
    steps = ["--max-steps", "100", "--save-every", "20"]
    assert main(_tiny(corpus, tmp_path / "whole", *steps)) == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "intrinsic_dim.cli", *_tiny(corpus, out, *steps)]
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _last_logged(out) < 45 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    resume_from = max(int(p.name.split("-")[1]) for p in checkpoints(out) if (p / "training_state.pt").exists())
    assert resume_from < _last_logged(out) < 100, "killed between a checkpoint and the next, with steps logged after it"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stdout
    assert _weights(out / "checkpoint-100") == _weights(tmp_path / "whole" / "checkpoint-100")
    rows = lambda d: [(r["step"], r["loss"]) for r in csv.DictReader(open(d / "log.csv"))]  # noqa: E731
    assert rows(out) == rows(tmp_path / "whole")


def test_one_writer_per_run_directory(tmp_path, corpus, capsys):
    from intrinsic_dim.store import RunLock

    out = tmp_path / "busy"
    with RunLock(out):
        assert main(_tiny(corpus, out, "--max-steps", "2")) == 2
    assert "is in use by pid" in capsys.readouterr().err and not checkpoints(out)
    assert main(_tiny(corpus, out, "--max-steps", "2")) == 0


def test_sigterm_ends_in_one_line_saying_how_to_resume(tmp_path, corpus):
    out = tmp_path / "term"
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "intrinsic_dim.cli", *_tiny(corpus, out, "--max-steps", "100000", "--save-every", "5")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint-5").is_dir() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and "rerun the same command to resume" in err and "Traceback" not in err


def test_rerun_with_other_options_is_refused(tmp_path, corpus, capsys):
    assert main(_tiny(corpus, tmp_path / "r", "--max-steps", "3")) == 0
    assert main(_tiny(corpus, tmp_path / "r", "--max-steps", "3", "--lr", "1e-3")) == 2
    assert "other options (lr: 0.002)" in capsys.readouterr().err


def test_resume_on_another_thread_count_says_so(tmp_path, corpus, capsys):
    argv = _tiny(corpus, tmp_path / "t", "--max-steps", "4")
    assert main([*argv, "--stop-at", "2"]) == 0
    assert main([*argv, "--threads", "2"]) == 0
    assert "runs on 2 threads, the run so far on 1" in capsys.readouterr().out


def test_checkpoint_is_a_model_for_measure(tmp_path, corpus, capsys):
    from safetensors.torch import load_file

    from intrinsic_dim.models import load_model
    from intrinsic_dim.tasks import load_task

    out = tmp_path / "run"
    assert main(_tiny(corpus, out, "--max-steps", "4", "--save-every", "2")) == 0
    ckpt = str(out / "checkpoint-4")
    data = tmp_path / "data"
    data.mkdir()
    rng = random.Random(0)
    for name, n in (("train.csv", 48), ("validation.csv", 24)):
        with open(data / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["sentence", "label"])
            w.writerows([" ".join(rng.choice(WORDS) for _ in range(6)), rng.choice("ab")] for _ in range(n))
    task = load_task(str(data), max_train=48, max_eval=24)
    one, two = (load_model(ckpt, task, seed=s, max_length=16) for s in (0, 1))
    saved = load_file(str(Path(ckpt) / "model.safetensors"))
    assert torch.equal(one.model.state_dict()["bert.encoder.layer.1.output.dense.weight"], saved["bert.encoder.layer.1.output.dense.weight"])
    assert one.model.num_labels == 2 and not torch.equal(one.model.classifier.weight, two.model.classifier.weight)
    assert len(one.tokenizer) == one.model.config.vocab_size == 30522
    assert torch.equal(one.model.classifier.weight, load_model(ckpt, task, seed=0, max_length=16).model.classifier.weight)
    run = tmp_path / "measure"
    argv = ["measure", "--model", ckpt, "--task", str(data), "--dims", "100", "--seeds", "1", "--baseline", "0.95",
            "--max-steps", "2", "--batch-size", "8", "--max-length", "16", "--quiet", "--run-dir", str(run)]
    assert main(argv) == 0
    result = json.loads((run / "d90.json").read_text())
    assert 100 in [p["d"] for p in result["points"]] and result["model"] == ckpt


def test_checkpoint_without_tokenizer_is_refused(tmp_path, corpus):
    from intrinsic_dim.models import ModelError, load_model
    from intrinsic_dim.tasks import load_task

    assert main(_tiny(corpus, tmp_path / "run", "--max-steps", "1")) == 0
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((tmp_path / "run" / "checkpoint-1" / name).read_bytes())
    with pytest.raises(ModelError, match="no tokenizer files"):
        load_model(str(bare), load_task("tweet-sentiment", max_train=4, max_eval=4))


def test_config_file_with_flag_override(tmp_path, corpus):
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"size: custom\nlayers: 1\nhidden: 16\nheads: 2\nintermediate: 32\ncorpus: {corpus}\nmax_length: 16\n"
                   f"batch_size: 4\neval_blocks: 4\nmax_steps: 6\nsave_every: 3\nthreads: 1\nquiet: true\nout: {tmp_path / 'o'}\n")
    assert main(["pretrain", "--config", str(cfg), "--max-steps", "4"]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["step"] == 4 and summary["layers"] == 1 and summary["hidden"] == 16


def test_trained_wordpiece_tokenizer(tmp_path, corpus):
    from transformers import AutoTokenizer

    out = tmp_path / "wp"
    assert main(_tiny(corpus, out, "--tokenizer", "wordpiece-200", "--max-steps", "2")) == 0
    tok = AutoTokenizer.from_pretrained(out / "checkpoint-2")
    config = json.loads((out / "checkpoint-2" / "config.json").read_text())
    assert len(tok) == config["vocab_size"] <= 200 and tok.mask_token == "[MASK]"
    assert tok("the cat sat")["input_ids"][0] == tok.cls_token_id and tok.model_max_length == 32
    trained = train_wordpiece(read_corpus(["reuters"])[:300], 800)
    tokens = trained.convert_ids_to_tokens(list(range(len(trained))))
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and tokens[5:] == sorted(tokens[5:])
    assert trained.tokenize("exports rose") == ["exports", "rose"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--size", "bert-huge"], "unknown size 'bert-huge'"),
        (["--heads", "0"], "--heads must be a positive integer"),
        (["--hidden", "30", "--heads", "4"], "multiple of --heads"),
        (["--corpus", "no/such/file.txt"], "neither a packaged corpus"),
        (["--max-steps", "10", "--stop-at", "11"], "--stop-at must be between 0"),
        (["--max-steps", "0"], "--max-steps must be a positive integer"),
        (["--save-at", "3,9"], "--save-at steps must be between 1"),
        (["--lr", "-1"], "--lr must be a positive"),
        (["--mask-prob", "1.5"], "--mask-prob"),
        (["--tokenizer", "gpt2-ish"], "not wordpiece-N"),
        (["--batch-size", "100000"], "fewer than --batch-size 100000"),
    ],
)
def test_bad_input_is_refused_before_any_work(tmp_path, corpus, capsys, extra, message):
    out = tmp_path / "bad"
    try:
        code = main([*_tiny(corpus, out, "--max-steps", "5"), *extra])
    except SystemExit as e:  # ranges shared with the other verbs are checked by the argument parser
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (out / "pretrain_config.json").exists() and not checkpoints(out)


def test_config_validation_in_python():
    with pytest.raises(PretrainError, match="--hidden is needed"):
        PretrainConfig(size=None, layers=2)
    with pytest.raises(PretrainError, match="--warmup"):
        PretrainConfig(size="bert-tiny", max_steps=10, warmup=10)
    assert PretrainConfig(size="bert-tiny", max_steps=100).warmup == 6
    assert PretrainConfig(size="bert-mini", hidden=128).heads == 4


def test_pretrain_help():
    out = subprocess.run([sys.executable, "-m", "intrinsic_dim.cli", "pretrain", "--help"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": SRC})
    assert out.returncode == 0 and "usage: intrinsic-dim pretrain" in out.stdout and "--stop-at" in out.stdout


def test_pretrain_function_returns_summary(tmp_path, corpus):
    cfg = PretrainConfig(out=str(tmp_path / "f"), size=None, layers=1, hidden=16, heads=2, intermediate=32, corpus=[str(corpus)],
                         max_length=16, batch_size=4, eval_blocks=0, max_steps=3, save_every=3, threads=1)
    summary = pretrain(cfg, progress=False, log=lambda s: None)
    assert summary["step"] == 3 and [c["eval_loss"] for c in summary["checkpoints"]] == [None, None]
