"""Fuzz: generated bad options, config files, experiment files, data files and adapters fed to every verb in process.

Each case must end in a refusal: a non-zero exit (argparse's SystemExit 2 counts), no traceback on stderr, and the
workspace (data, adapter, run directories, outputs, the working directory) byte for byte as it was. The cases are
drawn from a fixed seed, so a failure reproduces; every case sits on a base command that would succeed (a tiny task,
one step), so a bad value let through shows up as an exit 0, not as a slow run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from pathlib import Path

import pytest

from intrinsic_dim.cli import main
from intrinsic_dim.spec import spec_fields

SEED = 20260426
NUMBERS = ["nan", "inf", "-inf", "-1", "1e999", "abc", "", "1,,2", "0x1g", "½", "9" * 40 + "e9999", "-0.5e-400x"]
LISTS = ["1,nan", "0,10", "a,b", "-5", "1e999", "10,,", "inf", "nan"]
NAMES = ["nosuch", "no such model", "über", "owner/never-published", "../../etc", "a" * 300, "-", "*", "\u202e"]
YAML_BAD = [".nan", ".inf", "-.inf", "-1", "true", "'abc'", "[1, 'x']", "{a: 1}", "1e999", "[[[]]]", "''"]
SKIP = {"curve", "wait", "ray_address", "lora_targets", "executor", "trial_cpus", "trial_gpus", "report_to"}
"""Flags with no bad value of their own (switches), or whose value only matters beside another option."""


def _tree(root: Path) -> str:
    """A hash of every path, type, mode and byte under ``root``: what a refused command must leave alone."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(f"{p.relative_to(root)}|{p.is_dir()}|{p.stat().st_mode}".encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _csv(path: Path, rows: list[list[str]], header: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _rows(rng: random.Random, n: int, labels: tuple[str, ...] = ("pos", "neg")) -> list[list[str]]:
    words = ["good", "bad", "day", "the", "ok", "meh"]
    return [[" ".join(rng.choice(words) for _ in range(3)), labels[i % len(labels)]] for i in range(n)]


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The workspace: a good data folder, a trained adapter, a finished run directory, a pretraining corpus."""
    root = tmp_path_factory.mktemp("fuzz")
    rng = random.Random(SEED)
    data = root / "data"
    data.mkdir()
    _csv(data / "train.csv", _rows(rng, 40), ["sentence", "label"])
    _csv(data / "validation.csv", _rows(rng, 40), ["sentence", "label"])
    (root / "corpus.txt").write_text("\n".join(" ".join(rng.choice(["a", "b", "c", "word"]) for _ in range(60)) for _ in range(40)))
    old = os.getcwd()
    os.chdir(root)
    try:
        assert main(["train", *_data_args(data), "--d", "100", "--out", str(root / "adapter")]) == 0
        assert main(["measure", *_data_args(data), "--dims", "100", "--baseline", "0.9", "--run-dir", str(root / "run")]) == 0
    finally:
        os.chdir(old)
    return root


def _data_args(data: Path) -> list[str]:
    return ["--model", "bert-tiny-random", "--task", str(data), "--max-train", "40", "--max-eval", "20", "--max-length", "16",
            "--batch-size", "8", "--max-steps", "1", "--quiet"]


def _bad_flags(rng: random.Random, parts: tuple[str, ...], names: tuple[str, ...] = ()) -> list[str]:
    """One spec flag of ``parts`` (or named) with a value its kind cannot take."""
    fields = [f for part, f in spec_fields() if (part in parts or f.name in names) and f.name not in SKIP]
    f = rng.choice(fields)
    kind, flag = f.metadata["kind"], "--" + f.name.replace("_", "-")
    if f.metadata["choices"] or f.name in ("model", "metric"):
        value = rng.choice(NAMES)
    elif f.name == "task":
        value = rng.choice(NAMES[:3] + ["/nonexistent/train.csv", "a.csv,b.csv", "t" * 300, "t" * 300 + ".csv"])
    elif kind in ("ints", "floats"):
        value = rng.choice(LISTS)
    elif kind == "texts":
        return [f"{flag}={rng.choice(['/nonexistent', 'run-that-is-not-there'])}"]
    else:
        value = rng.choice(NUMBERS)
    return [f"{flag}={value}"]


def _config(rng: random.Random, path: Path, keys: list[str]) -> Path:
    """A config or experiment-options file with one bad thing: a bad value, a bad shape, bad bytes or a bad nesting."""
    kind = rng.randrange(6)
    if kind == 0:
        path.write_text(f"{rng.choice(keys)}: {rng.choice(YAML_BAD)}\n")
    elif kind == 1:
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) + b"\xff")
    elif kind == 2:
        path.write_text(rng.choice(["- 1\n- 2\n", "just text\n", "42\n", "[" * 5000, "a: &a [1]\nb: *a\n", "{"]))
    elif kind == 3:
        path.write_text("a: &a ['x','x','x','x','x','x','x','x','x']\n" + "".join(
            f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")))
    elif kind == 4:
        path.write_text(f"not_an_option_{rng.randrange(1000)}: 1\n")
    else:
        path.write_text(f"{rng.choice(keys)}: {{nested: {{deeper: [1, 2, {rng.choice(YAML_BAD)}]}}}}\n")
    return path


def _data(rng: random.Random, folder: Path) -> Path:
    """A data folder with one defect among random content, as a user's files might have."""
    folder.mkdir()
    defect = rng.randrange(8)
    train, val = _rows(rng, rng.randrange(20, 40)), _rows(rng, rng.randrange(10, 20))
    header = ["sentence", "label"]
    if defect == 0:
        header = rng.choice([["a", "b"], ["label"], ["sentence"], ["text", "text"]])
    elif defect == 1:
        val = val + [["only here", "surprise"]]
    elif defect == 2:
        val = val[:1]
    elif defect == 3:
        train = []
    if defect == 4:
        (folder / "train.csv").write_bytes(b"sentence,label\n" + bytes(rng.randrange(128, 256) for _ in range(300)))
    elif defect == 5:
        (folder / "train.jsonl").write_text(json.dumps({"sentence": "x", "label": "pos"}) + "\n{broken\n")
    elif defect == 6:
        (folder / "train.json").write_text("[" * 60000 + "]" * 60000)
    else:
        _csv(folder / "train.csv", train, header)
    if defect != 7:
        _csv(folder / "validation.csv", val, header)
    return folder


def _adapter(rng: random.Random, good: Path, folder: Path) -> Path:
    """A copy of a trained adapter with one defect: cut or flipped bytes, an edited or broken config, a missing file, or
    (re-signed) metadata naming a model that is neither registered nor a folder."""
    from intrinsic_dim.adapter.format import _file_sha256, config_checksum

    folder.mkdir()
    for f in good.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    weights, config = folder / "adapter_model.safetensors", folder / "adapter_config.json"
    defect = rng.randrange(6)
    if defect == 0:
        data = weights.read_bytes()
        weights.write_bytes(data[: rng.randrange(len(data))])
    elif defect == 1:
        data = bytearray(weights.read_bytes())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        weights.write_bytes(bytes(data))
    elif defect == 2:
        cfg = json.loads(config.read_text())
        cfg[rng.choice(sorted(cfg))] = rng.choice([None, -1, "x", [1], {"a": 1}, 1e300])
        config.write_text(json.dumps(cfg))
    elif defect == 3:
        config.write_text(config.read_text()[: rng.randrange(1, 200)])
    elif defect == 4:
        rng.choice([weights, config]).unlink()
    else:
        cfg = json.loads(config.read_text())
        cfg["metadata"]["model"] = rng.choice(["never-registered", "owner/never-published"])
        cfg["weights_sha256"] = _file_sha256(weights)
        cfg["config_sha256"] = config_checksum(cfg)
        config.write_text(json.dumps(cfg))
    return folder


def _cases(space: Path, rng: random.Random) -> list[tuple[str, list[str]]]:
    """The generated commands: (what is fuzzed, argv)."""
    data, adapter, out = space / "data", space / "adapter", space / "out"
    base = _data_args(data)
    measure = ["measure", *base, "--dims", "100", "--baseline", "0.9", "--run-dir", str(space / "new-run")]
    train = ["train", *base, "--d", "100", "--out", str(out)]
    evaluate = ["evaluate", *base[:10], "--quiet", "--adapter", str(adapter)]
    pretrain = ["pretrain", "--out", str(space / "pre"), "--max-steps", "1", "--corpus", str(space / "corpus.txt"),
                "--eval-blocks", "0", "--batch-size", "1", "--max-length", "16", "--size", "bert-mini", "--quiet"]
    keys = {"measure": [f.name for _, f in spec_fields()], "train": ["d", "seed", "lr", "epochs", "max_length", "model"],
            "pretrain": ["lr", "weight_decay", "clip", "mask_prob", "max_steps", "hidden", "corpus", "save_at"]}
    cases: list[tuple[str, list[str]]] = []
    for i in range(16):
        cases.append(("measure flag", measure + _bad_flags(rng, ("data", "search", "trial", "full", "run"))))
        cases.append(("train flag", train + _bad_flags(rng, ("data", "trial"), ("threads",)) if i % 2 else
                      train + rng.choice([[f"--d={rng.choice(NUMBERS + ['0'])}"], [f"--seed={rng.choice(NUMBERS + [str(2**63)])}"]])))
        cases.append(("evaluate flag", evaluate + (_bad_flags(rng, ("data",), ("threads",)) if i % 2 else
                                                   [f"--batch-size={rng.choice(NUMBERS + ['0'])}"])))
        cases.append(("merge flag", ["merge", str(adapter), "--out", str(out), f"{rng.choice(['--seed', '--max-length'])}={rng.choice(NUMBERS)}"]
                      if i % 2 else ["merge", str(adapter), "--out", str(out), "--model", rng.choice(NAMES)]))
        flag = rng.choice(["--lr", "--weight-decay", "--clip", "--mask-prob", "--max-steps", "--warmup", "--hidden", "--seed",
                           "--save-every", "--stop-at", "--threads", "--eval-blocks", "--max-length", "--save-at"])
        zero_bad = flag in ("--lr", "--clip", "--mask-prob", "--max-steps", "--hidden", "--save-every", "--threads", "--max-length", "--save-at")
        cases.append(("pretrain flag", pretrain + [f"{flag}={rng.choice(NUMBERS + ['0'] * zero_bad)}"]))
    for i in range(6):
        verb = ["measure", "train", "pretrain"][i % 3]
        cfg = _config(rng, space / f"bad-config-{i}.yaml", keys[verb])
        cases.append((f"{verb} config", {"measure": measure, "train": train, "pretrain": pretrain}[verb] + ["--config", str(cfg)]))
        exp = space / f"bad-experiment-{i}.yaml"
        if i % 2:
            _config(rng, exp, ["name", "runs", "defaults"])
        else:
            bad = {rng.choice([k for k in keys["measure"] if k not in SKIP]): rng.choice([-1, "abc", [1, "x"], {"a": 1}, float("nan")])}
            exp.write_text(json.dumps({"name": f"fuzz-{i}", "runs": [{"name": "r", "model": "bert-tiny-random", "task": str(data), **bad}]}))
        cases.append(("experiment file", ["experiment", str(exp), "--quiet"]))
        folder = str(_data(rng, space / f"bad-data-{i}"))
        cases.append(("data files", measure + ["--task", folder] if i % 2 else train + ["--task", folder]))
        bad_adapter = _adapter(rng, adapter, space / f"bad-adapter-{i}")
        cases.append(("adapter", ["evaluate", *base[4:10], "--adapter", str(bad_adapter)] if i % 2 else
                      ["merge", str(bad_adapter), "--out", str(out)]))
        run = space / f"bad-run-{i}"
        run.mkdir()
        (run / "d90.json").write_text(rng.choice(["[1, 2]", "{broken", "", "null", '"text"', "[" * 5000]))
        cases.append(("report", ["report", str(run), "--out", str(out)]))
    return cases


def test_fuzz_every_verb_refuses_bad_input_cleanly(space, capsys, monkeypatch):
    monkeypatch.chdir(space)
    rng = random.Random(SEED)
    cases = _cases(space, rng)
    capsys.readouterr()
    failures = []
    for what, argv in cases:
        before = _tree(space)
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
        except Exception as e:  # noqa: BLE001 - what the fuzz looks for: an exception escaping the command
            code = f"raised {type(e).__name__}: {e}"
        err = capsys.readouterr().err
        after = _tree(space)
        if code in (0, None) or not isinstance(code, int) or "Traceback" in err or before != after:
            given = Path(argv[-1]).read_text(errors="replace")[:200] if Path(argv[-1]).is_file() else ""
            failures.append(f"{what}: {argv[:1] + argv[-4:]} {given!r} -> {code}; tree {'same' if before == after else 'CHANGED'}; "
                            f"{err.strip().splitlines()[-1:] }")
    assert not failures, "\n".join(failures)
    assert len(cases) >= 100


def _full_disk(monkeypatch, space: Path, error: type[Exception], rescue_too: bool = False) -> None:
    """Make writing an adapter's weights fail as a full disk does, inside ``space`` (and everywhere with ``rescue_too``)."""
    import errno

    import intrinsic_dim.adapter.format as fmt

    real = fmt.save_file

    def save_file(tensors, path, *args, **kwargs):
        if rescue_too or Path(path).is_relative_to(space):
            raise error(errno.ENOSPC, "No space left on device") if error is OSError else error("No space left on device (os error 28)")
        return real(tensors, path, *args, **kwargs)

    monkeypatch.setattr(fmt, "save_file", save_file)


@pytest.mark.parametrize("error", ["OSError", "SafetensorError"])
def test_full_disk_during_train_out_rescues_the_adapter(space, capsys, monkeypatch, error):
    from safetensors import SafetensorError

    from intrinsic_dim.adapter import open_adapter

    monkeypatch.chdir(space)
    _full_disk(monkeypatch, space, OSError if error == "OSError" else SafetensorError)
    for out in (space / "new-out" / "adapter", space / "adapter"):  # a new folder, and an earlier adapter's
        before = _tree(space)
        assert main(["train", *_data_args(space / "data"), "--d", "100", "--out", str(out)]) == 0
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err and "No space left on device" in captured.err
        rescue = Path(captured.out.rsplit("adapter saved to ", 1)[1].strip().rstrip("/"))
        assert not rescue.is_relative_to(space) and open_adapter(rescue)[0]["metadata"]["model"] == "bert-tiny-random"
        assert str(rescue) in captured.err and _tree(space) == before  # no empty or half-written folder left
        assert not (space / "new-out").exists()


def test_full_disk_everywhere_is_one_line_and_leaves_nothing(space, capsys, monkeypatch):
    monkeypatch.chdir(space)
    _full_disk(monkeypatch, space, OSError, rescue_too=True)
    before = _tree(space)
    assert main(["train", *_data_args(space / "data"), "--d", "100", "--out", str(space / "new-out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and "free disk space" in err
    assert _tree(space) == before


@pytest.mark.parametrize("trial, status", [("die_once", "ok"), ("die_always", "failed")])
def test_a_killed_worker_loses_only_its_trial(tmp_path, monkeypatch, trial, status):
    """``--workers 2``: a worker killed under a trial (SIGKILL) reruns that trial once on a fresh pool; killed again, the
    trial is recorded as failed; every other trial's result comes back."""
    import _dying_worker

    from intrinsic_dim.executors import LoadOptions, LocalWorkers
    from intrinsic_dim.train import TrialConfig

    monkeypatch.setenv("DYING_WORKER_DIR", str(tmp_path))
    said: list[str] = []
    workers = LocalWorkers(LoadOptions("fc-784-200-200-10", "mnist-5k", 40, 20, 16, 1), 2, say=said.append,
                           trial=getattr(_dying_worker, trial))
    got = {}
    try:
        workers.run_many([TrialConfig(d=10, seed=s) for s in range(4)], lambda i, r: got.__setitem__(i, r))
    finally:
        workers.close()
    assert sorted(got) == [0, 1, 2, 3] and all(got[i].ok for i in (0, 2, 3)) and got[1].status == status
    assert said and "worker process died" in said[0] and ("failed" in said[-1]) == (status == "failed")
    assert status == "ok" or "died twice" in got[1].error


def test_a_trial_lost_only_beside_a_dying_worker_is_not_charged(tmp_path, monkeypatch):
    """Seed 0 is still running each time seed 1 kills its worker (the whole pool breaks): seed 0 loses its run twice
    through no fault of its own, yet comes back, since lost trials rerun one at a time; only seed 1 is failed."""
    import _dying_worker

    from intrinsic_dim.executors import LoadOptions, LocalWorkers
    from intrinsic_dim.train import TrialConfig

    monkeypatch.setenv("DYING_WORKER_DIR", str(tmp_path))

    workers = LocalWorkers(LoadOptions("fc-784-200-200-10", "mnist-5k", 40, 20, 16, 1), 2, say=lambda s: None,
                           trial=_dying_worker.die_beside_a_slow_trial)
    got = {}
    try:
        workers.run_many([TrialConfig(d=10, seed=s) for s in range(2)], lambda i, r: got.__setitem__(i, r))
    finally:
        workers.close()
    assert got[0].ok and got[1].status == "failed"


@pytest.mark.parametrize("bad", [["--model", "nosuch"], ["--dims", "100000000"]])
def test_a_failed_measure_leaves_nothing_in_the_corrected_commands_way(space, capsys, monkeypatch, bad):
    monkeypatch.chdir(space)
    corrected = ["measure", *_data_args(space / "data"), "--dims", "100", "--baseline", "0.9"]
    fresh, existing = space / f"fresh-{bad[1]}", space / f"existing-{bad[1]}"
    existing.mkdir()
    for run in (fresh / "run", existing):
        before = _tree(space)
        assert main(corrected + bad + ["--run-dir", str(run)]) == 2
        assert "Traceback" not in capsys.readouterr().err
        if run != existing:
            assert _tree(space) == before and not fresh.exists()
        assert main(corrected + ["--run-dir", str(run)]) == 0
        assert json.loads((run / "d90.json").read_text())["model"] == "bert-tiny-random"


def test_a_failed_pretrain_start_leaves_nothing_in_the_corrected_commands_way(space, capsys, monkeypatch):
    monkeypatch.chdir(space)
    out = space / "pre"
    base = ["pretrain", "--out", str(out), "--max-steps", "1", "--eval-blocks", "0", "--max-length", "16", "--size", "bert-mini",
            "--quiet", "--tokenizer", "wordpiece-120"]
    tiny = space / "tiny-corpus.txt"
    tiny.write_text("too little text\n")
    before = _tree(space)
    assert main(base + ["--corpus", str(tiny), "--batch-size", "1"]) == 2
    assert "training blocks" in capsys.readouterr().err and _tree(space) == before
    assert main(base + ["--corpus", str(space / "corpus.txt"), "--batch-size", "1", "--weight-decay", "nan"]) == 2
    assert "--weight-decay" in capsys.readouterr().err and _tree(space) == before
    assert main(base + ["--corpus", str(space / "corpus.txt"), "--batch-size", "1"]) == 0
    assert (out / "checkpoint-1").is_dir()
