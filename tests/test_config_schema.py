"""Run configuration at the edge: every option's type, range and choices checked once, by MeasureSpec, before
any work, for flags, config files and experiment files alike; property-based over random configurations."""

import math
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import intrinsic_dim as idim
from intrinsic_dim.cli import main
from intrinsic_dim.cliargs import build_parser, parse
from intrinsic_dim.spec import PARTS, MeasureSpec, SpecError, spec_fields


def _err(argv, capsys):
    """The one-line error of a command refused before any work (exit 2)."""
    assert main(argv) == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--fraction", "nan"], "fraction must be a number in (0, 1.5]"),
        (["--epochs", "nan"], "epochs must be"),
        (["--epochs", "inf"], "epochs must be"),
        (["--threads", "-1"], "threads must be"),
        (["--threads", "0"], "threads must be"),
        (["--baseline-seeds", "0"], "baseline_seeds must be"),
        (["--eval-every", "0"], "eval_every must be"),
        (["--precision", "nan"], "precision must be"),
        (["--baseline", "nan"], "baseline must be"),
        (["--baseline", "-1"], "baseline must be"),
        (["--seeds", "0"], "seeds must be"),
        (["--seeds", "3x"], "seeds: expected an integer"),
        (["--lr-search", "0.1,nan"], "lr_search must be"),
        (["--dims", "0,10"], "dims must be"),
        (["--full-lr-search", "1e-4", "--full-lr", "1e-4"], "drop full_lr"),
        (["--trial-gpus", "1"], "only apply to executor ray"),
    ],
)
def test_bad_flags_say_what_to_change(flags, message, capsys):
    assert message in _err(["measure", *flags], capsys)


def test_seed_and_d_ranges_for_train(capsys):
    assert "--seed must be an integer from 0 to 2**63 - 1" in _err(["train", "--seed", str(2**63)], capsys)
    assert "--d must be a positive integer" in _err(["train", "--d", "0"], capsys)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"fraction": True}, "fraction: expected a number"),
        ({"dims": [10.7, 300.2]}, "dims: expected an integer"),
        ({"said": "no"}, "said: expected true or false"),
        ({"model": {"a": [1, 2]}}, "model: expected text"),
        ({"projection": "gaussian"}, "projection: expected one of"),
        ({"seeds": "3x"}, "seeds: expected an integer"),
        ({"max_train": 0}, "max_train"),
        ({"modle": "x"}, "unknown option 'modle'"),
        ({"epochs": None}, "epochs: expected a value"),
        ({"gap_examples": -1}, "gap_examples: expected a non-negative integer or 'test'"),
        ({"gap_examples": "half"}, "gap_examples: expected an integer"),
        ({"select_examples": 0}, "select_examples"),
        ({"said": True, "method": "did"}, "contradicts"),
    ],
)
def test_bad_config_values_say_what_to_change(config, message):
    with pytest.raises(SpecError) as e:
        MeasureSpec.from_dict(config, source="run.yaml")
    assert message in str(e.value) and "run.yaml" in str(e.value)


def test_good_config_values_are_converted():
    spec = MeasureSpec.from_dict({"dims": [100, 300], "max_train": "all", "seeds": "3", "said": False, "lr_search": 0.1})
    assert spec.search.dims == (100, 300) and spec.data.max_train is None and spec.search.seeds == 3
    assert spec.trial.method == "did" and not spec.said and spec.search.lr_search == (0.1,)
    assert (spec.trial.select_examples, spec.trial.gap_examples, spec.search.seed_rule) == (250, 0, "sequential")  # defaults
    old = MeasureSpec.from_dict({"select_examples": "all", "gap_examples": "test", "seed_rule": "all"})
    assert (old.trial.select_examples, old.trial.gap_examples) == (None, None) and MeasureSpec.from_dict(old.to_dict()) == old


def test_the_spec_round_trips_through_its_dict_and_yaml(tmp_path):
    spec = MeasureSpec.from_dict({"dims": [100, 300], "seeds": 3, "method": "did", "full_lr": 1e-4, "threads": 1, "reuse": ["a"]})
    assert MeasureSpec.from_dict(spec.to_dict()) == spec
    import yaml

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(spec.to_dict()))
    assert idim.MeasureSpec.from_yaml(path) == spec
    assert spec.replace(seeds=5).search.seeds == 5 and spec.replace(seeds=5).trial == spec.trial


def test_every_spec_field_is_a_flag_with_its_default_in_the_help():
    """A field added to the spec appears on the command line: the flags are generated from it."""
    parser = build_parser()
    measure = parser._subparsers._group_actions[0].choices["measure"]
    dests = {a.dest for a in measure._actions}
    assert {f.name for _, f in spec_fields()} <= dests
    assert set(PARTS) == {"data", "search", "trial", "full", "run"}
    help_text = measure.format_help()
    for _, f in spec_fields():
        assert "--" + f.name.replace("_", "-") in help_text


def test_flags_override_the_config_file_which_overrides_the_defaults(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seeds: 3\nepochs: 2\nrun_dir: out\n")
    args = parse(["measure", "--config", str(path), "--seeds", "4"])
    assert args.spec.search.seeds == 4 and args.spec.trial.epochs == 2.0 and args.run_dir == "out"
    assert args.spec.trial.batch_size == MeasureSpec().trial.batch_size


@pytest.mark.parametrize("verb, text, flags, message", [
    ("measure", "max_length: .inf\n", ["--max-length", "16"], "max_length: expected an integer, got inf"),
    ("train", "d: .inf\n", ["--d", "100"], "d must be a positive integer, got inf"),
    ("evaluate", "batch_size: 0\n", ["--batch-size", "8"], "batch_size must be a positive integer, got 0"),
])
def test_a_bad_value_in_a_config_file_is_refused_even_where_a_flag_overrides_it(tmp_path, verb, text, flags, message):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"{path}: {message}"):
        parse([verb, "--config", str(path), *flags])


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.lists(st.one_of(st.integers(-5, 10**5), st.floats(allow_nan=True)), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_keys = st.sampled_from(sorted({f.name for _, f in spec_fields()}) + ["said", "unknown_key"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.dictionaries(_keys, _values, max_size=4))
def test_any_config_is_in_range_or_refused_with_a_spec_error(config):
    try:
        spec = MeasureSpec.from_dict(config)
    except SpecError:
        return
    for part, f in spec_fields():
        value, check = getattr(getattr(spec, part), f.name), f.metadata["check"]
        assert value is None or check is None or check[0](value)
    assert spec.trial.projection in ("fastfood", "sparse", "dense") and spec.trial.method in ("said", "did", "lora")
    assert spec.data.max_train is None or (isinstance(spec.data.max_train, int) and spec.data.max_train >= 1)
    for v in (spec.search.fraction, spec.trial.epochs, spec.search.precision):
        assert math.isfinite(v)


def test_subspace_defaults_are_defined_once():
    """The spec's projection settings default to SubspaceConfig's own."""
    sub = {f.name: f.default for f in fields(idim.SubspaceConfig)}
    trial = MeasureSpec().trial
    for name in ("projection", "layout", "normalisation", "groups", "dense_max_elements"):
        assert getattr(trial, name) == sub[name]


def test_a_yaml_alias_bomb_is_refused_in_a_short_message(tmp_path, capsys):
    """Nine levels of nine aliases (387 million strings if expanded) under a valid key: refused at
    once with a message of a few hundred bytes, never expanded or printed."""
    levels = ['&l0 ["x","x","x","x","x","x","x","x","x"]'] + [
        f"&l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)
    ]
    config = tmp_path / "bomb.yaml"
    config.write_text("model:\n" + "".join(f"  - {line}\n" for line in levels))
    err = _err(["measure", "--config", str(config)], capsys)
    assert "expands to over" in err and len(err) < 1000
    experiment = tmp_path / "exp.yaml"
    experiment.write_text("name: x\nruns:\n  - name: a\n    model:\n" + "".join(f"      - {line}\n" for line in levels))
    assert main(["experiment", str(experiment)]) == 2
    assert "expands to over" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nruns: [{name: a}\n", "cannot parse"),
        ("name: x\nruns: [{name: a}]\nplots: [3]\n", "every plot must be a mapping"),
        ("name: x\nruns: [{name: a}]\nplots: [{name: p, x: step, logx: sideways}]\n", "'logx' must be true, false or symlog"),
        ("name: x\nruns: [{name: a, reuse: [[a]]}]\n", "reuse: expected a list of text"),
        ("name: x\nruns: [{name: a, label: [1]}]\n", "'label' must be a mapping"),
        ("name: ../../x\nruns: [{name: a}]\n", "'name' must be a name"),
        ("name: x\nruns: [{name: ..}]\n", "must be a name"),
        ("name: x\nruns: [{name: a, seeds: 0}]\n", "run 'a': seeds must be"),
        ("name: x\nruns: [{name: a, baseline: {from: b}}]\n", "must name another run"),
        ("name: x\nruns: [{name: a}, {name: a}]\n", "unique"),
        ("name: x\nrunz: []\n", "unknown key"),
        ("[1, 2]\n", "must hold a mapping"),
    ],
)
def test_bad_experiment_files_get_one_line_naming_the_key(tmp_path, capsys, text, message):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    assert main(["experiment", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_non_utf8_config_is_one_line(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"seeds: \xff\xfe\n")
    assert "not UTF-8" in _err(["measure", "--config", str(path)], capsys)


@pytest.mark.parametrize("argv, text", [
    (["pretrain", "--max-steps", "1"], "max_steps: -1\n"),
    (["merge", "adapter", "--out", "o", "--seed", "1"], "seed: -1\n"),
])
def test_the_hand_written_verbs_refuse_a_bad_config_value_a_flag_replaces(argv, text, tmp_path, capsys):
    cfg = tmp_path / "options.yaml"
    cfg.write_text(text)
    try:
        code = main([*argv, "--config", str(cfg)])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    key = text.split(":")[0]
    assert code == 2 and "options.yaml" in err and (key in err or key.replace("_", "-") in err), err
    assert list(tmp_path.iterdir()) == [cfg]
